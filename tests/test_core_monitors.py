"""Ring buffer, neuron selection and raster frames."""

import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.monitors import BinnedCounts, EventRing, NeuronSelection, RasterBuilder, SpikeMonitor


def test_ring_wraps_and_windows_in_time_order():
    ring = EventRing(capacity=10)
    ring.push(np.arange(7), np.arange(7))
    ring.push(np.arange(7, 15), np.arange(7, 15))
    assert len(ring) == 10 and ring.overwritten == 5
    t, g = ring.window(0, 100)
    assert list(t) == list(range(5, 15)) and list(g) == list(range(5, 15))
    t, _ = ring.window(8, 12)
    assert list(t) == [8, 9, 10, 11]
    assert ring.oldest_us == 5 and ring.latest_us == 14


def test_ring_keeps_only_newest_of_an_oversized_batch():
    ring = EventRing(capacity=4)
    ring.push(np.arange(10), np.arange(10))
    assert list(ring.window(0, 100)[0]) == [6, 7, 8, 9]


def test_timestamp_reset_clears_the_ring():
    ring = EventRing(capacity=100)
    ring.push(np.array([5_000_000]), np.array([1]))
    ring.push(np.array([10]), np.array([2]))
    assert list(ring.window(0, 10**9)[0]) == [10]


def test_spike_monitor_rates():
    mon = SpikeMonitor(capacity=1000)
    ev = SpikeEvents(np.arange(0, 1_000_000, 10_000), np.zeros(100), np.ones(100), np.full(100, 3))
    mon.on_events(ev)
    rates = mon.rates(span_s=1.0)
    assert rates[256 + 3] == pytest.approx(100.0)
    assert rates.sum() == pytest.approx(100.0)


def test_raster_ticks_then_density_above_cap():
    sel = NeuronSelection.core_range(0, 1, 0, 4)
    builder = RasterBuilder(sel, max_ticks=5, n_bins=10)
    t = np.array([100, 200, 300])
    g = np.array([256, 259, 5])  # the last is not selected
    frame = builder.build(t, g, 1000, 0.001)
    assert frame.mode == "ticks" and frame.n_events == 2
    x, y = frame.ticks[1]
    assert list(y) == [-0.4, 0.4, 2.6, 3.4]
    t = np.arange(0, 1000, 10)
    g = np.full(100, 257)
    frame = builder.build(t, g, 1000, 0.001)
    assert frame.mode == "density" and frame.density.shape == (4, 10)
    assert frame.density[1].sum() == 100 and frame.rates_hz[1] == pytest.approx(100_000)


def test_selection_rejects_out_of_range():
    with pytest.raises(ValueError):
        NeuronSelection.core_range(0, 0, 10, 300)
    with pytest.raises(ValueError):
        NeuronSelection.from_ids([4096])


def test_binned_counts_match_the_events_and_roll_over():
    binned = BinnedCounts(bin_us=1000, n_columns=4, n_neurons=8)
    t = np.array([0, 10, 999, 1000, 2500, 3999])
    g = np.array([1, 1, 2, 1, 7, 0])
    binned.push(t, g)
    counts, t0, t1 = binned.window(np.arange(8), 0, 4000)
    assert (t0, t1) == (0, 4000) and counts.shape == (8, 4)
    assert counts[1].tolist() == [2, 1, 0, 0] and counts[2, 0] == 1 and counts[7, 2] == 1 and counts[0, 3] == 1
    # two more bins: the two oldest columns are reused (zeroed), a late event for them is dropped
    binned.push(np.array([5000, 5001]), np.array([3, 3]))
    binned.push(np.array([500]), np.array([4]))
    assert binned.too_old == 1
    counts, t0, _ = binned.window(np.array([1, 3, 7]), 2000, 6000)  # wraps around the buffer end
    assert t0 == 2000 and counts.tolist() == [[0, 0, 0, 0], [0, 0, 0, 2], [1, 0, 0, 0]]
    counts, _, _ = binned.window(np.array([1]), 0, 2000)  # beyond the history: zeros, not stale counts
    assert counts.sum() == 0


def test_binned_counts_restart_after_a_timestamp_reset():
    binned = BinnedCounts(bin_us=1000, n_columns=8, n_neurons=4)
    binned.push(np.array([5_000_000]), np.array([1]))
    binned.push(np.array([10]), np.array([2]))
    counts, _, _ = binned.window(np.arange(4), 0, 8000)
    assert counts.sum() == 1 and counts[2, 0] == 1


def test_monitor_frame_uses_ticks_when_few_and_prebinned_counts_when_many():
    monitor = SpikeMonitor(capacity=100_000, bin_us=1000, n_columns=100)
    sel = NeuronSelection.core_range(0, 1, 0, 4)
    builder = RasterBuilder(sel, max_ticks=10, scan_factor=2)
    monitor.on_events(SpikeEvents(np.array([100, 200]), np.zeros(2), np.ones(2), np.array([0, 3])))
    frame = builder.frame(monitor, span_s=0.01)
    assert frame.mode == "ticks" and frame.n_events == 2
    n = 1000
    t = 1000 + np.arange(n) * 5  # 5 ms of events every 5 µs, all on neuron 257 (row 1)
    monitor.on_events(SpikeEvents(t, np.zeros(n), np.ones(n), np.ones(n)))
    frame = builder.frame(monitor, span_s=0.01)
    assert frame.mode == "density" and frame.density.shape[0] == 4
    assert frame.density[1].sum() == n and frame.density[[0, 2, 3]].sum() == 2  # the two early spikes
    assert frame.rates_hz[1] == pytest.approx(n / (frame.density_t1_s - frame.density_t0_s))
    assert builder.frame(SpikeMonitor(capacity=10), span_s=1.0) is None  # nothing arrived yet


def test_events_outside_the_board_are_dropped_counted_and_announced_once():
    """Hostile report #13: a corrupt source (chip 44, neuron 60000) made every raster frame raise
    IndexError (and neuron 60000 aliases another chip's neuron); the monitor drops them instead."""
    monitor = SpikeMonitor(capacity=1000)
    said: list[str] = []
    monitor.invalid_events_found.connect(said.append)
    good = SpikeEvents(np.arange(4), [0, 3, 1, 2], [0, 3, 2, 1], [0, 255, 7, 9])
    bad = SpikeEvents(np.arange(4, 10), [44, 0, 0, 4, 1, 0], [0, 4, 0, 0, 1, 0], [0, 0, 60000, 0, 1, 256])
    for _ in range(3):  # three batches: one announcement, every event counted
        monitor.on_events(good)
        monitor.on_events(bad)
    assert monitor.invalid_events == 3 * 5
    assert len(said) == 1 and "dropped 5 of 6 events" in said[0] and "chip 44, core 0, neuron 0" in said[0]
    t, g = monitor.ring.window(0, 100)
    assert set(g.tolist()) == {0, 3071 + 1024, 1024 + 512 + 7, 2048 + 256 + 9, 1024 + 256 + 1}
    frame = RasterBuilder(NeuronSelection.all()).frame(monitor, 1.0)  # raised IndexError before
    assert frame.n_events == 3 * 5
    monitor.on_events(SpikeEvents([20], [9], [0], [0]))  # a batch of only invalid events
    assert monitor.invalid_events == 16 and len(said) == 1
    monitor.reset_invalid_count()  # a new source: counted afresh, announced again
    monitor.on_events(SpikeEvents([21], [9], [0], [0]))
    assert monitor.invalid_events == 1 and len(said) == 2
