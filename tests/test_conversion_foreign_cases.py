"""A model and data the tool did not make: bench/foreign's plain-PyTorch code, small, through `neurolab convert`."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _module(path: Path, name: str):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def foreign():
    sys.path.insert(0, str(BENCH / "foreign"))
    try:
        return _module(BENCH / "foreign" / "foreign_cases.py", "foreign_cases")
    finally:
        sys.path.remove(str(BENCH / "foreign"))


def _user_case(foreign, tmp_path: Path, layout: str, readout: str):
    """A small IMU-gesture model trained the user's way; returns (checkpoint, data file, PyTorch test accuracy)."""
    torch.manual_seed(0)
    d = foreign.foreign_data.imu_gestures(n_train=240, n_test=90, seed=1)
    mean, std = foreign.zscore_stats(d["x"], d["lengths"])
    z = foreign.normalise(d["x"], d["lengths"], mean, std)
    zt = foreign.normalise(d["x_test"], d["lengths_test"], mean, std)
    lz, lzt = torch.as_tensor(d["lengths"]), torch.as_tensor(d["lengths_test"])
    y, yt = torch.as_tensor(d["labels"]), torch.as_tensor(d["labels_test"])
    model = foreign.UserRNN(6, 16, 6, readout)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(8):
        for idx in torch.randperm(len(z)).split(32):
            loss = torch.nn.functional.cross_entropy(model(z[idx], lz[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    ckpt, data = tmp_path / f"{layout}.pt", tmp_path / "imu.npz"
    if layout == "nested":
        torch.save({"rnn": model.rnn.state_dict(), "readout": model.fc.state_dict(),
                    "meta": {"nonlinearity": "relu", "readout": readout}}, ckpt)
    else:
        torch.save(model.state_dict(), ckpt)
    np.savez(data, x=d["x"], lengths=d["lengths"], labels=d["labels"], x_test=d["x_test"], lengths_test=d["lengths_test"],
             labels_test=d["labels_test"], mean=mean, std=std)
    return ckpt, data, foreign.accuracy(model, zt, lzt, yt)


@pytest.mark.timeout(300)
@pytest.mark.parametrize(("layout", "readout"), [("nested", "last_valid"), ("flat", "mean")])
def test_foreign_checkpoint_and_raw_signed_data_convert_from_the_command_line(foreign, tmp_path, layout, readout, capsys):
    from neurolab_gui.cli import main

    ckpt, data, user_accuracy = _user_case(foreign, tmp_path, layout, readout)
    args = ["convert", str(ckpt), "--task", str(data), "--stages", "", "--qat-epochs", "1", "--json", str(tmp_path / "r.json")]
    if layout == "flat":
        args += ["--readout", readout]  # a bare state_dict cannot say it
    else:
        args += ["--retention", "0.8"]  # the user's time mapping: no fit
    assert main(args) == 0, capsys.readouterr().out
    report = json.loads((tmp_path / "r.json").read_text())
    stages = {s["name"]: s["accuracy"] for s in report["stages"]}
    assert stages["float"] == pytest.approx(user_accuracy, abs=1 / 90 + 1e-9)  # clipping may move one sample at most
    model = report["model"]
    assert model["readout_rule"] == readout and model["readout_rule_from"] == ("file" if layout == "nested" else "option")
    assert model["input_encoding"]["raw_features"] == 6 and model["input_encoding"]["channels"] == 12
    assert model["kind"] == "leaky" and model["source_model"]["kind"] == "elman" and model["activation_scale"] > 0
    if layout == "flat":  # nothing declared: both readings were tried on the data; the retention was fitted
        assert set(model["train_accuracy_read_as"]) == {"relu", "tanh"}
        fit = model["retention_fit"]
        assert model["retention"] == float(max(fit, key=lambda a: (round(fit[a], 3), float(a))))
    else:
        assert model["retention"] == 0.8 and "retention_fit" not in model


def test_bench_json_holds_the_schema_keys(foreign, tmp_path):
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint
    from neurolab_gui.core.conversion.pipeline import config_for_task, convert
    from neurolab_gui.core.conversion.tasks import load_task

    bench = _module(BENCH / "conversion_accuracy.py", "bench_conversion_accuracy")
    ckpt, data, _ = _user_case(foreign, tmp_path, "nested", "last_valid")
    loaded = load_checkpoint(ckpt)
    task = load_task(str(data))
    cfg = config_for_task(task.name, loaded.model.config, stages=(), qat_epochs=1)
    c0 = bench.cpu_seconds()
    entry = bench.task_summary(convert(loaded.model, task, cfg), 1.0, bench.cpu_seconds() - c0)
    for key in ("units", "chips", "float", "constrained", "board_ideal", "board_mismatch", "board_calibrated",
                "chip_seconds_total", "wall_s", "cpu_s", "settings"):
        assert key in entry
    assert entry["units"] == 16 and entry["chips"] == 1 and entry["board_calibrated"] is None
    assert entry["cpu_s"] > 0.0  # the conversion's QAT ran in this process
    json.dumps(entry)
