"""Replay in the app: File → Open recording, then the real Play button, speed box and time slider."""

from __future__ import annotations

import threading
import time

import pytest
from PyQt6.QtCore import QEvent, QPointF, Qt
from PyQt6.QtGui import QMouseEvent
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QApplication, QFileDialog
from test_core_replay import make_recording

from neurolab_gui.core.bias_model import BiasModel
from neurolab_gui.core.recording import Recorder
from neurolab_gui.qt.panels.replay_panel import TIMELINE_COLOURS

# ``window``: the shared main-window fixture (tests/conftest.py)


def test_open_play_pause_speed_and_scrub_a_recording(window, qtbot, tmp_path, monkeypatch):
    path = tmp_path / "replay.h5"
    events = make_recording(path, seconds=2.0)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.open_recording_action.trigger()
    replay = window.session.replay
    panel = window.replay_panel
    assert replay is not None
    qtbot.waitUntil(panel.play_button.isEnabled)  # the panel hears of the replay on the GUI thread
    assert panel.file_label.text().startswith("replay.h5: board EMU, ") and "1 bias changes" in panel.file_label.text()
    ticks, _ = panel.timeline_curves[TIMELINE_COLOURS["bias"]].getData()  # the change, on the timeline
    assert list(ticks) == [pytest.approx(1.0, abs=0.01)] * 2
    assert "IF_DC_P" in panel.timeline_tooltip(1.0) and panel.timeline_tooltip(0.5, radius_s=0.1) == ""

    window.raster_panel.chip_spin.setValue(0)
    window.raster_panel.all_cores_check.setChecked(True)  # the recording's neurons are on core 2
    QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert replay.playing
    qtbot.waitUntil(lambda: window.raster_panel.last_frame is not None and window.raster_panel.last_frame.n_events > 0, timeout=10_000)
    QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    assert not replay.playing and panel.play_button.text() == "Play"
    paused_at = replay.position_s
    qtbot.wait(100)
    assert replay.position_s == paused_at and 0 < paused_at < replay.duration_s

    panel.speed_spin.selectAll()
    QTest.keyClicks(panel.speed_spin, "8")
    QTest.keyClick(panel.speed_spin, Qt.Key.Key_Return)
    assert replay.speed == pytest.approx(8.0)

    panel.slider.setFocus()
    QTest.keyClick(panel.slider, Qt.Key.Key_End)  # scrub to the end
    assert replay.position_s == pytest.approx(replay.duration_s, abs=1e-3)
    dc = lambda: window.session.biases.value(0, 2, "IF_DC_P")  # noqa: E731
    qtbot.waitUntil(lambda: (dc().coarse, dc().fine) == (3, 77))  # the bias change at 1 s was replayed
    qtbot.waitUntil(lambda: window.session.spikes.ring.latest_us is not None and window.session.spikes.ring.latest_us > 1_900_000)
    QTest.keyClick(panel.slider, Qt.Key.Key_Home)  # and back to the start
    assert replay.position_s == 0
    qtbot.waitUntil(lambda: len(window.session.spikes.ring) == 0 and (dc().coarse, dc().fine) != (3, 77))

    QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)  # 8x: plays to the end by itself
    qtbot.waitUntil(lambda: not replay.playing, timeout=10_000)
    qtbot.waitUntil(lambda: panel.play_button.text() == "Play" and not panel.play_button.isChecked())
    assert len(window.session.spikes.ring) == len(events)  # every event once since the scrub to 0
    assert panel.time_label.text().startswith(f"{replay.duration_s:.3f}")


def test_the_replay_bar_says_no_board_for_a_recording_made_without_one(window, qtbot, tmp_path, monkeypatch):
    """It said "board , 0 spikes"."""
    path = tmp_path / "none.h5"
    rec = Recorder(path, software_version="t", board_serial="", board_emulated=False, initial_biases=BiasModel().snapshot())
    rec.start()
    rec.stop()
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.open_recording_action.trigger()
    qtbot.waitUntil(window.replay_panel.play_button.isEnabled)
    assert window.replay_panel.file_label.text().startswith("none.h5: no board, 0 spikes")


def test_a_file_that_is_not_a_recording_is_reported_not_opened(window, tmp_path, monkeypatch):
    bad = tmp_path / "bad.h5"
    bad.write_bytes(b"not hdf5")
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(bad), ""))
    window.open_recording_action.trigger()
    assert window.session.replay is None and not window.replay_panel.play_button.isEnabled()
    assert "cannot be opened as HDF5" in window.reporter.errors[-1][0]


