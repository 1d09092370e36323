"""A user's data file, checkpoint and options: what is wrong is said with the file and the key, tensor
or option named, and an ambiguous input is refused, not silently resolved (hostile test 4, #6-#8)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from neurolab_gui.cli import main
from tests.cli_output import one_error_line

F, H, C = 3, 4, 3


def _data(path: Path, **arrays) -> Path:
    """A tiny data file: 12 train / 6 test sequences of 3 features in [0, 1], labels 0..2, overridden by ``arrays``."""
    rng = np.random.default_rng(0)
    base = {"x": rng.uniform(0, 1, (12, 4, F)), "labels": np.arange(12) % C,
            "x_test": rng.uniform(0, 1, (6, 4, F)), "labels_test": np.arange(6) % C}
    base.update(arrays)
    np.savez(path, **{k: v for k, v in base.items() if v is not None})
    return path


def _plain_checkpoint(path: Path, meta: object = None, **rnn_kw) -> Path:
    """A plain ``{"rnn": ..., "readout": ..., "meta": ...}`` file as a user saves it."""
    torch.manual_seed(0)
    rnn = nn.RNN(F, H, nonlinearity="relu", batch_first=True, **rnn_kw)
    obj = {"rnn": rnn.state_dict(), "readout": nn.Linear(H, C).state_dict()}
    if meta is not None:
        obj["meta"] = meta
    torch.save(obj, path)
    return path


def _run(argv: list[str], capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    assert "Traceback" not in out.err + out.out
    return code, out.out, out.err


def _train(tmp_path: Path, data: Path, *extra: str) -> list[str]:
    return ["train", "--task", str(data), "--hidden", "4", "--epochs", "1", "--out", str(tmp_path / "m.pt"), *extra]


# ---- #6: classes --------------------------------------------------------------------------------

def test_a_data_file_with_one_class_is_refused(tmp_path, capsys):
    data = _data(tmp_path / "one.npz", labels=np.zeros(12, np.int64), labels_test=np.zeros(6, np.int64))
    code, _, err = _run(_train(tmp_path, data), capsys)
    assert code == 2
    assert "at least two classes" in one_error_line(err, data, "'labels'")
    assert not (tmp_path / "m.pt").exists()


def test_test_classes_the_training_never_saw_are_a_warning(tmp_path, capsys):
    data = _data(tmp_path / "unseen.npz", labels_test=np.array([0, 1, 2, 5, 6, 7]))
    code, _, err = _run(_train(tmp_path, data), capsys)
    assert code == 0 and "error:" not in err
    warnings = [line for line in err.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 1 and str(data) in warnings[0] and "classes 5, 6, 7" in warnings[0], err


# ---- #7 / #8: data files ----------------------------------------------------------------------

@pytest.mark.parametrize("case, names, why", [
    ("huge uint64 labels", ("'labels'", "18446744073709551615"), "at most 4096 classes"),
    ("y and labels differ", ("'labels'", "'y'"), "they differ"),
    ("x is raw bytes", ("'x'",), "not a numpy array"),
])
def test_a_bad_data_file_is_one_error_line_naming_file_and_key(tmp_path, capsys, case, names, why):
    path = tmp_path / "d.npz"
    if case == "huge uint64 labels":
        _data(path, labels=np.full(12, 2**64 - 1, np.uint64))
    elif case == "y and labels differ":
        _data(path, y=(np.arange(12) + 1) % C)
    else:
        import zipfile

        _data(path, x=None)
        with zipfile.ZipFile(path, "a") as z:  # a member x.npy that is no .npy array (numpy hands back its bytes)
            z.writestr("x.npy", b"garbage")
    code, _, err = _run(_train(tmp_path, path), capsys)
    assert code == 2 and why in one_error_line(err, path, *names)
    assert not (tmp_path / "m.pt").exists()


def test_y_and_labels_that_agree_are_one_array(tmp_path, capsys):
    data = _data(tmp_path / "d.npz", y=np.arange(12) % C)
    code, _, err = _run(_train(tmp_path, data), capsys)
    assert code == 0 and "error:" not in err and "warning:" not in err


# ---- #7 / #8: checkpoints -----------------------------------------------------------------------

def _torchscript(path: Path) -> Path:
    torch.jit.script(nn.Linear(F, C)).save(str(path))
    return path


def _float64_overflow(path: Path) -> Path:
    _plain_checkpoint(path)
    obj = torch.load(path)
    obj["rnn"]["weight_ih_l0"] = obj["rnn"]["weight_ih_l0"].double() * 1e300  # finite in the file, inf in float32
    torch.save(obj, path)
    return path


def _lstm_proj(path: Path) -> Path:
    lstm = nn.LSTM(F, 8, proj_size=H, batch_first=True)
    torch.save({"rnn": lstm.state_dict(), "readout": nn.Linear(H, C).state_dict()}, path)
    return path


@pytest.mark.parametrize("make, names, why", [
    (_torchscript, (), "is a TorchScript archive"),
    (_float64_overflow, ("rnn.weight_ih_l0",), "beyond float32's range"),
    (_lstm_proj, ("weight_hr_l0",), "holds an LSTM with proj_size"),
    (lambda p: _plain_checkpoint(p, meta="relu"), ("'meta'", "'relu'"), "must be a dict"),
])
def test_a_bad_checkpoint_is_one_error_line_naming_file_and_what_it_is(tmp_path, capsys, make, names, why):
    ckpt = make(tmp_path / "c.pt")
    report = tmp_path / "r.json"
    code, _, err = _run(["convert", str(ckpt), "--task", str(_data(tmp_path / "d.npz")), "--stages", "",
                         "--qat-epochs", "0", "--json", str(report)], capsys)
    assert code == 2 and why in one_error_line(err, ckpt, *names)
    assert not report.exists()


def test_a_model_that_does_not_fit_the_data_names_the_checkpoint(tmp_path, capsys):
    ckpt = _plain_checkpoint(tmp_path / "c.pt")
    data = _data(tmp_path / "d.npz", x=np.zeros((12, 4, 5)), x_test=np.zeros((6, 4, 5)))
    code, _, err = _run(["convert", str(ckpt), "--task", str(data), "--stages", "", "--qat-epochs", "0",
                         "--json", str(tmp_path / "r.json")], capsys)
    assert code == 2 and one_error_line(err).startswith(f"error: {ckpt}: the model takes 3 inputs")


# ---- #7 / #8: options ------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["train", "convert", "demo", "deploy", "robustness", "record", "gui"])
@pytest.mark.parametrize("value", ["99999999999999999999", "-1"])
def test_every_seed_option_takes_one_range(tmp_path, capsys, command, value):
    argv = command.split() + (["CKPT"] if command in ("convert", "deploy", "robustness") else []) + ["--seed", value]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Traceback" not in err
    assert "argument --seed: a seed must lie in 0..999999999999999999" in err, err


def test_the_largest_seed_is_accepted(tmp_path, capsys):
    data = _data(tmp_path / "d.npz")
    code, _, err = _run(_train(tmp_path, data, "--seed", "999999999999999999"), capsys)
    assert code == 0, err


def test_stages_that_name_nothing_are_refused_and_a_large_n_test_is_noted(tmp_path, capsys):
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.models import RateRNN, RNNConfig

    data = _data(tmp_path / "d.npz")
    ckpt = save_checkpoint(tmp_path / "m.pt", RateRNN(RNNConfig(F, H, C, "leaky", 0.85, 1)), {"task": str(data)})
    report = tmp_path / "r.json"
    code, _, err = _run(["convert", str(ckpt), "--stages", ",,", "--json", str(report)], capsys)
    assert code == 2 and "names no stage" in one_error_line(err, "--stages", "',,'")
    assert not report.exists()
    code, out, _ = _run(["convert", str(ckpt), "--stages", "board_ideal", "--n-test", "100000", "--qat-epochs", "0",
                         "--json", str(report)], capsys)
    assert code == 0 and "note: --n-test 100000 is more than the 6 test samples" in out
    assert os.path.exists(report)


# ---- data that do not fit in memory ------------------------------------------------------------

def _declared_only(path: Path, shape: tuple[int, ...]) -> Path:
    """An .npz whose 'x' member declares ``shape`` (float32) in its .npy header but holds 100 bytes:
    what a truncated copy of a huge data set, or a hostile file, looks like."""
    import io
    import zipfile

    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<f4", "fortran_order": False, "shape": shape})
    labels = io.BytesIO()
    np.save(labels, np.arange(12) % C)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("x.npy", header.getvalue() + bytes(100))
        archive.writestr("labels.npy", labels.getvalue())
    return path


def test_a_data_file_larger_than_the_memory_is_refused_before_it_is_read(tmp_path, capsys):
    # numpy allocated the declared 400 GB at once: an _ArrayMemoryError traceback (or, below the
    # machine's memory, the out-of-memory killer).  The .npy headers are read first.
    data = _declared_only(tmp_path / "huge.npz", (10**7, 100, 100))
    code, _, err = _run(_train(tmp_path, data), capsys)
    assert code == 2
    line = one_error_line(err, data, "400.0 GB", "'x'", "memory available")
    assert "subset" in line
    assert not (tmp_path / "m.pt").exists()


def test_the_memory_check_counts_the_real_arrays_against_what_is_available(tmp_path, capsys, monkeypatch):
    from neurolab_gui.core.conversion import tasks

    data = _data(tmp_path / "d.npz")  # 18 sequences x 4 steps x 3 float64 features: 1,728 bytes of x
    monkeypatch.setattr(tasks, "available_memory_bytes", lambda: 1000)
    code, _, err = _run(_train(tmp_path, data), capsys)
    assert code == 2 and "more than the 0.0 GB of memory available" in one_error_line(err, data)
    monkeypatch.setattr(tasks, "available_memory_bytes", lambda: 10**6)
    code, _, _ = _run(_train(tmp_path, data), capsys)
    assert code == 0
