"""From bias currents and mismatch to the per-neuron parameters of the equations.

The model (documented in full in :mod:`emulator.engine`) uses, per neuron ``i``:

=================  ===========================================================================
``i_tau``          membrane leak current: IF_TAU1_N, or IF_TAU2_N for neurons switched to tau2,
                   times the neuron's tau mismatch; floored at I_0 (a transistor never conducts
                   less than its dark current, as in rockpool)
``tau_mem``        C_mem * U_T / (kappa * i_tau)
``i_gain``         IF_THR_N (soma DPI gain current; *not* the firing threshold)
``i_dc``           IF_DC_P
``i_spk``          spike threshold current (layout constant on SE1) times threshold mismatch
``n_ref``          refractory period in steps: C_ref * V_switch / IF_RFR_N, times mismatch
``syn_decay``      (4, N) exp(-dt / tau_syn), tau_syn = C_syn * U_T / (kappa * I_tau,syn)
``syn_jump``       (4, N) charge added per event and matching CAM entry:
                   (I_gain,syn * I_w / I_tau,syn) * (1 - exp(-t_pulse / tau_syn)) * weight mismatch,
                   t_pulse = C_pulse * V_switch / PULSE_PWLK_P (rockpool's exact pulse solution;
                   assumes t_pulse << dt, the charge is added at once)
``i_nmda_gate``    IF_NMDA_N: NMDA current enters as I_nmda * I_mem / (I_mem + I_nmda_gate)
``ahp_decay``,     adaptation DPI: tau_ahp from IF_AHTAU_N, jump per spike
``ahp_jump``       (IF_AHTHR_N * IF_AHW_P / IF_AHTAU_N) * (1 - exp(-ahp_pulse / tau_ahp))
=================  ===========================================================================

Synapse type order everywhere is ``SynapseType``: 0 GABA_B, 1 GABA_A, 2 NMDA, 3 AMPA.
The temperature drift factor multiplies every subthreshold current (leak, gain, synapse and
adaptation currents); refractory and pulse currents and DC are left alone.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.topology import N_NEURONS, N_NEURONS_PER_CORE, SynapseType

from .config import EmulatorConfig
from .mismatch import BIAS_INDEX, MismatchFactors

#: (time-constant bias, gain bias, weight bias) per synapse type, in SynapseType order.
SYNAPSE_BIASES: dict[SynapseType, tuple[str, str, str]] = {
    SynapseType.GABA_B: ("NPDPII_TAU_S_P", "NPDPII_THR_S_P", "PS_WEIGHT_INH_S_N"),
    SynapseType.GABA_A: ("NPDPII_TAU_F_P", "NPDPII_THR_F_P", "PS_WEIGHT_INH_F_N"),
    SynapseType.NMDA: ("NPDPIE_TAU_S_P", "NPDPIE_THR_S_P", "PS_WEIGHT_EXC_S_N"),
    SynapseType.AMPA: ("NPDPIE_TAU_F_P", "NPDPIE_THR_F_P", "PS_WEIGHT_EXC_F_N"),
}

#: Largest refractory period in steps (the int32 counter of the engine).
_MAX_REFRACTORY_STEPS = 2**31 - 1


@dataclass(frozen=True)
class NeuronParameters:
    """Per-neuron parameter arrays (length 4096, or (4, 4096) for synapses), SI units."""

    dt: float
    i0: float
    i_reset: float
    feedback_gain: float
    i_tau: np.ndarray
    tau_mem: np.ndarray
    leak_decay: np.ndarray  # exp(-dt / tau_mem)
    i_gain: np.ndarray
    i_dc: np.ndarray
    i_spk: np.ndarray
    i_feedback_onset: np.ndarray
    i_feedback_width: np.ndarray
    t_ref: np.ndarray
    n_ref: np.ndarray  # int32
    tau_syn: np.ndarray
    syn_decay: np.ndarray
    syn_jump: np.ndarray
    i_nmda_gate: np.ndarray
    tau_ahp: np.ndarray
    ahp_decay: np.ndarray
    ahp_jump: np.ndarray


def per_neuron(core_values: np.ndarray) -> np.ndarray:
    """Expand a (4 chips, 4 cores) array to the 4096 neurons."""
    return np.repeat(np.asarray(core_values).reshape(-1), N_NEURONS_PER_CORE)


def derive_parameters(currents: np.ndarray, use_tau2: np.ndarray, mismatch: MismatchFactors,
                      config: EmulatorConfig, drift: float = 1.0) -> NeuronParameters:
    """Compute every equation parameter from the bias currents of shape (4, 4, 25)."""
    c = config.circuit
    dt = config.dt
    ut_over_kappa = c.ut / c.kappa

    def bias(name: str) -> np.ndarray:
        return per_neuron(currents[:, :, BIAS_INDEX[name]])

    i_tau = np.where(use_tau2, bias("IF_TAU2_N"), bias("IF_TAU1_N")) * drift * mismatch.tau_mem
    i_tau = np.maximum(i_tau, c.i0)
    tau_mem = c.c_mem * ut_over_kappa / i_tau
    i_gain = bias("IF_THR_N") * drift * mismatch.gain
    i_dc = bias("IF_DC_P") * mismatch.dc
    i_spk = np.full(N_NEURONS, c.i_spike_threshold) * mismatch.threshold
    t_ref = c.c_ref * c.v_switch / np.maximum(bias("IF_RFR_N"), c.i0) * mismatch.refractory
    n_ref = np.minimum(np.rint(t_ref / dt), _MAX_REFRACTORY_STEPS).astype(np.int32)

    t_pulse = c.c_pulse * c.v_switch / np.maximum(bias("PULSE_PWLK_P"), c.i0)
    tau_syn = np.empty((4, N_NEURONS))
    syn_jump = np.empty((4, N_NEURONS))
    for syn_type, (tau_name, gain_name, weight_name) in SYNAPSE_BIASES.items():
        i_tau_syn = np.maximum(bias(tau_name) * drift * mismatch.syn_tau[syn_type], c.i0)
        tau = c.c_syn[syn_type] * ut_over_kappa / i_tau_syn
        tau_syn[syn_type] = tau
        i_gain_syn = bias(gain_name) * drift
        syn_jump[syn_type] = (i_gain_syn * bias(weight_name) / i_tau_syn) * -np.expm1(-t_pulse / tau) \
            * mismatch.syn_weight[syn_type]

    i_ahp_tau = np.maximum(bias("IF_AHTAU_N") * drift * mismatch.ahp, c.i0)
    tau_ahp = c.c_ahp * ut_over_kappa / i_ahp_tau
    ahp_jump = (bias("IF_AHTHR_N") * drift * bias("IF_AHW_P") / i_ahp_tau) * -np.expm1(-c.ahp_pulse_s / tau_ahp)

    return NeuronParameters(
        dt=dt,
        i0=c.i0,
        i_reset=c.i_reset,
        feedback_gain=c.feedback_gain,
        i_tau=i_tau,
        tau_mem=tau_mem,
        leak_decay=np.exp(-dt / tau_mem),
        i_gain=i_gain,
        i_dc=i_dc,
        i_spk=i_spk,
        i_feedback_onset=c.feedback_onset * i_spk,
        i_feedback_width=c.feedback_width * i_spk,
        t_ref=t_ref,
        n_ref=n_ref,
        tau_syn=tau_syn,
        syn_decay=np.exp(-dt / tau_syn),
        syn_jump=syn_jump,
        i_nmda_gate=bias("IF_NMDA_N") * drift,
        tau_ahp=tau_ahp,
        ahp_decay=np.exp(-dt / tau_ahp),
        ahp_jump=ahp_jump,
    )
