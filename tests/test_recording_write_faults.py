"""The recording writer and ``neurolab record`` when the disk or the path does not cooperate.

Disk full is simulated two ways CI can run unprivileged: ``RLIMIT_FSIZE`` in a subprocess (a real
failed ``write()``, errno EFBIG, and a real interpreter exit, where HDF5 used to crash) and a
monkeypatched ``os.pwrite`` that raises ENOSPC from the second segment on (the disk fills half-way).
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from neurolab_gui.cli import main
from neurolab_gui.core.session_file import SessionFile, segments_dir
from tests.cli_output import one_error_line
from tests.disk_faults import fill_disk_from

ROOT = Path(__file__).resolve().parents[1]


def _only_the_recording_is_left(folder: Path, path: Path) -> None:
    """Nothing beside FILE and FILE.segments, and the folder holds exactly the segments the index names."""
    assert sorted(p.name for p in folder.iterdir()) == sorted([path.name, segments_dir(path).name])
    named = {row["file"].decode() for row in SessionFile(path).segments}
    assert {p.name for p in segments_dir(path).iterdir()} == named


FSIZE_CHILD = r"""
import resource, sys
import numpy as np
from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.recording import Recorder

resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))  # the index fits, a big segment does not
rec = Recorder(sys.argv[1], software_version="t", board_serial="EMU", board_emulated=True, segment_s=0.2, tick_s=0.005)
rec.start()
def batch(t0, n):
    t = np.arange(t0, t0 + n, dtype=np.int64)
    return SpikeEvents(t, np.zeros(n, np.uint8), np.ones(n, np.uint8), (t % 256).astype(np.uint16))
