"""Constraint invariants (fan-in budget counting multiplicity, weight grid, per-core scale, precision)
and a valid, alias-free netlist from the mapping."""

import numpy as np
import pytest
import torch

from drivers.dynapse1.netlist import InputAddress, NeuronAddress
from drivers.dynapse1.netlist_compiler import compile_netlist
from drivers.dynapse1.topology import SynapseType
from neurolab_gui.core.conversion.constrain import (
    ConstraintConfig,
    WeightPrecision,
    constrain,
    project_row_multiplicities,
    stacked_weights,
)
from neurolab_gui.core.conversion.mapping import TimeMapping, map_network
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig


def test_precision_levels():
    assert list(WeightPrecision(16).levels()) == list(range(-8, 8))
    assert list(WeightPrecision(3).levels()) == [-1, 0, 1]
    assert len(WeightPrecision(9).levels()) == 9
    with pytest.raises(ValueError, match="at least 3"):
        WeightPrecision(2)


@pytest.mark.parametrize("levels", [3, 16])
def test_projection_respects_grid_and_cam_budget(levels):
    rng = np.random.default_rng(1)
    v = rng.normal(0, 3, (20, 90))
    p = WeightPrecision(levels)
    m = project_row_multiplicities(v, p, 64)
    assert m.min() >= p.m_min and m.max() <= p.m_max
    assert np.abs(m).sum(1).max() <= 64
    small = project_row_multiplicities(np.array([[0.4, -1.6, 2.2]]), WeightPrecision(16), 64)
    assert small.tolist() == [[0, -2, 2]]  # plain rounding when the budget allows


def _greedy_one_copy_at_a_time(v, precision, budget, copy_cost=None):
    """The projection's rule written as the plain loop: take one copy at a time, from the entry of the
    row where it costs the least squared error (ties: the lower entry), until the row fits its budget."""
    m = np.clip(np.rint(v), precision.m_min, precision.m_max).astype(np.int64)
    w = np.ones_like(v) if copy_cost is None else np.broadcast_to(copy_cost, v.shape)
    for i in range(len(v)):
        while np.abs(m[i]).sum() > budget:
            cost = (2.0 * (np.abs(v[i]) - np.abs(m[i])) + 1.0) * w[i]
            cost[m[i] == 0] = np.inf
            j = int(np.argmin(cost))
            m[i, j] -= np.sign(m[i, j])
    return m


@pytest.mark.parametrize("levels", [3, 16])
def test_projection_is_the_one_copy_at_a_time_greedy(levels):
    """The sorted projection takes the same copies as the greedy, ties (integer targets) and copy costs included."""
    rng = np.random.default_rng(levels)
    p = WeightPrecision(levels)
    for trial in range(12):
        v = rng.normal(0, rng.uniform(0.3, 4.0), (int(rng.integers(1, 40)), int(rng.integers(1, 120))))
        if trial % 3 == 0:
            v = np.rint(v)  # many equal costs: the tie rule decides
        budget = int(rng.integers(1, 64))
        for cost in (None, rng.uniform(0.1, 3.0, v.shape), rng.uniform(0.1, 3.0, v.shape[1])):
            assert np.array_equal(project_row_multiplicities(v, p, budget, cost),
                                  _greedy_one_copy_at_a_time(v, p, budget, cost))


@pytest.fixture(scope="module")
def small_constrained():
    task = seq_digits().subset(300, 60)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 40, 10, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))
    cfg = ConstraintConfig(precision=WeightPrecision(16), max_fan_in=63, n_core_groups=3, qat=TrainConfig(epochs=1))
    return constrain(model, task, cfg), task


def test_constrained_weights_are_on_the_per_core_grid(small_constrained):
    net, _ = small_constrained
    assert net.fan_in().max() <= 63
    w = stacked_weights(net.model)
    q = net.scale[net.unit_group][:, None]
    assert np.allclose(w[:, 9:], q * net.multiplicity[:, 9:], atol=1e-6)  # recurrent copies: the core's weight
    # input and bias copies: the core's weight times the channel's source gain (per-group precision)
    assert np.allclose(w[:, :9], q * net.multiplicity[:, :9] * np.r_[[net.input_gain] * 8, net.bias_gain], atol=1e-6)
    assert net.multiplicity.min() >= -8 and net.multiplicity.max() <= 7
    assert len(net.scale) == 3 and np.all(net.scale > 0)


