"""Which published bias set a core is running, so the GUI names what the board really does.

A board starts with whatever it was last given (libcaer's start-up biases on a fresh DYNAP-SE1
and on the emulator); a preset box that shows its own default instead would contradict the
sliders.  :func:`matching_preset` compares a core's values with every shipped set.
"""

from __future__ import annotations

from functools import lru_cache

from drivers.dynapse1.bias_files import published_bias_set, published_bias_set_names
from drivers.dynapse1.bias_table import CORE_BIASES

from .bias_model import BiasModel


@lru_cache(maxsize=64)
def _preset_core(name: str, chip: int, core: int) -> tuple:
    preset = published_bias_set(name)
    return tuple(preset.value(chip, core, bias) for bias in CORE_BIASES)


def matching_preset(model: BiasModel, chip: int, core: int) -> str | None:
    """Name of the shipped bias set whose values ``(chip, core)`` holds exactly, or None."""
    current = tuple(model.value(chip, core, bias) for bias in CORE_BIASES)
    for name in published_bias_set_names():
        if _preset_core(name, int(chip), int(core)) == current:
            return name
    return None
