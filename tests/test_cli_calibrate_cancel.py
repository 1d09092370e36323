"""``neurolab calibrate`` and ``neurolab deploy`` when interrupted or when the profile cannot be saved.

The Ctrl-C tests run the CLI as a subprocess (``tests/cli_board_dump.py``, which dumps the emulator's
own bias table when the board is opened and just before it is closed) and send a real SIGINT when a
given progress line appears on its stdout.  Profiles go under ``tmp_path`` (``XDG_DATA_HOME``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from neurolab_gui.cli import main
from tests.unwritable_folder import refuse_files_in

WRAPPER = Path(__file__).with_name("cli_board_dump.py")
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def tiny_model(tiny_foreign_model) -> tuple[Path, Path]:
    return tiny_foreign_model


def interrupt_at(tmp_path: Path, trigger: str, cli_args: list[str], options: tuple[str, ...] = ()):
    """Run the CLI in a subprocess, send SIGINT when a stdout line contains ``trigger``; returns
    ``(returncode, stdout, stderr, table at open, table at close)``."""
    dumps = tmp_path / "dumps"
    dumps.mkdir()
    env = dict(os.environ, XDG_DATA_HOME=str(tmp_path / "xdg"), PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    proc = subprocess.Popen([sys.executable, str(WRAPPER), str(dumps), *options, "--", *cli_args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    seen = []
    try:
        for line in proc.stdout:
            seen.append(line)
            if trigger in line:
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert any(trigger in line for line in seen), "".join(seen) + err
    tables = [json.loads((dumps / f"{tag}.json").read_text()) for tag in ("open", "close")]
    return proc.returncode, "".join(seen) + out, err, *tables


def differing(before: dict, after: dict) -> list[str]:
    return [key for key in before if before[key] != after[key]]


def test_ctrl_c_during_the_accuracy_runs_restores_the_board_and_keeps_the_saved_profile(tmp_path, tiny_model):
    checkpoint, data = tiny_model
    profile = tmp_path / "p.json"
    # the first batch of the "before" board run: the before-network is on the board, its run goes on
    rc, out, err, at_open, at_close = interrupt_at(
        tmp_path, "  board before:", ["calibrate", "--board", "emulator:7", "--task", str(data), "--checkpoint", str(checkpoint),
                                      "--n-test", "40", "--profile", str(profile)], ("--fast-calibration",))
    assert rc == 130, out + err
    assert differing(at_open, at_close) == []  # flags included
    assert "Traceback" not in err
    last = out.strip().splitlines()[-1]
    assert last == f"cancelled after the calibration; the board was restored to its starting biases and the profile is saved at {profile}"
    saved = json.loads(profile.read_text())
    assert saved["serial"] == "EMU00007" and saved["biases"]
    assert "accuracy" not in saved["summary"]  # the profile saved before the accuracy runs


def test_ctrl_c_during_a_deploy_restores_the_boards_biases(tmp_path, tiny_model):
    checkpoint, data = tiny_model
    # during the weight-bias matching: the deployment writes biases round by round
    rc, out, err, at_open, at_close = interrupt_at(
        tmp_path, "transfer AMPA round 1", ["deploy", str(checkpoint), "--task", str(data), "--board", "emulator:8", "--n-test", "40",
                        "--qat-epochs", "0"])
    assert rc == 130, out + err
    assert differing(at_open, at_close) == []
    assert "Traceback" not in err
    assert out.strip().splitlines()[-1] == "deployment cancelled; the board's biases are back to those it had before the deploy"


def test_ctrl_c_during_a_core_calibration_restores_the_boards_own_biases(tmp_path):
    # hostile API report #2: the cancelled core calibration wrote its start set (samna_recommended)
    # on the cores, not the biases the board had, while saying "restored to its starting biases"
    rc, out, err, at_open, at_close = interrupt_at(
        tmp_path, "tune core biases: round 1", ["calibrate", "--board", "emulator:7", "--cores", "1", "--profile",
                                                str(tmp_path / "p.json")])
    assert rc == 130, out + err
    assert differing(at_open, at_close) == []  # flags included
    assert "Traceback" not in err
    assert out.strip().splitlines()[-1] == "cancelled; the board was restored to its starting biases"
    assert not (tmp_path / "p.json").exists()


def refuse_calibration(monkeypatch) -> None:
    """Any calibration started fails the test: the refusals below come before any chip time."""
    from neurolab_gui.core.calibration import board_calibration, engine

    def started(*args, **kwargs):
        raise AssertionError("the calibration started")

    monkeypatch.setattr(board_calibration, "calibrate_board", started)
    monkeypatch.setattr(engine, "calibrate_network", started)


@pytest.mark.parametrize("name", ["existing.txt", "myprof"])
def test_a_profile_name_that_is_not_json_is_refused_up_front(tmp_path, monkeypatch, capsys, name):
    refuse_calibration(monkeypatch)
    (tmp_path / "existing.txt").write_text("keep me")
    with pytest.raises(SystemExit) as stop:
        main(["calibrate", "--board", "emulator:9", "--cores", "1", "--profile", str(tmp_path / name)])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "argument --profile" in err and "is not a .json file name" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["existing.txt"]  # no folder made, the file untouched
    assert (tmp_path / "existing.txt").read_text() == "keep me"


@pytest.mark.parametrize("problem", ["read-only", "under a file"])
def test_an_unwritable_default_profile_folder_is_refused_before_the_calibration(tmp_path, monkeypatch, capsys, problem):
    refuse_calibration(monkeypatch)
    if problem == "read-only":
        xdg = tmp_path / "xdg"
        xdg.mkdir()
        refuse_files_in(monkeypatch, xdg)  # chmod does not stop root, who runs some test machines
        why = f"directory {xdg} is not writable (Permission denied)"
    else:
        (tmp_path / "file").write_text("")
        xdg = tmp_path / "file" / "xdg"
        why = f"{tmp_path / 'file'} is not a directory"
    monkeypatch.setenv("XDG_DATA_HOME", str(xdg))
    assert main(["calibrate", "--board", "emulator:9", "--cores", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write the calibration profile {xdg}/neurolab/calibration/EMU00009.json: {why}; the default "
                   "profile folder (set XDG_DATA_HOME or pass --profile FILE.json)"]


def test_a_profile_save_that_fails_after_the_calibration_is_one_error_line(tmp_path, monkeypatch, capsys):
    import errno

    from neurolab_gui.core.calibration import profile

    target = tmp_path / "p.json"

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(profile, "save_profile", disk_full)
    assert main(["calibrate", "--board", "emulator:9", "--cores", "1", "--profile", str(target)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: cannot write the calibration profile {target}: No space left on device ({target}); "
                   "the calibration's biases are on the board but not saved"]
    assert not target.exists()
