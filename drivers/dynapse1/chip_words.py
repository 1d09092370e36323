"""32-bit chip configuration words (biases, CAM, SRAM, tau, monitor, host input spikes) and their inverses.

The host writes these words to CHIP/CONTENT after selecting a chip with CHIP/ID
(reference ``dynapse_protocol.md`` §4.3 and §5; layouts from libcaer
``dynapse.c``).  Every encoder has a decoder (for tests and tools).  The encoders and the bias
parser are checked against libcaer's own ``caerBiasDynapseGenerate``/``Parse``,
``caerDynapseGenerateCamBits`` and ``caerDynapseGenerateSramBits``
(``tests/data/libcaer``).  The virtual board decodes chip words with its own code
(``emulator.fpga_decoding``), not with these functions.

Classification of a word arriving on CHIP/CONTENT, first match wins:

====================  =========================================
bit 17 set, bit 4 set SRAM word
bit 17 set            CAM word
bit 16 set            bias word
bit 13 set            host input spike
bit 12 set            core → tau1 (bit 11 clear) / tau2 (set)
bit 11 set            analog-monitor reset of a core
bit 10 set            one neuron → tau2
otherwise             analog-monitor select (10-bit neuron id)
====================  =========================================

The table is unambiguous because each layout fixes the bits the earlier rows test:
bias words keep bit 17 clear, input spikes keep bits 17 and 16 clear, and the
tau/monitor words use only bits 12–0.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from .bias_table import CORE_BIASES, GLOBAL_BIASES, UnknownNameError, bias_spec, check_coarse_fine, core_bias_address
from .topology import (
    CAM_ENTRIES_PER_NEURON,
    N_NEURONS_PER_CORE,
    SRAM_ENTRIES_PER_NEURON,
    SynapseType,
    check_chip,
    check_core,
    check_neuron,
)

_REVERSE3 = (0, 4, 2, 6, 1, 5, 3, 7)  # 3-bit bit reversal of the coarse value (self-inverse)
_SHIFTED_SOURCE_BITS = 0x3F << 10  # bits 15–10 of SSP/SSN words


def _check_bits(value: int, bits: int, what: str) -> int:
    if not 0 <= int(value) < (1 << bits):
        raise ValueError(f"{what} {value} does not fit {bits} bits (0..{(1 << bits) - 1})")
    return int(value)


# --- biases ----------------------------------------------------------------------------------------


class BiasKind(Enum):
    """How a bias word is laid out: ordinary, BUFFER (coarse+fine only) or shifted source (SSP/SSN)."""

    NORMAL = "normal"
    BUFFER = "buffer"
    SHIFTED_SOURCE = "shifted_source"


@dataclass(frozen=True)
class BiasWord:
    """Decoded bias word.  ``coarse`` is in libcaer numbering (0 = largest current)."""

    address: int
    coarse: int
    fine: int
    high: bool = True
    normal: bool = True
    n_type: bool = True
    enabled: bool = True
    kind: BiasKind = BiasKind.NORMAL


def bias_kind_of_address(address: int) -> BiasKind:
    """Layout used by the bias at 7-bit ``address``: the chip-global SSP/SSN and BUFFER are special."""
    for name, addr in GLOBAL_BIASES.items():
        if addr == address:
            return BiasKind.SHIFTED_SOURCE if name.endswith(("SSP", "SSN")) else BiasKind.BUFFER
    return BiasKind.NORMAL


def encode_bias_word(
    address: int,
    coarse: int,
    fine: int,
    *,
    high: bool = True,
    normal: bool = True,
    n_type: bool,
    enabled: bool = True,
) -> int:
    """Raw bias word for bias ``address`` (layout by address: normal, BUFFER or SSP/SSN).

    Normal: address 24–18, bit 16, bit-reversed coarse 14–12, fine 11–4, high 3, normal 2,
    N-type 1, enable 0.  BUFFER: coarse and fine only.  SSP/SSN: bits 15–10 set, 6-bit fine
    in 9–4, no coarse.
    """
    _check_bits(address, 7, "bias address")
    coarse, fine = check_coarse_fine(coarse, fine)
    word = (address << 18) | (1 << 16)
    kind = bias_kind_of_address(address)
    if kind is BiasKind.SHIFTED_SOURCE:
        _check_bits(fine, 6, "shifted-source bias fine value")
        return word | _SHIFTED_SOURCE_BITS | (fine << 4)
    word |= (_REVERSE3[coarse] << 12) | (fine << 4)
    if kind is BiasKind.BUFFER:
        return word
    return word | (int(high) << 3) | (int(normal) << 2) | (int(n_type) << 1) | int(enabled)


def core_bias_word(core: int, name: str, coarse: int, fine: int, *, high: bool = True, normal: bool = True, enabled: bool = True) -> int:
    """Bias word for per-core bias ``name`` on ``core``; N/P type follows the name."""
    spec = bias_spec(name)
    return encode_bias_word(
        core_bias_address(core, name), coarse, fine, high=high, normal=normal, n_type=not spec.is_p_type, enabled=enabled
    )


def global_bias_word(name: str, coarse: int, fine: int) -> int:
    """Bias word for chip-global bias ``name`` (U_/D_ BUFFER, SSP, SSN)."""
    try:
        address = GLOBAL_BIASES[name]
    except KeyError:
        raise UnknownNameError(f"unknown chip-global bias {name!r}; valid: {', '.join(GLOBAL_BIASES)}") from None
    return encode_bias_word(address, coarse, fine, n_type=name.endswith("N"))


def decode_bias_word(word: int) -> BiasWord:
    """Inverse of :func:`encode_bias_word`, field for field as libcaer's ``caerBiasDynapseParse``.

    BUFFER and SSP/SSN words carry no high/normal/type/enable bits, so those flags come back
    False for them (as libcaer returns them); SSP/SSN also carry no coarse value (0).
    """
    if not (word >> 16) & 1 or (word >> 17) & 1:
        raise ValueError(f"0x{word:08X} is not a bias word (bit 16 must be set, bit 17 clear)")
    address = (word >> 18) & 0x7F
    kind = bias_kind_of_address(address)
    no_flags = {"high": False, "normal": False, "n_type": False, "enabled": False, "kind": kind}
    if kind is BiasKind.SHIFTED_SOURCE:
        return BiasWord(address, 0, (word >> 4) & 0x3F, **no_flags)
    coarse = _REVERSE3[(word >> 12) & 0x7]
    fine = (word >> 4) & 0xFF
    if kind is BiasKind.BUFFER:
        return BiasWord(address, coarse, fine, **no_flags)
    return BiasWord(
        address, coarse, fine, high=bool(word & 8), normal=bool(word & 4), n_type=bool(word & 2), enabled=bool(word & 1)
    )


def bias_name_of_address(address: int) -> tuple[int | None, str]:
    """``(core, name)`` of a per-core bias address, or ``(None, name)`` of a chip-global one."""
    for name, addr in GLOBAL_BIASES.items():
        if addr == address:
            return None, name
    core = (address & 1) + (2 if address >= 64 else 0)
    offset = address - (address & 1) - (64 if address >= 64 else 0)
    for name, spec in CORE_BIASES.items():
        if spec.offset == offset:
            return core, name
    raise ValueError(f"bias address {address} names no DYNAP-SE1 bias")


# --- CAM ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CamWord:
    """One CAM entry of chip-global neuron ``neuron`` (0..1023): listen to (pre_core, pre_neuron)."""

    neuron: int
    cam_index: int
    pre_core: int
    pre_neuron: int
    synapse: SynapseType


def encode_cam_word(neuron: int, cam_index: int, pre_core: int, pre_neuron: int, synapse: int) -> int:
    """CAM word: type 29–28, pre neuron 27–20, pre core 19–18, bit 17, target core 16–15,
    row 14–11, CAM index 10–5, column 3–0.  ``neuron`` is chip-global (0..1023)."""
    _check_bits(neuron, 10, "target neuron (chip-global)")
    if not 0 <= cam_index < CAM_ENTRIES_PER_NEURON:
        raise ValueError(f"CAM index {cam_index} out of range 0..{CAM_ENTRIES_PER_NEURON - 1}")
    check_core(pre_core)
    check_neuron(pre_neuron)
    synapse = SynapseType(synapse)
    return (
        (int(synapse) << 28)
        | (pre_neuron << 20)
        | (pre_core << 18)
        | (1 << 17)
        | ((neuron >> 8) << 15)
        | (((neuron >> 4) & 0xF) << 11)
        | (cam_index << 5)
        | (neuron & 0xF)
    )


def decode_cam_word(word: int) -> CamWord:
    """Inverse of :func:`encode_cam_word`."""
    if not (word >> 17) & 1 or word & 0x10:
        raise ValueError(f"0x{word:08X} is not a CAM word (bit 17 set, bit 4 clear)")
    neuron = (((word >> 15) & 3) << 8) | (((word >> 11) & 0xF) << 4) | (word & 0xF)
    return CamWord(neuron, (word >> 5) & 0x3F, (word >> 18) & 3, (word >> 20) & 0xFF, SynapseType((word >> 28) & 3))


def _chip_global_neurons(neurons: range | list[int], what: str) -> np.ndarray:
    """``neurons`` as a column of int64, each checked to be a chip-global neuron (0..1023)."""
    ids = np.asarray(list(neurons) if not isinstance(neurons, np.ndarray) else neurons, dtype=np.int64).reshape(-1)
    bad = ids[(ids < 0) | (ids >= 1 << 10)]
    if len(bad):
        _check_bits(int(bad[0]), 10, what)
    return ids[:, None]


def clear_cam_words(neurons: range | list[int] = range(1024)) -> list[int]:
    """libcaer CLEAR_CAM: type 0, pre address 0 in every CAM of every given chip-global neuron.

    The same words as :func:`encode_cam_word` per entry, computed in one numpy pass: a chip's
    clear is 65,536 words, which one Python call each made a ~0.1-0.2 s hold of the GIL.
    """
    n = _chip_global_neurons(neurons, "target neuron (chip-global)")
    cam_index = np.arange(CAM_ENTRIES_PER_NEURON, dtype=np.int64)[None, :]
    words = ((int(SynapseType.GABA_B) << 28) | (1 << 17) | ((n >> 8) << 15) | (((n >> 4) & 0xF) << 11)
             | (cam_index << 5) | (n & 0xF))
    return words.ravel().tolist()


# --- SRAM and routing --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Route:
    """Hops from a chip on the 2×2 board: ``sx`` 0 = east, 1 = west; ``sy`` 0 = north, 1 = south."""

    sx: int = 0
    dx: int = 0
    sy: int = 0
    dy: int = 0

    def __post_init__(self) -> None:
        _check_bits(self.sx, 1, "sx")
        _check_bits(self.sy, 1, "sy")
        _check_bits(self.dx, 2, "dx")
        _check_bits(self.dy, 2, "dy")


#: Chip positions (x, y) on the board, y growing south: U0 top-left, U1 top-right, U2, U3 below.
CHIP_POSITION: tuple[tuple[int, int], ...] = ((0, 0), (1, 0), (0, 1), (1, 1))
#: Where the FPGA sits in that grid: below U2, on U2's south output (user guide §7).
FPGA_POSITION = (0, 2)
#: libcaer's SRAM cell 0 route from each chip to the FPGA (and so to USB).
HOST_ROUTES: tuple[Route, ...] = (Route(0, 0, 1, 2), Route(1, 1, 1, 2), Route(0, 0, 1, 1), Route(1, 1, 1, 1))
HOST = "host"


def route_between(source_chip: int, destination_chip: int) -> Route:
    """The route from ``source_chip`` to ``destination_chip`` (both 0..3)."""
    sx0, sy0 = CHIP_POSITION[check_chip(source_chip)]
    sx1, sy1 = CHIP_POSITION[check_chip(destination_chip)]
    ddx, ddy = sx1 - sx0, sy1 - sy0
    return Route(sx=int(ddx < 0), dx=abs(ddx), sy=int(ddy > 0), dy=abs(ddy))


def route_destination(source_chip: int, route: Route) -> int | str | None:
    """Chip (0..3) a route from ``source_chip`` ends on, :data:`HOST` for the FPGA, None if off-board."""
    x, y = CHIP_POSITION[check_chip(source_chip)]
    x += -route.dx if route.sx else route.dx
    y += route.dy if route.sy else -route.dy
    if (x, y) == FPGA_POSITION:
        return HOST
    if (x, y) in CHIP_POSITION:
        return CHIP_POSITION.index((x, y))
    return None


@dataclass(frozen=True)
class SramWord:
    """One SRAM (fan-out) cell of chip-global neuron ``neuron``."""

    neuron: int
    cell: int
    virtual_core: int
    route: Route
    core_mask: int


def encode_sram_word(neuron: int, cell: int, virtual_core: int, route: Route, core_mask: int) -> int:
    """SRAM word: virtual core 29–28, sy 27, dy 26–25, sx 24, dx 23–22, core mask 21–18, bit 17,
    source core 16–15, source neuron 14–7, cell 6–5, bit 4.  ``neuron`` is chip-global."""
    _check_bits(neuron, 10, "source neuron (chip-global)")
    if not 0 <= cell < SRAM_ENTRIES_PER_NEURON:
        raise ValueError(f"SRAM cell {cell} out of range 0..{SRAM_ENTRIES_PER_NEURON - 1}")
    check_core(virtual_core)
    _check_bits(core_mask, 4, "destination core mask")
    return (
        (virtual_core << 28)
        | (route.sy << 27)
        | (route.dy << 25)
        | (route.sx << 24)
        | (route.dx << 22)
        | (core_mask << 18)
        | (1 << 17)
        | ((neuron >> 8) << 15)
        | ((neuron & 0xFF) << 7)
        | (cell << 5)
        | (1 << 4)
    )


def decode_sram_word(word: int) -> SramWord:
    """Inverse of :func:`encode_sram_word`."""
    if not (word >> 17) & 1 or not word & 0x10:
        raise ValueError(f"0x{word:08X} is not an SRAM word (bits 17 and 4 set)")
    route = Route(sx=(word >> 24) & 1, dx=(word >> 22) & 3, sy=(word >> 27) & 1, dy=(word >> 25) & 3)
    neuron = (((word >> 15) & 3) << 8) | ((word >> 7) & 0xFF)
    return SramWord(neuron, (word >> 5) & 3, (word >> 28) & 3, route, (word >> 18) & 0xF)


def host_route_sram_word(chip: int, neuron: int) -> int:
    """libcaer's SRAM cell 0 for chip-global ``neuron`` on ``chip``: route to the FPGA, the
    core-mask field carrying chip id + 1 (which the FPGA forwards as the event's chip), virtual
    core = the neuron's own core."""
    return encode_sram_word(neuron, 0, neuron >> 8, HOST_ROUTES[check_chip(chip)], chip + 1)


def clear_sram_words(neurons: range | list[int] = range(1024)) -> list[int]:
    """All four SRAM cells of the given chip-global neurons set to 'route nowhere' (libcaer DEFAULT_SRAM_EMPTY):
    :func:`encode_sram_word` with virtual core 0, no route and no cores, in one numpy pass."""
    n = _chip_global_neurons(neurons, "source neuron (chip-global)")
    cell = np.arange(SRAM_ENTRIES_PER_NEURON, dtype=np.int64)[None, :]
    words = (1 << 17) | ((n >> 8) << 15) | ((n & 0xFF) << 7) | (cell << 5) | (1 << 4)
    return words.ravel().tolist()


# --- tau, monitor ------------------------------------------------------------------------------------


def neuron_tau2_word(neuron: int) -> int:
    """Switch chip-global ``neuron`` to IF_TAU2_N: bit 10 + 10-bit neuron id."""
    return (1 << 10) | _check_bits(neuron, 10, "neuron (chip-global)")


def core_tau_word(core: int, tau2: bool) -> int:
    """Switch every neuron of ``core`` to tau1 (bit 12) or tau2 (bits 12 and 11), core in 9–8."""
    return (1 << 12) | (int(tau2) << 11) | (check_core(core) << 8)


def monitor_reset_word(core: int) -> int:
    """Disconnect ``core``'s analog monitor: bit 11 + core in bits 9–8."""
    return (1 << 11) | (check_core(core) << 8)


def monitor_select_word(neuron: int) -> int:
    """Route chip-global ``neuron`` to its core's analog monitor: the bare 10-bit id."""
    return _check_bits(neuron, 10, "neuron (chip-global)")


def monitor_words(core: int, neuron: int) -> list[int]:
    """libcaer MONITOR_NEU: reset the core's monitor, then select ``neuron`` (id within ``core``)."""
    return [monitor_reset_word(core), monitor_select_word(check_core(core) * N_NEURONS_PER_CORE + check_neuron(neuron))]


# --- host input spikes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class InputSpikeWord:
    """A spike the host injects on the selected chip as if from (source_core, source_neuron)."""

    source_core: int
    source_neuron: int
    route: Route
    core_mask: int


def encode_input_spike_word(source_core: int, source_neuron: int, core_mask: int, route: Route = Route()) -> int:
    """cAER ``gen_spikes`` word: neuron 27–20, core 19–18, bit 13, sy 9, dy 8–7, sx 6, dx 5–4, mask 3–0."""
    check_core(source_core)
    check_neuron(source_neuron)
    _check_bits(core_mask, 4, "destination core mask")
    return (
        (source_neuron << 20)
        | (source_core << 18)
        | (1 << 13)
        | (route.sy << 9)
        | (route.dy << 7)
        | (route.sx << 6)
        | (route.dx << 4)
        | core_mask
    )


def decode_input_spike_word(word: int) -> InputSpikeWord:
    """Inverse of :func:`encode_input_spike_word`."""
    if not (word >> 13) & 1 or (word >> 16) & 3:
        raise ValueError(f"0x{word:08X} is not a host input-spike word (bit 13 set, bits 17–16 clear)")
    route = Route(sx=(word >> 6) & 1, dx=(word >> 4) & 3, sy=(word >> 9) & 1, dy=(word >> 7) & 3)
    return InputSpikeWord((word >> 18) & 3, (word >> 20) & 0xFF, route, word & 0xF)


# --- classification --------------------------------------------------------------------------------


class ChipWordKind(Enum):
    SRAM = "sram"
    CAM = "cam"
    BIAS = "bias"
    INPUT_SPIKE = "input_spike"
    CORE_TAU = "core_tau"
    MONITOR_RESET = "monitor_reset"
    NEURON_TAU2 = "neuron_tau2"
    MONITOR_SELECT = "monitor_select"


def classify_chip_word(word: int) -> ChipWordKind:
    """Which layout a CHIP/CONTENT word has (table in the module docstring)."""
    if (word >> 17) & 1:
        return ChipWordKind.SRAM if word & 0x10 else ChipWordKind.CAM
    if (word >> 16) & 1:
        return ChipWordKind.BIAS
    if (word >> 13) & 1:
        return ChipWordKind.INPUT_SPIKE
    if (word >> 12) & 1:
        return ChipWordKind.CORE_TAU
    if (word >> 11) & 1:
        return ChipWordKind.MONITOR_RESET
    if (word >> 10) & 1:
        return ChipWordKind.NEURON_TAU2
    return ChipWordKind.MONITOR_SELECT

