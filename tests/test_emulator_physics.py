"""Emulator physics: f-I curve, refractory period, synapse signs and time constants, mismatch, seeds."""

from __future__ import annotations

import numpy as np
import pytest

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import SynapseType
from emulator.config import EmulatorConfig, MismatchConfig
from emulator.simulator import BoardSimulator

#: Synapse biases (libcaer numbering) that make every synapse type clearly effective.
SYNAPSES_ON = {
    "NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (4, 100),
    "NPDPIE_THR_S_P": (2, 80), "PS_WEIGHT_EXC_S_N": (4, 100),
    "NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (4, 100),
    "NPDPII_THR_S_P": (2, 80), "PS_WEIGHT_INH_S_N": (4, 100),
}
#: DC settings (libcaer coarse, fine) from below rheobase to saturation, one per core.
DC_SWEEP = [(6, 50), (6, 150), (5, 25), (5, 30), (5, 60), (5, 120), (5, 250), (4, 60),
            (4, 120), (4, 250), (3, 60), (3, 150), (2, 30), (1, 30), (0, 100), (0, 255)]


def ideal_board(**overrides) -> BoardSimulator:
    sim = BoardSimulator("TEST0001", EmulatorConfig.ideal())
    apply_bias_set(sim, "samna_recommended", overrides={**SYNAPSES_ON, **overrides})
    return sim


def core_rates(sim: BoardSimulator, duration: float) -> np.ndarray:
    """Mean rate per (chip, core) slot over all neurons, from every spike of the last run."""
    return sim.last_spikes.counts().reshape(16, 256).mean(axis=1) / duration


def test_power_up_is_silent():
    sim = BoardSimulator("TEST0001", EmulatorConfig())
    assert len(sim.run(0.2)) == 0


