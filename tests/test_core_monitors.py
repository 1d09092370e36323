"""Ring buffer, neuron selection and raster frames."""

import numpy as np
import pytest

from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.monitors import EventRing, NeuronSelection, RasterBuilder, SpikeMonitor


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
