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
* ``acquisition/membrane_chipC_coreK_neuronN``: a ``TimeSeries`` (volts, session time) per
  neuron whose analog monitor was recorded;
* ``processing/streams``: every other typed stream (robot commands, sensor readings, …) as a
  ``DynamicTable`` with its own columns, named as below;
* the device (board serial, emulated or silicon) and the recording's notes and start time.

Stream and column names.  The recorder takes any stream path and column name, NWB does not: a
name may not hold ``/`` or ``:``, and some names are taken by NWB itself (every group's
attributes ``description``, ``namespace``, ``neurodata_type``, ``object_id``; a table's ``id``
and ``colnames``; ``.``).  So names are escaped, reversibly, percent-style:

* a stream's table name (:func:`nwb_stream_name`): ``%``, ``_`` and ``:`` become ``%25``,
  ``%5F`` and ``%3A``, then each ``/`` becomes ``_`` — ``robot/motor`` is ``robot_motor``,
  ``a_b`` is ``a%5Fb``; read back with :func:`stream_from_nwb_name` (``_`` → ``/``, then
  ``urllib.parse.unquote``);
* a column name (:func:`nwb_column_name`): ``%``, ``/`` and ``:`` become ``%25``, ``%2F``,
  ``%3A``; read back with :func:`column_from_nwb_name` (``urllib.parse.unquote``);
* a name that is still one NWB keeps, or (columns) one that hdmf's ``DynamicTable`` already has as
  an attribute (``name``, ``parent``, ``fields``, …), gets its first character escaped (``id`` →
  ``%69d``, ``name`` → ``%6Eame``).  Decoding never needs this list: every ``%`` in a written name
  begins an escape.

Each column's description is its original name, each table's description the stream's own.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from ..session_file import INPUT, MEMBRANE_STREAM, SPIKES, HDF5Writer, SessionFile, open_session_file
from ._output import writing

#: Names NWB keeps for itself in any group (its HDF5 attributes) and, in addition, in a ``DynamicTable``.
_GROUP_RESERVED = frozenset({"description", "namespace", "neurodata_type", "object_id", "."})
_TABLE_RESERVED = _GROUP_RESERVED | {"id", "colnames"}


def _escape(name: str, chars: str) -> str:
    """``name`` with ``%`` and each of ``chars`` written as ``%XX``."""
    if not name:
        raise ValueError("an NWB name cannot be empty")
    return "".join(f"%{ord(ch):02X}" if ch == "%" or ch in chars else ch for ch in name)


def _escape_first(name: str) -> str:
    """``name`` with its first character written as ``%XX``: a reserved name becomes a free one."""
    return f"%{ord(name[0]):02X}{name[1:]}"


def nwb_stream_name(path: str) -> str:
    """The table name in ``processing/streams`` of the typed stream ``path`` (``robot/motor`` → ``robot_motor``)."""
    name = _escape(path, "_:").replace("/", "_")
    return _escape_first(name) if name in _GROUP_RESERVED else name


def stream_from_nwb_name(name: str) -> str:
    """The stream path that :func:`nwb_stream_name` turned into ``name``."""
    return unquote(name.replace("_", "/"))


def nwb_column_name(column: str) -> str:
    """The NWB column name of a stream column (``id`` → ``%69d``, ``a:b`` → ``a%3Ab``, ``time_s`` unchanged)."""
    from hdmf.common import DynamicTable

    name = _escape(column, "/:")
    # hdmf makes each column an attribute of the table; one named like an existing attribute (name,
    # parent, fields, …) is not, and pynwb's to_dataframe() even returns the table's name as column "name"
    return _escape_first(name) if name in _TABLE_RESERVED or hasattr(DynamicTable, name) else name


def column_from_nwb_name(name: str) -> str:
    """The stream column that :func:`nwb_column_name` turned into ``name``."""
    return unquote(name)


