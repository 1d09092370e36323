"""Calibration measurements on an emulated board: gains, refractory periods, selection, tuning.

The calibration code never reads the emulator's hidden mismatch; these tests do, to check that
what it measures through the Board API is the chip's real spread.
"""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.bias_table import closest_setting, nominal_current
from drivers.dynapse1.board_api import BiasValue
from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.topology import SynapseType
from emulator.config import EmulatorConfig, MismatchConfig
from emulator.virtual_board import open_emulated_board, virtual_fpga_of
from neurolab_gui.core.calibration.board_calibration import BoardTargets, calibrate_board
from neurolab_gui.core.calibration.progress import metered
from neurolab_gui.core.conversion.mapping import CircuitModel, NeuronSettings, TimeMapping, core_bias_set
from neurolab_gui.core.fitting.fi import fit_gains, fit_saturation
from neurolab_gui.core.probing.bias_tuning import snap_to_ladder
from neurolab_gui.core.probing.curves import measure_dc_curves, measure_synaptic_curves

CHIP, CORE = 0, 1
Q = 0.25  # copy weight (Hz/Hz) the weight bias is set for
T_REF = 1.0 / 150.0


def network_biases() -> dict[tuple[int, int, str], BiasValue]:
    """The conversion's core bias set with a nominal weight for copy weight Q."""
    time, settings, circuit = TimeMapping(), NeuronSettings(t_ref_s=T_REF), CircuitModel()
    per_core = core_bias_set(time, settings, circuit)
    weight = BiasValue(*closest_setting(Q / circuit.copy_gain_per_weight_current(time, settings)))
    per_core["PS_WEIGHT_EXC_F_N"] = weight
    per_core["PS_WEIGHT_INH_S_N"] = weight
    return {(CHIP, CORE, name): v for name, v in per_core.items()}


@pytest.fixture(scope="module")
def board():
    b = metered(open_emulated_board("NLTEST-CAL", EmulatorConfig(seed=3)))
    yield b
    b.close()


@pytest.fixture(scope="module")
def ampa(board):
    board.apply_bias_set(network_biases())
    neurons = [NeuronAddress(CHIP, CORE, n) for n in range(0, 256, 2)]  # 128 neurons in parallel
    before = board.chip_s
    curves = measure_synaptic_curves(board, neurons, SynapseType.AMPA, [x / Q / 4 for x in (30.0, 70.0, 110.0)], 4,
                                     level_s=0.3, settle_s=0.08)
    assert board.chip_s - before == pytest.approx(curves.chip_s)  # the chip time reported is the chip time used
    return curves


def hidden_ampa_gain(board, neurons):
    m = virtual_fpga_of(board.inner).simulator.mismatch
    gid = np.array([a.chip * 1024 + a.core * 256 + a.neuron for a in neurons])
    a = int(SynapseType.AMPA)
    return m.syn_weight[a][gid] * m.gain[gid] / m.threshold[gid] / m.syn_tau[a][gid]


def test_measured_gains_follow_the_hidden_mismatch(board, ampa):
    fit = fit_gains(ampa, T_REF)
    assert fit.valid.mean() > 0.95
    hidden = hidden_ampa_gain(board, ampa.addresses)
    ok = fit.valid
    r = np.corrcoef(np.log(fit.gain[ok]), np.log(hidden[ok]))[0, 1]
    assert r > 0.75, r
    assert 0.1 < fit.cv() < 0.5  # the chip's spread is there before calibration
    assert np.all(ampa.rate_err_hz > 0) and np.all(np.isfinite(fit.gain_err[ok]))


def test_selection_of_matched_neurons_reduces_the_gain_spread(board, ampa):
    fit = fit_gains(ampa, T_REF)
    order = np.argsort(np.abs(np.log(fit.gain) - np.nanmedian(np.log(fit.gain))))
    chosen = [ampa.addresses[i] for i in order[:16]]
    # measured again: the selection must hold on a fresh measurement, not only on the one it used
    again = fit_gains(measure_synaptic_curves(board, chosen, SynapseType.AMPA, [x / Q / 4 for x in (30.0, 70.0, 110.0)], 4,
                                              level_s=0.3, settle_s=0.08), T_REF)
    assert again.cv() < 0.35 * fit.cv(ampa.addresses[:16]), (again.cv(), fit.cv(ampa.addresses[:16]))


