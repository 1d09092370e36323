"""Session recording: spikes, stimulus, bias changes, markers and typed streams to a session file.

Producers (the acquisition thread, the GUI, the robot loop) call the ``record_*`` /
:meth:`Recorder.append` methods from any thread; those only put the batch on a
bounded queue and return.  One writer thread takes everything queued every
``tick_s``, *coalesces* consecutive batches of a stream into one array per column
and appends them to the open segment with one HDF5 write per column, so the cost
per USB batch is a list append, not an HDF5 call.

Crash safety (see :mod:`neurolab_gui.core.session_file` for the layout and why):
the writer closes the open segment every ``segment_s`` seconds and then writes a new
index, which a second thread renames over the old one (atomic; a rename can take a
while on a busy disk and the writer must not wait for it), so after ``SIGKILL`` the
file holds everything received up to about ``segment_s + tick_s`` (plus one rename)
before the kill.  Closed segments are merged ``MERGE_FANOUT`` at a time into the next
level (log-structured): small groups are copied into one file, big ones merged
virtually, so the index stays cheap to rewrite however long the recording.

Back-pressure: the queue holds at most ``max_queue_events`` rows; a batch that
does not fit is dropped whole, counted in :attr:`Recorder.dropped_events` and
marked in the file (``/markers``, kind ``dropped``) so the gap is visible.

Stopping never blocks: :meth:`Recorder.request_stop` stamps ``stop_time`` (the
moment the user stopped), stops accepting data and returns; the writer drains
what is queued (bounded, so well under a second), writes the final index and sets
:attr:`Recorder.finished`.  :meth:`Recorder.stop` is request + wait, for scripts.

A recorder still running when the interpreter exits (a script that ends, or dies of an
exception, without stopping it) is stopped and its writer waited for by an ``atexit`` hook
(at most :data:`EXIT_WAIT_S`), so the file is finished and the process exits with the
script's own exit code.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sys
import threading
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.spikes import SpikeEvents

from .bias_model import BiasChange, BiasKey
from .events import Signal
from .session_file import (
    BIAS_INITIAL_DTYPE,
    EVENT_COLUMNS,
    FORMAT,
    FORMAT_VERSION,
    INPUT,
    SPIKES,
    HDF5Writer,
    IndexState,
    StreamSpec,
    read_session,
    recording_path_taken,
    segments_dir,
    virtual_column,
    write_index,
)

__all__ = ["Recorder", "RecorderStatus", "failure_cause", "read_session"]

log = logging.getLogger(__name__)

#: A jump back of board time larger than this (µs) within a stream is a timestamp reset.
TIMESTAMP_RESET_JUMP_US = 1_000_000
#: Closed segments merged into one of the next level.
MERGE_FANOUT = 16
#: Largest merge (rows): merging blocks the writer, so a high-rate recording keeps its segments.
MERGE_MAX_ROWS = 4_000_000
CHUNK_ROWS = 65_536


#: How long interpreter exit waits, in all, for running recorders to finish their files.
EXIT_WAIT_S = 10.0
#: Recorders whose writer was started and may still run (weakly: a finished, dropped one goes).
_LIVE: weakref.WeakSet[Recorder] = weakref.WeakSet()
_LIVE_LOCK = threading.Lock()


def _finish_at_exit() -> None:
    """``atexit``: stop every running recorder and wait (bounded) for its writer and index threads.

    They are daemon threads: left running at exit they were frozen inside HDF5 calls, holding
    h5py's lock, while the interpreter tore h5py down (a segfault or a hang instead of the
    script's exit code).  This module imports h5py before registering the hook, and atexit runs
    hooks last in, first out, so this runs before h5py's own exit hook.  A writer that does not
    finish in time (a disk that stopped answering) leaves the file INCOMPLETE but readable (every
    closed segment is indexed), and it still holds h5py's lock: the interpreter's finalisation
    would wait for that lock for ever, so the process ends here, with ``os._exit`` after the
    logs and standard streams are flushed (exit code 1 after an uncaught exception, else 0; a
    ``sys.exit(n)`` code cannot be seen from here).
    """
    with _LIVE_LOCK:
        recorders = [r for r in _LIVE if r._thread is not None and r._thread.is_alive()]
    for recorder in recorders:
        if not recorder.finished.is_set():
            recorder.request_stop()
    deadline = time.monotonic() + EXIT_WAIT_S
    stuck = []
    for recorder in recorders:
        writer = recorder._thread
        assert writer is not None
        writer.join(max(0.0, deadline - time.monotonic()))
        if writer.is_alive():
            stuck.append(recorder)
            log.warning("the recording %s was not finished within %.0f s of the interpreter's exit (its disk does "
                        "not answer); the file stays INCOMPLETE and the process ends without waiting for it",
                        recorder.path, EXIT_WAIT_S)
    if stuck:
        code = 1 if getattr(sys, "last_value", None) is not None else 0  # set by the traceback of an uncaught exception
        logging.shutdown()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


atexit.register(_finish_at_exit)


#: Column names a stream may not use: ``_epoch`` is the column :meth:`SessionFile.read_stream` adds.
RESERVED_COLUMNS = frozenset({"_epoch"})


def stream_name_problem(path: str, columns: Mapping[str, Any]) -> str | None:
    """Why a typed stream cannot be recorded under ``path`` with ``columns`` (None: it can).

    The stream's path becomes HDF5 groups (``a/b``: parts separated by ``/``, none empty, ``.`` or
    ``..``), each column a dataset in it (no ``/``); neither may hold ``%``, which HDF5 reads as a
    printf specifier in the virtual datasets that merge segments.
    """
    parts = str(path).split("/")
    if not path or any(p in ("", ".", "..") for p in parts) or "%" in path:
        return (f"stream name {path!r} cannot be recorded: use parts separated by '/', none empty, '.' or '..', "
                "and no '%'")
    for name in columns:
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "%" in name:
            return f"stream {path!r}: column name {name!r} cannot be recorded (empty, '.', '..', or with '/' or '%')"
        if name in RESERVED_COLUMNS:
            return f"stream {path!r}: column name {name!r} is reserved (the reader adds it)"
    return None


@dataclass(frozen=True)
class RecorderStatus:
    """What the status bar shows about a recording."""

    state: str  # recording, finishing, finished, failed
    written_events: int  # spikes and stimulus events
    dropped_events: int
    queued_events: int
    segments: int


@dataclass
class _Part:
    """Rows of one stream and epoch inside a segment."""

    epoch: int
    row0: int
    rows: int
    t_first: int
    t_last: int


@dataclass
class _Segment:
    file: str
    level: int
    epoch: int
    wall_open: float
    wall_close: float = 0.0
    opened_mono: float = 0.0
    virtual: bool = False  # a file of virtual datasets over other segments (see Recorder._merge)
    parts: dict[str, list[_Part]] = field(default_factory=dict)
    datasets: dict[str, h5py.Dataset] = field(default_factory=dict)  # of the open segment

    def rows(self, stream: str) -> int:
        return sum(p.rows for p in self.parts.get(stream, []))


class Recorder:
    """Write one session file in the background.

    Parameters
    ----------
    path : the ``.h5`` index file to create (an existing file is refused, never overwritten)
    software_version, board_serial : metadata stored as root attributes
    board_emulated : whether the events come from the emulator
    initial_biases : the full bias table at the start
    clock_source : what the timestamps count
    segment_s : how often the open segment is closed (the most a crash can lose, plus ``tick_s``)
    tick_s : how often the writer takes what is queued
    max_queue_events : rows the queue may hold before batches are dropped (memory bound:
        about 12 bytes per spike)
    compression : HDF5 filter of the segments (None, or "lzf"; lzf halves the size and
        measured ~6x slower, see ``docs/ARCHITECTURE.md``)
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
        segment_s: float = 0.5,
        tick_s: float = 0.1,
        max_queue_events: int = 4_000_000,
        compression: str | None = None,
    ) -> None:
        self.path = Path(path)
        taken = recording_path_taken(self.path)
        if taken:
            raise FileExistsError(taken)
        if segment_s <= 0 or tick_s <= 0 or max_queue_events < 1:
            raise ValueError("segment_s and tick_s must be positive and max_queue_events at least 1")
        self.segment_s = float(segment_s)
        self.tick_s = float(tick_s)
        self.max_queue_events = int(max_queue_events)
        self.compression = compression
        self._attrs: dict[str, Any] = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "software_version": software_version,
            "board_serial": board_serial,
            "board_emulated": bool(board_emulated),
            "timestamp_unit": "us",
            "clock_source": clock_source,
            "notes": notes,
            "stop_time": "",
            "complete": False,
            "dropped_events": 0,
        }
        initial = np.array(
            [(k[0], k[1], k[2], v.coarse, v.fine, v.high, v.normal, v.enabled, nominal_current(v.coarse, v.fine))
             for k, v in sorted((initial_biases or {}).items())],
            dtype=BIAS_INITIAL_DTYPE,
        )
        self._streams: dict[str, StreamSpec] = {
            SPIKES: StreamSpec(SPIKES, EVENT_COLUMNS, "t", "spikes the board emitted: board time µs, chip, core, neuron"),
            INPUT: StreamSpec(INPUT, EVENT_COLUMNS, "t", "stimulus events sent to the board, same columns"),
        }
        self._state = IndexState(attrs=self._attrs, streams=self._streams, bias_initial=initial)
        # producer side
        self._cond = threading.Condition()
        self._items: list[tuple] = []
        self._queued = 0
        self._accepting = False
        self._stopping = False
        self._drop_run = 0
        self.dropped_events = 0
        # writer side
        self._thread: threading.Thread | None = None
        self._publisher: threading.Thread | None = None
        self._pub_cond = threading.Condition()
        self._pub_pending: tuple[Path, list[str]] | None = None
        self._pub_stop = False
        self._pub_count = 0
        self._error: BaseException | None = None
        self._segments: list[_Segment] = []
        self._open: _Segment | None = None
        self._open_file: HDF5Writer | None = None
        self._unpublished = False  # a segment closed since the index was last written
        self._next_file = 0
        self._epoch = -1
        self._last_t: int | None = None
        self._start_wall = 0.0
        self.written = {SPIKES: 0, INPUT: 0}
        #: Set when the file is complete (or the writer failed); see :meth:`wait`.
        self.finished = threading.Event()
        #: ``finished_signal(path, error or None)`` from the writer thread when it is done.
        self.finished_signal = Signal("recording finished")

    # --- producer side (any thread) ------------------------------------------------------
    @property
    def error(self) -> BaseException | None:
        """Why the writer failed (e.g. an ``OSError`` "No space left on device"), or None.

        Once set the recorder accepts no more data and :attr:`finished` follows at once: the file
        keeps the segments closed before the failure (``complete`` stays False).
        """
        return self._error

    @property
    def running(self) -> bool:
        return self._thread is not None and not self.finished.is_set()

    def start(self) -> None:
        """Create the index file and the segment folder and start the writer thread."""
        if self._thread is not None:
            raise RuntimeError("this recorder was already started; make a new Recorder per session")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:  # the lock against a second recorder on the same path: only one mkdir succeeds
            segments_dir(self.path).mkdir()
        except FileExistsError:
            raise FileExistsError(f"{self.path} already exists; choose a new name") from None
        now = datetime.now(UTC).astimezone()
        self._start_wall = now.timestamp()
        self._attrs["start_time"] = now.isoformat()
        self._attrs["start_time_unix"] = self._start_wall
        self._new_epoch("recording started", self._start_wall)
        try:
            write_index(self.path, self._state)
        except BaseException:
            segments_dir(self.path).rmdir()
            raise
        self._accepting = True
        self._publisher = threading.Thread(target=self._publish_loop, name="neurolab-recorder-index", daemon=True)
        self._publisher.start()
        self._thread = threading.Thread(target=self._run, name="neurolab-recorder", daemon=True)
        with _LIVE_LOCK:
            _LIVE.add(self)
        self._thread.start()

    def add_stream(self, path: str, columns: Mapping[str, Any], time_column: str | None = None, description: str = "") -> StreamSpec:
        """Declare a typed table (e.g. ``"robot/motor"`` with ``{"time_s": "f8", "left": "i2", "right": "i2"}``).

        Rows are appended with :meth:`append`; they go into the segments like spikes do and are
        readable as ``/streams/<path>/<column>`` with plain h5py.  Declaring the same stream
        again with the same columns is a no-op.
        """
        problem = stream_name_problem(path, columns)
        if problem:  # refused here: HDF5 would fail on it later, mid-recording ("recording ... failed")
            raise ValueError(problem)
        spec = StreamSpec(f"streams/{path}", {k: np.dtype(v) for k, v in columns.items()}, time_column, description)
        with self._cond:
            old = self._streams.get(spec.path)
            if old is not None:
                if dict(old.columns) != dict(spec.columns):
                    raise ValueError(f"stream {path!r} already declared with columns {dict(old.columns)}")
                return old
            self._streams[spec.path] = spec
        return spec

    def append(self, path: str, columns: Mapping[str, Any]) -> bool:
        """Queue rows of a declared stream (columns of equal length); False if they were dropped."""
        spec = self._streams.get(f"streams/{path}")
        if spec is None:
            raise KeyError(f"stream {path!r} was not declared; call add_stream first")
        if set(columns) != set(spec.columns):
            raise ValueError(f"stream {path!r} takes columns {list(spec.columns)}, got {sorted(columns)}")
        arrays = {c: np.atleast_1d(np.asarray(columns[c], dtype=spec.columns[c])) for c in spec.columns}
        n = {len(a) for a in arrays.values()}
        if len(n) != 1:
            raise ValueError(f"stream {path!r}: columns differ in length {sorted(n)}")
        return self._put(("data", spec.path, arrays, n.pop(), time.time()))

    def record_spikes(self, events: SpikeEvents) -> bool:
        """Queue a batch of board spikes; False if the queue was full and the batch was dropped."""
        return self._put_events(SPIKES, events)

    def record_input(self, events: SpikeEvents) -> bool:
        return self._put_events(INPUT, events)

    def record_bias_change(self, change: BiasChange) -> None:
        self._put(("bias", change, time.time()), small=True)

    def mark(self, kind: str, text: str = "", new_epoch: bool = False) -> None:
        """Add a marker at this moment; ``new_epoch`` starts a new board clock (connect, reconnect)."""
        self._put(("mark", kind, text, new_epoch, time.time()), small=True)

    def _put_events(self, stream: str, events: SpikeEvents) -> bool:
        n = len(events)
        if not n:
            return True
        cols = {"t": events.timestamp_us, "chip": events.chip, "core": events.core, "neuron": events.neuron}
        return self._put(("data", stream, cols, n, time.time()))

    def _put(self, item: tuple, small: bool = False) -> bool:
        with self._cond:
            if not self._accepting:
                return False
            if not small:
                n = item[3]
                if self._queued + n > self.max_queue_events:
                    self._drop_run += n
                    self.dropped_events += n
                    return False
                self._queued += n
            self._mark_drops_locked()
            self._items.append(item)
            if self._queued >= self.max_queue_events // 4:
                self._cond.notify()
        return True

    def _mark_drops_locked(self) -> None:
        """Queue a marker for the batches dropped since the last accepted one (caller holds the lock)."""
        if self._drop_run:
            self._items.append(("mark", "dropped", f"{self._drop_run} events dropped: the writer's queue was full", False, time.time()))
            self._drop_run = 0

    def status(self) -> RecorderStatus:
        if self._error is not None:
            state = "failed"
        elif self.finished.is_set():
            state = "finished"
        elif self._stopping:
            state = "finishing"
        else:
            state = "recording"
        written = self.written.get(SPIKES, 0) + self.written.get(INPUT, 0)
        return RecorderStatus(state, written, self.dropped_events, self._queued, len(self._segments))

    def request_stop(self) -> None:
        """Stop accepting data now (this is ``stop_time``) and let the writer finish; returns at once."""
        if self._thread is None:
            raise RuntimeError("recorder was never started")
        with self._cond:
            if self._stopping:
                return
            self._accepting = False
            self._mark_drops_locked()
            self._attrs["stop_time"] = datetime.now(UTC).astimezone().isoformat()
            self._stopping = True
            self._cond.notify()

    def wait(self, timeout_s: float | None = None) -> Path:
        """Wait until the file is complete; returns its path, re-raises a writer error."""
        if not self.finished.wait(timeout_s):
            raise TimeoutError(f"recorder did not finish writing {self.path} within {timeout_s} s")
        if self._error is not None:
            raise RuntimeError(f"recording to {self.path} failed: {self._error}") from self._error
        return self.path

    def stop(self, timeout_s: float | None = 10.0) -> Path:
        """:meth:`request_stop`, then :meth:`wait` (for scripts and the CLI, never the GUI thread)."""
        self.request_stop()
        return self.wait(timeout_s)

    # --- writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        try:
            last_index = time.monotonic()
            while True:
                with self._cond:
                    if not self._items and not self._stopping:
                        self._cond.wait(self.tick_s)
                    items, self._items = self._items, []
                    stopping = self._stopping  # nothing more can be queued once this is set
                self._process(items)
                with self._cond:
                    self._queued -= sum(it[3] for it in items if it[0] == "data")
                now = time.monotonic()
                if self._open is not None and now - self._open.opened_mono >= self.segment_s:
                    self._close_segment()
                if stopping:
                    break
                if self._error is not None:  # the publisher could not rename an index
                    raise self._error
                # a closed segment is named in the index at once: that bounds what a crash loses
                if self._unpublished or now - last_index >= self.segment_s:
                    self._unpublished = False
                    self._publish(self._merge(publish=False))
                    last_index = time.monotonic()
        except BaseException as exc:  # reported by wait(); producer threads must not die with us
            _log_failure("recorder failed", exc)
            self._error = exc
            # in the final index, so `neurolab info` says why the file is incomplete (not "killed")
            self._attrs["error"] = failure_cause(exc)
            with self._cond:  # stop at the first failed write: later data could only be lost too
                self._accepting = False
        finally:
            try:
                deletions = self._stop_publisher()
                if self._open is not None:
                    if self._error is None:
                        self._close_segment()
                    else:  # half-written: never named anywhere, so delete it
                        self._discard_segment()
                self._attrs["complete"] = self._error is None
                self._attrs["dropped_events"] = self.dropped_events
                if not self._attrs.get("stop_time"):
                    self._attrs["stop_time"] = datetime.now(UTC).astimezone().isoformat()
                if self._error is None:  # after a failure write as little as possible: just the index
                    deletions += self._merge(publish=False)
                write_index(self.path, self._state)
                self._delete(deletions)
            except BaseException as exc:
                _log_failure("recorder could not finish its index", exc)
                self._error = self._error or exc
            self._accepting = False
            self.finished.set()
            self.finished_signal.emit(self.path, self._error)

    def _process(self, items: list[tuple]) -> None:
        buffered: dict[str, list[dict[str, np.ndarray]]] = {}
        first_wall: dict[str, float] = {}
        for item in items:
            kind = item[0]
            if kind == "data":
                _, stream, cols, _n, wall = item
                buffered.setdefault(stream, []).append(cols)
                first_wall.setdefault(stream, wall)
                continue
            if kind == "mark" and item[3]:  # a new epoch: the data before it goes to the old one
                self._flush(buffered, first_wall)
                buffered, first_wall = {}, {}
            if kind == "bias":
                c: BiasChange = item[1]
                self._state.bias_changes.append(
                    (c.time_s, c.chip, c.core, _fit(c.name, 32), c.old.coarse, c.old.fine, c.new.coarse, c.new.fine,
                     c.new.high, c.new.normal, c.new.enabled, _fit(c.origin, 16))
                )
            elif kind == "mark":
                _, mkind, text, new_epoch, wall = item
                if new_epoch:
                    if self._open is not None:
                        self._close_segment()
                    self._new_epoch(mkind, wall)
                self._marker(mkind, text, wall)
        self._flush(buffered, first_wall)

    def _flush(self, buffered: dict[str, list[dict[str, np.ndarray]]], first_wall: dict[str, float]) -> None:
        epoch = self._state.epochs[-1]
        if epoch[3] < 0:  # anchor the epoch's board clock at its earliest spike or stimulus event
            firsts = [int(np.min(ch["t"])) for s in (SPIKES, INPUT) for ch in buffered.get(s, []) if len(ch["t"])]
            if firsts:
                self._state.epochs[-1] = (epoch[0], epoch[1], epoch[2], min(firsts), epoch[4])
        # spikes first: they decide epoch boundaries (timestamp resets)
        for stream in sorted(buffered, key=lambda s: s != SPIKES):
            chunks = buffered[stream]
            spec = self._streams[stream]
            cols = {c: (np.concatenate([ch[c] for ch in chunks]) if len(chunks) > 1 else np.asarray(chunks[0][c])) for c in spec.columns}
            if stream == SPIKES:
                self._write_spikes(cols, first_wall[stream])
            else:
                self._write_rows(stream, cols, first_wall[stream])

    def _write_spikes(self, cols: dict[str, np.ndarray], wall: float) -> None:
        t = cols["t"]
        resets = np.flatnonzero(np.diff(t) < -TIMESTAMP_RESET_JUMP_US) + 1
        if self._last_t is not None and t[0] < self._last_t - TIMESTAMP_RESET_JUMP_US:
            resets = np.concatenate([[0], resets])
        start = 0
        for r in [*resets.tolist(), len(t)]:
            if r > start:
                self._write_rows(SPIKES, {c: a[start:r] for c, a in cols.items()}, wall)
            if r < len(t):
                before = int(t[r - 1]) if r > 0 else self._last_t
                self._last_t = before
                if self._open is not None:
                    self._close_segment()
                self._new_epoch("timestamp reset", wall)
                self._marker("timestamp_reset", f"board time jumped back from {before} µs to {int(t[r])} µs", wall)
            start = r
        self._last_t = int(t[-1])

    def _write_rows(self, stream: str, cols: dict[str, np.ndarray], wall: float) -> None:
        spec = self._streams[stream]
        n = len(next(iter(cols.values())))
        if n == 0:
            return
        epoch = self._state.epochs[-1]
        if spec.time_column is not None and stream in (SPIKES, INPUT) and epoch[3] < 0:
            # first board timestamp of this epoch: anchor board time to the session timeline
            self._state.epochs[-1] = (epoch[0], epoch[1], epoch[2], int(cols[spec.time_column][0]), epoch[4])
        seg = self._open or self._open_segment()
        assert self._open_file is not None
        f = self._open_file.file
        row0 = seg.rows(stream)
        for column in spec.columns:
            data = cols[column]
            name = f"{stream}/{column}"
            ds = seg.datasets.get(name)  # cached: an HDF5 name lookup costs ~0.25 ms
            if ds is not None:
                ds.resize((row0 + n,))
                ds[row0:] = data
            else:
                seg.datasets[name] = f.create_dataset(
                    name, data=data, maxshape=(None,), chunks=(min(CHUNK_ROWS, max(1024, n)),), compression=self.compression
                )
        tcol = cols[spec.time_column] if spec.time_column else None
        # min/max, not first/last: batches may be slightly out of order, and readers prune by range
        t_first = int(tcol.min()) if tcol is not None else 0
        t_last = int(tcol.max()) if tcol is not None else 0
        parts = seg.parts.setdefault(stream, [])
        if parts and parts[-1].epoch == self._epoch:
            p = parts[-1]
            p.rows += n
            p.t_first = min(p.t_first, t_first)
            p.t_last = max(p.t_last, t_last)
        else:
            parts.append(_Part(self._epoch, row0, n, t_first, t_last))
        self._open_file.check()  # a failed write (disk full) stops the recording here
        self.written[stream] = self.written.get(stream, 0) + n

    # --- segments, epochs, index ---------------------------------------------------------
    def _open_segment(self) -> _Segment:
        name = f"seg-{self._next_file:06d}.h5"
        self._next_file += 1
        self._open_file = HDF5Writer(segments_dir(self.path) / name)
        seg = _Segment(name, 0, self._epoch, time.time(), opened_mono=time.monotonic())
        self._open = seg
        return seg

    def _close_segment(self) -> None:
        seg, f = self._open, self._open_file
        self._open, self._open_file = None, None
        if seg is None or f is None:
            return
        f.file.attrs["epoch"] = seg.epoch
        seg.datasets.clear()
        f.close()  # raises (and deletes the file) if a write failed: the segment is then never named
        seg.wall_close = time.time()
        self._segments.append(seg)
        self._unpublished = True
        self._rebuild_index()

    def _discard_segment(self) -> None:
        """Close and delete the open segment after a failure (it holds rows no index names)."""
        seg, f = self._open, self._open_file
        self._open, self._open_file = None, None
        if seg is not None:
            seg.datasets.clear()
        if f is not None:
            with contextlib.suppress(OSError):  # the failure that got us here, already reported
                f.close(discard=True)

    def _new_epoch(self, reason: str, wall: float) -> None:
        self._epoch += 1
        offset = wall - self._start_wall
        if self._state.epochs:
            # keep the timeline monotonic: after the previous epoch's last event, even when its
            # board clock ran faster than the wall clock (the emulator's fast mode) or the wall
            # clock stepped back
            prev = self._state.epochs[-1]
            prev_end = prev[2] + (self._last_t - prev[3]) / 1e6 if self._last_t is not None and prev[3] >= 0 else prev[2]
            offset = max(offset, prev_end + 1e-3)
        self._last_t = None
        self._state.epochs.append((self._epoch, wall, offset, -1, _fit(reason, 32)))

    def _marker(self, kind: str, text: str, wall: float) -> None:
        epoch = self._state.epochs[-1]
        session_t = max(epoch[2], wall - self._start_wall)
        self._state.markers.append((wall, session_t, self._epoch, _fit(kind, 24), _fit(text, 160)))

    def _rebuild_index(self) -> None:
        self._state.segments = [(s.file.encode(), s.epoch, s.wall_open, s.wall_close) for s in self._segments]
        index: dict[str, list[tuple]] = {}
        for i, seg in enumerate(self._segments):
            for stream, parts in seg.parts.items():
                index.setdefault(stream, []).extend((i, p.epoch, p.row0, p.rows, p.t_first, p.t_last) for p in parts)
        self._state.index = index

    # --- publishing the index: renaming can take ~0.2 s on a busy disk, so a second thread does it
    def _publish(self, deletions: list[str] | None = None) -> None:
        """Write the index to a new temporary file and let the publisher rename it over the file.

        ``deletions``: segment files no index names any more; deleted after the rename.
        """
        self._pub_count += 1
        tmp = write_index(self.path, self._state, segments_dir(self.path) / f"index.tmp{self._pub_count}", publish=False)
        with self._pub_cond:
            deletions = list(deletions or [])
            if self._pub_pending is not None:  # superseded before it was renamed
                old_tmp, old_deletions = self._pub_pending
                old_tmp.unlink(missing_ok=True)
                deletions = old_deletions + deletions
            self._pub_pending = (tmp, deletions)
            self._pub_cond.notify()

    def _publish_loop(self) -> None:
        while True:
            with self._pub_cond:
                while self._pub_pending is None and not self._pub_stop:
                    self._pub_cond.wait()
                if self._pub_pending is None:
                    return
                (tmp, deletions), self._pub_pending = self._pub_pending, None
            try:
                os.replace(tmp, self.path)
                self._delete(deletions)
            except OSError as exc:  # the writer stops at its next tick and reports it
                _log_failure("could not publish the recording index", exc)
                self._error = self._error or exc

    def _stop_publisher(self) -> list[str]:
        """Stop the publisher after its current rename and put a pending index in place (a rename,
        no writing: if the final index cannot be written, e.g. on a full disk, the file still names
        every segment closed so far); returns deletions it did not get to."""
        with self._pub_cond:
            self._pub_stop = True
            pending, self._pub_pending = self._pub_pending, None
            self._pub_cond.notify_all()
        if self._publisher is not None:
            self._publisher.join()
        if pending is None:
            return []
        try:
            os.replace(pending[0], self.path)
        except OSError:
            pending[0].unlink(missing_ok=True)
        return pending[1]

    def _delete(self, files: list[str]) -> None:
        for name in files:
            (segments_dir(self.path) / name).unlink(missing_ok=True)

    def _merge(self, publish: bool = True) -> list[str]:
        """Merge the oldest ``MERGE_FANOUT`` closed segments of a level into one of the next level.

        Small groups (at most ``MERGE_MAX_ROWS`` rows) are copied into one file and the originals
        deleted, so a long low-rate recording has few files.  Bigger groups are merged
        *virtually*: a small file of virtual datasets over the 16 originals, so the index (rewritten
        twice a second) names one file instead of 16 and its cost stays flat at high rates, while
        the data is never copied (copying 16 big segments would stall the writer into drops).
        """
        deletions: list[str] = []
        changed = True
        while changed:
            changed = False
            for level in sorted({s.level for s in self._segments}):
                run = [i for i, s in enumerate(self._segments) if s.level == level]
                if len(run) < MERGE_FANOUT or run[MERGE_FANOUT - 1] - run[0] != MERGE_FANOUT - 1:
                    continue
                first = run[0]
                group = self._segments[first : first + MERGE_FANOUT]
                rows = sum(s.rows(k) for s in group for k in s.parts)
                copy = rows <= MERGE_MAX_ROWS and not any(s.virtual for s in group)
                merged = self._merge_files(group, level + 1, copy)
                self._segments[first : first + MERGE_FANOUT] = [merged]
                self._rebuild_index()
                if copy:  # the originals go once an index that names only the merged file is in place
                    deletions += [seg.file for seg in group]
                changed = True
                break
        if publish and deletions:
            self._publish(deletions)
            return []
        return deletions

    def _merge_files(self, group: list[_Segment], level: int, copy: bool) -> _Segment:
        name = f"seg-{self._next_file:06d}.h5"
        self._next_file += 1
        merged = _Segment(name, level, group[0].epoch, group[0].wall_open, group[-1].wall_close, virtual=not copy)
        seg_dir = segments_dir(self.path)
        with HDF5Writer(seg_dir / name, libver="latest") as out:
            out.attrs["epoch"] = merged.epoch
            out.attrs["merged_from"] = [s.file for s in group] if not copy else []
            for stream in sorted({s for seg in group for s in seg.parts}):
                spec = self._streams[stream]
                sources: list[tuple[str, int, int]] = []  # (file, row0, rows) in order
                row = 0
                for seg in group:
                    n = seg.rows(stream)
                    if not n:
                        continue
                    sources.append((seg.file, 0, n))
                    for p in seg.parts[stream]:
                        parts = merged.parts.setdefault(stream, [])
                        if parts and parts[-1].epoch == p.epoch:
                            parts[-1].rows += p.rows
                            parts[-1].t_first = min(parts[-1].t_first, p.t_first)
                            parts[-1].t_last = max(parts[-1].t_last, p.t_last)
                        else:
                            parts.append(_Part(p.epoch, row, p.rows, p.t_first, p.t_last))
                        row += p.rows
                group_ = out.require_group(stream)
                for c, dtype in spec.columns.items():
                    if copy:
                        pieces = []
                        for file, _r0, _n in sources:
                            with h5py.File(seg_dir / file, "r") as src:
                                pieces.append(src[f"{stream}/{c}"][:])
                        data = np.concatenate(pieces)
                        group_.create_dataset(c, data=data, maxshape=(None,), chunks=(min(CHUNK_ROWS, max(1024, len(data))),),
                                              compression=self.compression)
                    else:
                        files = [f for f, _, _ in sources]
                        rows_ = [(i, 0, 0, n, 0, 0) for i, (_f, _r0, n) in enumerate(sources)]
                        virtual_column(group_, c, np.dtype(dtype), row, rows_, files, ".", f"{stream}/{c}")
        return merged


def failure_cause(error: BaseException) -> str:
    """A writer failure in plain words: an ``OSError``'s reason ("No space left on device") without
    the segment file's name (a detail of the file's layout), anything else as its text."""
    if isinstance(error, OSError) and error.strerror:
        return error.strerror
    return str(error) or type(error).__name__


def _log_failure(what: str, exc: BaseException) -> None:
    """Log a writer failure: an ``OSError`` (disk full, a file-size limit) in one line, since whoever
    waits for the recorder reports it to the user (``error``, ``finished_signal``) and a traceback
    would only bury that; anything else is a fault of NeuroLab and keeps its traceback."""
    if isinstance(exc, OSError):
        log.info("%s: %s", what, exc)
    else:
        log.exception(what)


def _fit(text: str, size: int) -> bytes:
    """UTF-8 bytes of ``text`` cut to ``size`` without splitting a character."""
    return text.encode()[:size].decode("utf-8", "ignore").encode()
