"""How the virtual FPGA reads what the host sends: the DYNAP-SE1 wire layout, decoded on its own.

This module deliberately shares no code with the driver's encoders (``drivers.dynapse1``):
it is written from the documented layout (``/work/shared/reference/dynapse_protocol.md``
§2, §4, §5, taken from libcaer ``dynapse.h``/``dynapse.c``), so a wrong encoding in the
driver cannot be undone by the same mistake here.  Both sides are checked against
transfers recorded from libcaer itself (``tests/data/libcaer``).

Nothing here raises on a malformed word: decoders return plain tuples of fields and the
:class:`~emulator.virtual_fpga.VirtualFpga` decides what a value the silicon would not
accept means (it logs it as a transfer libcaer never sends).
"""

from __future__ import annotations

import struct
from typing import NamedTuple

# --- USB identity and vendor requests ---------------------------------------------------------------

VENDOR_ID = 0x152A
PRODUCT_ID = 0x841D
FIRMWARE_VERSION = 3  # low byte of bcdDevice
LOGIC_VERSION = 5  # SYSINFO / LOGIC_VERSION
CHIP_IDENTIFIER = 64  # SYSINFO / CHIP_IDENTIFIER for a Dynap-se
LOGIC_CLOCK_MHZ = 90
EVENT_ENDPOINT = 0x82
CONFIGURATION = 1
INTERFACE = 0

REQUEST_CONFIG = 0xBF  # one register, OUT (4-byte big-endian value) or IN
REQUEST_CONFIG_MULTIPLE = 0xC2  # N × (module, param, u32 big-endian), OUT, not acknowledged
REQUEST_CHIP_MULTIPLE = 0xC6  # N ≤ 85 chip words as CHIP/CONTENT entries, OUT, then a 2-byte IN ack
ACK = b"\xc6\x00"
MAX_ENTRIES = 85
ENTRY_BYTES = 6

# --- registers (module, param) ----------------------------------------------------------------------

MUX, AER, CHIP, SYSINFO, USB, SRAM, SYNAPSERECONFIG, SPIKEGEN, POISSON = 0, 1, 5, 6, 9, 14, 15, 16, 18

MUX_RUN, MUX_TIMESTAMP_RUN, MUX_TIMESTAMP_RESET, MUX_FORCE_CHIP_BIAS, MUX_DROP_AER = 0, 1, 2, 3, 4
MUX_HAS_STATISTICS, MUX_AER_DROPPED = 10, 11  # the 64-bit counter spans params 11 (high) and 12 (low)
AER_RUN = 3
AER_HAS_STATISTICS, AER_EVENTS, AER_EVENTS_DROPPED = 40, 41, 45  # 64-bit counters: 41–42, 45–46
CHIP_RUN, CHIP_ID, CHIP_CONTENT = 0, 1, 2
USB_RUN, USB_EARLY_PACKET_DELAY = 0, 1
USB_CYCLES_PER_UNIT, USB_UNIT_US = 3750, 125  # 125 µs host units of the 30 MHz FX2 clock
SRAM_ADDRESS, SRAM_READDATA, SRAM_WRITEDATA, SRAM_RWCOMMAND, SRAM_BURSTMODE = 1, 2, 3, 4, 5
SRAM_WRITE = 1
SYNRECONF_RUN, SYNRECONF_GLOBALKERNEL, SYNRECONF_USESRAMKERNELS, SYNRECONF_CHIPSELECT, SYNRECONF_SRAMBASEADDR = 0, 1, 2, 3, 4
SPIKEGEN_RUN, SPIKEGEN_VARMODE, SPIKEGEN_BASEADDR, SPIKEGEN_STIMCOUNT, SPIKEGEN_ISI, SPIKEGEN_ISIBASE, SPIKEGEN_REPEAT = range(7)
POISSON_RUN, POISSON_WRITEADDRESS, POISSON_WRITEDATA, POISSON_CHIPID = 0, 1, 2, 3
POISSON_HZ_PER_CODE = 0.06706

