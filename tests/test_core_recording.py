"""Session recording: round trip, plain-h5py access, epochs, drops, non-blocking stop, fan-out order."""

import re
import threading
import time

import h5py
import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.bias_model import BiasModel
from neurolab_gui.core.recording import Recorder, read_session
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_file import SessionFile, segments_dir


def _batch(rng, t0_us, t1_us, n=5000):
    return SpikeEvents(np.sort(rng.integers(t0_us, t1_us, n)), rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n))


def _recorder(path, **kw):
    kw.setdefault("segment_s", 0.02)
    kw.setdefault("tick_s", 0.005)
    return Recorder(path, software_version="9.9", board_serial="EMU00001", board_emulated=True, **kw)


def test_recording_round_trips_events_biases_and_metadata(tmp_path, monkeypatch):
    biases = BiasModel()
    path = tmp_path / "s.h5"
    rec = _recorder(path, initial_biases=biases.snapshot())
    biases.changed.connect(rec.record_bias_change)
    rec.start()
    rng = np.random.default_rng(0)
    batches = []
    for i in range(40):
        batch = _batch(rng, i * 10**5, (i + 1) * 10**5, 7000)
        batches.append(batch)
        rec.record_spikes(batch)
        if i % 10 == 0:
            time.sleep(0.03)  # several segments, merged into bigger ones on the way
    rec.record_input(SpikeEvents([5, 6], [0, 0], [0, 0], [1, 2]))
    biases.set(2, 3, "IF_DC_P", 1, 30, origin="gui")
    biases.set(2, 3, "IF_DC_P", 1, 31, origin="script élève µ")  # non-ASCII, longer than the column
    biases.set_flags(2, 3, "IF_DC_P", normal=False, enabled=False, origin="gui")  # the flags are recorded too
    rec.mark("note", "µ" * 200)
    assert rec.stop() == path

    data = read_session(path)
    expected = SpikeEvents.concatenate(batches)
    assert np.array_equal(data["spikes"].timestamp_us, expected.timestamp_us)
    assert np.array_equal(data["spikes"].neuron, expected.neuron)
    assert np.array_equal(data["spikes"].chip, expected.chip)
    assert list(data["input"].neuron) == [1, 2]
    change = data["bias_changes"][0]
    assert (change["chip"], change["core"], change["name"].decode(), change["new_coarse"], change["new_fine"]) == (2, 3, "IF_DC_P", 1, 30)
    assert change["origin"].decode() == "gui"
    assert data["bias_changes"][1]["origin"].decode() == "script élève µ"[:13]
    flags = data["bias_changes"][2]
    assert (flags["new_coarse"], flags["new_fine"], flags["new_high"], flags["new_normal"], flags["new_enabled"]) == (1, 31, True, False, False)
    assert data["markers"][-1]["text"].decode() == "µ" * 80
    assert len(data["bias_initial"]) == 400
    attrs = data["attrs"]
    assert attrs["software_version"] == "9.9" and attrs["board_serial"] == "EMU00001" and attrs["complete"]
    assert attrs["timestamp_unit"] == "us" and "T" in attrs["start_time"] and "+" in attrs["start_time"]

    # plain h5py, from another working directory: the virtual datasets hold every event
    monkeypatch.chdir("/")
    with h5py.File(path) as f:
        assert np.array_equal(f["events/spikes/t"][:], expected.timestamp_us)
        assert np.array_equal(f["events/spikes/core"][:], expected.core)
        assert f["events/input/neuron"][:].tolist() == [1, 2]
        assert len(f["segments"]) < 40  # merged


def test_recorder_refuses_to_overwrite(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"")
    with pytest.raises(FileExistsError):
        _recorder(path)


def test_timestamp_reset_starts_an_epoch_and_the_session_timeline_stays_monotonic(tmp_path):
    path = tmp_path / "reset.h5"
    rec = _recorder(path)
    rec.start()
    rng = np.random.default_rng(1)
    rec.record_spikes(_batch(rng, 5_000_000, 6_000_000))
    rec.record_spikes(_batch(rng, 0, 1_000_000))  # the board's clock was reset
    rec.stop()
    s = SessionFile(path)
    assert [e["reason"].decode() for e in s.epochs] == ["recording started", "timestamp reset"]
    assert [m["kind"].decode() for m in s.markers] == ["timestamp_reset"]
    ts, ev = s.events_in(0, 1e9)
    assert len(ev) == 10_000 and np.all(np.diff(ts) >= 0)