def test_stopping_a_recording_with_the_record_button_never_waits_for_the_writer(window, qtbot, tmp_path, monkeypatch):
    """Issue 15.3: the stop click returns at once even while the disk is stuck; the file completes later."""
    import threading

    import numpy as np

    from drivers.dynapse1.spikes import SpikeEvents
    from neurolab_gui.core.session_file import SessionFile

    path = tmp_path / "rec.h5"
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (str(path), ""))
    button = window.connection_bar.record_button
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)
    recorder = window.session.recorder
    assert recorder is not None and button.isChecked()
    stuck = threading.Event()
    original = recorder._process
    monkeypatch.setattr(recorder, "_process", lambda items: (stuck.wait(30), original(items)))
    window.session.connection.feed(SpikeEvents(np.arange(1000), np.zeros(1000), np.zeros(1000), np.arange(1000) % 256))
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)  # stop: must not wait for the stuck writer
    assert window.session.recording is None and not recorder.finished.is_set()
    qtbot.waitUntil(lambda: "finishing" in window.recording_label.text())
    assert not button.isChecked()
    stuck.set()
    qtbot.waitUntil(lambda: window.recording_label.text() == "saved rec.h5", timeout=10_000)
    assert SessionFile(path).rows("events/spikes") == 1000


def test_recording_to_an_existing_file_is_never_offered_and_is_refused_untouched(window, qtbot, tmp_path, monkeypatch):
    """The recorder never replaces a session file, so the Save dialog must not ask "replace?" (and then refuse)."""
    from neurolab_gui.qt.main_window import free_recording_name

    existing = tmp_path / "old.h5"
    existing.write_bytes(b"an earlier recording")
    asked: list[tuple] = []
    monkeypatch.setattr(QFileDialog, "getSaveFileName", lambda *a, **k: (asked.append((a, k)), (str(existing), ""))[1])
    button = window.connection_bar.record_button
    QTest.mouseClick(button, Qt.MouseButton.LeftButton)
    (args, kwargs), = asked
    assert kwargs["options"] & QFileDialog.Option.DontConfirmOverwrite and "never replaces" in args[1]
    assert window.session.recording is None and not button.isChecked()
    assert "old.h5 already exists; choose a new name" in window.reporter.errors[-1][0]
    assert existing.read_bytes() == b"an earlier recording"
    # the name the dialog starts from is a free one (neither the file nor its segments folder exists)
    assert free_recording_name(tmp_path) == tmp_path / "session.h5"
    (tmp_path / "session.h5").touch()
    (tmp_path / "session-1.h5.segments").mkdir()
    assert free_recording_name(tmp_path) == tmp_path / "session-2.h5"


def test_the_status_bar_shows_dropped_events_while_recording(window, qtbot, tmp_path):
    import numpy as np

    from drivers.dynapse1.spikes import SpikeEvents

    window.session.start_recording(tmp_path / "drops.h5")
    recorder = window.session.recorder
    recorder.max_queue_events = 10  # a writer that cannot keep up
    window.session.connection.feed(SpikeEvents(np.arange(100), np.zeros(100), np.zeros(100), np.zeros(100)))
    qtbot.waitUntil(lambda: "100 DROPPED" in window.recording_label.text(), timeout=5_000)
    window.session.stop_recording()
    qtbot.waitUntil(lambda: window.recording_label.text() == "saved drops.h5 (100 events dropped)", timeout=10_000)


def test_a_bad_recording_leaves_the_live_board_and_its_deployment_alone(make_window, tmp_path, monkeypatch):
    """Hostile GUI B2: File → Open recording with a bad file used to close the board first."""
    window = make_window(seed=1, clock="fast", acquire=False)
    session = window.session
    board = session.board
    sentinel = object()  # stands for a deployed network (the disconnect handler would drop it)
    session.deployment = sentinel  # set directly: the panels need not draw a stand-in
    garbage = tmp_path / "garbage.h5"
    garbage.write_bytes(bytes(range(256)) * 20)
    (tmp_path / "dir.h5").mkdir()
    for path in (garbage, tmp_path / "dir.h5", tmp_path / "missing.h5"):
        monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, p=path, **k: (str(p), ""))
        n = len(window.reporter.errors)
        window.open_recording_action.trigger()
        assert len(window.reporter.errors) == n + 1 and path.name in window.reporter.errors[-1][0]
        assert session.connection.status.state == "connected" and session.board is board
        assert session.deployment is sentinel and session.replay is None


