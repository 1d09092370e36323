"""Per-group weight precision: input, bias and recurrent columns keep their own copy weight.

The input and bias columns' copy weights are the core's recurrent copy weight times a source
gain that the FPGA spike generator realises as the channel's rate.  These tests fail when the
gains are dropped anywhere on the way: in the quantiser, the constrained network, the mapping
or the spike encoding.
"""

import copy

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion.ablation import zero_fractions
from neurolab_gui.core.conversion.constrain import (
    ConstraintConfig,
    FanInMask,
    WeightPrecision,
    constrain,
    quantise,
    stacked_weights,
)
from neurolab_gui.core.conversion.mapping import TimeMapping, map_network
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.spiking_run import encode_for
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig

P16 = WeightPrecision(16)


def _weights_with_small_biases(h: int = 48, f: int = 8, seed: int = 0) -> np.ndarray:
    """Stacked weights whose bias column is ~10x smaller than the recurrent and input weights."""
    rng = np.random.default_rng(seed)
    w_in = rng.normal(0, 0.5, (h, f))
    w_bias = rng.normal(0, 0.05, h)
    w_rec = rng.normal(0, 0.3, (h, h)) * (rng.random((h, h)) < 0.5)
    return np.concatenate([w_in, w_bias[:, None], w_rec], axis=1)


def test_a_small_bias_column_gets_a_finer_step_and_is_not_rounded_away():
    w = _weights_with_small_biases()
    groups = np.zeros(len(w), np.int64)
    per_group = quantise(w, groups, P16, 63, source_gains=(1 / 8, 2))
    one_scale = quantise(w, groups, P16, 63, source_gains=None)
    assert one_scale.input_gain == one_scale.bias_gain == 1.0
    assert per_group.bias_gain < 1.0  # the bias column's copy weight is below the recurrent one
    f = 8
    zero_one, zero_per = zero_fractions(one_scale.multiplicity, f), zero_fractions(per_group.multiplicity, f)
    assert zero_one["bias"] > 0.6  # one step for all three groups: most biases quantise to zero
    assert zero_per["bias"] < 0.5 * zero_one["bias"]
    bias_err = lambda q: float(np.sum((w[:, f] - q.weights(groups)[:, f]) ** 2))  # noqa: E731
    assert bias_err(per_group) < 0.5 * bias_err(one_scale)
    total_err = lambda q: float(np.sum((w - q.weights(groups)) ** 2))  # noqa: E731
    assert total_err(per_group) <= total_err(one_scale) * (1 + 1e-9)  # the gains are chosen, never imposed
    for q in (per_group, one_scale):
        assert np.abs(q.multiplicity).sum(1).max() <= 63
        assert q.multiplicity.min() >= P16.m_min and q.multiplicity.max() <= P16.m_max


def test_source_gains_stay_on_the_power_of_two_grid_within_the_configured_range():
    w = _weights_with_small_biases()
    w[:, 8] *= 0.1  # biases far below one recurrent copy
    q = quantise(w, np.zeros(len(w), np.int64), P16, 63, source_gains=(1 / 4, 2))
    for g in (q.input_gain, q.bias_gain):
        assert 1 / 4 <= g <= 2 and float(np.log2(g)).is_integer()
    assert q.bias_gain == 1 / 4  # tiny biases want the finest step allowed
    with pytest.raises(ValueError, match="source gains"):
        ConstraintConfig(min_source_gain=2.0)


@pytest.fixture(scope="module")
def small_bias_net():
    task = seq_digits().subset(240, 60)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 32, 10, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))
    with torch.no_grad():
        model.w_bias.copy_(torch.as_tensor(0.1 * _weights_with_small_biases(32)[:, 8]))  # ~1/20 of a recurrent weight

    def run(**kw):
        return constrain(model, task, ConstraintConfig(max_fan_in=63, n_core_groups=2, qat=TrainConfig(epochs=0), **kw))

    return run(), run(per_group_scales=False, error_aware=False), task


def test_constrain_keeps_bias_precision_and_the_model_uses_copy_weight_times_multiplicity(small_bias_net):
    net, plain, _ = small_bias_net
    assert net.bias_gain < 1.0 and plain.bias_gain == plain.input_gain == 1.0
    assert zero_fractions(net.multiplicity, 8)["bias"] < zero_fractions(plain.multiplicity, 8)["bias"]
    f = 8
    w = stacked_weights(net.model)
    q = net.scale[net.unit_group]
    assert np.allclose(w[:, f + 1:], q[:, None] * net.multiplicity[:, f + 1:], atol=1e-6)  # recurrent: the core's copy
    assert np.allclose(w[:, :f], net.input_gain * q[:, None] * net.multiplicity[:, :f], atol=1e-6)
    assert np.allclose(w[:, f], net.bias_gain * q * net.multiplicity[:, f], atol=1e-6)
    assert np.allclose(w, net.weights(), atol=1e-6)
    assert net.summary()["bias_gain"] == net.bias_gain


def test_the_spike_generator_realises_the_source_gains(small_bias_net):
    net, _, task = small_bias_net
    net = copy.deepcopy(net)
    net.input_gain, net.bias_gain = 2.0, 0.25  # any gains: the mapping and the encoding must follow them
    time = TimeMapping(retention=0.85, steps_per_sample=2)
    mapped = map_network(net, time)
    assert (mapped.input_rate_gain, mapped.bias_rate_gain) == (2.0, 0.25)
    assert mapped.summary()["source_rate_gains"] == {"input": 2.0, "bias": 0.25}
    x, lengths = task.x_test[:6], task.lengths_test[:6]
    stim = encode_for(mapped, x, lengths, seed=0)
    dur_s = (stim.sample_end_us - stim.sample_start_us).sum() / 1e6
    f = task.n_features
    bias_spikes = int(np.sum(stim.channels == f))
    assert bias_spikes == pytest.approx(0.25 * time.r_max_hz * dur_s, abs=6 + 1)  # ΣΔ: within one spike per sample
    ideal_in = 2.0 * time.r_max_hz * time.dt_step_s * time.steps_per_sample * x.sum()
    assert int(np.sum(stim.channels < f)) == pytest.approx(ideal_in, abs=6 * f + 1)


def test_fan_in_aware_training_leaves_nothing_to_prune():
    task = seq_digits().subset(100, 20)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 48, 10, kind="leaky", retention=0.85, steps_per_sample=1, saturation=1.0))
    mask = FanInMask(model, P16, 30)
    model.weight_transform = mask
    from neurolab_gui.core.conversion.training import train

    train(model, task, TrainConfig(epochs=1, lr=1e-2), after_epoch=mask.refit)
    mask.bake()
    assert model.weight_transform is None
    w = stacked_weights(model)
    assert (w != 0).sum(1).max() <= 30  # the float model holds only what the CAM budget keeps
    q = quantise(w, np.zeros(len(w), np.int64), P16, 30, source_gains=None)
    assert np.all((q.multiplicity != 0) == (w != 0))  # and the projection keeps all of it
