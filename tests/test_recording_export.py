"""Exports checked by independent oracles: pynwb's validator and reader, an AEDAT 3.1 reader written
here from the published description (not from our writer), and Python's csv module."""

from __future__ import annotations

import csv
import struct

import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.bias_model import BiasModel
from neurolab_gui.core.export import export_aedat, export_csv, export_nwb
from neurolab_gui.core.recording import Recorder
from neurolab_gui.core.session_file import SessionFile


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A recording with two epochs (a timestamp reset), stimulus, a bias change and a marker."""
    path = tmp_path_factory.mktemp("export") / "session.h5"
    biases = BiasModel()
    rec = Recorder(path, software_version="t", board_serial="EMU00007", board_emulated=True, initial_biases=biases.snapshot(),
                   notes="export test", segment_s=0.02, tick_s=0.005)
    biases.changed.connect(rec.record_bias_change)
    from neurolab_gui.core.session_file import MEMBRANE_COLUMNS, MEMBRANE_STREAM

    rec.add_stream(MEMBRANE_STREAM, MEMBRANE_COLUMNS)
    rec.add_stream("robot/motor", {"time_s": "f8", "left": "i2", "right": "i2"}, description="motor commands")
    rec.start()
    rec.append(MEMBRANE_STREAM, {"t_us": [2_000_000, 2_000_010], "chip": [0, 0], "core": [1, 1], "neuron": [5, 5], "v": [0.1, 0.2]})
    rec.append("robot/motor", {"time_s": [1.5, 2.5], "left": [10, -3], "right": [10, 3]})
    rng = np.random.default_rng(5)
    n = 3000
    rec.record_spikes(SpikeEvents(np.sort(rng.integers(2_000_000, 3_000_000, n)), rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n)))
    rec.record_input(SpikeEvents([2_000_100, 2_000_200], [1, 1], [0, 0], [7, 8]))
    biases.set(1, 2, "IF_THR_N", 3, 99, origin="gui")
    rec.record_spikes(SpikeEvents(np.sort(rng.integers(0, 500_000, n)), rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n)))
    rec.stop()
    return path


def read_aedat31(path):
    """Parse AEDAT 3.1 per docs.inivation.com (file-formats/aedat-3.1) and libcaer events/common.h, spike.h."""
    raw = open(path, "rb").read()
    lines, pos = [], 0
    while True:
        end = raw.index(b"\r\n", pos)
        line = raw[pos:end].decode("ascii")
        assert line.startswith("#"), line
        lines.append(line)
        pos = end + 2
        if line == "#!END-HEADER":
            break
    events = []
    while pos < len(raw):
        ev_type, source, size, ts_offset, overflow, capacity, number, valid = struct.unpack_from("<hhiiiiii", raw, pos)
        pos += 28
        assert ev_type == 12 and size == 8 and ts_offset == 4 and number == valid <= capacity
        for k in range(capacity):
            data, ts = struct.unpack_from("<Ii", raw, pos + 8 * k)
            if k < number and data & 1:
                events.append(((overflow << 31) | ts, (data >> 6) & 0x3F, (data >> 1) & 0x1F, data >> 12, source))
        pos += capacity * size
    return lines, events


def test_aedat31_export_reads_back_with_an_independent_parser(recording, tmp_path):
    out = tmp_path / "s.aedat"
    assert export_aedat(recording, out) == 6000
    lines, events = read_aedat31(out)
    assert lines[0] == "#!AER-DAT3.1" and lines[1] == "#Format: RAW"
    assert lines[2] == "#Source 1: DYNAPSE" and lines[3].startswith("#Start-Time: ")
    ts, chip, core, neuron, source = (np.array(c) for c in zip(*events, strict=True))
    assert np.all(np.diff(ts) >= 0) and set(source) == {1}
    session = SessionFile(recording)
    c = session.read_stream("events/spikes")
    expected_t = np.rint(session.session_time_s(c["t"], c["_epoch"]) * 1e6).astype(np.int64)
    order = np.argsort(expected_t, kind="stable")
    assert np.array_equal(ts, expected_t[order])
    assert np.array_equal(chip, c["chip"][order]) and np.array_equal(core, c["core"][order])
    assert np.array_equal(neuron, c["neuron"][order])


def test_nwb_export_passes_pynwbs_validator_and_holds_units_stimulus_and_biases(recording, tmp_path):
    from pynwb import NWBHDF5IO, validate

    out = tmp_path / "s.nwb"
    n_units = export_nwb(recording, out)
    assert validate(path=str(out)) == []
    session = SessionFile(recording)
    spikes = session.events()
    with NWBHDF5IO(str(out), "r") as io:
        nwb = io.read()
        units = nwb.units.to_dataframe()
        assert len(units) == n_units == len(np.unique(spikes.global_id))
        assert units["spike_times"].map(len).sum() == len(spikes)
        row = units.iloc[0]
        assert row["global_id"] == 1024 * row["chip"] + 256 * row["core"] + row["neuron"]
        stim = nwb.stimulus["fpga_spike_generator"]
        assert list(stim.data[:]) == [1024 + 7, 1024 + 8]
        dyn = nwb.processing["dynapse"]
        assert len(dyn["bias_initial"]) == 400
        change = dyn["bias_changes"].to_dataframe().iloc[0]
        assert (change["chip"], change["core"], change["bias_name"], change["new_coarse"], change["new_fine"]) == (1, 2, "IF_THR_N", 3, 99)
        assert list(nwb.epochs.to_dataframe()["tags"].map(tuple)) == [("recording_started",), ("timestamp_reset",)]
        assert "EMU00007" in nwb.devices["DYNAP-SE1"].description
        trace = nwb.acquisition["membrane_chip0_core1_neuron5"]
        assert list(trace.data[:]) == pytest.approx([0.1, 0.2]) and trace.unit == "volts"
        assert nwb.processing["streams"]["robot_motor"].to_dataframe()["left"].tolist() == [10, -3]
        all_times = np.concatenate(units["spike_times"].to_list())
        assert all_times.min() >= 0 and all_times.max() <= session.duration_s() + 1e-9


def test_csv_export_has_every_event_in_session_time_order(recording, tmp_path):
    out = tmp_path / "s.csv"
    assert export_csv(recording, out) == 6002
    with open(out) as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 6002
    times = np.array([float(r["time_s"]) for r in rows])
    assert np.all(np.diff(times) >= 0)
    assert sum(r["kind"] == "input" for r in rows) == 2
    assert {r["epoch"] for r in rows} == {"0", "1"}
