"""The exporters' own output: a full disk, an output that is a folder or cannot be written, and NWB
names for any stream and column the recorder takes.  Each case runs the CLI as a user does and checks
the exit code, one ``error:`` line naming the output, and that nothing is left half-written."""

from __future__ import annotations

import errno
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest

from neurolab_gui.cli import main
from tests.cli_output import one_error_line
from tests.disk_faults import FullDisk, run_under_file_size_limit

KINDS = ("nwb", "csv", "aedat")


def _session(path: Path, streams: dict[str, dict[str, list]] | None = None) -> Path:
    """A small recording: 300 spikes (so every export is a few kB) and the typed streams given."""
    from drivers.dynapse1.spikes import SpikeEvents
    from neurolab_gui.core.recording import Recorder

    rec = Recorder(path, software_version="9.9", board_serial="EMU00001", board_emulated=True, segment_s=0.02, tick_s=0.005)
    for name, columns in (streams or {}).items():
        rec.add_stream(name, {c: np.asarray(v).dtype for c, v in columns.items()}, description=f"stream {name}")
    rec.start()
    n = 300
    rng = np.random.default_rng(1)
    rec.record_spikes(SpikeEvents(np.arange(n) * 10, rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n)))
    for name, columns in (streams or {}).items():
        rec.append(name, columns)
    rec.stop()
    return path


@pytest.fixture(scope="module")
def session(tmp_path_factory) -> Path:
    return _session(tmp_path_factory.mktemp("out") / "s.h5")


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_export_onto_a_full_disk_fails_cleanly_without_a_crash(session, tmp_path):
    """Bug: NWB onto a full disk printed ~100 lines of HDF5 errors, left `.x.partial.nwb` and segfaulted
    at exit (139): the failed file's HDF5 ids stayed open into the library's shutdown.  A real process
    under a 1.5 kB file-size limit (RLIMIT_FSIZE, no privileges needed) runs all three exports."""
    outs = {kind: tmp_path / f"x.{kind}" for kind in KINDS}
    proc = run_under_file_size_limit(
        f"[main(['export', {str(session)!r}, '--' + k, o]) for k, o in {[(k, str(o)) for k, o in outs.items()]!r}]", 1500, timeout=60)
    assert proc.returncode == 0, proc.stderr[-3000:]  # no segfault (-11) at interpreter exit
    assert json.loads(proc.stdout.splitlines()[-1]) == [2, 2, 2]
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert errors == [f"error: writing --{k} {o} failed: File too large" for k, o in outs.items()], proc.stderr[-3000:]
    assert _files(tmp_path) == []  # no output, no hidden partial file


@pytest.mark.parametrize("kind", KINDS)
def test_export_write_failing_half_way_names_the_output_and_removes_the_partial(kind, session, tmp_path, monkeypatch, capsys):
    import importlib

    if kind == "nwb":  # written through session_file.HDF5Writer, which writes with os.pwrite
        left = [1000]
        real_pwrite = os.pwrite

        def pwrite(fd, data, offset):
            size = memoryview(data).nbytes
            if size > left[0]:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            left[0] -= size
            return real_pwrite(fd, data, offset)

        monkeypatch.setattr(os, "pwrite", pwrite)
    else:
        module = importlib.import_module({"csv": "neurolab_gui.core.export.csv_table", "aedat": "neurolab_gui.core.export.aedat"}[kind])
        monkeypatch.setattr(module, "open", lambda *a, **k: FullDisk(open(*a, **k), 1000), raising=False)
    out = tmp_path / f"x.{kind}"
    assert main(["export", str(session), f"--{kind}", str(out)]) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: writing --{kind} {out} failed: No space left on device"
    assert _files(tmp_path) == []


