"""A ``--board`` that is named well but cannot be opened: every command answers one ``error:`` line, exit code 1.

``robot demo --board NOSUCH`` ended in a ``LookupError`` traceback; ``convert``, ``deploy``,
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
