"""HDF5 session recording round trip."""

import h5py
import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.bias_model import BiasModel
from neurolab_gui.core.recording import Recorder, read_session


def test_recording_round_trips_events_biases_and_metadata(tmp_path):
    biases = BiasModel()
    path = tmp_path / "s.h5"
    rec = Recorder(path, software_version="9.9", board_serial="EMU00001", board_emulated=True, initial_biases=biases.snapshot(), flush_interval_s=0.05)
    biases.changed.connect(rec.record_bias_change)
    rec.start()
    rng = np.random.default_rng(0)
    batches = []
    for i in range(5):
        n = 70_000  # crosses a chunk boundary
        batch = SpikeEvents(np.sort(rng.integers(i * 10**6, (i + 1) * 10**6, n)), rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n))
        batches.append(batch)
        rec.record_spikes(batch)
    rec.record_input(SpikeEvents([5, 6], [0, 0], [0, 0], [1, 2]))
    biases.set(2, 3, "IF_DC_P", 1, 30, origin="gui")
    assert rec.stop() == path

    data = read_session(path)
    expected = SpikeEvents.concatenate(batches)
    assert np.array_equal(data["spikes"].timestamp_us, expected.timestamp_us)
    assert np.array_equal(data["spikes"].neuron, expected.neuron)
    assert list(data["input"].neuron) == [1, 2]
    change = data["bias_changes"][0]
    assert (change["chip"], change["core"], change["name"].decode(), change["new_coarse"], change["new_fine"]) == (2, 3, "IF_DC_P", 1, 30)
    assert change["origin"].decode() == "gui"
    assert len(data["bias_initial"]) == 400
    attrs = data["attrs"]
    assert attrs["software_version"] == "9.9" and attrs["board_serial"] == "EMU00001"
    assert attrs["timestamp_unit"] == "us" and "T" in attrs["start_time"] and "+" in attrs["start_time"]
    with h5py.File(path) as f:
        ds = f["events/spikes/t"]
        assert ds.compression == "lzf" and ds.chunks is not None and ds.maxshape == (None,)


def test_recorder_refuses_to_overwrite(tmp_path):
    path = tmp_path / "x.h5"
    path.write_bytes(b"")
    with pytest.raises(FileExistsError):
        Recorder(path, software_version="1", board_serial="", board_emulated=False)
