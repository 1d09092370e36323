"""How a command's job ends when it fails: a user error is one ``error:`` line and exit code 2, a bug keeps its traceback.

The user error here is a bare ``nn.RNN`` state_dict of a tanh RNN (nn.RNN's default), which the
conversion refuses inside the job (the README documents it).  ``convert``, ``deploy`` and
``robustness`` all run the conversion as a job (``neurolab_gui.cli.job_runner.run_job``); before,
``convert`` printed the job's ERROR log with a traceback before its error line, and ``deploy`` and
``robustness`` ended with two tracebacks and exit code 1.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurolab_gui.cli.job_runner import run_job
from neurolab_gui.core.jobs import Job


@pytest.fixture
def tanh_model_and_data(tmp_path: Path) -> tuple[Path, Path]:
    """An untrained 8-unit tanh RNN without a declared nonlinearity, and data labelled by its own decisions
    (two balanced classes), so it fits as tanh (accuracy 1) far better than as ReLU."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (60, 5, 2)).astype(np.float32)
    torch.manual_seed(0)
    rnn, readout = nn.RNN(2, 8, batch_first=True), nn.Linear(8, 2)
    with torch.no_grad():
        out, _ = rnn(torch.as_tensor(x))
        margin = (readout(out[:, -1]) @ torch.tensor([-1.0, 1.0])).numpy()
        readout.bias[1] -= float(np.median(margin))
        labels = readout(out[:, -1]).argmax(1).numpy()
    np.savez(tmp_path / "data.npz", x=x, labels=labels)
    torch.save({"rnn": rnn.state_dict(), "readout": readout.state_dict()}, tmp_path / "tanh.pt")
    return tmp_path / "tanh.pt", tmp_path / "data.npz"


RUN_COMMANDS = """
import sys
from neurolab_gui.cli import main

for argv in (line.split() for line in sys.argv[1:]):
    print(f"=== {argv[0]}", file=sys.stderr, flush=True)
    print(f"rc {main(argv)}", file=sys.stderr, flush=True)
"""


def test_a_model_the_job_refuses_is_one_error_line_and_exit_2_in_every_command(tanh_model_and_data, tmp_path):
    model, data = tanh_model_and_data
    report = tmp_path / "report.json"
    commands = {
        "convert": f"convert {model} --task {data} --n-test 2 --stages board_ideal --qat-epochs 0 --json {report}",
        "deploy": f"deploy {model} --task {data} --n-test 2 --qat-epochs 0",
        "robustness": f"robustness {model} --task {data} --chips 1 --n-test 2 --n-calibration 2 --qat-epochs 0 "
                      f"--json {report}",
    }
    # one interpreter for the three (the logging set up by the first main() stays, as in separate runs)
    done = subprocess.run([sys.executable, "-c", RUN_COMMANDS, *commands.values()], capture_output=True, text=True,
                          timeout=240, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    parts = done.stderr.split("=== ")[1:]
    assert [p.split("\n", 1)[0] for p in parts] == list(commands)
    for part in parts:
        lines = part.strip().splitlines()[1:]
        assert lines[-1] == "rc 2", part
        errors = [line for line in lines if "error" in line.lower()]
        assert len(errors) == 1 and errors[0].startswith("error: ") and "tanh RNN" in errors[0], part
    assert not report.exists()  # nothing written half-way


def _refuse(progress, cancel):
    raise ValueError("the file names an unknown bias")


def _crash(progress, cancel):
    return {}["missing"]  # a bug: KeyError


def test_a_user_error_in_a_job_gives_its_traceback_only_when_asked(caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="neurolab_gui.core.jobs")
    assert run_job(Job("refusing", _refuse), None, cancelled="cancelled") == 2
    err = capsys.readouterr().err
    assert err == "error: the file names an unknown bias\n"
    failures = [r for r in caplog.records if r.exc_info]
    assert [r.levelno for r in failures] == [logging.DEBUG]  # not an ERROR with a traceback on the terminal
    assert run_job(Job("refusing", _refuse), None, cancelled="cancelled", verbose=1) == 2  # -v
    err = capsys.readouterr().err
    assert err.startswith("error: the file names an unknown bias\nTraceback") and "ValueError" in err


def test_a_bug_in_a_job_keeps_its_traceback_and_exits_1(caplog, capsys):
    caplog.set_level(logging.DEBUG, logger="neurolab_gui.core.jobs")
    assert run_job(Job("crashing", _crash), None, cancelled="cancelled") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: internal error in the crashing job (KeyError: 'missing')")
    assert "traceback is logged above" in err
    [failure] = [r for r in caplog.records if r.exc_info]
    assert failure.levelno == logging.ERROR and failure.exc_info[0] is KeyError