# --- hostile report #5, #13, #14: damaged recordings and corrupt events in the app -----------------

def _damaged_copy(tmp_path, name: str, seconds: float = 0.5):
    """A tiny recording (one segment) and its SessionFile, to be damaged by the test."""
    from neurolab_gui.core.session_file import SessionFile

    path = tmp_path / name
    make_recording(path, seconds=seconds)
    return path, SessionFile(path)


def _open_in_app(window, monkeypatch, path) -> int:
    """File → Open recording with ``path`` chosen; returns the number of reports before."""
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    n = len(window.reporter.errors)
    window.open_recording_action.trigger()
    return n


def test_corrupt_neuron_ids_are_dropped_and_reported_once_not_per_frame(window, qtbot, heartbeat):
    """Report #13 (live board or any source): ids outside the board made the raster raise IndexError
    on every frame (21-26 error boxes in 1.5 s); they are dropped, counted and announced once."""
    import numpy as np

    from drivers.dynapse1.spikes import SpikeEvents

    window.reporter.install()  # as the app does: errors from slots and threads are reported
    raster = window.raster_panel
    try:
        with heartbeat.watch("corrupt stream"):
            for k in range(40):  # 0.8 s of a board sending a third of its events corrupt
                t = 20_000 * k + np.arange(0, 20_000, 200)
                n = len(t)
                neuron = np.where(np.arange(n) % 3 == 0, 60000, np.arange(n) % 256)
                window.session.connection.feed(SpikeEvents(t, np.zeros(n), np.zeros(n), neuron))
                qtbot.wait(20)
            # the raster's info line keeps the running count (34 of every 100 events)
            qtbot.waitUntil(lambda: "1,360 events with ids outside the board dropped" in raster.info_label.text())
    finally:
        window.reporter.uninstall()
    heartbeat.assert_no_stall()
    assert window.reporter.errors == []
    assert window.session.spikes.invalid_events == 40 * 34
    assert raster.frames_rendered > 5 and raster.last_frame.n_events > 0  # the valid events are drawn
    told = [line for line in window.log_panel.contents().splitlines() if "ids lie outside the board" in line]
    assert len(told) == 1 and "board: dropped 34 of 100 events" in told[0] and "neuron 60000" in told[0]


def test_replaying_a_recording_with_corrupt_ids_raises_no_error_storm(window, qtbot, heartbeat, monkeypatch, tmp_path):
    """Report #13 from a recording (seg_flip / seg_neuron_60000): Play gave an IndexError report per frame."""
    import h5py

    path, file = _damaged_copy(tmp_path, "ids.h5")
    with h5py.File(file.segments_dir / "seg-000000.h5", "r+") as seg:
        neuron = seg["events/spikes/neuron"]
        neuron[::5] = 60000
    window.reporter.install()
    try:
        n = _open_in_app(window, monkeypatch, path)
        replay = window.session.replay
        panel = window.replay_panel
        with heartbeat.watch("play corrupt recording"):
            if replay is not None:
                QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
                qtbot.waitUntil(lambda: not replay.playing, timeout=10_000)
                qtbot.wait(200)  # frames after the end
    finally:
        window.reporter.uninstall()
    heartbeat.assert_no_stall()
    errors = window.reporter.errors[n:]
    assert not any("IndexError" in title for title, _ in errors)
    # the user is told once: the monitor's warning (ids dropped), or a reader that refuses the file naming it
    told = [line for line in window.log_panel.contents().splitlines() if "ids lie outside the board" in line]
    assert (len(told) == 1 and str(path) in told[0] and not errors) or (len(errors) == 1 and str(path) in errors[0][0]), (told, errors)


