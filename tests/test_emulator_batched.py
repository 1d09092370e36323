"""The batched emulator: every board of a batch is bit for bit the single board with its serial."""

from __future__ import annotations

import numpy as np
import pytest

from emulator import engine
from emulator.batched import BatchedSimulator
from emulator.config import EmulatorConfig, MismatchConfig
from emulator.simulator import BoardSimulator
from tests.small_networks import wire_recurrent_chips

SERIALS = ("BATCH001", "BATCH002", "BATCH003")


def _configure(sim, dc=(5, 40)) -> None:
    """Recurrent networks on every chip, a route from chip 1 into chip 0, tau2 on a core, Poisson,
    spike-generator and host input: the same on a BoardSimulator or a BatchedSimulator."""
    wire_recurrent_chips(sim, dc)
    sim.write_sram(1, 5, 2, 0, 1, 1, 0, 0, 15)  # chip 1 neuron 5 also reaches chip 0
    sim.set_core_tau(2, 1, True)
    sim.set_poisson_rate(2, 7, 400.0)
    sim.set_poisson_running(True)
    sim.load_spike_generator([(3, 9, 15, 700.0)], repeat=True)
    sim.start_spike_generator()
    sim.inject_spike(0, 1, 2, 15)


def _same_events(a, b) -> bool:
    return (np.array_equal(a.timestamp_us, b.timestamp_us) and np.array_equal(a.chip, b.chip)
            and np.array_equal(a.core, b.core) and np.array_equal(a.neuron, b.neuron))


def _assert_batch_equals_single_boards(config: EmulatorConfig, serials, durations, threads: int, dc=(5, 40)):
    batch = BatchedSimulator(serials, config, threads=threads)
    _configure(batch, dc)
    singles = [BoardSimulator(s, config) for s in serials]
    for sim in singles:
        _configure(sim, dc)
    n_spikes = 0
    for duration in durations:
        host = batch.run(duration)
        assert len(host) == len(serials)
        for b, sim in enumerate(singles):
            expected = sim.run(duration)
            assert _same_events(host[b], expected), f"board {b} host events differ after {duration} s"
            assert _same_events(batch.last_spikes[b], sim.last_spikes)
            assert np.array_equal(batch.state_rows(b), engine.state_rows(sim.state.buffer))
            n_spikes += len(sim.last_spikes)
    assert batch.now_us == singles[0].now_us
    return batch, singles, n_spikes


@pytest.mark.parametrize("threads", [1, 2])
def test_each_board_of_a_batch_is_bit_identical_to_its_single_board(threads):
    # 2 kernel threads on the single boards: partitions [0, 1], [2, 3]; the batch runs all chips at once
    config = EmulatorConfig(kernel_threads=2)
    _, singles, n_spikes = _assert_batch_equals_single_boards(config, SERIALS, (0.1, 0.0015, 0.2), threads)
    assert n_spikes > 3000
    # the boards really differ: mismatch makes their spike trains different
    assert len({len(s.last_spikes) for s in singles}) == len(singles)


def test_a_batch_of_one_is_the_single_board_including_a_spike_buffer_restart():
    # a strong DC makes the first chunk outgrow the kernel's spike buffer, which restarts the kernel
    _, singles, n_spikes = _assert_batch_equals_single_boards(EmulatorConfig(), SERIALS[:1], (1.05,), 1, dc=(3, 200))
    assert n_spikes > int(10_000 * 4096 * 0.005)  # more than the first buffer held


def test_noise_and_drift_are_bit_identical_per_board():
    mismatch = MismatchConfig(noise_std_a=2e-11, temperature_drift_amplitude=0.3, temperature_drift_period_s=0.5)
    _assert_batch_equals_single_boards(EmulatorConfig(mismatch=mismatch), SERIALS[:2], (0.05, 0.06), 2)


