"""A ``--board`` that is named well but cannot be opened: every command answers one ``error:`` line, exit code 1.

``robot demo --board NOSUCH`` ended in a ``LookupError`` traceback; ``convert``, ``deploy``, ``record``,
``calibrate`` and ``robot demo`` now open their board one way (``cli.board_option.open_board``).
No DYNAP-SE1 is plugged into a test machine, so the serial ``NOSUCH`` is never found.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurolab_gui.cli import main


@pytest.fixture
def tiny_model_and_data(tmp_path: Path) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    np.savez(tmp_path / "data.npz", x=rng.normal(0, 1, (40, 5, 2)).astype(np.float32), labels=np.arange(40) % 2)
    torch.manual_seed(0)
    rnn, readout = nn.RNN(2, 8, nonlinearity="relu", batch_first=True), nn.Linear(8, 2)
    torch.save({"rnn": rnn.state_dict(), "readout": readout.state_dict(), "meta": {"nonlinearity": "relu"}},
               tmp_path / "model.pt")
    return str(tmp_path / "model.pt"), str(tmp_path / "data.npz")


@pytest.mark.parametrize("command", ["robot", "calibrate", "deploy", "convert"])
def test_a_board_that_is_not_there_is_one_error_line(command, tiny_model_and_data, tmp_path, capsys):
    model, data = tiny_model_and_data
    report = tmp_path / "report.json"
    argv = {
        "robot": ["robot", "demo", "--duration", "1"],
        "calibrate": ["calibrate", "--profile", str(report)],
        "deploy": ["deploy", model, "--task", data, "--n-test", "2"],
        "convert": ["convert", model, "--task", data, "--n-test", "2", "--json", str(report)],
    }[command]
    assert main([*argv, "--board", "NOSUCH"]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: cannot open the board NOSUCH: ") and err.count("\n") == 1, err
    assert "Traceback" not in out + err and "error" not in out
    assert not report.exists()


def test_record_reports_a_board_that_is_not_there_as_the_other_commands_do(tmp_path):
    """``record`` logged a WARNING, then printed ``error: could not open ...`` with exit code 2 (hostile report #9);
    it now opens its board the one way (``open_board``).  A subprocess, so that the log line would show on stderr."""
    import os
    import subprocess
    import sys

    out = tmp_path / "r.h5"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run([sys.executable, "-m", "neurolab_gui", "record", "--board", "NOSUCH", "--seconds", "1", str(out)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.startswith("error: cannot open the board NOSUCH: ") and done.stderr.count("\n") == 1, done.stderr
    assert done.stdout == ""
    assert list(tmp_path.iterdir()) == []
