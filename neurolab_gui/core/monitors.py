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
    N_CHIPS,
    N_CORES_PER_CHIP,
    N_NEURONS,
    N_NEURONS_PER_CORE,
    check_chip,
    check_core,
    check_neuron,
)

from .events import Signal

#: A batch lying wholly this far (µs) before the newest event means the board's timestamps were reset.
TIMESTAMP_RESET_JUMP_US = 1_000_000

#: Most events of the ring's tail that a late batch is merged with (bounds the cost of one push).
MERGE_TAIL_MAX = 1 << 18

#: Monitor ids of input channels: channel k of a deployed network's FPGA spike generator is id
#: ``INPUT_ID_BASE + k``, after the 4096 board-wide neuron ids.  The chip never reports these
#: spikes (the generator's sources are not chip neurons): the host, which programmed them, feeds
#: them (:meth:`SpikeMonitor.on_inputs`), so a raster can show a network's inputs beside its units.
INPUT_ID_BASE = N_NEURONS
#: Input channels a monitor has ids for (the generator addresses 256 sources per chip).
N_INPUT_IDS = 1024
#: Ids a monitor counts: neurons, then input channels.
N_MONITOR_IDS = INPUT_ID_BASE + N_INPUT_IDS
#: Colour index of input rows in a raster (core indices are 0..15).
INPUT_ROW_COLOUR = 16

#: Levels of pre-binned counts a monitor keeps (see :meth:`BinnedCounts.pyramid`) and the ratio of
#: their bin widths: 2 ms x 2048, 8 ms x 1024, 32 ms x 512 bins, i.e. 4.1, 8.2 and 16.4 s of history,
#: so the raster's longest window (10 s) is drawn whole from at most 1024 bins.
COUNT_LEVELS = 3
COUNT_LEVEL_FACTOR = 4


def sorted_by_time(t_us: np.ndarray, *columns: np.ndarray) -> tuple[np.ndarray, ...]:
    """The columns sorted by time (stable; no copy when they already are)."""
    if len(t_us) > 1 and bool((t_us[1:] < t_us[:-1]).any()):
        order = np.argsort(t_us, kind="stable")
        return (t_us[order], *(c[order] for c in columns))
    return (t_us, *columns)


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
        self.late_dropped = 0  # events that arrived too late to be placed in time order

    def __len__(self) -> int:
        return min(self._written, self.capacity)

    def clear(self) -> None:
        with self._lock:
            self._written = 0

    def push(self, timestamp_us: np.ndarray, global_id: np.ndarray) -> None:
        """Add one batch, in any time order (columns of equal length).

        The ring stays sorted by time: a batch is sorted first, and events older than the
        newest one held are merged into the ring's tail (at most :data:`MERGE_TAIL_MAX` events
        are moved for that; events older still are dropped and counted in :attr:`late_dropped`).
        A batch lying wholly more than :data:`TIMESTAMP_RESET_JUMP_US` before the newest event
        means the board's timestamps were reset: the ring starts afresh.
        """
        t = np.asarray(timestamp_us, np.int64).ravel()
        g = np.asarray(global_id).ravel()
        n = len(t)
        if n == 0:
            return
        if len(g) != n:
            raise ValueError("timestamp and neuron columns differ in length")
        g = g.astype(np.uint16, copy=False)
        t, g = sorted_by_time(t, g)
        with self._lock:
            old_written = self._written
            if self._written and t[-1] < self._last_t() - TIMESTAMP_RESET_JUMP_US:
                self._written = old_written = 0  # timestamps were reset on the board: old window is meaningless
            start = self._written
            if self._written and t[0] < self._last_t():
                start, t, g = self._merge_with_tail(t, g)
            m = len(t)
            keep = min(m, self.capacity)  # only the newest events fit
            self._write_at(start + m - keep, t[m - keep :], g[m - keep :])
            self._written = start + m
            self.overwritten += max(0, self._written - self.capacity) - max(0, old_written - self.capacity)

    def _merge_with_tail(self, t: np.ndarray, g: np.ndarray) -> tuple[int, np.ndarray, np.ndarray]:
        """Merge a sorted batch that reaches back before the newest event with the ring's tail.

        Returns the logical position to write from and the merged columns.
        """
        held = len(self)
        first = self._written - held  # logical index of the oldest event held
        tail_from = max(first, self._written - MERGE_TAIL_MAX)
        tail_idx = np.arange(tail_from, self._written) % self.capacity
        tail_t, tail_g = self._t[tail_idx], self._gid[tail_idx]
        # events of the batch older than the mergeable tail cannot be placed in order: drop them
        if tail_from > first or self._written > self.capacity:
            too_late = int(np.searchsorted(t, tail_t[0], side="left"))
            if too_late:
                self.late_dropped += too_late
                t, g = t[too_late:], g[too_late:]
        # equal timestamps: events already held stay first
        cut = int(np.searchsorted(tail_t, t[0], side="right")) if len(t) else len(tail_t)
        merged_t = np.concatenate([tail_t[cut:], t])
        merged_g = np.concatenate([tail_g[cut:], g])
        order = np.argsort(merged_t, kind="stable")
        return tail_from + cut, merged_t[order], merged_g[order]

    def _write_at(self, logical_start: int, t: np.ndarray, g: np.ndarray) -> None:
        """Write ``len(t) <= capacity`` events at logical positions ``logical_start ...`` (wrapping)."""
        n = len(t)
        if n == 0:
            return
        start = logical_start % self.capacity
        first = min(n, self.capacity - start)
        self._t[start : start + first] = t[:first]
        self._gid[start : start + first] = g[:first]
        if first < n:
            self._t[: n - first] = t[first:]
            self._gid[: n - first] = g[first:]

    def copy(self) -> EventRing:
        """A frozen copy (what a paused view keeps however long it stays paused)."""
        other = object.__new__(EventRing)
        with self._lock:
            other.capacity = self.capacity
            other._t, other._gid = self._t.copy(), self._gid.copy()
            other._written, other.overwritten, other.late_dropped = self._written, self.overwritten, self.late_dropped
        other._lock = threading.Lock()
        return other

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

    def count(self, t_start_us: int, t_end_us: int) -> int:
        """Number of events with ``t_start_us <= t < t_end_us`` (binary search, no copy)."""
        n = 0
        with self._lock:
            for t, _ in self._segments():
                a, b = np.searchsorted(t, [t_start_us, t_end_us])
                n += int(max(0, b - a))
        return n

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