rec.record_spikes(batch(0, 1000))
rec.mark("connected", "a new epoch closes the first segment", new_epoch=True)
rec.record_spikes(batch(1000, 300_000))  # 2.4 MB of timestamps: this segment fails (at the latest when it closes)
assert rec.finished.wait(30), "the writer did not stop by itself"
err = rec.error
print(type(err).__name__, err.errno, err.strerror)
"""


def test_a_failed_write_stops_the_writer_keeps_what_was_saved_and_the_process_exits_cleanly(tmp_path):
    """Bug: the failed segment's HDF5 ids stayed open and HDF5's shutdown segfaulted (rc 139)."""
    path = tmp_path / "limited.h5"
    proc = subprocess.run([sys.executable, "-c", FSIZE_CHILD, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr[-3000:])
    assert proc.stdout.split()[:2] == ["OSError", str(errno.EFBIG)], proc.stdout
    assert "Exception ignored" not in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    s = SessionFile(path)
    assert not s.complete
    assert np.array_equal(s.events().timestamp_us, np.arange(1000))  # the closed segment, exactly
    with h5py.File(path) as f:
        assert np.array_equal(f["events/spikes/t"][:], np.arange(1000))
    _only_the_recording_is_left(tmp_path, path)


def test_record_stops_at_a_full_disk_with_one_error_line_and_keeps_the_first_segment(tmp_path, capsys, monkeypatch):
    """Bug: `record` went on for the whole --seconds after the writer failed, then tracebacks and a segfault."""
    path = tmp_path / "full.h5"
    full = fill_disk_from(monkeypatch, "seg-000001.h5")
    t0 = time.monotonic()
    rc = main(["record", "--board", "emulator", "--clock", "fast", "--seconds", "120", str(path)])
    took = time.monotonic() - t0
    err = capsys.readouterr().err
    assert full.is_set()
    assert rc == 1, err  # the command line was fine: a fault met while working is exit 1 (README)
    line = one_error_line(err)
    assert line.startswith(f"error: writing {path} failed: No space left on device; recording stopped, the file holds the first ")
    s = SessionFile(path)
    assert not s.complete and s.rows("events/spikes") > 0 and [r["file"].decode() for r in s.segments] == ["seg-000000.h5"]
    assert f"({s.rows('events/spikes'):,} spikes)" in line
    assert took < 60  # stopped at the failure (about a second in), not after --seconds 120
    _only_the_recording_is_left(tmp_path, path)


def test_record_checks_the_output_path_before_opening_the_board(tmp_path, capsys, monkeypatch):
    """Bug: an unwritable place or a parent that is a file gave a traceback (exit 1) after the board opened."""
    from neurolab_gui.core.session import Session

    def no_board(*_a, **_k):
        raise AssertionError("the board must not be opened")

    monkeypatch.setattr(Session, "connect", no_board)
    afile = tmp_path / "afile"
    afile.write_text("x")
    dangling = tmp_path / "dl.h5"
    dangling.symlink_to(tmp_path / "nowhere" / "target.h5")
    cases = [(afile / "x.h5", f"cannot create {afile / 'x.h5'}: {afile} is not a directory"),
             (afile / "sub" / "x.h5", f"cannot create {afile / 'sub' / 'x.h5'}: {afile} is not a directory"),
             (dangling, f"{dangling} is a symbolic link (to {tmp_path / 'nowhere' / 'target.h5'}); record to a new name")]
    if os.geteuid() != 0:  # root writes anywhere; CI runs as a normal user
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        cases.append((ro / "x.h5", f"cannot create {ro / 'x.h5'}: directory {ro} is not writable"))
    for out, expected in cases:
        assert main(["record", "--board", "emulator", "--seconds", "1", str(out)]) == 2
        assert one_error_line(capsys.readouterr().err).startswith(f"error: {expected}")
    assert dangling.is_symlink() and not (tmp_path / "nowhere").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["afile", "dl.h5", *(["ro"] if os.geteuid() != 0 else [])])


def test_a_record_that_loses_the_race_for_its_path_is_refused_cleanly(tmp_path, capsys, monkeypatch):
    """Bug: the loser of two `record`s on one path died with a FileExistsError traceback (exit 1)."""
    from neurolab_gui.core.session import Session

    path = tmp_path / "dup.h5"
    real_start = Session.start_recording

    def other_process_wins(self, p, notes=""):
        segments_dir(Path(p)).mkdir()  # the other `record` made the folder after our up-front check
        return real_start(self, p, notes=notes)

    monkeypatch.setattr(Session, "start_recording", other_process_wins)
    assert main(["record", "--board", "emulator", "--clock", "fast", "--seconds", "5", str(path)]) == 2
    assert one_error_line(capsys.readouterr().err) == f"error: {path} already exists; choose a new name"
    assert [p.name for p in tmp_path.iterdir()] == ["dup.h5.segments"] and not any(segments_dir(path).iterdir())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_finish_the_recording_like_ctrl_c(tmp_path, sig):
    """Bug: SIGTERM (timeout, kill, systemctl stop) and SIGHUP (a closed terminal) left the file INCOMPLETE."""
    path = tmp_path / f"{sig.name}.h5"
    proc = subprocess.Popen([sys.executable, "-m", "neurolab_gui", "record", "--board", "emulator", "--clock", "fast",
                             "--seconds", "120", str(path)], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not path.exists():  # the index appears once the board is open and recording started
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.05)
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert f"neurolab record: {sig.name}, finishing the file" in err and "Traceback" not in err
    assert out.startswith("recorded ")
    assert SessionFile(path).complete
    _only_the_recording_is_left(tmp_path, path)


def test_a_recording_renamed_with_its_segments_folder_still_reads(tmp_path, capsys):
    """Bug: FILE + FILE.segments renamed to NEW + NEW.segments: "5 of 5 segment files are missing"."""
    from drivers.dynapse1.spikes import SpikeEvents
    from neurolab_gui.core.recording import Recorder

    old = tmp_path / "base.h5"
    rec = Recorder(old, software_version="t", board_serial="EMU", board_emulated=True, segment_s=0.02, tick_s=0.005)
    rec.start()
    rec.record_spikes(SpikeEvents([1, 2, 3], [0, 0, 1], [0, 1, 2], [5, 6, 7]))
    rec.stop()
    new = tmp_path / "t.h5"
    old.rename(new)
    segments_dir(old).rename(segments_dir(new))
    assert list(SessionFile(new).events().neuron) == [5, 6, 7]
    assert main(["info", str(new)]) == 0 and "3 spikes" in capsys.readouterr().out
    segments_dir(new).rename(tmp_path / "elsewhere")
    with pytest.raises(ValueError, match=r"keep the segments folder next to the session file, named t\.h5\.segments or base\.h5\.segments"):
        SessionFile(new)
