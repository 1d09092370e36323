"""The NIR export's own output (``neurolab convert --nir OUT``): a full disk, a file-size limit, two
writers of one path and a user's file named ``OUT.part``.  Each case checks the exit code, one
``error:`` line naming the output, and that nothing is left half-written."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import nir
import pytest
import torch

from neurolab_gui.cli import main
from neurolab_gui.core.conversion.checkpoint import save_checkpoint
from neurolab_gui.core.conversion.constrain import ConstraintConfig, WeightPrecision, constrain
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.nir_io import write_nir
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig
from tests.cli_output import one_error_line
from tests.disk_faults import FullDisk, run_under_file_size_limit


def _model() -> RateRNN:
    torch.manual_seed(1)
    return RateRNN(RNNConfig(8, 16, 10, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "m.pt", _model(), {"task": "seq_digits"})


@pytest.fixture(scope="module")
def constrained():
    cfg = ConstraintConfig(precision=WeightPrecision(16), max_fan_in=12, n_core_groups=2, qat=TrainConfig(epochs=0))
    return constrain(_model(), seq_digits().subset(100, 20), cfg)


def _convert(checkpoint: Path, report: Path, out: Path) -> list[str]:
    return ["convert", str(checkpoint), "--stages", "", "--qat-epochs", "0", "--json", str(report), "--nir", str(out)]


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_nir_export_under_a_file_size_limit_fails_cleanly_without_a_crash(checkpoint, tmp_path):
    """Bug: `convert --nir` onto a full disk (or under `ulimit -f`) segfaulted in h5py's close (exit 139),
    printed no `error:` line and left `OUT.part`.  A real process under a 20 kB file-size limit
    (RLIMIT_FSIZE, no privileges needed): the JSON report (4 kB) fits, the NIR file (70 kB) does not."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.nir"
    args = _convert(checkpoint, tmp_path / "r.json", out)
    proc = run_under_file_size_limit(f"main({args!r})", 20_000)
    assert proc.returncode == 0, proc.stderr[-3000:]  # no segfault (-11) in h5py or at interpreter exit
    assert json.loads(proc.stdout.splitlines()[-1]) == 1
    assert one_error_line(proc.stderr) == f"error: writing --nir {out} failed: File too large"
    assert _files(out_dir) == []  # no output, no temporary file


def test_nir_export_onto_a_disk_that_fills_half_way_names_the_output_and_leaves_nothing(checkpoint, tmp_path, monkeypatch, capsys):
    """The disk fills 10 kB into a file (the 4 kB JSON report fits, the 70 kB NIR file does not):
    ENOSPC, the NWB export's wording, nothing left."""
    real_fdopen = os.fdopen

    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "m.nir"
    args = _convert(checkpoint, tmp_path / "r.json", out)
    monkeypatch.setattr(os, "fdopen", lambda *a, **k: FullDisk(real_fdopen(*a, **k), 10_000))
    assert main(args) == 1
    assert one_error_line(capsys.readouterr().err) == f"error: writing --nir {out} failed: No space left on device"
    assert _files(out_dir) == []


def test_two_writers_of_one_nir_path_leave_one_readable_file_and_no_temporaries(constrained, tmp_path):
    """Bug: both writers used `<path>.part`: one truncated, renamed or deleted the other's file
    (FileNotFoundError, "unable to truncate a file which is already open"), and some rounds ended
    with neither writer's file at the path."""
    target = tmp_path / "same.nir"
    errors: list[BaseException] = []

    def write(start: threading.Barrier) -> None:
        start.wait()  # both writers begin together
        try:
            write_nir(constrained, target)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    for _ in range(10):
        start = threading.Barrier(2)
        threads = [threading.Thread(target=write, args=(start,)) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert errors == []
        assert _files(tmp_path) == ["same.nir"]  # no temporary file left behind
        assert nir.read(target).nodes["w_rec"].weight.shape == (16, 16)
        target.unlink()


def test_a_users_own_file_named_like_the_old_temporary_survives_the_export(checkpoint, tmp_path, capsys):
    """Bug: the export wrote into `<path>.part` and renamed it away, destroying a user's file of that name."""
    out = tmp_path / "precious.nir"
    mine = tmp_path / "precious.nir.part"
    mine.write_bytes(b"my own notes")
    assert main(_convert(checkpoint, tmp_path / "r.json", out)) == 0
    assert "NIR graph written to" in capsys.readouterr().out
    assert mine.read_bytes() == b"my own notes"
    assert nir.read(out).nodes["w_rec"].weight.shape == (16, 16)
    assert _files(tmp_path) == ["precious.nir", "precious.nir.part", "r.json"]