def test_full_queue_drops_whole_batches_counts_and_marks_them(tmp_path, monkeypatch):
    path = tmp_path / "drops.h5"
    rec = _recorder(path, max_queue_events=1000)
    slow_disk = threading.Event()
    original = rec._process

    def slow_process(items):
        slow_disk.wait(10)
        original(items)

    monkeypatch.setattr(rec, "_process", slow_process)
    rec.start()
    rng = np.random.default_rng(2)
    assert rec.record_spikes(_batch(rng, 0, 1000, 600))
    assert not rec.record_spikes(_batch(rng, 1000, 2000, 600))  # 1200 > 1000 queued rows
    assert rec.record_spikes(_batch(rng, 2000, 3000, 300))
    assert rec.status().dropped_events == 600
    slow_disk.set()
    rec.stop()
    s = SessionFile(path)
    assert s.rows("events/spikes") == 900 and s.dropped_events == 600
    assert any(m["kind"] == b"dropped" and b"600 events" in m["text"] for m in s.markers)


def test_typed_streams_for_robot_sessions(tmp_path):
    path = tmp_path / "robot.h5"
    rec = _recorder(path)
    rec.add_stream("robot/motor", {"time_s": "f8", "left": "i2", "right": "i2"}, description="motor commands")
    rec.start()
    rec.append("robot/motor", {"time_s": [1.0, 2.0], "left": [10, -5], "right": [10, 5]})
    with pytest.raises(ValueError, match="takes columns"):
        rec.append("robot/motor", {"time_s": [1.0]})
    rec.stop()
    with h5py.File(path) as f:
        assert f["streams/robot/motor/left"][:].tolist() == [10, -5]
        assert f["streams/robot/motor"].attrs["description"] == "motor commands"
    assert SessionFile(path).summary()["streams"] == {"streams/robot/motor": 2}


@pytest.mark.parametrize("stream, columns, named", [
    ("", {"x": "f8"}, "''"), ("a/", {"x": "f8"}, "'a/'"), (".", {"x": "f8"}, "'.'"), ("a/../b", {"x": "f8"}, "'a/../b'"),
    ("a%d", {"x": "f8"}, "'a%d'"), ("ok", {"": "f8"}, "''"), ("ok", {"a/b": "f8"}, "'a/b'"), ("ok", {"5%": "f8"}, "'5%'"),
    ("ok", {"_epoch": "i4"}, "'_epoch'"),
])
def test_stream_names_hdf5_cannot_hold_are_refused_when_declared(tmp_path, stream, columns, named):
    """Refused at add_stream, naming the name: HDF5 would fail on them mid-recording (hostile recording test)."""
    rec = _recorder(tmp_path / "s.h5")
    with pytest.raises(ValueError, match=re.escape(named)):
        rec.add_stream(stream, columns)
    rec.add_stream("a_b/c:d", {"id": "i4", "name": "f8"})  # unusual but fine names still go


def test_stop_returns_at_once_stamps_the_users_stop_time_and_finishes_in_the_background(tmp_path, monkeypatch):
    session = Session()
    path = tmp_path / "stop.h5"
    session.start_recording(path)
    recorder = session.recorder
    slow_disk = threading.Event()
    original = recorder._process
    monkeypatch.setattr(recorder, "_process", lambda items: (slow_disk.wait(10), original(items)))
    finished = []
    session.recording_finished.connect(lambda p, err: finished.append((p, err)))
    session.connection.feed(_batch(np.random.default_rng(3), 0, 10**6))
    stopped_at = time.time()
    assert session.stop_recording() == path  # returns while the writer is still stuck
    assert session.recording is None and not finished
    assert session.recording_status().state == "finishing"
    time.sleep(0.05)
    slow_disk.set()
    recorder.wait(10)
    assert finished == [(path, None)]
    s = SessionFile(path)
    from datetime import datetime

    assert abs(datetime.fromisoformat(s.attrs["stop_time"]).timestamp() - stopped_at) < 0.04
    assert s.rows("events/spikes") == 5000


