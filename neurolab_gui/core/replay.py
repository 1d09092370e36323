"""Replay a session file into a :class:`~neurolab_gui.core.session.Session` as if a board sent it.

:class:`ReplaySource` is a source of event batches like the acquisition thread: its own thread
reads the recording window by window and forwards the batches through the session's event
fan-out (``ConnectionManager.feed``), so the raster, rates, transfer views and even a new
recording receive them exactly as they receive a live board's.  Bias changes of the recording
are applied to the session's (board-less) bias model when the play head crosses them, so the
bias panel shows the settings of the moment being replayed.

Timestamps are the recording's session time in µs (one monotonic timeline over reconnects and
timestamp resets, see :mod:`neurolab_gui.core.session_file`).  Seeking clears the spike
monitor and feeds the ``preroll_s`` seconds before the new position, so the views show the
moment scrubbed to at once.  Qt-free; the Qt replay bar only calls these methods.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.spikes import SpikeEvents

from .events import Signal
from .session_file import MEMBRANE_STREAM, SPIKES, SessionFile

if TYPE_CHECKING:
    from .session import Session

log = logging.getLogger(__name__)

MIN_SPEED, MAX_SPEED = 0.1, 10.0
#: Session seconds read and forwarded at a time (see ReplaySource._feed).
FEED_PIECE_S = 0.05


class ReplaySource:
    """Play, pause, seek and change the speed of a recording fed into ``session``.

    Parameters
    ----------
    session : the session whose monitors receive the events (no board may be connected)
    path : the session file, or an already opened :class:`SessionFile`
    preroll_s : history fed before the play head after a seek
    tick_s : how often the replay thread forwards a batch (wall-clock seconds)
    """

    def __init__(self, session: Session, path: str | Path | SessionFile, preroll_s: float = 2.0, tick_s: float = 0.02) -> None:
        self.session = session
        self.file = path if isinstance(path, SessionFile) else SessionFile(path)
        self.path = self.file.path
        self.duration_s = self.file.duration_s()
        self.preroll_s = float(preroll_s)
        self.tick_s = float(tick_s)
        self._position = 0.0
        self._speed = 1.0
        self._playing = False
        self._lock = threading.Lock()  # held by a play tick while it feeds (pause waits for it)
        self._wake = threading.Event()
        self._seek_to: float | None = None
        self._seek_done = threading.Event()
        self._closed = False
        start_unix = float(self.file.attrs.get("start_time_unix", 0.0))
        changes = self.file.bias_changes
        #: Session times (s) of the recorded bias changes, in order.
        self.bias_change_times = np.asarray(changes["time_s"] - start_unix, np.float64) if len(changes) else np.zeros(0)
        self._initial_biases = {
            (int(r["chip"]), int(r["core"]), _s(r["name"])): BiasValue(
                int(r["coarse"]), int(r["fine"]), bool(r["high"]), bool(r["normal"]), bool(r["enabled"])
            )
            for r in self.file.bias_initial
        }
        self._bias_applied = -1  # index of the last recorded change applied to the bias model
        # one small int per change naming its bias, so a play tick finds the last change of each bias
        # among those it crossed with numpy: a calibration's recording holds thousands of changes, and
        # rebuilding the table from all of them on every tick held the GIL for tens of ms
        self._change_bias_ids = (np.unique(changes[["chip", "core", "name"]], return_inverse=True)[1].reshape(-1)
                                 if len(changes) else np.zeros(0, np.int64))
        self._timeline: Timeline | None = None
        #: What the session's membrane monitor reads during a replay (the recorded samples).
        self.membrane = ReplayMembrane(self)
        #: ``position_changed(seconds)`` from the replay thread or the caller.
        self.position_changed = Signal("replay position")
        #: ``state_changed(playing: bool)``.
        self.state_changed = Signal("replay state")
        #: ``failed(ReplayError)`` when reading the recording failed (the replay then pauses).
        self.failed = Signal("replay failed")
        #: The last such failure, or None.
        self.error: ReplayError | None = None
        self._reading: tuple[float, float] | None = None  # the window being read (for the error message)
        self._thread = threading.Thread(target=self._run, name="neurolab-replay", daemon=True)
        self._thread.start()
        self.seek(0.0, wait=True)

    # --- state ----------------------------------------------------------------------------
    @property
    def position_s(self) -> float:
        return self._position

    @property
    def speed(self) -> float:
        return self._speed

    @property
    def playing(self) -> bool:
        return self._playing

    def timeline(self) -> Timeline:
        """The bias changes and markers in time order, for a timeline view (built once, texts on demand)."""
        if self._timeline is None:
            self._timeline = Timeline(self.bias_change_times, self.file.bias_changes, self.file.markers)
        return self._timeline

    # --- control --------------------------------------------------------------------------
    # play and seek only set flags and wake the replay thread: they never wait for a feed
    def play(self) -> None:
        if self._position >= self.duration_s:
            self.seek(0.0)
        self._playing = True
        self._wake.set()
        self.state_changed.emit(True)

    def pause(self) -> None:
        """Stop at the current position; when this returns the position no longer moves."""
        self._playing = False
        with self._lock:  # let a tick that is feeding right now finish (at most one tick's events)
            pass
        self.state_changed.emit(False)

    def toggle(self) -> None:
        self.pause() if self._playing else self.play()

    def set_speed(self, speed: float) -> None:
        speed = float(speed)
        if not MIN_SPEED <= speed <= MAX_SPEED or not np.isfinite(speed):
            raise ValueError(f"replay speed must lie in {MIN_SPEED}..{MAX_SPEED}x, got {speed}")
        self._speed = speed

    def seek(self, t_s: float, wait: bool = False) -> None:
        """Move the play head to ``t_s`` (clamped to the recording); the views follow.

        The head moves at once; reading the preroll and feeding the monitors happens on the
        replay thread, so dragging the slider over a dense recording never stalls the caller
        (the GUI thread).  ``wait=True`` returns only when the views show the new moment.
        """
        if not np.isfinite(t_s):
            raise ValueError(f"cannot seek to {t_s}")
        t_s = min(max(0.0, float(t_s)), self.duration_s)
        # no lock here: the replay thread may hold it while it feeds, and the caller must not wait
        self._seek_done.clear()
        self._seek_to = t_s
        self._position = t_s
        self._wake.set()
        if wait and not self._seek_done.wait(10.0):
            raise TimeoutError(f"replay of {self.path} did not reach {t_s} s")

    def _do_seek(self) -> bool:
        """Replay thread: carry out a pending seek; True if there was one."""
        t_s, self._seek_to = self._seek_to, None
        if t_s is None:
            return False
        # no lock: only this thread feeds, and pause() need not wait for a preroll (the head is set)
        self.session.spikes.clear()
        self._feed(max(0.0, t_s - self.preroll_s), t_s)
        self.membrane.rewind(max(0.0, t_s - self.preroll_s))
        self.session.membrane.clear()
        self._apply_biases_until(t_s)
        if self._seek_to is None:  # no newer seek meanwhile
            self._position = t_s
            self._seek_done.set()
        self.position_changed.emit(t_s)
        return True

    def close(self) -> None:
        self._closed = True
        self._playing = False
        self._wake.set()
        self._thread.join(2.0)

    # --- the replay thread ----------------------------------------------------------------
    def _run(self) -> None:
        last = time.monotonic()
        while not self._closed:
            try:
                if self._do_seek():
                    last = time.monotonic()
                    continue
                if not self._playing:
                    self._wake.wait(0.2)
                    self._wake.clear()
                    last = time.monotonic()
                    continue
                self._wake.wait(self.tick_s)
                self._wake.clear()
                now = time.monotonic()
                with self._lock:
                    if not self._playing or self._seek_to is not None:
                        continue
                    start = self._position
                    stop = min(self.duration_s + 1e-6, start + (now - last) * self._speed)
                    self._feed(start, stop)
                    self._position = min(stop, self.duration_s)
                    self._apply_biases_until(self._position)
                    finished = self._position >= self.duration_s
                    if finished:
                        self._playing = False
                last = now
                self.position_changed.emit(self._position)
                if finished:
                    self.state_changed.emit(False)
            except Exception as exc:  # a damaged segment must neither kill the thread nor fail unseen
                error = self._error(exc)
                self._reading = None
                self.error = error
                # the failed signal carries it to whoever shows it (the app's replay bar reports it,
                # traceback included): logged here only for debugging, as the jobs' refused inputs
                log.debug("%s", error, exc_info=exc)
                self._playing = False
                self._seek_done.set()
                self.state_changed.emit(False)
                self.failed.emit(error)

    def _error(self, exc: Exception) -> ReplayError:
        """``exc`` as the user needs it: which file, which moment and which segment files it read."""
        where = ""
        if self._reading is not None:
            a, b = self._reading
            where = f" at {a:.3f} s"
            # a damaged index: the message says less, it is still shown
            with contextlib.suppress(Exception):
                idx = self.file.index[SPIKES]
                first = self.file.session_time_s(idx["t_first"], idx["epoch"])
                last = self.file.session_time_s(idx["t_last"], idx["epoch"])
                names = sorted({self.file.segments[int(r["segment"])]["file"].decode() for r in idx[(last >= a) & (first < b)]})
                if names:
                    where += f" (segment{'s' if len(names) > 1 else ''} {', '.join(names)} in {self.file.segments_dir})"
        error = ReplayError(f"replay of {self.path} failed{where}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        return error

    def _feed(self, start_s: float, stop_s: float) -> None:
        """Forward the events of ``[start_s, stop_s)`` in pieces of ``FEED_PIECE_S``: a seek's preroll
        of a dense recording read and binned in one go holds the GIL long enough to stall the GUI."""
        a = start_s
        while a < stop_s:
            b = min(stop_s, a + FEED_PIECE_S)
            self._reading = (a, b)
            ts, ev = self.file.events_in(a, b)
            self._reading = None
            if len(ev):
                order = np.argsort(ts, kind="stable")
                t_us = np.rint(ts[order] * 1e6).astype(np.int64)
                self.session.connection.feed(SpikeEvents(t_us, ev.chip[order], ev.core[order], ev.neuron[order]))
            a = b
            time.sleep(0)  # let the GUI thread take the GIL between pieces

    def _apply_biases_until(self, t_s: float) -> None:
        """Bring the bias model to the recorded settings at ``t_s`` (initial table + changes so far).

        Forward (playing) only the changes crossed since the last call are applied; backward (a seek)
        the table is rebuilt from the initial one.  Either way only the last change of each bias is
        made into a value, so a tick over a burst of a calibration's changes costs one write per bias.
        """
        target = int(np.searchsorted(self.bias_change_times, t_s, side="right")) - 1
        if target == self._bias_applied or self.session.board is not None or not self._initial_biases:
            return
        values = {} if target > self._bias_applied else dict(self._initial_biases)
        first = self._bias_applied + 1 if target > self._bias_applied else 0
        ids = self._change_bias_ids[first : target + 1]
        if len(ids):
            _, last_from_end = np.unique(ids[::-1], return_index=True)
            for row in np.sort(first + len(ids) - 1 - last_from_end):
                c = self.file.bias_changes[row]
                values[(int(c["chip"]), int(c["core"]), _s(c["name"]))] = BiasValue(
                    int(c["new_coarse"]), int(c["new_fine"]), bool(c["new_high"]), bool(c["new_normal"]), bool(c["new_enabled"])
                )
        known = {k: v for k, v in values.items() if k in self.session.biases.parameters}
        self.session.biases.apply(known, origin="replay", undoable=False)
        self._bias_applied = target


class Timeline:
    """The bias changes and markers of a recording in time order, for the replay bar.

    Only the times and kinds are built at once (numpy); an entry's text is made when it is shown
    (the recent entries, a tooltip), as a calibration's recording holds thousands of changes.

    Parameters
    ----------
    change_times : session times (s) of the recorded bias changes, in file order
    changes : the file's ``biases/changes`` table
    markers : the file's ``markers`` table
    """

    def __init__(self, change_times: np.ndarray, changes: np.ndarray, markers: np.ndarray) -> None:
        self._changes = changes
        self._markers = markers
        marker_times = np.asarray(markers["session_time_s"], np.float64) if len(markers) else np.zeros(0)
        times = np.concatenate([np.asarray(change_times, np.float64), marker_times])
        order = np.argsort(times, kind="stable")  # a change before a marker of the same moment, as before
        #: Session times (s) of the entries, ascending.
        self.times = times[order]
        self._source = order  # < len(changes): a bias change's row, else a marker's row + len(changes)
        #: The kind of each entry: "bias" or the marker's kind ("connected", "timestamp_reset", ...).
        self.kinds = np.asarray(["bias"] * len(change_times) + [_s(m["kind"]) for m in markers], dtype=object)[order]

    def __len__(self) -> int:
        return len(self.times)

    def text(self, i: int) -> str:
        """What entry ``i`` says, e.g. ``"IF_DC_P chip 0 core 2: (3, 40) → (3, 77) [gui]"``."""
        row = int(self._source[i])
        if row >= len(self._changes):
            return _s(self._markers[row - len(self._changes)]["text"])
        c = self._changes[row]
        return (f"{_s(c['name'])} chip {c['chip']} core {c['core']}: "
                f"({c['old_coarse']}, {c['old_fine']}) → ({c['new_coarse']}, {c['new_fine']}) [{_s(c['origin'])}]")

    def describe(self, i: int) -> str:
        """Entry ``i`` as one line: ``"<time> s <kind>: <text>"``."""
        return f"{self.times[i]:.3f} s {self.kinds[i]}: {self.text(i)}"

    def recent(self, t_s: float, n: int = 3) -> list[str]:
        """The last ``n`` entries at or before ``t_s``, oldest first, described."""
        end = int(np.searchsorted(self.times, t_s, side="right"))
        return [self.describe(i) for i in range(max(0, end - n), end)]

    def nearest(self, t_s: float) -> int | None:
        """The index of the entry closest to ``t_s`` (None when there is none)."""
        if not len(self.times):
            return None
        i = int(np.searchsorted(self.times, t_s))
        candidates = [j for j in (i - 1, i) if 0 <= j < len(self.times)]
        return min(candidates, key=lambda j: abs(self.times[j] - t_s))


class ReplayError(RuntimeError):
    """Reading the recording failed during a replay; the message names the file and segment."""


class ReplayMembrane:
    """The recorded analog-monitor samples, served to the membrane monitor up to the play head.

    Stands where a board stands for :class:`~neurolab_gui.core.monitors.MembraneMonitor`:
    ``read_membrane(chip, core)`` returns the samples between the last read and the play head
    (session time, µs).  Only the neuron that was monitored while recording can be shown.
    """

    has_membrane_readback = True
    is_emulated = False

    def __init__(self, replay: ReplaySource) -> None:
        self._replay = replay
        f = replay.file
        self.by_core: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}
        self.recorded: list[tuple[int, int, int]] = []
        stream = f"streams/{MEMBRANE_STREAM}"
        if stream in f.streams and f.rows(stream):
            c = f.read_stream(stream)
            t_s = f.session_time_s(c["t_us"], c["_epoch"])
            for chip, core in sorted({(int(a), int(b)) for a, b in zip(c["chip"], c["core"], strict=True)}):
                sel = (c["chip"] == chip) & (c["core"] == core)
                order = np.argsort(t_s[sel], kind="stable")
                self.by_core[(chip, core)] = (t_s[sel][order] * 1e6, c["v"][sel][order].astype(np.float64))
                self.recorded.append((chip, core, int(c["neuron"][sel][-1])))
        self._cursor_s: dict[tuple[int, int], float] = {}

    def rewind(self, t_s: float) -> None:
        """Serve samples from ``t_s`` on (from the very first when ``t_s`` is the start)."""
        self._cursor_s = {key: (t_s if t_s > 0 else -np.inf) for key in self.by_core}

    def monitor_neuron(self, chip: int, core: int, neuron: int) -> None:
        """Nothing to route: a recording holds the neuron that was monitored then."""

    def read_membrane(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray] | None:
        got = self.by_core.get((chip, core))
        if got is None:
            return None
        t_us, v = got
        head = self._replay.position_s
        start = self._cursor_s.get((chip, core), -np.inf)
        a, b = np.searchsorted(t_us, [start * 1e6, head * 1e6])
        if head >= self._replay.duration_s:  # the end: include what follows the last spike
            b = len(t_us)
        self._cursor_s[(chip, core)] = head
        return t_us[a:b], v[a:b]


def _s(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
