"""The DYNAP-SE1 bias generator: bias names, addresses, polarity and the coarse table.

Coarse numbering used everywhere in NeuroLab's public API: **libcaer's**, where
coarse 0 is the *largest* current (24 µA full scale) and coarse 7 the smallest
(15 pA).  This is the numbering on the wire and in cAER.  CortexControl and
samna number the other way round (``c_samna = 7 - c_libcaer``, our inference,
marked unverified in the reference); the importers in
:mod:`drivers.dynapse1.bias_files` translate on the way in.

This module is the one home of a bias *value* (:class:`BiasValue`: coarse, fine and the three
flags of the bias word, validated once when it is made), of the bias *ladder* (:data:`LADDER`,
the one ordering of coarse/fine settings by current that the slider, the conversion and the
calibration's search all use) and of the *silent* settings (:data:`SILENT`,
:data:`SILENT_GLOBAL`).  Everything above the driver (board, bias model, files, emulator) shares
them, so no layer can build a bias value that drops a flag.

Sources: ``shared/reference/dynapse_protocol.md`` §4 and ``emulator.md`` §3.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, replace

import numpy as np

from drivers.arguments import integer

from .topology import check_core

#: Full-scale current of each coarse step, libcaer numbering (0 = largest), amperes.
COARSE_MAX_CURRENT_A: tuple[float, ...] = (24e-6, 3.2e-6, 0.4e-6, 50e-9, 6.5e-9, 820e-12, 105e-12, 15e-12)
N_COARSE = 8
N_FINE = 256


@dataclass(frozen=True)
class BiasSpec:
    """Static description of one per-core bias (QCoDeS/ophyd style): name, address, unit, limits.

    The transistor type (N or P) is a property of the bias circuit, not of a setting: it follows
    the name (``..._N``/``..._P``) and goes into the bias word's type bit.  A bias's *cached value*
    lives with whoever wrote it: the board's cache (:meth:`Board.get_bias`) and the core's
    :class:`~neurolab_gui.core.bias_model.BiasParameter`.
    """

    name: str
    offset: int
    is_p_type: bool
    description: str
    unit = "A"

    @property
    def polarity(self) -> str:
        return "P" if self.is_p_type else "N"

    @property
    def limits(self) -> tuple[float, float]:
        """Nominal current range the bias generator can produce, amperes."""
        return 0.0, COARSE_MAX_CURRENT_A[0]

    def address(self, core: int) -> int:
        """7-bit bias address on ``core`` (see :func:`core_bias_address`)."""
        return core_bias_address(core, self.name)


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


class UnknownNameError(KeyError):
    """A ``KeyError`` for an unknown bias or bias-set name whose text is its message.

    ``str()`` of a plain ``KeyError`` is the *repr* of its key, so a message printed as
    ``f"error: {exc}"`` would come out in quotes (``error: "unknown bias name 'X'; ..."``).
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def bias_spec(name: str) -> BiasSpec:
    """Look up a per-core bias by name; unknown names raise ``KeyError`` listing the valid ones."""
    try:
        return CORE_BIASES[name]
    except KeyError:
        raise UnknownNameError(f"unknown bias name {name!r}; per-core biases are: {', '.join(CORE_BIASES)}") from None


