"""Emulator routing and inputs: CAM aliasing, SRAM host routes, both FPGA generators, bad input."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import SynapseType
from emulator.config import EmulatorConfig
from emulator.routing import route_destination
from emulator.simulator import BoardSimulator
from emulator.stimulus import PoissonGenerator

AMPA = SynapseType.AMPA
AMPA_ON = {"NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (4, 100)}


def board() -> BoardSimulator:
    sim = BoardSimulator("ROUTE001", EmulatorConfig.ideal())
    apply_bias_set(sim, "samna_recommended", overrides=AMPA_ON)
    return sim


def test_default_host_routes_leave_the_grid():
    # libcaer's cell-0 routes (reference: dynapse_protocol.md §1) must all exit the 2x2 grid.
    for chip, (sx, dx, sy, dy) in {0: (0, 0, 1, 2), 1: (1, 1, 1, 2), 2: (0, 0, 1, 1), 3: (1, 1, 1, 1)}.items():
        assert route_destination(chip, sx, dx, sy, dy) == -1
    assert route_destination(1, 1, 1, 0, 0) == 0  # U1 one hop west is U0
    assert route_destination(0, 0, 0, 1, 1) == 2  # U0 one hop south is U2
    assert route_destination(0, 0, 0, 0, 0) == 0  # no hops: own chip


def test_every_chip_reaches_the_host_by_default_and_not_after_clear_sram():
    sim = board()
    for chip in range(4):
        sim.set_bias(chip, 1, "IF_DC_P", 4, 100)
    ev = sim.run(0.05)
    assert set(ev.chip.tolist()) == {0, 1, 2, 3} and set(ev.core.tolist()) == {1}
    sim.clear_sram(2)
    ev = sim.run(0.05)
    assert 2 not in set(ev.chip.tolist()) and len(ev) > 0
    assert len(sim.last_spikes.select(sim.last_spikes.chip == 2)) > 0  # still firing, just not routed


def test_host_sees_virtual_core_and_mask_minus_one_as_chip():
    sim = board()
    sim.set_bias(0, 0, "IF_DC_P", 4, 100)
    sim.write_sram(0, 5, 0, 3, 0, 0, 1, 2, 3)  # neuron 5: host route, virtual core 3, mask 3 -> "chip 2"
    ev = sim.run(0.05)
    from_5 = ev.select(ev.neuron == 5)
    assert len(from_5) > 0
    assert set(zip(from_5.chip.tolist(), from_5.core.tolist(), strict=True)) == {(2, 3)}


def test_cam_aliasing_same_address_from_another_chip_matches():
    sim = board()
    sim.write_cam(0, 40, 0, 1, 3, AMPA)  # chip 0 neuron 40 listens to (core 1, neuron 3)
    sim.set_bias(1, 1, "IF_DC_P", 0, 255)  # chip 1 core 1 fires hard, incl. its neuron 3
    sim.run(0.02)
    assert sim.state.i_syn[40, AMPA] == 0.0  # not routed to chip 0 yet
    sim.write_sram(1, 256 + 3, 1, 1, 1, 1, 0, 0, 1)  # U1 -> one hop west = U0, core mask 1
    sim.run(0.02)
    assert sim.state.i_syn[40, AMPA] > 0.0  # chip 1's (1, 3) matched chip 0's CAM
    assert sim.state.i_syn[41, AMPA] == 0.0


def test_parallel_cam_entries_add_up_and_saturate():
    sim = board()
    for n_cams, post in ((1, 50), (4, 51), (8, 52), (40, 53)):
        for k in range(n_cams):
            sim.write_cam(0, post, k, 0, 9, AMPA)
    sim.inject_spike(0, 0, 9, core_mask=1)
    sim.run(0.0001)
    i = sim.state.i_syn[[50, 51, 52, 53], AMPA]
    assert i[1] / i[0] == pytest.approx(4, rel=0.01)
    assert 6.5 < i[2] / i[0] < 8
    assert 9 < i[3] / i[0] <= 10


def test_spike_generator_schedule_and_repeat():
    sim = board()
    sim.write_cam(0, 60, 0, 0, 12, AMPA)
    sim.load_spike_generator([(0, 12, 1, 1000.0), (0, 12, 1, 2000.0)], repeat=True)  # t = 1, 3, 4, 6, 7 ms ...
    sim.start_spike_generator()
    arrivals = []
    for _ in range(120):
        before = sim.state.i_syn[60, AMPA]
        sim.run(0.0001)
        if sim.state.i_syn[60, AMPA] > before * 1.01 + 1e-18:
            arrivals.append(sim.now_us)
    assert arrivals == [1100, 3100, 4100, 6100, 7100, 9100, 10100]  # arrival step k ends at (k+1)*100 µs
    sim.stop_spike_generator()
    before = sim.state.i_syn[60, AMPA]
    sim.run(0.01)
    assert sim.state.i_syn[60, AMPA] < before


def test_poisson_generator_rate_and_all_four_cores():
    gen = PoissonGenerator()
    gen.set_rate(1, 300, 200.0)
    gen.running = True
    steps, keys = gen.input_events(0, 10_000, 1e-4, np.random.default_rng(0))
    assert abs(len(steps) / 4 - 200) < 5 * np.sqrt(200)
    assert set((keys // 1024 % 4).tolist()) == {0, 1, 2, 3} and set((keys // 4096).tolist()) == {1}
    assert set((keys % 1024).tolist()) == {300}


def test_poisson_input_drives_a_neuron():
    sim = board()
    for k in range(8):
        sim.write_cam(3, 2 * 256 + 4, k, 1, 44, AMPA)  # chip 3, core 2, neuron 4 <- source 1*256+44
    sim.set_poisson_rate(3, 256 + 44, 300.0)
    sim.run(0.3)
    assert sim.last_spikes.counts().sum() == 0  # generator not running
    sim.set_poisson_running(True)
    sim.run(0.3)
    counts = sim.last_spikes.counts()
    assert counts[3 * 1024 + 2 * 256 + 4] > 5 and counts.sum() == counts[3 * 1024 + 2 * 256 + 4]


@pytest.mark.parametrize(
    ("call", "error", "word"),
    [
        (lambda s: s.set_bias(0, 0, "IF_NOPE_N", 1, 1), KeyError, "IF_NOPE_N"),
        (lambda s: s.set_bias(0, 0, "IF_DC_P", 8, 1), ValueError, "coarse"),
        (lambda s: s.set_bias(0, 0, "IF_DC_P", 1, 256), ValueError, "fine"),
        (lambda s: s.set_bias(4, 0, "IF_DC_P", 1, 1), ValueError, "chip"),
        (lambda s: s.set_global_bias(0, "U_SSP", 0, 64), ValueError, "fine"),
        (lambda s: s.write_cam(0, 5, 64, 0, 0, 3), ValueError, "CAM index"),
        (lambda s: s.write_cam(0, 1024, 0, 0, 0, 3), ValueError, "neuron id"),
        (lambda s: s.write_cam(0, 5, 0, 0, 256, 3), ValueError, "pre neuron"),
        (lambda s: s.write_cam(0, 5, 0, 0, 1, 4), ValueError, "synapse type"),
        (lambda s: s.write_sram(0, 5, 4, 0, 0, 0, 0, 0, 1), ValueError, "SRAM cell"),
        (lambda s: s.write_sram(0, 5, 1, 0, 0, 4, 0, 0, 1), ValueError, "dx"),
        (lambda s: s.write_sram(0, 5, 1, 0, 0, 0, 0, 0, 16), ValueError, "core mask"),
        (lambda s: s.inject_spike(0, 0, 300, 1), ValueError, "neuron"),
        (lambda s: s.select_monitor(0, 4, 0), ValueError, "core"),
        (lambda s: s.set_poisson_rate(0, 1024, 10.0), ValueError, "source"),
        (lambda s: s.set_poisson_rate(0, 3, -1.0), ValueError, "rate"),
        (lambda s: s.load_spike_generator([(0, 1, 1, 10.0), (0, 256, 1, 10.0)]), ValueError, "event 1"),
        (lambda s: s.load_spike_generator([(0, 1, 1, -5.0)]), ValueError, "ISI"),
        (lambda s: s.run(-1.0), ValueError, "duration"),
    ],
)
def test_bad_input_names_the_problem_and_changes_nothing(call, error, word):
    sim = board()
    sim.load_spike_generator([(0, 3, 1, 100.0)])
    snapshot = (sim.biases.coarse.copy(), sim.biases.fine.copy(), sim.tables.cam_neuron.copy(),
                sim.tables.cam_type.copy(), sim.tables.sram.copy(), sim.poisson.rates_hz.copy(),
                sim.spike_generator.offset_s.copy(), dict(sim.biases.global_biases), sim.tables.monitor.copy())
    with pytest.raises(error, match=word):
        call(sim)
    after = (sim.biases.coarse, sim.biases.fine, sim.tables.cam_neuron, sim.tables.cam_type, sim.tables.sram,
             sim.poisson.rates_hz, sim.spike_generator.offset_s, sim.biases.global_biases, sim.tables.monitor)
    for a, b in zip(snapshot, after, strict=True):
        if isinstance(a, dict):
            assert a == b
        else:
            assert np.array_equal(a, b)
    assert len(sim._host_spikes) == 0 and sim.now_us == 0


def test_timestamp_reset_and_fractional_durations():
    sim = board()
    sim.run(0.00025)  # 2.5 steps: two now, the half carried
    assert sim.now_us == 200
    sim.run(0.00025)
    assert sim.now_us == 500
    sim.reset_timestamps()
    assert sim.now_us == 0
    sim.set_bias(0, 0, "IF_DC_P", 0, 255)
    ev = sim.run(0.01)
    assert ev.timestamp_us.min() >= 0 and ev.timestamp_us.max() < 10_000


def test_routes_end_where_their_hops_say_and_only_the_fpga_position_reaches_the_host():
    from emulator.routing import OFF_BOARD, TO_HOST

    # every in-grid displacement from every chip lands on the chip it points at
    for chip in range(4):
        x, row = chip & 1, chip >> 1
        for dest in range(4):
            dx, dy = (dest & 1) - x, (dest >> 1) - row
            assert route_destination(chip, int(dx < 0), abs(dx), int(dy > 0), abs(dy)) == dest
    assert route_destination(3, 1, 1, 1, 1) == TO_HOST  # U3 west then south: below U2, the FPGA
    assert route_destination(3, 0, 0, 1, 1) == OFF_BOARD  # below U3: no FPGA there
    assert route_destination(0, 0, 0, 0, 1) == OFF_BOARD  # north of U0
    assert route_destination(1, 0, 1, 0, 0) == OFF_BOARD  # east of U1


def test_a_route_off_the_board_delivers_nothing_and_the_tag_is_the_cells_virtual_core():
    sim = board()
    sim.set_bias(1, 1, "IF_DC_P", 0, 255)  # chip 1 core 1 fires hard, incl. its neuron 3
    sim.clear_sram(1)
    sim.write_sram(1, 256 + 3, 0, 1, 0, 1, 0, 0, 15)  # one hop east of U1: off the board
    ev = sim.run(0.05)
    assert len(sim.last_spikes.select(sim.last_spikes.chip == 1)) > 0 and 1 not in set(ev.chip.tolist())
    sim.write_cam(0, 40, 0, 2, 3, AMPA)  # chip 0 neuron 40 listens to tag (core 2, neuron 3)
    sim.write_cam(0, 41, 0, 1, 3, AMPA)  # neuron 41 to the source's real address (core 1, neuron 3)
    sim.write_sram(1, 256 + 3, 1, 2, 1, 1, 0, 0, 1)  # U1 -> U0 core 0, virtual core 2
    sim.run(0.02)
    assert sim.state.i_syn[40, AMPA] > 0.0 and sim.state.i_syn[41, AMPA] == 0.0
