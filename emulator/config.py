"""Configuration of the DYNAP-SE1 emulator: circuit constants, bias scaling, mismatch, time step.

Everything that is a modelling *choice* rather than a fact about the wire lives here, as a field
with a default and a comment saying where the number comes from (``shared/reference/emulator.md``,
§ numbers in brackets).  The defaults were chosen so that the published bias sets behave
plausibly (see :mod:`emulator.bias_sets`): the samna-recommended start with a moderate DC
(IF_DC_P libcaer coarse 5, fine 30) fires at tens of Hz, a large DC (coarse 2) drives the neurons
towards 1/refractory period, and the libcaer start-up set makes every neuron fire.

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

"Low" current mode (the bias word's HighBias flag cleared) multiplies the current by
``low_current_factor`` (0.1, a choice; the real SE1 low-mode ratio is unknown [U]).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from drivers.dynapse1.bias_table import CORE_BIASES

#: Per-bias scale from the bias generator's nominal current to the current the circuit sees.
#: See the module docstring for why these numbers.
_SUBTHRESHOLD_SCALE = 3.4e-4
DEFAULT_BIAS_SCALE: dict[str, float] = {
    "IF_TAU1_N": _SUBTHRESHOLD_SCALE,
    "IF_TAU2_N": _SUBTHRESHOLD_SCALE,
    "IF_THR_N": _SUBTHRESHOLD_SCALE,
    "IF_AHTAU_N": _SUBTHRESHOLD_SCALE,
    "IF_AHTHR_N": _SUBTHRESHOLD_SCALE,
    "IF_NMDA_N": _SUBTHRESHOLD_SCALE,
    "NPDPIE_TAU_F_P": _SUBTHRESHOLD_SCALE,
    "NPDPIE_TAU_S_P": _SUBTHRESHOLD_SCALE,
    "NPDPII_TAU_F_P": _SUBTHRESHOLD_SCALE,
    "NPDPII_TAU_S_P": _SUBTHRESHOLD_SCALE,
    "NPDPIE_THR_F_P": _SUBTHRESHOLD_SCALE,
    "NPDPIE_THR_S_P": _SUBTHRESHOLD_SCALE,
    "NPDPII_THR_F_P": _SUBTHRESHOLD_SCALE,
    "NPDPII_THR_S_P": _SUBTHRESHOLD_SCALE,
    "IF_RFR_N": 0.02,
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


@dataclass(frozen=True)
class MismatchConfig:
    """Device mismatch and variability.  Every number is a coefficient of variation (std/mean).

    Mismatch factors are log-normal with the given CV (always positive, mean 1), drawn once per
    circuit from a generator seeded by the board serial and :attr:`EmulatorConfig.seed`.
    Defaults: measured on SE1 (reference §4, Zendrikov) where a measurement exists, else a choice.
    """

    enabled: bool = True
    biasgen_cv: float = 0.10  # per core and bias: generator offset (magnitude only in a figure [U])
    tau_mem_cv: float = 0.18  # per neuron, membrane time constant (measured 18 %)
    refractory_cv: float = 0.08  # per neuron, refractory period (measured 8 %)
    gain_cv: float = 0.10  # per neuron, soma DPI gain current IF_THR_N (choice)
    threshold_cv: float = 0.10  # per neuron, spike threshold current (choice)
    dc_cv: float = 0.10  # per neuron, DC injection transistor (choice)
    ahp_cv: float = 0.10  # per neuron, adaptation time constant and weight (choice)
    syn_tau_cv: float = 0.085  # per neuron and synapse type, synapse time constant (measured 7-10 %)
    syn_weight_cv: float = 0.20  # per neuron and synapse type, weight (measured 14-30 %)
    #: Slow temperature drift: every subthreshold current is multiplied by
    #: exp(amplitude * sin(2 pi t / period)).  0 = off.  A day/night swing shifts tau by ~1 sigma.
    temperature_drift_amplitude: float = 0.0
    temperature_drift_period_s: float = 86400.0
    #: Trial-to-trial noise: Ornstein-Uhlenbeck current added to every neuron's input, with this
    #: stationary standard deviation [A] and correlation time [s].  0 = off (it costs one normal
    #: random number per neuron and step).
    noise_std_a: float = 0.0
    noise_tau_s: float = 2e-3

    @classmethod
    def ideal(cls) -> MismatchConfig:
        """No mismatch, no drift, no noise: every neuron of a core identical."""
        return cls(enabled=False)

    def validate(self) -> None:
        for name in (
            "biasgen_cv", "tau_mem_cv", "refractory_cv", "gain_cv", "threshold_cv", "dc_cv", "ahp_cv",
            "syn_tau_cv", "syn_weight_cv", "temperature_drift_amplitude", "noise_std_a",
        ):
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"mismatch setting {name} must be >= 0, got {value}")
        if self.temperature_drift_period_s <= 0:
            raise ValueError("temperature_drift_period_s must be > 0")
        if self.noise_tau_s <= 0:
            raise ValueError("noise_tau_s must be > 0")


@dataclass(frozen=True)
class EmulatorConfig:
    """Everything that configures one emulated board apart from what the host writes to it."""

    dt: float = 1e-4  # time step [s]; Brian2's default, the common point of the reference benchmarks
    seed: int = 0  # combined with the board serial for mismatch and stochastic inputs
    mismatch: MismatchConfig = field(default_factory=MismatchConfig)
    circuit: CircuitConstants = field(default_factory=CircuitConstants)
    bias_scale: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_BIAS_SCALE))
    low_current_factor: float = 0.1  # "Low" bias mode multiplies the current by this [U]
    #: Per-event charge saturation with the number n of CAM entries of one neuron that match the
    #: same source: n_eff = n / (1 + (n / saturation_count)**sharpness)**(1/sharpness).  Linear for
    #: small n, about 7.3 at n = 8, tending to saturation_count (chip: saturates beyond ~8-10).
    cam_saturation_count: float = 10.0
    cam_saturation_sharpness: float = 4.0
    #: A cleared CAM entry holds (core 0, neuron 0, GABA_B) and so *listens* to source address 0
    #: of core 0 as on the chip (the CAM has no valid bit).  Set False to treat cleared entries as
    #: empty.
    cleared_cam_listens_to_address_zero: bool = True
    #: Samples kept per monitored neuron by the membrane buffer (bounded; oldest dropped).
    membrane_buffer_samples: int = 200_000
    #: Threads the kernel may use: groups of chips that no route connects run in parallel
    #: (:mod:`emulator.partition`; results identical to one thread).  0 = one per available CPU
    #: core.  Runs with trial-to-trial noise always use one thread.
    kernel_threads: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.dt <= 1e-3:
            raise ValueError(f"dt must be in (0, 1 ms], got {self.dt}")
        unknown = set(self.bias_scale) - set(CORE_BIASES)
        if unknown:
            raise KeyError(f"bias_scale names unknown biases: {sorted(unknown)}")
        if self.low_current_factor <= 0:
            raise ValueError("low_current_factor must be > 0")
        if self.cam_saturation_count <= 0 or self.cam_saturation_sharpness <= 0:
            raise ValueError("cam_saturation_count and cam_saturation_sharpness must be > 0")
        if self.membrane_buffer_samples < 1:
            raise ValueError("membrane_buffer_samples must be >= 1")
        if isinstance(self.kernel_threads, bool) or int(self.kernel_threads) != self.kernel_threads \
                or self.kernel_threads < 0:
            raise ValueError(f"kernel_threads must be an integer >= 0, got {self.kernel_threads!r}")
        self.mismatch.validate()

    def scale_of(self, bias_name: str) -> float:
        return self.bias_scale.get(bias_name, 1.0)

    def with_mismatch(self, mismatch: MismatchConfig) -> EmulatorConfig:
        return replace(self, mismatch=mismatch)

    @classmethod
    def ideal(cls, **kwargs) -> EmulatorConfig:
        """A configuration without mismatch, drift or noise (for reference comparisons)."""
        return cls(mismatch=MismatchConfig.ideal(), **kwargs)
