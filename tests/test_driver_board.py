"""DynapseBoard over the virtual USB backend, with a recording stand-in for the simulator.

The stand-in records every facade call and replays a scheduled list of spikes, so these tests
check the wire path (driver → control transfers → virtual FPGA → simulator calls, and
simulator spikes → bulk IN bytes → decoder) independently of the emulator physics.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from drivers.dynapse1 import fpga_registers as fr
from drivers.dynapse1.board import DynapseBoard, open_board
from drivers.dynapse1.board_api import BiasValue, Board, SpikeGenEvent
from drivers.dynapse1.event_words import encode_words
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.netlist_compiler import NetlistError
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import SynapseType
from drivers.dynapse1.usb_discovery import find_boards
from drivers.dynapse1.usb_transport import AckError, DeviceGone, TransportTimeout
from emulator.virtual_usb import VirtualDynapseBackend


class RecordingSimulator:
    """The BoardSimulator facade, recording calls and emitting ``scheduled`` spikes on time."""

    def __init__(self, scheduled: SpikeEvents | None = None) -> None:
        self.calls: list[tuple[str, tuple, dict]] = []
        self.now_us = 0
        self.scheduled = scheduled if scheduled is not None else SpikeEvents()

    def __getattr__(self, name: str):
        def record(*args, **kwargs):
            self.calls.append((name, args, kwargs))

        return record

    def named(self, name: str) -> list[tuple]:
        return [args for n, args, _ in self.calls if n == name]

    def reset_timestamps(self) -> None:
        self.calls.append(("reset_timestamps", (), {}))
        self.scheduled = self.scheduled.select(self.scheduled.timestamp_us >= self.now_us)
        self.scheduled.timestamp_us -= self.now_us
        self.now_us = 0

    def run(self, duration_s: float) -> SpikeEvents:
        start, end = self.now_us, self.now_us + round(duration_s * 1e6)
        ts = self.scheduled.timestamp_us
        self.now_us = end
        return self.scheduled.select((ts >= start) & (ts < end))

    def read_membrane(self, chip: int, core: int):
        return np.array([0.0, 1.0]), np.array([0.1, 0.2])


def _scheduled(n: int, span_us: int, seed: int = 0) -> SpikeEvents:
    rng = np.random.default_rng(seed)
    return SpikeEvents(np.sort(rng.integers(0, span_us, n)), rng.integers(0, 4, n), rng.integers(0, 4, n), rng.integers(0, 256, n))


def _open(scheduled: SpikeEvents | None = None, clock: str = "fast", **options) -> tuple[DynapseBoard, RecordingSimulator, VirtualDynapseBackend]:
    sim = RecordingSimulator(scheduled)
    backend = VirtualDynapseBackend()
    backend.add_board("EMUTEST1", sim, clock)
    options.setdefault("settle_s", 0.0)
    board = open_board("EMUTEST1", backend=backend, **options)
    return board, sim, backend


def test_discovery_and_open_report_serial_and_versions():
    board, sim, backend = _open()
    try:
        found = find_boards(backend)
        assert [(b.serial, b.firmware_version, b.accessible) for b in found] == [("EMUTEST1", 3, True)]
        assert isinstance(board, Board)
        assert (board.serial, board.firmware_version, board.logic_version) == ("EMUTEST1", 3, 5)
        assert board.is_emulated and not board.prefetch and board.connected
        # libcaer start-up reached the simulator: silent + low-power biases, SRAM defaults
        assert ("set_bias", (0, 0, "IF_DC_P", 1, 30), {"high": True, "normal": True, "enabled": True}) in sim.calls
        host_routes = [a for a in sim.named("write_sram") if a[2] == 0 and a[8] != 0]
        assert len(host_routes) == 4096
        assert host_routes[0] == (0, 0, 0, 0, 0, 0, 1, 2, 1)  # chip 0: sy=1 dy=2, mask = chip + 1
    finally:
        board.close()
    assert not board.connected


def test_bias_write_reaches_simulator_and_is_cached_with_listeners():
    board, sim, _ = _open()
    seen = []
    board.add_bias_listener(lambda *a: seen.append(a))
    board.set_bias(2, 3, "IF_TAU1_N", BiasValue(6, 77, high=False))
    assert sim.calls[-1] == ("set_bias", (2, 3, "IF_TAU1_N", 6, 77), {"high": False, "normal": True, "enabled": True})
    assert board.get_bias(2, 3, "IF_TAU1_N") == BiasValue(6, 77, high=False)
    assert seen == [(2, 3, "IF_TAU1_N", BiasValue(6, 77, high=False))]
    board.set_global_bias(1, "D_SSN", 0, 20)
    assert sim.calls[-1] == ("set_global_bias", (1, "D_SSN", 0, 20), {})
    n_calls = len(sim.calls)
    with pytest.raises(ValueError, match="coarse"):
        board.apply_bias_set({(0, 0, "IF_DC_P"): BiasValue(1, 1), (0, 1, "IF_DC_P"): BiasValue(9, 1)})
    with pytest.raises(ValueError, match="unknown bias"):
        board.apply_bias_set({(0, 0, "IF_NOPE"): BiasValue(1, 1)})
    assert len(sim.calls) == n_calls and board.get_bias(0, 0, "IF_DC_P") == BiasValue(1, 30)  # nothing half-applied
    board.close()


def test_read_events_returns_exactly_the_emitted_spikes_in_windows():
    scheduled = _scheduled(3000, 400_000)
    board, sim, _ = _open(scheduled)
    first = board.read_events(0.25)
    assert sim.now_us == 250_000  # fast clock: exactly the span asked for
    second = board.read_events(0.15)
    assert sim.now_us == 400_000 and board.board_time_us == 400_000
    got = SpikeEvents.concatenate([first, second])
    for column in ("timestamp_us", "chip", "core", "neuron"):
        np.testing.assert_array_equal(getattr(got, column), getattr(scheduled, column))
    assert first.timestamp_us.max() < 250_000 <= second.timestamp_us.min()
    assert board.counters.received_events == 3000 and board.counters.corrupt_words == 0
    empty = board.read_events(0.1)  # nothing fires: wrap words still advance the clock
    assert len(empty) == 0 and board.board_time_us == 500_000
    board.close()


def test_callbacks_iterator_and_timestamp_reset():
    scheduled = _scheduled(500, 100_000, seed=3)
    board, sim, _ = _open(scheduled)
    batches = []
    board.add_event_callback(batches.append)
    board.read_events(0.05)
    assert sum(len(b) for b in batches) == int((scheduled.timestamp_us < 50_000).sum())
    board.reset_timestamps()
    assert sim.named("reset_timestamps") and board.board_time_us == 0
    after = board.read_events(0.01)
    assert np.all(after.timestamp_us < 10_000)
    remaining = int((sim.scheduled.timestamp_us >= sim.now_us).sum())
    total = 0
    for batch in board.iter_events():  # streaming starts the reader thread even on the fast clock
        total += len(batch)
        if total == remaining:
            break
    assert total == remaining > 0
    board.close()
    assert list(board.iter_events()) == []


def test_netlist_is_written_as_cam_and_sram_and_limits_are_checked():
    board, sim, _ = _open()
    a, b = NeuronAddress(0, 1, 5), NeuronAddress(2, 3, 7)
    net = Netlist()
    net.add(a, b, SynapseType.AMPA, multiplicity=3)
    net.add(InputAddress(2, 5), b, SynapseType.GABA_B)
    sim.calls.clear()
    warnings = board.write_netlist(net)
    assert warnings == []
    cams = [c for c in sim.named("write_cam") if c[0] == 2 and c[1] == 3 * 256 + 7]
    assert len(cams) == 64
    assert cams[:4] == [(2, 775, 0, 1, 5, 3), (2, 775, 1, 1, 5, 3), (2, 775, 2, 1, 5, 3), (2, 775, 3, 0, 5, 0)]
    srams = [s for s in sim.named("write_sram") if s[0] == 0 and s[1] == 256 + 5]
    assert srams[0] == (0, 261, 0, 1, 0, 0, 1, 2, 1)  # cell 0 keeps the host route (mask = chip + 1)
    assert srams[1] == (0, 261, 1, 1, 0, 0, 1, 1, 8)  # chip 0 → chip 2: one hop south, core mask 1<<3
    assert srams[2][8] == srams[3][8] == 0
    too_many = Netlist()
    too_many.add(a, b, SynapseType.AMPA, multiplicity=65)
    n = len(sim.calls)
    with pytest.raises(NetlistError, match=r"neuron \(chip 2, core 3, neuron 7\) needs 65 CAM"):
        board.write_netlist(too_many)
    assert len(sim.calls) == n
    # Two sources with one address on different chips: the second gets another virtual core, so
    # chip 2's CAM tells them apart (the tag is what the SRAM cell says, the CAM listens to it).
    retagged = Netlist()
    retagged.add(NeuronAddress(0, 0, 9), b, SynapseType.AMPA)
    retagged.add(NeuronAddress(1, 0, 9), b, SynapseType.AMPA)
    sim.calls.clear()
    assert board.write_netlist(retagged) == []
    cams = [c for c in sim.named("write_cam") if c[0] == 2 and c[1] == 775]
    assert [(c[3], c[4]) for c in cams[:2]] == [(0, 9), (1, 9)]
    to_chip2 = {(s[0], s[3]) for s in sim.named("write_sram") if s[1] == 9 and s[8] == 8}
    assert to_chip2 == {(0, 0), (1, 1)}  # (chip, virtual core) of the cells routing to chip 2 core 3
    # Four tags share a neuron id: five sources with id 9 reaching one core cannot all differ.
    aliased = Netlist()
    for chip, core in ((0, 0), (0, 1), (1, 0), (1, 1), (3, 2)):
        aliased.add(NeuronAddress(chip, core, 9), b, SynapseType.AMPA)
    assert any("aliasing on chip 2 core 3" in w for w in board.write_netlist(aliased))
    board.close()


def test_clearing_some_cores_writes_only_their_neurons_cam_and_sram():
    board, sim, _ = _open()
    sim.calls.clear()
    board.clear_connections([1], cores=[2])
    cams, srams = sim.named("write_cam"), sim.named("write_sram")
    assert {c[0] for c in cams} == {c[0] for c in srams} == {1}
    assert {c[1] for c in cams} == {s[1] for s in srams} == set(range(512, 768))  # core 2's 256 neurons only
    assert len(cams) == 256 * 64 and all(c[3:] == (0, 0, 0) for c in cams)  # pre (core 0, neuron 0), type 0
    host_routes = [s for s in srams if s[2] == 0 and s[8] == 2]  # cell 0 back to the host (mask = chip + 1)
    assert len(host_routes) == 256
    sim.calls.clear()
    board.clear_connections([1])
    assert {c[1] for c in sim.named("write_cam")} == set(range(1024))
    board.close()


def test_sram_limit_names_the_neuron():
    board, _, _ = _open()
    src = NeuronAddress(0, 0, 1)
    net = Netlist()
    for chip in range(4):
        net.add(src, NeuronAddress(chip, 0, 2), SynapseType.AMPA)
    with pytest.raises(NetlistError, match=r"neuron \(chip 0, core 0, neuron 1\) needs 5 SRAM"):
        board.write_netlist(net)
    board.close()


def test_spike_generator_poisson_tau_monitor_and_membrane():
    board, sim, _ = _open()
    events = [SpikeGenEvent(InputAddress(1, 10), 0b0011, 5.0), SpikeGenEvent(InputAddress(3, 255), 0b1000, 100_000.0)]
    board.load_spike_generator(events, repeat=True)
    board.start_spike_generator()
    # the 100 ms gap is longer than the 16-bit ISI: a dummy event (core mask 0) carries 65535 µs of it
    assert sim.named("load_spike_generator") == [([(1, 10, 3, 5.0), (3, 255, 0, 65_535.0), (3, 255, 8, 34_465.0)], True)]
    assert sim.named("start_spike_generator")
    board.stop_spike_generator()
    assert sim.named("stop_spike_generator")
    with pytest.raises(ValueError, match="core 0 only"):
        board.load_spike_generator([SpikeGenEvent(InputAddress(1, 10, core=2), 1, 1.0)])
    board.set_poisson_rates(2, {7: 100.0, 1023: 0.0})
    rates = sim.named("set_poisson_rate")
    assert [(c, s) for c, s, _ in rates] == [(2, 7), (2, 1023)] and abs(rates[0][2] - 100.0) < 0.04
    assert sim.named("set_poisson_running") == [(True,)]
    with pytest.raises(ValueError, match="Poisson source 1024"):
        board.set_poisson_rates(0, {1024: 1.0})
    board.set_tau2(0, 1, 3)
    board.set_tau2(0, 1, 4)
    board.set_tau2(0, 1, 3, use_tau2=False)
    assert sim.named("set_tau2")[-3:] == [(0, 259, True), (0, 260, True), (0, 260, True)]
    assert sim.named("set_core_tau")[-1] == (0, 1, False)
    board.monitor_neuron(3, 2, 17)
    assert sim.named("select_monitor")[-1] == (3, 2, 17)
    t, v = board.read_membrane(3, 2)
    assert list(v) == [0.1, 0.2]
    board.close()


def test_fpga_drop_counters_are_read_beside_the_host_queue_drops():
    board, _, backend = _open()
    try:
        fpga = backend.board("EMUTEST1")
        assert board.read_fpga_drop_counters() == 0 and board.counters.fpga_dropped_events == 0
        fpga.dropped_aer_events, fpga.dropped_transactions = (3 << 32) | 5, 7  # 64-bit: high and low halves
        assert board.read_fpga_drop_counters() == (3 << 32) + 5 + 7
        assert board.counters.dropped_events == 0  # host-side drops are counted separately
    finally:
        board.close()


def test_read_membrane_is_none_without_a_side_channel():
    board, _, _ = _open(membrane_channel=None)
    assert board.read_membrane(0, 0) is None
    board.close()


def _pull_the_cable_after(backend: VirtualDynapseBackend, n_transfers: int) -> None:
    """Unplug EMUTEST1 inside its ``n_transfers``-th next bulk transfer.

    Not from a timer thread: a loop reading a fast emulated board can keep the GIL from such a
    thread for its whole read (a 50 ms timer fired only when a 1.2 s read had ended, in 3 of 8 runs
    on a 2-core host), and the read then returned normally."""
    bulk_read, transfers = backend.bulk_read, itertools.count()

    def pull_the_cable_mid_read(*args, **kwargs):
        if next(transfers) == n_transfers:
            backend.unplug("EMUTEST1")
        return bulk_read(*args, **kwargs)

    backend.bulk_read = pull_the_cable_mid_read


def test_unplug_during_read_gives_clear_error_and_disconnected_state():
    board, _, backend = _open(_scheduled(100, 10_000_000))
    reasons = []
    board.add_disconnect_listener(reasons.append)
    board.read_events(0.01)
    _pull_the_cable_after(backend, 200)
    start = time.monotonic()
    with pytest.raises(DeviceGone):
        board.read_events(1000.0)  # ~60,000 transfers; the unplug must end it at the next one
    assert time.monotonic() - start < 5
    assert not board.connected and len(reasons) == 1
    with pytest.raises(DeviceGone):
        board.set_bias(0, 0, "IF_DC_P", BiasValue(1, 1))
    board.close()  # closing an unplugged board is fine


def test_unplug_while_streaming_ends_the_iterator_and_reconnect_restores_state():
    board, sim, backend = _open()
    board.set_bias(1, 1, "IF_THR_N", BiasValue(2, 99))
    stream = board.iter_events()
    _pull_the_cable_after(backend, 200)
    start = time.monotonic()
    for _ in stream:
        pass
    assert time.monotonic() - start < 5 and not board.connected
    backend.replug("EMUTEST1")
    sim.calls.clear()
    board.reconnect(timeout_s=2.0)
    assert board.connected
    assert ("set_bias", (1, 1, "IF_THR_N", 2, 99), {"high": True, "normal": True, "enabled": True}) in sim.calls
    assert len(board.read_events(0.01)) == 0
    board.close()


@pytest.mark.parametrize("fault", ["missing", "wrong", "timeout"])
def test_missing_or_wrong_acknowledgement_raises_ack_error(fault):
    board, _, backend = _open()
    backend.board("EMUTEST1").ack_fault = fault
    with pytest.raises(AckError, match="acknowledg"):
        board.set_bias(0, 0, "IF_DC_P", BiasValue(1, 1))
    board.close()


def test_stalled_stream_times_out_instead_of_hanging():
    board, _, backend = _open(stall_timeout_s=0.3)
    backend.board("EMUTEST1").stall_bulk = True
    start = time.monotonic()
    with pytest.raises(TransportTimeout, match="no data"):
        board.read_events(1.0)
    assert time.monotonic() - start < 3
    board.close()


def test_realtime_clock_follows_the_wall_clock():
    board, sim, backend = _open(clock="realtime")
    assert board.prefetch  # real-time boards stream through the reader thread
    start = time.monotonic()
    board.read_events(0.2)
    elapsed = time.monotonic() - start
    assert 0.15 < elapsed < 2.0
    assert backend.board("EMUTEST1").lag_us >= 0
    board.close()


# --- hostile report 3, #6: a timestamp reset in the middle of read_events(d) ---------------------------


def _unique_schedule(span_us: int) -> SpikeEvents:
    """Every board-wide neuron fires once, at random times in ``[0, span_us)``: an event is known by its neuron."""
    rng = np.random.default_rng(5)
    ids = rng.permutation(4096)
    return SpikeEvents(np.sort(rng.integers(0, span_us, 4096)), ids // 1024, ids // 256 % 4, ids % 256)


def _reset_after_next_batch(board: DynapseBoard, sim: RecordingSimulator) -> dict:
    """Once armed, send a timestamp reset from the event callback after the next decoded batch:
    in the reading thread itself, so it falls inside the read deterministically (no timer thread)."""
    state = {"armed": False, "at_us": None}
    reset = sim.reset_timestamps

    def reset_and_note(*args):
        state["at_us"] = sim.now_us  # the old-base time the simulator restarts from
        reset(*args)

    sim.reset_timestamps = reset_and_note

    def on_batch(_events: SpikeEvents) -> None:
        if state["armed"]:
            state["armed"] = False
            board.transport.write_registers(fr.timestamp_reset_pulse())

    board.add_event_callback(on_batch)
    return state


@pytest.mark.parametrize("clock", ["fast", "realtime"])
def test_a_reset_mid_read_continues_the_window_in_the_new_time_base_and_loses_nothing(clock):
    """A reset 1 packet into read_events(0.1) after 0.6 s of board time: the read used to wait until
    the new clock reached 0.7 s again and returned ~0.7 s of events.  Now it covers 0.1 s of board
    time (the old base up to the reset, then the new base from 0), and consecutive host-paced reads
    return every event exactly once."""
    warm_us, d_us = 600_000, 100_000
    scheduled = _unique_schedule(2_000_000)
    board, sim, _ = _open(scheduled, clock=clock, prefetch=False, stall_timeout_s=0.3)
    reset = _reset_after_next_batch(board, sim)
    warm = board.read_events(warm_us / 1e6)
    reset["armed"] = True
    start = time.monotonic()
    across = board.read_events(d_us / 1e6)
    wall = time.monotonic() - start
    after = board.read_events(d_us / 1e6)
    t_reset = reset["at_us"]
    assert t_reset is not None and warm_us < t_reset < warm_us + d_us
    assert wall < d_us / 1e6 + board.stall_timeout_s  # the old read blocked for the 0.6 s before the reset
    # the read covered d of board time: [warm, t_reset) in the old base, then [0, rest) in the new one
    rest = d_us - (t_reset - warm_us)
    ts = across.timestamp_us
    n_old = int(np.count_nonzero(ts >= warm_us))
    assert np.all(ts[:n_old] < t_reset) and np.all(ts[n_old:] < rest) and n_old < len(across)
    assert np.all((after.timestamp_us >= rest) & (after.timestamp_us < rest + d_us))
    # and every event the board sent up to the end of the next read came back exactly once
    got = SpikeEvents.concatenate([warm, across, after]).global_id
    expected = scheduled.select(scheduled.timestamp_us < t_reset + rest + d_us).global_id
    assert len(got) == len(set(got.tolist())) and sorted(got.tolist()) == sorted(expected.tolist())
    board.close()


def test_a_reset_mid_read_while_prefetching_ends_the_read_on_time():
    """The report's case: the real-time board with its reader thread (the app, recordings)."""
    board, sim, _ = _open(_unique_schedule(2_000_000), clock="realtime", stall_timeout_s=0.3)
    assert board.prefetch
    reset = _reset_after_next_batch(board, sim)
    board.read_events(0.6)
    reset["armed"] = True
    start = time.monotonic()
    across = board.read_events(0.1)
    wall = time.monotonic() - start
    assert reset["at_us"] is not None
    assert wall < 0.1 + board.stall_timeout_s
    ts = across.timestamp_us
    n_old = int(np.count_nonzero(ts >= 500_000))  # the old base (the read began after 0.6 s), then the new
    assert 0 < n_old < len(ts) and np.all(ts[:n_old] < reset["at_us"]) and np.all(ts[n_old:] < 100_000)
    assert len(across) == len(set(across.global_id.tolist()))
    board.close()


