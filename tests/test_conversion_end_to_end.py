"""A tiny conversion end to end on the emulated board (through the USB emulation): well above chance."""

import json

import torch

from neurolab_gui.core.conversion.constrain import ConstraintConfig
from neurolab_gui.core.conversion.pipeline import PipelineConfig, convert, train_model
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig


def test_tiny_conversion_on_the_emulator_is_well_above_chance(tmp_path):
    torch.set_num_threads(1)
    task = seq_digits().subset(700, 40)
    cfg = PipelineConfig(
        n_hidden=32,
        train=TrainConfig(epochs=25, lr=2e-2, noise_std=0.1),
        constraint=ConstraintConfig(max_fan_in=63, qat=TrainConfig(epochs=2, lr=2e-3, noise_std=0.1)),
        stages=("board_ideal",),
        transfer_rounds=1,
    )
    model, trained = train_model(task, cfg)
    assert trained.test_accuracy > 0.5
    seen = []
    result = convert(model, task, cfg, progress=lambda p: seen.append(p.fraction))
    report = result.report
    board = report.stage("board_ideal")
    assert board is not None and board.n_samples == 40
    assert board.accuracy > 0.5, report.table()  # chance is 0.1
    assert board.spikes_per_inference > 0 and board.synaptic_events_per_inference > board.spikes_per_inference
    assert [s.name for s in report.stages] == ["float", "constrained", "board_ideal"]
    assert seen and max(seen) == 1.0 and all(0.0 <= f <= 1.0 for f in seen)
    data = json.loads(report.write_json(tmp_path / "r.json").read_text())
    assert data["stages"][2]["name"] == "board_ideal"
    assert "loss vs constr." in report.table()


def test_paired_comparison_gives_agreement_and_the_paired_standard_error():
    import numpy as np
    import pytest

    from neurolab_gui.core.conversion.report import StageResult, paired_comparison

    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    reference = np.array([0, 1, 2, 3, 0, 1, 2, 0])  # 7 correct
    stage = np.array([0, 1, 2, 0, 0, 1, 1, 3])  # 6 correct; differs from the reference on 3 samples
    agreement, se = paired_comparison(stage, reference, labels)
    assert agreement == pytest.approx(5 / 8)
    d = np.array([0, 0, 0, 1, 0, 0, 1, -1], float)  # reference correct minus stage correct
    assert se == pytest.approx(100 * d.std(ddof=1) / np.sqrt(8))
    row = StageResult("board_ideal", 6 / 8, 8, reference_accuracy=7 / 8, agreement=agreement, loss_se_pp=se)
    assert row.loss_pp() == pytest.approx(12.5)
    with pytest.raises(ValueError, match="one length"):
        paired_comparison(stage[:3], reference, labels)
