"""Live views of the event stream and the analog monitor, with bounded memory.

:class:`EventRing` is a preallocated ring buffer of (timestamp, neuron) columns
fed by whole numpy batches from the acquisition thread (no per-event Python
objects, no per-event signals).  Readers (the raster timer, rate readouts,
transfer-curve updates) take *copies* of a time window, so a reader never sees
a half-written batch and the writer never waits on a renderer.

:class:`SpikeMonitor` couples a ring to the board's event stream and keeps the
stream statistics the status bar shows.  :class:`MembraneMonitor` polls the
analog monitor (the emulator's ``read_membrane``) into one small ring per core.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import (
    N_CORES_PER_CHIP,
    N_NEURONS,
    N_NEURONS_PER_CORE,
    check_chip,
    check_core,
    check_neuron,
)

from .events import Signal

#: A jump back in time larger than this (µs) means the board's timestamps were reset.
TIMESTAMP_RESET_JUMP_US = 1_000_000


class EventRing:
    """Fixed-capacity ring of spike events (int64 µs timestamps, uint16 board-wide neuron ids).

    Parameters
    ----------
    capacity : int
        Events kept; the oldest are overwritten.  4 M events ≈ 40 MB, i.e. 4 s at 1 M events/s.
    """

    def __init__(self, capacity: int = 4_000_000) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1, got {capacity}")
        self.capacity = int(capacity)
        self._t = np.zeros(self.capacity, np.int64)
        self._gid = np.zeros(self.capacity, np.uint16)
        self._written = 0  # events ever pushed since the last clear
        self._lock = threading.Lock()
        self.overwritten = 0  # events pushed out before any reader could have needed them

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    def clear(self) -> None:
        with self._lock:
            self._written = 0

    def push(self, timestamp_us: np.ndarray, global_id: np.ndarray) -> None:
        """Append one time-ordered batch (columns of equal length)."""
        n = len(timestamp_us)
        if n == 0:
            return
        if len(global_id) != n:
            raise ValueError("timestamp and neuron columns differ in length")
        with self._lock:
            if self._written and timestamp_us[0] < self._last_t() - TIMESTAMP_RESET_JUMP_US:
                self._written = 0  # timestamps were reset on the board: old window is meaningless
            if n > self.capacity:  # only the newest events fit
                self.overwritten += n - self.capacity
                timestamp_us, global_id, n = timestamp_us[-self.capacity :], global_id[-self.capacity :], self.capacity
            start = self._written % self.capacity
            first = min(n, self.capacity - start)
            self._t[start : start + first] = timestamp_us[:first]
            self._gid[start : start + first] = global_id[:first]
            if first < n:
                self._t[: n - first] = timestamp_us[first:]
                self._gid[: n - first] = global_id[first:]
            self.overwritten += max(0, self._written + n - self.capacity) - max(0, self._written - self.capacity)
            self._written += n

    def push_events(self, events: SpikeEvents) -> None:
        self.push(events.timestamp_us, events.global_id.astype(np.uint16))

    def _last_t(self) -> int:
        return int(self._t[(self._written - 1) % self.capacity])

    @property
    def latest_us(self) -> int | None:
        """Timestamp of the newest event, or None when empty."""
        with self._lock:
            return self._last_t() if self._written else None

    @property
    def oldest_us(self) -> int | None:
        """Timestamp of the oldest event still held, or None when empty."""
        with self._lock:
            if not self._written:
                return None
            return int(self._t[0 if self._written <= self.capacity else self._written % self.capacity])

    def _segments(self) -> list[tuple[np.ndarray, np.ndarray]]:
        n = len(self)
        end = self._written % self.capacity
        if self._written <= self.capacity:
            return [(self._t[:n], self._gid[:n])]
        return [(self._t[end:], self._gid[end:]), (self._t[:end], self._gid[:end])]

    def window(self, t_start_us: int, t_end_us: int) -> tuple[np.ndarray, np.ndarray]:
        """Copies of the events with ``t_start_us <= t < t_end_us``, in time order."""
        ts, gs = [], []
        with self._lock:
            for t, g in self._segments():
                a, b = np.searchsorted(t, [t_start_us, t_end_us])
                if b > a:
                    ts.append(t[a:b].copy())
                    gs.append(g[a:b].copy())
        if not ts:
            return np.zeros(0, np.int64), np.zeros(0, np.uint16)
        return np.concatenate(ts), np.concatenate(gs)


@dataclass(frozen=True)
class NeuronSelection:
    """Which board-wide neurons a view shows, in display order (row 0 first)."""

    neurons: np.ndarray  # int64 global ids
    label: str = ""

    @classmethod
    def core_range(cls, chip: int, core: int, start: int = 0, stop: int = N_NEURONS_PER_CORE) -> NeuronSelection:
        check_chip(chip), check_core(core)
        if not 0 <= start < stop <= N_NEURONS_PER_CORE:
            raise ValueError(f"neuron range {start}..{stop} must lie within 0..{N_NEURONS_PER_CORE}")
        base = chip * N_CORES_PER_CHIP * N_NEURONS_PER_CORE + core * N_NEURONS_PER_CORE
        return cls(np.arange(base + start, base + stop, dtype=np.int64), f"chip {chip} core {core} [{start}:{stop})")

    @classmethod
    def from_ids(cls, neurons: Sequence[int], label: str = "") -> NeuronSelection:
        ids = np.asarray(list(neurons), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() >= N_NEURONS):
            raise ValueError(f"neuron ids must lie in 0..{N_NEURONS - 1}")
        return cls(ids, label)

    @classmethod
    def all(cls) -> NeuronSelection:
        return cls(np.arange(N_NEURONS, dtype=np.int64), "all neurons")

    def row_lookup(self) -> np.ndarray:
        """Array mapping global id -> display row (-1 for neurons not shown)."""
        rows = np.full(N_NEURONS, -1, np.int64)
        rows[self.neurons] = np.arange(len(self.neurons))
        return rows


def rates_hz(global_id: np.ndarray, span_s: float, n_neurons: int = N_NEURONS) -> np.ndarray:
    """Firing rate per board-wide neuron from the events of a window lasting ``span_s`` seconds."""
    if span_s <= 0:
        raise ValueError(f"rate window must be positive, got {span_s} s")
    return np.bincount(global_id.astype(np.int64), minlength=n_neurons)[:n_neurons] / span_s


class SpikeMonitor:
    """The live event stream: a ring buffer plus rate statistics.

    Feed it with :meth:`on_events` (from any thread).  It emits nothing per batch:
    views poll :meth:`window` on their own timers, which decouples rendering from
    acquisition.
    """

    def __init__(self, capacity: int = 4_000_000) -> None:
        self.ring = EventRing(capacity)
        self.total_events = 0
        self._rate_lock = threading.Lock()
        self._rate_mark = (time.monotonic(), 0)
        self._event_rate = 0.0
        #: ``cleared()`` when the buffer was emptied (new board, timestamp reset).
        self.cleared = Signal("spike monitor cleared")

    def on_events(self, events: SpikeEvents) -> None:
        self.ring.push_events(events)
        self.total_events += len(events)

    def clear(self) -> None:
        self.ring.clear()
        self.cleared.emit()

    def event_rate(self) -> float:
        """Events per wall-clock second since the previous call (at most ~1 s smoothing)."""
        with self._rate_lock:
            now, total = time.monotonic(), self.total_events
            t0, n0 = self._rate_mark
            if now - t0 >= 0.2:
                self._event_rate = (total - n0) / (now - t0)
                self._rate_mark = (now, total)
            return self._event_rate

    def window(self, span_s: float, end_us: int | None = None) -> tuple[np.ndarray, np.ndarray, int]:
        """Events of the last ``span_s`` seconds before ``end_us`` (default: the newest event).

        Returns ``(t_us, global_id, end_us)``; ``end_us`` is 0 when nothing arrived yet.
        """
        if end_us is None:
            end_us = self.ring.latest_us
            if end_us is None:
                return np.zeros(0, np.int64), np.zeros(0, np.uint16), 0
            end_us += 1
        t, g = self.ring.window(end_us - int(span_s * 1e6), end_us)
        return t, g, end_us

    def rates(self, span_s: float = 1.0, end_us: int | None = None) -> np.ndarray:
        """Rate per board-wide neuron over the last ``span_s`` seconds of board time."""
        _, g, _ = self.window(span_s, end_us)
        return rates_hz(g, span_s)


class MembraneMonitor:
    """Membrane traces of the neuron routed to the analog monitor on each core.

    Silicon has no membrane readback over USB (``read_membrane`` returns None);
    the emulator does.  ``poll`` is called by the GUI timer or a script.
    """

    def __init__(self, capacity: int = 200_000) -> None:
        self.capacity = capacity
        self._board = None
        self.selected: dict[tuple[int, int], int] = {}
        self._t: dict[tuple[int, int], np.ndarray] = {}
        self._v: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()
        #: ``selection_changed(chip, core, neuron)``.
        self.selection_changed = Signal("membrane selection changed")

    def attach(self, board) -> None:
        with self._lock:
            self._board = board
            self._t.clear()
            self._v.clear()
        for (chip, core), neuron in list(self.selected.items()):
            board.monitor_neuron(chip, core, neuron)

    def detach(self) -> None:
        with self._lock:
            self._board = None

    def select(self, chip: int, core: int, neuron: int) -> None:
        """Route ``neuron`` of (chip, core) to the analog monitor (one neuron per core)."""
        chip, core, neuron = check_chip(chip), check_core(core), check_neuron(neuron)
        board = self._board
        if board is not None:
            board.monitor_neuron(chip, core, neuron)
        with self._lock:
            self.selected[(chip, core)] = neuron
            self._t.pop((chip, core), None)
            self._v.pop((chip, core), None)
        self.selection_changed.emit(chip, core, neuron)

    @property
    def available(self) -> bool:
        """Whether the board can read membranes back (the emulator can, silicon cannot)."""
        board = self._board
        return board is not None and bool(getattr(board, "is_emulated", False))

    def poll(self) -> None:
        """Fetch new samples of every selected core from the board."""
        board = self._board
        if board is None:
            return
        for chip, core in list(self.selected):
            got = board.read_membrane(chip, core)
            if got is None:
                continue
            t, v = np.asarray(got[0], np.float64), np.asarray(got[1], np.float64)
            with self._lock:
                old_t = self._t.get((chip, core), np.zeros(0))
                old_v = self._v.get((chip, core), np.zeros(0))
                self._t[(chip, core)] = np.concatenate([old_t, t])[-self.capacity :]
                self._v[(chip, core)] = np.concatenate([old_v, v])[-self.capacity :]

    def trace(self, chip: int, core: int) -> tuple[np.ndarray, np.ndarray]:
        """(t_us, volts) collected so far for (chip, core)."""
        with self._lock:
            return self._t.get((chip, core), np.zeros(0)).copy(), self._v.get((chip, core), np.zeros(0)).copy()


@dataclass
class RasterFrame:
    """What the raster draws for one frame (computed off the Qt side so it can be benchmarked and tested).

    ``mode`` is ``"ticks"`` (one vertical tick per spike, grouped per core for colouring; x/y in
    ``connect='pairs'`` layout) or ``"density"`` (a rows × bins count image, used when the window holds
    more spikes than ``max_ticks``; its cost does not depend on the event rate).
    """

    mode: str
    t0_s: float
    t1_s: float
    n_rows: int
    ticks: dict[int, tuple[np.ndarray, np.ndarray]]  # core index (chip*4+core) -> (x pairs, y pairs)
    density: np.ndarray | None  # (n_rows, n_bins) float32 counts
    row_core: np.ndarray  # core index of every row
    rates_hz: np.ndarray  # per row
    n_events: int


class RasterBuilder:
    """Turn a window of events into a :class:`RasterFrame` for a neuron selection.

    Parameters
    ----------
    selection : the neurons shown, row 0 first
    max_ticks : above this many spikes in the window, draw a density image instead
    n_bins : time bins of the density image
    """

    def __init__(self, selection: NeuronSelection, max_ticks: int = 50_000, n_bins: int = 500) -> None:
        self.max_ticks = int(max_ticks)
        self.n_bins = int(n_bins)
        self.set_selection(selection)

    def set_selection(self, selection: NeuronSelection) -> None:
        self.selection = selection
        self._rows = selection.row_lookup()
        self.row_core = (selection.neurons // N_NEURONS_PER_CORE).astype(np.int64)

    def build(self, t_us: np.ndarray, gid: np.ndarray, t_end_us: int, span_s: float) -> RasterFrame:
        n_rows = len(self.selection.neurons)
        rows = self._rows[gid] if len(gid) else np.zeros(0, np.int64)
        keep = rows >= 0
        if not keep.all():
            rows, t_us = rows[keep], t_us[keep]
        t1 = t_end_us / 1e6
        t0 = t1 - span_s
        rates = np.bincount(rows, minlength=n_rows)[:n_rows] / span_s
        if len(rows) <= self.max_ticks:
            ticks: dict[int, tuple[np.ndarray, np.ndarray]] = {}
            cores = self.row_core[rows]
            x_all = t_us / 1e6
            for c in np.unique(cores):
                sel = cores == c
                x = np.repeat(x_all[sel], 2)
                r = rows[sel].astype(np.float64)
                y = np.empty(2 * len(r))
                y[0::2] = r - 0.4
                y[1::2] = r + 0.4
                ticks[int(c)] = (x, y)
            return RasterFrame("ticks", t0, t1, n_rows, ticks, None, self.row_core, rates, len(rows))
        start_us = t_end_us - int(span_s * 1e6)
        bins = ((t_us - start_us) * self.n_bins // max(1, int(span_s * 1e6))).clip(0, self.n_bins - 1)
        flat = np.bincount(rows * self.n_bins + bins, minlength=n_rows * self.n_bins)
        density = flat.reshape(n_rows, self.n_bins).astype(np.float32)
        return RasterFrame("density", t0, t1, n_rows, {}, density, self.row_core, rates, len(rows))
