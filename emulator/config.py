"""Configuration of the DYNAP-SE1 emulator: circuit constants, bias scaling, mismatch, time step.

Everything that is a modelling *choice* rather than a fact about the wire lives here, as a field
with a default and a comment saying where the number comes from (``shared/reference/emulator.md``,
§ numbers in brackets).  The defaults were chosen so that the published bias sets behave
plausibly (see :mod:`drivers.dynapse1.bias_sets`): the samna-recommended start with a moderate DC
(IF_DC_P libcaer coarse 5, fine 30) fires at tens of Hz, a large DC (coarse 2) drives the neurons
towards 1/refractory period, and the libcaer start-up set makes every neuron fire.

Bias → circuit current
----------------------
The circuit constants and the per-bias scale from the bias generator's nominal current to the
current a circuit sees are the nominal circuit model of :mod:`drivers.dynapse1.circuit`, which
the conversion reads too; an ``EmulatorConfig`` takes them as its defaults.

"Low" current mode (the bias word's HighBias flag cleared) multiplies the current by
``low_current_factor`` (0.1, a choice; the real SE1 low-mode ratio is unknown [U]).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from drivers.dynapse1.bias_table import CORE_BIASES
from drivers.dynapse1.circuit import DEFAULT_BIAS_SCALE, CircuitConstants

# CircuitConstants and DEFAULT_BIAS_SCALE are re-exported: an EmulatorConfig is built from them.
__all__ = ["DEFAULT_BIAS_SCALE", "CircuitConstants", "EmulatorConfig", "MismatchConfig"]


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
