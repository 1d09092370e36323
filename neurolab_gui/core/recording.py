"""Session recording: one HDF5 file per session, written by a background thread.

Layout (format ``neurolab-session`` version 1)::

    /                       attrs: format, format_version, software_version, board_serial,
                                   board_emulated, start_time (ISO 8601 with time zone),
                                   stop_time, timestamp_unit ("us"), clock_source, notes
    /events/spikes/{t,chip,core,neuron}   int64 µs, uint8, uint8, uint16 — what the board emitted
    /events/input/{t,chip,core,neuron}    the stimulus sent, same columns, so input and output align
    /biases/initial         compound table: chip, core, name, coarse, fine, high, current_a
    /biases/changes         compound table: time_s (Unix), chip, core, name, old/new coarse+fine, origin

Every dataset is chunked, resizable along its only axis and lzf-compressed (lzf
is the fast choice for live writing; gzip is too slow).  Producers call the
``record_*`` methods from any thread; those only enqueue.  A writer thread
appends and flushes about once a second, so a crash loses at most ~1 s.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.spikes import SpikeEvents

from .bias_model import BiasChange, BiasKey

log = logging.getLogger(__name__)

FORMAT = "neurolab-session"
FORMAT_VERSION = 1
CHUNK_EVENTS = 65_536
NAME_DTYPE = h5py.string_dtype("utf-8", 32)
ORIGIN_DTYPE = h5py.string_dtype("utf-8", 16)

BIAS_INITIAL_DTYPE = np.dtype(
    [("chip", "u1"), ("core", "u1"), ("name", NAME_DTYPE), ("coarse", "u1"), ("fine", "u1"), ("high", "?"), ("current_a", "f8")]
)
BIAS_CHANGE_DTYPE = np.dtype(
    [
        ("time_s", "f8"),
        ("chip", "u1"),
        ("core", "u1"),
        ("name", NAME_DTYPE),
        ("old_coarse", "u1"),
        ("old_fine", "u1"),
        ("new_coarse", "u1"),
        ("new_fine", "u1"),
        ("origin", ORIGIN_DTYPE),
    ]
)
_EVENT_COLUMNS = (("t", np.int64), ("chip", np.uint8), ("core", np.uint8), ("neuron", np.uint16))


class Recorder:
    """Write one session file in the background.

    Parameters
    ----------
    path : path of the ``.h5`` file to create (an existing file is refused, never overwritten)
    software_version, board_serial : metadata stored as root attributes
    board_emulated : whether the events come from the emulator
    initial_biases : the full bias table at the start
    clock_source : what the timestamps count (FPGA 1 µs ticks on silicon, simulated time on the emulator)
    flush_interval_s : how often the writer flushes to disk
    """

    def __init__(
        self,
        path: str | Path,
        *,
        software_version: str,
        board_serial: str,
        board_emulated: bool,
        initial_biases: Mapping[BiasKey, BiasValue] | None = None,
        clock_source: str = "board timestamp, 1 µs ticks",
        notes: str = "",
        flush_interval_s: float = 1.0,
    ) -> None:
        self.path = Path(path)
        if self.path.exists():
            raise FileExistsError(f"recording file {self.path} already exists; choose a new name")
        self._meta = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "software_version": software_version,
            "board_serial": board_serial,
            "board_emulated": bool(board_emulated),
            "timestamp_unit": "us",
            "clock_source": clock_source,
            "notes": notes,
        }
        self._initial = dict(initial_biases or {})
        self._flush_interval_s = flush_interval_s
        self._queue: queue.Queue[tuple[str, Any] | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None
        self.counts = {"spikes": 0, "input": 0, "bias_changes": 0}

    # --- producer side (any thread) ------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Create the file and start the writer thread."""
        if self._thread is not None:
            raise RuntimeError("this recorder was already started; make a new Recorder per session")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        file = h5py.File(self.path, "w-")
        try:
            self._create_layout(file)
        except BaseException:
            file.close()
            self.path.unlink(missing_ok=True)
            raise
        self._thread = threading.Thread(target=self._run, args=(file,), name="neurolab-recorder", daemon=True)
        self._thread.start()

    def record_spikes(self, events: SpikeEvents) -> None:
        if len(events):
            self._queue.put(("spikes", events))

    def record_input(self, events: SpikeEvents) -> None:
        if len(events):
            self._queue.put(("input", events))

    def record_bias_change(self, change: BiasChange) -> None:
        self._queue.put(("bias", change))

    def stop(self, timeout_s: float = 30.0) -> Path:
        """Write everything queued, close the file and return its path; re-raises a writer error."""
        if self._thread is None:
            raise RuntimeError("recorder was never started")
        self._queue.put(None)
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            raise TimeoutError(f"recorder did not finish writing {self.path} within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"recording to {self.path} failed: {self._error}") from self._error
        return self.path

    # --- writer thread ----------------------------------------------------------------
    def _create_layout(self, f: h5py.File) -> None:
        for key, value in self._meta.items():
            f.attrs[key] = value
        f.attrs["start_time"] = datetime.now(UTC).astimezone().isoformat()
        for group in ("events/spikes", "events/input"):
            g = f.create_group(group)
            for column, dtype in _EVENT_COLUMNS:
                g.create_dataset(column, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(CHUNK_EVENTS,), compression="lzf")
        initial = np.array(
            [
                (k[0], k[1], k[2], v.coarse, v.fine, v.high, nominal_current(v.coarse, v.fine))
                for k, v in sorted(self._initial.items())
            ],
            dtype=BIAS_INITIAL_DTYPE,
        )
        f.create_dataset("biases/initial", data=initial, maxshape=(None,), chunks=True, compression="lzf")
        f.create_dataset("biases/changes", shape=(0,), maxshape=(None,), dtype=BIAS_CHANGE_DTYPE, chunks=(1024,), compression="lzf")

    def _run(self, f: h5py.File) -> None:
        import time

        last_flush = time.monotonic()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=self._flush_interval_s)
                except queue.Empty:
                    item = ("flush", None)
                if item is None:
                    break
                kind, payload = item
                if kind in ("spikes", "input"):
                    self._append_events(f[f"events/{kind}"], payload)
                    self.counts[kind] += len(payload)
                elif kind == "bias":
                    self._append_bias_change(f["biases/changes"], payload)
                    self.counts["bias_changes"] += 1
                if time.monotonic() - last_flush >= self._flush_interval_s:
                    f.flush()
                    last_flush = time.monotonic()
        except BaseException as exc:  # reported by stop(); the producer threads must not die with us
            log.exception("recorder failed")
            self._error = exc
        finally:
            try:
                f.attrs["stop_time"] = datetime.now(UTC).astimezone().isoformat()
            finally:
                f.close()

    @staticmethod
    def _append_events(group: h5py.Group, events: SpikeEvents) -> None:
        columns = {"t": events.timestamp_us, "chip": events.chip, "core": events.core, "neuron": events.neuron}
        for name, data in columns.items():
            ds = group[name]
            n0 = ds.shape[0]
            ds.resize((n0 + len(data),))
            ds[n0:] = data

    @staticmethod
    def _append_bias_change(ds: h5py.Dataset, c: BiasChange) -> None:
        row = np.array(
            [(c.time_s, c.chip, c.core, c.name, c.old.coarse, c.old.fine, c.new.coarse, c.new.fine, c.origin[:16])],
            dtype=BIAS_CHANGE_DTYPE,
        )
        n0 = ds.shape[0]
        ds.resize((n0 + 1,))
        ds[n0:] = row


def read_session(path: str | Path) -> dict[str, Any]:
    """Load a whole session file into memory: ``{"attrs", "spikes", "input", "bias_initial", "bias_changes"}``.

    ``spikes`` and ``input`` are :class:`SpikeEvents`.  Raises ``ValueError`` for a file that is not a
    NeuroLab session.
    """
    with h5py.File(path, "r") as f:
        if f.attrs.get("format") != FORMAT:
            raise ValueError(f"{path} is not a NeuroLab session file (format attribute {f.attrs.get('format')!r})")
        attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}

        def events(group: str) -> SpikeEvents:
            g = f[group]
            return SpikeEvents(g["t"][:], g["chip"][:], g["core"][:], g["neuron"][:])

        return {
            "attrs": attrs,
            "spikes": events("events/spikes"),
            "input": events("events/input"),
            "bias_initial": f["biases/initial"][:],
            "bias_changes": f["biases/changes"][:],
        }