def _setting_int(field: str, value: object, top: int) -> int:
    """``value`` as an int in 0..top; bools, floats and strings are refused (no silent truncation)."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{field} value must be an integer 0..{top}, got the boolean {value!r}")
    try:
        number = operator.index(value)  # ints and numpy integers; 3.9 or "3" raise TypeError
    except TypeError:
        raise ValueError(f"{field} value must be an integer 0..{top}, got {value!r}") from None
    if not 0 <= number <= top:
        raise ValueError(f"{field} value {number} out of range 0..{top}")
    return number


def check_coarse_fine(coarse: int, fine: int) -> tuple[int, int]:
    """Validate a coarse/fine pair (integers only), raising ``ValueError`` that names the bad field."""
    return _setting_int("coarse", coarse, N_COARSE - 1), _setting_int("fine", fine, N_FINE - 1)


@dataclass(frozen=True)
class BiasValue:
    """One per-core bias setting: everything the bias word carries except address and N/P type.

    Validated once, here: coarse 0..7 (libcaer numbering, 0 = largest current) and fine 0..255 as
    integers, the flags as booleans.  It is frozen, so a value that exists is a valid one and the
    layers above pass it on whole instead of re-checking or re-assembling it (which is how flags
    used to get lost).  Change a field with :meth:`with_setting` or :meth:`replace`.

    Attributes
    ----------
    coarse, fine : the current, ``fine / 255 * Imax[coarse]``
    high : "HighBias" current level (False: "LowBias", a much smaller current)
    normal : Normal (True) or Cascode (False) bias type
    enabled : the generator drives the bias (False: no current)
    """

    coarse: int
    fine: int
    high: bool = True
    normal: bool = True
    enabled: bool = True

    def __post_init__(self) -> None:
        coarse, fine = check_coarse_fine(self.coarse, self.fine)
        object.__setattr__(self, "coarse", coarse)
        object.__setattr__(self, "fine", fine)
        for flag in ("high", "normal", "enabled"):
            value = getattr(self, flag)
            if not isinstance(value, (bool, np.bool_)):
                raise ValueError(f"bias flag {flag!r} must be True or False, got {value!r}")
            object.__setattr__(self, flag, bool(value))

    @property
    def current(self) -> float:
        """Nominal current of the coarse/fine setting, amperes (flags not applied)."""
        return nominal_current(self.coarse, self.fine)

    def with_setting(self, coarse: int, fine: int) -> BiasValue:
        """The same flags with another coarse/fine setting."""
        return replace(self, coarse=coarse, fine=fine)

    def replace(self, **changes: object) -> BiasValue:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def flags_text(self) -> str:
        """The non-default flags as words ("low cascode disabled"); empty for high/normal/enabled."""
        words = [w for w, on in (("low", not self.high), ("cascode", not self.normal), ("disabled", not self.enabled)) if on]
        return " ".join(words)


#: libcaer's "silent" per-core setting (coarse 7, fine 0): the power-up value of every bias, and the
#: value of every bias a file or a preset does not name.
SILENT = BiasValue(N_COARSE - 1, 0)
#: libcaer's silent chip-global biases (coarse, fine), by full name; SSP/SSN have a 6-bit fine only.
SILENT_GLOBAL: dict[str, tuple[int, int]] = {
    "U_BUFFER": (1, 2), "U_SSP": (0, 7), "U_SSN": (0, 15), "D_BUFFER": (1, 2), "D_SSP": (0, 7), "D_SSN": (0, 15),
}


def nominal_current(coarse: int, fine: int) -> float:
    """Nominal bias current in amperes: ``fine / 255 * Imax[coarse]`` (libcaer coarse numbering).

    This is the ideal bias generator; per-core generator mismatch is the emulator's business.
    """
    coarse, fine = check_coarse_fine(coarse, fine)
    return fine / 255.0 * COARSE_MAX_CURRENT_A[coarse]


class BiasLadder:
    """The one ordering of coarse/fine settings by current: the "linear bias" axis.

    Rungs: silent 7/0 (0 A), then coarse walked from the smallest full scale (7) to the largest
    (0), keeping a setting only if its current exceeds every current kept so far.  So the ladder
    is strictly increasing and each current is spelled on the *smallest full scale that reaches
    it* -- the finest resolution (the "linear bias" of the INI bias-slider GUI, Zendrikov's thesis
    ch. 2).  Each coarse range then contributes only its upper part (fine above ~1/8 of full scale,
    except range 7), so neighbouring rungs differ by at most about 3 %, and no rung sits in the
    low-fine corner of a large range, where the generator is least accurate and where the real
    current of two ranges' settings, each with its own mismatch, may come out in the wrong order.

    Why this ladder and not the others NeuroLab had: a ladder of *every* distinct setting (1919
    rungs, the calibration's old one) interleaves ranges, so stepping one rung may switch ranges
    back and forth and is not monotonic on a real chip; a per-call search over all ranges
    (``closest_setting``'s old form) could return spellings off any ladder, so the slider and the
    title disagreed ("c1 f30" vs "c2 f240").

    Snapping (:meth:`index_of_current`) is by *relative* error (nearest in log current): every
    consumer -- the tuner's log-space secant, the conversion's target currents, the slider --
    cares about ratios of currents.  Currents at or below half the first non-zero rung snap to
    silent.
    """

    def __init__(self) -> None:
        coarse_list: list[int] = [SILENT.coarse]
        fine_list: list[int] = [SILENT.fine]
        currents: list[float] = [0.0]
        for coarse in range(N_COARSE - 1, -1, -1):
            for fine in range(1, N_FINE):
                current = nominal_current(coarse, fine)
                if current > currents[-1] * (1 + 1e-12):
                    coarse_list.append(coarse)
                    fine_list.append(fine)
                    currents.append(current)
        self.coarse = np.array(coarse_list, dtype=np.int64)
        self.fine = np.array(fine_list, dtype=np.int64)
        self.currents = np.array(currents, dtype=np.float64)
        self._log_mid = np.sqrt(self.currents[1:-1] * self.currents[2:])  # geometric midpoints between rungs 1..

    def __len__(self) -> int:
        return len(self.currents)

    def setting(self, index: int) -> tuple[int, int]:
        """Coarse/fine pair at ladder position ``index`` (an integer: no bool, no 1.5, as the settings)."""
        number = integer("ladder index", index)
        if not 0 <= number < len(self):
            raise ValueError(f"ladder index {index} out of range 0..{len(self) - 1}")
        return int(self.coarse[number]), int(self.fine[number])

    def value(self, index: int, like: BiasValue = SILENT) -> BiasValue:
        """The rung at ``index`` as a :class:`BiasValue` with the flags of ``like``."""
        return like.with_setting(*self.setting(index))

    def index_of_current(self, current_a: float) -> int:
        """Ladder position nearest to ``current_a`` in relative terms (see the class docstring)."""
        current_a = float(current_a)
        if math.isnan(current_a):
            raise ValueError("bias current is NaN")
        if current_a <= self.currents[1] / 2:
            return 0
        return 1 + int(np.searchsorted(self._log_mid, current_a))

    def index_of(self, coarse: int, fine: int) -> int:
        """Ladder position of ``(coarse, fine)``; settings off the ladder snap to the nearest rung."""
        return self.index_of_current(nominal_current(coarse, fine))

    def closest_setting(self, current_a: float) -> tuple[int, int]:
        """The rung nearest to ``current_a`` as ``(coarse, fine)``."""
        return self.setting(self.index_of_current(current_a))

    def neighbour(self, coarse: int, fine: int, steps: int) -> tuple[int, int]:
        """The rung ``steps`` above (positive) or below the one nearest to ``(coarse, fine)``."""
        return self.setting(int(np.clip(self.index_of(coarse, fine) + steps, 0, len(self) - 1)))


#: The bias ladder (1812 rungs).
LADDER = BiasLadder()


def closest_setting(current_a: float) -> tuple[int, int]:
    """Coarse/fine pair on the :data:`LADDER` nearest to ``current_a`` (relative error)."""
    return LADDER.closest_setting(current_a)
