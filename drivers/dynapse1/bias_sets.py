"""The published DYNAP-SE1 bias sets, expanded to every core bias and written to a board.

Bias data, not emulator physics: the emulator, the calibration, the robot demo and the tests all
start boards from these sets (libcaer coarse numbering, 0 = largest current).

The sets themselves are the JSON files in ``resources/biases`` (read through
:func:`drivers.dynapse1.bias_files.published_bias_set`; source: ``shared/reference/
dynapse_protocol.md`` §7).  Here each set is a mapping bias name -> (coarse, fine, high);
biases a set does not name are libcaer's silent value 7/0.  The shipped sets:

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

from drivers.dynapse1.bias_files import published_bias_set
from drivers.dynapse1.bias_table import CORE_BIASES, SILENT, bias_spec, check_coarse_fine
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, check_chip, check_core

BiasSetting = tuple[int, int, bool]  # coarse (libcaer), fine, high


class _BiasWritable(Protocol):
    def set_bias(self, chip: int, core: int, name: str, coarse: int, fine: int, high: bool = True,
                 normal: bool = True, enabled: bool = True) -> None: ...


def bias_set(name: str, overrides: Mapping[str, tuple[int, int] | BiasSetting] | None = None) -> dict[str, BiasSetting]:
    """All 25 per-core biases of the named set (libcaer numbering), with ``overrides`` applied.

    Raises ``KeyError`` for an unknown set or bias name and ``ValueError`` for a bad coarse/fine.
    """
    published = published_bias_set(name).defaults  # KeyError naming the known sets
    full = {bias: (v.coarse, v.fine, v.high) for bias, v in ((b, published.get(b, SILENT)) for b in CORE_BIASES)}
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
