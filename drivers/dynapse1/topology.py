"""DYNAP-SE1 board topology and hardware limits.

Facts from libcaer ``dynapse.h`` and the iniLabs DYNAP-SE user guide (see
``shared/reference/dynapse_protocol.md`` §1).  Everything that talks about
chips, cores, neurons, CAM or SRAM imports its numbers from here so that a
limit is stated exactly once.
"""

from __future__ import annotations

from enum import IntEnum

from drivers.arguments import integer

USB_VENDOR_ID = 0x152A
USB_PRODUCT_ID = 0x841D

N_CHIPS = 4
N_CORES_PER_CHIP = 4
N_NEURONS_PER_CORE = 256
N_NEURONS_PER_CHIP = N_CORES_PER_CHIP * N_NEURONS_PER_CORE  # 1024
N_NEURONS = N_CHIPS * N_NEURONS_PER_CHIP  # 4096
CAM_ENTRIES_PER_NEURON = 64
SRAM_ENTRIES_PER_NEURON = 4


class SynapseType(IntEnum):
    """The four DPI synapse circuits of every neuron, numbered as in the CAM word.

    Fast = GABA_A (shunting) / AMPA; slow = GABA_B (subtractive) / NMDA.  We follow
    libcaer, rockpool and the INI dynapse-simulator here; one paragraph of the
    Zendrikov thesis swaps the two inhibitory roles (see docs/ARCHITECTURE.md).
    """

    GABA_B = 0  # slow inhibitory, subtractive
    GABA_A = 1  # fast inhibitory, shunting
    NMDA = 2  # slow excitatory, voltage gated
    AMPA = 3  # fast excitatory

    @property
    def is_excitatory(self) -> bool:
        return self in (SynapseType.AMPA, SynapseType.NMDA)


def check_chip(chip: int) -> int:
    """Return ``chip`` as an int if it is a valid chip id, else raise ``ValueError``.

    Ids are integers only (:func:`drivers.arguments.integer`: Python and numpy integers; no bool,
    no 1.9, no ``"0"``), as the bias values are: ``int(1.9)`` would quietly address chip 1.
    """
    number = integer("chip id", chip)
    if not 0 <= number < N_CHIPS:
        raise ValueError(f"chip id {chip} out of range 0..{N_CHIPS - 1}")
    return number


def check_core(core: int) -> int:
    """Return ``core`` as an int if it is a valid core id (integers only, as :func:`check_chip`), else raise ``ValueError``."""
    number = integer("core id", core)
    if not 0 <= number < N_CORES_PER_CHIP:
        raise ValueError(f"core id {core} out of range 0..{N_CORES_PER_CHIP - 1}")
    return number


def check_neuron(neuron: int) -> int:
    """Return ``neuron`` as an int if it is a valid neuron id within a core (integers only, as
    :func:`check_chip`), else raise ``ValueError``."""
    number = integer("neuron id", neuron)
    if not 0 <= number < N_NEURONS_PER_CORE:
        raise ValueError(f"neuron id {neuron} out of range 0..{N_NEURONS_PER_CORE - 1} (id within its core)")
    return number


def global_neuron_id(chip: int, core: int, neuron: int) -> int:
    """Board-wide neuron index 0..4095 = chip*1024 + core*256 + neuron."""
    return check_chip(chip) * N_NEURONS_PER_CHIP + check_core(core) * N_NEURONS_PER_CORE + check_neuron(neuron)


def split_global_neuron_id(gid: int) -> tuple[int, int, int]:
    """Inverse of :func:`global_neuron_id`: ``(chip, core, neuron)``."""
    number = integer("global neuron id", gid)
    if not 0 <= number < N_NEURONS:
        raise ValueError(f"global neuron id {gid} out of range 0..{N_NEURONS - 1}")
    chip, rest = divmod(number, N_NEURONS_PER_CHIP)
    core, neuron = divmod(rest, N_NEURONS_PER_CORE)
    return chip, core, neuron
