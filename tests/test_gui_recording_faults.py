"""Recording in the app when the disk fills half-way, and what the files say about their boards.

The disk fills with a monkeypatched ENOSPC from the recording's second segment on
(``tests/disk_faults.py``), so CI runs it unprivileged; the writer's segments are made short so
the first one is closed and named in the index before the failure.
"""

from __future__ import annotations

import functools
import json

import h5py
import numpy as np
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QFileDialog

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.cli import main
from neurolab_gui.core import session as session_module
from neurolab_gui.core.recording import Recorder
from neurolab_gui.core.session_file import SessionFile
from tests.disk_faults import fill_disk_from

LEFT = Qt.MouseButton.LeftButton


def _batch(t0: int, n: int) -> SpikeEvents:
    t = np.arange(t0, t0 + n, dtype=np.int64)
    return SpikeEvents(t, np.zeros(n, np.uint8), np.zeros(n, np.uint8), (t % 256).astype(np.uint16))


def _quick_segments(monkeypatch) -> None:
    """Recordings the session starts close a segment every 50 ms (the first is named in the index at once)."""
    monkeypatch.setattr(session_module, "Recorder", functools.partial(Recorder, segment_s=0.05, tick_s=0.01))


def test_a_failed_write_ends_the_recording_and_the_status_bar_keeps_saying_so(window, qtbot, tmp_path, monkeypatch, capsys):
    """Hostile 7 F1: after a full disk the status timer overwrote "recording FAILED" with a frozen
    "● recording …", the Record button stayed pressed, Stop then showed "finishing…" forever and the
    session stayed "recording" (Open recording refused)."""
    _quick_segments(monkeypatch)
    first, second = tmp_path / "full.h5", tmp_path / "after.h5"
    full = fill_disk_from(monkeypatch, "full.h5.segments/seg-000001.h5", every_later_write=False)
    chosen = iter([first, second])
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(next(chosen)), ""))
    button, label, session = window.connection_bar.record_button, window.recording_label, window.session

    QTest.mouseClick(button, LEFT)
    recorder = session.recorder
    assert recorder is not None and button.isChecked() and session.recording == first
    qtbot.waitUntil(lambda: label.text().startswith("● recording full.h5"))  # the timer starts with it
    window._recording_timer.setInterval(20)  # the 500 ms status timer, fired often (counted below)
    ticks: list[str] = []
    window._recording_timer.timeout.connect(lambda: ticks.append(label.text()))
    session.connection.feed(_batch(0, 1000))
    qtbot.waitUntil(lambda: recorder.status().segments >= 1 and "1,000 events" in label.text(), timeout=10_000)
    session.connection.feed(_batch(1000, 1000))  # into the second segment: the disk is full

    qtbot.waitUntil(lambda: bool(window.reporter.errors), timeout=10_000)
    assert full.is_set()
    shown = len(ticks)
    qtbot.waitUntil(lambda: len(ticks) >= shown + 5, timeout=10_000)  # the status timer fired 5 more times
    assert label.text() == "recording FAILED: No space left on device"
    assert not button.isChecked() and session.recording is None and session.recorder is None
    (title, _details), = window.reporter.errors  # the error box, once
    assert title.startswith(f"recording to {first} failed: OSError: [Errno 28] No space left on device")

    # the file holds what was written up to the failure, and says why it is incomplete
    assert main(["info", str(first)]) == 0
    out = capsys.readouterr().out
    assert f"{first}: INCOMPLETE (the write failed: No space left on device)" in out and "1,000 spikes" in out
    assert np.array_equal(SessionFile(first).events().timestamp_us, np.arange(1000))

    # the session is free at once: Open recording is not refused, and a new recording works
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(first), ""))
    window.open_recording_action.trigger()
    assert session.replay is not None and len(window.reporter.errors) == 1, window.reporter.errors
    session.close_replay()
    QTest.mouseClick(button, LEFT)
    assert button.isChecked() and session.recording == second
    session.connection.feed(_batch(0, 500))
    qtbot.waitUntil(lambda: "500 events" in label.text(), timeout=10_000)
    QTest.mouseClick(button, LEFT)  # stop
    qtbot.waitUntil(lambda: label.text() == "saved after.h5", timeout=10_000)
    assert not button.isChecked() and session.recording is None and len(window.reporter.errors) == 1
    s = SessionFile(second)
    assert s.complete and s.rows("events/spikes") == 500


