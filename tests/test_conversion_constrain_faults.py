"""Conversion on hostile weights ends, with a clear error or a valid result (issue 14 rows 1-2).

The inf-weight checkpoint used to hang ``constrain`` for > 170 s: a NaN cast to int64 is
INT64_MIN, whose |.| sums wrap around and made the CAM-budget loop run ~1e18 passes.  These
tests run under pytest-timeout, so a hang fails instead of stalling the suite.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from neurolab_gui.core.conversion.constrain import (
    ConstraintConfig,
    NonFiniteWeightsError,
    WeightPrecision,
    constrain,
    normalize_activations,
    project_row_multiplicities,
)
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.pipeline import PipelineConfig, convert
from neurolab_gui.core.conversion.tasks import Task
from neurolab_gui.core.conversion.training import TrainConfig

F, H, C = 3, 8, 2


def _task(n: int = 24, t: int = 5) -> Task:
    rng = np.random.default_rng(0)
    x = rng.random((n, t, F)).astype(np.float32)
    y = (x[:, :, 0].mean(1) > 0.5).astype(np.int64)
    return Task("tiny", x, y, x.copy(), y.copy(), C)


def _config() -> PipelineConfig:
    return PipelineConfig(n_hidden=H, stages=(), constraint=ConstraintConfig(max_fan_in=63, qat=TrainConfig(epochs=0)))


def _model(kind: str = "leaky") -> RateRNN:
    torch.manual_seed(0)
    return RateRNN(RNNConfig(F, H, C, kind=kind, readout="last" if kind == "elman" else "mean"))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("value", [float("inf"), float("-inf"), float("nan")])
@pytest.mark.parametrize("tensor", ["w_rec", "w_in", "w_bias", "readout.weight"])
def test_non_finite_weights_end_with_a_clear_error(value, tensor):
    model = _model("elman")
    with torch.no_grad():
        dict(model.named_parameters())[tensor].view(-1)[0] = value
    with pytest.raises(NonFiniteWeightsError, match=rf"non-finite weights \({tensor}: "):
        convert(model, _task(), _config())
    with pytest.raises(NonFiniteWeightsError):
        constrain(model, _task(), _config().constraint)


@pytest.mark.timeout(60)
def test_huge_finite_weights_end_with_a_clear_error():
    """Finite weights whose activations overflow float32: the import rescale refuses them."""
    model = _model("elman")
    with torch.no_grad():
        model.w_in.fill_(1e30)
        model.w_rec.fill_(1e30)
    with pytest.raises(NonFiniteWeightsError, match="activations overflow"):
        normalize_activations(model, _task().x_train)
    from neurolab_gui.core.conversion.torch_import import ForeignSource

    model.foreign = ForeignSource("relu")  # as load_checkpoint marks an imported nn.RNN: its activations get rescaled
    with pytest.raises(ValueError, match="activations overflow"):
        convert(model, _task(), _config())


@pytest.mark.timeout(120)
def test_ordinary_model_still_converts_to_a_valid_result():
    result = convert(_model(), _task(), _config())
    net = result.constrained
    assert np.abs(net.multiplicity).sum(1).max() <= 63
    assert [s.name for s in result.report.stages] == ["float", "constrained"]


def test_model_and_task_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="takes 3 inputs / 2 classes but task tiny has 4 features"):
        rng = np.random.default_rng(1)
        x = rng.random((6, 4, 4)).astype(np.float32)
        convert(_model(), Task("tiny", x, np.zeros(6, np.int64), x, np.zeros(6, np.int64), 2), _config())


@pytest.mark.timeout(30)
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_projection_refuses_non_finite_input(bad):
    v = np.ones((3, 70))
    v[1, 5] = bad
    with pytest.raises(NonFiniteWeightsError, match="non-finite"):
        project_row_multiplicities(v, WeightPrecision(16), 63)


@pytest.mark.timeout(60)
@settings(max_examples=60, deadline=None)
@given(v=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=80),
                    elements=st.floats(-1e300, 1e300, allow_nan=False, allow_infinity=False)),
       levels=st.integers(3, 33), budget=st.integers(1, 64))
def test_property_projection_ends_on_the_grid_within_budget(v, levels, budget):
    p = WeightPrecision(levels)
    m = project_row_multiplicities(v, p, budget)
    assert m.shape == v.shape
    assert m.min(initial=0) >= p.m_min and m.max(initial=0) <= p.m_max
    assert np.abs(m).sum(1).max(initial=0) <= budget