class BinnedCounts:
    """Spike counts per (time bin, neuron), binned as events arrive, in a rolling uint16 buffer.

    This is what makes the raster's density view cheap at high event rates: the acquisition
    thread adds each batch's counts into the columns it covers (one ``bincount`` per batch), so
    a frame only slices the columns of its window and uploads them as an image; its cost depends
    on the window and the number of rows, never on the event rate.

    Parameters
    ----------
    bin_us : width of one time bin (one image column), µs
    n_columns : bins kept; history = ``bin_us * n_columns`` (default 2 ms x 2048 ≈ 4.1 s, 21 MB
        for all 4096 neurons and 1024 input channels, about what the default event ring holds at
        1 M events/s)

    Counts saturate at 65535 per bin and neuron (a neuron cannot fire that often in a bin).
    Events older than the history, and late events for columns already reused, are dropped and
    counted in :attr:`too_old`.
    """

    def __init__(self, bin_us: int = 2000, n_columns: int = 2048, n_neurons: int = N_MONITOR_IDS,
                 coarser: BinnedCounts | None = None) -> None:
        if bin_us < 1 or n_columns < 2:
            raise ValueError(f"need bin_us >= 1 and n_columns >= 2, got {bin_us} and {n_columns}")
        self.bin_us = int(bin_us)
        self.n_columns = int(n_columns)
        self.n_neurons = int(n_neurons)
        self._counts = np.zeros((self.n_columns, self.n_neurons), np.uint16)
        self._newest: int | None = None  # absolute column index of the newest bin written
        self._lock = threading.Lock()
        self.too_old = 0
        #: the next level of a pyramid (wider bins, longer history), fed with every batch pushed here
        self.coarser = coarser

    @classmethod
    def pyramid(cls, bin_us: int = 2000, n_columns: int = 2048, n_neurons: int = N_MONITOR_IDS,
                levels: int = COUNT_LEVELS, factor: int = COUNT_LEVEL_FACTOR) -> BinnedCounts:
        """Levels of counts, each with ``factor`` times wider bins and half the columns of the one
        before (so twice its history at half its memory): a long window is drawn from a coarse
        level, a short one from a fine level, and neither reads more than about ``n_columns`` bins.
        Returns the finest level; ``coarser`` links the next."""
        level = None
        for k in reversed(range(levels)):
            level = cls(bin_us * factor**k, max(2, n_columns >> k), n_neurons, coarser=level)
        assert level is not None
        return level

    def levels(self) -> list[BinnedCounts]:
        """This level and the coarser ones, finest first."""
        out, level = [], self
        while level is not None:
            out.append(level)
            level = level.coarser
        return out

    @property
    def history_us(self) -> int:
        """Time the bins of this level span."""
        return self.bin_us * self.n_columns

    def clear(self) -> None:
        with self._lock:
            self._counts[:] = 0
            self._newest = None
        if self.coarser is not None:
            self.coarser.clear()

    def copy(self) -> BinnedCounts:
        """A frozen copy (of the coarser levels too)."""
        other = object.__new__(BinnedCounts)
        with self._lock:
            other.bin_us, other.n_columns, other.n_neurons = self.bin_us, self.n_columns, self.n_neurons
            other._counts, other._newest, other.too_old = self._counts.copy(), self._newest, self.too_old
        other._lock = threading.Lock()
        other.coarser = None if self.coarser is None else self.coarser.copy()
        return other

    @property
    def newest_column(self) -> int | None:
        return self._newest

    @property
    def oldest_us(self) -> int | None:
        """Start of the oldest bin this level still holds (None before the first event)."""
        newest = self._newest
        return None if newest is None else (newest - self.n_columns + 1) * self.bin_us

    def push(self, timestamp_us: np.ndarray, global_id: np.ndarray) -> None:
        """Add one batch, in any time order.

        Work and memory are bounded by the history (``n_columns``), whatever the timestamps:
        events older than the history are dropped and counted in :attr:`too_old`; a batch lying
        wholly more than :data:`TIMESTAMP_RESET_JUMP_US` before the newest bin restarts the counts
        (the board's timestamps were reset); neuron ids outside ``0..n_neurons-1`` are ignored.
        """
        if self.coarser is not None:
            self.coarser.push(timestamp_us, global_id)
        cols = np.asarray(timestamp_us, np.int64).ravel() // self.bin_us
        gid = np.asarray(global_id, np.int64).ravel()
        if len(cols) == 0:
            return
        if len(gid) != len(cols):
            raise ValueError("timestamp and neuron columns differ in length")
        valid = (gid >= 0) & (gid < self.n_neurons)
        if not valid.all():
            cols, gid = cols[valid], gid[valid]
            if len(cols) == 0:
                return
        with self._lock:
            first, last = int(cols.min()), int(cols.max())
            if self._newest is not None and last < self._newest - TIMESTAMP_RESET_JUMP_US // self.bin_us:
                self._counts[:] = 0  # the board's timestamps were reset
                self._newest = None
            newest = self._newest
            if newest is None or last > newest:
                # columns (newest, last] are reused for new bins: zero them first
                start = last - self.n_columns + 1 if newest is None else max(newest + 1, last - self.n_columns + 1)
                reused = np.arange(start, last + 1) % self.n_columns
                self._counts[reused] = 0
                self._newest = newest = last
            oldest = newest - self.n_columns + 1
            if first < oldest:
                keep = cols >= oldest
                self.too_old += int((~keep).sum())
                cols, gid = cols[keep], gid[keep]
                if len(cols) == 0:
                    return
                first = int(cols.min())
            span = last - first + 1  # at most n_columns
            counts = np.bincount((cols - first) * self.n_neurons + gid, minlength=span * self.n_neurons)
            counts = counts.reshape(span, self.n_neurons)
            rows = np.arange(first, last + 1) % self.n_columns
            self._counts[rows] = np.minimum(self._counts[rows] + counts, 65535).astype(np.uint16)

    def window(self, neurons: np.ndarray, t_start_us: int, t_end_us: int) -> tuple[np.ndarray, int, int]:
        """Counts of ``neurons`` in the bins overlapping ``[t_start_us, t_end_us)``.

        Returns ``(counts, t0_us, t1_us)``: ``counts`` is (len(neurons), n_bins) uint16 (row =
        neuron, column = time), ``[t0_us, t1_us)`` the span the bins cover.  Bins outside the
        history are zero; a window longer than the history is cut to its newest ``n_columns`` bins
        (so its size never depends on the times asked for).
        """
        c1 = (int(t_end_us) - 1) // self.bin_us
        c0 = min(c1, max(int(t_start_us) // self.bin_us, c1 - self.n_columns + 1))
        neurons = np.asarray(neurons, np.int64)
        contiguous = len(neurons) > 0 and neurons[-1] - neurons[0] + 1 == len(neurons) and bool(np.all(np.diff(neurons) == 1))
        cols = slice(neurons[0], neurons[-1] + 1) if contiguous else neurons
        out = np.zeros((c1 - c0 + 1, len(neurons)), np.uint16)
        with self._lock:
            if self._newest is not None:
                lo, hi = max(c0, self._newest - self.n_columns + 1), min(c1, self._newest)
                if hi >= lo:
                    a, b = lo % self.n_columns, hi % self.n_columns
                    if a <= b:
                        out[lo - c0 : hi - c0 + 1] = self._counts[a : b + 1, cols]
                    else:  # the window wraps around the end of the buffer
                        n_tail = self.n_columns - a
                        out[lo - c0 : lo - c0 + n_tail] = self._counts[a:, cols]
                        out[lo - c0 + n_tail : hi - c0 + 1] = self._counts[: b + 1, cols]
        return out.T, c0 * self.bin_us, (c1 + 1) * self.bin_us


@dataclass(frozen=True)
class NeuronSelection:
    """Which board-wide neurons (and input channels, ids from :data:`INPUT_ID_BASE`) a view shows,
    in display order (row 0 first).

    ``row_labels`` names each row where its id alone would not (input channels); ``blocks`` are
    named consecutive row ranges ``(name, start, stop)``, e.g. a network's layers.
    """

    neurons: np.ndarray  # int64 monitor ids
    label: str = ""
    row_labels: tuple[str, ...] = ()
    blocks: tuple[tuple[str, int, int], ...] = ()

    def row_label(self, row: int) -> str:
        """What row ``row`` is called: its label, else its board-wide neuron id."""
        return self.row_labels[row] if self.row_labels else str(int(self.neurons[row]))

    def is_neuron(self, row: int) -> bool:
        """Whether row ``row`` is a chip neuron (not an input channel)."""
        return int(self.neurons[row]) < INPUT_ID_BASE

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
        """Array mapping monitor id -> display row (-1 for ids not shown)."""
        rows = np.full(N_MONITOR_IDS, -1, np.int64)
        rows[self.neurons] = np.arange(len(self.neurons))
        return rows


def rates_hz(global_id: np.ndarray, span_s: float, n_neurons: int = N_NEURONS) -> np.ndarray:
    """Firing rate per board-wide neuron from the events of a window lasting ``span_s`` seconds."""
    if span_s <= 0:
        raise ValueError(f"rate window must be positive, got {span_s} s")
    return np.bincount(global_id.astype(np.int64), minlength=n_neurons)[:n_neurons] / span_s


class BoardClock:
    """The board's time now, as the live views need it, from the timestamps that arrive.

    A board that stops firing sends no timestamps, but its time goes on: a view anchored to
    the newest event would keep showing the last spikes and their rates.  This clock is the
    newest timestamp seen, advanced by the wall-clock time since it arrived (the board's clock
    runs in real time; an emulator on its real-time clock too).  Every new batch re-anchors it,
    so it never drifts from the stream while events flow.  :meth:`stop` freezes it (board
    closed or lost); a batch from long before the anchor (a timestamp reset) re-anchors it.
    """

    def __init__(self, wall_clock=time.monotonic) -> None:
        self._wall = wall_clock
        self._lock = threading.Lock()
        self._anchor: tuple[int, float] | None = None  # (board µs, wall s)
        self._frozen_us: int | None = None

    def observe(self, newest_us: int) -> None:
        """A batch whose newest event is at ``newest_us`` arrived now."""
        with self._lock:
            anchor = self._anchor
            late = anchor is not None and newest_us < anchor[0]
            if late and newest_us >= anchor[0] - TIMESTAMP_RESET_JUMP_US:
                return  # a late batch: the clock has already passed it
            self._anchor = (int(newest_us), self._wall())
            self._frozen_us = None

    def now_us(self) -> int | None:
        """The board's time now (µs), or None before the first event."""
        with self._lock:
            if self._frozen_us is not None:
                return self._frozen_us
            if self._anchor is None:
                return None
            board_us, wall = self._anchor
            return board_us + int((self._wall() - wall) * 1e6)

    def stop(self) -> None:
        """Freeze the clock at the current time (the board is gone: its time no longer advances)."""
        now = self.now_us()
        with self._lock:
            self._frozen_us = now

    def reset(self) -> None:
        with self._lock:
            self._anchor = None
            self._frozen_us = None


class SpikeMonitor:
    """The live event stream: a ring buffer, binned counts, the board's clock and rate statistics.

    Feed it with :meth:`on_events` (from any thread; batches in any time order).  It emits
    nothing per batch: views poll :meth:`window` on their own timers, which decouples rendering
    from acquisition.  :meth:`snapshot` freezes a copy for a paused view.
    """

    def __init__(self, capacity: int = 4_000_000, bin_us: int = 2000, n_columns: int = 2048) -> None:
        self.ring = EventRing(capacity)
        self.binned = BinnedCounts.pyramid(bin_us, n_columns)
        self.clock = BoardClock()
        self.total_events = 0
        self._rate_lock = threading.Lock()
        self._rate_mark = (time.monotonic(), 0)
        self._event_rate = 0.0
        #: Events dropped because their chip, core or neuron lies outside the board (see :meth:`on_events`).
        self.invalid_events = 0
        #: ``cleared()`` when the buffer was emptied (new board, timestamp reset).
        self.cleared = Signal("spike monitor cleared")
        #: ``invalid_events_found(text)`` once per source (see :meth:`reset_invalid_count`): the
        #: first batch with events outside the board arrived; ``text`` says what was dropped.
        self.invalid_events_found = Signal("invalid events found")

    def on_events(self, events: SpikeEvents) -> None:
        """Take one batch (any thread).

        Events whose chip, core or neuron lies outside the board (a corrupt recording, a driver
        bug) are dropped and counted in :attr:`invalid_events`, like the corrupt USB words the
        decoder skips: their global ids would alias other neurons or index past every per-neuron
        table of the views.  The first such batch of a source emits :attr:`invalid_events_found`
        (once, not per batch: a corrupt stream must not become a storm of messages).
        """
        if not len(events):
            return
        valid = (events.chip < N_CHIPS) & (events.core < N_CORES_PER_CHIP) & (events.neuron < N_NEURONS_PER_CORE)
        if not valid.all():
            events = self._drop_invalid(events, valid)
            if not len(events):
                return
        gid = events.global_id
        self.ring.push(events.timestamp_us, gid.astype(np.uint16))
        self.binned.push(events.timestamp_us, gid)
        self.clock.observe(int(events.timestamp_us.max()))
        self.total_events += len(events)

    def _drop_invalid(self, events: SpikeEvents, valid: np.ndarray) -> SpikeEvents:
        """Count the events outside the board, announce the first of a source, return the others."""
        bad = np.flatnonzero(~valid)
        first = self.invalid_events == 0
        self.invalid_events += len(bad)
        if first:
            i = int(bad[0])
            self.invalid_events_found.emit(
                f"dropped {len(bad):,} of {len(events):,} events whose ids lie outside the board "
                f"(chip 0..{N_CHIPS - 1}, core 0..{N_CORES_PER_CHIP - 1}, neuron 0..{N_NEURONS_PER_CORE - 1}), "
                f"first: chip {int(events.chip[i])}, core {int(events.core[i])}, neuron {int(events.neuron[i])}; "
                "any further ones are dropped and counted too"
            )
        return events.select(valid)

    def reset_invalid_count(self) -> None:
        """A new source (a board connected, a recording opened): count its invalid events afresh."""
        self.invalid_events = 0

    def on_inputs(self, timestamp_us: np.ndarray, channel: np.ndarray) -> None:
        """The input spikes a host played into the board (board time µs, channel index), as ids
        ``INPUT_ID_BASE + channel``; channels beyond :data:`N_INPUT_IDS` are not kept."""
        t = np.asarray(timestamp_us, np.int64).ravel()
        ch = np.asarray(channel, np.int64).ravel()
        keep = (ch >= 0) & (ch < N_INPUT_IDS)
        t, ids = t[keep], ch[keep] + INPUT_ID_BASE
        if not len(t):
            return
        self.ring.push(t, ids.astype(np.uint16))
        self.binned.push(t, ids)
        self.clock.observe(int(t.max()))

    def clear(self) -> None:
        self.ring.clear()
        self.binned.clear()
        self.clock.reset()
        self.cleared.emit()

    def now_us(self) -> int | None:
        """The board's time now (see :class:`BoardClock`), or None before the first event."""
        return self.clock.now_us()

    def snapshot(self, at_us: int | None = None) -> SpikeMonitor:
        """A frozen copy of the buffers, its clock stopped at ``at_us`` (default: the board's time now).

        Copying the default buffers (61 MB) takes ~0.1 s; numpy releases the GIL while it copies,
        so a GUI takes it on a worker thread.  Event pushes wait for the copy.
        """
        frozen = object.__new__(SpikeMonitor)
        now = self.clock.now_us() if at_us is None else int(at_us)
        frozen.ring, frozen.binned = self.ring.copy(), self.binned.copy()
        frozen.clock = BoardClock()
        if now is not None:
            frozen.clock.observe(now)
            frozen.clock.stop()
        frozen.total_events = self.total_events
        frozen._rate_lock = threading.Lock()
        frozen._rate_mark = (time.monotonic(), frozen.total_events)
        frozen._event_rate = 0.0
        frozen.cleared = Signal("spike monitor cleared")
        frozen.invalid_events = self.invalid_events
        frozen.invalid_events_found = Signal("invalid events found")
        return frozen

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
        """Rate per board-wide neuron over the ``span_s`` seconds of board time before ``end_us``
        (default: the newest event)."""
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
        self._generation: dict[tuple[int, int], int] = {}  # bumped by select(): polls in flight are dropped
        self._unrouted: set[tuple[int, int]] = set()  # selections not yet written to the board
        self._lock = threading.Lock()
        #: ``selection_changed(chip, core, neuron)``.
        self.selection_changed = Signal("membrane selection changed")
        #: ``samples(chip, core, neuron, t_us, volts)`` for every fetch (the recorder listens).
        self.samples = Signal("membrane samples")

    def attach(self, board) -> None:
        with self._lock:
            self._board = board
            self._t.clear()
            self._v.clear()
            self._unrouted = set(self.selected)
        self._route()

    def detach(self) -> None:
        with self._lock:
            self._board = None

    def clear(self) -> None:
        """Forget the traces collected so far (a replay that jumped)."""
        with self._lock:
            self._t.clear()
            self._v.clear()

    def select(self, chip: int, core: int, neuron: int, route_now: bool = True) -> None:
        """Route ``neuron`` of (chip, core) to the analog monitor (one neuron per core).

        ``route_now=False`` leaves the write to the board to the next :meth:`poll` (the GUI's
        polling thread): a busy board, or an emulator child still starting, must not hold up the
        caller.  Either way the trace starts afresh.
        """
        chip, core, neuron = check_chip(chip), check_core(core), check_neuron(neuron)
        with self._lock:
            self.selected[(chip, core)] = neuron
            self._t.pop((chip, core), None)
            self._v.pop((chip, core), None)
            self._generation[(chip, core)] = self._generation.get((chip, core), 0) + 1
            self._unrouted.add((chip, core))
        if route_now:
            self._route()
        self.selection_changed.emit(chip, core, neuron)

    def _route(self) -> None:
        """Write the selections not yet on the board to it."""
        board = self._board
        if board is None:
            return  # attach() routes every selection
        with self._lock:
            pending = {key: self.selected[key] for key in self._unrouted}
            self._unrouted.clear()
        for (chip, core), neuron in pending.items():
            board.monitor_neuron(chip, core, neuron)

    @property
    def available(self) -> bool:
        """Whether the board can read membranes back (the emulator can, silicon cannot)."""
        board = self._board
        return board is not None and bool(getattr(board, "has_membrane_readback", getattr(board, "is_emulated", False)))

    def poll(self) -> None:
        """Route pending selections, then fetch new samples of every selected core from the board."""
        board = self._board
        if board is None:
            return
        self._route()
        for chip, core in list(self.selected):
            generation = self._generation.get((chip, core), 0)
            got = board.read_membrane(chip, core)
            if got is None:
                continue
            t, v = np.asarray(got[0], np.float64), np.asarray(got[1], np.float64)
            if len(t):
                self.samples.emit(chip, core, self.selected.get((chip, core), 0), t, v)
            with self._lock:
                if self._generation.get((chip, core), 0) != generation:
                    continue  # another neuron was selected while these samples were read: not its trace
                old_t = self._t.get((chip, core), np.zeros(0))
                old_v = self._v.get((chip, core), np.zeros(0))
                self._t[(chip, core)] = np.concatenate([old_t, t])[-self.capacity :]
                self._v[(chip, core)] = np.concatenate([old_v, v])[-self.capacity :]

    def trace(self, chip: int, core: int, span_us: float | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(t_us, volts) collected so far for (chip, core); with ``span_us``, only the samples of
        that long before the newest (what a plot window shows: no copy of the whole history)."""
        with self._lock:
            t, v = self._t.get((chip, core), np.zeros(0)), self._v.get((chip, core), np.zeros(0))
            start = int(np.searchsorted(t, t[-1] - span_us)) if span_us is not None and len(t) else 0
            return t[start:].copy(), v[start:].copy()


@dataclass
class RasterFrame:
    """What the raster draws for one frame (computed off the Qt side so it can be benchmarked and tested).

    ``mode`` is ``"ticks"`` (one vertical tick per spike, grouped per core for colouring; x/y in
    ``connect='pairs'`` layout) or ``"density"`` (a rows × bins count image, used when the window
    holds more spikes than ``max_ticks``; taken from the pre-binned counts, so its cost does not
    depend on the event rate, and bounded in size whatever the window and the selection).
    ``density_t0_s``/``density_t1_s`` are the span the image's bins cover (bin edges, so slightly
    wider than the window).  Every event of those bins is counted in exactly one pixel.
    """

    mode: str
    t0_s: float
    t1_s: float
    n_rows: int
    ticks: dict[int, tuple[np.ndarray, np.ndarray]]  # core index (chip*4+core) -> (x pairs, y pairs)
    density: np.ndarray | None  # (n_rows, n_bins) counts
    row_core: np.ndarray  # core index of every row (INPUT_ROW_COLOUR for an input channel)
    rates_hz: np.ndarray  # per row
    n_events: int
    density_t0_s: float = 0.0
    density_t1_s: float = 0.0
    #: selection rows summed into one row of ``density`` (rows of one core only), and its bin width
    rows_per_pixel: int = 1
    bin_s: float = 0.0
    #: core index of every row of ``density`` (``row_core`` when ``rows_per_pixel`` is 1)
    density_row_core: np.ndarray | None = None


class RasterBuilder:
    """Turn a window of a :class:`SpikeMonitor` into a :class:`RasterFrame` for a neuron selection.

    Parameters
    ----------
    selection : the neurons shown, row 0 first
    max_ticks : most spikes drawn as ticks; above this the frame is a density image
    n_bins : time bins of a density image built from events (:meth:`build`); frames from a
        monitor (:meth:`frame`) use the monitor's own bins instead
    scan_factor : :meth:`frame` copies a window out of the event ring only when the ring holds
        at most ``scan_factor * max_ticks`` events in it (the selection may be a small part of
        them); beyond that it goes straight to the binned counts, so a frame never touches a
        number of events that grows with the event rate.
    max_columns, max_rows : bounds of a density image from a monitor.  The columns are the bins
        of the finest level of the monitor's counts that covers the window in at most
        ``max_columns`` bins; above ``max_rows`` rows, runs of 2, 4, ... rows of one core are summed
        into one image row (a screen has fewer pixel rows than that anyway).  So the image, and
        the work of a frame, stay bounded whatever the window and the selection.
    """

    def __init__(self, selection: NeuronSelection, max_ticks: int = 50_000, n_bins: int = 500, scan_factor: int = 2,
                 max_columns: int = 1024, max_rows: int = 1024) -> None:
        self.max_ticks = int(max_ticks)
        self.n_bins = int(n_bins)
        self.scan_factor = int(scan_factor)
        self.max_columns = int(max_columns)
        self.max_rows = int(max_rows)
        self.set_selection(selection)

    def set_selection(self, selection: NeuronSelection) -> None:
        self.selection = selection
        self._rows = selection.row_lookup()
        neurons = selection.neurons.astype(np.int64)
        self.row_core = np.where(neurons < INPUT_ID_BASE, neurons // N_NEURONS_PER_CORE, INPUT_ROW_COLOUR)
        self.rows_per_pixel = self._row_group(self.row_core)

    def _row_group(self, row_core: np.ndarray) -> int:
        """Rows summed into one density-image row: the least power of two that brings the rows
        within ``max_rows``, provided every such group lies in one core (one colour); else 1."""
        group = 1
        while -(-len(row_core) // group) > self.max_rows:
            group *= 2
        if group > 1:
            padded = np.concatenate([row_core, np.full(-len(row_core) % group, -1)]).reshape(-1, group)
            same = (padded == padded[:, :1]) | (padded == -1)
            if not same.all():
                return 1
        return group

    def frame(self, monitor: SpikeMonitor, span_s: float, end_us: int | None = None) -> RasterFrame | None:
        """The frame for the ``span_s`` seconds before ``end_us`` (default: the newest event); None when empty."""
        if end_us is None:
            latest = monitor.ring.latest_us
            if latest is None:
                return None
            end_us = latest + 1
        span_us = max(1, int(span_s * 1e6))
        start_us = end_us - span_us
        if monitor.ring.count(start_us, end_us) <= self.scan_factor * self.max_ticks:
            t, g = monitor.ring.window(start_us, end_us)
            if int((self._rows[g] >= 0).sum()) <= self.max_ticks:
                return self.build(t, g, end_us, span_s)
        level = self._level(monitor.binned, span_us)
        counted_from, ring_from = level.oldest_us, monitor.ring.oldest_us
        if counted_from is not None and ring_from is not None and start_us < counted_from and ring_from < counted_from:
            # the window reaches back past the counts' history (a paused raster scrolled far back)
            # and the ring still holds those spikes: bin them here rather than draw empty bins.
            # Bounded by the ring's capacity (4 M events: ~0.1 s), not by the window.
            t, g = monitor.ring.window(start_us, end_us)
            return self.build(t, g, end_us, span_s)
        counts, c0_us, c1_us = level.window(self.selection.neurons, start_us, end_us)
        per_row = counts.sum(axis=1, dtype=np.int64)
        rates = per_row / ((c1_us - c0_us) / 1e6)
        n_rows, group = len(self.selection.neurons), self.rows_per_pixel
        density: np.ndarray = counts
        density_core = self.row_core
        if group > 1:
            pad = -n_rows % group
            if pad:
                counts = np.concatenate([counts, np.zeros((pad, counts.shape[1]), counts.dtype)])
            density = counts.reshape(-1, group, counts.shape[1]).sum(axis=1, dtype=np.uint32)
            density_core = self.row_core[::group]
        return RasterFrame("density", start_us / 1e6, end_us / 1e6, n_rows, {}, density,
                           self.row_core, rates, int(per_row.sum()), c0_us / 1e6, c1_us / 1e6,
                           rows_per_pixel=group, bin_s=level.bin_us / 1e6, density_row_core=density_core)

    def _level(self, binned: BinnedCounts, span_us: int) -> BinnedCounts:
        """The finest level of counts that covers ``span_us`` in at most ``max_columns`` bins; else
        the finest that covers it at all; else (a window longer than every history) the coarsest."""
        levels = binned.levels()
        covering = [b for b in levels if b.history_us >= span_us + b.bin_us]  # + the partly covered first bin
        fitting = [b for b in covering if span_us // b.bin_us + 1 <= self.max_columns]
        return (fitting or covering or levels[-1:])[0]

    def build(self, t_us: np.ndarray, gid: np.ndarray, t_end_us: int, span_s: float) -> RasterFrame:
        """The frame of explicit events (ticks, or a density binned here when there are too many)."""
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
        density = np.minimum(flat, 65535).astype(np.uint16).reshape(n_rows, self.n_bins)
        return RasterFrame("density", t0, t1, n_rows, {}, density, self.row_core, rates, len(rows), t0, t1,
                           bin_s=span_s / self.n_bins)
