"""Files a user names that are not regular files: every reader refuses them at once, by name.

``/dev/zero`` has size 0 and never ends (a reader that trusted ``stat`` and read "the whole file"
filled 24 GB of RAM); a FIFO blocks ``open()`` until a writer comes (the command hung for ever);
a directory is no file.  One reader (:mod:`drivers.user_files`) serves the bias files, calibration
profiles, data files, session files and NIR files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from drivers.user_files import UserFileError, check_regular_file, open_regular, read_regular, write_replacing
from neurolab_gui.cli import main
from tests.cli_output import one_error_line

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def fifo(tmp_path):
    path = tmp_path / "fifo.json"
    os.mkfifo(path)
    return path


# --- the reader itself ------------------------------------------------------------------------------


def test_the_reader_refuses_what_is_not_a_regular_file(tmp_path, fifo):
    with pytest.raises(UserFileError, match=r"^/dev/zero is not a regular file but a character device; a bias file must"):
        read_regular("/dev/zero", 100, "a bias file")
    with pytest.raises(UserFileError, match="fifo.json is not a regular file but a FIFO"):
        read_regular(fifo, 100)  # O_NONBLOCK: opening a FIFO without a writer returns at once
    with pytest.raises(UserFileError, match="is not a regular file but a directory"):
        open_regular(tmp_path)
    with pytest.raises(UserFileError, match="is not a regular file but a FIFO"):
        check_regular_file(fifo)
    with pytest.raises(FileNotFoundError, match="nope.json does not exist"):
        read_regular(tmp_path / "nope.json", 100)


def test_the_reader_reads_at_most_its_limit(tmp_path):
    path = tmp_path / "f.bin"
    path.write_bytes(b"abc")
    assert read_regular(path, 3) == b"abc"
    link = tmp_path / "link.bin"
    link.symlink_to(path)
    assert read_regular(link, 3) == b"abc" and check_regular_file(link) == link  # symlinks are followed
    with pytest.raises(UserFileError, match=r"f\.bin: 3 bytes; the file may have at most 2 bytes"):
        read_regular(path, 2)


# --- the writer ------------------------------------------------------------------------------------


def race(path: Path, writers: list, read, rounds: int) -> tuple[list[str], int, int]:
    """Run ``writers`` (functions of no argument) ``rounds`` times each in threads of their own while a
    reader thread calls ``read(path)`` in a loop: the writers' errors, the reads that failed and those done."""
    errors: list[str] = []
    bad, reads, stop = [], [0], threading.Event()

    def write(fn) -> None:
        for _ in range(rounds):
            try:
                fn()
            except Exception as exc:  # noqa: BLE001 -- every failure of a writer is the finding
                errors.append(repr(exc))

    def reader() -> None:
        while not stop.is_set():
            try:
                read(path)
            except Exception as exc:  # noqa: BLE001 -- a partial or missing file, whatever it raises
                bad.append(repr(exc))
            reads[0] += 1

    threads = [threading.Thread(target=write, args=(fn,)) for fn in writers]
    watcher = threading.Thread(target=reader)
    watcher.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    watcher.join()
    return errors, len(bad), reads[0]


def test_concurrent_writers_of_one_path_neither_fail_nor_show_a_reader_part_of_a_file(tmp_path):
    """Bug: the temporary file was always ``<name>.part``: two writers at once wrote into and renamed
    each other's file (FileNotFoundError at the rename) and a reader saw half a document."""
    target = tmp_path / "r.json"
    docs = [json.dumps({"who": w, "pad": [w] * 50_000}) for w in range(4)]
    write_replacing(target, docs[0])

    def read(path: Path) -> None:
        if path.read_text(encoding="utf-8") not in docs:
            raise ValueError("not one writer's complete document")

    errors, bad, reads = race(target, [lambda d=d: write_replacing(target, d) for d in docs], read, rounds=60)
    assert errors == [] and bad == 0 and reads > 0
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]  # no temporary file left behind
    assert target.read_text() in docs


def test_the_written_file_has_the_usual_permissions_not_a_temporary_files(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_replacing(tmp_path / "a" / "r.txt", "x")  # the folder is created
    finally:
        os.umask(old)
    assert path.read_text() == "x" and path.stat().st_mode & 0o777 == 0o644


# --- bias files: the CLI and the API the GUI's bias panel uses ------------------------------------

_BIAS_CHILD = """
import contextlib, io, json, resource, sys
# a regression must fail here, not exhaust the machine's memory as /dev/zero once did
resource.setrlimit(resource.RLIMIT_DATA, (3 << 30, 3 << 30))
from neurolab_gui.cli import main
from neurolab_gui.core.bias_model import read_bias_file
out = {}
for name, path in (("zero", "/dev/zero"), ("fifo", sys.argv[1])):
    try:
        read_bias_file(path)
        out[name + "_api"] = "read"
    except Exception as exc:
        out[name + "_api"] = type(exc).__name__ + ": " + str(exc)
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["record", "--seconds", "0.2", "--clock", "fast", "--bias-file", path, sys.argv[2] + name + ".h5"])
    out[name + "_cli"] = [rc, err.getvalue()]
print(json.dumps(out))
"""


def test_a_bias_file_that_is_dev_zero_or_a_fifo_is_refused_at_once(tmp_path, fifo):
    """Bug: `record --bias-file /dev/zero` read until the OOM killer came; a FIFO blocked in open()."""
    done = subprocess.run([sys.executable, "-c", _BIAS_CHILD, str(fifo), str(tmp_path / "rec_")], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)  # a hang is a failure, not a stuck suite
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.splitlines()[-1])
    assert out["zero_api"].startswith("BiasFileError: /dev/zero is not a regular file but a character device")
    assert out["fifo_api"].startswith(f"BiasFileError: {fifo} is not a regular file but a FIFO")
    for name, path in (("zero", "/dev/zero"), ("fifo", fifo)):
        rc, err = out[name + "_cli"]
        assert rc == 2
        one_error_line(err, path, "not a regular file")
        assert not (tmp_path / f"rec_{name}.h5").exists()  # refused before anything was recorded
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.json"]


# --- the other readers of user files ------------------------------------------------------------


@pytest.mark.timeout(60)  # a FIFO that blocks is a failure, not a stuck suite
def test_calibration_profiles_data_session_and_nir_files_refuse_special_files(tmp_path, fifo, capsys, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    for bad, kind in (("/dev/zero", "a character device"), (fifo, "a FIFO"), (tmp_path, "a directory")):
        # --apply-profile took these for board serials ("bad board serial '/dev/zero'")
        assert main(["calibrate", "--apply-profile", str(bad)]) == 2
        one_error_line(capsys.readouterr().err, bad, f"not a regular file but {kind}", "calibration profile")
        # --task said "task file /dev/zero does not exist"
        assert main(["train", "--task", str(bad), "--out", str(tmp_path / "t.pt")]) == 2
        captured = capsys.readouterr()
        one_error_line(captured.out + captured.err, bad, f"not a regular file but {kind}", "--task")
        assert main(["info", str(bad)]) == 2  # h5py blocked on the FIFO
        one_error_line(capsys.readouterr().err, bad, f"not a regular file but {kind}", "session file")
        assert main(["export", str(bad), "--csv", str(tmp_path / "x.csv")]) == 2
        one_error_line(capsys.readouterr().err, bad, f"not a regular file but {kind}")
        assert main(["nir-import", str(bad), str(tmp_path / "n.pt")]) == 2  # so did nir.read
        one_error_line(capsys.readouterr().err, bad, f"not a regular file but {kind}", "NIR file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo.json"]  # nothing written