def test_ternary_constraint(small_constrained):
    _, task = small_constrained
    model = RateRNN(RNNConfig(8, 16, 10, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))
    net = constrain(model, task, ConstraintConfig(precision=WeightPrecision(3), max_fan_in=20, qat=TrainConfig(epochs=0)))
    assert set(np.unique(net.multiplicity)) <= {-1, 0, 1}
    assert net.fan_in().max() <= 20


def test_mapping_gives_a_valid_netlist_without_aliasing(small_constrained):
    net, _ = small_constrained
    mapped = map_network(net, TimeMapping(steps_per_sample=2, retention=0.85))
    compiled = compile_netlist(mapped.netlist)  # raises on CAM/SRAM limit violations
    assert compiled.warnings == []
    assert all(v <= 64 for v in mapped.netlist.fan_in().values())
    sources = {(c.pre.core, c.pre.neuron) for c in mapped.netlist.connections}
    assert (0, 0) not in sources, "source address (core 0, neuron 0) is what cleared CAM entries listen to"
    assert all(a.core != 0 for a in mapped.unit_addresses)  # inputs arrive as core 0: no aliasing
    assert all(isinstance(a, InputAddress) for a in mapped.input_addresses)
    reset = mapped.input_addresses[-1]
    resets = [c for c in mapped.netlist.connections if c.pre == reset]
    assert len(resets) == net.n_hidden and all(c.synapse == SynapseType.GABA_A for c in resets)
    # every nonzero multiplicity appears with the right sign convention
    signs = {(c.pre, c.post): c.synapse for c in mapped.netlist.connections}
    u0 = mapped.unit_addresses[0]
    for j in np.flatnonzero(net.multiplicity[0]):
        pre = mapped.input_addresses[j] if j <= net.n_inputs else mapped.unit_addresses[j - net.n_inputs - 1]
        assert signs[(pre, u0)] == (SynapseType.AMPA if net.multiplicity[0, j] > 0 else SynapseType.GABA_B)
    assert isinstance(u0, NeuronAddress)
    # a weight bias per core group, from the nominal circuit model
    assert {(c, k) for (c, k, n) in mapped.biases if n == "PS_WEIGHT_EXC_F_N"} == set(mapped.group_cores)


def test_mapping_refuses_time_mapping_that_does_not_match(small_constrained):
    net, _ = small_constrained
    with pytest.raises(ValueError, match="does not match"):
        map_network(net, TimeMapping(steps_per_sample=4, retention=0.85))


def test_count_noise_has_the_variance_of_a_spike_count():
    """Rates reaching the synapses get variance count_noise * r (Fano factor over spikes per step)."""
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(1, 2, 2, "leaky", 0.85, 1, "mean", 1.0, "euler"))
    with torch.no_grad():
        model.w_in.zero_()
        model.w_rec.zero_()
        model.w_bias.copy_(torch.tensor([0.25, 1.0]))  # steady rates phi(u) = u / (1 + u): 0.2 and 0.5
    x = torch.zeros(4000, 40, 1)
    _, quiet = model(x)
    _, noisy = model(x, count_noise=0.1)
    r0 = quiet[:, -1]
    assert torch.allclose(r0[0], torch.tensor([0.2, 0.5]), atol=0.01)
    var = noisy[:, -1].var(0)
    assert torch.allclose(var, 0.1 * r0[0], rtol=0.1)
    assert torch.allclose(noisy[:, -1].mean(0), r0[0], atol=0.01)


def test_pipeline_count_noise_follows_the_time_mapping():
    from neurolab_gui.core.conversion.pipeline import PipelineConfig

    cfg = PipelineConfig(spike_fano=0.5, r_max_hz=800.0, dt_step_s=0.005)
    assert cfg.count_noise() == pytest.approx(0.5 / 4.0)
    assert PipelineConfig(spike_fano=0.0).count_noise() == 0.0


