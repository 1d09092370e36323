"""The bias generators of a board: what the host wrote, and the current each circuit receives.

One generator per core drives its 25 biases (shared by the core's 256 neurons), plus six
chip-global biases.  The host-visible numbering is libcaer's (coarse 0 = largest current, see
``drivers.dynapse1.bias_table``).  The current a circuit sees is

    I = fine/255 * Imax[coarse]            nominal, ``bias_table.nominal_current``
        * scale[name]                      bias → circuit ratio (``EmulatorConfig.bias_scale``)
        * low_current_factor  if not high  "Low" current mode [U]
        * biasgen_mismatch[chip, core, name]
        * 0                   if not enabled

The Normal/Cascode flag is stored and read back but changes nothing (libcaer always writes
Normal; the cascode variant's effect on SE1 is not documented).  Chip-global biases (U_/D_
BUFFER, SSP, SSN) are stored and read back but do not enter the physics: they bias the
bias generator's own buffers and shifted sources, whose effect is not documented.
"""

from __future__ import annotations

import numpy as np

from drivers.dynapse1.bias_table import (
    COARSE_MAX_CURRENT_A,
    GLOBAL_BIASES,
    N_FINE,
    SILENT,
    SILENT_GLOBAL,
    bias_spec,
    check_coarse_fine,
)
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, check_chip, check_core

from .config import EmulatorConfig
from .mismatch import BIAS_INDEX, BIAS_NAMES

# Power-up values: libcaer's silent set, defined once in the driver (bias_table.SILENT, SILENT_GLOBAL).
#: Shifted-source biases have a 6-bit fine value and no coarse.
_SHIFTED_SOURCE_FINE_MAX = 63


def check_global_bias(name: str, coarse: int, fine: int) -> tuple[int, int]:
    """Validate a chip-global bias write; unknown names raise ``KeyError`` listing the valid ones."""
    if name not in GLOBAL_BIASES:
        raise KeyError(f"unknown chip-global bias {name!r}; valid: {', '.join(GLOBAL_BIASES)}")
    coarse, fine = check_coarse_fine(coarse, fine)
    if name.endswith(("SSP", "SSN")) and fine > _SHIFTED_SOURCE_FINE_MAX:
        raise ValueError(f"fine value {fine} out of range 0..{_SHIFTED_SOURCE_FINE_MAX} for shifted-source bias {name}")
    return coarse, fine


class BiasBank:
    """Host-written bias settings of all 4 chips, and the resulting circuit currents."""

    def __init__(self, config: EmulatorConfig, biasgen_mismatch: np.ndarray) -> None:
        shape = (N_CHIPS, N_CORES_PER_CHIP, len(BIAS_NAMES))
        self.coarse = np.full(shape, SILENT.coarse, dtype=np.int8)
        self.fine = np.full(shape, SILENT.fine, dtype=np.int16)
        self.high = np.ones(shape, dtype=bool)
        self.normal = np.ones(shape, dtype=bool)
        self.enabled = np.ones(shape, dtype=bool)
        self.global_biases: dict[tuple[int, str], tuple[int, int]] = {
            (chip, name): value for chip in range(N_CHIPS) for name, value in SILENT_GLOBAL.items()
        }
        self._imax = np.asarray(COARSE_MAX_CURRENT_A)
        self._scale = np.array([config.scale_of(name) for name in BIAS_NAMES])
        self._low_factor = config.low_current_factor
        self._mismatch = np.asarray(biasgen_mismatch, dtype=np.float64)
        if self._mismatch.shape != shape:
            raise ValueError(f"bias-generator mismatch must have shape {shape}, got {self._mismatch.shape}")
        #: Incremented at every write, so derived parameters know when to recompute.
        self.version = 0

    # --- host writes -----------------------------------------------------------------------------
    def set(self, chip: int, core: int, name: str, coarse: int, fine: int,
            high: bool = True, normal: bool = True, enabled: bool = True) -> None:
        """Write one per-core bias; everything is validated before anything changes."""
        chip, core = check_chip(chip), check_core(core)
        bias_spec(name)  # KeyError naming the valid biases
        coarse, fine = check_coarse_fine(coarse, fine)
        index = (chip, core, BIAS_INDEX[name])
        self.coarse[index], self.fine[index] = coarse, fine
        self.high[index], self.normal[index], self.enabled[index] = bool(high), bool(normal), bool(enabled)
        self.version += 1

    def get(self, chip: int, core: int, name: str) -> tuple[int, int, bool, bool, bool]:
        """(coarse, fine, high, normal, enabled) as last written."""
        chip, core = check_chip(chip), check_core(core)
        bias_spec(name)
        index = (chip, core, BIAS_INDEX[name])
        return (int(self.coarse[index]), int(self.fine[index]), bool(self.high[index]),
                bool(self.normal[index]), bool(self.enabled[index]))

    def set_global(self, chip: int, name: str, coarse: int, fine: int) -> None:
        """Store a chip-global bias (no effect on the physics, see the module docstring)."""
        chip = check_chip(chip)
        self.global_biases[(chip, name)] = check_global_bias(name, coarse, fine)
        self.version += 1

    def get_global(self, chip: int, name: str) -> tuple[int, int]:
        chip = check_chip(chip)
        if name not in GLOBAL_BIASES:
            raise KeyError(f"unknown chip-global bias {name!r}; valid: {', '.join(GLOBAL_BIASES)}")
        return self.global_biases[(chip, name)]

    # --- currents --------------------------------------------------------------------------------
    def currents(self) -> np.ndarray:
        """Circuit current of every bias, amperes, shape (4 chips, 4 cores, 25 biases)."""
        nominal = self.fine / float(N_FINE - 1) * self._imax[self.coarse.astype(np.intp)]
        level = np.where(self.high, 1.0, self._low_factor)
        return nominal * self._scale * level * self._mismatch * self.enabled

    def current(self, chip: int, core: int, name: str) -> float:
        """Circuit current of one bias [A]."""
        chip, core = check_chip(chip), check_core(core)
        bias_spec(name)
        return float(self.currents()[chip, core, BIAS_INDEX[name]])