def test_recorder_is_fed_before_a_monitor_that_raises(tmp_path, monkeypatch):
    session = Session()
    path = tmp_path / "fanout.h5"
    session.start_recording(path)

    def broken_monitor(batch):
        raise ValueError("monitor cannot take this batch")

    monkeypatch.setattr(session.spikes, "on_events", broken_monitor)
    batch = SpikeEvents([30, 20, 10], [0, 1, 2], [0, 0, 0], [1, 2, 3])  # time going backwards
    session.connection.feed(batch)
    session.stop_recording(wait=True)
    assert read_session(path)["spikes"].timestamp_us.tolist() == [30, 20, 10]


def test_reconnect_and_unplug_are_marked_and_start_a_new_epoch(tmp_path):
    from neurolab_gui.core.connection import ConnectionTarget, open_board

    session = Session(opener=lambda t: open_board(ConnectionTarget(t.board, t.seed, t.mismatch, "fast")))
    assert session.connect(acquire=False)
    path = tmp_path / "replug.h5"
    session.start_recording(path)
    session.connection.feed(SpikeEvents([100, 200], [0, 0], [0, 0], [1, 2]))
    session.stimulus.set_poisson(0, [1, 2], 50.0)  # stimulus settings are marked too
    session.connection.disconnect("unplugged")
    assert session.connect(acquire=False)
    session.connection.feed(SpikeEvents([50], [0], [0], [3]))  # the new board's clock starts again
    session.stop_recording(wait=True)
    session.close()
    s = SessionFile(path)
    assert [m["kind"].decode() for m in s.markers] == ["connected", "stimulus", "unplugged", "connected"]
    assert b"2 sources at 50 Hz" in s.markers[1]["text"]
    assert [e["reason"].decode() for e in s.epochs] == ["recording started", "connected"]
    ts, ev = s.events_in(0, 1e9)
    assert ev.timestamp_us.tolist() == [100, 200, 50] and np.all(np.diff(ts) > 0)
    assert segments_dir(path).is_dir()