def test_dc_curves_give_refractory_periods_that_follow_the_mismatch(board):
    neurons = [NeuronAddress(CHIP, 2, n) for n in range(64)]
    board.apply_bias_set({(CHIP, 2, k[2]): v for k, v in network_biases().items()})
    before_dc = board.get_bias(CHIP, 2, "IF_DC_P")
    curves = measure_dc_curves(board, neurons, [(4, 30), (4, 80), (4, 160), (4, 255)], level_s=0.25, settle_s=0.05)
    assert board.get_bias(CHIP, 2, "IF_DC_P") == before_dc  # restored
    sat = fit_saturation(curves)
    m = virtual_fpga_of(board.inner).simulator.mismatch
    hidden = m.refractory[[1024 * 0 + 2 * 256 + n for n in range(64)]]
    ok = np.isfinite(sat.t_ref_s)
    assert ok.mean() > 0.9
    assert np.corrcoef(sat.t_ref_s[ok], hidden[ok])[0, 1] > 0.6


def test_bias_ladder_is_monotonic_and_snaps_to_the_nearest_rung():
    from drivers.dynapse1.bias_table import LADDER

    currents, settings = LADDER.currents, [LADDER.setting(i) for i in range(len(LADDER))]
    assert np.all(np.diff(currents) > 0) and len(settings) == len(currents)
    c, f = snap_to_ladder(1e-9)
    from drivers.dynapse1.bias_table import nominal_current

    assert abs(np.log(nominal_current(c, f) / 1e-9)) < 0.02


def test_core_tuning_converges_from_a_published_set(board):
    events = []
    result = calibrate_board(board, CHIP, [3], "samna_recommended", BoardTargets(saturation_hz=220.0, tolerance=0.04),
                             dc_sweep=((5, 40), (5, 110), (5, 250)), max_rounds=5, progress=events.append)
    assert result.tuning is not None and result.tuning.converged
    measured = result.tuning.measured[(CHIP, 3)]["IF_RFR_N"]
    assert measured == pytest.approx(220.0, rel=0.04)
    start = BiasValue(*[v for v in [(7 - 4, 128)]][0])
    assert result.tuning.settings[(CHIP, 3)]["IF_RFR_N"] != (start.coarse, start.fine)  # it had to move
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert all(e.chip_s >= 0 for e in events) and events[-1].chip_s == pytest.approx(result.chip_s)


def hidden_tau(board, addresses, synapse):
    p = virtual_fpga_of(board.inner).simulator.parameters()
    return p.tau_syn[int(synapse)][[a.chip * 1024 + a.core * 256 + a.neuron for a in addresses]]


def test_time_constants_from_step_responses(board):
    from neurolab_gui.core.probing.taus import measure_membrane_tau, measure_synaptic_taus

    board.apply_bias_set(network_biases())
    neurons = [NeuronAddress(CHIP, CORE, n) for n in range(64)]
    groups = {SynapseType.AMPA: neurons[0::2], SynapseType.GABA_B: neurons[1::2]}
    before = board.chip_s
    taus = measure_synaptic_taus(board, groups, {s: 150.0 for s in groups}, {SynapseType.AMPA: 150.0, SynapseType.GABA_B: 300.0},
                                 dead_time_s=T_REF)
    assert board.chip_s - before == pytest.approx(0.75) == taus[SynapseType.AMPA].chip_s  # lead-in + 2 x (on + off)
    for synapse, m in taus.items():
        hidden = hidden_tau(board, m.addresses, synapse)
        ok = np.isfinite(m.tau_s)
        assert ok.mean() > 0.9, synapse
        # each neuron's own time constant (mismatch 8.5 %), not only the population's
        assert np.median(m.tau_s[ok] / hidden[ok]) == pytest.approx(1.0, abs=0.03), synapse
        assert np.corrcoef(m.tau_s[ok], hidden[ok])[0, 1] > 0.8, synapse
        median, err = m.population()
        assert 0 < err < 0.05 * median and np.all(m.tau_err_s[ok] > 0)
    mem = measure_membrane_tau(board, CHIP, CORE, 5, BiasValue(5, 30))
    assert mem is not None  # the emulator has the membrane side channel; silicon returns None
    true_tau = virtual_fpga_of(board.inner).simulator.parameters().tau_mem[CHIP * 1024 + CORE * 256 + 5]
    assert mem.tau_s[0] == pytest.approx(true_tau, rel=0.25)