def test_fi_curve_silent_below_rheobase_monotonic_and_saturating():
    sim = ideal_board()
    for slot, (coarse, fine) in enumerate(DC_SWEEP):
        sim.set_bias(slot // 4, slot % 4, "IF_DC_P", coarse, fine)
    sim.run(1.0)
    rates = core_rates(sim, 1.0)
    assert rates[0] == 0.0  # 20 pA DC: below rheobase
    assert np.all(np.diff(rates) >= 0), rates
    mid = rates[(rates > 0) & (rates < 300)]
    assert len(mid) >= 4  # a useful graded range, not a step
    t_ref = sim.parameters().n_ref[0] * sim.dt
    assert rates[-1] <= 1.0 / t_ref + 1.0  # +1: the first spike comes without a refractory period
    assert rates[-1] > 0.95 / t_ref  # saturates towards 1/refractory period


def test_samna_recommended_with_moderate_dc_fires_tens_of_hz():
    sim = BoardSimulator("TEST0001", EmulatorConfig())  # mismatch on
    apply_bias_set(sim, "samna_recommended", overrides={"IF_DC_P": (5, 30)})
    sim.run(1.0)
    assert 10 < np.mean(sim.last_spikes.counts()) < 100


def test_refractory_period_sets_the_shortest_interval():
    sim = ideal_board(IF_DC_P=(0, 255))
    sim.set_bias(0, 1, "IF_RFR_N", 3, 64)  # half the current of core 0: twice the refractory period
    sim.run(0.2)
    params = sim.parameters()
    ev = sim.last_spikes
    for core in (0, 1):
        t = ev.timestamp_us[(ev.chip == 0) & (ev.core == core) & (ev.neuron == 0)]
        isi_steps = np.diff(t) / (sim.dt * 1e6)
        assert np.all(isi_steps == params.n_ref[core * 256])
    assert abs(params.t_ref[256] / params.t_ref[0] - 255 / 128 * 128 / 64 / 2) < 0.02 * 2


@pytest.mark.parametrize("synapse", list(SynapseType))
def test_synapse_sign(synapse):
    """200 Hz input through 4 CAM entries raises (excitatory) or lowers (inhibitory) a 40 Hz rate."""
    sim = ideal_board(IF_DC_P=(5, 40))
    for k in range(4):
        sim.write_cam(0, 10, k, 0, 7, synapse)  # neuron 10 listens; neuron 11 is the control
    sim.load_spike_generator([(0, 7, 1, 5000.0)], repeat=True)
    sim.start_spike_generator()
    sim.run(1.0)
    counts = sim.last_spikes.counts()
    driven, control = counts[10], counts[11]
    assert control > 20
    if synapse.is_excitatory:
        assert driven > 1.2 * control
    else:
        assert driven < 0.8 * control


@pytest.mark.parametrize("synapse", list(SynapseType))
def test_synapse_time_constant_follows_its_bias(synapse):
    from emulator.neuron_params import SYNAPSE_BIASES

    tau_bias = SYNAPSE_BIASES[synapse][0]
    sim = ideal_board()
    sim.set_bias(0, 0, tau_bias, 4, 200)  # 5.1 nA nominal
    sim.write_cam(0, 3, 0, 0, 9, synapse)
    sim.inject_spike(0, 0, 9, core_mask=1)
    sim.run(0.001)
    first = sim.state.i_syn[3, synapse]
    sim.run(0.010)
    second = sim.state.i_syn[3, synapse]
    c = sim.config.circuit
    current = sim.bias_current(0, 0, tau_bias)
    expected_tau = c.c_syn[synapse] * c.ut / (c.kappa * current)
    assert first > 0
    # float32 state: the per-step decay factor is rounded to 6e-8 and 100 steps compound it
    # (a tau off by 0.1 % would miss by 2.5e-4)
    assert second / first == pytest.approx(np.exp(-0.010 / expected_tau), rel=1e-5)


def test_rate_cv_under_mismatch_matches_configuration():
    def rate_cv(mismatch: MismatchConfig) -> float:
        sim = BoardSimulator("TEST0002", EmulatorConfig(mismatch=mismatch))
        apply_bias_set(sim, "samna_recommended", overrides={"IF_DC_P": (5, 45)})
        sim.run(0.5)
        rates = sim.last_spikes.counts()[:256] / 0.5
        return float(rates.std() / rates.mean())

    ideal = rate_cv(MismatchConfig.ideal())
    tau_only = rate_cv(MismatchConfig(biasgen_cv=0, refractory_cv=0, gain_cv=0, threshold_cv=0, dc_cv=0, ahp_cv=0,
                                      syn_tau_cv=0, syn_weight_cv=0, tau_mem_cv=0.18))
    tau_half = rate_cv(MismatchConfig(biasgen_cv=0, refractory_cv=0, gain_cv=0, threshold_cv=0, dc_cv=0, ahp_cv=0,
                                      syn_tau_cv=0, syn_weight_cv=0, tau_mem_cv=0.09))
    full = rate_cv(MismatchConfig())
    assert ideal == 0.0
    # The leak sets both tau and the DPI gain I_gain/I_tau, which largely cancel above rheobase,
    # so an 18 % tau CV gives a rate CV of a few percent; the rate spread still scales with it.
    assert 0.5 * tau_only < 2 * tau_half < 1.5 * tau_only
    assert 0.01 < tau_only < full
    assert 0.1 < full < 1.0  # all default CVs together: the broad spread the UG shows


def test_mismatch_factor_statistics():
    sim = BoardSimulator("TEST0003", EmulatorConfig())
    m = sim.mismatch
    assert np.std(m.tau_mem) / np.mean(m.tau_mem) == pytest.approx(0.18, rel=0.1)
    assert np.std(m.refractory) / np.mean(m.refractory) == pytest.approx(0.08, rel=0.1)
    assert np.std(m.syn_weight) / np.mean(m.syn_weight) == pytest.approx(0.20, rel=0.1)


def test_same_seed_same_events_and_serial_changes_the_board():
    def events(serial: str):
        cfg = EmulatorConfig(mismatch=MismatchConfig(noise_std_a=2e-12))
        sim = BoardSimulator(serial, cfg)
        apply_bias_set(sim, "samna_recommended", overrides={"IF_DC_P": (5, 30), **SYNAPSES_ON})
        for post in range(32):
            sim.write_cam(0, post, 0, 0, 200, SynapseType.AMPA)
        sim.set_poisson_rate(0, 200, 80.0)
        sim.set_poisson_running(True)
        return sim.run(0.3)

    a, b, c = events("EMU00001"), events("EMU00001"), events("EMU00002")
    assert len(a) > 0
    assert np.array_equal(a.timestamp_us, b.timestamp_us) and np.array_equal(a.global_id, b.global_id)
    assert len(a) != len(c) or not np.array_equal(a.global_id, c.global_id)


def test_membrane_trace_of_the_monitored_neuron():
    sim = ideal_board(IF_DC_P=(5, 60))
    sim.select_monitor(0, 2, 17)
    sim.run(0.1)
    t_us, volts = sim.read_membrane(0, 2)
    assert len(t_us) == 1000 and np.all(np.diff(t_us) == 100)
    assert volts.min() >= 0 and volts.max() <= 1.8 and volts.max() > volts.min()
    assert len(sim.read_membrane(0, 2)[0]) == 0  # drained
    assert len(sim.read_membrane(0, 3)[0]) == 0  # nothing monitored there
