"""The Brian2 stage when Brian2 is first imported on a job's worker thread (the CLI's and the app's jobs).

``brian2/__init__`` installs a SIGINT handler, which Python allows only on the main thread, so a
first import on a worker thread failed with "signal only works in main thread";
``emulator.brian2_reference.import_brian2`` imports it without that handler.  Each test runs in a
fresh interpreter, the only place where Brian2 is surely not imported yet (the rest of the suite
imports it on the main thread).  The model is an untrained 8-unit ReLU RNN and the data 40 short
samples: the import path is under test, not the accuracy.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn


@pytest.fixture
def tiny_model_and_data(tmp_path: Path) -> tuple[Path, Path]:
    """A plain nn.RNN(relu) + nn.Linear checkpoint and a 2-class data file it fits."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (40, 5, 2)).astype(np.float32)
    np.savez(tmp_path / "data.npz", x=x, labels=np.arange(40) % 2)
    torch.manual_seed(0)
    rnn, readout = nn.RNN(2, 8, nonlinearity="relu", batch_first=True), nn.Linear(8, 2)
    torch.save({"rnn": rnn.state_dict(), "readout": readout.state_dict(),
                "meta": {"nonlinearity": "relu", "readout": "last_valid"}}, tmp_path / "model.pt")
    return tmp_path / "model.pt", tmp_path / "data.npz"


def _python(code: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_cli_convert_runs_the_brian2_stage(tiny_model_and_data, tmp_path):
    """The README's ``neurolab convert ... --stages brian2``: the conversion job's thread imports Brian2."""
    import json

    model, data = tiny_model_and_data
    report = tmp_path / "report.json"
    done = _python("import sys; from neurolab_gui.cli import main; sys.exit(main(sys.argv[1:]))",
                   "convert", str(model), "--task", str(data), "--stages", "brian2", "--brian2-samples", "1",
                   "--n-test", "2", "--qat-epochs", "0", "--json", str(report), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    assert any(line.startswith("brian2 ") for line in done.stdout.splitlines()), done.stdout
    stages = {s["name"]: s for s in json.loads(report.read_text())["stages"]}
    assert stages["brian2"]["n_samples"] == 1


APP_CONVERSION = """
import signal, sys
from neurolab_gui.core import workflows
from neurolab_gui.core.conversion.checkpoint import load_checkpoint
from neurolab_gui.core.session import Session

model, data = sys.argv[1:]
session = Session()
try:
    session.set_model(load_checkpoint(model).model)
    cfg = workflows.pipeline_config(data, session.model.config, qat_epochs=0, n_test_spiking=2, stages=["brian2"])
    cfg.brian2_samples = 1
    assert "brian2" not in sys.modules
    result = workflows.conversion_job(session, data, cfg, n_test=2).start().result(timeout=240)
    print("brian2 samples", result.report.stage("brian2").n_samples)
    # Brian2's Ctrl-C handler is not installed: Ctrl-C stays the CLI's cancel, whichever thread imported it
    print("SIGINT handler unchanged", signal.getsignal(signal.SIGINT) is signal.default_int_handler)
finally:
    session.close()
"""


def test_the_apps_conversion_job_runs_the_brian2_stage(tiny_model_and_data, tmp_path):
    """What the model panel starts (``workflows.conversion_job``), with only the Brian2 stage checked."""
    model, data = tiny_model_and_data
    done = _python(APP_CONVERSION, str(model), str(data), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "brian2 samples 1" in done.stdout
    assert "SIGINT handler unchanged True" in done.stdout
