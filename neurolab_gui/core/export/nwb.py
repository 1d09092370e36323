"""NWB export with pynwb: units with chip/core/neuron ids, the stimulus, biases and markers.

What goes where (NWB 2.x core schema only, so pynwb's validator checks all of it):

* ``units``: one row per neuron that fired, ``spike_times`` in session time (s), extra
  columns ``chip``, ``core``, ``neuron`` (within the core) and ``global_id`` (1024·chip +
  256·core + neuron);
* ``stimulus/fpga_spike_generator``: a ``TimeSeries`` of the stimulus events sent (data =
  global id of the targeted neuron, timestamps in session time), when the recording has any;
* ``processing/dynapse``: ``bias_initial`` (chip, core, bias_name, coarse, fine, high, current_a) and
  ``bias_changes`` (time in session time plus Unix time, chip, core, bias_name, old/new coarse and
  fine, origin) as ``DynamicTable``s;
* ``epochs``: one interval per board-clock epoch, tagged with why it began (start, reconnect,
  timestamp reset); ``processing/dynapse/markers``: the markers (unplug, reconnect, dropped
  events, …) as a ``DynamicTable``;
* the device (board serial, emulated or silicon) and the recording's notes and start time.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path

import numpy as np

from ..session_file import INPUT, SPIKES, SessionFile


def export_nwb(session_path: str | Path, out: str | Path) -> int:
    """Write an NWB file; returns the number of units (neurons that fired)."""
    from hdmf.common import DynamicTable, VectorData, VectorIndex
    from pynwb import NWBHDF5IO, NWBFile, TimeSeries
    from pynwb.misc import Units

    session = SessionFile(session_path)
    attrs = session.attrs
    start = datetime.fromisoformat(str(attrs["start_time"]))
    serial = str(attrs.get("board_serial", "")) or "unknown"
    emulated = bool(attrs.get("board_emulated", False))
    identifier = hashlib.sha1(f"{attrs['start_time']}|{serial}|{Path(session_path).name}".encode()).hexdigest()
    nwb = NWBFile(
        session_description=f"NeuroLab recording of DYNAP-SE1 {'emulator' if emulated else 'board'} {serial}",
        identifier=identifier,
        session_start_time=start,
        notes=str(attrs.get("notes", "")) or None,
        source_script=f"NeuroLab {attrs.get('software_version', '')} (neurolab export --nwb)",
        source_script_file_name=Path(session_path).name,
    )
    nwb.create_device(
        name="DYNAP-SE1",
        description=f"{'NeuroLab emulator of a ' if emulated else 'aiCTX/SynSense '}DYNAP-SE1 board, serial {serial}; "
        f"timestamps: {attrs.get('clock_source', '')}",
    )

    n_units = 0
    if SPIKES in session.streams and session.rows(SPIKES):
        c = session.read_stream(SPIKES)
        times = session.session_time_s(c["t"], c["_epoch"])
        gid = c["chip"].astype(np.int64) * 1024 + c["core"].astype(np.int64) * 256 + c["neuron"].astype(np.int64)
        order = np.lexsort((times, gid))
        gid, times = gid[order], times[order]
        ids, first = np.unique(gid, return_index=True)
        bounds = [*first[1:], len(gid)]  # end of each unit's run in the sorted spike times
        spike_times = VectorData(name="spike_times", description="spike times in session time (s)", data=times)
        nwb.units = Units(
            name="units",
            description="DYNAP-SE1 neurons that fired, one row each",
            id=ids,
            columns=[
                spike_times,
                VectorIndex(name="spike_times_index", data=np.asarray(bounds, np.int64), target=spike_times),
                VectorData(name="chip", description="chip id 0-3 (U0-U3)", data=ids // 1024),
                VectorData(name="core", description="core id 0-3 within the chip", data=ids // 256 % 4),
                VectorData(name="neuron", description="neuron id 0-255 within the core", data=ids % 256),
                VectorData(name="global_id", description="1024*chip + 256*core + neuron", data=ids),
            ],
        )
        n_units = len(ids)

    if INPUT in session.streams and session.rows(INPUT):
        c = session.read_stream(INPUT)
        times = session.session_time_s(c["t"], c["_epoch"])
        order = np.argsort(times, kind="stable")
        gid = c["chip"].astype(np.int64) * 1024 + c["core"].astype(np.int64) * 256 + c["neuron"].astype(np.int64)
        nwb.add_stimulus(
            TimeSeries(
                name="fpga_spike_generator",
                data=gid[order],
                timestamps=times[order],
                unit="neuron global id",
                description="stimulus events sent through the FPGA spike generator; data = global id of the target",
            )
        )

    module = nwb.create_processing_module(name="dynapse", description="DYNAP-SE1 biases during the recording")
    bi = session.bias_initial
    if len(bi):
        module.add(
            DynamicTable(
                name="bias_initial",
                description="the full bias table when recording started (libcaer coarse numbering: 0 = largest current)",
                columns=[
                    VectorData(name="chip", description="chip", data=bi["chip"].astype(np.int64)),
                    VectorData(name="core", description="core", data=bi["core"].astype(np.int64)),
                    VectorData(name="bias_name", description="bias name", data=[_s(x) for x in bi["name"]]),
                    VectorData(name="coarse", description="coarse value 0-7", data=bi["coarse"].astype(np.int64)),
                    VectorData(name="fine", description="fine value 0-255", data=bi["fine"].astype(np.int64)),
                    VectorData(name="high", description="high-current bias", data=bi["high"].astype(bool)),
                    VectorData(name="current_a", description="nominal current (A)", data=bi["current_a"].astype(np.float64)),
                ],
            )
        )
    ch = session.bias_changes
    if len(ch):
        start_unix = float(attrs.get("start_time_unix", start.timestamp()))
        module.add(
            DynamicTable(
                name="bias_changes",
                description="every bias write during the recording, in order",
                columns=[
                    VectorData(name="time", description="session time (s)", data=ch["time_s"] - start_unix),
                    VectorData(name="unix_time", description="wall-clock time (s since 1970)", data=ch["time_s"].astype(np.float64)),
                    VectorData(name="chip", description="chip", data=ch["chip"].astype(np.int64)),
                    VectorData(name="core", description="core", data=ch["core"].astype(np.int64)),
                    VectorData(name="bias_name", description="bias name", data=[_s(x) for x in ch["name"]]),
                    VectorData(name="old_coarse", description="coarse before", data=ch["old_coarse"].astype(np.int64)),
                    VectorData(name="old_fine", description="fine before", data=ch["old_fine"].astype(np.int64)),
                    VectorData(name="new_coarse", description="coarse after", data=ch["new_coarse"].astype(np.int64)),
                    VectorData(name="new_fine", description="fine after", data=ch["new_fine"].astype(np.int64)),
                    VectorData(name="origin", description="who changed it (gui, script, file, calibration, ...)", data=[_s(x) for x in ch["origin"]]),
                ],
            )
        )

    duration = session.duration_s()
    offsets = [float(e["session_offset_s"]) for e in session.epochs]
    for i, e in enumerate(session.epochs):
        stop = offsets[i + 1] if i + 1 < len(offsets) else max(duration, offsets[i])
        nwb.add_epoch(start_time=offsets[i], stop_time=max(stop, offsets[i]), tags=[_s(e["reason"]).replace(" ", "_")])
    if len(session.markers):
        m = session.markers
        module.add(
            DynamicTable(
                name="markers",
                description="recording markers: connect, unplug, reconnect, timestamp reset, dropped events",
                columns=[
                    VectorData(name="time", description="session time (s)", data=m["session_time_s"].astype(np.float64)),
                    VectorData(name="epoch", description="board-clock epoch", data=m["epoch"].astype(np.int64)),
                    VectorData(name="kind", description="what happened", data=[_s(x) for x in m["kind"]]),
                    VectorData(name="text", description="details", data=[_s(x) for x in m["text"]]),
                ],
            )
        )
    with NWBHDF5IO(str(out), "w") as io:
        io.write(nwb)
    return n_units


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
