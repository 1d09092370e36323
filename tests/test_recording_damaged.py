"""Damaged recordings: every reader (``info``, the three exports, replay's time windows) refuses them
with one ``error:`` line naming the file, the segment and the problem, exit code 2, and writes nothing.

Each case damages a copy of one tiny recording made here (a few segments, one merged virtually).
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.cli import main
from neurolab_gui.core.recording import Recorder
from neurolab_gui.core.session_file import EPOCH_DTYPE, SessionFile, SessionFileError, segments_dir

EXPORTS = ("--csv", "--aedat", "--nwb")


@pytest.fixture(scope="module")
def recording(tmp_path_factory) -> Path:
    """About six segments of spikes and stimulus; with a merge fan-out of 2 and no copy merges, the
    closed segments are merged virtually (a file of virtual datasets over its two sources)."""
    from neurolab_gui.core import recording as recording_module

    path = tmp_path_factory.mktemp("damaged") / "base.h5"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(recording_module, "MERGE_FANOUT", 2)
        mp.setattr(recording_module, "MERGE_MAX_ROWS", 0)
        rec = Recorder(path, software_version="t", board_serial="EMU00009", board_emulated=True, segment_s=0.02, tick_s=0.005)
        rec.start()
        rng = np.random.default_rng(3)
        for i in range(6):
            n = 300
            rec.record_spikes(SpikeEvents(np.sort(rng.integers(i * 100_000, (i + 1) * 100_000, n)), rng.integers(0, 4, n),
                                          rng.integers(0, 4, n), rng.integers(0, 256, n)))
            rec.record_input(SpikeEvents([i * 100_000 + 5], [1], [2], [3]))
            time.sleep(0.03)  # lets the writer close a segment: several segment files, not a synchronisation
        rec.stop()
    s = SessionFile(path)
    assert s.complete and s.rows("events/spikes") == 1800
    assert any(_merged_from(segments_dir(path) / r["file"].decode()) for r in s.segments)  # a virtual merge exists
    return path


def _merged_from(file: Path) -> list[str]:
    with h5py.File(file, "r") as f:
        return [str(x) for x in f.attrs.get("merged_from", [])]


def copy_recording(recording: Path, tmp_path: Path) -> Path:
    """A copy of a recording and its segments folder under ``tmp_path/rec`` (to damage)."""
    dst = tmp_path / "rec" / recording.name
    dst.parent.mkdir()
    shutil.copy(recording, dst)
    shutil.copytree(segments_dir(recording), segments_dir(dst))
    return dst


def _plain_segment(path: Path) -> Path:
    """The first segment file that holds its data itself (not a virtual merge); read directly or
    through a merge that maps it, it is what every reader ends up reading."""
    return next(f for f in sorted(segments_dir(path).iterdir()) if f.is_file() and f.stat().st_size and not _merged_from(f))


def _replace(file: Path, name: str, data) -> None:
    with h5py.File(file, "r+") as f:
        del f[name]
        f[name] = data


def _edit_table(path: Path, name: str, field: str, value, row: int = 0) -> None:
    with h5py.File(path, "r+") as f:
        a = f[name][:]
        a[field][row] = value
        del f[name]
        f[name] = a


def _edit_segment_column(path: Path, column: str, fn) -> None:
    seg = _plain_segment(path)
    with h5py.File(seg, "r") as f:
        data = f[f"events/spikes/{column}"][:]
    _replace(seg, f"events/spikes/{column}", fn(data))


def _missing_virtual_source(path: Path) -> str:
    """Delete one original segment file that only a virtual merge maps (nested merges are followed down)."""
    with h5py.File(path, "r") as f:
        names = [r["file"].decode() for r in f["segments"][:]]
    folder = segments_dir(path)
    leaf = next(n for n in names if _merged_from(folder / n))
    while _merged_from(folder / leaf):
        leaf = _merged_from(folder / leaf)[-1]
    (folder / leaf).unlink()
    return leaf


def _truncate_segment(path: Path) -> str:
    seg = _plain_segment(path)
    seg.write_bytes(seg.read_bytes()[: seg.stat().st_size // 2])
    return seg.name


def _chip_100(path: Path) -> None:
    _edit_segment_column(path, "chip", lambda c: (c + 100).astype(np.uint8))


CASES = {
    # 1: a source of a virtual merge missing -- HDF5 would read it as zeros
    "virtual_source_missing": (_missing_virtual_source, [": 1 of ", "segment files are missing", "(first: {ret}, merged into seg-"]),
    # 4: corrupt data
    "chip_out_of_range": (_chip_100, ["chip id 10", "is out of range 0..3", "row 0", "seg-"]),
    "neuron_out_of_range": (lambda p: _edit_segment_column(p, "neuron", lambda c: np.full_like(c, 60000)),
                            ["neuron id 60000 is out of range 0..255", "seg-"]),
    "t_zeroed": (lambda p: _edit_segment_column(p, "t", lambda t: np.zeros(10**4 + len(t), t.dtype)),
                 ["board time 0 µs lies outside", "seg-"]),
    "t_float_nan": (lambda p: _edit_segment_column(p, "t", lambda t: np.where(np.arange(len(t)) % 7, t, np.nan)),
                    ["events/spikes/t holds float64 values where int64 belong", "seg-"]),
    # 5: absurd epoch values
    "epoch_offset_nan": (lambda p: _edit_table(p, "epochs", "session_offset_s", np.nan), ["epoch 0 starts at session time nan s"]),
    "epoch_offset_inf": (lambda p: _edit_table(p, "epochs", "session_offset_s", np.inf), ["epoch 0 starts at session time inf s"]),
    "epoch_first_t_huge": (lambda p: _edit_table(p, "epochs", "first_t_us", 2**62), ["puts its events at session time", "epoch 0"]),
    # 6, 7: damaged index tables and attributes
    "no_epochs_table": (lambda p: _delete(p, "epochs"), ["has no /epochs table"]),
    "no_index_table": (lambda p: _delete(p, "index/events/spikes"), ["has no /index/events/spikes table"]),
    "ghost_column": (lambda p: _set_attr(p, "events/spikes", "columns", ["t", "chip", "core", "neuron", "ghost"]),
                     ["lists a column 'ghost'"]),
    "index_epoch_out_of_range": (lambda p: _edit_table(p, "index/events/spikes", "epoch", 99), ["names epoch 99 of 1"]),
    "index_segment_out_of_range": (lambda p: _edit_table(p, "index/events/spikes", "segment", 50), ["names segment 50 of"]),
    "index_rows_huge": (lambda p: _edit_table(p, "index/events/spikes", "rows", 10**12, 0), ["the index says 1,000,000,000,000", "seg-"]),
    "index_rows_negative": (lambda p: _edit_table(p, "index/events/spikes", "rows", -5, 0), ["index row 0 of events/spikes has rows"]),
    "epochs_empty": (lambda p: _replace(p, "epochs", np.zeros(0, EPOCH_DTYPE)),
                     ["the /epochs table is empty"]),
    "format_version_text": (lambda p: _set_attr(p, "/", "format_version", "abc"), ["format_version attribute 'abc' is not a number"]),
    "no_start_time": (lambda p: _del_attr(p, "start_time"), ["has no start_time attribute"]),
    "bad_start_time": (lambda p: _set_attr(p, "/", "start_time", "yesterday"), ["start_time attribute 'yesterday' is not an ISO 8601 time"]),
    "segment_t_missing": (lambda p: _delete(_plain_segment(p), "events/spikes/t"), ["has no events/spikes/t data", "seg-"]),
    "segment_t_2d": (lambda p: _edit_segment_column(p, "t", lambda t: np.stack([t, t], 1)), ["events/spikes/t is 2-dimensional"]),
    # 7, 8: truncated / empty / directory segments name the segment
    "segment_truncated": (_truncate_segment, ["{ret}: cannot be read (truncated file"]),
    "segment_empty": (lambda p: _empty(_plain_segment(p)), ["{ret}: cannot be read"]),
    "segment_is_directory": (lambda p: _to_directory(_plain_segment(p)),
                             ["{ret}: cannot be read", "is not a regular file but a directory"]),
}


def _empty(file: Path) -> str:
    file.write_bytes(b"")
    return file.name


def _to_directory(file: Path) -> str:
    file.unlink()
    file.mkdir()
    return file.name


def _delete(file: Path, name: str) -> None:
    with h5py.File(file, "r+") as f:
        del f[name]


def _set_attr(file: Path, obj: str, name: str, value) -> None:
    with h5py.File(file, "r+") as f:
        f[obj].attrs[name] = value


def _del_attr(file: Path, name: str) -> None:
    with h5py.File(file, "r+") as f:
        del f.attrs[name]


def _refused(capsys, argv: list[str], expected: list[str]) -> str:
    rc = main(argv)  # an exception escaping main is a traceback for the user: the test fails
    err = capsys.readouterr().err.strip()
    assert rc == 2, (argv, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert "Traceback" not in err
    for text in expected:
        assert text in err, (text, err)
    return err


@pytest.mark.parametrize("case", sorted(CASES))
def test_damaged_recordings_are_refused_by_info_and_every_export(recording, tmp_path, capsys, case):
    path = copy_recording(recording, tmp_path)
    damage, expected = CASES[case]
    ret = damage(path)
    expected = [str(path), *(t.format(ret=ret) for t in expected)]
    _refused(capsys, ["info", str(path)], expected)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    for option in EXPORTS:
        _refused(capsys, ["export", str(path), option, str(out_dir / f"x.{option[2:]}")], expected)
    assert list(out_dir.iterdir()) == []  # nothing exported, no hidden partial file either


def test_replay_windows_refuse_corrupt_rows_naming_the_segment(recording, tmp_path):
    """Replay reads time windows (SessionFile.events_in): the same checks apply there."""
    path = copy_recording(recording, tmp_path)
    _chip_100(path)
    s = SessionFile(path)  # the structure is intact: opening works
    with pytest.raises(SessionFileError, match=r"seg-\d+\.h5, events/spikes row \d+: chip id 10[0-3] is out of range"):
        s.events_in(0.0, 10.0)


def test_an_intact_recording_passes_every_check(recording, tmp_path, capsys):
    path = copy_recording(recording, tmp_path)
    assert main(["info", str(path)]) == 0
    assert "complete" in capsys.readouterr().out
    for option in EXPORTS:
        assert main(["export", str(path), option, str(tmp_path / f"x.{option[2:]}")]) == 0
        assert capsys.readouterr().err == ""  # complete: no warning
    ts, ev = SessionFile(path).events_in(0.0, 10.0)
    assert len(ev) == 1800


def test_export_of_an_incomplete_recording_warns(recording, tmp_path, capsys):
    """15: a killed (or still running) recording exports what was saved, with a warning on stderr."""
    path = copy_recording(recording, tmp_path)
    _set_attr(path, "/", "complete", False)
    assert main(["export", str(path), "--csv", str(tmp_path / "x.csv")]) == 0
    captured = capsys.readouterr()
    assert captured.err.startswith("warning: ") and "INCOMPLETE" in captured.err and str(path) in captured.err
    assert "wrote" in captured.out and (tmp_path / "x.csv").exists()


def test_export_refuses_a_symlink_loop_without_a_traceback(tmp_path, capsys):
    loop = tmp_path / "loop.h5"
    loop.symlink_to(loop)
    _refused(capsys, ["export", str(loop), "--aedat", str(tmp_path / "x.aedat")], [str(loop), "symbolic links"])
    assert not list(tmp_path.glob("*.aedat"))


def test_export_write_error_names_the_users_output_not_the_temporary_file(recording, tmp_path, capsys):
    out = tmp_path / "no_such_dir" / "x.csv"
    err = _refused(capsys, ["export", str(recording), "--csv", str(out)], [f"--csv {out}", "No such file or directory"])
    assert ".partial" not in err
