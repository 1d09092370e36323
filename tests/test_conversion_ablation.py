"""The constraint ablation: rows in the pipeline's order, anchored to the report's float and constrained stages."""

import json

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion.ablation import ABLATION_STEPS, limit_fan_in, sigma_delta_inputs
from neurolab_gui.core.conversion.constrain import (
    ConstraintConfig,
    column_energy,
    quantise,
    source_gains_of,
    stacked_weights,
    to_hardware_dynamics,
)
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.pipeline import PipelineConfig, constrain_model, convert, run_ablation, train_model
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig, evaluate


@pytest.fixture(scope="module")
def tiny():
    torch.set_num_threads(1)
    task = seq_digits().subset(200, 60)
    # a dense float model (no fan-in-aware training), so that the fan-in row has something to prune
    cfg = PipelineConfig(n_hidden=24, steps_per_sample=2, stages=(), ablation=True, train_fan_in=False,
                         train=TrainConfig(epochs=2, lr=2e-2, noise_std=0.1),
                         constraint=ConstraintConfig(max_fan_in=20, n_core_groups=2,
                                                     qat=TrainConfig(epochs=1, lr=2e-3, noise_std=0.1)))
    model, _ = train_model(task, cfg)
    return task, cfg, model


def _fraction_zero(a) -> float:
    return float(np.mean(np.asarray(a) == 0))


def test_ablation_rows_follow_the_pipeline_and_end_at_the_constrained_stage(tiny, tmp_path):
    task, cfg, model = tiny
    result = convert(model, task, cfg)
    report = result.report
    rows = report.ablation
    assert [r.constraint for r in rows] == list(ABLATION_STEPS)
    assert rows[0].accuracy == report.stage("float").accuracy
    # the model was trained with the pipeline's dynamics and saturation: those rows change nothing
    assert rows[1].accuracy == rows[2].accuracy == rows[0].accuracy
    assert rows[1].changed["what"].startswith("nothing")
    assert rows[-1].accuracy == report.stage("constrained").accuracy

    # zero fractions come from the weights the constrained model really uses
    net = result.constrained.model
    zero = rows[-1].changed["zero"]
    assert zero["input"] == _fraction_zero(net.w_in.detach())
    assert zero["bias"] == _fraction_zero(net.w_bias.detach())
    assert zero["recurrent"] == _fraction_zero(net.w_rec.detach())
    # fan-in: 8 inputs + bias + 24 units = 33 sources, 20 allowed, so 13 of 33 go in every row
    pruned = rows[3].changed["pruned"]
    total_pruned = (pruned["input"] * 8 + pruned["bias"] + pruned["recurrent"] * 24) / 33
    assert total_pruned == pytest.approx(13 / 33)
    # the quantised row is the grid the constrain step starts QAT from, with the same groups
    hardware = to_hardware_dynamics(model, cfg.retention, cfg.steps_per_sample, cfg.saturation)
    energy = column_energy(hardware, task.x_train, task.lengths_train) if cfg.constraint.error_aware else None
    q = quantise(stacked_weights(hardware), result.constrained.unit_group, cfg.constraint.precision, cfg.constraint.max_fan_in,
                 energy, source_gains_of(cfg.constraint))
    assert rows[4].changed["zero"]["recurrent"] == _fraction_zero(q.multiplicity[:, 9:])
    assert rows[4].changed["zero"]["bias"] == _fraction_zero(q.multiplicity[:, 8])
    assert rows[4].changed["source_gains"] == {"input": q.input_gain, "bias": q.bias_gain}
    assert rows[4].changed["max_copies_used"] <= cfg.constraint.max_fan_in
    assert 0.0 <= rows[4].changed["one_scale_per_core_accuracy"] <= 1.0

    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert [r["constraint"] for r in data["ablation"]] == list(ABLATION_STEPS)
    assert data["constraint_cost_pp"] == pytest.approx(100 * (data["stages"][0]["accuracy"] - data["stages"][1]["accuracy"]))
    assert "constraint ablation" in report.table() and "QAT" in report.table()


def test_without_qat_the_final_row_is_the_quantised_network_and_an_elman_model_changes_dynamics(tiny):
    task, cfg, _ = tiny
    torch.manual_seed(3)
    elman = RateRNN(RNNConfig(task.n_features, 16, task.n_classes, kind="elman"))
    cfg0 = PipelineConfig(n_hidden=16, steps_per_sample=2, stages=(),
                          constraint=ConstraintConfig(max_fan_in=63, qat=TrainConfig(epochs=0)))
    constrained = constrain_model(elman, task, cfg0)
    rows = run_ablation(elman, constrained, task, cfg0)
    assert rows[0].accuracy == evaluate(elman, task.x_test, task.y_test, task.lengths_test)[0]
    assert "kind elman -> leaky" in rows[1].changed["what"]
    assert "saturation None -> 1.0" in rows[2].changed["what"]
    assert rows[-1].changed["multiplicities_changed"] == 0.0
    assert rows[-1].accuracy == rows[4].accuracy  # QAT with no epochs leaves the quantised network
    assert rows[-1].accuracy == evaluate(constrained.model, task.x_test, task.y_test, task.lengths_test)[0]


def test_sigma_delta_inputs_keep_the_spike_count_within_one_of_the_ideal():
    rng = np.random.default_rng(0)
    x = rng.random((5, 7, 3)).astype(np.float32)
    enc = sigma_delta_inputs(x, 4, 4.5, seed=1)
    assert enc.shape == (5, 28, 3)
    counts = np.cumsum(enc * 4.5, axis=1)
    ideal = np.cumsum(np.repeat(x, 4, axis=1) * 4.5, axis=1)
    assert np.all(np.abs(counts - ideal) <= 1.0 + 1e-5)
    assert np.allclose(enc * 4.5, np.rint(enc * 4.5), atol=1e-5)  # whole spikes only


def test_fan_in_limit_keeps_each_rows_largest_weights():
    w = np.array([[0.1, -3.0, 0.5, 2.0], [0.0, 0.0, 1.0, -0.2]])
    assert limit_fan_in(w, 2).tolist() == [[0.0, -3.0, 0.0, 2.0], [0.0, 0.0, 1.0, -0.2]]


def test_convert_cli_ablation_flag_writes_the_rows_and_the_cost(tmp_path, capsys):
    from neurolab_gui.cli import main
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint

    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 8, 10, kind="leaky", retention=0.85, steps_per_sample=4, saturation=1.0, integrator="heun"))
    ckpt = save_checkpoint(tmp_path / "m.pt", model, {"task": "seq_digits"})
    out = tmp_path / "r.json"
    assert main(["convert", str(ckpt), "--stages", "", "--qat-epochs", "0", "--ablation", "--json", str(out)]) == 0
    assert "constraint ablation" in capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [r["constraint"] for r in data["ablation"]] == list(ABLATION_STEPS)
    assert data["ablation"][-1]["accuracy"] == data["stages"][1]["accuracy"]
    assert main(["convert", str(ckpt), "--stages", "", "--qat-epochs", "0", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["ablation"] == []  # off by default
