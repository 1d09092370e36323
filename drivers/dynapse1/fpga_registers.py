"""DYNAP-SE1 FPGA configuration registers, vendor requests and the libcaer start/stop sequences.

Everything here is a fact about the wire (reference ``dynapse_protocol.md`` §2):
module and parameter addresses, the three vendor control requests and how their
payloads are packed, as :class:`ControlTransfer` values the transport sends unchanged.
The virtual board (``emulator.virtual_fpga``) does **not** use these helpers: it decodes the
documented layout on its own, and both sides are checked against transfers recorded from
libcaer itself (``tests/data/libcaer``), so a wrong encoding cannot round-trip unnoticed.

Payload formats
---------------
``0xBF`` (one register, OUT or IN)
    wValue = module, wIndex = parameter, data = 32-bit value big-endian.
``0xC2`` (several register writes, no acknowledgement)
    wValue = N, wIndex = 0, data = N × (module u8, parameter u8, value u32 big-endian).
``0xC6`` (chip words, acknowledged)
    wValue = N ≤ 85, wIndex = 0, data = N × (5, 2, chip word u32 big-endian);
    the host then reads two bytes and expects ``0xC6 0x00``.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import IntEnum

import numpy as np

from .topology import check_chip

# --- USB-level constants -------------------------------------------------------------------------

#: bmRequestType of a vendor request to the device (host → device) and from it.
REQUEST_TYPE_VENDOR_OUT = 0x40
REQUEST_TYPE_VENDOR_IN = 0xC0

VR_FPGA_CONFIG = 0xBF  # read or write one FPGA register
VR_FPGA_CONFIG_MULTIPLE = 0xC2  # several register writes, no acknowledgement
VR_CHIP_CONFIG_MULTIPLE = 0xC6  # chip words through CHIP/CONTENT, acknowledged

#: libcaer never sends more than 85 six-byte entries in one transfer (510 bytes).
MAX_ENTRIES_PER_TRANSFER = 85
ENTRY_SIZE = 6

#: The acknowledgement the FX2 returns after a 0xC6 batch.
CHIP_CONFIG_ACK = bytes((VR_CHIP_CONFIG_MULTIPLE, 0x00))

EVENT_ENDPOINT_IN = 0x82
USB_CONFIGURATION = 1
USB_INTERFACE = 0

REQUIRED_FIRMWARE_VERSION = 3  # low byte of bcdDevice
REQUIRED_LOGIC_VERSION = 5  # SYSINFO / LOGIC_VERSION
DYNAPSE_CHIP_IDENTIFIER = 64  # SYSINFO / CHIP_IDENTIFIER

#: FX2 clock that USB/EARLY_PACKET_DELAY counts in: 30 MHz, so 125 µs = 3750 cycles.
USB_EARLY_PACKET_UNIT_CYCLES = 3750
USB_EARLY_PACKET_UNIT_US = 125
#: The FPGA's SRAM (ISSI 61WV102416): 1 Mi words of 16 bits, written through the SRAM module.
FPGA_SRAM_WORDS = 1 << 20
#: FPGA logic clock of the spike generator: ISIBase counts cycles of 90 MHz (11.11 ns).
FPGA_LOGIC_CLOCK_MHZ = 90


class Module(IntEnum):
    """FPGA configuration modules (wValue of 0xBF)."""

    MUX = 0
    AER = 1
    CHIP = 5
    SYSINFO = 6
    USB = 9
    SRAM = 14
    SYNAPSERECONFIG = 15
    SPIKEGEN = 16
    POISSONSPIKEGEN = 18


class MuxParam(IntEnum):
    RUN = 0
    TIMESTAMP_RUN = 1
    TIMESTAMP_RESET = 2
    FORCE_CHIP_BIAS_ENABLE = 3
    DROP_AER_ON_TRANSFER_STALL = 4
    HAS_STATISTICS = 10
    STATISTICS_AER_DROPPED = 11  # 64-bit counter spread over params 11 and 12 (read-only)


class AerParam(IntEnum):
    RUN = 3
    ACK_DELAY = 4
    ACK_EXTENSION = 6
    WAIT_ON_TRANSFER_STALL = 8
    EXTERNAL_AER_CONTROL = 10
    HAS_STATISTICS = 40
    STATISTICS_EVENTS = 41
    STATISTICS_EVENTS_DROPPED = 45


class ChipParam(IntEnum):
    RUN = 0
    ID = 1
    CONTENT = 2
    REQ_DELAY = 3
    REQ_EXTENSION = 4


class SysinfoParam(IntEnum):
    LOGIC_VERSION = 0
    CHIP_IDENTIFIER = 1
    DEVICE_IS_MASTER = 2
    LOGIC_CLOCK = 3
    LOGIC_PATCH = 7


class UsbParam(IntEnum):
    RUN = 0
    EARLY_PACKET_DELAY = 1


class SramParam(IntEnum):
    """FPGA SRAM module.  RWCOMMAND takes :data:`SRAM_WRITE` (1) or :data:`SRAM_READ` (0)."""

    ADDRESS = 1
    READDATA = 2
    WRITEDATA = 3
    RWCOMMAND = 4
    BURSTMODE = 5


SRAM_READ = 0
SRAM_WRITE = 1


class SynapseReconfigParam(IntEnum):
    """SYNAPSERECONFIG (the DVS-to-synapse mapper); CHIPSELECT takes the CHIP/ID device encoding."""

    RUN = 0
    GLOBALKERNEL = 1
    USESRAMKERNELS = 2
    CHIPSELECT = 3
    SRAMBASEADDR = 4


class SpikeGenParam(IntEnum):
    RUN = 0
    VARMODE = 1
    BASEADDR = 2
    STIMCOUNT = 3
    ISI = 4
    ISIBASE = 5
    REPEAT = 6


class PoissonParam(IntEnum):
    RUN = 0
    WRITEADDRESS = 1
    WRITEDATA = 2
    CHIPID = 3


#: Host chip id → value of CHIP/ID, POISSONSPIKEGEN/CHIPID and SYNAPSERECONFIG/CHIPSELECT
#: (libcaer ``translateChipIdHostToDevice``, applied to all three; the user guide's table swaps
#: U1 and U2, the code is trusted).
CHIP_ID_HOST_TO_DEVICE: tuple[int, ...] = (0, 8, 4, 12)


def chip_id_to_device(chip: int) -> int:
    """CHIP/ID register value that selects host chip ``chip`` (0..3)."""
    return CHIP_ID_HOST_TO_DEVICE[check_chip(chip)]


def chip_id_from_device(value: int) -> int:
    """Host chip id selected by CHIP/ID register value ``value``; ``ValueError`` if none."""
    try:
        return CHIP_ID_HOST_TO_DEVICE.index(int(value))
    except ValueError:
        raise ValueError(f"CHIP/ID value {value} selects no chip (valid: {CHIP_ID_HOST_TO_DEVICE})") from None


# --- payload packing ------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegisterWrite:
    """One FPGA register write: ``module``/``param`` ← 32-bit ``value``."""

    module: int
    param: int
    value: int

    def __post_init__(self) -> None:
        if not 0 <= self.module <= 0xFF or not 0 <= self.param <= 0xFF:
            raise ValueError(f"module/param out of byte range: {self.module}/{self.param}")
        if not 0 <= self.value <= 0xFFFFFFFF:
            raise ValueError(f"register value {self.value} does not fit 32 bits")


def pack_register_value(value: int) -> bytes:
    """The 4-byte big-endian data stage of a 0xBF write."""
    return struct.pack(">I", value & 0xFFFFFFFF)


def unpack_register_value(data: bytes | Sequence[int]) -> int:
    """Inverse of :func:`pack_register_value` (the data stage of a 0xBF read)."""
    raw = bytes(data)
    if len(raw) != 4:
        raise ValueError(f"register value must be 4 bytes, got {len(raw)}")
    return struct.unpack(">I", raw)[0]


def pack_entries(writes: Sequence[RegisterWrite]) -> bytes:
    """Data stage of a 0xC2 or 0xC6 transfer: module, param, big-endian value per entry."""
    return b"".join(struct.pack(">BBI", w.module, w.param, w.value) for w in writes)


def unpack_entries(data: bytes | Sequence[int]) -> list[RegisterWrite]:
    """Inverse of :func:`pack_entries`; ``ValueError`` if the length is not a multiple of 6."""
    raw = bytes(data)
    if len(raw) % ENTRY_SIZE:
        raise ValueError(f"multi-entry payload of {len(raw)} bytes is not a multiple of {ENTRY_SIZE}")
    return [RegisterWrite(*struct.unpack_from(">BBI", raw, i)) for i in range(0, len(raw), ENTRY_SIZE)]


#: One 6-byte payload entry as numpy lays it out: module, param, value big-endian (packed, no padding).
ENTRY_DTYPE = np.dtype([("module", "u1"), ("param", "u1"), ("value", ">u4")])


def chip_word_payload(words: Iterable[int] | np.ndarray) -> bytes:
    """Chip words as the concatenated CHIP/CONTENT entries of 0xC6 payloads (6 bytes each).

    Built with numpy in one pass: a board clear sends ~10^5 words, and one Python object per
    word (as :class:`RegisterWrite` entries were) made the garbage collector stall every thread.
    """
    values = np.asarray(words if isinstance(words, (Sequence, np.ndarray)) else list(words))
    if values.dtype.kind not in "iu":  # e.g. an object array of Python or numpy ints
        values = np.array([int(w) for w in values.ravel()], np.int64)
    values = values.ravel()
    if len(values) and (values.min() < 0 or values.max() > 0xFFFFFFFF):
        bad = values[(values < 0) | (values > 0xFFFFFFFF)][0]
        raise ValueError(f"register value {int(bad)} does not fit 32 bits")
    entries = np.empty(len(values), ENTRY_DTYPE)
    entries["module"] = Module.CHIP
    entries["param"] = ChipParam.CONTENT
    entries["value"] = values
    return entries.tobytes()


def batches(items: Sequence, size: int = MAX_ENTRIES_PER_TRANSFER) -> Iterable[Sequence]:
    """Consecutive slices of at most ``size`` items."""
    for start in range(0, len(items), size):
        yield items[start : start + size]


# --- control transfers ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ControlTransfer:
    """One vendor control transfer exactly as it goes on the wire.

    ``request`` is 0xBF, 0xC2 or 0xC6; OUT transfers carry ``data``; IN transfers (register
    reads, the 0xC6 acknowledgement) carry ``length``, the number of bytes asked for.
    """

    request: int
    value: int
    index: int
    data: bytes = b""
    direction_in: bool = False
    length: int = 0

    @property
    def is_chip_words(self) -> bool:
        """A 0xC6 batch: the sender must read and check the two-byte acknowledgement after it."""
        return self.request == VR_CHIP_CONFIG_MULTIPLE and not self.direction_in

    def as_tuple(self) -> tuple[str, int, int, int, str]:
        """``(direction, bRequest, wValue, wIndex, data hex)``: the form of libcaer's recorded vectors."""
        return ("in" if self.direction_in else "out", self.request, self.value, self.index, self.data.hex())