def test_a_segment_damaged_during_replay_is_shown_in_the_bar_and_reported_once(window, qtbot, heartbeat, monkeypatch, tmp_path):
    """Report #14: the replay stopped with the error only in the log; the bar just flipped to Play."""
    path, file = _damaged_copy(tmp_path, "trunc.h5")
    n = _open_in_app(window, monkeypatch, path)
    replay, panel = window.session.replay, window.replay_panel
    assert replay is not None and n == len(window.reporter.errors)
    segment = file.segments_dir / "seg-000000.h5"
    segment.write_bytes(segment.read_bytes()[: segment.stat().st_size // 2])  # the disk lost it after the open
    with heartbeat.watch("play damaged segment"):
        QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.status_label.text() != "", timeout=10_000)
        qtbot.wait(200)  # no second report follows
    heartbeat.assert_no_stall()
    text = panel.status_label.text()
    assert text.startswith(f"replay stopped: replay of {path} failed at 0.000 s (segment seg-000000.h5 in ")
    assert "the segment is damaged" in text  # the reader's own check (SessionFileError) names what is wrong
    (title, details), = window.reporter.errors[n:]
    assert str(path) in title and "seg-000000.h5" in title and "Traceback" in details
    assert not replay.playing and not panel.play_button.isChecked() and panel.play_button.text() == "Play"
    assert panel.play_button.isEnabled() and panel.slider.isEnabled()  # the bar stays usable: another recording, a seek


def test_a_damaged_index_is_reported_as_could_not_open_naming_the_file(window, monkeypatch, tmp_path):
    """Report #14: KeyError / IndexError from a damaged index reached the global hook with no file name."""
    import h5py

    ghost, _ = _damaged_copy(tmp_path, "ghost.h5")
    with h5py.File(ghost, "r+") as f:
        f["events/spikes"].attrs["columns"] = ["t", "chip", "core", "neuron", "ghost"]
    oob, _ = _damaged_copy(tmp_path, "oob.h5")
    with h5py.File(oob, "r+") as f:
        index = f["index/events/spikes"][:]
        index["epoch"][0] = 99
        del f["index/events/spikes"]
        f["index/events/spikes"] = index
    for path in (ghost, oob):
        n = _open_in_app(window, monkeypatch, path)
        (title, _), = window.reporter.errors[n:]
        assert title.startswith(f"could not open the recording {path}: ")
        assert window.session.replay is None and not window.replay_panel.play_button.isEnabled()


@pytest.mark.parametrize("field, value", [("session_offset_s", float("nan")), ("session_offset_s", float("inf")),
                                          ("first_t_us", 2**62)])
def test_a_recording_with_a_damaged_epoch_table_is_refused_with_the_reason(window, monkeypatch, tmp_path, field, value):
    """Report #5 (app): NaN / inf / absurd epoch values opened, then Play did nothing and said nothing."""
    import h5py

    path, _ = _damaged_copy(tmp_path, "epochs.h5")
    with h5py.File(path, "r+") as f:
        epochs = f["epochs"][:]
        epochs[field][0] = value
        del f["epochs"]
        f["epochs"] = epochs
    n = _open_in_app(window, monkeypatch, path)
    (title, _), = window.reporter.errors[n:]
    assert title.startswith(f"could not open the recording {path}: ") and "epoch" in title.split(": ", 1)[1]
    assert window.session.replay is None and not window.replay_panel.play_button.isEnabled()


def test_the_replay_slider_holds_recordings_longer_than_its_milliseconds():
    """A QSlider holds 31 bits: milliseconds of a 30-day recording would overflow it; the bar takes fewer steps."""
    from neurolab_gui.qt.panels.replay_panel import STEPS_PER_S, slider_steps_per_s

    assert slider_steps_per_s(120.0) == STEPS_PER_S
    month = 30 * 86_400.0
    assert month * STEPS_PER_S > 2**31 - 1 and month * slider_steps_per_s(month) <= 2**31 - 1


# --- hostile round 7 F2/F3/F6: a recording made during a calibration; Open while streaming; Connect ------

def _make_calibration_recording(path, n_changes: int, seconds: float = 1.0) -> None:
    """A recording with ``n_changes`` bias changes in its middle (origin "calibration", round-robin over
    every bias as a calibration writes them), made with the real Recorder, and a few spikes."""
    import numpy as np

    from drivers.dynapse1.board_api import BiasValue
    from drivers.dynapse1.spikes import SpikeEvents
    from neurolab_gui.core.bias_model import BiasChange, BiasModel
    from neurolab_gui.core.recording import Recorder

    snap = BiasModel().snapshot()
    keys = list(snap)
    rec = Recorder(path, software_version="t", board_serial="EMU00005", board_emulated=True, initial_biases=snap)
    rec.start()
    start = rec._attrs["start_time_unix"]
    t = np.arange(0, int(seconds * 1e6), 500, dtype=np.int64)
    n = len(t)
    rec.record_spikes(SpikeEvents(t, np.zeros(n, np.uint8), (np.arange(n) % 4).astype(np.uint8), (np.arange(n) % 256).astype(np.uint16)))
    for i in range(n_changes):
        k = keys[i % len(keys)]
        old = snap[k]
        rec.record_bias_change(BiasChange(start + seconds * (0.2 + 0.6 * i / n_changes), *k, old,
                                          BiasValue(old.coarse, (old.fine + 1 + i) % 256), "calibration"))
    rec.stop()


def test_a_recording_with_thousands_of_bias_changes_opens_plays_and_seeks_without_a_stall(window, qtbot, heartbeat, monkeypatch, tmp_path):
    """Hostile round 7 F2: one timeline item and one tooltip per bias change (6,000 in a calibration's
    recording) froze the window 2 s at the open, and playing or seeking stalled 240-570 ms again and again."""
    path = tmp_path / "cal.h5"
    _make_calibration_recording(path, n_changes=3000)
    panel = window.replay_panel
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.docks["replay"].show()
    with heartbeat.watch("open"):
        window.open_recording_action.trigger()
        qtbot.waitUntil(lambda: "cal.h5" in panel.file_label.text() and panel.play_button.isEnabled(), timeout=10_000)
        qtbot.wait(200)  # its first frames
    assert "3000 bias changes" in panel.file_label.text()
    replay = window.session.replay
    with heartbeat.watch("play"):
        panel.speed_spin.setValue(2.0)
        QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not replay.playing, timeout=10_000)
        qtbot.wait(100)
    assert panel.play_button.text() == "Play" and replay.position_s == pytest.approx(replay.duration_s)
    with heartbeat.watch("seek"):
        panel.slider.setFocus()
        for key in (Qt.Key.Key_Home, Qt.Key.Key_End, Qt.Key.Key_Home, Qt.Key.Key_PageDown, Qt.Key.Key_End):
            QTest.keyClick(panel.slider, key)
            qtbot.wait(150)
    heartbeat.assert_no_stall()
    # the bar shows the recent changes, and the bias model holds the recorded values of the end
    assert panel.event_list.text().count("[calibration]") == 3
    last = {(int(c["chip"]), int(c["core"]), c["name"].decode()): (int(c["new_coarse"]), int(c["new_fine"]))
            for c in replay.file.bias_changes}  # the last change of each bias wins
    now = lambda: {k: (v.coarse, v.fine) for k in last for v in [window.session.biases.value(*k)]}  # noqa: E731
    qtbot.waitUntil(lambda: now() == last)
    # hovering over a tick names that change (one tooltip for the whole timeline)
    view = panel.timeline.getPlotItem().vb
    t = float(panel._timeline.times[1500])
    at = QPointF(panel.timeline.mapFromScene(view.mapViewToScene(QPointF(t, 0.5))))
    QApplication.sendEvent(panel.timeline.viewport(), QMouseEvent(QEvent.Type.MouseMove, at, panel.timeline.viewport().mapToGlobal(at),
                                                                   Qt.MouseButton.NoButton, Qt.MouseButton.NoButton, Qt.KeyboardModifier.NoModifier))
    qtbot.waitUntil(lambda: panel.timeline.toolTip() != "")
    assert panel.timeline.toolTip().startswith(f"{t:.3f} s bias: ") and "[calibration]" in panel.timeline.toolTip()


