"""Published DYNAP-SE1 bias sets, converted to libcaer coarse numbering (0 = largest current).

Source: ``shared/reference/dynapse_protocol.md`` §7.  Each set maps bias name to
(coarse, fine, high).  Biases a set does not name are written as libcaer's silent value 7/0.

* ``silent``: libcaer's power-up set, every bias 7/0: nothing fires.
* ``libcaer_low_power``: what libcaer writes after the silent set (IF_TAU1_N in Low mode); its
  large DC makes every neuron fire, as the UG says of cAER's start-up biases.
* ``ug_default``: the user guide's "loadDefaultBiases" for stimulus demos.  The UG gives the
  unnamed rest as "7/1 or 7/40"; we use 7/40 for the synapse time constants and 7/1 otherwise.
* ``samna_recommended``: samna's recommended start, given in samna numbering and converted with
  ``c_libcaer = 7 - c_samna`` (the reference's inference, unverified).  DC is off (samna 0/0);
  pass ``overrides={"IF_DC_P": (5, 30)}`` for the moderate DC of the NCS examples (samna 2/30):
  tens of Hz in the emulator.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Protocol

from drivers.dynapse1.bias_table import CORE_BIASES, bias_spec, check_coarse_fine
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, check_chip, check_core

BiasSetting = tuple[int, int, bool]  # coarse (libcaer), fine, high


def _samna(coarse_samna: int, fine: int) -> BiasSetting:
    return 7 - coarse_samna, fine, True


BIAS_SETS: dict[str, dict[str, BiasSetting]] = {
    "silent": {},
    "libcaer_low_power": {
        "IF_DC_P": (1, 30, True),
        "IF_THR_N": (4, 120, True),
        "IF_TAU1_N": (7, 5, False),
        "IF_TAU2_N": (6, 100, True),
        "IF_RFR_N": (3, 3, True),
        "IF_BUF_P": (3, 80, True),
        "IF_AHTAU_N": (7, 35, True),
        "PULSE_PWLK_P": (3, 106, True),
        "R2R_P": (4, 85, True),
        "NPDPIE_TAU_F_P": (7, 40, True),
        "NPDPII_TAU_S_P": (7, 40, True),
        "NPDPII_THR_S_P": (7, 40, True),
    },
    "ug_default": {
        **{name: (7, 1, True) for name in CORE_BIASES},
        **{name: (7, 40, True) for name in ("NPDPIE_TAU_S_P", "NPDPII_TAU_F_P", "NPDPII_TAU_S_P")},
        "IF_DC_P": (5, 2, True),
        "IF_TAU1_N": (4, 255, False),
        "IF_THR_N": (2, 180, True),
        "IF_RFR_N": (2, 180, True),
        "PS_WEIGHT_EXC_F_N": (0, 250, True),
        "NPDPIE_TAU_F_P": (6, 150, True),
        "NPDPIE_THR_F_P": (0, 220, True),
        "PULSE_PWLK_P": (3, 50, True),
        "IF_TAU2_N": (6, 15, True),
        "R2R_P": (4, 85, True),
        "IF_BUF_P": (3, 80, True),
    },
    "samna_recommended": {
        "IF_THR_N": _samna(5, 80),
        "IF_RFR_N": _samna(4, 128),
        "IF_TAU1_N": _samna(4, 80),
        "IF_DC_P": _samna(0, 0),
        "NPDPIE_TAU_F_P": _samna(4, 80),
        "NPDPIE_TAU_S_P": _samna(4, 80),
        "NPDPII_TAU_F_P": _samna(4, 80),
        "NPDPII_TAU_S_P": _samna(4, 80),
        "NPDPIE_THR_F_P": _samna(0, 0),
        "NPDPIE_THR_S_P": _samna(0, 0),
        "NPDPII_THR_F_P": _samna(0, 0),
        "NPDPII_THR_S_P": _samna(0, 0),
        "PS_WEIGHT_EXC_F_N": _samna(0, 0),
        "PS_WEIGHT_EXC_S_N": _samna(0, 0),
        "PS_WEIGHT_INH_F_N": _samna(0, 0),
        "PS_WEIGHT_INH_S_N": _samna(0, 0),
        "IF_NMDA_N": _samna(6, 148),
        "IF_AHTAU_N": _samna(4, 80),
        "PULSE_PWLK_P": _samna(4, 106),
        "R2R_P": _samna(3, 85),
        "IF_BUF_P": _samna(3, 80),
    },
}


class _BiasWritable(Protocol):
    def set_bias(self, chip: int, core: int, name: str, coarse: int, fine: int, high: bool = True,
                 normal: bool = True, enabled: bool = True) -> None: ...


def bias_set(name: str, overrides: Mapping[str, tuple[int, int] | BiasSetting] | None = None) -> dict[str, BiasSetting]:
    """All 25 per-core biases of the named set (libcaer numbering), with ``overrides`` applied.

    Raises ``KeyError`` for an unknown set or bias name and ``ValueError`` for a bad coarse/fine.
    """
    if name not in BIAS_SETS:
        raise KeyError(f"unknown bias set {name!r}; known: {', '.join(BIAS_SETS)}")
    full = {bias: BIAS_SETS[name].get(bias, (7, 0, True)) for bias in CORE_BIASES}
    for bias, value in (overrides or {}).items():
        bias_spec(bias)
        coarse, fine = check_coarse_fine(value[0], value[1])
        full[bias] = (coarse, fine, bool(value[2]) if len(value) > 2 else True)
    return full


def apply_bias_set(board: _BiasWritable, name: str, chips: Iterable[int] | None = None,
                   cores: Iterable[int] | None = None,
                   overrides: Mapping[str, tuple[int, int] | BiasSetting] | None = None) -> None:
    """Write the named set to every core of ``chips`` (default all) x ``cores`` (default all).

    Everything is validated before the first write.
    """
    settings = bias_set(name, overrides)
    chip_list = [check_chip(c) for c in (range(N_CHIPS) if chips is None else chips)]
    core_list = [check_core(c) for c in (range(N_CORES_PER_CHIP) if cores is None else cores)]
    for chip in chip_list:
        for core in core_list:
            for bias, (coarse, fine, high) in settings.items():
                board.set_bias(chip, core, bias, coarse, fine, high)
