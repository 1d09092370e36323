"""Nominal circuit model of the DYNAP-SE1 neuron and synapse circuits: the one home of its constants.

The emulator simulates with these constants (:class:`emulator.config.EmulatorConfig` takes them
as its defaults) and the conversion turns time constants and gains into bias settings with the
very same numbers (:class:`neurolab_gui.core.conversion.mapping.CircuitModel`), so the bias
settings the conversion computes are what the emulator's default configuration answers to.  They
are a *model* (``shared/reference/emulator.md`` §1-§3), not silicon facts: on silicon the
conversion's transfer matching corrects the result by measurement.

Bias → circuit current
----------------------
The bias generator delivers ``fine/255 * Imax[coarse]`` (libcaer numbering, ``bias_table``).  The
current a circuit actually sees is that value times a per-bias *scale*.  The absolute SE1 mapping
is not established ([U] in the reference §3; rockpool's SE1 code scaled IF_TAU1_N by 1e-4 and
called it "neither experimental nor theoretical").  Taken at face value, the published sets would
give membrane time constants of microseconds, so the subthreshold DPI biases (leak, gain, synapse
time constants and gains, adaptation, NMDA gate) get a common scale ``3.4e-4``.  That number makes
the samna-recommended leak (libcaer 3/80 = 15.7 nA nominal) a 20 ms membrane with C_mem = 3 pF.
Refractory currents are scaled by 0.02 (samna's IF_RFR_N 3/128 → about 2 ms).  DC, weights, the
adaptation weight and the pulse width are used as they are.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Scale of the subthreshold DPI biases (leak, gain, synapse time constants and gains, adaptation,
#: NMDA gate), see the module docstring.
SUBTHRESHOLD_SCALE = 3.4e-4
#: Scale of the refractory currents (samna's IF_RFR_N 3/128 -> about 2 ms).
REFRACTORY_SCALE = 0.02
#: Per-bias scale from the bias generator's nominal current to the current the circuit sees;
#: biases not listed are used as they are (scale 1).
DEFAULT_BIAS_SCALE: dict[str, float] = {
    "IF_TAU1_N": SUBTHRESHOLD_SCALE,
    "IF_TAU2_N": SUBTHRESHOLD_SCALE,
    "IF_THR_N": SUBTHRESHOLD_SCALE,
    "IF_AHTAU_N": SUBTHRESHOLD_SCALE,
    "IF_AHTHR_N": SUBTHRESHOLD_SCALE,
    "IF_NMDA_N": SUBTHRESHOLD_SCALE,
    "NPDPIE_TAU_F_P": SUBTHRESHOLD_SCALE,
    "NPDPIE_TAU_S_P": SUBTHRESHOLD_SCALE,
    "NPDPII_TAU_F_P": SUBTHRESHOLD_SCALE,
    "NPDPII_TAU_S_P": SUBTHRESHOLD_SCALE,
    "NPDPIE_THR_F_P": SUBTHRESHOLD_SCALE,
    "NPDPIE_THR_S_P": SUBTHRESHOLD_SCALE,
    "NPDPII_THR_F_P": SUBTHRESHOLD_SCALE,
    "NPDPII_THR_S_P": SUBTHRESHOLD_SCALE,
    "IF_RFR_N": REFRACTORY_SCALE,
}


@dataclass(frozen=True)
class CircuitConstants:
    """Physical constants of the DPI circuits (model constants, not layout values; reference §1, §2)."""

    ut: float = 0.025  # thermal voltage U_T [V]
    kappa: float = 0.705  # subthreshold slope, mean of kappa_n 0.75 and kappa_p 0.66
    i0: float = 0.5e-12  # dark current I_0 [A]; the membrane never goes below it
    c_mem: float = 3e-12  # membrane capacitance [F] (rockpool 3 pF)
    c_syn: tuple[float, float, float, float] = (2e-12, 2e-12, 2e-12, 2e-12)  # GABA_B, GABA_A, NMDA, AMPA [F]
    c_ahp: float = 4e-12  # adaptation capacitance [F] (INI dynapse-simulator)
    c_ref: float = 1.5e-12  # refractory capacitor [F] (rockpool)
    c_pulse: float = 0.5e-12  # pulse-extender capacitor [F] (rockpool)
    v_switch: float = 0.7  # switching voltage of the refractory / pulse circuits [V] (rockpool V_th)
    #: Spike threshold current I_spkthr [A]: fixed by layout on SE1 (no bias).  Chosen with the
    #: bias scale so that the published sets fire at plausible rates.
    i_spike_threshold: float = 0.6e-9
    i_reset: float = 0.5e-12  # reset current [A] (= I_0)
    #: Positive feedback (sigmoid form of teili / the INI simulator), relative to each neuron's
    #: spike threshold and leak: f = feedback_gain * sigmoid((I_mem - I_ath)/I_anorm) * (I_mem + I_th),
    #: with I_ath = feedback_onset * I_spkthr and I_anorm = feedback_width * I_spkthr.
    feedback_gain: float = 2.0
    feedback_onset: float = 0.8
    feedback_width: float = 0.05
    #: Duration of the spike-triggered pulse that charges the adaptation DPI [s].
    ahp_pulse_s: float = 1e-3


#: The nominal constants, as the emulator's default configuration holds them.
NOMINAL_CIRCUIT = CircuitConstants()