def test_connect_during_a_replay_resets_the_whole_replay_bar(window, qtbot, monkeypatch, tmp_path):
    """Hostile round 7 F6: after Connect replaced a playing replay, the disabled Play button still read
    "Pause" and stayed checked, and the time label kept the old position."""
    path = tmp_path / "replay.h5"
    make_recording(path, seconds=2.0)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.open_recording_action.trigger()
    panel, session = window.replay_panel, window.session
    qtbot.waitUntil(panel.play_button.isEnabled)
    QTest.mouseClick(panel.play_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.play_button.text() == "Pause" and not panel.time_label.text().startswith("0.000"))
    QTest.mouseClick(window.connection_bar.connect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: session.connection.status.state == "connected" and session.replay is None, timeout=20_000)
    qtbot.waitUntil(lambda: not panel.play_button.isEnabled())
    assert not panel.play_button.isChecked() and panel.play_button.text() == "Play"
    assert panel.time_label.text() == "0.000 / 0.000 s" and panel.slider.value() == 0 and panel.event_list.text() == ""
    assert panel.file_label.text().startswith("no recording open") and not panel.slider.isEnabled()
    assert panel.timeline_curves == {}


def test_a_stale_replay_notification_leaves_the_bar_showing_the_session(window, qtbot, tmp_path):
    """Hostile round 7 F6 (the race): the bar once stayed enabled with the closed file's name.  The
    notifications are queued from the thread that opened or closed the replay, so the bar shows the
    session's replay when one arrives, not the (possibly closed) one it carries."""
    path = tmp_path / "replay.h5"
    make_recording(path, seconds=0.5)
    session, panel = window.session, window.replay_panel
    replay = session.open_recording(path)
    session.close_replay()
    panel._replay_changed(replay)  # the open's notification, handled after the close
    assert not panel.play_button.isEnabled() and panel.file_label.text().startswith("no recording open")
    qtbot.wait(50)  # the queued notifications themselves
    assert not panel.play_button.isEnabled() and panel.file_label.text().startswith("no recording open")


