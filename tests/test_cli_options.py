"""Command-line options checked before any work starts, and output paths checked before the work.

Every bad value ends in one ``error: ...`` line naming the option and exit code 2, with no
traceback and no file written; a checkpoint names the data it was trained on so that later
commands run on the same data (hostile test report, bugs 3, 4, 6, 7, 10, 11, 13, 16, 19).
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from neurolab_gui.cli import main
from neurolab_gui.core.conversion.checkpoint import load_checkpoint, save_checkpoint
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig


def _usage_error(capsys, argv: list[str], option: str) -> str:
    """Run ``argv``; assert argparse's exit 2 with one ``error:`` line naming ``option``; return that line."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    captured = capsys.readouterr()
    errors = [line for line in captured.err.splitlines() if "error:" in line]
    assert exc.value.code == 2, argv
    assert len(errors) == 1 and option in errors[0], (argv, captured.err)
    assert "Traceback" not in captured.err + captured.out
    return errors[0]


def _write_task(path: Path, n_features: int = 3, n_classes: int = 3, n_train: int = 24, n_test: int = 7) -> Path:
    """A tiny data file with an explicit test split of ``n_test`` samples (its count identifies it)."""
    rng = np.random.default_rng(0)
    y, yt = np.arange(n_train) % n_classes, np.arange(n_test) % n_classes
    x = rng.uniform(0, 1, (n_train, 4, n_features)) + y[:, None, None] * 0.0
    xt = rng.uniform(0, 1, (n_test, 4, n_features))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, x=np.clip(x, 0, 1), labels=y, x_test=xt, labels_test=yt)
    return path


def _tiny_checkpoint(path: Path, task: str, n_inputs: int = 3, n_outputs: int = 3) -> Path:
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(n_inputs, 4, n_outputs, "leaky", 0.85, 1))
    return save_checkpoint(path, model, {"task": task})


# ---- train ------------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--hidden", "0"), ("--hidden", "-5"), ("--lr", "nan"), ("--lr", "-1"), ("--lr", "inf"), ("--batch-size", "0"),
    ("--batch-size", "-4"), ("--retention", "1.5"), ("--retention", "nan"), ("--retention", "1"),
    ("--steps-per-sample", "0"), ("--epochs", "-1"), ("--noise", "nan"), ("--noise", "-1"), ("--device", "tpu"),
])
def test_train_refuses_bad_numbers_before_training(tmp_path, capsys, option, value):
    out = tmp_path / "m.pt"
    _usage_error(capsys, ["train", "--task", "ecg", "--out", str(out), option, value], option)
    assert not out.exists()


def test_train_refuses_an_output_path_it_cannot_write(tmp_path, capsys):
    (tmp_path / "dir.pt").mkdir()
    line = _usage_error(capsys, ["train", "--task", "ecg", "--out", str(tmp_path / "dir.pt")], "--out")
    assert "is a directory" in line
    line = _usage_error(capsys, ["train", "--task", "ecg", "--out", str(tmp_path / "nope" / "m.pt")], "--out")
    assert "does not exist" in line and not (tmp_path / "nope").exists()


def test_train_writes_no_checkpoint_of_a_diverged_model(tmp_path, capsys, monkeypatch):
    from neurolab_gui.core.conversion import pipeline
    from neurolab_gui.core.conversion.training import TrainResult

    def diverging(task, cfg, progress=None, cancel=None):
        model = RateRNN(RNNConfig(task.n_features, 4, task.n_classes, "leaky", 0.85, 1))
        with torch.no_grad():
            model.w_in.fill_(float("nan"))
        return model, TrainResult(train_loss=[float("nan")], train_accuracy=[0.3], test_accuracy=0.3)

    monkeypatch.setattr(pipeline, "train_model", diverging)
    data = _write_task(tmp_path / "d.npz")
    out = tmp_path / "m.pt"
    assert main(["train", "--task", str(data), "--out", str(out)]) == 1
    text = capsys.readouterr().err
    assert "error: the training diverged (final training loss nan)" in text and "Traceback" not in text
    assert not out.exists()


# ---- bug 3: the checkpoint names the data it was trained on -----------------------------------

