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
                                  clock_source, notes, dropped_events, segments_dir,
                                  error (why the writer stopped, e.g. "No space left on device";
                                  only in a file whose write failed)
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

Reading checks everything it hands on (see :class:`SessionFile`), and by default a file with one
missing or damaged segment is refused as a whole (:class:`DamagedSegmentsError`): nothing damaged
is ever passed on as data.  *Salvage mode* (``SessionFile(path, salvage=True)``; ``neurolab info
--salvage``, ``neurolab export --salvage``, and the app's question on File → Open recording) is
the way to get the intact part of a damaged copy back: the segments that are missing or fail the
open-time checks are left out, with every index row that points into them, and listed in
``SessionFile.salvaged`` and ``summary()["salvaged"]``; the file then reads as a recording with a
gap.  Rows read are still checked, and a damaged index file is never salvaged.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p, h5s, h5t

from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS_PER_CORE
from drivers.user_files import UserFileError, check_regular_file, folder_problem

FORMAT = "neurolab-session"
FORMAT_VERSION = 2
SEGMENTS_SUFFIX = ".segments"
_PLAIN_NAME = re.compile(r"(?!\.\.?$)[^/\\\x00]+")  # a file name: no separators, not "." or ".."
#: The text of a ``connected`` marker (``Session`` writes it when a board connects, a new epoch).
_CONNECTED_TEXT = re.compile(r"board (\S+) connected")

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
    counts as not writable (:func:`~drivers.user_files.folder_problem` tries a file there).  Checked before a board is opened.
    """
    path = Path(path)
    taken = recording_path_taken(path)
    if taken:
        return taken
    problem = folder_problem(path, create_missing=True)  # the recorder creates missing folders
    return f"cannot create {path}: {problem}" if problem else None


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
        """Nothing to flush: every write went straight to the file descriptor."""


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


#: Where a stream's neuron address columns must lie (the board's topology); checked on every read.
ID_LIMITS: dict[str, int] = {"chip": N_CHIPS, "core": N_CORES_PER_CHIP, "neuron": N_NEURONS_PER_CORE}
#: Session time (s) a spike may lie before the start (board batches arrive slightly out of order)
#: and the longest a recording can be: anything outside is a damaged epoch or index, not data.
SESSION_SLACK_S = 60.0
MAX_SESSION_S = 1e8  # about 3 years
#: Rows read at a time when a whole part is checked (bounded memory for any part).
CHECK_ROWS = 1 << 20
#: How deep virtual segments may nest (merges of merges); deeper is a damaged or crafted file.
MAX_VIRTUAL_DEPTH = 8


class SessionFileError(ValueError):
    """A session file whose index or segments are damaged; the message names the file, the segment and the problem."""


@dataclass(frozen=True)
class SalvagedSegment:
    """A segment that :class:`SessionFile` left out in salvage mode (or, in a strict open's
    :class:`DamagedSegmentsError`, would leave out)."""

    name: str  #: its file name in the segments folder
    problem: str  #: "missing", or why it cannot be read
    rows: int  #: rows of all streams the index put in it (dropped with it)
    span_s: float = 0.0  #: session time its spikes and stimulus events spanned


class DamagedSegmentsError(SessionFileError):
    """A session file refused only for segments that are missing or fail the open-time checks:
    its index is intact, so ``SessionFile(path, salvage=True)`` reads the other segments.

    Attributes
    ----------
    problems : the segments that would be left out (``rows`` 0: not counted in a strict open)
    n_segments : how many segments the index names
    """

    def __init__(self, message: str, problems: list[SalvagedSegment], n_segments: int) -> None:
        super().__init__(message)
        self.problems = problems
        self.n_segments = n_segments

    def segments_phrase(self, of: str = "") -> str:
        """``2 of 5 segments [of FILE] are damaged`` (``missing``, ``damaged or missing``): for a message or question."""
        state = " or ".join(sorted({"missing" if p.problem == "missing" else "damaged" for p in self.problems}))
        where = f" of {of}" if of else ""
        verb = "is" if len(self.problems) == 1 else "are"
        return f"{len(self.problems)} of {self.n_segments} segment{'s' if self.n_segments != 1 else ''}{where} {verb} {state}"


def _reason(exc: BaseException) -> str:
    """An h5py/numpy exception as a short phrase (``KeyError`` adds quotes, HDF5 a long prefix)."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    text = text.replace("Unable to synchronously open file ", "").replace("Unable to synchronously open object ", "")
    text = text.replace("Unable to synchronously read data ", "").replace("Can't synchronously read data ", "")
    text = " ".join(text.split())
    if text.startswith("(") and text.endswith(")"):
        text = text[1:-1]
    return text[:300] or type(exc).__name__


#: What a damaged file raises from h5py and numpy on the way: all of them become SessionFileError.
_READ_ERRORS = (KeyError, IndexError, ValueError, TypeError, OSError, RuntimeError, OverflowError, MemoryError, AttributeError)


class SessionFile:
    """Read a session file (index + segments) without loading it all.

    Reads the segments directly (not through the virtual datasets) so that it can say
    which segment is missing, and read a time window of a long recording.

    Everything this reader hands on is checked, so no reader of a recording (``info``, the
    exports, replay) can pass on a damaged one as data:

    * opening checks the index (its tables, attributes and that every index row names an
      existing segment and epoch with sane times) and every segment: that it opens, and that
      each column holds the rows the index says -- following a virtually merged segment down to
      the files it maps, since HDF5 silently reads a missing source as zeros;
    * every read checks the rows it returns: chip/core/neuron ids within the board's topology
      and board times within the range the index recorded for that part.

    Anything wrong raises :class:`SessionFileError` (a ``ValueError``) naming the file, the
    segment and, for data, the stream and first bad row; a file refused only for missing or
    damaged segments raises its subclass :class:`DamagedSegmentsError`.  :meth:`verify` reads
    and checks all data (what ``neurolab info`` does).

    Parameters
    ----------
    path : the ``.h5`` index file
    salvage : leave out the segments that are missing or fail the open-time checks instead of
        refusing the file: the index rows (every stream) pointing into them are dropped and
        they are listed in :attr:`salvaged`; the file then reads as a recording with a gap.
        Reads still check every row they return, and a damaged index is refused all the same.

    Attributes
    ----------
    salvaged : the segments left out (empty unless ``salvage`` found some)
    recorded_s : :meth:`duration_s` of the whole recording as the index names it, left-out segments included
    """

    def __init__(self, path: str | Path, salvage: bool = False) -> None:
        self.path = Path(path)
        self.salvaged: list[SalvagedSegment] = []
        try:  # before h5py: a FIFO would block its open() for ever, /dev/zero is no file
            check_regular_file(self.path, "a session file")
        except FileNotFoundError as exc:
            raise ValueError(str(exc)) from None
        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            if not h5py.is_hdf5(self.path):  # no HDF5 signature: another kind of file (a .npz, a CSV), not a damaged session
                raise ValueError(f"{self.path} is not a NeuroLab session file (it cannot be opened as HDF5: no "
                                 "HDF5 signature; session files are made by `neurolab record`)") from None
            raise ValueError(f"{self.path} cannot be opened as HDF5: {exc}") from exc
        with f:
            try:  # even the root's attributes may be unreadable (a bit flip in its header)
                fmt = f.attrs.get("format")
                if fmt != FORMAT:
                    raise SessionFileError(f"{self.path} is not a NeuroLab session file (format attribute {fmt!r})")
                self._read_index(f)
            except (SessionFileError, UserFileError):
                raise
            except _READ_ERRORS as exc:  # h5py's KeyError for a corrupt object, numpy's for a bad table
                raise SessionFileError(f"{self.path}: the index file is damaged ({_reason(exc)})") from exc
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
        self._check_index()
        self.recorded_s = self.duration_s()  # before salvage drops rows: what the whole recording spans
        self._check_segments(salvage)

    # --- checks ----------------------------------------------------------------------
    def _damaged(self, what: str) -> SessionFileError:
        return SessionFileError(f"{self.path}: {what}")

    def _read_index(self, f: h5py.File) -> None:
        """Load the index's attributes and tables, refusing missing or malformed ones by name."""
        raw_version = f.attrs.get("format_version", 0)
        try:
            version = int(raw_version)
        except (TypeError, ValueError):
            raise self._damaged(f"format_version attribute {raw_version!r} is not a number; the index file is damaged") from None
        if version != FORMAT_VERSION:
            raise SessionFileError(f"{self.path}: session format version {version} is not supported (this NeuroLab reads {FORMAT_VERSION})")
        self.attrs = {k: (v.item() if hasattr(v, "item") else v) for k, v in f.attrs.items()}
        start = self.attrs.get("start_time")
        try:
            datetime.fromisoformat(str(start))
        except ValueError:
            what = "the index file has no start_time attribute" if start is None else f"start_time attribute {start!r} is not an ISO 8601 time"
            raise self._damaged(f"{what}; the index file is damaged") from None
        try:
            unix = float(self.attrs.get("start_time_unix", 0.0))
        except (TypeError, ValueError):
            unix = math.nan
        if not math.isfinite(unix):
            raise self._damaged(f"start_time_unix attribute {self.attrs.get('start_time_unix')!r} is not a time; the index file is damaged")
        tables = {"segments": SEGMENT_DTYPE, "epochs": EPOCH_DTYPE, "markers": MARKER_DTYPE,
                  "biases/initial": BIAS_INITIAL_DTYPE, "biases/changes": BIAS_CHANGE_DTYPE}
        loaded = {name: self._table(f, name, dtype) for name, dtype in tables.items()}
        self.segments, self.epochs, self.markers = loaded["segments"], loaded["epochs"], loaded["markers"]
        self.bias_initial, self.bias_changes = loaded["biases/initial"], loaded["biases/changes"]
        self.index: dict[str, np.ndarray] = {}
        self.streams: dict[str, StreamSpec] = {}
        groups: list[str] = []
        f.visititems(lambda name, obj: groups.append(name) if isinstance(obj, h5py.Group) and "columns" in obj.attrs else None)
        for name in groups:
            group = f[name]
            cols = {}
            for c in (str(c) for c in group.attrs["columns"]):
                if c not in group:
                    raise self._damaged(f"stream {name} lists a column {c!r} that the index file lacks; the index file is damaged")
                cols[c] = group[c].dtype
            self.streams[name] = StreamSpec(name, cols, str(group.attrs.get("time_column", "")) or None, str(group.attrs.get("description", "")))
            self.index[name] = self._table(f, f"index/{name}", INDEX_DTYPE)

    def _table(self, f: h5py.File, name: str, dtype: np.dtype) -> np.ndarray:
        """The 1-D table ``name`` of the index file, with (at least) the fields of ``dtype``."""
        obj = f.get(name)
        if not isinstance(obj, h5py.Dataset):
            raise self._damaged(f"the index file has no /{name} table; it is damaged")
        missing = [n for n in dtype.names or () if n not in (obj.dtype.names or ())]
        if obj.ndim != 1 or missing:
            raise self._damaged(f"the /{name} table of the index file is malformed ({'no field ' + missing[0] if missing else f'{obj.ndim}-D'})")
        return obj[:]

    def _check_index(self) -> None:
        """The index rows must name existing segments and epochs, with row counts and times a recording can have."""
        e = self.epochs
        offsets = e["session_offset_s"]
        if len(e) and not (np.all(np.isfinite(offsets)) and np.all((offsets >= 0) & (offsets <= MAX_SESSION_S))):
            i = int(np.flatnonzero(~(np.isfinite(offsets) & (offsets >= 0) & (offsets <= MAX_SESSION_S)))[0])
            raise self._damaged(f"epoch {i} starts at session time {float(offsets[i])} s, which no recording has; the /epochs table is damaged")
        for stream, idx in self.index.items():
            if not len(idx):
                continue
            if not len(e):
                raise self._damaged(f"{stream} has data but the /epochs table is empty; the index file is damaged")
            checks = (
                (idx["segment"] < 0) | (idx["segment"] >= len(self.segments)), "names segment {segment} of {n_seg}",
                (idx["epoch"] < 0) | (idx["epoch"] >= len(e)), "names epoch {epoch} of {n_epochs}",
                (idx["row0"] < 0) | (idx["rows"] < 0) | (idx["row0"] > 2**48) | (idx["rows"] > 2**48), "has rows {row0}..+{rows}",
            )
            for k in range(0, len(checks), 2):
                bad = np.flatnonzero(checks[k])
                if len(bad):
                    row = idx[bad[0]]
                    text = checks[k + 1].format(segment=row["segment"], epoch=row["epoch"], row0=row["row0"], rows=row["rows"],
                                                n_seg=len(self.segments), n_epochs=len(e))
                    raise self._damaged(f"index row {int(bad[0])} of {stream} {text}; the index file is damaged")
            if stream in (SPIKES, INPUT):  # board times: the one timeline must be finite and plausible
                with np.errstate(all="ignore"):
                    lo = self.session_time_s(idx["t_first"], idx["epoch"])
                    hi = self.session_time_s(idx["t_last"], idx["epoch"])
                ok = np.isfinite(lo) & np.isfinite(hi) & (lo >= -SESSION_SLACK_S) & (hi <= MAX_SESSION_S) & (idx["t_first"] <= idx["t_last"])
                bad = np.flatnonzero(~ok)
                if len(bad):
                    i = int(bad[0])
                    raise self._damaged(
                        f"index row {i} of {stream} puts its events at session time {lo[i]:.6g}..{hi[i]:.6g} s "
                        f"(epoch {int(idx['epoch'][i])}); the /epochs or index table is damaged"
                    )

    def _segment_file(self, row: int) -> tuple[str, Path]:
        name = self.segments[row]["file"].decode(errors="replace")
        return name, self.segments_dir / name

    def _check_segments(self, salvage: bool) -> None:
        """Every segment must open and hold the rows the index says (followed into virtual merges).

        Strict (the default), any missing or damaged segment raises :class:`DamagedSegmentsError`.
        With ``salvage`` those segments are left out instead: the index rows of every stream that
        point into them are dropped and each is recorded in :attr:`salvaged`.
        """
        need: dict[int, dict[str, int]] = {}  # segment row -> dataset path -> rows it must hold
        for stream, idx in self.index.items():
            for row in idx:
                want = need.setdefault(int(row["segment"]), {})
                for column in self.streams[stream].columns:
                    key = f"{stream}/{column}"
                    want[key] = max(want.get(key, 0), int(row["row0"]) + int(row["rows"]))
        missing: dict[str, str] = {}  # file name -> how to say it
        damaged: list[str] = []
        bad: dict[int, str] = {}  # segment row -> its problem, for salvage
        seen: set[tuple[str, str]] = set()
        for i in range(len(self.segments)):
            name, file = self._segment_file(i)
            if not file.exists():  # also a dangling link or a symlink loop
                missing[name] = name
                bad[i] = "missing"
                continue
            # its own record of the files its merges map: a missing one leaves out this segment,
            # even when another segment already found that file missing
            seg_missing: dict[str, str] = {}
            seg_seen: set[tuple[str, str]] = set()
            problem = None
            for key, rows in need.get(i, {}).items():
                stream, column = key.rsplit("/", 1)
                problem = self._check_dataset(file, key, rows, self.streams[stream].columns[column], seg_missing, seg_seen, 0)
                if problem:
                    break
            if problem is None and i not in need:  # named but holds no rows: it must still be a segment
                problem = self._opens(file)
            seen |= seg_seen
            for source, text in seg_missing.items():
                missing.setdefault(source, text)
            if problem:
                damaged.append(f"{name}: {problem}")
                bad[i] = problem
            elif seg_missing:
                bad[i] = f"its merged source {next(iter(seg_missing))} is missing"
        if not bad:
            return
        if salvage:
            self.salvaged = [self._leave_out(i, problem) for i, problem in bad.items()]
            return
        problems = [SalvagedSegment(self._segment_file(i)[0], problem, 0) for i, problem in bad.items()]
        if missing:
            named = {self._segment_file(i)[0] for i in range(len(self.segments))}
            total = len(named | {source for source, _ in seen})  # the files named in the index and those merges map
            raise DamagedSegmentsError(
                f"{self.path}: {len(missing)} of {total} segment files are missing from {self.segments_dir} "
                f"(first: {next(iter(missing.values()))}); keep the segments folder next to the session file, named "
                f"{' or '.join(dict.fromkeys([segments_dir(self.path).name, self.segments_dir.name]))}",
                problems, len(self.segments),
            )
        more = f" (and {len(damaged) - 1} more damaged segment{'s' if len(damaged) > 2 else ''})" if len(damaged) > 1 else ""
        raise DamagedSegmentsError(f"{self.path}: segment {damaged[0]}; the segment is damaged{more}", problems, len(self.segments))

    def _leave_out(self, segment: int, problem: str) -> SalvagedSegment:
        """Drop every index row (all streams) that points into ``segment``; what was left out."""
        rows = 0
        span: list[float] = []
        for stream, idx in self.index.items():
            hit = idx["segment"] == segment
            if not hit.any():
                continue
            rows += int(idx["rows"][hit].sum())
            if stream in (SPIKES, INPUT):
                span += [float(self.session_time_s(idx["t_first"][hit], idx["epoch"][hit]).min()),
                         float(self.session_time_s(idx["t_last"][hit], idx["epoch"][hit]).max())]
            self.index[stream] = idx[~hit]
        return SalvagedSegment(self._segment_file(segment)[0], problem, rows, (max(span) - min(span)) if span else 0.0)

    @staticmethod
    def _opens(file: Path) -> str | None:
        try:
            check_regular_file(file, "a segment")
            with h5py.File(file, "r"):
                return None
        except (OSError, ValueError) as exc:
            return f"cannot be read ({_reason(exc)})"

    def _check_dataset(
        self, file: Path, key: str, rows: int, dtype: np.dtype, missing: dict[str, str], seen: set[tuple[str, str]], depth: int
    ) -> str | None:
        """Why dataset ``key`` of segment ``file`` cannot give ``rows`` rows of ``dtype`` (None if it can).

        A virtual dataset (a merged segment) is followed to each source it maps: HDF5 would
        read a missing or short source as zeros without a word.  Missing sources are added to
        ``missing``; ``seen`` avoids checking a source twice.
        """
        if depth > MAX_VIRTUAL_DEPTH:
            return f"{key} maps virtual sources more than {MAX_VIRTUAL_DEPTH} levels deep"
        try:
            check_regular_file(file, "a segment")
            with h5py.File(file, "r") as seg:
                ds = seg.get(key)
                if not isinstance(ds, h5py.Dataset):
                    return f"has no {key} data"
                if ds.ndim != 1:
                    return f"{key} is {ds.ndim}-dimensional, not a column"
                want_int = np.dtype(dtype).kind in "iu"
                if want_int != (ds.dtype.kind in "iu") or (not want_int and ds.dtype.kind != np.dtype(dtype).kind):
                    return f"{key} holds {ds.dtype} values where {np.dtype(dtype)} belong"
                if ds.shape[0] < rows:
                    return f"{key} holds {ds.shape[0]:,} rows, the index says {rows:,}"
                sources = ds.virtual_sources() if ds.is_virtual else []
        except (OSError, ValueError) as exc:
            return f"cannot be read ({_reason(exc)})"
        for vmap in sources:
            mapped = Path(vmap.file_name)
            if mapped.parent != Path(".") or not _PLAIN_NAME.fullmatch(mapped.name):  # the writer maps "./seg-….h5"
                return f"{key} maps {vmap.file_name!r}, a file outside the segments folder"
            source = file.parent / mapped.name
            name = source.name
            if (name, vmap.dset_name) in seen:
                continue
            seen.add((name, vmap.dset_name))
            if not source.exists():
                missing.setdefault(name, f"{name}, merged into {file.name}")
                continue
            end = vmap.src_space.get_select_bounds()[1][0] + 1 if vmap.src_space.get_select_npoints() else 0
            problem = self._check_dataset(source, vmap.dset_name, end, dtype, missing, seen, depth + 1)
            if problem:
                return f"its merged source {name}: {problem}"
        return None

    def _check_rows(self, stream: str, seg_name: str, row0: int, cols: Mapping[str, np.ndarray], part: np.void) -> None:
        """Refuse rows that no board can have: ids outside the topology, board times outside the part's recorded range."""
        spec = self.streams[stream]
        checks: list[tuple[str, np.ndarray, str]] = []
        if stream in (SPIKES, INPUT, f"streams/{MEMBRANE_STREAM}"):
            for column, limit in ID_LIMITS.items():
                if column in cols:
                    v = cols[column]
                    checks.append((column, (v < 0) | (v >= limit), f"{column} id {{v}} is out of range 0..{limit - 1}"))
        tc = spec.time_column
        if tc in cols and cols[tc].dtype.kind in "iu" and len(cols[tc]):  # the writer stores each part's exact min and max
            t = cols[tc]
            checks.append((tc, (t < part["t_first"]) | (t > part["t_last"]),
                           f"board time {{v}} µs lies outside {int(part['t_first'])}..{int(part['t_last'])} µs that the index recorded"))
        for column, bad_mask, text in checks:
            bad = np.flatnonzero(bad_mask)
            if len(bad):
                r = int(bad[0])
                raise self._damaged(
                    f"segment {seg_name}, {stream} row {row0 + r:,}: {text.format(v=cols[column][r])} "
                    f"({len(bad):,} bad rows in this part); the segment is damaged"
                )

    def verify(self) -> None:
        """Read and check every row of every stream (what ``neurolab info`` does); raises :class:`SessionFileError`."""
        for stream, idx in self.index.items():
            for part in idx:
                name, file = self._segment_file(int(part["segment"]))
                row0, n = int(part["row0"]), int(part["rows"])
                with self._reading(name, stream), h5py.File(file, "r") as seg:
                    for a in range(0, n, CHECK_ROWS):
                        b = min(n, a + CHECK_ROWS)
                        cols = {c: seg[f"{stream}/{c}"][row0 + a : row0 + b] for c in self.streams[stream].columns}
                        self._check_rows(stream, name, row0 + a, cols, part)

    @contextmanager
    def _reading(self, seg_name: str, stream: str) -> Iterator[None]:
        """Turn an error while reading a segment (a corrupt chunk, a vanished file) into one naming the file and segment."""
        try:
            yield
        except SessionFileError:
            raise
        except _READ_ERRORS as exc:
            raise self._damaged(f"segment {seg_name}, {stream}: cannot be read ({_reason(exc)}); the segment is damaged") from exc

    # --- metadata --------------------------------------------------------------------
    @property
    def complete(self) -> bool:
        """Whether the writer finished the file (False after a crash: the file holds what was saved)."""
        return bool(self.attrs.get("complete", False))

    @property
    def write_error(self) -> str | None:
        """Why the writer stopped before finishing (e.g. "No space left on device"), if it recorded one."""
        return str(self.attrs.get("error", "")) or None

    @property
    def incomplete_reason(self) -> str | None:
        """Why the file is incomplete, in words for a message (None for a complete file)."""
        if self.complete:
            return None
        if self.write_error:
            return f"the write failed: {self.write_error}"
        return "its recording was killed or is still running"  # nothing else leaves no error behind

    def boards(self) -> list[str]:
        """Serials of every board the recording holds events of, in the order they were connected.

        The header names the board at the start; a reconnect to another board (a new epoch) is
        recorded only by its ``connected`` marker.  Empty for a recording made with no board.
        """
        serials = [str(self.attrs.get("board_serial", ""))]
        for m in self.markers:
            found = _CONNECTED_TEXT.fullmatch(m["text"].decode()) if m["kind"] == b"connected" else None
            if found:
                serials.append(found.group(1))
        return list(dict.fromkeys(s for s in serials if s))

    @property
    def dropped_events(self) -> int:
        return int(self.attrs.get("dropped_events", 0))

    def rows(self, stream: str) -> int:
        """Rows recorded in ``stream`` (0 for a declared stream that got none); ``KeyError`` naming
        the streams there are for a name the file does not declare (``"spikes"`` for ``"events/spikes"``
        would otherwise read as an empty recording)."""
        if stream not in self.streams and stream not in (SPIKES, INPUT):
            raise KeyError(f"no stream {stream!r} in {self.path.name}; its streams: {', '.join(self.streams)}")
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
            name, file = self._segment_file(int(row["segment"]))
            row0, n = int(row["row0"]), int(row["rows"])
            with self._reading(name, stream), h5py.File(file, "r") as seg:
                cols = {column: seg[f"{stream}/{column}"][row0 : row0 + n] for column in spec.columns}
            self._check_rows(stream, name, row0, cols, row)
            for column, values in cols.items():
                parts[column].append(values)
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
            name, file = self._segment_file(int(row["segment"]))
            row0, n, epoch = int(row["row0"]), int(row["rows"]), int(row["epoch"])
            with self._reading(name, stream), h5py.File(file, "r") as seg:
                lo, hi = self._block_bounds(seg, name, stream, row, epoch)
                blocks = np.flatnonzero((hi >= start_s) & (lo < stop_s))
                if not len(blocks):
                    continue
                a, b = int(blocks[0]) * BLOCK_ROWS, min(n, (int(blocks[-1]) + 1) * BLOCK_ROWS)
                cols = {c: seg[f"{stream}/{c}"][row0 + a : row0 + b] for c in names}
            self._check_rows(stream, name, row0 + a, cols, row)
            ts = self.session_time_s(cols["t"], epoch)
            keep = (ts >= start_s) & (ts < stop_s)
            ts_list.append(ts[keep])
            for c in names:
                parts[c].append(cols[c][keep])
        if not ts_list:
            return np.zeros(0), SpikeEvents()
        return np.concatenate(ts_list), SpikeEvents(*(np.concatenate(parts[c]) for c in names))

    def _block_bounds(self, seg: h5py.File, name: str, stream: str, part: np.void, epoch: int) -> tuple[np.ndarray, np.ndarray]:
        """Earliest and latest session time of each block of ``BLOCK_ROWS`` rows of a part (cached).

        Reads all of the part's times once, so it checks them all (a damaged time would
        otherwise only move a block's bounds and hide its events)."""
        row0, n = int(part["row0"]), int(part["rows"])
        key = (name, stream, row0)
        got = self._bounds_cache.get(key)
        if got is None:
            n_blocks = -(-n // BLOCK_ROWS)
            lo, hi = np.empty(n_blocks), np.empty(n_blocks)
            ds = seg[f"{stream}/t"]
            step = BLOCK_ROWS * 256  # read in slices of 1 M rows: bounded memory for any part
            for a in range(0, n, step):
                t = ds[row0 + a : row0 + min(n, a + step)]
                self._check_rows(stream, name, row0 + a, {"t": t}, part)
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
            "boards": self.boards(),
            "write_error": self.write_error,
            "incomplete_reason": self.incomplete_reason,
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
            "salvaged": None if not self.salvaged else {
                "segments_left_out": [{"segment": s.name, "problem": s.problem, "rows": s.rows} for s in self.salvaged],
                "missing_s": round(sum(s.span_s for s in self.salvaged), 6),
                "recorded_s": round(self.recorded_s, 6),
                "text": self.salvage_text(),
            },
        }

    def salvage_text(self) -> str | None:
        """What salvage mode left out, for a message (None when nothing was):
        ``salvaged: 1 damaged segment left out (seg-000004.h5: truncated file …), 1.2 s of 20.0 s missing``."""
        if not self.salvaged:
            return None
        n = len(self.salvaged)
        kinds = " or ".join(sorted({"missing" if s.problem == "missing" else "damaged" for s in self.salvaged}))
        which = "; ".join(f"{s.name}: {s.problem}" for s in self.salvaged[:3]) + ("; …" if n > 3 else "")
        missing = sum(s.span_s for s in self.salvaged)
        return (f"salvaged: {n} {kinds} segment{'s' if n != 1 else ''} left out ({which}), "
                f"{sum(s.rows for s in self.salvaged):,} rows and {missing:.3f} s of {self.recorded_s:.3f} s missing")


def open_session_file(source: str | Path | SessionFile) -> SessionFile:
    """``source`` itself when it is an opened :class:`SessionFile` (strict or salvaged), else a strict open of it."""
    return source if isinstance(source, SessionFile) else SessionFile(source)


def boards_text(boards: list[str]) -> str:
    """``board A``, ``boards A, B`` or ``no board``: what a recording was made with, for a message."""
    if not boards:
        return "no board"
    return f"board{'s' if len(boards) > 1 else ''} {', '.join(boards)}"


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
