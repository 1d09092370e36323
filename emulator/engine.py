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

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

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

_F = np.float32
_LOG2E = _F(1.4426950408889634)
_LN2_HI = _F(0.693359375)  # ln 2 split so that n * _LN2_HI is exact (Cody-Waite)
_LN2_LO = _F(-2.12194440e-4)
_X_MIN = _F(-87.0)  # e^-87 ~ 1.6e-38: the smallest normal float32 scale 2^-126 still fits
_X_MAX = _F(80.0)
_FLUSH = _F(FLUSH_TO_ZERO_A)
_ONE = _F(1.0)
_ZERO = _F(0.0)


@intrinsic
def _float32_from_bits(typingctx, bits):
    """Reinterpret an int32 as float32 (an LLVM bitcast, which vectorises)."""
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@intrinsic
def _trailing_zeros(typingctx, word):
    """Number of trailing zero bits of a uint64 (LLVM cttz: one tzcnt/bsf instruction)."""
    sig = types.uint64(types.uint64)

    def codegen(context, builder, signature, args):
        return builder.cttz(args[0], ir.Constant(ir.IntType(1), 0))

    return sig, codegen


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def relax_factors(x):
    """(e^x, (e^x - 1)/x) in float32 without branches; x is clipped to [-87, 80].

    x = n ln2 + r with |r| <= ln2/2; q(r) = (e^r - 1)/r by its Taylor series to r^6 (truncation
    < 3e-8), evaluated in Estrin's scheme (shorter dependency chain than Horner's); e^x =
    2^n (1 + r q).  For n = 0 (|x| < 0.35) r = x and (e^x - 1)/x = q exactly, so the small-x case
    has no cancellation; elsewhere (e^x - 1)/x = (e^x - 1)/x computed directly.
    """
    x = min(max(x, _X_MIN), _X_MAX)
    n = np.floor(x * _LOG2E + _F(0.5))
    r = (x - n * _LN2_HI) - n * _LN2_LO
    r2 = r * r
    r4 = r2 * r2
    q = ((_ONE + r * _F(1 / 2)) + r2 * (_F(1 / 6) + r * _F(1 / 24))) \
        + r4 * ((_F(1 / 120) + r * _F(1 / 720)) + r2 * _F(1 / 5040))
    scale = _float32_from_bits((np.int32(n) + np.int32(127)) << np.int32(23))
    e = scale + scale * (r * q)
    small = n == _ZERO
    denominator = _ONE if small else x
    phi = q if small else (e - _ONE) / denominator
    return e, phi


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
def _coefficients_pass(st, pr, work, n, i0, feedback_gain, fb_offset, dt_over_tau_per_amp):
    """Pass 1 over neurons 0..n-1 of the views: step 1; the membrane's B dt, A dt and I_mem into
    rows 0, 1, 2 of ``work`` (``ROW`` apart); the four synapses decayed in place.  Returns how many
    neurons have |B dt| >= ``SMALL_STEP`` (which relaxation routine pass 2 may use), as a float32
    sum: LLVM vectorises that reduction but not a maximum."""
    n_large = _ZERO
    for j in range(n):
        v = st[S_MEM * ROW + j]
        i_gabab = st[(S_SYN + GABA_B) * ROW + j]
        i_gabaa = st[(S_SYN + GABA_A) * ROW + j]
        i_nmda = st[(S_SYN + NMDA) * ROW + j]
        i_ampa = st[(S_SYN + AMPA) * ROW + j]
        ahp = st[S_AHP * ROW + j]
        # 1. sampled feedback and NMDA gate
        u = min(max(v * pr[P_FB_SCALE * ROW + j] + fb_offset, _ZERO), _ONE)
        p = feedback_gain * u * u * (_F(3.0) - _F(2.0) * u)
        nmda_in = i_nmda * v / (v + pr[P_NMDA_GATE * ROW + j])
        # 2. coefficients of the exponential Euler step of the membrane
        i_tau = pr[P_TAU * ROW + j]
        drive = max(i_ampa + nmda_in - i_gabab + pr[P_DC * ROW + j] + st[S_NOISE * ROW + j] - ahp - i_tau, _ZERO)
        # with dt / tau_mem = k I_tau (k = dt_over_tau_per_amp) and s = (I_gabaA + I_ahp) / I_tau:
        #   B dt = (p - 1 - s) dt / tau_mem = k ((p - 1) I_tau - I_gabaA - I_ahp)
        #   A dt = ((1 + s) I_0 + (I_gain / I_tau) drive + p I_gain) dt / tau_mem
        #        = k ((I_tau + I_gabaA + I_ahp) I_0 + I_gain (drive + p I_tau))     (no division)
        shunt = i_gabaa + ahp
        b_dt = ((p - _ONE) * i_tau - shunt) * dt_over_tau_per_amp
        work[j] = b_dt
        n_large += _ONE if abs(b_dt) >= _F(SMALL_STEP) else _ZERO
        work[ROW + j] = ((i_tau + shunt) * i0 + pr[P_GAIN * ROW + j] * (drive + p * i_tau)) * dt_over_tau_per_amp
        # synapses: exact decay, flushed before they turn subnormal
        y = i_gabab * pr[(P_SYN_DECAY + GABA_B) * ROW + j]
        st[(S_SYN + GABA_B) * ROW + j] = y if y > _FLUSH else _ZERO
        y = i_gabaa * pr[(P_SYN_DECAY + GABA_A) * ROW + j]
        st[(S_SYN + GABA_A) * ROW + j] = y if y > _FLUSH else _ZERO
        y = i_nmda * pr[(P_SYN_DECAY + NMDA) * ROW + j]
        st[(S_SYN + NMDA) * ROW + j] = y if y > _FLUSH else _ZERO
        y = i_ampa * pr[(P_SYN_DECAY + AMPA) * ROW + j]
        st[(S_SYN + AMPA) * ROW + j] = y if y > _FLUSH else _ZERO
        work[2 * ROW + j] = v
    return n_large