#: What libcaer's ``dynapseConfigSet`` ever writes, per module (``0xBF`` unless noted elsewhere).
WRITABLE: dict[int, frozenset[int]] = {
    MUX: frozenset({MUX_RUN, MUX_TIMESTAMP_RUN, MUX_FORCE_CHIP_BIAS, MUX_DROP_AER}),
    AER: frozenset({AER_RUN, 4, 6, 8, 10}),
    CHIP: frozenset({CHIP_RUN, CHIP_ID, 3, 4}),
    USB: frozenset({USB_RUN, USB_EARLY_PACKET_DELAY}),
    SRAM: frozenset({SRAM_ADDRESS, SRAM_WRITEDATA, SRAM_RWCOMMAND, SRAM_BURSTMODE}),
    SYNAPSERECONFIG: frozenset(range(5)),
    SPIKEGEN: frozenset(range(7)),
    POISSON: frozenset(range(4)),
}
#: What libcaer's ``dynapseConfigGet`` and its device open ever read.
READABLE: dict[int, frozenset[int]] = {
    MUX: frozenset({0, 1, 3, 4, MUX_HAS_STATISTICS, MUX_AER_DROPPED, MUX_AER_DROPPED + 1}),
    AER: frozenset({3, 4, 6, 8, 10, AER_HAS_STATISTICS, 41, 42, 45, 46}),
    CHIP: frozenset({0, 1, 2, 3, 4}),
    SYSINFO: frozenset({0, 1, 2, 3, 7}),
    USB: frozenset({0, 1}),
    SRAM: frozenset({1, 2, 3, 4, 5}),
    SYNAPSERECONFIG: frozenset(range(5)),
    SPIKEGEN: frozenset(range(7)),
    POISSON: frozenset(range(4)),
}

#: Device value of CHIP/ID, POISSON/CHIPID and SYNAPSERECONFIG/CHIPSELECT → host chip (U0..U3).
CHIP_OF_DEVICE_ID: dict[int, int] = {0: 0, 8: 1, 4: 2, 12: 3}


def unpack_value(data: bytes) -> int:
    """The big-endian 32-bit value of a 0xBF data stage."""
    return struct.unpack(">I", data)[0]


def pack_value(value: int) -> bytes:
    return struct.pack(">I", value & 0xFFFFFFFF)


def unpack_entries(data: bytes) -> list[tuple[int, int, int]]:
    """``(module, param, value)`` of each 6-byte entry of a 0xC2/0xC6 data stage (whole entries only)."""
    return [struct.unpack_from(">BBI", data, i) for i in range(0, len(data) - len(data) % ENTRY_BYTES, ENTRY_BYTES)]


# --- biases (reference §4.1, §4.3) ---------------------------------------------------------------------

#: Core-0 address offset of each per-core bias; +1 for cores 1 and 3, +64 for cores 2 and 3.
CORE_BIAS_OFFSETS: dict[int, str] = {
    0: "PULSE_PWLK_P", 2: "PS_WEIGHT_INH_S_N", 4: "PS_WEIGHT_INH_F_N", 6: "PS_WEIGHT_EXC_S_N",
    8: "PS_WEIGHT_EXC_F_N", 10: "IF_RFR_N", 12: "IF_TAU1_N", 14: "IF_AHTAU_N", 16: "IF_CASC_N",
    18: "IF_TAU2_N", 20: "IF_BUF_P", 22: "IF_AHTHR_N", 24: "IF_THR_N", 26: "NPDPIE_THR_S_P",
    28: "NPDPIE_THR_F_P", 30: "NPDPII_THR_F_P", 32: "NPDPII_THR_S_P", 34: "IF_NMDA_N", 36: "IF_DC_P",
    38: "IF_AHW_P", 40: "NPDPII_TAU_S_P", 42: "NPDPII_TAU_F_P", 44: "NPDPIE_TAU_F_P", 46: "NPDPIE_TAU_S_P",
    48: "R2R_P",
}  # fmt: skip
GLOBAL_BIAS_ADDRESSES: dict[int, str] = {50: "U_BUFFER", 51: "U_SSP", 52: "U_SSN", 114: "D_BUFFER", 115: "D_SSP", 116: "D_SSN"}
_UNREVERSE3 = (0, 4, 2, 6, 1, 5, 3, 7)  # the coarse field is the 3-bit reversal of the coarse value


class BiasField(NamedTuple):
    core: int | None  # None for a chip-global bias
    name: str
    coarse: int
    fine: int
    high: bool
    normal: bool
    enabled: bool


def bias_of_address(address: int) -> tuple[int | None, str] | None:
    """``(core, name)`` of a 7-bit bias address, ``(None, name)`` for a chip-global one, None if unused."""
    if address in GLOBAL_BIAS_ADDRESSES:
        return None, GLOBAL_BIAS_ADDRESSES[address]
    core = (address & 1) | (2 if address & 64 else 0)
    name = CORE_BIAS_OFFSETS.get(address & ~65)
    return (core, name) if name is not None else None