@pytest.mark.parametrize("force", [[], ["--force"]])
def test_export_refuses_a_folder_as_output(force, session, tmp_path, capsys):
    """Bug: `--force` onto a folder read and wrote the whole export, then failed renaming it onto the
    folder with a traceback, leaving the complete hidden partial file behind."""
    folder = tmp_path / "outdir.csv"
    folder.mkdir()
    (tmp_path / "link.nwb").symlink_to(folder)
    for kind, out in (("csv", folder), ("nwb", tmp_path / "link.nwb"), ("aedat", folder)):
        assert main(["export", str(session), f"--{kind}", str(out), *force]) == 2
        assert one_error_line(capsys.readouterr().err) == f"error: --{kind} {out} is a folder; give a file name"
    assert _files(tmp_path) == ["link.nwb", "outdir.csv"] and _files(folder) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
@pytest.mark.parametrize("kind", KINDS)
def test_export_into_a_read_only_folder_says_so(kind, session, tmp_path, capsys):
    """Bug: removing the partial file failed too (EROFS), and that second error escaped as a traceback."""
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        out = folder / f"x.{kind}"
        assert main(["export", str(session), f"--{kind}", str(out)]) == 2
        assert one_error_line(capsys.readouterr().err) == f"error: writing --{kind} {out} failed: Permission denied"
        assert _files(folder) == []
    finally:
        folder.chmod(0o755)


def test_export_cleanup_that_fails_never_hides_the_write_error(session, tmp_path, monkeypatch, capsys):
    """The disk fills and removing the partial file fails as well: the user gets the write error and
    is told which file is left, no traceback."""
    import neurolab_gui.core.export.csv_table as csv_table

    monkeypatch.setattr(csv_table, "open", lambda *a, **k: FullDisk(open(*a, **k), 1000), raising=False)

    def unlink(self, missing_ok=False):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "unlink", unlink)
    out = tmp_path / "x.csv"
    assert main(["export", str(session), "--csv", str(out)]) == 2
    err = capsys.readouterr().err
    assert one_error_line(err) == f"error: writing --csv {out} failed: No space left on device"
    assert re.search(rf"could not remove the partial file {re.escape(str(tmp_path))}/\.x\.csv\.[0-9a-f]{{12}}\.part: Read-only file system", err)
    assert not out.exists()


def test_nwb_names_escape_reversibly_and_stay_distinct():
    from neurolab_gui.core.export.nwb import (
        column_from_nwb_name,
        nwb_column_name,
        nwb_stream_name,
        stream_from_nwb_name,
    )

    assert nwb_stream_name("robot/motor") == "robot_motor"  # the common case reads as before
    assert nwb_column_name("time_s") == "time_s" and nwb_column_name("id") == "%69d"
    names = ["a/b", "a_b", "a%5Fb", "a:b", "a%3Ab", "id", "%69d", "colnames", "description", "neurodata/type", "neurodata_type",
             "object_id", "namespace", ".", "..", "x y", "ü/ä", "a//b", "_", "/", "%", "%%2F", "robot/sensor_raw", "name", "%6Eame"]
    streams = [nwb_stream_name(n) for n in names]
    columns = [nwb_column_name(n) for n in names]
    assert len(set(streams)) == len(set(columns)) == len(names)
    assert [stream_from_nwb_name(s) for s in streams] == names and [column_from_nwb_name(c) for c in columns] == names
    group_reserved = {"description", "namespace", "neurodata_type", "object_id", "."}
    assert not group_reserved & set(streams) and not (group_reserved | {"id", "colnames", "name", "parent"}) & set(columns)
    assert nwb_column_name("name") == "%6Eame"  # hdmf's to_dataframe() would give the table's name as column "name"
    assert not any("/" in n or ":" in n for n in streams + columns)


