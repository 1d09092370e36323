"""The emulator against its Brian2 reference model (mismatch off), and the real-time pacer."""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import SynapseType
from emulator.brian2_reference import run_brian2
from emulator.clock import RealTimePacer
from emulator.config import EmulatorConfig
from emulator.simulator import BoardSimulator

SYNAPSES_ON = {
    "NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (4, 100),
    "NPDPIE_THR_S_P": (2, 80), "PS_WEIGHT_EXC_S_N": (4, 100),
    "NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (4, 60),
    "NPDPII_THR_S_P": (2, 80), "PS_WEIGHT_INH_S_N": (5, 100),
    "IF_AHTHR_N": (3, 80), "IF_AHW_P": (5, 60),  # adaptation on as well
}


def test_fi_sweep_and_small_recurrent_network_agree_with_brian2():
    sim = BoardSimulator("B2REF001", EmulatorConfig.ideal())
    apply_bias_set(sim, "samna_recommended", overrides=SYNAPSES_ON)
    sweep = [(6, 50), (5, 25), (5, 40), (5, 80), (5, 160), (4, 40), (4, 120), (3, 100)]
    for slot, (coarse, fine) in enumerate(sweep):
        sim.set_bias(slot // 4, slot % 4, "IF_DC_P", coarse, fine)
    # a small recurrent network of 24 neurons on chip 2, core 0, all four synapse types,
    # plus spike-generator input and tau2 on some neurons
    rng = np.random.default_rng(7)
    sim.set_bias(2, 0, "IF_DC_P", 5, 45)
    sim.set_bias(2, 0, "IF_TAU2_N", 3, 60)
    for post in range(24):
        for k in range(10):
            sim.write_cam(2, post, k, 0, int(rng.integers(0, 24)), int(rng.integers(0, 4)))
        sim.write_cam(2, post, 10, 0, 100, SynapseType.AMPA)
        sim.write_sram(2, post, 1, 0, 0, 0, 0, 0, 1)
        sim.set_tau2(2, post, post % 3 == 0)
    sim.load_spike_generator([(2, 100, 1, 3000.0)] * 60)
    sim.start_spike_generator()

    brian = run_brian2(sim, 0.4, host_only=False)
    sim.run(0.4)
    emulated = sim.last_spikes

    # f-I sweep: firing rate per DC setting
    rates_b = brian.counts().reshape(16, 256).mean(axis=1)[: len(sweep)]
    rates_e = emulated.counts().reshape(16, 256).mean(axis=1)[: len(sweep)]
    assert rates_e[-1] > 50 and rates_e[0] == 0
    firing = rates_e > 0
    assert np.all(np.abs(rates_b[firing] - rates_e[firing]) <= 0.02 * rates_e[firing])
    assert np.array_equal(rates_b == 0, rates_e == 0)
    # recurrent network: spike counts
    net_b = brian.counts()[2048:2048 + 24]
    net_e = emulated.counts()[2048:2048 + 24]
    assert net_e.sum() > 50
    assert abs(int(net_b.sum()) - int(net_e.sum())) <= 0.02 * net_e.sum()
    assert np.all(np.abs(net_b - net_e) <= np.maximum(1, 0.02 * net_e))
    # float32 kernel vs float64 Brian2: a spike may move by a step where a threshold crossing is
    # within rounding, but nearly every spike coincides exactly (all of them on this network today)
    same = set(zip(brian.timestamp_us.tolist(), brian.global_id.tolist(), strict=True)) & \
        set(zip(emulated.timestamp_us.tolist(), emulated.global_id.tolist(), strict=True))
    assert len(same) >= 0.99 * len(emulated)


def test_strong_shunting_inhibition_agrees_with_brian2():
    """GABA_A shunting large enough that |B dt| > 1: the kernel's range-reduced exp path."""
    sim = BoardSimulator("B2REF004", EmulatorConfig.ideal())
    apply_bias_set(sim, "samna_recommended", overrides={"NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (3, 60),
                                                          "IF_DC_P": (6, 50)})
    sim.set_bias(0, 0, "IF_DC_P", 4, 60)
    for post in range(16):  # 1..16 CAM entries on the same inhibitory source
        for k in range(1 + post):
            sim.write_cam(0, post, k, 0, 200, SynapseType.GABA_A)
    sim.load_spike_generator([(0, 200, 1, 20000.0)], repeat=True)
    sim.start_spike_generator()
    params = sim.parameters()
    n_eff = sim.routing().key_weight.max()  # 16 entries, saturated
    shunt = params.syn_jump[SynapseType.GABA_A, 15] * n_eff / params.i_tau[15]
    assert shunt * sim.dt / params.tau_mem[15] > 1.0  # one event makes |B dt| = (1 + s - p) dt / tau_mem > 1

    brian = run_brian2(sim, 0.2, host_only=False)
    sim.run(0.2)
    counts_b, counts_e = brian.counts()[:256], sim.last_spikes.counts()[:256]
    assert counts_e[100] > 3 * counts_e[15] > 0  # unshunted control vs the most shunted neuron
    assert np.all(np.abs(counts_b - counts_e) <= np.maximum(1, 0.02 * counts_e))
    same = set(zip(brian.timestamp_us.tolist(), brian.global_id.tolist(), strict=True)) & \
        set(zip(sim.last_spikes.timestamp_us.tolist(), sim.last_spikes.global_id.tolist(), strict=True))
    assert len(same) >= 0.99 * len(sim.last_spikes)


def test_brian2_reference_leaves_the_simulator_alone():
    sim = BoardSimulator("B2REF002", EmulatorConfig.ideal())
    apply_bias_set(sim, "samna_recommended", overrides={"IF_DC_P": (5, 60)})
    sim.inject_spike(0, 0, 1, 1)
    before = sim.state.values.copy()
    run_brian2(sim, 0.01)
    assert sim.now_us == 0 and len(sim._host_spikes) == 1 and np.array_equal(sim.state.values, before)


def test_real_time_pacer_sleeps_when_ahead_and_reports_lag_when_behind():
    class FakeClock:
        def __init__(self) -> None:
            self.now = 0.0

        def __call__(self) -> float:
            return self.now

        def sleep(self, s: float) -> None:
            self.now += s

    sim = BoardSimulator("CLOCK001", EmulatorConfig.ideal())
    clock = FakeClock()
    pacer = RealTimePacer(sim, slice_s=0.01, clock=clock, sleep=clock.sleep)
    pacer.run(0.05)
    assert sim.time_s == 0.05 and clock.now == 0.05 and pacer.lag.max_s == 0.0

    slow = RealTimePacer(sim, slice_s=0.01, clock=clock, sleep=clock.sleep)
    original_run = sim.run

    def slow_run(duration: float):
        clock.now += 2 * duration  # the machine simulates at half real time
        return original_run(duration)

    sim.run = slow_run
    slow.run(0.03)
    assert slow.lag.slices == 3 and abs(slow.lag.max_s - 0.03) < 1e-9 and abs(slow.lag.last_s - 0.03) < 1e-9
