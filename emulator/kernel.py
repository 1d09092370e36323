"""The compiled kernel of :mod:`emulator.engine` (equations, numerics, layout: see there).

Every function here is numba-compiled; importing this module loads numba and LLVM, which
:mod:`emulator.engine` itself does not (its layout, packing and tables are plain numpy).
:func:`simulate` advances one partition with or without input noise; :func:`simulate_quiet` is
the same step loop without noise and without allocations, the form
:mod:`emulator.kernel_library` compiles into a shared library.
"""

from __future__ import annotations

import numba
import numpy as np
from llvmlite import ir
from numba.core import types
from numba.extending import intrinsic

from .engine import (
    AMPA,
    FLUSH_TO_ZERO_A,
    GABA_A,
    GABA_B,
    NMDA,
    P_AHP_DECAY,
    P_AHP_JUMP,
    P_DC,
    P_FB_SCALE,
    P_GAIN,
    P_N_REF,
    P_NMDA_GATE,
    P_SPK,
    P_SYN_DECAY,
    P_TAU,
    ROW,
    S_AHP,
    S_MEM,
    S_NOISE,
    S_REF,
    S_SYN,
    SMALL_STEP,
    WORK_LEN,
)

#: LLVM fast-math flags of every kernel function: fused multiply-adds (``contract``), reassociated
#: sums (``reassoc``: vectorised loops) and no NaN/inf/signed-zero care, but neither ``arcp`` nor
#: ``afn``.  With those two (``fastmath=True``) LLVM divides by ``rcpps`` + one Newton step on
#: x86-64, and ``rcpps`` is an estimate whose bits each CPU vendor defines: the same target code
#: gave different spikes on AMD Zen 4 and Intel Emerald Rapids.  Without them every instruction is
#: an IEEE operation, so one target's code computes the same bits on every host
#: (docs/decisions.md, "No approximate reciprocals in the kernel").
KERNEL_FASTMATH = {"nnan", "ninf", "nsz", "contract", "reassoc"}  # a set: numba refuses a frozenset

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


@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", inline="always")
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


@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", nogil=True)
def _coefficients_pass(st, pr, work, n, i0, feedback_gain, fb_offset, dt_over_tau_per_amp):
    """Pass 1 over neurons 0..n-1 of the views: step 1; the membrane's B dt and A dt into rows 0
    and 1 of ``work`` (``ROW`` apart); the four synapses decayed in place.  Returns how many
    neurons have |B dt| >= ``SMALL_STEP`` (which relaxation routine pass 2 may use), as a float32
    sum: LLVM vectorises that reduction but not a maximum.

    The noise row is read even in the quiet kernel, where it is all zero: leaving the term out
    (tried) makes LLVM associate the sum differently in the noise runs and moves their bits."""
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
    return n_large




@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", inline="always")
def small_relax_factors(x):
    """:func:`relax_factors` for |x| < ``SMALL_STEP``, where its range reduction is the identity
    (n = 0, r = x): the same polynomial, without the reduction, the exponent bits and the division.
    Agrees with :func:`relax_factors` to the last bit up to how LLVM fuses the final multiply-add."""
    x2 = x * x
    x4 = x2 * x2
    q = ((_ONE + x * _F(1 / 2)) + x2 * (_F(1 / 6) + x * _F(1 / 24))) \
        + x4 * ((_F(1 / 120) + x * _F(1 / 720)) + x2 * _F(1 / 5040))
    return _ONE + x * q, q


@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", inline="always")
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


@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", nogil=True)
def _membrane_pass(st, pr, work, spiked, n, i_reset, n_large):
    """Pass 2: the membrane step from ``work``, the adaptation's decay, step 3 (threshold) and
    step 5 (reset); step 5 commutes with step 4, which only touches the synapses.

    Flags spikes in ``spiked``; returns their number as a float32 (an int64 counter would halve
    LLVM's vector width).  When no neuron of the block has |B dt| >= ``SMALL_STEP`` (``n_large``
    = 0, the usual case) the cheaper :func:`small_relax_factors` is exact and used.

    Every load is unconditional: with AVX2 only, a load or store under a condition becomes a
    masked move (vmaskmovps), microcoded and slow on AMD; LLVM also turns a store that may write
    back the value just loaded (the frozen membrane, the adaptation without a spike) into one,
    which is why the adaptation decays here and not in pass 1.  With AVX-512 (the development
    machine, Zen 4) masked moves are cheap, so I_mem is read back from the state rather than
    copied through ``work`` by pass 1: one store stream less (measured 2-3 % of the kernel).
    """
    count = _ZERO
    # Two copies of one loop on purpose: choosing the exp variant per element would put a branch
    # in the body and stop LLVM from vectorising it; choosing it once per block keeps both SIMD.
    if n_large == _ZERO:
        for j in range(n):
            e, phi = small_relax_factors(work[j])
            v, ref, ahp, spike = _membrane_neuron(
                st[S_MEM * ROW + j], st[S_REF * ROW + j], st[S_AHP * ROW + j] * pr[P_AHP_DECAY * ROW + j],
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
                st[S_MEM * ROW + j], st[S_REF * ROW + j], st[S_AHP * ROW + j] * pr[P_AHP_DECAY * ROW + j],
                work[ROW + j], pr[P_SPK * ROW + j], pr[P_N_REF * ROW + j], pr[P_AHP_JUMP * ROW + j], i_reset, e, phi)
            st[S_MEM * ROW + j] = v
            st[S_REF * ROW + j] = ref
            st[S_AHP * ROW + j] = ahp
            spiked[j] = spike
            count += _ONE if spike else _ZERO
    return count


