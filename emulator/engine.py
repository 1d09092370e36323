"""The compiled simulation kernel: DPI neurons and synapses on a fixed time step.

Equations (current mode; every current in amperes)
--------------------------------------------------
Membrane (DPI adaptive exponential I&F in the linear regime I_mem >> I_gain of Chicca et al. 2014,
reference §1)::

    tau_mem dI_mem/dt = -(I_mem - I_0) (1 + (I_gabaA + I_ahp) / I_tau)
                        + (I_gain / I_tau) [I_in - I_ahp - I_tau]_+
                        + p (I_mem + I_gain)
    I_in   = I_ampa + g_nmda I_nmda - I_gabaB + I_dc (+ noise)
    g_nmda = I_mem / (I_mem + I_nmda_gate)           NMDA voltage gate (= 1 when IF_NMDA_N is 0)
    p      = feedback_gain * smoothstep(u),  u = (I_mem - I_ath) / (4 I_anorm) + 1/2 clipped to [0, 1],
             smoothstep(u) = u^2 (3 - 2u)            positive feedback

* GABA_A is shunting (adds to the leak), GABA_B subtractive; adaptation does both (reference §1).
* The input term is clipped at 0 and the leak relaxes towards I_0, so I_mem never drops below the
  dark current.  Dropping the full DPI's (1 + I_gain/I_mem) factor (the linear regime) makes the
  f-I curve LIF-like: a rheobase I_tau (1 + I_ath/I_gain), then saturation towards 1/t_ref.
* Positive feedback: teili and the INI simulator use a logistic sigmoid, rockpool the transistor
  exponential.  We keep the sigmoid's two parameters (onset I_ath, width I_anorm) but use the
  cubic smoothstep over I_ath +- 2 I_anorm: the same shape to within a few percent, exactly zero
  well below onset, and no exponential per neuron and step.
* Spike when I_mem > I_spk; then I_mem = I_reset, I_ahp += ahp_jump, and I_mem is **frozen** for
  the refractory period (the teili / Brian2 "unless refractory" choice; rockpool zeroes the
  input instead).  Synapses and adaptation keep evolving during the refractory period.

Synapses (DPI, linear regime) and adaptation::

    tau_syn dI_syn/dt = -I_syn,  I_syn += n_eff * syn_jump   per input event
    tau_ahp dI_ahp/dt = -I_ahp,  I_ahp += ahp_jump           per own spike

Integration (one step of ``dt``), identical in :mod:`emulator.brian2_reference`
-------------------------------------------------------------------------------
1. ``g_nmda`` and ``p`` are sampled from the state at the start of the step;
2. exponential Euler: each variable follows dx/dt = A + B x with A, B frozen at the start of the
   step: x <- x e^{B dt} + A (e^{B dt} - 1) / B.  Exact for the linear synapses and adaptation.
   A refractory membrane is left alone;
3. threshold: not refractory and I_mem > I_spk;
4. this step's spikes and this step's external input events add their synaptic jumps;
5. reset and refractory counter of the neurons that spiked.

That is Brian2's schedule (start, groups, thresholds, synapses, resets) with its
``exponential_euler`` method.  Steps 4 and 5 touch disjoint variables (4 the synapses, 5 the
membrane, refractory counter and adaptation), so the kernel folds the reset into the update passes
and delivers afterwards: the same result as Brian2's order.  The step's coefficients are computed
multiplied out by tau_mem = C_mem U_T / (kappa I_tau), which needs no division:
B dt = k ((p - 1) I_tau - I_gabaA - I_ahp), A dt = k ((I_tau + I_gabaA + I_ahp) I_0 +
I_gain (drive + p I_tau)) with k = dt kappa / (C_mem U_T); algebraically the equations above.

Numerics: float32
-----------------
State and parameters are float32 (the currents span 1e-30..1e-7 A, well inside float32's range;
relative rounding 6e-8 per operation).  ``e^x`` and ``(e^x - 1)/x`` come from one branch-free
routine (:func:`relax_factors`): Cody-Waite range reduction x = n ln 2 + r, |r| <= ln2/2, a
Taylor polynomial of degree 6 for (e^r - 1)/r, 2^n built from the exponent bits.  Relative error
below 5e-7 over the whole range (x clipped to [-87, 80], where float32 ends), no cancellation for
small x (there the polynomial *is* (e^x - 1)/x); when every |x| of a chip is below 0.34 the
reduction is the identity and :func:`small_relax_factors` skips it.  Brian2 computes the same
scheme in float64 with libm's exp, so the two agree to float32 rounding: a spike may move by one
step where a threshold crossing falls within rounding (none does on the reference test network
of ``tests/test_emulator_brian2.py``), rates agree far inside the issue's 2 %.
Currents decaying below 1e-30 A are flushed to 0 (float32 subnormals are ~100x slower).
Refractory counters are integers held in float32, exact up to 2^24 steps (1677 s at 0.1 ms; the
longest physical refractory period, IF_RFR_N at I_0, is about 2 s).

Memory layout and vectorisation
-------------------------------
Structure of arrays: the state is one flat float32 array of ``N_STATE`` rows and the parameters
one of ``N_PARAM`` rows, each row ``ROW`` = 4096 + 80 floats long.  Row ``k`` of neuron ``i`` is
element ``k * ROW + i``.  Parameters that are the same for every neuron, or follow from another
row, are scalars (:class:`KernelParameters`).  Two details make the loops vectorise and run at
cache speed:

* ``ROW`` is a compile-time constant, so every access of a loop is a constant offset from one of
  two base pointers (state, parameters).  LLVM then needs a single runtime alias check per pair
  of arrays instead of one per pair of rows (which made it give up on the earlier (N, 8) / (N, 16)
  layout), and emits 8-wide AVX2 code (``<8 x float>``).
* The 80-float padding: with rows exactly 4096 floats (16 KiB) apart, the ~24 rows one loop
  iteration touches all map to the same L1 set and alias each other in the 4 KiB store-forwarding
  check; padding made the loop 4x faster on the development machine.

The update of one neuron is branch-free (selects for refractoriness, threshold, reset, clipping
and flushing).  It runs as two passes per chip and step: :func:`_coefficients_pass` (feedback,
NMDA gate, the membrane's A dt and B dt into a small work array, synapse decays) and
:func:`_membrane_pass` (relaxation, threshold, reset, adaptation).  Two shorter loops ran faster
than one long one (more iterations in flight).  Every load and store in them is unconditional
(see :func:`_membrane_pass` for why that matters on AMD).  Measured on the development machine
(Zen 3, AVX2): about 1.0 + 0.7 ns per neuron and step for the two passes, from 16 ns before.
Spikes are written as flag bytes and collected through a uint64 view of them, one trailing-zero
count per spike.

Event delivery
--------------
The routing CSR (:mod:`emulator.routing`) lists for every input key the (target, synapse type,
CAM count) groups listening to it; :func:`delivery_table` packs each into 16 bits, so the whole
table stays mostly in cache, and an event adds ``n_eff(count) * syn_jump[type, target]``.  A spike
walks its neuron's keys (``neuron_key_ptr``/``neuron_keys``); external input events (pre-binned
per step) add theirs.  Deliveries go straight into the synapse rows of the state.

Partitions
----------
:func:`simulate` advances one *partition*: a set of chips (``block_start``) whose spikes only reach
chips of the same set.  Partitions share no state, so they run in parallel threads (the kernel
releases the GIL) for the whole call without synchronisation and with results identical to one
thread; :mod:`emulator.partition` finds them.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.topology import N_CORES_PER_CHIP, N_NEURONS, N_NEURONS_PER_CORE

N_SYNAPSE_TYPES = 4
GABA_B, GABA_A, NMDA, AMPA = 0, 1, 2, 3

#: Input keys arriving at one core (``emulator.routing``: key = (chip*4 + core)*1024 + address).
KEYS_PER_CORE = N_CORES_PER_CHIP * N_NEURONS_PER_CORE
assert KEYS_PER_CORE == 1 << 10 and N_NEURONS_PER_CORE == 1 << 8  # _add_key shifts by 10 and 8
assert sys.byteorder == "little"  # simulate reads the spike flag bytes as uint64 words
#: Row length of the state and parameter arrays: the 4096 neurons plus padding (see module doc).
ROW = N_NEURONS + 80

# --- state rows ------------------------------------------------------------------------------------
S_MEM = 0
S_SYN = 1  # 1..4: GABA_B, GABA_A, NMDA, AMPA (SynapseType order)
S_AHP = 5
S_REF = 6  # refractory steps left, counting the current one (a float holding an integer)
S_NOISE = 7
N_STATE = 8

# --- parameter rows --------------------------------------------------------------------------------
# Every row costs memory bandwidth, the update's limit, so what is uniform or follows from another
# row is a scalar (:class:`KernelParameters`): the feedback offset, and dt / tau_mem, which is
# I_tau times dt kappa / (C_mem U_T); 1 / I_tau is computed.
P_FB_SCALE = 0  # 1 / (4 I_anorm):  u = I_mem * P_FB_SCALE + KernelParameters.fb_offset
P_NMDA_GATE = 1
P_DC = 2
P_TAU = 3  # I_tau
P_GAIN = 4  # I_gain
P_SPK = 5
P_SYN_DECAY = 6  # 6..9
P_AHP_DECAY = 10
P_N_REF = 11
P_AHP_JUMP = 12
N_PARAM = 13

#: Currents that decay below this are set to 0, so long idle runs never reach subnormal floats
#: (which are ~100x slower).  Far below I_0, so without effect on the dynamics.
FLUSH_TO_ZERO_A = 1e-30
#: Largest refractory counter a float32 holds exactly.
MAX_REFRACTORY_STEPS = 2**24

#: Below this |B dt| the range reduction of :func:`relax_factors` has n = 0 (|x| log2(e) < 1/2).
SMALL_STEP = 0.34
#: Length of the kernel's scratch array: B dt and A dt of one block, ``ROW`` apart.
WORK_LEN = 2 * ROW

#: The compiled functions live in :mod:`emulator.kernel` (which imports numba); they are
#: available here too, imported on first use, so that importing the engine's layout and packing
#: does not load numba and LLVM (:mod:`emulator.kernel_library`).
_KERNEL_NAMES = frozenset({"relax_factors", "small_relax_factors", "simulate", "simulate_quiet",
                           "_coefficients_pass", "_membrane_pass", "_membrane_neuron", "_add_key", "_run_steps"})


def __getattr__(name: str):
    if name in _KERNEL_NAMES:
        from . import kernel

        return getattr(kernel, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def empty_state(i0: float) -> np.ndarray:
    """Flat float32 state of a network at rest: I_mem = I_0, everything else 0."""
    state = np.zeros(N_STATE * ROW, np.float32)
    state[S_MEM * ROW : S_MEM * ROW + N_NEURONS] = i0
    return state


def state_rows(state: np.ndarray) -> np.ndarray:
    """(N_STATE, 4096) view of a flat state array (the padding left out)."""
    return state.reshape(N_STATE, ROW)[:, :N_NEURONS]


@dataclass(frozen=True)
class KernelParameters:
    """The equation parameters as :func:`simulate` takes them."""

    rows: np.ndarray  # flat float32, N_PARAM rows of ROW
    i0: float
    i_reset: float
    feedback_gain: float
    fb_offset: float  # 1/2 - I_ath / (4 I_anorm), the same for every neuron
    dt_over_tau_per_amp: float  # dt / (tau_mem I_tau), the same for every neuron


def _uniform(name: str, values: np.ndarray) -> float:
    first = float(values.flat[0])
    if not np.allclose(values, first, rtol=1e-9, atol=0.0):
        raise ValueError(f"the kernel needs {name} equal for all neurons; it ranges "
                         f"{values.min():.6g}..{values.max():.6g}")
    return first


def pack_parameters(params) -> KernelParameters:
    """The kernel's form of a :class:`emulator.neuron_params.NeuronParameters`.

    Raises ``ValueError`` if the parameters break what the packed form relies on: feedback onset
    and width in the same ratio to the threshold for every neuron, and tau_mem I_tau the same for
    every neuron (tau_mem = C_mem U_T / (kappa I_tau), one capacitance for all).
    """
    packed = np.zeros((N_PARAM, ROW), np.float32)
    rows = packed[:, :N_NEURONS]
    fb_scale = 1.0 / (4.0 * params.i_feedback_width)
    fb_offset = _uniform("the feedback offset I_ath / (4 I_anorm)", 0.5 - params.i_feedback_onset * fb_scale)
    dt_over_tau_per_amp = _uniform("tau_mem * I_tau", params.dt / (params.tau_mem * params.i_tau))
    rows[P_FB_SCALE] = fb_scale
    rows[P_NMDA_GATE] = params.i_nmda_gate
    rows[P_DC] = params.i_dc
    rows[P_TAU] = params.i_tau
    rows[P_GAIN] = params.i_gain
    rows[P_SPK] = params.i_spk
    rows[P_SYN_DECAY : P_SYN_DECAY + N_SYNAPSE_TYPES] = params.syn_decay
    rows[P_AHP_DECAY] = params.ahp_decay
    rows[P_N_REF] = np.minimum(params.n_ref, MAX_REFRACTORY_STEPS)
    rows[P_AHP_JUMP] = params.ahp_jump
    return KernelParameters(packed.ravel(), float(params.i0), float(params.i_reset), float(params.feedback_gain),
                            fb_offset, dt_over_tau_per_amp)


@dataclass(frozen=True)
class DeliveryTable:
    """What one event adds, per routing entry, in 2 bytes (see :func:`delivery_table`)."""

    entry: np.ndarray  # uint16 per routing entry: type << 14 | (CAM count - 1) << 8 | target within its core
    weight_of_count: np.ndarray  # float32 (64,): n_eff of 1..64 matching CAM entries
    jump: np.ndarray  # flat float32, N_SYNAPSE_TYPES rows of ROW: syn_jump per type and neuron
    key_ptr: np.ndarray  # int32 copy of the routing's key_ptr (half the cache footprint of int64)
    spike_ptr: np.ndarray  # int32 (4097,): neuron i's spike adds spike_entry[spike_ptr[i]:spike_ptr[i + 1]]
    spike_entry: np.ndarray  # uint32: type << 18 | (CAM count - 1) << 12 | target neuron (board-wide)


def delivery_table(routing, params) -> DeliveryTable:
    """The routing entries packed for the kernel.

    Every entry of key k reaches a neuron of the core k // 1024 names (its chip and core), so
    the target within that core (8 bits), the synapse type (2 bits) and the CAM count (6 bits)
    fit in 16 bits.  The table for a full board is then 0.5 MB instead of 2 MB as (int32 index,
    float32 amount): mostly cache-resident, which made delivery about twice as fast.  An event
    adds ``weight_of_count[count - 1] * jump[type, target]``.
    """
    target = routing.key_target.astype(np.int64)
    key_of_entry = np.repeat(np.arange(len(routing.key_ptr) - 1), np.diff(routing.key_ptr))
    core_of_key = key_of_entry // KEYS_PER_CORE
    if not np.array_equal(target // N_NEURONS_PER_CORE, core_of_key):
        raise ValueError("routing entry outside the core its input key arrives at")
    count = routing.key_count.astype(np.int64)
    if len(count) and not (count.min() >= 1 and count.max() <= 64):
        raise ValueError("CAM count per routing entry must be 1..64")
    entry = (routing.key_type.astype(np.int64) << 14) | ((count - 1) << 8) | (target % N_NEURONS_PER_CORE)
    weight_of_count = np.zeros(64, np.float32)
    weight_of_count[count - 1] = routing.key_weight  # one value per count (the saturation curve)
    jump = np.zeros((N_SYNAPSE_TYPES, ROW), np.float32)
    jump[:, :N_NEURONS] = params.syn_jump
    # A spike's entries: those of all the keys it reaches, in neuron_keys order and each key's entry
    # order, so every synapse receives its events in the order of the per-key walk (same float sums).
    keys = routing.neuron_keys.astype(np.int64)
    starts, lengths = routing.key_ptr[keys], routing.key_ptr[keys + 1] - routing.key_ptr[keys]
    offsets = np.cumsum(lengths) - lengths
    of_spike = np.arange(lengths.sum()) - np.repeat(offsets, lengths) + np.repeat(starts, lengths)
    neuron_of_key = np.repeat(np.arange(N_NEURONS), np.diff(routing.neuron_key_ptr))
    spike_ptr = np.zeros(N_NEURONS + 1, np.int64)
    np.cumsum(np.bincount(neuron_of_key, weights=lengths, minlength=N_NEURONS).astype(np.int64), out=spike_ptr[1:])
    spike_entry = ((routing.key_type.astype(np.int64)[of_spike] << 18) | ((count[of_spike] - 1) << 12)
                   | target[of_spike]).astype(np.uint32)
    return DeliveryTable(entry.astype(np.uint16), weight_of_count, jump.ravel(), routing.key_ptr.astype(np.int32),
                         spike_ptr.astype(np.int32), spike_entry)
