"""Replay in the app: File → Open recording, then the real Play button, speed box and time slider."""

from __future__ import annotations

import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QFileDialog
from test_core_replay import make_recording

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
    assert "replay.h5" in panel.file_label.text() and "1 bias changes" in panel.file_label.text()
    assert [line.value() for line in panel.timeline_lines] == [pytest.approx(1.0, abs=0.01)]  # the change, on the timeline
    assert "IF_DC_P" in panel.timeline_lines[0].toolTip()

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
