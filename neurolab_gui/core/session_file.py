"""The NeuroLab session file: layout, the index file writer and the reader.

A recording is one *index file* (``session.h5``) plus a folder of *segments*
(``session.h5.segments/seg-000000.h5``, …) beside it:

* every segment is an ordinary HDF5 file holding about half a second of the large
  streams (spikes, stimulus, robot DVS events, …); the writer closes it before it
  names it anywhere, so a closed segment is complete on disk;
* the index file holds the metadata, the small tables (bias table and changes,
  epochs, markers, the segment list) and, for every column of every large
  stream, an HDF5 *virtual dataset* that concatenates that column over all
  closed segments.  It is never modified in place: the writer builds a new one
  in the segments folder and renames it over the old (``os.replace`` is atomic), so whatever
  moment the recording process dies, ``session.h5`` is a complete file naming only
  complete segments.

Why not one file with HDF5 SWMR: after ``SIGKILL`` a SWMR file keeps its "open for
write" flags, and plain ``h5py.File(path)`` refuses to open it until ``h5clear``
runs (measured; ``docs/ARCHITECTURE.md`` has the numbers).  Why not one plain
file flushed every second: HDF5 updates its metadata in place between flushes,
and 7 of 7 killed recordings of the old writer were unreadable.

Layout of the index file (``format`` = ``neurolab-session``, ``format_version`` 2)::

    /                      attrs: format, format_version, software_version, board_serial,
                                  board_emulated, start_time (ISO 8601), start_time_unix,
                                  stop_time (when the user stopped; "" while recording),
                                  complete (False until the writer finished), timestamp_unit,
                                  clock_source, notes, dropped_events, segments_dir
    /events/spikes/{t,chip,core,neuron}     virtual: board timestamps (µs, per epoch) and addresses
    /events/input/{t,chip,core,neuron}      virtual: the stimulus sent, same columns
    /streams/<name>/<column>                virtual: generic typed streams (robot, analog, …)
    /index/<stream path>    per (segment, stream): segment, epoch, row0, rows, t_first, t_last
    /segments               file, epoch, wall_open, wall_close
    /epochs                 epoch, wall_start (Unix s), session_offset_s, first_t_us, reason
    /markers                wall_time_s, session_time_s, epoch, kind, text
    /biases/initial         chip, core, name, coarse, fine, high, normal, enabled, current_a
    /biases/changes         time_s (Unix), chip, core, name, old/new coarse+fine, new flags, origin

An *epoch* is a stretch of one board clock: a new one starts when the board is
(re)connected or its timestamps jump back (reset), and each is marked in
``/markers``.  Session time, the one monotonic timeline of a recording, is
``epoch.session_offset_s + (t - epoch.first_t_us) / 1e6``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from drivers.dynapse1.spikes import SpikeEvents
from drivers.user_files import check_regular_file

FORMAT = "neurolab-session"
FORMAT_VERSION = 2
SEGMENTS_SUFFIX = ".segments"
_PLAIN_NAME = re.compile(r"(?!\.\.?$)[^/\\\x00]+")  # a file name: no separators, not "." or ".."

NAME_DTYPE = h5py.string_dtype("utf-8", 32)
ORIGIN_DTYPE = h5py.string_dtype("utf-8", 16)

BIAS_INITIAL_DTYPE = np.dtype(
    [("chip", "u1"), ("core", "u1"), ("name", NAME_DTYPE), ("coarse", "u1"), ("fine", "u1"), ("high", "?"), ("normal", "?"),
     ("enabled", "?"), ("current_a", "f8")]
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
        ("new_high", "?"),
        ("new_normal", "?"),
        ("new_enabled", "?"),
        ("origin", ORIGIN_DTYPE),
    ]
)
SEGMENT_DTYPE = np.dtype([("file", "S64"), ("epoch", "i4"), ("wall_open", "f8"), ("wall_close", "f8")])
INDEX_DTYPE = np.dtype([("segment", "i4"), ("epoch", "i4"), ("row0", "i8"), ("rows", "i8"), ("t_first", "i8"), ("t_last", "i8")])
EPOCH_DTYPE = np.dtype(
    [("epoch", "i4"), ("wall_start", "f8"), ("session_offset_s", "f8"), ("first_t_us", "i8"), ("reason", "S32")]
)
MARKER_DTYPE = np.dtype([("wall_time_s", "f8"), ("session_time_s", "f8"), ("epoch", "i4"), ("kind", "S24"), ("text", "S160")])

#: Columns of the two spike streams (board time in µs, chip, core, neuron within the core).
EVENT_COLUMNS: dict[str, np.dtype] = {"t": np.dtype("i8"), "chip": np.dtype("u1"), "core": np.dtype("u1"), "neuron": np.dtype("u2")}
SPIKES = "events/spikes"
INPUT = "events/input"
#: Rows per block of the readers' time index (see SessionFile.events_in).
BLOCK_ROWS = 4096
#: The analog monitor's samples (membrane potential) while a membrane view polled them.
MEMBRANE_STREAM = "analog/membrane"
MEMBRANE_COLUMNS: dict[str, np.dtype] = {
    "t_us": np.dtype("i8"), "chip": np.dtype("u1"), "core": np.dtype("u1"), "neuron": np.dtype("u2"), "v": np.dtype("f4")
}


@dataclass(frozen=True)
class StreamSpec:
    """A typed table written in segments: ordered columns, and which column (if any) is board time in µs."""

    path: str
    columns: Mapping[str, np.dtype]
    time_column: str | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if not self.columns:
            raise ValueError(f"stream {self.path!r} needs at least one column")
        for name, dtype in self.columns.items():
            if np.dtype(dtype).kind not in "biufS?":
                raise ValueError(f"stream {self.path!r}: column {name!r} has type {dtype}; use numbers, bools or fixed bytes")
        if self.time_column is not None and self.time_column not in self.columns:
            raise ValueError(f"stream {self.path!r}: time column {self.time_column!r} is not one of its columns")


def segments_dir(index_path: Path) -> Path:
    return index_path.with_name(index_path.name + SEGMENTS_SUFFIX)


def recording_path_taken(path: Path) -> str | None:
    """Why ``path`` is not free for a new recording (None: it is): it, or its segments folder, exists.

    A symbolic link counts even when it dangles: the index would be renamed over the link, not
    written where it points (``os.replace`` replaces the link itself).
    """
    path = Path(path)
    if path.is_symlink():
        return f"{path} is a symbolic link (to {os.readlink(path)}); record to a new name, not through a link"
    seg = segments_dir(path)
    if path.exists() or seg.exists() or seg.is_symlink():
        return f"{path} already exists; choose a new name"
    return None


def recording_path_problem(path: Path) -> str | None:
    """Why a new recording cannot be created at ``path`` (None: it can, as far as can be told without writing).

    :func:`recording_path_taken`, then the nearest existing folder above ``path`` (the recorder
    creates missing ones) must be a directory this process may write to; a read-only file system
    counts as not writable (``os.access`` says so).  Checked before a board is opened.
    """
    path = Path(path)
    taken = recording_path_taken(path)
    if taken:
        return taken
    folder = path.parent
    while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create {path}: {folder} is not a directory"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot create {path}: directory {folder} is not writable"
    return None


@dataclass
class IndexState:
    """Everything the index file holds, kept in memory by the writer and rewritten as a whole."""

    attrs: dict[str, Any]
    streams: dict[str, StreamSpec]
    bias_initial: np.ndarray
    bias_changes: list[tuple] = field(default_factory=list)
    segments: list[tuple] = field(default_factory=list)
    index: dict[str, list[tuple]] = field(default_factory=dict)
    epochs: list[tuple] = field(default_factory=list)
    markers: list[tuple] = field(default_factory=list)


class _Sink:
    """The OS file under an :class:`HDF5Writer`: h5py's ``fileobj`` driver reads and writes through it.

    The first write (or truncate) that fails is remembered in :attr:`error` and *not* reported to
    HDF5; it and every later write are discarded, so HDF5's view stays consistent and it can always
    close the file.
    """

    def __init__(self, path: Path) -> None:
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o666)
        self.pos = 0
        self.error: OSError | None = None

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET:
            self.pos = pos
        elif whence == os.SEEK_CUR:
            self.pos += pos
        else:
            self.pos = os.lseek(self.fd, pos, whence)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def read(self, size: int = -1) -> bytes:  # h5py takes an object with read() and seek() for a file object
        data = os.pread(self.fd, max(size, 0), self.pos)
        self.pos += len(data)
        return data

    def readinto(self, buf: Any) -> int:
        n = os.preadv(self.fd, [buf], self.pos)
        self.pos += n
        return n

    def write(self, buf: Any) -> int:
        view = memoryview(buf).cast("B")
        if self.error is None:
            try:
                done = 0
                while done < len(view):  # pwrite may write less than asked (a nearly full disk)
                    done += os.pwrite(self.fd, view[done:], self.pos + done)
            except OSError as exc:
                self.error = exc
        self.pos += len(view)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        size = self.pos if size is None else size
        if self.error is None:
            try:
                os.ftruncate(self.fd, size)
            except OSError as exc:
                self.error = exc
        return size

    def flush(self) -> None:
        pass


class HDF5Writer:
    """A new HDF5 file being written that can always be closed, whatever the disk does.

    With HDF5's default driver a write that fails (disk full, a file-size limit) leaves objects HDF5
    can neither flush nor close: ``close()`` fails, the ids stay open and HDF5's own shutdown at
    interpreter exit then crashes (SIGSEGV in ``H5D_close``, measured with a full tmpfs and with
    ``ulimit -f``).  Here HDF5 writes through a :class:`_Sink` that remembers the first failed write
    and discards the rest, so the file always closes; :meth:`check` and :meth:`close` raise that
    ``OSError`` (its ``strerror`` is what the user needs: "No space left on device") and ``close``
    deletes the useless file.  Use as ``with HDF5Writer(path) as f:`` or keep it open and call
    :meth:`check` after each batch of writes.

    Parameters
    ----------
    path : the file to create (an existing one is truncated, like h5py's mode ``"w"``)
    **kwargs : passed to :class:`h5py.File` (e.g. ``libver``)
    """

    def __init__(self, path: Path, **kwargs: Any) -> None:
        self.path = Path(path)
        self._sink = _Sink(self.path)
        try:
            self.file = h5py.File(self._sink, "w", **kwargs)
        except BaseException:
            self._discard()
            raise

    @property
    def error(self) -> OSError | None:
        """The first failed write, if any."""
        return self._sink.error

    def check(self) -> None:
        """Raise the first failed write's ``OSError`` (naming this file), if there was one."""
        err = self._sink.error
        if err is not None:
            raise OSError(err.errno, err.strerror, str(self.path)) from err

    def close(self, discard: bool = False) -> None:
        """Close the file; delete it and raise if a write failed (or delete it anyway with ``discard``)."""
        try:
            self.file.close()
        finally:
            failed = self._sink.error is not None
            if failed or discard:
                self._discard()
            else:
                os.close(self._sink.fd)
        self.check()

    def _discard(self) -> None:
        os.close(self._sink.fd)
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> h5py.File:
        return self.file

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.close(discard=exc_type is not None)


def write_index(path: Path, state: IndexState, tmp: Path | None = None, publish: bool = True) -> Path:
    """Write the index file to ``tmp`` (default: ``index.tmp`` in the segments folder) and, with
    ``publish``, rename it over ``path`` (atomic on POSIX).  Returns the file written.

    A temporary file lives in the segments folder, not next to ``path``: one that a kill leaves
    behind is then part of the recording's own folder instead of a stray file beside it (the
    reader only opens the segments the index names).  A failed write deletes it (:class:`HDF5Writer`).
    """
    tmp = tmp if tmp is not None else segments_dir(path) / "index.tmp"
    seg_dir = segments_dir(path).name
    with HDF5Writer(tmp, libver="latest") as f:
        for key, value in state.attrs.items():
            f.attrs[key] = value
        f.attrs["segments_dir"] = seg_dir
        f.create_dataset("biases/initial", data=state.bias_initial)
        f.create_dataset("biases/changes", data=np.array(state.bias_changes, dtype=BIAS_CHANGE_DTYPE))
        f.create_dataset("segments", data=np.array(state.segments, dtype=SEGMENT_DTYPE))
        f.create_dataset("epochs", data=np.array(state.epochs, dtype=EPOCH_DTYPE))
        f.create_dataset("markers", data=np.array(state.markers, dtype=MARKER_DTYPE))
        files = [row[0].decode() for row in state.segments]
        for spec in list(state.streams.values()):  # a producer may declare a stream meanwhile
            rows = state.index.get(spec.path, [])
            f.create_dataset(f"index/{spec.path}", data=np.array(rows, dtype=INDEX_DTYPE))
            group = f.require_group(spec.path)
            group.attrs["columns"] = list(spec.columns)
            group.attrs["time_column"] = spec.time_column or ""
            group.attrs["description"] = spec.description
            total = int(sum(r[3] for r in rows))
            for column, dtype in spec.columns.items():
                virtual_column(group, column, np.dtype(dtype), total, rows, files, seg_dir, f"{spec.path}/{column}")
    if publish:
        os.replace(tmp, path)
        return path
    return tmp


def virtual_column(group: h5py.Group, column: str, dtype: np.dtype, total: int, rows: list[tuple], files: list[str], seg_dir: str, source: str) -> None:
    """A virtual dataset concatenating ``source`` over the given (segment, epoch, row0, rows, …) rows.

    Uses h5py's low-level API: measured ~28 µs per mapping against ~160 µs through
    ``h5py.VirtualLayout``, and the index is rewritten twice a second.
    """
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_fill_value(np.zeros(1, dtype))
    vspace = h5s.create_simple((total,), (total,))
    offset = 0
    for seg, _epoch, row0, n, _a, _b in rows:
        vspace.select_hyperslab((offset,), (n,))
        sspace = h5s.create_simple((row0 + n,), (h5s.UNLIMITED,))
        sspace.select_hyperslab((row0,), (n,))
        dcpl.set_virtual(vspace, f"{seg_dir}/{files[seg]}".encode(), source.encode(), sspace)
        offset += n
    vspace.select_all()
    h5d.create(group.id, column.encode(), h5t.py_create(dtype), vspace, dcpl=dcpl)


class SessionFile:
    """Read a session file (index + segments) without loading it all.

    Reads the segments directly (not through the virtual datasets) so that it can say
    which segment is missing, and read a time window of a long recording.

    Parameters
    ----------
    path : the ``.h5`` index file
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        try:  # before h5py: a FIFO would block its open() for ever, /dev/zero is no file
            check_regular_file(self.path, "a session file")
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise ValueError(f"{self.path} cannot be opened as HDF5: {exc}") from exc
        with f:
            fmt = f.attrs.get("format")
            if fmt != FORMAT:
                raise ValueError(f"{self.path} is not a NeuroLab session file (format attribute {fmt!r})")
            version = int(f.attrs.get("format_version", 0))
            if version != FORMAT_VERSION:
                raise ValueError(f"{self.path}: session format version {version} is not supported (this NeuroLab reads {FORMAT_VERSION})")
            self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
            self.segments = f["segments"][:]
            self.epochs = f["epochs"][:]
            self.markers = f["markers"][:]
            self.bias_initial = f["biases/initial"][:]
            self.bias_changes = f["biases/changes"][:]
            self.index: dict[str, np.ndarray] = {}
            self.streams: dict[str, StreamSpec] = {}

            def visit(name: str, obj: Any) -> None:
                if isinstance(obj, h5py.Group) and "columns" in obj.attrs:
                    cols = {str(c): obj[str(c)].dtype for c in obj.attrs["columns"]}
                    self.streams[name] = StreamSpec(name, cols, str(obj.attrs["time_column"]) or None, str(obj.attrs["description"]))

            f.visititems(visit)
            for name in self.streams:
                self.index[name] = f[f"index/{name}"][:]
        self._bounds_cache: dict[tuple[str, str, int], tuple[np.ndarray, np.ndarray]] = {}
        seg_dir_name = str(self.attrs.get("segments_dir", segments_dir(self.path).name))
        bad = [n for n in [seg_dir_name, *(row["file"].decode(errors="replace") for row in self.segments)] if not _PLAIN_NAME.fullmatch(n)]
        if bad:  # a crafted index must not make the reader open files elsewhere
            raise ValueError(f"{self.path}: segment names must be plain file names, got {bad[0]!r}")
        self.segments_dir = self.path.with_name(seg_dir_name)
        if not self.segments_dir.is_dir() and segments_dir(self.path).is_dir():
            # renamed as a pair (FILE + FILE.segments -> NEW + NEW.segments): the index still holds the
            # old folder name, the folder goes by the file's own name now
            self.segments_dir = segments_dir(self.path)
        missing = [row["file"].decode() for row in self.segments if not (self.segments_dir / row["file"].decode()).exists()]
        if missing:
            raise ValueError(
                f"{self.path}: {len(missing)} of {len(self.segments)} segment files are missing from {self.segments_dir} "
                f"(first: {missing[0]}); keep the segments folder next to the session file, named "
                f"{' or '.join(dict.fromkeys([segments_dir(self.path).name, seg_dir_name]))}"
            )

    # --- metadata --------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Whether the writer finished the file (False after a crash: the file holds what was saved)."""
        return bool(self.attrs.get("complete", False))

    @property
    def dropped_events(self) -> int:
        return int(self.attrs.get("dropped_events", 0))

    def rows(self, stream: str) -> int:
        return int(self.index[stream]["rows"].sum()) if stream in self.index else 0

    def duration_s(self) -> float:
        """Session time of the last spike (0 for an empty recording)."""
        last = 0.0
        for stream in (SPIKES, INPUT):
            idx = self.index.get(stream)
            if idx is not None and len(idx):
                last = max(last, float(self.session_time_s(idx["t_last"], idx["epoch"]).max()))
        return last

    def session_time_s(self, t_us: np.ndarray, epoch: np.ndarray | int) -> np.ndarray:
        """Board timestamps of the given epochs as seconds on the recording's one continuous timeline."""
        e = np.asarray(epoch, np.int64)
        return self.epochs["session_offset_s"][e] + (np.asarray(t_us, np.int64) - self.epochs["first_t_us"][e]) / 1e6

    # --- data ------------------------------------------------------------------------
    def read_stream(self, stream: str, segments: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """The columns of ``stream`` (all rows, or those of the given index rows), plus ``_epoch`` per row."""
        spec = self.streams[stream]
        idx = self.index[stream] if segments is None else segments
        parts: dict[str, list[np.ndarray]] = {c: [] for c in spec.columns}
        epochs = []
        for row in idx:
            name = self.segments[int(row["segment"])]["file"].decode()
            with h5py.File(self.segments_dir / name, "r") as seg:
                for column in spec.columns:
                    parts[column].append(seg[f"{stream}/{column}"][int(row["row0"]) : int(row["row0"]) + int(row["rows"])])
            epochs.append(np.full(int(row["rows"]), int(row["epoch"]), np.int32))
        out = {c: (np.concatenate(v) if v else np.zeros(0, spec.columns[c])) for c, v in parts.items()}
        out["_epoch"] = np.concatenate(epochs) if epochs else np.zeros(0, np.int32)
        return out

    def events(self, stream: str = SPIKES) -> SpikeEvents:
        """A spike stream as board-time :class:`SpikeEvents` (all epochs, in recorded order)."""
        if stream not in self.streams:
            return SpikeEvents()
        cols = self.read_stream(stream)
        return SpikeEvents(cols["t"], cols["chip"], cols["core"], cols["neuron"])

    def events_in(self, start_s: float, stop_s: float, stream: str = SPIKES) -> tuple[np.ndarray, SpikeEvents]:
        """Events with ``start_s <= session time < stop_s``: ``(session_time_s, events)``.

        Reads only the blocks of rows that can hold the window: each part gets, once, the
        earliest and latest time of every ``BLOCK_ROWS`` rows (so batches slightly out of
        order are still found), and a replay's tens of milliseconds read tens of kilobytes.
        """
        idx = self.index.get(stream)
        if idx is None or not len(idx):
            return np.zeros(0), SpikeEvents()
        first = self.session_time_s(idx["t_first"], idx["epoch"])
        last = self.session_time_s(idx["t_last"], idx["epoch"])
        names = ("t", "chip", "core", "neuron")
        parts: dict[str, list[np.ndarray]] = {c: [] for c in names}
        ts_list = []
        for row in idx[(last >= start_s) & (first < stop_s)]:
            file = self.segments_dir / self.segments[int(row["segment"])]["file"].decode()
            row0, n, epoch = int(row["row0"]), int(row["rows"]), int(row["epoch"])
            with h5py.File(file, "r") as seg:
                lo, hi = self._block_bounds(seg, str(file), stream, row0, n, epoch)
                blocks = np.flatnonzero((hi >= start_s) & (lo < stop_s))
                if not len(blocks):
                    continue
                a, b = int(blocks[0]) * BLOCK_ROWS, min(n, (int(blocks[-1]) + 1) * BLOCK_ROWS)
                t = seg[f"{stream}/t"][row0 + a : row0 + b]
                ts = self.session_time_s(t, epoch)
                keep = (ts >= start_s) & (ts < stop_s)
                ts_list.append(ts[keep])
                parts["t"].append(t[keep])
                for c in names[1:]:
                    parts[c].append(seg[f"{stream}/{c}"][row0 + a : row0 + b][keep])
        if not ts_list:
            return np.zeros(0), SpikeEvents()
        return np.concatenate(ts_list), SpikeEvents(*(np.concatenate(parts[c]) for c in names))

    def _block_bounds(self, seg: h5py.File, file: str, stream: str, row0: int, n: int, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Earliest and latest session time of each block of ``BLOCK_ROWS`` rows of a part (cached)."""
        key = (file, stream, row0)
        got = self._bounds_cache.get(key)
        if got is None:
            n_blocks = -(-n // BLOCK_ROWS)
            lo, hi = np.empty(n_blocks), np.empty(n_blocks)
            ds = seg[f"{stream}/t"]
            step = BLOCK_ROWS * 256  # read in slices of 1 M rows: bounded memory for any part
            for a in range(0, n, step):
                t = ds[row0 + a : row0 + min(n, a + step)]
                pad = (-len(t)) % BLOCK_ROWS
                blocks = np.pad(t, (0, pad), mode="edge").reshape(-1, BLOCK_ROWS)
                k = a // BLOCK_ROWS
                lo[k : k + len(blocks)] = blocks.min(axis=1)
                hi[k : k + len(blocks)] = blocks.max(axis=1)
            got = (self.session_time_s(lo.astype(np.int64), epoch), self.session_time_s(hi.astype(np.int64), epoch))
            if len(self._bounds_cache) >= 256:
                self._bounds_cache.pop(next(iter(self._bounds_cache)))
            self._bounds_cache[key] = got
        return got

    def summary(self) -> dict[str, Any]:
        """What ``neurolab info`` prints."""
        return {
            "path": str(self.path),
            "complete": self.complete,
            "start_time": self.attrs.get("start_time"),
            "stop_time": self.attrs.get("stop_time") or None,
            "board_serial": self.attrs.get("board_serial"),
            "board_emulated": bool(self.attrs.get("board_emulated")),
            "software_version": self.attrs.get("software_version"),
            "duration_s": round(self.duration_s(), 6),
            "spikes": self.rows(SPIKES),
            "input_events": self.rows(INPUT),
            "dropped_events": self.dropped_events,
            "bias_changes": len(self.bias_changes),
            "epochs": [
                {"epoch": int(e["epoch"]), "reason": e["reason"].decode(), "session_offset_s": round(float(e["session_offset_s"]), 6)}
                for e in self.epochs
            ],
            "markers": [
                {"session_time_s": round(float(m["session_time_s"]), 6), "kind": m["kind"].decode(), "text": m["text"].decode()}
                for m in self.markers
            ],
            "streams": {name: self.rows(name) for name in self.streams if name not in (SPIKES, INPUT)},
            "segments": len(self.segments),
        }


def read_session(path: str | Path) -> dict[str, Any]:
    """Load a whole session into memory: ``{"attrs", "spikes", "input", "bias_initial", "bias_changes", "markers", "epochs"}``.

    ``spikes`` and ``input`` are board-time :class:`SpikeEvents`.  Raises ``ValueError`` for a file
    that is not a NeuroLab session or whose segments are missing.
    """
    s = SessionFile(path)
    return {
        "attrs": s.attrs,
        "spikes": s.events(SPIKES),
        "input": s.events(INPUT),
        "bias_initial": s.bias_initial,
        "bias_changes": s.bias_changes,
        "markers": s.markers,
        "epochs": s.epochs,
    }