def test_tau_estimator_is_unbiased_on_an_ideal_board():
    """With mismatch off the probe must read the nominal bias's own tau, or tuning would move a correct bias."""
    from neurolab_gui.core.probing.taus import measure_synaptic_tau

    ideal = open_emulated_board("NLTEST-IDEAL", EmulatorConfig(seed=0, mismatch=MismatchConfig.ideal()), clock="fast")
    try:
        ideal.apply_bias_set(network_biases())
        neurons = [NeuronAddress(CHIP, CORE, n) for n in range(8)]
        true_tau = virtual_fpga_of(ideal).simulator.parameters().tau_syn[int(SynapseType.AMPA)][CHIP * 1024 + CORE * 256]
        # the nominal setting is the ladder rung nearest the conversion's tau
        assert true_tau == pytest.approx(TimeMapping().tau_s, rel=0.03)
        m = measure_synaptic_tau(ideal, neurons, SynapseType.AMPA, 150.0, dead_time_s=T_REF)
        assert np.nanmedian(m.tau_s) == pytest.approx(true_tau, rel=0.02)
    finally:
        ideal.close()


def test_tau_tuning_brings_a_wrong_bias_to_the_target(board):
    """Start both synapses' tau biases far off; the core's measured and hidden medians must reach the target."""
    from neurolab_gui.core.probing.bias_tuning import TauProbeConfig, tune_synaptic_taus

    core = 2
    board.apply_bias_set({(CHIP, core, name): v for (_, _, name), v in network_biases().items()})
    target = TimeMapping().tau_s
    tau_biases = {SynapseType.AMPA: "NPDPIE_TAU_F_P", SynapseType.GABA_B: "NPDPII_TAU_S_P"}
    for synapse, factor in ((SynapseType.AMPA, 1.6), (SynapseType.GABA_B, 0.6)):  # tau ~ 1/I: 0.6x and 1.7x the target
        v = board.get_bias(CHIP, core, tau_biases[synapse])
        board.set_bias(CHIP, core, tau_biases[synapse], v.with_setting(*snap_to_ladder(nominal_current(v.coarse, v.fine) * factor)))
    neurons = [NeuronAddress(CHIP, core, n) for n in range(0, 256, 2)]
    before = board.chip_s
    result = tune_synaptic_taus(board, [(CHIP, core)], neurons, target, tau_biases, {s: 150.0 for s in tau_biases},
                                {SynapseType.AMPA: 150.0, SynapseType.GABA_B: 300.0}, T_REF, TauProbeConfig(), tolerance=0.02)
    assert result.worst_error("before") > 0.3  # the wrong start was seen ...
    assert result.worst_error("after") < 0.03  # ... and corrected (one ladder rung is ~3 % here)
    for synapse, name in tau_biases.items():
        hidden = np.median(hidden_tau(board, neurons, synapse))
        assert hidden == pytest.approx(target, rel=0.04), synapse  # the chip's real tau, not only the probe's reading
        assert board.get_bias(CHIP, core, name) == BiasValue(*result.tuning.settings[(CHIP, core)][name])
        median, err = result.after[(CHIP, core)][synapse.name].median_s, result.after[(CHIP, core)][synapse.name].err_s
        assert 0 < err < 0.02 * median
    assert board.chip_s - before == pytest.approx(0.75 * len(result.tuning.history), abs=0.75 * 2 * TauProbeConfig().retries)
    assert set(result.summary()) >= {"tau_ms_before", "tau_ms_after", "tau_target_ms", "tau_rel_error_after"}


def test_board_calibration_tunes_a_synaptic_time_constant_target(board):
    result = calibrate_board(board, CHIP, [0], "samna_recommended", BoardTargets(saturation_hz=None, synaptic_tau_s=0.02),
                             dc_sweep=((5, 40), (5, 110), (5, 250)), max_rounds=4)
    assert result.tau is not None and result.tau.worst_error("before") > 0.2  # samna_recommended: ~13 ms
    assert result.tau.worst_error("after") < 0.03
    probed = [NeuronAddress(CHIP, 0, n) for n in range(20, 256)]
    for synapse in (SynapseType.AMPA, SynapseType.GABA_B):
        assert np.median(hidden_tau(board, probed, synapse)) == pytest.approx(0.02, rel=0.04)
    # the probe's synapse gains and weights are back at the published set, the tuned taus stay
    assert result.biases[(CHIP, 0, "PS_WEIGHT_EXC_F_N")] == BiasValue(7, 0)
    assert result.biases[(CHIP, 0, "NPDPIE_THR_F_P")] == BiasValue(7, 0)
    assert result.summary()["tau_ms_after"]["0/0"]["AMPA"][0] == pytest.approx(20.0, rel=0.03)
    with pytest.raises(ValueError, match="synaptic_tau_s"):
        BoardTargets(synaptic_tau_s=2.0)