_U = np.uint64
_U8, _U10, _U12, _U14, _U18 = _U(8), _U(10), _U(12), _U(14), _U(18)
_U63, _U255, _U4095 = _U(63), _U(255), _U(4095)
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


@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", nogil=True)
def simulate(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp, st, pr,
             noise_decay, noise_amplitude, noise_seed,
             key_ptr, key_entry, weight_of_count, jump, spike_ptr, spike_entry,
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
    spike_ptr, spike_entry : keys each neuron's spike reaches (:mod:`emulator.routing`)
    in_step, in_key : external input events of this partition, steps relative to this call, sorted
    monitor_gid, monitor_out : neuron per monitor slot (-1 = none or not in this partition) and
        the (n_steps, slots) output of their membrane current
    spike_step, spike_gid : output buffers; the call stops early when they could overflow and
        the caller grows them and continues
    spiked, spiked_words : scratch flag bytes of all 4096 neurons and a uint64 view of them
    """
    use_noise = noise_amplitude > 0.0
    if use_noise:
        np.random.seed(noise_seed)
    return _run_steps(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp,
                      st, pr, use_noise, noise_decay, noise_amplitude, key_ptr, key_entry, weight_of_count, jump,
                      spike_ptr, spike_entry, in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid,
                      spiked, spiked_words, np.empty(WORK_LEN, np.float32), np.zeros(1, np.int64))


@numba.njit(cache=True, fastmath=KERNEL_FASTMATH, error_model="numpy", nogil=True)
def simulate_quiet(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp, st,
                   pr, key_ptr, key_entry, weight_of_count, jump, spike_ptr, spike_entry,
                   in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid, spiked, spiked_words,
                   work, touch_sink):
    """:func:`simulate` without input noise and with its scratch arrays passed in (``work``:
    ``WORK_LEN`` float32, ``touch_sink``: one int64): nothing in it allocates or calls numba's
    runtime, so :mod:`emulator.kernel_library` can compile it into a plain shared library."""
    return _run_steps(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp,
                      st, pr, False, 0.0, 0.0, key_ptr, key_entry, weight_of_count, jump,
                      spike_ptr, spike_entry, in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid,
                      spiked, spiked_words, work, touch_sink)




@numba.njit(fastmath=KERNEL_FASTMATH, error_model="numpy", nogil=True, inline="always")
def _run_steps(n_steps, block_start, block_len, i0, i_reset, feedback_gain, fb_offset, dt_over_tau_per_amp, st, pr,
               use_noise, noise_decay, noise_amplitude, key_ptr, key_entry, weight_of_count, jump,
               spike_ptr, spike_entry, in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid,
               spiked, spiked_words, work, touch_sink):
    """The step loop of :func:`simulate` and :func:`simulate_quiet` (inlined into both, so the
    quiet one has no noise code at all)."""
    n_blocks = block_start.shape[0]
    capacity = spike_step.shape[0]
    n_spikes = 0
    next_input = 0
    n_inputs = in_step.shape[0]
    f_i0, f_reset, f_gain = np.float32(i0), np.float32(i_reset), np.float32(feedback_gain)
    f_offset, f_dt_over_tau = np.float32(fb_offset), np.float32(dt_over_tau_per_amp)
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
                if spike_ptr[i] < spike_ptr[i + 1]:  # a neuron nobody listens to has no entry to touch
                    touched += spike_entry[spike_ptr[i]]
            touch_sink[0] = touched
            for s in range(first_spike, n_spikes):
                i = np.int64(spike_gid[s])
                for e in range(_U(spike_ptr[i]), _U(spike_ptr[i + 1])):
                    code = _U(spike_entry[e])
                    syn_type = code >> _U18
                    target = code & _U4095
                    st[(_U_S_SYN + syn_type) * _U_ROW + target] += weight_of_count[(code >> _U12) & _U63] \
                        * jump[syn_type * _U_ROW + target]
        while next_input < n_inputs and in_step[next_input] == step:
            _add_key(in_key[next_input], st, key_ptr, key_entry, weight_of_count, jump)
            next_input += 1
        for m in range(monitor_gid.shape[0]):
            if monitor_gid[m] >= 0:
                monitor_out[step, m] = st[S_MEM * ROW + monitor_gid[m]]
    return n_spikes, n_steps