#: Below this |B dt| the range reduction of :func:`relax_factors` has n = 0 (|x| log2(e) < 1/2).
SMALL_STEP = 0.34


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def small_relax_factors(x):
    """:func:`relax_factors` for |x| < ``SMALL_STEP``, where its range reduction is the identity
    (n = 0, r = x): the same polynomial, without the reduction, the exponent bits and the division.
    Agrees with :func:`relax_factors` to the last bit up to how LLVM fuses the final multiply-add."""
    x2 = x * x
    x4 = x2 * x2
    q = ((_ONE + x * _F(1 / 2)) + x2 * (_F(1 / 6) + x * _F(1 / 24))) \
        + x4 * ((_F(1 / 120) + x * _F(1 / 720)) + x2 * _F(1 / 5040))
    return _ONE + x * q, q


@numba.njit(cache=True, fastmath=True, error_model="numpy", inline="always")
def _membrane_neuron(v, ref_left, ahp, a_dt, threshold, n_ref, ahp_jump, i_reset, e, phi):
    """Pass 2 for one neuron from its loaded values: (I_mem, refractory steps, I_ahp, spiked).

    ``ahp`` is already decayed; (e, phi) = (e^{B dt}, (e^{B dt} - 1)/(B dt)).  Scalars only: an
    inlined function taking arrays brings reference counting calls into the loop, which stops
    vectorisation.
    """
    ref = max(ref_left - _ONE, _ZERO)
    active = ref == _ZERO
    v_new = v * e + a_dt * phi
    spike = active & (v_new > threshold)
    v_out = v_new if active else v
    v_out = i_reset if spike else v_out
    ref_out = n_ref if spike else ref
    ahp_out = (ahp if ahp > _FLUSH else _ZERO) + (ahp_jump if spike else _ZERO)
    return v_out, ref_out, ahp_out, spike


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
def _membrane_pass(st, pr, work, spiked, n, i_reset, n_large):
    """Pass 2: the membrane step from ``work``, the adaptation's decay, step 3 (threshold) and
    step 5 (reset); step 5 commutes with step 4, which only touches the synapses.

    Flags spikes in ``spiked``; returns their number as a float32 (an int64 counter would halve
    LLVM's vector width).  When no neuron of the block has |B dt| >= ``SMALL_STEP`` (``n_large``
    = 0, the usual case) the cheaper :func:`small_relax_factors` is exact and used.

    Every load is unconditional and every store plain: a load or store under a condition becomes
    a masked AVX move (vmaskmovps), microcoded and slow on AMD.  LLVM also turns a store that may
    write back the value just loaded from the same place (the frozen membrane, the adaptation
    without a spike) into one; hence I_mem comes from ``work`` and the adaptation decays here,
    not in pass 1.
    """
    count = _ZERO
    # Two copies of one loop on purpose: choosing the exp variant per element would put a branch
    # in the body and stop LLVM from vectorising it; choosing it once per block keeps both SIMD.
    if n_large == _ZERO:
        for j in range(n):
            e, phi = small_relax_factors(work[j])
            v, ref, ahp, spike = _membrane_neuron(
                work[2 * ROW + j], st[S_REF * ROW + j], st[S_AHP * ROW + j] * pr[P_AHP_DECAY * ROW + j],
                work[ROW + j], pr[P_SPK * ROW + j], pr[P_N_REF * ROW + j], pr[P_AHP_JUMP * ROW + j], i_reset, e, phi)
            st[S_MEM * ROW + j] = v
            st[S_REF * ROW + j] = ref
            st[S_AHP * ROW + j] = ahp
            spiked[j] = spike
            count += _ONE if spike else _ZERO
    else:
        for j in range(n):
            e, phi = relax_factors(work[j])
            v, ref, ahp, spike = _membrane_neuron(
                work[2 * ROW + j], st[S_REF * ROW + j], st[S_AHP * ROW + j] * pr[P_AHP_DECAY * ROW + j],
                work[ROW + j], pr[P_SPK * ROW + j], pr[P_N_REF * ROW + j], pr[P_AHP_JUMP * ROW + j], i_reset, e, phi)
            st[S_MEM * ROW + j] = v
            st[S_REF * ROW + j] = ref
            st[S_AHP * ROW + j] = ahp
            spiked[j] = spike
            count += _ONE if spike else _ZERO
    return count