def test_a_reset_in_the_chunk_that_ends_a_window_is_kept_for_the_next_read():
    """The stream after a window's end (later events, a reset, events of the new base) arrives in the
    same USB buffer: the next reads take it up in order, each covering its span of board time."""
    board, _, _ = _open(prefetch=False, stall_timeout_s=0.3)
    spike = [(1 << 12) | (n << 4) | 1 for n in range(6)]  # chip 0, core 0, neurons 0..5
    chunks = [encode_words([0x8000 | 10, spike[0], 0x8000 | 90, spike[1], 0x8000 | 150, spike[2],
                            0x0001, 0x8000 | 20, spike[3], 0x8000 | 130, spike[4]]),
              encode_words([0x8000 | 160, spike[5]])]
    board.transport.read_bulk = lambda *args, **kwargs: chunks.pop(0) if chunks else b""
    first = board.read_events(100e-6)  # [0, 100)
    second = board.read_events(100e-6)  # [100, 150) before the reset at 150, then [0, 50) after it
    third = board.read_events(100e-6)  # [50, 150) in the new base
    assert (first.neuron.tolist(), first.timestamp_us.tolist()) == ([0, 1], [10, 90])
    assert (second.neuron.tolist(), second.timestamp_us.tolist()) == ([2, 3], [150, 20])
    assert (third.neuron.tolist(), third.timestamp_us.tolist()) == ([4], [130])
    board.close()


