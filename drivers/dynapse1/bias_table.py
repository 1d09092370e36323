"""The DYNAP-SE1 bias generator: bias names, addresses, polarity and the coarse table.

Coarse numbering used everywhere in NeuroLab's public API: **libcaer's**, where
coarse 0 is the *largest* current (24 µA full scale) and coarse 7 the smallest
(15 pA).  This is the numbering on the wire and in cAER.  CortexControl and
samna number the other way round (``c_samna = 7 - c_libcaer``, our inference,
marked unverified in the reference); the importers in
:mod:`drivers.dynapse1.bias_files` translate on the way in.

Sources: ``shared/reference/dynapse_protocol.md`` §4 and ``emulator.md`` §3.
"""

from __future__ import annotations

from dataclasses import dataclass

from .topology import check_core

#: Full-scale current of each coarse step, libcaer numbering (0 = largest), amperes.
COARSE_MAX_CURRENT_A: tuple[float, ...] = (24e-6, 3.2e-6, 0.4e-6, 50e-9, 6.5e-9, 820e-12, 105e-12, 15e-12)
N_COARSE = 8
N_FINE = 256


@dataclass(frozen=True)
class BiasSpec:
    """Static description of one bias: its name, core-0 address offset and transistor type."""

    name: str
    offset: int
    is_p_type: bool
    description: str

    @property
    def polarity(self) -> str:
        return "P" if self.is_p_type else "N"


_PER_CORE = [
    ("PULSE_PWLK_P", 0, "pulse width of the synaptic input pulse"),
    ("PS_WEIGHT_INH_S_N", 2, "weight, slow inhibitory (GABA_B)"),
    ("PS_WEIGHT_INH_F_N", 4, "weight, fast inhibitory (GABA_A)"),
    ("PS_WEIGHT_EXC_S_N", 6, "weight, slow excitatory (NMDA)"),
    ("PS_WEIGHT_EXC_F_N", 8, "weight, fast excitatory (AMPA)"),
    ("IF_RFR_N", 10, "refractory period"),
    ("IF_TAU1_N", 12, "membrane leak (default for all neurons)"),
    ("IF_AHTAU_N", 14, "adaptation time constant"),
    ("IF_CASC_N", 16, "adaptation cascode"),
    ("IF_TAU2_N", 18, "alternative leak for neurons switched to tau2"),
    ("IF_BUF_P", 20, "membrane-voltage readout buffer (analog monitor)"),
    ("IF_AHTHR_N", 22, "adaptation threshold (gain)"),
    ("IF_THR_N", 24, "soma DPI gain"),
    ("NPDPIE_THR_S_P", 26, "NMDA synapse gain"),
    ("NPDPIE_THR_F_P", 28, "AMPA synapse gain"),
    ("NPDPII_THR_F_P", 30, "GABA_A synapse gain"),
    ("NPDPII_THR_S_P", 32, "GABA_B synapse gain"),
    ("IF_NMDA_N", 34, "NMDA voltage-gating threshold"),
    ("IF_DC_P", 36, "DC current injected into the soma"),
    ("IF_AHW_P", 38, "adaptation weight"),
    ("NPDPII_TAU_S_P", 40, "GABA_B time constant"),
    ("NPDPII_TAU_F_P", 42, "GABA_A time constant"),
    ("NPDPIE_TAU_F_P", 44, "AMPA time constant"),
    ("NPDPIE_TAU_S_P", 46, "NMDA time constant"),
    ("R2R_P", 48, "readout / R2R reference"),
]

#: The 25 per-core biases, in address order.
CORE_BIASES: dict[str, BiasSpec] = {
    name: BiasSpec(name, off, name.endswith("_P"), desc) for name, off, desc in _PER_CORE
}

#: Chip-global biases: absolute addresses (U = upper half C0/C1, D = lower half C2/C3, unverified).
GLOBAL_BIASES: dict[str, int] = {
    "U_BUFFER": 50,
    "U_SSP": 51,
    "U_SSN": 52,
    "D_BUFFER": 114,
    "D_SSP": 115,
    "D_SSN": 116,
}


def core_bias_address(core: int, name: str) -> int:
    """7-bit bias address of per-core bias ``name`` on ``core`` (libcaer layout).

    Core-0 offset, +1 for cores 1 and 3, +64 for cores 2 and 3.
    """
    spec = bias_spec(name)
    core = check_core(core)
    return spec.offset + (core & 1) + (64 if core >= 2 else 0)


def bias_spec(name: str) -> BiasSpec:
    """Look up a per-core bias by name; unknown names raise ``KeyError`` listing the valid ones."""
    try:
        return CORE_BIASES[name]
    except KeyError:
        raise KeyError(f"unknown bias name {name!r}; per-core biases are: {', '.join(CORE_BIASES)}") from None


def check_coarse_fine(coarse: int, fine: int) -> tuple[int, int]:
    """Validate a coarse/fine pair, raising ``ValueError`` that names the bad field."""
    if not 0 <= int(coarse) < N_COARSE:
        raise ValueError(f"coarse value {coarse} out of range 0..{N_COARSE - 1}")
    if not 0 <= int(fine) < N_FINE:
        raise ValueError(f"fine value {fine} out of range 0..{N_FINE - 1}")
    return int(coarse), int(fine)


def nominal_current(coarse: int, fine: int) -> float:
    """Nominal bias current in amperes: ``fine / 255 * Imax[coarse]`` (libcaer coarse numbering).

    This is the ideal bias generator; per-core generator mismatch is the emulator's business.
    """
    coarse, fine = check_coarse_fine(coarse, fine)
    return fine / 255.0 * COARSE_MAX_CURRENT_A[coarse]


def closest_setting(current_a: float) -> tuple[int, int]:
    """Coarse/fine pair whose nominal current is closest to ``current_a`` (relative error).

    Prefers the coarse range with the finest resolution among equally close candidates,
    i.e. the smallest full scale that still reaches the target.
    """
    if current_a <= 0:
        return N_COARSE - 1, 0
    best: tuple[float, int, int] | None = None
    for coarse in range(N_COARSE - 1, -1, -1):  # smallest full scale first
        fine = min(N_FINE - 1, max(0, round(current_a / COARSE_MAX_CURRENT_A[coarse] * 255.0)))
        err = abs(nominal_current(coarse, fine) - current_a) / current_a
        if best is None or err < best[0] - 1e-12:
            best = (err, coarse, fine)
    assert best is not None
    return best[1], best[2]
