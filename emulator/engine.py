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
  well below onset, and no exponential per neuron and step (the kernel's largest cost otherwise).
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
``exponential_euler`` method, so the Brian2 reference reproduces the emulator to rounding error.
e^x and (e^x - 1)/x use a Taylor series where |x| < 0.05 (typical |B dt| is 0.005; relative error
< 1e-10), libm elsewhere.  Currents decaying below 1e-30 A are flushed to 0 (no subnormals).

Memory layout
-------------
The state is one (N, 8) array and the parameters one (N, 16) array, one row per neuron (columns
below), so one neuron's update touches three consecutive cache lines.  The loop is scalar: LLVM
did not vectorise it in any layout we tried (it needs too many runtime alias checks).
"""

from __future__ import annotations

import math

import numba
import numpy as np

N_SYNAPSE_TYPES = 4
GABA_B, GABA_A, NMDA, AMPA = 0, 1, 2, 3

# --- state columns ---------------------------------------------------------------------------------
S_MEM = 0
S_SYN = 1  # 1..4: GABA_B, GABA_A, NMDA, AMPA (SynapseType order)
S_AHP = 5
S_REF = 6  # refractory steps left, counting the current one (a float holding an integer)
S_NOISE = 7
N_STATE = 8

# --- parameter columns -----------------------------------------------------------------------------
P_FB_ONSET = 0  # I_ath
P_FB_INV4W = 1  # 1 / (4 I_anorm)
P_NMDA_GATE = 2
P_DC = 3
P_TAU = 4  # I_tau
P_INV_TAU_I = 5  # 1 / I_tau
P_INV_TAU_MEM = 6  # 1 / tau_mem
P_GAIN_RATIO = 7  # I_gain / I_tau
P_GAIN = 8
P_SPK = 9
P_SYN_DECAY = 10  # 10..13
P_AHP_DECAY = 14
P_N_REF = 15
N_PARAM = 16

#: Currents that decay below this are set to 0, so long idle runs never reach subnormal floats
#: (which are ~100x slower).  Far below I_0, so without effect on the dynamics.
FLUSH_TO_ZERO_A = 1e-30


@numba.njit(cache=True, error_model="numpy", inline="always")
def relax_factors(x: float) -> tuple[float, float]:
    """(e^x, (e^x - 1)/x): Taylor series for |x| < 0.05 (relative error < 1e-10), else libm."""
    if -0.05 < x < 0.05:
        phi = 1.0 + x * (0.5 + x * (1.0 / 6.0 + x * (1.0 / 24.0 + x * (1.0 / 120.0 + x * (1.0 / 720.0)))))
        return 1.0 + x * phi, phi
    e = math.exp(x)
    return e, (e - 1.0) / x


@numba.njit(cache=True, error_model="numpy", inline="always")
def _decay(x: float, factor: float) -> float:
    y = x * factor
    return y if y > FLUSH_TO_ZERO_A else 0.0


@numba.njit(cache=True, error_model="numpy")
def _integrate(n: int, dt: float, i0: float, feedback_gain: float, state: np.ndarray, params: np.ndarray,
               spiking: np.ndarray) -> int:
    """Steps 1-3 for every neuron; the ids of neurons crossing threshold go to ``spiking``."""
    n_spiking = 0
    for i in range(n):
        i_gabab = state[i, S_SYN + GABA_B]
        i_gabaa = state[i, S_SYN + GABA_A]
        i_nmda = state[i, S_SYN + NMDA]
        i_ampa = state[i, S_SYN + AMPA]
        ahp = state[i, S_AHP]
        ref = state[i, S_REF]
        if ref > 0.0:
            ref -= 1.0
            state[i, S_REF] = ref
        if ref == 0.0:
            v = state[i, S_MEM]
            u = (v - params[i, P_FB_ONSET]) * params[i, P_FB_INV4W] + 0.5
            p = 0.0
            if u > 0.0:
                u = min(u, 1.0)
                p = feedback_gain * u * u * (3.0 - 2.0 * u)
            nmda_in = 0.0
            if i_nmda != 0.0:
                nmda_in = i_nmda * v / (v + params[i, P_NMDA_GATE])
            drive = i_ampa + nmda_in - i_gabab + params[i, P_DC] + state[i, S_NOISE] - ahp - params[i, P_TAU]
            if drive < 0.0:
                drive = 0.0
            s = (i_gabaa + ahp) * params[i, P_INV_TAU_I]
            inv_tau = params[i, P_INV_TAU_MEM]
            b = (p - 1.0 - s) * inv_tau
            a = ((1.0 + s) * i0 + params[i, P_GAIN_RATIO] * drive + p * params[i, P_GAIN]) * inv_tau
            e, phi = relax_factors(b * dt)
            v = v * e + a * phi * dt
            state[i, S_MEM] = v
            if v > params[i, P_SPK]:
                spiking[n_spiking] = i
                n_spiking += 1
        if i_gabab != 0.0:
            state[i, S_SYN + GABA_B] = _decay(i_gabab, params[i, P_SYN_DECAY + GABA_B])
        if i_gabaa != 0.0:
            state[i, S_SYN + GABA_A] = _decay(i_gabaa, params[i, P_SYN_DECAY + GABA_A])
        if i_nmda != 0.0:
            state[i, S_SYN + NMDA] = _decay(i_nmda, params[i, P_SYN_DECAY + NMDA])
        if i_ampa != 0.0:
            state[i, S_SYN + AMPA] = _decay(i_ampa, params[i, P_SYN_DECAY + AMPA])
        if ahp != 0.0:
            state[i, S_AHP] = _decay(ahp, params[i, P_AHP_DECAY])
    return n_spiking


@numba.njit(cache=True, error_model="numpy")
def _deliver(key: int, state: np.ndarray, syn_jump: np.ndarray, key_ptr: np.ndarray, key_target: np.ndarray,
             key_type: np.ndarray, key_weight: np.ndarray) -> None:
    """Add the synaptic jumps of one event arriving as input key ``key``."""
    for e in range(key_ptr[key], key_ptr[key + 1]):
        t = key_target[e]
        syn = key_type[e]
        state[t, S_SYN + syn] += key_weight[e] * syn_jump[t, syn]


@numba.njit(cache=True, error_model="numpy", nogil=True)
def simulate(n_steps, dt, i0, i_reset, feedback_gain, state, params, syn_jump, ahp_jump,
             noise_decay, noise_amplitude, noise_seed,
             key_ptr, key_target, key_type, key_weight, neuron_key_ptr, neuron_keys,
             in_step, in_key, monitor_gid, monitor_out, spike_step, spike_gid):
    """Advance the network by ``n_steps``; return (number of spikes, steps done).

    ``state`` (N, 8) is modified in place.  ``in_step`` (sorted, relative to this call) and
    ``in_key`` are the external input events.  Stops early when the spike buffers could overflow;
    the caller grows them and continues.
    """
    n = state.shape[0]
    spiking = np.empty(n, np.int64)
    capacity = spike_step.shape[0]
    n_spikes = 0
    use_noise = noise_amplitude > 0.0
    if use_noise:
        np.random.seed(noise_seed)
    next_input = 0
    n_inputs = in_step.shape[0]
    for step in range(n_steps):
        if n_spikes + n > capacity:
            return n_spikes, step
        n_spiking = _integrate(n, dt, i0, feedback_gain, state, params, spiking)
        if use_noise:
            for i in range(n):
                state[i, S_NOISE] = state[i, S_NOISE] * noise_decay + noise_amplitude * np.random.standard_normal()
        # step 4: deliver spikes routed inside the grid and external input events
        for j in range(n_spiking):
            src = spiking[j]
            for kk in range(neuron_key_ptr[src], neuron_key_ptr[src + 1]):
                _deliver(neuron_keys[kk], state, syn_jump, key_ptr, key_target, key_type, key_weight)
        while next_input < n_inputs and in_step[next_input] == step:
            _deliver(in_key[next_input], state, syn_jump, key_ptr, key_target, key_type, key_weight)
            next_input += 1
        # step 5: reset
        for j in range(n_spiking):
            i = spiking[j]
            state[i, S_MEM] = i_reset
            state[i, S_REF] = params[i, P_N_REF]
            state[i, S_AHP] += ahp_jump[i]
            spike_step[n_spikes] = step
            spike_gid[n_spikes] = i
            n_spikes += 1
        for m in range(monitor_gid.shape[0]):
            if monitor_gid[m] >= 0:
                monitor_out[step, m] = state[monitor_gid[m], S_MEM]
    return n_spikes, n_steps


def pack_parameters(params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(params (N, 16), syn_jump (N, 4), ahp_jump (N,)) arrays for :func:`simulate`.

    ``params`` is a :class:`emulator.neuron_params.NeuronParameters`.
    """
    n = len(params.i_tau)
    packed = np.empty((n, N_PARAM))
    packed[:, P_FB_ONSET] = params.i_feedback_onset
    packed[:, P_FB_INV4W] = 1.0 / (4.0 * params.i_feedback_width)
    packed[:, P_NMDA_GATE] = params.i_nmda_gate
    packed[:, P_DC] = params.i_dc
    packed[:, P_TAU] = params.i_tau
    packed[:, P_INV_TAU_I] = 1.0 / params.i_tau
    packed[:, P_INV_TAU_MEM] = 1.0 / params.tau_mem
    packed[:, P_GAIN_RATIO] = params.i_gain / params.i_tau
    packed[:, P_GAIN] = params.i_gain
    packed[:, P_SPK] = params.i_spk
    packed[:, P_SYN_DECAY : P_SYN_DECAY + 4] = params.syn_decay.T
    packed[:, P_AHP_DECAY] = params.ahp_decay
    packed[:, P_N_REF] = params.n_ref
    return packed, np.ascontiguousarray(params.syn_jump.T), np.ascontiguousarray(params.ahp_jump)