def test_open_recording_while_a_board_streams_never_holds_the_window(make_window, qtbot, heartbeat, monkeypatch, tmp_path):
    """Hostile round 7 F3: File → Open recording closed the streaming board on the GUI thread (150-245 ms
    with the emulator in its own process, as the app runs it)."""
    path = tmp_path / "replay.h5"
    make_recording(path, seconds=0.5)
    window = make_window()
    session = window.session
    session.emulator_in_separate_process = True  # as `neurolab gui` runs it
    assert session.connect("emulator", seed=3, clock="realtime", acquire=True), session.connection.status.message
    qtbot.waitUntil(lambda: session.connection.status.event_rate_hz > 1000, timeout=20_000)  # streaming
    board = session.board
    real_close, closed_on = board.close, []

    def slow_close() -> None:  # the child answering the USB reader's last read: 210-790 ms measured
        closed_on.append(threading.current_thread())
        end = time.thread_time() + 0.3  # CPU, not a sleep: a loaded machine's heartbeat counts CPU time
        while time.thread_time() < end:
            pass
        real_close()

    monkeypatch.setattr(board, "close", slow_close)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    with heartbeat.watch("open while streaming"):
        window.open_recording_action.trigger()
        qtbot.waitUntil(lambda: session.replay is not None and window.replay_panel.play_button.isEnabled(), timeout=10_000)
    heartbeat.assert_no_stall()
    status = session.connection.status
    assert (status.state, status.message) == ("disconnected", "replaying a recording")
    assert closed_on and closed_on[0] is not threading.main_thread()
    assert session.board is None and not board.connected and window.reporter.errors == []
    assert "replay.h5" in window.replay_panel.file_label.text()


def test_open_recording_during_a_sweep_stops_it_as_disconnected_and_restores_the_biases(make_window, qtbot, monkeypatch, tmp_path):
    """Hostile round 7 F3: opening a recording closed the board under a running sweep (no stop, no restore)."""
    from test_gui_user_actions import connect_fast_emulator, set_up_sweep

    from neurolab_gui.core.jobs import JobState

    path = tmp_path / "replay.h5"
    make_recording(path, seconds=0.5)
    window = make_window()
    simulator = connect_fast_emulator(window)
    session = window.session
    session.biases.apply_preset("samna_recommended", cores=[(2, 3)])
    before = simulator.get_bias(2, 3, "IF_DC_P")[:2]
    panel = window.transfer_panel
    set_up_sweep(panel)
    panel.steps_spin.setValue(20)
    panel.duration_spin.setValue(1.0)  # still running at the click
    QTest.mouseClick(panel.sweep_button, Qt.MouseButton.LeftButton)
    task = panel.task
    qtbot.waitUntil(lambda: panel.progress.value() > 0, timeout=20_000)
    monkeypatch.setattr(QFileDialog, "getOpenFileName", lambda *a, **k: (str(path), ""))
    window.open_recording_action.trigger()
    qtbot.waitUntil(lambda: task.done and session.replay is not None, timeout=20_000)
    assert task.state == JobState.CANCELLED
    qtbot.waitUntil(lambda: panel.status.text() == f"{task.name} stopped: the board was disconnected", timeout=5_000)
    assert simulator.get_bias(2, 3, "IF_DC_P")[:2] == before  # the sweep put the user's value back before the close
    assert window.reporter.errors == []
    assert session.connection.status.message == "replaying a recording"
