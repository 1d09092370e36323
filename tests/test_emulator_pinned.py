"""The single-board kernel's output, pinned bit for bit.

The hashes below were computed with the kernel of main at 9aca207, before the kernel was made
faster (issue 21 item 2).  Any change of the kernel's arithmetic (an operation reordered, a fused
multiply-add more or less, a different exp) moves a float32 bit somewhere in these runs and fails
the test.  The batched emulator (issue 21 item 3) must be bit-compatible with this kernel for one
instance, so it is this output that both keep.

The float32 results depend on what LLVM emits for the target CPU (FMA contraction, vector width),
so every kernel is compiled for a reference target (``drivers.numba_target``: ``skylake-avx512`` on
x86-64 hosts with AVX-512, ``haswell`` on those with AVX2), and on what the CPU computes for that
code: the kernel holds no approximate instruction (``rcpps``, ``rsqrtps``: their bits are each
vendor's own), which ``test_kernel_code_holds_no_vendor_defined_estimates`` checks.  The hashes are
pinned per target.  History: 9aca207's kernel compiled for AMD Zen 4's own model gave 11c528a9... /
d16f10f4...; with the reference targets and ``fastmath=True`` the divisions became ``rcpps`` + a
Newton step and the hashes differed between Intel Emerald Rapids and AMD Zen 4 for the very same
code; without ``arcp`` (:data:`emulator.kernel.KERNEL_FASTMATH`) ``skylake-avx512`` code computes
on Zen 4 exactly what Zen 4's own model does.  Where no reference target runs (no AVX2, ARM) or a
user chose another one, the test is skipped, not weakened.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from drivers import numba_target
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

#: sha256 of (spike steps, spike ids, state buffer, membrane traces) of each scenario, per reference
#: target (9aca207's kernel arithmetic with :data:`emulator.kernel.KERNEL_FASTMATH`).
PINNED = {
    "skylake-avx512": {
        "full_board_two_threads": "11c528a99ff5100af0db446c4f274c3e4007ca26fd891965ea8c340aa71e0729",
        "fast_membrane_noise_one_thread": "6632a986b4858c1c5009c373ca55c64c22ff74926bf87f177a89bb7690bff073",
    },
    "haswell": {
        "full_board_two_threads": "35e3cde684c16dd812c8f1b1622299531abd47a7c0db55ba3b829cecd061e4c3",
        "fast_membrane_noise_one_thread": "3259cd08bd515f29703b55e823a07e1d69737b3eb0dc695788ef0e15a3ea2e37",
    },
}
# a user's NUMBA_CPU_NAME without its features compiles with the host's features: not a reference build
TARGET = numba_target.chosen_target() if os.environ.get("NUMBA_CPU_FEATURES") == "" else None


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


@pytest.mark.skipif(TARGET not in PINNED, reason=f"hashes pinned for the reference targets; this host compiles for {TARGET}")
@pytest.mark.parametrize("scenario", [full_board_two_threads, fast_membrane_noise_one_thread])
def test_kernel_output_is_bit_identical_to_the_pinned_runs(scenario):
    digest, n_spikes = scenario()
    assert n_spikes > 1000  # the runs exercise spiking, delivery and resets
    assert digest == PINNED[TARGET][scenario.__name__], f"{scenario.__name__} compiled for {TARGET}: {digest}"


#: x86 instructions whose results are estimates each CPU vendor defines (SSE/AVX ``rcpps``/``rsqrtps``
#: and their scalar forms, AVX-512 ``vrcp14``/``vrsqrt14``/``vrcp28``...): one of them in the kernel makes
#: the same code compute different bits on AMD and Intel.
VENDOR_DEFINED_ESTIMATE = re.compile(r"\bv?(?:rcp|rsqrt)(?:14|28)?[ps][sdh]\b")

_ASM_OF_KERNEL = """
import json, sys
import numpy as np
import numba
import emulator.kernel as kernel
from emulator.kernel import KERNEL_FASTMATH

sys.path.insert(0, "tests")
import test_emulator_pinned as pinned

pinned.fast_membrane_noise_one_thread()  # the noise kernel, with the large-step exp
pinned.full_board_two_threads()  # the quiet kernel, JIT-compiled from the IR the kernel library builds from
dispatchers = {name: getattr(kernel, name) for name in dir(kernel)}
asm = {name: "\\n".join(f.inspect_asm().values()) for name, f in dispatchers.items()
       if isinstance(f, numba.core.registry.CPUDispatcher) and f.signatures}

# a positive control: the same division compiled with fastmath=True, which this target turns into an estimate
@numba.njit(fastmath=True)
def divide(a, b):
    return a / b
divide(np.ones(64, np.float32), np.full(64, 3.0, np.float32))
asm["control: fastmath=True"] = "\\n".join(divide.inspect_asm().values())
print(json.dumps(asm))
"""


@pytest.mark.skipif(TARGET not in PINNED, reason=f"no reference target on this host ({TARGET})")
def test_kernel_code_holds_no_vendor_defined_estimates(tmp_path):
    """Compiled afresh (no numba cache) for this host's reference target, no kernel function holds an
    approximate reciprocal or square root; the same detector finds one in a division compiled with
    ``fastmath=True`` (so it can fail)."""
    env = {**os.environ, "NUMBA_DISABLE_CACHE": "1", "NUMBA_CACHE_DIR": str(tmp_path), "NEUROLAB_KERNEL": "jit"}
    out = subprocess.run([sys.executable, "-c", _ASM_OF_KERNEL], capture_output=True, text=True, env=env,
                         cwd=Path(__file__).resolve().parents[1], timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    asm = json.loads(out.stdout.strip().splitlines()[-1])
    control = asm.pop("control: fastmath=True")
    assert VENDOR_DEFINED_ESTIMATE.search(control), "the detector found no estimate in a fastmath division"
    assert {"simulate", "simulate_quiet"} <= set(asm), sorted(asm)
    found = {name: sorted(set(VENDOR_DEFINED_ESTIMATE.findall(code))) for name, code in asm.items()}
    assert not any(found.values()), f"vendor-defined estimates in the kernel: {found}"