def decode_bias(word: int) -> BiasField | None:
    """The bias a bias word (bit 16 set, bit 17 clear) sets, or None for an unused address.

    Shifted-source (SSP/SSN) words carry a 6-bit fine value and no coarse (reported as 0);
    BUFFER words a coarse and 8-bit fine.  Neither carries flags (reported as libcaer parses
    them: False).
    """
    where = bias_of_address((word >> 18) & 0x7F)
    if where is None:
        return None
    core, name = where
    if name.endswith(("SSP", "SSN")):
        return BiasField(core, name, 0, (word >> 4) & 0x3F, False, False, False)
    coarse = _UNREVERSE3[(word >> 12) & 7]
    fine = (word >> 4) & 0xFF
    if core is None:
        return BiasField(core, name, coarse, fine, False, False, False)
    return BiasField(core, name, coarse, fine, bool(word & 8), bool(word & 4), bool(word & 1))


# --- CAM, SRAM and the other chip words (reference §5) ------------------------------------------------


class CamField(NamedTuple):
    neuron: int  # chip-global target 0..1023
    cam_index: int
    pre_core: int
    pre_neuron: int
    synapse_type: int


class SramField(NamedTuple):
    neuron: int  # chip-global source 0..1023
    cell: int
    virtual_core: int
    sx: int
    dx: int
    sy: int
    dy: int
    core_mask: int


class InputSpikeField(NamedTuple):
    source_core: int
    source_neuron: int
    sx: int
    dx: int
    sy: int
    dy: int
    core_mask: int


def decode_cam(word: int) -> CamField:
    neuron = ((word >> 15) & 3) << 8 | ((word >> 11) & 0xF) << 4 | (word & 0xF)
    return CamField(neuron, (word >> 5) & 0x3F, (word >> 18) & 3, (word >> 20) & 0xFF, (word >> 28) & 3)


def decode_sram(word: int) -> SramField:
    neuron = ((word >> 15) & 3) << 8 | ((word >> 7) & 0xFF)
    return SramField(
        neuron, (word >> 5) & 3, (word >> 28) & 3, (word >> 24) & 1, (word >> 22) & 3, (word >> 27) & 1, (word >> 25) & 3, (word >> 18) & 0xF
    )


def decode_input_spike(word: int) -> InputSpikeField:
    return InputSpikeField((word >> 18) & 3, (word >> 20) & 0xFF, (word >> 6) & 1, (word >> 4) & 3, (word >> 9) & 1, (word >> 7) & 3, word & 0xF)


#: Bits each layout defines; a word with other bits set is not one libcaer (or cAER) builds.
_LAYOUT_BITS = {
    "sram": 0x3FFFFFF0,
    "cam": 0x3FFFFFEF,
    "bias": 0x01FFFFFF & ~(1 << 17),
    "input_spike": 0x0FFC23FF,
    "core_tau": 0x1B00,
    "monitor_reset": 0x0B00,
    "neuron_tau2": 0x07FF,
    "monitor_select": 0x03FF,
}


def classify(word: int) -> str:
    """Which chip-word layout ``word`` has: the first match of bit 17 (+ bit 4: SRAM, else CAM),
    bit 16 (bias), bit 13 (host input spike), bit 12 (core tau), bit 11 (monitor reset),
    bit 10 (one neuron to tau2), else a monitor select."""
    if word >> 17 & 1:
        return "sram" if word & 0x10 else "cam"
    if word >> 16 & 1:
        return "bias"
    for bit, kind in ((13, "input_spike"), (12, "core_tau"), (11, "monitor_reset"), (10, "neuron_tau2")):
        if word >> bit & 1:
            return kind
    return "monitor_select"


def stray_bits(word: int, kind: str) -> int:
    """Bits of ``word`` outside its layout (0 for a well-formed word)."""
    return word & ~_LAYOUT_BITS[kind] & 0xFFFFFFFF


# --- FPGA SRAM contents -------------------------------------------------------------------------------


def burst_halves(value: int) -> tuple[int, int]:
    """The two 16-bit words of one burst WRITEDATA: the lower address is in the low half."""
    return value & 0xFFFF, (value >> 16) & 0xFFFF


def spike_generator_event(word: int) -> tuple[int, int, int]:
    """``(chip, neuron, core_mask)`` of a 14-bit spike-generator event word (neuron 13–6, chip 5–4, mask 3–0)."""
    return (word >> 4) & 3, (word >> 6) & 0xFF, word & 0xF


def poisson_rate_hz(code: int) -> float:
    return (code & 0xFFFF) * POISSON_HZ_PER_CODE
