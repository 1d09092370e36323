"""One constrained network per checkpoint, and the stage ``board_calibrated`` of ``convert``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion.constrain import ConstraintConfig
from neurolab_gui.core.conversion.pipeline import (
    CalibratedNetwork,
    PipelineConfig,
    config_for_task,
    constrained_network,
    convert,
    train_model,
)
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig


def _tiny():
    torch.set_num_threads(1)
    task = seq_digits().subset(300, 12)
    cfg = PipelineConfig(n_hidden=16, train=TrainConfig(epochs=3, lr=2e-2),
                         constraint=ConstraintConfig(max_fan_in=63, qat=TrainConfig(epochs=1, lr=2e-3)),
                         stages=("board_calibrated",), transfer_rounds=1, match_saturation=False)
    model, _ = train_model(task, cfg)
    return task, cfg, model


@pytest.mark.timeout(300)
def test_board_calibrated_stage_calibrates_the_mismatched_reference_board_and_runs_its_result():
    from neurolab_gui.core.boards import open_emulator

    task, cfg, model = _tiny()
    opened, calls = [], []

    def opener():
        board = open_emulator("NLEMU-MISMATCH", seed=0)
        opened.append(board)
        return board

    def calibrator(board, mapped, constrained, task_, progress, cancel):
        calls.append((board.serial, constrained.multiplicity.copy(), len(task_.x_train)))
        return CalibratedNetwork(mapped, constrained, chip_s=12.5, summary={"fake": True})

    result = convert(model, task, cfg, boards={"board_mismatch": opener}, calibrator=calibrator)
    report = result.report
    assert [s.name for s in report.stages] == ["float", "constrained", "board_calibrated"]
    stage = report.stage("board_calibrated")
    assert stage.n_samples == 12 and stage.extra["chip_seconds"] == 12.5 and stage.extra["calibration"] == {"fake": True}
    assert len(calls) == 1 and calls[0][0] == opened[0].serial and calls[0][2] == 300
    assert np.array_equal(calls[0][1], result.constrained.multiplicity)  # the conversion's constrained network
    assert stage.reference_accuracy is not None and "calibrated on this board" in stage.note
    assert "board_calibrated" in report.table()


def test_board_calibrated_without_a_calibrator_is_refused_before_any_board_opens():
    task, cfg, model = _tiny()
    with pytest.raises(ValueError, match="calibrator"):
        convert(model, task, cfg, boards={"board_mismatch": lambda: pytest.fail("a board was opened")})


@pytest.mark.timeout(300)
def test_calibrate_builds_the_constrained_network_convert_builds(tmp_path, tiny_foreign_model, monkeypatch, capsys):
    """`neurolab calibrate --task --checkpoint` hands the engine exactly convert's constrained network."""
    from neurolab_gui.cli import main
    from neurolab_gui.core.calibration import engine
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint
    from neurolab_gui.core.conversion.tasks import load_task

    model_path, data_path = tiny_foreign_model
    seen = {}

    class Stop(Exception):
        pass

    def fake_calibrate(board, mapped, net, task, **kwargs):
        seen["m"] = net.multiplicity.copy()
        raise Stop

    monkeypatch.setattr(engine, "calibrate_network", fake_calibrate)
    with pytest.raises(Stop):
        main(["calibrate", "--task", str(data_path), "--checkpoint", str(model_path), "--readout", "mean",
              "--profile", str(tmp_path / "p.json")])
    out = capsys.readouterr().out
    assert "imported model read out by rule 'mean' (option)" in out
    # the constrain step (minutes of QAT for a large network) says how it goes before the calibration
    assert "constraining the network to the chip" in out and "quantised before fine-tuning" in out and "epoch 1/" in out
    model = load_checkpoint(model_path).model
    task = load_task(str(data_path))
    _, net = constrained_network(model, task, config_for_task(task.name, model.config, readout_rule="mean"))
    assert np.array_equal(seen["m"], net.multiplicity)


def test_convert_help_documents_the_data_file_format(capsys):
    from neurolab_gui.cli import main

    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    out = capsys.readouterr().out
    for key in ("lengths_test", "mean, std", "np.savez", "--normalize", "--readout", "board_calibrated", "last_valid"):
        assert key in out
