"""Monitors take event batches in any time order (issue 14 item 4), property-based.

Decoded batches can reach the monitors out of order (a measurement's ``feed`` racing the
acquisition thread, a replay, a hostile stream).  Whatever the order, a push never raises,
never allocates more than the buffers it already holds, and the ring stays sorted by time so
every window is exactly the events pushed into it.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS
from neurolab_gui.core.monitors import (
    TIMESTAMP_RESET_JUMP_US,
    BinnedCounts,
    BoardClock,
    EventRing,
    NeuronSelection,
    RasterBuilder,
    SpikeMonitor,
)

timestamps = st.integers(min_value=0, max_value=3 * TIMESTAMP_RESET_JUMP_US)
batch = st.lists(st.tuples(timestamps, st.integers(0, N_NEURONS - 1)), min_size=0, max_size=40)
wild_batch = st.lists(st.tuples(st.integers(-(2**62), 2**62), st.integers(0, N_NEURONS - 1)), min_size=1, max_size=20)


def columns(pairs):
    t = np.array([p[0] for p in pairs], np.int64)
    g = np.array([p[1] for p in pairs], np.int64)
    return t, g


def ring_contents(ring: EventRing) -> tuple[np.ndarray, np.ndarray]:
    return ring.window(-(2**63), 2**63 - 1)


@settings(max_examples=150, deadline=None)
@given(st.lists(batch, min_size=1, max_size=12), st.integers(8, 64))
def test_ring_stays_sorted_and_holds_what_was_pushed(batches, capacity):
    ring = EventRing(capacity)
    reference: list[tuple[int, int]] = []  # what an ideal sorted ring of this epoch holds
    for pairs in batches:
        t, g = columns(pairs)
        before_late = ring.late_dropped
        ring.push(t, g)
        if not len(t):
            continue
        if reference and t.max() < max(r[0] for r in reference) - TIMESTAMP_RESET_JUMP_US:
            reference = []  # a reset
        reference.extend(zip(t.tolist(), g.tolist(), strict=True))
        got_t, got_g = ring_contents(ring)
        assert np.all(np.diff(got_t) >= 0)  # always in time order
        assert len(got_t) == len(ring) <= capacity
        # every event held was pushed, and the newest pushed events are held unless dropped as late
        pushed = {(a, b) for a, b in reference}
        assert set(zip(got_t.tolist(), got_g.tolist(), strict=True)) <= pushed
        if ring.late_dropped == before_late:
            newest = sorted(reference, key=lambda r: r[0])[-1][0]
            assert got_t[-1] == newest
    assert ring.overwritten >= 0 and ring.late_dropped >= 0


@settings(max_examples=150, deadline=None)
@given(st.lists(batch, min_size=1, max_size=12))
def test_binned_counts_accept_any_order_and_count_each_event_once(batches):
    binned = BinnedCounts(bin_us=1000, n_columns=16, n_neurons=N_NEURONS)
    for pairs in batches:
        t, g = columns(pairs)
        before = binned.newest_column
        binned.push(t, g)
        if before is not None and len(t) and binned.newest_column is not None:
            assert binned.newest_column >= min(before, int(t.max()) // 1000)
    newest_us = (binned.newest_column or 0) * 1000 + 1000
    counts, _, _ = binned.window(np.arange(N_NEURONS), newest_us - 16_000, newest_us)
    assert counts.sum() <= sum(len(b) for b in batches)


@settings(max_examples=100, deadline=None)
@given(st.lists(wild_batch, min_size=1, max_size=6))
def test_wild_timestamps_never_raise_or_allocate_beyond_the_history(batches):
    monitor = SpikeMonitor(capacity=64, bin_us=1000, n_columns=32)
    held = monitor.binned._counts.nbytes
    for pairs in batches:
        t, g = columns(pairs)
        monitor.on_events(SpikeEvents(t, g // 1024, g // 256 % 4, g % 256))
    assert monitor.binned._counts.nbytes == held
    builder = RasterBuilder(NeuronSelection.all(), max_ticks=10)
    frame = builder.frame(monitor, 0.05)
    assert frame is not None and frame.rates_hz.shape == (N_NEURONS,)


def test_out_of_order_batches_of_the_trial_run_are_all_held_in_order():
    """3 000 batches, jittered so timestamps often go backwards (the trial saw 815 raise)."""
    rng = np.random.default_rng(1)
    monitor = SpikeMonitor(capacity=400_000, bin_us=2000, n_columns=2048)
    total = 0
    for i in range(3000):
        n = int(rng.integers(1, 60))
        t = i * 500 + rng.integers(-5000, 5000, n)  # batches overlap and reach back up to 5 ms
        g = rng.integers(0, N_NEURONS, n)
        monitor.on_events(SpikeEvents(t, g // 1024, g // 256 % 4, g % 256))
        total += n
    t, _, _ = monitor.window(10.0, end_us=2 * 10**6)
    assert len(t) == total and monitor.ring.late_dropped == 0
    assert np.all(np.diff(t) >= 0)
    assert monitor.binned.too_old == 0


def test_board_clock_runs_on_when_the_board_goes_quiet_and_stops_when_it_is_gone():
    wall = [100.0]
    clock = BoardClock(wall_clock=lambda: wall[0])
    assert clock.now_us() is None
    clock.observe(5_000_000)
    wall[0] += 2.0  # two quiet seconds
    assert clock.now_us() == 7_000_000
    clock.observe(4_900_000)  # a late batch does not move the clock back
    assert clock.now_us() == 7_000_000
    clock.stop()
    wall[0] += 5.0
    assert clock.now_us() == 7_000_000
    clock.observe(10)  # timestamps reset on the board
    assert clock.now_us() == 10


def test_snapshot_keeps_the_paused_moment_while_the_live_ring_moves_on():
    monitor = SpikeMonitor(capacity=100, bin_us=1000, n_columns=8)
    monitor.on_events(SpikeEvents(np.arange(50) * 100, np.zeros(50), np.zeros(50), np.arange(50)))
    frozen = monitor.snapshot()
    paused_at = frozen.now_us()
    for k in range(1, 20):  # the live ring is overwritten many times over
        monitor.on_events(SpikeEvents(10**6 * k + np.arange(100), np.zeros(100), np.zeros(100), np.zeros(100)))
    t, g, _ = frozen.window(1.0, end_us=paused_at)
    assert t.tolist() == (np.arange(50) * 100).tolist() and g.tolist() == list(range(50))
    assert frozen.now_us() == paused_at


def test_membrane_selection_can_leave_the_board_write_to_the_polling_thread():
    class Board:
        is_emulated = True

        def __init__(self):
            self.routed = []

        def monitor_neuron(self, chip, core, neuron):
            self.routed.append((chip, core, neuron))

        def read_membrane(self, chip, core):
            return np.array([1.0]), np.array([0.1])

    from neurolab_gui.core.monitors import MembraneMonitor

    monitor, board = MembraneMonitor(), Board()
    monitor.select(0, 1, 7, route_now=False)  # before a board: attach routes it
    monitor.attach(board)
    assert board.routed == [(0, 1, 7)]
    monitor.select(0, 1, 8, route_now=False)  # the caller is not held up by the board
    assert board.routed == [(0, 1, 7)]
    monitor.poll()
    assert board.routed[-1] == (0, 1, 8) and len(monitor.trace(0, 1)[0]) == 1
    monitor.select(2, 3, 4)  # a script: written at once
    assert board.routed[-1] == (2, 3, 4)


def test_membrane_trace_of_a_window_is_the_newest_samples_only():
    class Board:
        is_emulated = True

        def __init__(self):
            self.t0 = 0.0

        def monitor_neuron(self, chip, core, neuron):
            pass

        def read_membrane(self, chip, core):  # 1000 samples 1 ms apart per poll
            t = self.t0 + np.arange(1000) * 1000.0
            self.t0 = t[-1] + 1000.0
            return t, np.sin(t)

    from neurolab_gui.core.monitors import MembraneMonitor

    monitor = MembraneMonitor()
    monitor.select(0, 1, 7, route_now=False)
    monitor.attach(Board())
    for _ in range(5):
        monitor.poll()
    t_all, v_all = monitor.trace(0, 1)
    t, v = monitor.trace(0, 1, span_us=250_000)
    assert len(t_all) == 5000 and t[-1] == t_all[-1] and t[0] == t_all[-1] - 250_000 and len(t) == 251
    assert np.array_equal(v, v_all[-251:])
    assert len(monitor.trace(2, 3, span_us=1e6)[0]) == 0  # nothing collected there