def test_refractory_matching_brings_each_cores_saturation_to_the_model(small_constrained):
    """Default mismatch leaves the cores' effective t_ref well off the model's; matching fixes it."""
    import copy

    from emulator.config import EmulatorConfig
    from emulator.virtual_board import open_emulated_board
    from neurolab_gui.core.conversion.transfer import match_refractory

    net, _ = small_constrained
    mapped = map_network(net, TimeMapping(0.005, 2, 0.85, 900.0, 0.15, 1000.0, 0.12))
    board = open_emulated_board("NLTEST-RFR", EmulatorConfig(seed=3), clock="fast")
    try:
        untouched = match_refractory(board, copy.deepcopy(mapped), max_rounds=1)  # one round: measure only
        tuned = match_refractory(board, mapped)
    finally:
        board.close()
    assert max(abs(f.t_ref_s / f.target_s - 1) for f in untouched) > 0.1
    for f in tuned:
        assert abs(f.t_ref_s / f.target_s - 1) < 0.05 and f.n_neurons > 5
        value = mapped.biases[(f.chip, f.core, "IF_RFR_N")]
        assert (value.coarse, value.fine) == f.setting


def test_core0_units_sit_above_every_fpga_source_the_network_or_calibration_uses():
    from neurolab_gui.core.calibration.engine import CalibrationConfig
    from neurolab_gui.core.conversion.mapping import CORE0_FIRST_UNIT_ID, allocate_units
    from neurolab_gui.core.probing.taus import tau_probe_source_end

    groups = np.repeat(np.arange(4), 40)  # four groups: the last one lands on core 0
    for n_sources in (4, 10, 60):
        addresses, cores = allocate_units(groups, n_sources)
        assert cores[-1] == (0, 0)
        core0_ids = [a.neuron for a in addresses if a.core == 0]
        assert len(core0_ids) == 40 and min(core0_ids) == max(n_sources + 1, CORE0_FIRST_UNIT_ID)
    # the calibration's probe sources (tau probe: the highest ids) stay below the first core-0 unit
    assert tau_probe_source_end(2, CalibrationConfig().multiplicity) <= CORE0_FIRST_UNIT_ID


def test_whole_spike_model_emits_the_spikes_of_an_integrator_from_rest():
    """With spikes_per_step set, the rates become whole spikes of an integrate-and-fire neuron that starts at
    rest (first spike late, counts rounded down), the mean readout counts them like the board's decoding, and the
    gradient is the rate's."""
    model = RateRNN(RNNConfig(1, 2, 2, "leaky", 0.85, 1, "mean", 1.0, "euler"))
    with torch.no_grad():
        model.w_in.zero_()
        model.w_rec.zero_()
        model.w_bias.copy_(torch.tensor([0.25, 1.0]))
    x = torch.zeros(1, 30, 1)
    _, fluid = model(x)
    sps = 4.5
    model.spikes_per_step = sps
    _, spiking = model(x)
    counts = (spiking * sps).detach().numpy()[0]
    assert np.allclose(counts, np.round(counts), atol=1e-5)  # whole spikes
    charge = np.cumsum(fluid.detach().numpy()[0].astype(np.float64) * sps, axis=0)
    assert np.array_equal(np.round(counts).cumsum(0), np.floor(charge))  # an integrator from rest: floor of the charge
    assert counts[0].sum() == 0 and fluid[0, 0].min() > 0  # the first spike comes later than the rate does
    features = model.readout_features(spiking, torch.tensor([30]))
    n = np.round(counts).sum(0)
    assert np.allclose(features.detach().numpy()[0], (n + model.count_correction * (n > 0)) / (30 * sps), atol=1e-6)
    logits, _ = model(x)
    logits.sum().backward()
    assert model.w_bias.grad is not None and float(model.w_bias.grad.abs().sum()) > 0  # straight-through
