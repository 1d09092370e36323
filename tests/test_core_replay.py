"""Replay a recording through the session's fan-out: same monitors as live, seek, speed, biases."""

from __future__ import annotations

import time

import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.bias_model import BiasModel
from neurolab_gui.core.recording import Recorder
from neurolab_gui.core.session import Session


def make_recording(path, seconds=2.0, rate_hz=500):
    """Neurons 0..9 of chip 0 core 2 fire regularly for ``seconds``; IF_DC_P changes at 1 s."""
    biases = BiasModel()
    rec = Recorder(path, software_version="t", board_serial="EMU", board_emulated=True, initial_biases=biases.snapshot(),
                   segment_s=0.02, tick_s=0.005)
    rec.start()
    start_unix = rec._attrs["start_time_unix"]
    t = np.arange(0, int(seconds * 1e6), int(1e6 / rate_hz), dtype=np.int64)
    n = len(t)
    events = SpikeEvents(t, np.zeros(n, np.uint8), np.full(n, 2, np.uint8), (np.arange(n) % 10).astype(np.uint16))
    rec.record_spikes(events)
    old = biases.value(0, 2, "IF_DC_P")
    from drivers.dynapse1.board_api import BiasValue
    from neurolab_gui.core.bias_model import BiasChange

    rec.record_bias_change(BiasChange(start_unix + 1.0, 0, 2, "IF_DC_P", old, BiasValue(3, 77), "gui"))
    rec.stop()
    return events


def test_replay_feeds_the_live_monitors_seeks_and_restores_the_biases_of_the_moment(tmp_path):
    path = tmp_path / "r.h5"
    events = make_recording(path)
    session = Session()
    session.start_recording(tmp_path / "busy.h5")
    with pytest.raises(RuntimeError, match="stop recording"):
        session.open_recording(path)  # replaying into a running recording would mix two sessions
    session.stop_recording(wait=True)
    replay = session.open_recording(path)
    assert replay.duration_s == pytest.approx(events.timestamp_us[-1] / 1e6)
    assert session.spikes.total_events == 0 and not replay.playing
    with pytest.raises(ValueError):
        replay.set_speed(20)
    replay.set_speed(10)
    replay.play()
    deadline = time.monotonic() + 10
    while replay.playing and time.monotonic() < deadline:
        time.sleep(0.02)
    assert replay.position_s == pytest.approx(replay.duration_s)
    assert session.spikes.total_events == len(events)  # every event once, in order, through the fan-out
    t, g, _ = session.spikes.window(10.0)
    assert np.array_equal(t, events.timestamp_us) and set(g.tolist()) == set(range(512, 522))
    v = session.biases.value(0, 2, "IF_DC_P")
    assert (v.coarse, v.fine) == (3, 77)

    replay.set_speed(1.0)
    replay.seek(0.5, wait=True)  # scrub back: the view shows the 0.5 s before, the biases of then
    t, _, _ = session.spikes.window(10.0)
    assert t.max() < 500_000 and len(t) == np.count_nonzero(events.timestamp_us < 500_000)
    v = session.biases.value(0, 2, "IF_DC_P")
    assert (v.coarse, v.fine) != (3, 77)
    replay.play()
    time.sleep(0.3)
    replay.pause()
    paused_at = replay.position_s
    assert 0.5 < paused_at < replay.duration_s
    time.sleep(0.1)
    assert replay.position_s == paused_at
    session.close()
    assert session.replay is None


def test_membrane_is_recorded_while_monitored_and_replayed_into_the_membrane_monitor(tmp_path):
    from neurolab_gui.core.session_file import SessionFile

    session = Session()
    assert session.connect(clock="realtime", acquire=True)
    session.biases.set(0, 1, "IF_DC_P", 5, 60, origin="test")
    session.membrane.select(0, 1, 5)
    path = tmp_path / "membrane.h5"
    session.start_recording(path)
    deadline = time.monotonic() + 30
    def enough():
        _, v = session.membrane.trace(0, 1)
        return len(v) >= 500 and np.ptp(v) > 0  # the neuron integrates (not just the resting samples)

    while not enough() and time.monotonic() < deadline:
        session.membrane.poll()  # what the membrane panel's timer does
        time.sleep(0.05)
    session.stop_recording(wait=True)
    session.disconnect()
    s = SessionFile(path)
    rows = s.read_stream("streams/analog/membrane")
    assert len(rows["v"]) > 100 and set(rows["neuron"].tolist()) == {5} and np.ptp(rows["v"]) > 0

    replay = session.open_recording(path)
    assert replay.membrane.recorded == [(0, 1, 5)] and session.membrane.available
    replay.set_speed(10)
    replay.play()
    deadline = time.monotonic() + 10
    while replay.playing and time.monotonic() < deadline:
        session.membrane.poll()
        time.sleep(0.02)
    session.membrane.poll()
    t, v = session.membrane.trace(0, 1)
    assert len(v) == len(rows["v"]) and np.allclose(v, rows["v"])
    session.close()


def test_the_bias_model_follows_seeks_and_play_over_a_burst_of_changes(tmp_path):
    """Hostile round 7 F2: the bias table of every moment, applied from the changes crossed since the last
    tick (forward) or rebuilt (backward), is what replaying every change from the start gives."""
    from test_gui_replay import _make_calibration_recording

    path = tmp_path / "cal.h5"
    _make_calibration_recording(path, n_changes=900, seconds=1.0)
    session = Session()
    replay = session.open_recording(path)
    changes, times = replay.file.bias_changes, replay.bias_change_times
    initial = {k: (v.coarse, v.fine) for k, v in replay._initial_biases.items()}
    for t in (0.5, 0.3, 0.3001, 0.79, 0.2, 1.0, 0.0, 0.61):
        replay.seek(t, wait=True)
        expected = dict(initial)
        for c in changes[: np.count_nonzero(times <= t)]:
            expected[(int(c["chip"]), int(c["core"]), c["name"].decode())] = (int(c["new_coarse"]), int(c["new_fine"]))
        got = {k: (v.coarse, v.fine) for k in expected for v in [session.biases.value(*k)]}
        assert got == expected, t
    session.close()