def test_non_monotonic_timestamps_are_counted_beside_corrupt_words_and_their_events_kept():
    """Hostile report 3, #11: a timestamp word that goes back (a bit error) was invisible."""
    board, _, _ = _open(prefetch=False, stall_timeout_s=0.3)
    spike = (1 << 12) | (3 << 4) | 1
    chunks = [encode_words([0x8000 | 30, spike, 0x8000 | 5, spike, 0x8000 | 31, spike, 0x8000 | 200])]
    board.transport.read_bulk = lambda *args, **kwargs: chunks.pop(0) if chunks else b""
    events = board.read_events(100e-6)
    assert events.timestamp_us.tolist() == [30, 5, 31]
    assert board.counters.non_monotonic_timestamps == 1 and board.counters.corrupt_words == 0
    board.close()


@pytest.mark.parametrize("call", ["read_events", "set_bias"])
def test_device_gone_reaches_the_caller_only_after_the_disconnect_listeners_ran(call):
    """Hostile report 3, #11 (t4_child_death.py): the thread that notices an unplug (the reader, the
    emulator's watcher) runs the listeners; another thread's call raised DeviceGone before they had
    run.  Here the listener is held for 0.3 s: the caller must wait for it, not race ahead."""
    import threading

    board, _, _ = _open()
    ran, entered, release = [], threading.Event(), threading.Event()

    def slow_listener(reason: str) -> None:
        entered.set()
        release.wait(5)
        ran.append(reason)

    board.add_disconnect_listener(slow_listener)
    noticing = threading.Thread(target=board.transport.device_lost, args=("emulator process ended",))
    noticing.start()
    assert entered.wait(5)
    threading.Timer(0.3, release.set).start()
    with pytest.raises(DeviceGone):
        board.read_events(0.01) if call == "read_events" else board.set_bias(0, 0, "IF_DC_P", BiasValue(1, 1))
    assert ran == ["emulator process ended"]
    noticing.join(5)
    board.close()