def test_a_checkpoint_trained_on_a_data_file_named_like_a_built_in_task_keeps_running_on_that_file(
        tmp_path, capsys, monkeypatch):
    """shadow/phototaxis.npz: 16 features, 3 classes like the built-in robot task, 7 test samples (not 400)."""
    monkeypatch.chdir(tmp_path)
    data = _write_task(tmp_path / "shadow" / "phototaxis.npz", n_features=16, n_test=7)
    assert main(["train", "--task", "shadow/phototaxis.npz", "--epochs", "1", "--hidden", "4", "--steps-per-sample", "1",
                 "--out", "m.pt"]) == 0
    assert load_checkpoint(tmp_path / "m.pt").metadata["task"] == str(data.resolve())
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the stored path is absolute: found from any working directory
    capsys.readouterr()
    assert main(["convert", str(tmp_path / "m.pt"), "--stages", "", "--qat-epochs", "0", "--json", "r.json"]) == 0
    report = json.loads((elsewhere / "r.json").read_text())
    assert {s["n_samples"] for s in report["stages"]} == {7}
    capsys.readouterr()
    assert main(["deploy", str(tmp_path / "m.pt"), "--board", "emulator:3", "--n-test", "100", "--qat-epochs", "0"]) == 0
    assert "accuracy on 7 test samples" in capsys.readouterr().out

    data.unlink()  # the data file is gone: say which file and how to go on, do not guess
    assert main(["convert", str(tmp_path / "m.pt"), "--stages", "", "--qat-epochs", "0", "--json", "r2.json"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: ") and str(data.resolve()) in out and "--task" in out and "Traceback" not in out
    assert not (elsewhere / "r2.json").exists()


def test_a_checkpoint_that_names_only_a_file_stem_is_refused_naming_task(tmp_path, capsys):
    """What `neurolab train` stored before: the data file's stem, which is no task convert can find."""
    ckpt = _tiny_checkpoint(tmp_path / "old.pt", "data")
    assert main(["convert", str(ckpt), "--stages", "", "--qat-epochs", "0", "--json", str(tmp_path / "r.json")]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: ") and "'data'" in out and "--task" in out
    assert not (tmp_path / "r.json").exists()


# ---- convert, deploy, robustness --------------------------------------------------------------

@pytest.mark.parametrize("option, value", [
    ("--n-test", "0"), ("--n-test", "-1"), ("--brian2-samples", "0"), ("--qat-epochs", "-1"), ("--retention", "nan"),
    ("--steps-per-sample", "0"),
])
def test_convert_refuses_bad_numbers_before_any_work(tmp_path, capsys, option, value):
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", "ecg")
    _usage_error(capsys, ["convert", str(ckpt), "--json", str(tmp_path / "r.json"), option, value], option)
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("command", ["convert", "deploy", "robustness"])
def test_weight_levels_beyond_the_cam_are_refused(tmp_path, capsys, command):
    """129 levels are multiplicities -64..64: one weight filling a neuron's 64 CAM entries; more cannot be held."""
    data = _write_task(tmp_path / "d.npz")
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", str(data))
    assert main([command, str(ckpt), "--levels", "100000", "--n-test", "3"]) == 2
    out = capsys.readouterr().err
    assert out.startswith("error: weight precision needs at least 3 levels (ternary) and at most 129") and "Traceback" not in out
    assert "got 100000" in out


@pytest.mark.parametrize("command, option", [("convert", "--json"), ("convert", "--nir"), ("robustness", "--json"),
                                             ("demo", "--json")])
def test_output_paths_are_checked_before_any_work(tmp_path, capsys, command, option):
    """A long study or conversion must not be thrown away at the end for an unwritable report path."""
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", "ecg")
    (tmp_path / "dir.out").mkdir()
    for target, why in ((tmp_path / "dir.out", "is a directory"), (tmp_path / "nope" / "x.out", "does not exist")):
        line = _usage_error(capsys, [command, *([] if command == "demo" else [str(ckpt)]), option, str(target)], option)
        assert why in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.out", "m.pt"]  # no report, no .part file


def test_a_report_write_that_fails_half_way_leaves_the_old_report(tmp_path, monkeypatch):
    """write_replacing: the report is written beside its path and renamed; a failing write leaves the old file."""
    from drivers.user_files import write_replacing

    target = tmp_path / "r.json"
    target.write_text("old")

    def half(fd: int) -> None:  # the disk filled up: half of the data reached it
        os.ftruncate(fd, os.fstat(fd).st_size // 2)
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", half)
    with pytest.raises(OSError, match="No space"):
        write_replacing(target, '{"a": 1}')
    monkeypatch.undo()
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]
    assert write_replacing(target, '{"a": 1}') == target and target.read_text() == '{"a": 1}'


# ---- nir-import --------------------------------------------------------------------------------

@pytest.fixture()
def nir_file(tmp_path) -> Path:
    import nir

    from tests.test_conversion_nir_io import foreign_graph

    path = tmp_path / "g.nir"
    nir.write(path, foreign_graph())
    return path


@pytest.mark.parametrize("option, value", [
    ("--dt", "0"), ("--dt", "nan"), ("--r-max", "0"), ("--r-max", "inf"), ("--steps-per-sample", "0"),
    ("--steps-per-sample", "-3"),
])
def test_nir_import_refuses_zero_and_non_finite_values_instead_of_defaulting(nir_file, tmp_path, capsys, option, value):
    _usage_error(capsys, ["nir-import", str(nir_file), str(tmp_path / "o.pt"), option, value], option)
    assert not (tmp_path / "o.pt").exists()


def test_nir_import_checks_task_and_output_and_keeps_the_given_steps(nir_file, tmp_path, capsys, monkeypatch):
    from neurolab_gui.core.conversion.nir_io import NIRImportError, import_nir

    out = tmp_path / "o.pt"
    assert main(["nir-import", str(nir_file), str(out), "--task", "nosuchtask"]) == 2
    text = capsys.readouterr().err
    assert text.startswith("error: task 'nosuchtask' is neither a built-in task") and not out.exists()
    _usage_error(capsys, ["nir-import", str(nir_file), str(tmp_path)], "is a directory")
    data = _write_task(tmp_path / "d.npz", n_classes=6)  # the graph's 3 inputs and 6 outputs (checked on import)
    monkeypatch.chdir(tmp_path)
    assert main(["nir-import", str(nir_file), str(out), "--task", "d.npz", "--steps-per-sample", "3"]) == 0
    loaded = load_checkpoint(out)
    assert loaded.metadata["task"] == str(data.resolve()) and loaded.model.config.steps_per_sample == 3
    for kwargs in ({"dt_step_s": 0.0}, {"r_max_hz": math.inf}, {"steps_per_sample": 0}):  # the API, too
        with pytest.raises(NIRImportError):
            import_nir(nir_file, **kwargs)


# ---- robot demo --------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value", [("--duration", "nan"), ("--duration", "inf"), ("--duration", "-1"), ("--rate", "nan")])
def test_robot_demo_refuses_a_duration_that_never_ends(capsys, option, value):
    _usage_error(capsys, ["robot", "demo", option, value], option)


def test_robot_demo_config_refuses_nan_duration():
    from neurolab_gui.core.robot_demo import PhototaxisConfig

    for duration in (math.nan, math.inf):
        with pytest.raises(ValueError, match="finite"):
            PhototaxisConfig(duration_s=duration).validate()


def test_robot_demo_refuses_rate_for_a_converted_network_and_checks_record_first(tmp_path, capsys):
    assert main(["robot", "demo", "--network", "steering", "--rate", "25"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --rate applies to the hand-wired network only") and "50 Hz" in err
    _usage_error(capsys, ["robot", "demo", "--record", str(tmp_path / "nope" / "r.json")], "--record")


@pytest.mark.parametrize("value", ["", "  "])
def test_robot_demo_refuses_an_empty_port(capsys, value):
    """``--port "$ROBOT_PORT"`` with the variable unset ran the simulated robot and exited 0 (hostile report #10)."""
    line = _usage_error(capsys, ["robot", "demo", "--port", value], "--port")
    assert "must not be empty" in line


def test_robot_demo_port_that_cannot_be_opened_is_an_error_line(tmp_path, capsys):
    """A robot error starts with ``error:`` like every other (it said ``robot error:``; hostile report #10)."""
    report = tmp_path / "r.json"
    port = tmp_path / "ttyUSB9"
    assert main(["robot", "demo", "--port", str(port), "--duration", "1", "--record", str(report)]) == 1
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: cannot open robot port {port}: ") and captured.err.count("\n") == 1, captured.err
    assert "Traceback" not in captured.err + captured.out
    assert not report.exists()


# ---- calibrate ---------------------------------------------------------------------------------

@pytest.mark.parametrize("option, value, why", [
    ("--n-test", "0", "at least 1"), ("--saturation-hz", "inf", "finite"), ("--saturation-hz", "nan", "finite"),
    ("--saturation-hz", "1e9", "at most 10000 Hz"), ("--tau-ms", "inf", "finite"),
    ("--emulator-serial", "../../../escaped", "bad board"), ("--emulator-serial", "a/b", "bad board"),
    ("--emulator-serial", "EMU 1", "bad board"), ("--emulator-serial", "emulator", "not a serial"),
])
def test_calibrate_refuses_bad_values_before_the_board_is_opened(tmp_path, capsys, monkeypatch, option, value, why):
    from neurolab_gui.cli import calibrate as calibrate_cli

    monkeypatch.setattr(calibrate_cli, "_open", lambda _args: pytest.fail("the board must not be opened"))
    line = _usage_error(capsys, ["calibrate", "--profile", str(tmp_path / "p.json"), option, value], option)
    assert why in line and not (tmp_path / "p.json").exists()


def test_calibrate_checks_the_profile_path_before_calibrating(tmp_path, capsys):
    _usage_error(capsys, ["calibrate", "--profile", str(tmp_path)], "--profile")


def test_a_saturation_target_the_bias_range_cannot_reach_is_reported_as_missed():
    from neurolab_gui.core.calibration.board_calibration import BoardCalibration, BoardTargets
    from neurolab_gui.core.probing.bias_tuning import TuningResult

    tuning = TuningResult({}, {(0, 1): {"IF_RFR_N": 1988.4}, (0, 2): {"IF_RFR_N": 5100.0}})
    result = BoardCalibration(0, [1, 2], tuning, None, None, {}, 6.0, 1.0, None, BoardTargets(saturation_hz=5000.0))
    assert result.targets_missed() == ["chip 0 core 1: saturation target 5000 Hz not reached (closest 1988.4 Hz)"]


def test_calibrate_board_measures_a_core_named_twice_once(monkeypatch):
    """--cores 1 1 2: core 1 is set up and measured once (it cost a second measurement before)."""
    from neurolab_gui.core.calibration import board_calibration

    measured = []

    class Stop(Exception):
        """Ends the calibration after its first measurement."""

    def measure_dc_curves(board, addresses, sweep):
        measured.extend(addresses)
        raise Stop

    monkeypatch.setattr(board_calibration, "measure_dc_curves", measure_dc_curves)
    board = open_test_board()
    try:
        with pytest.raises(Stop):
            board_calibration.calibrate_board(board, 0, [1, 1, 2], targets=board_calibration.BoardTargets(saturation_hz=None))
    finally:
        board.close()
    cores = [a.core for a in measured]
    assert len(measured) == len(set(measured)) and sorted(set(cores)) == [1, 2] and cores.count(1) == cores.count(2)


def open_test_board():
    from neurolab_gui.core.boards import open_emulator

    return open_emulator("NLEMU-DUP", seed=1)


@pytest.mark.parametrize("command", ["deploy", "robustness"])
@pytest.mark.parametrize("option, value", [("--retention", "nan"), ("--retention", "inf"), ("--steps-per-sample", "0"),
                                           ("--qat-epochs", "-1")])
def test_deploy_and_robustness_refuse_the_numbers_convert_refuses(tmp_path, capsys, command, option, value):
    """They parse these options as plain numbers; the conversion inputs they share with convert check them."""
    ckpt = _tiny_checkpoint(tmp_path / "m.pt", str(_write_task(tmp_path / "d.npz")))
    assert main([command, str(ckpt), option, value, "--n-test", "3"]) == 2
    out = capsys.readouterr().err
    assert out.startswith(f"error: argument {option}: ") and "Traceback" not in out
