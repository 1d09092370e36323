"""The single-board kernel's output, pinned bit for bit.

The hashes below were computed with the kernel of main at 9aca207, before the kernel was made
faster (issue 21 item 2).  Any change of the kernel's arithmetic (an operation reordered, a fused
multiply-add more or less, a different exp) moves a float32 bit somewhere in these runs and fails
the test.  The batched emulator (issue 21 item 3) must be bit-compatible with this kernel for one
instance, so it is this output that both keep.

The float32 results depend on what LLVM emits for the host CPU (FMA contraction, vector width):
the hashes hold for x86-64 CPUs with AVX2 and FMA (the development machine and CI).  Elsewhere the
test is skipped, not weakened.
"""

from __future__ import annotations

import hashlib

import llvmlite.binding as llvm
import numpy as np
import pytest

from drivers.dynapse1.bias_sets import apply_bias_set
from drivers.dynapse1.topology import N_NEURONS, N_NEURONS_PER_CHIP, SynapseType
from emulator import engine
from emulator.config import EmulatorConfig, MismatchConfig
from emulator.simulator import BoardSimulator

SYNAPSES_ON = {
    "NPDPIE_THR_F_P": (2, 80), "PS_WEIGHT_EXC_F_N": (5, 60), "NPDPIE_THR_S_P": (2, 80), "PS_WEIGHT_EXC_S_N": (5, 60),
    "NPDPII_THR_F_P": (2, 80), "PS_WEIGHT_INH_F_N": (5, 60), "NPDPII_THR_S_P": (2, 80), "PS_WEIGHT_INH_S_N": (5, 60),
    "IF_AHTHR_N": (3, 80), "IF_AHW_P": (5, 60), "IF_NMDA_N": (4, 50),
}

#: sha256 of (spike steps, spike ids, state buffer, membrane traces) of each scenario on main at 9aca207.
PINNED = {
    "full_board_two_threads": "11c528a99ff5100af0db446c4f274c3e4007ca26fd891965ea8c340aa71e0729",
    "fast_membrane_noise_one_thread": "d16f10f429f07e524fdba65b5974c78ae6012fbdba1e20d361acc3845d4f0aa2",
}


def _host_has_avx2_fma() -> bool:
    features = llvm.get_host_cpu_features()
    return bool(features.get("avx2")) and bool(features.get("fma"))


def _recurrent_board(serial: str, config: EmulatorConfig, fan_in: int, seed: int) -> BoardSimulator:
    """Every neuron listens to ``fan_in`` random neurons of its own chip (all four synapse types)."""
    sim = BoardSimulator(serial, config)
    apply_bias_set(sim, "samna_recommended", overrides={**SYNAPSES_ON, "IF_DC_P": (5, 40)})
    rng = np.random.default_rng(seed)
    sources = rng.integers(0, N_NEURONS_PER_CHIP, size=(N_NEURONS, fan_in))
    t = sim.tables
    t.cam_core[:, :fan_in] = sources // 256
    t.cam_neuron[:, :fan_in] = sources % 256
    t.cam_type[:, :fan_in] = rng.choice([SynapseType.AMPA] * 3 + [SynapseType.NMDA, SynapseType.GABA_A,
                                                                  SynapseType.GABA_B], size=(N_NEURONS, fan_in))
    t.cam_written[:, :fan_in] = True
    t.sram[:, 1] = 0
    t.sram[:, 1, 0] = (np.arange(N_NEURONS) % N_NEURONS_PER_CHIP) // 256
    t.sram[:, 1, 5] = 15
    t.connectivity_version += 1
    sim.set_poisson_rate(2, 7, 300.0)
    sim.set_poisson_running(True)
    sim.load_spike_generator([(3, 9, 15, 700.0), (0, 200, 3, 1100.0)], repeat=True)
    sim.start_spike_generator()
    sim.select_monitor(0, 1, 3)
    sim.select_monitor(3, 2, 8)
    return sim


def _run_and_hash(sim: BoardSimulator, durations: tuple[float, ...]) -> tuple[str, int]:
    digest = hashlib.sha256()
    n_spikes = 0
    for duration in durations:
        host = sim.run(duration)
        every = sim.last_spikes
        n_spikes += len(every)
        for array in (every.timestamp_us, every.global_id, host.timestamp_us, host.global_id):
            digest.update(np.ascontiguousarray(array, dtype=np.int64).tobytes())
    digest.update(sim.state.buffer.tobytes())
    for chip, core in ((0, 1), (3, 2)):
        t_us, volts = sim.read_membrane(chip, core)
        digest.update(np.asarray(t_us, np.int64).tobytes() + np.asarray(volts, np.float64).tobytes())
    return digest.hexdigest(), n_spikes


def full_board_two_threads() -> tuple[str, int]:
    """All 4096 neurons, 48 CAM entries each, mismatch on, two threads; a short run on one thread."""
    sim = _recurrent_board("PIN00001", EmulatorConfig(kernel_threads=2), fan_in=48, seed=11)
    return _run_and_hash(sim, (0.1, 0.0013, 0.05))


def fast_membrane_noise_one_thread() -> tuple[str, int]:
    """Input noise on (one thread) and a core whose membrane is fast enough (dt / tau_mem up to 0.6)
    that the kernel takes its range-reduced exp."""
    config = EmulatorConfig(mismatch=MismatchConfig(noise_std_a=2e-12))
    sim = _recurrent_board("PIN00002", config, fan_in=16, seed=12)
    sim.set_bias(1, 2, "IF_TAU1_N", 1, 100)
    assert (sim.parameters().dt / sim.parameters().tau_mem).max() > engine.SMALL_STEP
    return _run_and_hash(sim, (0.06,))


@pytest.mark.skipif(not _host_has_avx2_fma(), reason="hashes pinned for x86-64 with AVX2 and FMA")
@pytest.mark.parametrize("scenario", [full_board_two_threads, fast_membrane_noise_one_thread])
def test_kernel_output_is_bit_identical_to_the_pinned_runs(scenario):
    digest, n_spikes = scenario()
    assert n_spikes > 1000  # the runs exercise spiking, delivery and resets
    assert digest == PINNED[scenario.__name__], f"{scenario.__name__}: {digest} (host CPU {llvm.get_host_cpu_name()})"