def single_write(module: int, param: int, value: int) -> ControlTransfer:
    """0xBF OUT: one register (libcaer ``spiConfigSend``)."""
    write = RegisterWrite(int(module), int(param), int(value))
    return ControlTransfer(VR_FPGA_CONFIG, write.module, write.param, pack_register_value(write.value))


def single_writes(writes: Iterable[RegisterWrite]) -> list[ControlTransfer]:
    """One 0xBF OUT per register, in order (how libcaer sends every configuration write)."""
    return [single_write(w.module, w.param, w.value) for w in writes]


def register_read(module: int, param: int) -> ControlTransfer:
    """0xBF IN: one register (libcaer ``spiConfigReceive``)."""
    return ControlTransfer(VR_FPGA_CONFIG, int(module), int(param), direction_in=True, length=4)


def multiple_writes(writes: Sequence[RegisterWrite]) -> list[ControlTransfer]:
    """0xC2 OUT transfers of at most 85 entries each, no acknowledgement."""
    return [ControlTransfer(VR_FPGA_CONFIG_MULTIPLE, len(b), 0, pack_entries(b)) for b in batches(list(writes))]


def chip_word_transfers(words: Iterable[int] | np.ndarray) -> list[ControlTransfer]:
    """0xC6 OUT batches of at most 85 chip words (libcaer ``caerDynapseSendDataToUSB``).

    The sender reads the ``0xC6 0x00`` acknowledgement after each (libcaer
    ``sendUSBCommandVerifyMultiple``).  A single word is a batch of one, which is how libcaer
    writes CHIP/CONTENT through ``dynapseConfigSet``.  ``words`` may be a list or a numpy array.
    """
    payload = chip_word_payload(words)
    step = MAX_ENTRIES_PER_TRANSFER * ENTRY_SIZE
    return [
        ControlTransfer(VR_CHIP_CONFIG_MULTIPLE, (min(step, len(payload) - start)) // ENTRY_SIZE, 0, payload[start : start + step])
        for start in range(0, len(payload), step)
    ]


# --- sequences (libcaer dynapse.c) -----------------------------------------------------------------


def start_streaming_sequence() -> list[RegisterWrite]:
    """libcaer ``dynapseDataStart``: USB, MUX, timestamps, chip bus and AER on, in that order."""
    return [
        RegisterWrite(Module.USB, UsbParam.RUN, 1),
        RegisterWrite(Module.MUX, MuxParam.RUN, 1),
        RegisterWrite(Module.MUX, MuxParam.TIMESTAMP_RUN, 1),
        RegisterWrite(Module.CHIP, ChipParam.RUN, 1),
        RegisterWrite(Module.AER, AerParam.RUN, 1),
    ]


def stop_streaming_sequence() -> list[RegisterWrite]:
    """libcaer ``dynapseDataStop``: chip bus, AER, FORCE_CHIP_BIAS_ENABLE, timestamps, MUX, USB off."""
    return [
        RegisterWrite(Module.CHIP, ChipParam.RUN, 0),
        RegisterWrite(Module.AER, AerParam.RUN, 0),
        RegisterWrite(Module.MUX, MuxParam.FORCE_CHIP_BIAS_ENABLE, 0),
        RegisterWrite(Module.MUX, MuxParam.TIMESTAMP_RUN, 0),
        RegisterWrite(Module.MUX, MuxParam.RUN, 0),
        RegisterWrite(Module.USB, UsbParam.RUN, 0),
    ]


def timestamp_reset_pulse() -> list[RegisterWrite]:
    """MUX/TIMESTAMP_RESET 1 then 0, sent in one 0xC2 transfer as libcaer does."""
    return [
        RegisterWrite(Module.MUX, MuxParam.TIMESTAMP_RESET, 1),
        RegisterWrite(Module.MUX, MuxParam.TIMESTAMP_RESET, 0),
    ]


def early_packet_delay_value(units: int) -> int:
    """USB/EARLY_PACKET_DELAY register value for ``units`` × 125 µs (libcaer multiplies by 3750)."""
    return int(units) * USB_EARLY_PACKET_UNIT_CYCLES


def default_fpga_config(early_packet_delay_us: int = 1000) -> list[RegisterWrite]:
    """libcaer ``dynapseSendDefaultConfig``, FPGA part, up to switching chip bus and AER on.

    libcaer's first call, MUX/TIMESTAMP_RESET ← false, sends nothing (only a true value
    sends the reset pulse), so the sequence starts with FORCE_CHIP_BIAS_ENABLE.  Chip words
    (silent biases, SRAM defaults, low-power biases) follow.  ``early_packet_delay_us`` is
    rounded to the 125 µs host unit (libcaer default 8 units = 1 ms).
    """
    units = max(1, round(early_packet_delay_us / USB_EARLY_PACKET_UNIT_US))
    return [
        RegisterWrite(Module.MUX, MuxParam.FORCE_CHIP_BIAS_ENABLE, 0),
        RegisterWrite(Module.MUX, MuxParam.DROP_AER_ON_TRANSFER_STALL, 0),
        RegisterWrite(Module.AER, AerParam.ACK_DELAY, 0),
        RegisterWrite(Module.AER, AerParam.ACK_EXTENSION, 0),
        RegisterWrite(Module.AER, AerParam.WAIT_ON_TRANSFER_STALL, 0),
        RegisterWrite(Module.AER, AerParam.EXTERNAL_AER_CONTROL, 0),
        RegisterWrite(Module.CHIP, ChipParam.REQ_DELAY, 30),
        RegisterWrite(Module.CHIP, ChipParam.REQ_EXTENSION, 30),
        RegisterWrite(Module.USB, UsbParam.EARLY_PACKET_DELAY, early_packet_delay_value(units)),
        RegisterWrite(Module.CHIP, ChipParam.RUN, 1),
        RegisterWrite(Module.AER, AerParam.RUN, 1),
    ]


def config_bus_off() -> list[RegisterWrite]:
    """Chip bus and AER off again after the default chip configuration (libcaer)."""
    return [RegisterWrite(Module.CHIP, ChipParam.RUN, 0), RegisterWrite(Module.AER, AerParam.RUN, 0)]


def poisson_chip_id_value(chip: int) -> int:
    """POISSONSPIKEGEN/CHIPID value that targets host chip ``chip``: the device encoding 0/8/4/12.

    libcaer's ``dynapseConfigSet`` translates this parameter with ``translateChipIdHostToDevice``,
    exactly as it does CHIP/ID; the register's meaning is not documented elsewhere, so we follow
    libcaer (it is what has driven real boards).
    """
    return chip_id_to_device(chip)


def synapse_reconfig_chip_select_value(chip: int) -> int:
    """SYNAPSERECONFIG/CHIPSELECT value for host chip ``chip``: the device encoding, as in libcaer."""
    return chip_id_to_device(chip)
