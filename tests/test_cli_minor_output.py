"""Newcomer report, finding 8: what commands print on success and on a file of the wrong kind.

Each case drives the CLI's ``main`` as a user does and checks the exit code and the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from neurolab_gui.cli import main
from tests.cli_output import one_error_line


@pytest.mark.parametrize("kind, what", [("nwb", "units"), ("aedat", "spikes"), ("csv", "rows")])
def test_export_prints_the_file_it_wrote(tmp_path, capsys, kind, what):
    from tests.test_export_output import _session

    session = _session(tmp_path / "s.h5")
    out = tmp_path / f"x.{kind}"
    assert main(["export", str(session), f"--{kind}", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and out.is_file()
    lines = captured.out.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"wrote {out} (") and lines[0].endswith(f" {what})"), lines


def test_convert_help_names_where_the_report_goes_without_json(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["convert", "--help"])
    assert stop.value.code == 0
    assert "default: conversion_report.json in the current directory" in " ".join(capsys.readouterr().out.split())


def test_robot_demo_refuses_a_checkpoint_for_another_task_before_any_progress_or_board(tmp_path, capsys, monkeypatch):
    """Bug: "converting ... and deploying it on EMU00000" was printed, and the board opened, before the refusal."""
    from neurolab_gui.cli import robot
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.models import RateRNN, RNNConfig

    def no_board(*args, **kwargs):
        raise AssertionError("the board was opened")

    monkeypatch.setattr(robot, "open_board", no_board)
    torch.manual_seed(0)
    digits = save_checkpoint(tmp_path / "digits.pt", RateRNN(RNNConfig(8, 16, 10, "leaky", 0.85, 4)), {"task": "seq_digits"})
    assert main(["robot", "demo", "--network", str(digits), "--duration", "1"]) == 2
    captured = capsys.readouterr()
    one_error_line(captured.err, "digits.pt", "8 inputs and 10 outputs", "--task phototaxis")
    assert captured.out == ""
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint")
    assert main(["robot", "demo", "--network", str(junk), "--duration", "1"]) == 2
    captured = capsys.readouterr()
    one_error_line(captured.err, "junk.pt")
    assert captured.out == ""


def test_info_on_a_file_that_is_not_a_session_says_so(tmp_path, capsys):
    data = tmp_path / "mydata.npz"
    np.savez(data, x=np.zeros((2, 3, 1)), labels=np.array([0, 1]))
    assert main(["info", str(data)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err, data)
    assert line.startswith(f"error: {data} is not a NeuroLab session file (") and "neurolab record" in line
    assert "signature not found" not in line and captured.out == ""
    assert Path(data).read_bytes()[:2] == b"PK"  # left as it was