def test_stopping_while_the_writer_fails_ends_in_failed_not_finishing(window, qtbot, tmp_path, monkeypatch):
    """The other order: the user stops and the writer fails finishing the file.  Even a writer that
    fails before the stop call returns must not leave "finishing the recording…" for good (its
    ``recording_finished`` used to be able to arrive before the stop's ``recording_changed(None)``)."""
    monkeypatch.setattr(session_module, "Recorder", functools.partial(Recorder, segment_s=0.05, tick_s=30))  # writes at the stop
    path = tmp_path / "late.h5"
    full = fill_disk_from(monkeypatch, "late.h5.segments/seg-000000.h5", every_later_write=False)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    button, label = window.connection_bar.record_button, window.recording_label
    QTest.mouseClick(button, LEFT)
    recorder = window.session.recorder
    request_stop = recorder.request_stop

    def writer_done_before_the_stop_returns() -> None:
        request_stop()
        assert recorder.finished.wait(10)

    monkeypatch.setattr(recorder, "request_stop", writer_done_before_the_stop_returns)
    window.session.connection.feed(_batch(0, 100))
    QTest.mouseClick(button, LEFT)  # stop: the writer takes the batch now and fails
    assert full.is_set() and recorder.error is not None
    qtbot.waitUntil(lambda: label.text().startswith("recording FAILED"), timeout=10_000)
    assert label.text() == "recording FAILED: No space left on device"
    assert not button.isChecked() and window.session.recording is None and len(window.reporter.errors) == 1


def test_info_names_every_board_a_recording_spans_and_no_board_when_there_was_none(session, tmp_path, capsys):
    """Hostile 7 F7: a recording across a reconnect to another board named only the first; one made
    with no board said "board ," (now "no board")."""
    two = tmp_path / "two.h5"
    assert session.connect("emulator", seed=3, clock="fast", acquire=False), session.connection.status.message
    first = session.board.serial
    session.start_recording(two)
    session.connection.feed(_batch(0, 10))
    session.disconnect()
    assert session.connect("emulator", seed=0, clock="fast", acquire=False), session.connection.status.message
    second = session.board.serial
    assert first != second
    session.connection.feed(_batch(0, 10))
    session.stop_recording(wait=True)
    assert main(["info", str(two)]) == 0
    assert f"  boards {first}, {second} (emulator), NeuroLab " in capsys.readouterr().out
    assert main(["info", "--json", str(two)]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["boards"] == [first, second] and info["board_serial"] == first

    session.disconnect()
    none = tmp_path / "none.h5"
    session.start_recording(none)
    session.stop_recording(wait=True)
    assert main(["info", str(none)]) == 0
    out = capsys.readouterr().out
    assert "\n  no board, NeuroLab " in out and "board ," not in out
    assert SessionFile(none).summary()["boards"] == []


def test_info_and_export_say_a_killed_recording_was_killed(tmp_path, capsys):
    """A file whose writer never finished and recorded no error keeps the old reason."""
    path = tmp_path / "killed.h5"
    rec = Recorder(path, software_version="t", board_serial="EMU00001", board_emulated=True, segment_s=0.02, tick_s=0.005)
    rec.start()
    rec.record_spikes(_batch(0, 10))
    rec.stop()
    with h5py.File(path, "r+") as f:  # as a kill leaves it: the last published index, not complete
        f.attrs["complete"] = False
    assert main(["info", str(path)]) == 0
    assert f"{path}: INCOMPLETE (its recording was killed or is still running)" in capsys.readouterr().out
    assert SessionFile(path).write_error is None
    assert main(["export", "--csv", str(tmp_path / "k.csv"), str(path)]) == 0
    assert "INCOMPLETE (its recording was killed or is still running)" in capsys.readouterr().err