def test_a_bias_written_to_one_board_changes_that_board_only():
    batch = BatchedSimulator(SERIALS, EmulatorConfig(), threads=2)
    _configure(batch)
    batch.set_bias(0, 0, "IF_DC_P", 4, 120, instance=1)
    assert batch.get_bias(0, 0, "IF_DC_P", instance=1)[:2] == (4, 120)
    assert batch.get_bias(0, 0, "IF_DC_P", instance=0)[:2] == (5, 40)
    host = batch.run(0.05)
    for b, serial in enumerate(SERIALS):
        sim = BoardSimulator(serial)
        _configure(sim)
        if b == 1:
            sim.set_bias(0, 0, "IF_DC_P", 4, 120)
        assert _same_events(host[b], sim.run(0.05))


def test_simulating_some_chips_is_exact_for_them_and_their_routed_group():
    # chip 1 routes into chip 0, so asking for chip 1 simulates chips 0 and 1; 2 and 3 stay at rest
    batch = BatchedSimulator(SERIALS[:2], EmulatorConfig(), threads=2, chips=[1])
    _configure(batch)
    assert batch.simulated_chips() == [0, 1]
    batch.run(0.12)
    rest = engine.state_rows(engine.empty_state(batch.config.circuit.i0))
    for b, serial in enumerate(SERIALS[:2]):
        sim = BoardSimulator(serial)
        _configure(sim)
        sim.run(0.12)
        mine = sim.last_spikes.chip <= 1
        assert mine.sum() > 500 and (~mine).sum() > 0  # chips 2 and 3 did fire on the whole board
        ids = sim.last_spikes.global_id[mine]
        assert np.array_equal(batch.last_spikes[b].global_id, ids)
        assert np.array_equal(batch.last_spikes[b].timestamp_us, sim.last_spikes.timestamp_us[mine])
        assert np.array_equal(batch.state_rows(b)[:, :2048], engine.state_rows(sim.state.buffer)[:, :2048])
        assert np.array_equal(batch.state_rows(b)[:, 2048:], rest[:, 2048:])
    noisy = BatchedSimulator(["A"], EmulatorConfig(mismatch=MismatchConfig(noise_std_a=1e-12)), chips=[0])
    with pytest.raises(ValueError, match="noise"):
        noisy.run(0.01)
    with pytest.raises(ValueError):
        BatchedSimulator(["A"], chips=[4])


def test_host_filter_keeps_the_listed_neurons_events_only_and_changes_nothing_else():
    batch = BatchedSimulator(SERIALS[:1], EmulatorConfig(), record_all_spikes=False)
    _configure(batch)
    listened = [5, 300, 1029, 4000]
    batch.keep_host_events_of(listened)
    host = batch.run(0.1)[0]
    sim = BoardSimulator(SERIALS[0])
    _configure(sim)
    expected = sim.run(0.1)
    mine = np.isin(expected.global_id, listened)
    assert mine.sum() > 5 and len(batch.last_spikes[0]) == 0
    assert np.array_equal(host.global_id, expected.global_id[mine])
    assert np.array_equal(host.timestamp_us, expected.timestamp_us[mine])
    assert np.array_equal(batch.state_rows(0), engine.state_rows(sim.state.buffer))
    with pytest.raises(ValueError, match="neuron ids"):
        batch.keep_host_events_of([4096])


def test_bad_arguments_are_refused_and_change_nothing():
    for serials in ([], ["A", "A"]):
        with pytest.raises(ValueError, match="serial"):
            BatchedSimulator(serials)
    for threads in (-1, 1.5, True):
        with pytest.raises(ValueError, match="threads"):
            BatchedSimulator(["A"], threads=threads)
    batch = BatchedSimulator(["A", "B"])
    before = [batch.get_bias(0, 0, "IF_DC_P", instance=b) for b in range(2)]
    with pytest.raises(ValueError):
        batch.set_bias(0, 0, "IF_DC_P", 9, 10)
    with pytest.raises(KeyError):
        batch.set_bias(0, 0, "NO_SUCH_BIAS", 1, 10)
    for bad in (2, -1, True):
        with pytest.raises(ValueError, match="instance"):
            batch.set_bias(0, 0, "IF_DC_P", 1, 10, instance=bad)
    assert [batch.get_bias(0, 0, "IF_DC_P", instance=b) for b in range(2)] == before
    for bad in (-0.1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="duration"):
            batch.run(bad)
    with pytest.raises(ValueError, match="core mask"):
        batch.inject_spike(0, 0, 0, 16)