def test_a_failing_disk_fails_the_recording_loudly_and_keeps_what_was_closed(tmp_path, monkeypatch):
    path = tmp_path / "full.h5"
    rec = _recorder(path)
    errors = []
    rec.finished_signal.connect(lambda p, err: errors.append(err))
    rec.start()
    rng = np.random.default_rng(4)
    rec.record_spikes(_batch(rng, 0, 10**6, 1000))
    while SessionFile(path).rows("events/spikes") < 1000:  # closed into a segment and indexed
        time.sleep(0.01)

    def disk_full(self, *args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(h5py.Group, "create_dataset", disk_full)
    rec.record_spikes(_batch(rng, 10**6, 2 * 10**6, 1000))
    rec.finished.wait(10)
    assert rec.status().state == "failed" and isinstance(errors[0], OSError)
    assert not rec.record_spikes(_batch(rng, 0, 1, 10))
    with pytest.raises(RuntimeError, match="No space left on device"):
        rec.stop()
    monkeypatch.undo()
    s = SessionFile(path)
    assert not s.complete and s.rows("events/spikes") == 1000


def test_reader_names_the_problem_with_foreign_damaged_or_incomplete_files(tmp_path):
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f["data"] = np.arange(3)
    with pytest.raises(ValueError, match="not a NeuroLab session file"):
        SessionFile(foreign)
    path = tmp_path / "ok.h5"
    rec = _recorder(path)
    rec.start()
    rec.record_spikes(SpikeEvents([1, 2], [0, 0], [0, 0], [0, 1]))
    rec.stop()
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(path.read_bytes()[:300])
    with pytest.raises(ValueError, match="cannot be opened as HDF5"):
        SessionFile(truncated)
    crafted = tmp_path / "crafted.h5"
    crafted.write_bytes(path.read_bytes())
    with h5py.File(crafted, "a") as f:
        f.attrs["segments_dir"] = "../../etc"
    with pytest.raises(ValueError, match="plain file names"):
        SessionFile(crafted)
    for seg in segments_dir(path).iterdir():
        seg.unlink()
    with pytest.raises(ValueError, match="segment files are missing"):
        SessionFile(path)


@pytest.mark.parametrize("max_copy_rows", [0, 10**9])
def test_merged_segments_nest_and_read_back_whether_copied_or_virtual(tmp_path, monkeypatch, max_copy_rows):
    from neurolab_gui.core import recording

    monkeypatch.setattr(recording, "MERGE_FANOUT", 2)  # levels 1, 2, 3 … after a few segments
    monkeypatch.setattr(recording, "MERGE_MAX_ROWS", max_copy_rows)  # 0: every merge is virtual
    path = tmp_path / f"nest{max_copy_rows}.h5"
    rec = _recorder(path)
    rec.start()
    rng = np.random.default_rng(6)
    batches = []
    for i in range(12):
        batches.append(_batch(rng, i * 10**5, (i + 1) * 10**5, 500))
        rec.record_spikes(batches[-1])
        time.sleep(0.03)  # one segment each
    rec.stop()
    expected = SpikeEvents.concatenate(batches)
    s = SessionFile(path)
    assert len(s.segments) < 6  # 12 segments merged in a binary tree
    assert np.array_equal(s.events().timestamp_us, expected.timestamp_us)
    ts, ev = s.events_in(0.35, 0.75)
    t_all = s.session_time_s(expected.timestamp_us, 0)
    assert np.array_equal(ev.timestamp_us, expected.timestamp_us[(t_all >= 0.35) & (t_all < 0.75)])
    monkeypatch.chdir("/")
    with h5py.File(path) as f:
        assert np.array_equal(f["events/spikes/neuron"][:], expected.neuron)
    n_files = len(list(segments_dir(path).iterdir()))
    assert n_files == len(s.segments) if max_copy_rows else n_files > len(s.segments)  # virtual: originals stay


def test_time_windows_find_events_of_batches_that_went_back_in_time(tmp_path):
    """Issue 14: decoded batches whose timestamps go backwards (less than a reset) are kept and found."""
    path = tmp_path / "jitter.h5"
    rec = _recorder(path)
    rec.start()
    rng = np.random.default_rng(7)
    batches = []
    for i in range(30):
        t0 = i * 200_000 - (600_000 if i % 3 == 2 else 0)  # every third batch starts 0.6 s in the past
        batches.append(_batch(rng, max(0, t0), max(0, t0) + 200_000, 3000))
        rec.record_spikes(batches[-1])
    rec.stop()
    s = SessionFile(path)
    assert len(s.epochs) == 1  # not a reset
    all_events = SpikeEvents.concatenate(batches)
    t_all = s.session_time_s(all_events.timestamp_us, 0)
    for a, b in ((0.0, 0.05), (1.0, 1.7), (2.5, 6.0), (-1.0, 100.0)):
        ts, ev = s.events_in(a, b)
        want = (t_all >= a) & (t_all < b)
        assert np.array_equal(np.sort(ev.timestamp_us), np.sort(all_events.timestamp_us[want]))


def test_file_names_with_spaces_and_accents_record_and_read(tmp_path, monkeypatch):
    path = tmp_path / "my sessión 1.h5"
    rec = _recorder(path)
    rec.start()
    rec.record_spikes(SpikeEvents([1, 2, 3], [0, 0, 0], [0, 0, 0], [0, 1, 2]))
    rec.stop()
    assert SessionFile(path).rows("events/spikes") == 3
    monkeypatch.chdir(tmp_path)
    with h5py.File(path.name) as f:
        assert f["events/spikes/neuron"][:].tolist() == [0, 1, 2]


def test_rows_of_a_stream_the_file_does_not_declare_names_the_streams_it_has(tmp_path):
    """``rows("spikes")`` (the stream is "events/spikes") read as 0: an empty-looking recording."""
    from test_core_replay import make_recording

    from neurolab_gui.core.session_file import SPIKES, SessionFile

    path = tmp_path / "r.h5"
    events = make_recording(path, seconds=0.2)
    f = SessionFile(path)
    assert f.rows(SPIKES) == len(events)
    with pytest.raises(KeyError, match=r"no stream 'spikes' in r.h5; its streams: .*events/spikes"):
        f.rows("spikes")