_U = np.uint64
_U8, _U10, _U14, _U63, _U255 = _U(8), _U(10), _U(14), _U(63), _U(255)
_U_ROW, _U_S_SYN = _U(ROW), _U(S_SYN)


@numba.njit(cache=True, error_model="numpy", nogil=True, inline="always")
def _add_key(key, st, key_ptr, key_entry, weight_of_count, jump):
    """Step 4 for one event arriving as input key ``key`` (entries: :class:`DeliveryTable`).

    All index arithmetic is unsigned: numba then drops its negative-index wraparound code, which
    made this loop a third slower.  ``KEYS_PER_CORE`` = 1024 and 256 neurons per core.
    """
    k = _U(key)
    core_base = (k >> _U10) << _U8
    for e in range(_U(key_ptr[k]), _U(key_ptr[k + _U(1)])):
        code = _U(key_entry[e])
        syn_type = code >> _U14
        target = core_base + (code & _U255)
        st[(_U_S_SYN + syn_type) * _U_ROW + target] += weight_of_count[(code >> _U8) & _U63] \
            * jump[syn_type * _U_ROW + target]


@numba.njit(cache=True, fastmath=True, error_model="numpy", nogil=True)
def simulate(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp, st, pr,
             noise_decay, noise_amplitude, noise_seed,
             key_ptr, key_entry, weight_of_count, jump, neuron_key_ptr, neuron_keys,
             in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid, spiked, spiked_words):
    """Advance the neurons of one partition by ``n_steps``; return (number of spikes, steps done).

    Parameters
    ----------
    block_start, block_len : the partition's neurons, ``block_start[b] + 0..block_len-1``
    i0 .. dt_over_tau_per_amp, pr : a :class:`KernelParameters`'s scalars and rows
    st : flat float32 state (``N_STATE * ROW``), modified in place
    noise_* : Ornstein-Uhlenbeck input noise (amplitude 0 = off); seeds numba's per-thread
        generator, so only a single partition may run with noise on
    key_ptr, key_entry, weight_of_count, jump : routing CSR pointers and :class:`DeliveryTable`
    neuron_key_ptr, neuron_keys : keys each neuron's spike reaches (:mod:`emulator.routing`)
    in_step, in_key : external input events of this partition, steps relative to this call, sorted
    monitor_gid, monitor_out : neuron per monitor slot (-1 = none or not in this partition) and
        the (n_steps, slots) output of their membrane current
    spike_step, spike_gid : output buffers; the call stops early when they could overflow and
        the caller grows them and continues
    spiked, spiked_words : scratch flag bytes of all 4096 neurons and a uint64 view of them
    """
    n_blocks = block_start.shape[0]
    capacity = spike_step.shape[0]
    n_spikes = 0
    use_noise = noise_amplitude > 0.0
    if use_noise:
        np.random.seed(noise_seed)
    next_input = 0
    n_inputs = in_step.shape[0]
    f_i0, f_reset, f_gain = np.float32(i0), np.float32(i_reset), np.float32(feedback_gain)
    f_offset, f_dt_over_tau = np.float32(fb_offset), np.float32(dt_over_tau_per_amp)
    work = np.empty(3 * ROW, np.float32)  # (B dt, A dt, I_mem) of one block
    touch_sink = np.zeros(1, np.int64)
    f_noise_decay, f_noise_amplitude = np.float32(noise_decay), np.float32(noise_amplitude)
    for step in range(n_steps):
        if n_spikes + n_blocks * block_len > capacity:
            return n_spikes, step
        n_spiking = _ZERO
        for b in range(n_blocks):
            lo = block_start[b]
            n_large = _coefficients_pass(st[lo:], pr[lo:], work, block_len, f_i0, f_gain, f_offset, f_dt_over_tau)
            n_spiking += _membrane_pass(st[lo:], pr[lo:], work, spiked[lo:], block_len, f_reset, n_large)
        if use_noise:
            for b in range(n_blocks):
                for i in range(block_start[b], block_start[b] + block_len):
                    st[S_NOISE * ROW + i] = (st[S_NOISE * ROW + i] * f_noise_decay
                                             + f_noise_amplitude * np.float32(np.random.standard_normal()))
        # step 4: this step's spikes (in neuron order), then the external input events
        first_spike = n_spikes
        if n_spiking > _ZERO:
            for b in range(n_blocks):
                lo = block_start[b]
                for w in range(lo // 8, (lo + block_len) // 8):
                    word = spiked_words[w]  # flag byte k of the word is bit 8k (little-endian)
                    while word != _U(0):
                        i = 8 * w + np.int64(_trailing_zeros(word) >> _U(3))
                        word &= word - _U(1)
                        spike_step[n_spikes] = step
                        spike_gid[n_spikes] = i
                        n_spikes += 1
            # Touch the first routing entry of every key this step's spikes reach before delivering:
            # independent loads whose cache misses overlap, where delivery would meet them one by one.
            touched = 0
            for s in range(first_spike, n_spikes):
                i = np.int64(spike_gid[s])
                for kk in range(neuron_key_ptr[i], neuron_key_ptr[i + 1]):
                    key = neuron_keys[kk]
                    if key_ptr[key] < key_ptr[key + 1]:  # a key nobody listens to has no entry to touch
                        touched += key_entry[key_ptr[key]]
            touch_sink[0] = touched
            for s in range(first_spike, n_spikes):
                i = np.int64(spike_gid[s])
                for kk in range(neuron_key_ptr[i], neuron_key_ptr[i + 1]):
                    _add_key(neuron_keys[kk], st, key_ptr, key_entry, weight_of_count, jump)
        while next_input < n_inputs and in_step[next_input] == step:
            _add_key(in_key[next_input], st, key_ptr, key_entry, weight_of_count, jump)
            next_input += 1
        for m in range(monitor_gid.shape[0]):
            if monitor_gid[m] >= 0:
                monitor_out[step, m] = st[S_MEM * ROW + monitor_gid[m]]
    return n_spikes, n_steps


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
    return DeliveryTable(entry.astype(np.uint16), weight_of_count, jump.ravel())
