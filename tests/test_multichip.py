"""Networks larger than one chip: partition, routes within the chip's limits, inputs on every chip,
and the emulator against the Brian2 stage on a 2 000-unit network spanning three chips."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.netlist import InputAddress
from drivers.dynapse1.netlist_compiler import compile_netlist
from drivers.dynapse1.topology import SRAM_ENTRIES_PER_NEURON
from neurolab_gui.core.conversion.mapping import (
    TimeMapping,
    allocate_units,
    group_reach,
    inter_chip_traffic,
    map_network,
)
from tests.multichip_network import chain_network

TIME = TimeMapping(steps_per_sample=2, retention=0.85)


@pytest.fixture(scope="module")
def chain():
    net, order = chain_network()
    return net, order, map_network(net, TIME)


def test_the_partition_cuts_the_chain_only_where_the_chips_require(chain):
    net, order, mapped = chain
    assert mapped.chips == [0, 1, 2]  # 8 groups of 250: too big for core 0, so 3 per chip
    chip_of = np.array([mapped.chips.index(c) for c, _ in mapped.group_cores])
    # consecutive groups of the chain share a chip except at two cuts
    cuts = sum(chip_of[a] != chip_of[b] for a, b in zip(order[:-1], order[1:], strict=True))
    assert cuts == 2
    unit_reach, input_reach = group_reach(net.multiplicity, net.unit_group)
    traffic, widest = inter_chip_traffic(chip_of, net.unit_group, unit_reach, input_reach)
    assert traffic == 2 * 16 + 5 * 2  # 16 bridge units per cut; 5 input channels on 2 more chips
    in_order = np.array([0, 0, 0, 1, 1, 1, 2, 2])
    assert inter_chip_traffic(in_order, net.unit_group, unit_reach, input_reach)[0] > traffic
    assert widest == 2


def test_a_chain_over_the_whole_board_is_cut_three_times():
    from neurolab_gui.core.conversion.mapping import partition_groups

    net, order = chain_network(n_hidden=16 * 224, n_groups=16, seed=5)  # 16 groups: all 4 chips
    unit_reach, input_reach = group_reach(net.multiplicity, net.unit_group)
    sizes = np.bincount(net.unit_group)
    chip_of = partition_groups(sizes, 4, 224, net.unit_group, unit_reach, input_reach)
    assert np.bincount(chip_of).tolist() == [4, 4, 4, 4]
    assert sum(chip_of[a] != chip_of[b] for a, b in zip(order[:-1], order[1:], strict=True)) == 3
    assert inter_chip_traffic(chip_of, net.unit_group, unit_reach, input_reach) == (3 * 16 + 5 * 3, 2)


def test_routes_inputs_and_tags_fit_the_chips(chain):
    net, _, mapped = chain
    compiled = compile_netlist(mapped.netlist)
    assert compiled.warnings == []
    assert max(mapped.netlist.fan_in().values()) <= 64
    cells: dict = {}
    for r in compiled.routes:
        cells[r.source] = cells.get(r.source, 0) + 1
    assert max(cells.values()) + 1 <= SRAM_ENTRIES_PER_NEURON  # + the host route
    crossing = compiled.inter_chip_routes
    assert len(crossing) == 2 * 16  # only the bridge units send to another chip
    # every unit hears its inputs from a source on its own chip, with the channel's id
    for c in mapped.netlist.connections:
        if isinstance(c.pre, InputAddress):
            assert c.pre.chip == c.post.chip
    # a spike of one input channel is played once on each chip that holds its targets
    times, channels, sources, masks = mapped.generator_channels(np.array([10.0, 20.0]), np.array([0, 4]))
    assert times.tolist() == [10.0] * 3 + [20.0] * 3
    assert [(sources[k].chip, sources[k].neuron) for k in channels] == [(0, 1), (1, 1), (2, 1), (0, 5), (1, 5), (2, 5)]
    assert all(masks[k] == mapped.core_masks[channels_j, sources[k].chip] for k, channels_j in zip(channels, [0, 0, 0, 4, 4, 4], strict=True))
    assert mapped.input_copies == 3


def test_a_network_whose_cores_would_hear_too_many_sources_is_refused_by_name():
    net, _ = chain_network()
    rng = np.random.default_rng(3)
    f = net.n_inputs
    m = net.multiplicity.copy()
    m[:, f + 1:] = 0
    for u in range(net.n_hidden):  # every unit hears 20 units from anywhere: 2 000 sources per core
        m[u, f + 1 + rng.choice(net.n_hidden, 20, replace=False)] = 1
    net.multiplicity = m
    with pytest.raises(ValueError, match=r"aliases on the board's CAMs: CAM aliasing on chip \d core \d"):
        map_network(net, TIME)


def test_allocation_refuses_what_the_board_cannot_hold_and_staggers_ids():
    with pytest.raises(ValueError, match=r"need 5 chips; the board has 4"):
        allocate_units(np.repeat(np.arange(13), 250), 6)
    with pytest.raises(ValueError, match=r"core group 0 has 257 units"):
        allocate_units(np.zeros(257, np.int64), 6)
    addresses, cores = allocate_units(np.repeat(np.arange(8), 60), 6)  # 8 small groups: two chips of four
    assert sorted({c for c, _ in cores}) == [0, 1]
    for chip in (0, 1):
        ids = [a.neuron for a in addresses if a.chip == chip]
        assert len(ids) == len(set(ids)) == 240  # no id twice on a chip
        assert min(a.neuron for a in addresses if a.chip == chip and a.core == 0) >= 32


@pytest.mark.slow
def test_2000_units_on_three_chips_spike_on_the_emulator_as_in_the_brian2_stage(chain):
    from neurolab_gui.core.boards import open_brian2_board, open_emulator
    from neurolab_gui.core.conversion.spiking_run import TAIL_S, configure_board, encode_for, generator_program
    from neurolab_gui.core.probing.program import run_program

    _, _, mapped = chain
    x = np.random.default_rng(1).uniform(0, 1, (1, 12, 4)).astype(np.float32)
    stim = encode_for(mapped, x, np.array([12]), seed=3)
    program = generator_program(mapped, stim)
    duration = stim.duration_us / 1e6 + TAIL_S
    spikes = {}
    for name, board in (("emulator", open_emulator(mismatch=False)), ("brian2", open_brian2_board(target="numpy"))):
        try:
            assert configure_board(board, mapped) == []
            spikes[name] = run_program(board, program, duration)
        finally:
            board.close()
    gids = np.array([a.chip * 1024 + a.core * 256 + a.neuron for a in mapped.unit_addresses])
    counts = {}
    pairs = {}
    for name, ev in spikes.items():
        ev = ev.select(np.isin(ev.global_id, gids))
        counts[name] = np.bincount(ev.global_id, minlength=4096)[gids]
        pairs[name] = set(zip(ev.timestamp_us.tolist(), ev.global_id.tolist(), strict=True))
    emulated = counts["emulator"]
    assert (emulated > 0).all() and emulated.sum() > 10_000  # every unit of all three chips fires
    assert {a.chip for a in mapped.unit_addresses} == {0, 1, 2}
    # the same spike count for every unit; float32 kernel vs float64 Brian2: a spike may move by one
    # step where a threshold crossing lies within rounding (measured: 16 781 of 16 817 coincide)
    assert np.array_equal(emulated, counts["brian2"])
    assert len(pairs["emulator"] & pairs["brian2"]) >= 0.99 * len(pairs["emulator"])


def _ideal_board():
    from emulator.config import EmulatorConfig, MismatchConfig
    from emulator.sim_board import SimulatorBoard
    from emulator.simulator import BoardSimulator

    return SimulatorBoard(BoardSimulator("MULTI001", EmulatorConfig(mismatch=MismatchConfig.ideal())))


def test_probes_and_transfer_matching_measure_every_chip_of_the_network():
    from drivers.dynapse1.netlist import NeuronAddress
    from drivers.dynapse1.topology import SynapseType
    from neurolab_gui.core.conversion.mapping import EXCITATORY
    from neurolab_gui.core.conversion.transfer import ProbeDesign, _measure
    from neurolab_gui.core.probing.curves import measure_synaptic_curves
    from neurolab_gui.core.probing.taus import measure_synaptic_taus

    net, _ = chain_network(n_hidden=160, n_groups=8, seed=2)  # 8 groups of 20: two chips of four cores
    mapped = map_network(net, TIME)
    assert mapped.chips == [0, 1]
    board = _ideal_board()
    board.apply_bias_set(mapped.biases)
    # the same neurons on two chips, the same program: an ideal board answers identically on both
    addresses = [NeuronAddress(c, 1, n) for c in (0, 1) for n in range(40, 48)]
    curves = measure_synaptic_curves(board, addresses, SynapseType.AMPA, [100.0, 200.0], 4, level_s=0.3, settle_s=0.1)
    assert curves.rates_hz[:8].min() > 0 and np.array_equal(curves.rates_hz[:8], curves.rates_hz[8:])
    taus = measure_synaptic_taus(board, {SynapseType.AMPA: addresses}, {SynapseType.AMPA: 150.0}, {SynapseType.AMPA: 100.0})
    tau = taus[SynapseType.AMPA].tau_s
    assert np.isfinite(tau).all() and np.allclose(tau[:8], tau[8:])
    fits = _measure(board, mapped, EXCITATORY, ProbeDesign(duration_s=0.6), net.scale)
    assert sorted((f.chip, f.core) for f in fits) == sorted(mapped.group_cores)
    gains = np.array([f.gain for f in fits])
    assert np.isfinite(gains).all() and gains.max() / gains.min() < 1.05  # same biases on every core
    # progress lines and stage notes name the chip of each core: core 1 of U0 and of U1 are different cores
    from neurolab_gui.core.conversion.transfer import core_label

    assert sorted(core_label(f, fits) for f in fits) == sorted(f"U{c}c{k}" for c, k in mapped.group_cores)
    assert core_label(fits[0], fits[:1]) == f"c{fits[0].core}"  # one chip: the core alone


def test_the_mapping_picture_shows_every_chip_and_the_units_that_send_across(chain):
    from neurolab_gui.core.session_conversion import board_pixel, inter_chip_senders, mapping_image

    _, _, mapped = chain
    image = mapping_image(mapped)
    assert image.shape == (64, 64) and (image > 0).sum() == 2000
    quadrant = {chip: image[32 * (chip >> 1):32 * (chip >> 1) + 32, 32 * (chip & 1):32 * (chip & 1) + 32] for chip in range(4)}
    assert [int((quadrant[c] > 0).sum()) for c in range(4)] == [sum(a.chip == c for a in mapped.unit_addresses) for c in range(4)]
    assert (quadrant[3] == 0).all()
    a = mapped.unit_addresses[0]
    assert image[board_pixel(a.chip, a.core, a.neuron)] == mapped.group_cores.index((a.chip, a.core)) + 1
    senders = inter_chip_senders(mapped)
    assert senders.sum() == 32 and np.trace(senders) == 0  # the 2 x 16 bridge units


@pytest.mark.slow
def test_transfer_matching_follows_the_units_weight_mismatch_not_single_probe_neurons():
    """Synaptic-weight mismatch only (20 % per neuron): a core's gain is then the mean weight factor
    of its neurons, so the matched weight current must be the ideal board's divided by the mean
    factor of the core's units.  With one probe neuron per operating point and a free intercept,
    single neurons steered the fit: on this board the cores came out 0.82-1.31x (U1c0 and U1c3
    AMPA) and U1c1's inhibitory fit failed (NaN); now 0.93-1.07x."""
    import copy
    import dataclasses

    from drivers.dynapse1.bias_table import nominal_current
    from emulator.config import EmulatorConfig, MismatchConfig
    from emulator.mismatch import MismatchFactors
    from neurolab_gui.core.boards import open_emulator
    from neurolab_gui.core.conversion.mapping import EXCITATORY, INHIBITORY, WEIGHT_BIAS
    from neurolab_gui.core.conversion.transfer import match_transfer

    net, _ = chain_network(n_hidden=160, n_groups=8, seed=2, scale=0.8)  # 8 groups of 20 on U0 and U1
    mapped = map_network(net, TIME)
    assert mapped.chips == [0, 1]
    no_cv = {f.name: 0.0 for f in dataclasses.fields(MismatchConfig) if f.name.endswith("_cv")}
    weights_only = dataclasses.replace(MismatchConfig(), **{**no_cv, "syn_weight_cv": 0.2})
    matched = {}
    for name, mismatch in (("ideal", MismatchConfig.ideal()), ("weights", weights_only)):
        board = open_emulator("NLEMU-MISMATCH", config=EmulatorConfig(seed=0, mismatch=mismatch))
        try:
            matched[name] = copy.deepcopy(mapped)
            fits = match_transfer(board, matched[name], net.scale)
        finally:
            board.close()
        assert all(abs(f.gain / f.target_gain - 1) < 0.1 for f in fits)  # converged on what the probes see
    factors = MismatchFactors.draw("NLEMU-MISMATCH", 0, weights_only).syn_weight
    ratios = []
    for chip, core in mapped.group_cores:
        units = [chip * 1024 + core * 256 + a.neuron for a in mapped.unit_addresses if (a.chip, a.core) == (chip, core)]
        for syn in (EXCITATORY, INHIBITORY):
            current = {k: nominal_current(m.biases[(chip, core, WEIGHT_BIAS[syn])].coarse, m.biases[(chip, core, WEIGHT_BIAS[syn])].fine)
                       for k, m in matched.items()}
            ratios.append(current["weights"] / current["ideal"] * factors[int(syn), units].mean())
    assert np.all(np.abs(np.array(ratios) - 1) < 0.12), np.round(ratios, 3)