def export_nwb(session_path: str | Path | SessionFile, out: str | Path) -> int:
    """Write an NWB file; returns the number of units (neurons that fired)."""
    from hdmf.common import VectorData, VectorIndex
    from pynwb import NWBFile, TimeSeries
    from pynwb.misc import Units

    session = open_session_file(session_path)
    attrs = session.attrs
    start = datetime.fromisoformat(str(attrs["start_time"]))
    serial = str(attrs.get("board_serial", "")) or "unknown"
    emulated = bool(attrs.get("board_emulated", False))
    identifier = hashlib.sha1(f"{attrs['start_time']}|{serial}|{session.path.name}".encode()).hexdigest()
    nwb = NWBFile(
        session_description=f"NeuroLab recording of DYNAP-SE1 {'emulator' if emulated else 'board'} {serial}",
        identifier=identifier,
        session_start_time=start,
        notes=str(attrs.get("notes", "")) or None,
        source_script=f"NeuroLab {attrs.get('software_version', '')} (neurolab export --nwb)",
        source_script_file_name=session.path.name,
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

    module = nwb.create_processing_module(name="dynapse", description="DYNAP-SE1 biases and recording markers")
    bi = session.bias_initial
    if len(bi):
        module.add(_table("bias_initial", "the full bias table when recording started (libcaer coarse numbering: 0 = largest current)", [
            ("chip", "chip", bi["chip"]),
            ("core", "core", bi["core"]),
            ("bias_name", "bias name", bi["name"]),
            ("coarse", "coarse value 0-7", bi["coarse"]),
            ("fine", "fine value 0-255", bi["fine"]),
            ("high", "high current level (False: low)", bi["high"]),
            ("normal", "normal type (False: cascode)", bi["normal"]),
            ("enabled", "enabled", bi["enabled"]),
            ("current_a", "nominal current (A)", bi["current_a"]),
        ]))
    ch = session.bias_changes
    if len(ch):
        start_unix = float(attrs.get("start_time_unix", start.timestamp()))
        module.add(_table("bias_changes", "every bias write during the recording, in order", [
            ("time", "session time (s)", ch["time_s"] - start_unix),
            ("unix_time", "wall-clock time (s since 1970)", ch["time_s"]),
            ("chip", "chip", ch["chip"]),
            ("core", "core", ch["core"]),
            ("bias_name", "bias name", ch["name"]),
            ("old_coarse", "coarse before", ch["old_coarse"]),
            ("old_fine", "fine before", ch["old_fine"]),
            ("new_coarse", "coarse after", ch["new_coarse"]),
            ("new_fine", "fine after", ch["new_fine"]),
            ("new_high", "high current level after", ch["new_high"]),
            ("new_normal", "normal type after (False: cascode)", ch["new_normal"]),
            ("new_enabled", "enabled after", ch["new_enabled"]),
            ("origin", "who changed it (gui, script, file, calibration, ...)", ch["origin"]),
        ]))

    duration = session.duration_s()
    offsets = [float(e["session_offset_s"]) for e in session.epochs]
    for i, e in enumerate(session.epochs):
        stop = offsets[i + 1] if i + 1 < len(offsets) else max(duration, offsets[i])
        nwb.add_epoch(start_time=offsets[i], stop_time=max(stop, offsets[i]), tags=[_s(e["reason"]).replace(" ", "_")])
    m = session.markers
    if len(m):
        module.add(_table("markers", "recording markers: connect, unplug, reconnect, timestamp reset, dropped events", [
            ("time", "session time (s)", m["session_time_s"]),
            ("epoch", "board-clock epoch", m["epoch"]),
            ("kind", "what happened", m["kind"]),
            ("text", "details", m["text"]),
        ]))
    membrane = f"streams/{MEMBRANE_STREAM}"
    if membrane in session.streams and session.rows(membrane):
        c = session.read_stream(membrane)
        times = session.session_time_s(c["t_us"], c["_epoch"])
        for chip, core, neuron in sorted({(int(a), int(b), int(n)) for a, b, n in zip(c["chip"], c["core"], c["neuron"], strict=True)}):
            sel = (c["chip"] == chip) & (c["core"] == core) & (c["neuron"] == neuron)
            order = np.argsort(times[sel], kind="stable")
            nwb.add_acquisition(TimeSeries(
                name=f"membrane_chip{chip}_core{core}_neuron{neuron}",
                data=c["v"][sel][order].astype(np.float64),
                timestamps=times[sel][order],
                unit="volts",
                description=f"analog monitor (membrane potential) of chip {chip} core {core} neuron {neuron}",
            ))
    others = [name for name in session.streams if name.startswith("streams/") and name != membrane and session.rows(name)]
    if others:
        extra = nwb.create_processing_module(name="streams", description="other streams of the session (robot, …)")
        for name in others:
            spec = session.streams[name]
            c = session.read_stream(name)
            path = name.removeprefix("streams/")
            extra.add(_table(nwb_stream_name(path), spec.description or path,
                             [(nwb_column_name(col), col, c[col]) for col in spec.columns]))
    _write(nwb, out)
    return n_units


def _write(nwb, out: str | Path) -> None:
    """Write ``nwb`` to ``out``; a failed write (disk full, …) raises :class:`ExportWriteError` with every HDF5 object closed.

    Through :class:`~neurolab_gui.core.session_file.HDF5Writer`, the recorder's writer: on a full
    disk HDF5's own driver fails every later write too, the file cannot be closed and HDF5's
    shutdown at interpreter exit crashes; the writer keeps the first failed write and raises it
    once HDF5 has closed the file.
    """
    from pynwb import NWBHDF5IO

    with writing(out):
        writer = HDF5Writer(Path(out))
        try:
            with NWBHDF5IO(file=writer.file, mode="w") as io:
                io.write(nwb)
        except Exception:
            writer.close(discard=True)  # raises the failed write, if that is what stopped pynwb
            raise
        writer.close()


def _table(name: str, description: str, columns: list[tuple[str, str, np.ndarray]]):
    """A ``DynamicTable`` of numpy columns: integers as int64, floats as float64, bytes as str."""
    from hdmf.common import DynamicTable, VectorData

    def convert(a: np.ndarray):
        kind = a.dtype.kind
        if kind in "SO":
            return [_s(x) for x in a]
        return a.astype({"b": bool, "f": np.float64}.get(kind, np.int64))

    return DynamicTable(name=name, description=description,
                        columns=[VectorData(name=n, description=d, data=convert(np.asarray(a))) for n, d, a in columns])


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