@pytest.mark.filterwarnings("error::UserWarning")  # hdmf warns when a column name shadows a table attribute
def test_nwb_export_of_any_stream_and_column_names_is_valid_and_reads_back(tmp_path, capsys):
    """Bug: a stream column named `id` gave an NWB file that pynwb's validator rejects and pynwb cannot
    read; streams `a/b` and `a_b` both became table `a_b`, so the export failed."""
    from pynwb import NWBHDF5IO, validate

    from neurolab_gui.core.export.nwb import column_from_nwb_name, stream_from_nwb_name
    from neurolab_gui.core.session_file import SessionFile

    streams = {
        "x": {"id": [1, 2], "v": [np.nan, np.inf], "colnames": [3, 4], "name": [5, 6]},
        "a/b": {"v": [1.0], "description": [7], "a:b": [8]},
        "a_b": {"v": [2.0], "object_id": [b"o"]},
        "a:b": {"neurodata_type": [True, False]},
        "neurodata/type": {"namespace": [9]},
        "description": {"v": [3.0]},
    }
    path = _session(tmp_path / "s.h5", streams)
    out = tmp_path / "s.nwb"
    assert main(["export", str(path), "--nwb", str(out)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(f"wrote {out} ") and captured.err == ""
    assert validate(path=str(out)) == []
    session = SessionFile(path)
    with NWBHDF5IO(str(out), "r") as io:
        tables = io.read().processing["streams"].data_interfaces
        assert sorted(stream_from_nwb_name(name) for name in tables) == sorted(streams)
        for name, table in tables.items():
            stream = stream_from_nwb_name(name)
            frame = table.to_dataframe()
            assert [column_from_nwb_name(c) for c in frame.columns] == list(streams[stream])
            assert list(table.colnames) == list(frame.columns) and len(frame) == len(next(iter(streams[stream].values())))
            stored = session.read_stream(f"streams/{stream}")
            for column in frame.columns:
                want = stored[column_from_nwb_name(column)]
                got = frame[column].to_numpy()
                if want.dtype.kind == "S":
                    assert list(got) == [w.decode() for w in want]
                else:
                    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("kind", KINDS)
def test_export_leaves_no_partial_file_whatever_goes_wrong(kind, session, tmp_path, monkeypatch):
    """Bug: only ValueError/OSError removed the partial file; e.g. an OverflowError half-way through
    the AEDAT packets left `.x.partial.aedat`.  How such errors are *reported* is the reading side's
    business; here only: nothing is left behind."""
    from neurolab_gui.core.session_file import SessionFile

    def broken(self, *args):
        raise OverflowError("boom")

    monkeypatch.setattr(SessionFile, "session_time_s", broken)
    try:
        rc = main(["export", str(session), f"--{kind}", str(tmp_path / f"x.{kind}")])
    except OverflowError:
        rc = None
    assert rc != 0 and _files(tmp_path) == []


def test_two_exports_of_one_output_do_not_share_a_temporary(session, tmp_path, monkeypatch):
    """Bug (hostile report 3, #8's "elsewhere"): every export of OUT wrote `.OUT.partial.csv`, so a second
    export of the same OUT truncated, renamed or removed the first one's file.  Each export now writes
    a temporary of its own: the first export, paused half-way while a second one runs to the end,
    still completes, and OUT holds one whole table."""
    import threading

    import neurolab_gui.core.export.csv_table as csv_table

    out = tmp_path / "x.csv"
    real_open = open
    first_writing, second_done = threading.Event(), threading.Event()
    calls = []

    class _Paused:
        def __init__(self, f):
            self.f = f

        def __getattr__(self, name):
            return getattr(self.f, name)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return self.f.__exit__(*exc)

        def write(self, data):
            first_writing.set()
            assert second_done.wait(30)
            return self.f.write(data)

    def opener(*a, **k):
        calls.append(a)
        f = real_open(*a, **k)
        return _Paused(f) if len(calls) == 1 else f

    monkeypatch.setattr(csv_table, "open", opener, raising=False)
    codes = []
    first = threading.Thread(target=lambda: codes.append(main(["export", str(session), "--csv", str(out)])))
    first.start()
    assert first_writing.wait(30)
    try:
        assert main(["export", str(session), "--csv", str(out), "--force"]) == 0
    finally:
        second_done.set()
        first.join(30)
    assert codes == [0]
    assert _files(tmp_path) == ["x.csv"]
    lines = out.read_text().splitlines()
    assert lines[0].startswith("time_s") and len(lines) > 1