def test_a_listener_that_calls_the_board_gets_device_gone_at_once():
    board, _, _ = _open()
    seen = []

    def listener(reason: str) -> None:
        start = time.monotonic()
        try:
            board.read_events(0.01)
        except DeviceGone:
            seen.append(time.monotonic() - start)

    board.add_disconnect_listener(listener)
    board.transport.device_lost("unplugged")
    assert len(seen) == 1 and seen[0] < 1.0  # it does not wait for itself
    board.close()


def test_a_repeating_program_with_no_time_in_it_is_refused_before_anything_is_written():
    """Repeat with ISIs adding up to 0 would replay infinitely often: the driver sends nothing."""
    board, sim, _ = _open()
    good = [SpikeGenEvent(InputAddress(0, 1), 1, 10.0)]
    board.load_spike_generator(good, repeat=True)
    with pytest.raises(ValueError, match="repeat mode needs ISIs that add up to at least one ISI unit"):
        board.load_spike_generator([SpikeGenEvent(InputAddress(0, 2), 1, 0.0), SpikeGenEvent(InputAddress(0, 3), 1, 0.4)], repeat=True)
    board.start_spike_generator()
    assert sim.named("load_spike_generator") == [([(0, 1, 1, 10.0)], True)]  # the good program is still there
    board.close()
