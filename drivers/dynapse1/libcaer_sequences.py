"""The control-transfer sequences libcaer sends for each board operation, built from our codecs.

Each function returns the :class:`~drivers.dynapse1.fpga_registers.ControlTransfer` list the
driver sends, in libcaer's order and framing (one 0xBF per register write, 0xC2 only for the
timestamp-reset pulse and SRAM burst data, 0xC6 batches of at most 85 chip words, each
acknowledged).  ``tests/test_driver_libcaer_vectors.py`` compares these lists byte for byte
with transfers recorded from libcaer ``dynapse.c`` (``tests/data/libcaer/PROVENANCE.md``).

Where the silicon's behaviour is not documented (the SRAM burst protocol, the Poisson chip
select, the synapse-reconfiguration chip select), libcaer's sequence is what has run on real
boards, so we follow it literally and say so at each function.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import numpy as np

from . import chip_words as cw
from . import fpga_registers as fr
from . import spikegen_words as sg
from .fpga_registers import ControlTransfer, Module, RegisterWrite
from .topology import N_CHIPS, N_NEURONS_PER_CHIP, SRAM_ENTRIES_PER_NEURON, check_chip

#: The order in which libcaer's ``setSilentBiases``/``setLowPowerBiases`` write a core's biases.
LIBCAER_CORE_BIAS_ORDER: tuple[str, ...] = (
    "IF_BUF_P", "IF_RFR_N", "IF_NMDA_N", "IF_DC_P", "IF_TAU1_N", "IF_TAU2_N", "IF_THR_N", "IF_AHW_P",
    "IF_AHTAU_N", "IF_AHTHR_N", "IF_CASC_N", "PULSE_PWLK_P", "PS_WEIGHT_INH_S_N", "PS_WEIGHT_INH_F_N",
    "PS_WEIGHT_EXC_S_N", "PS_WEIGHT_EXC_F_N", "NPDPII_TAU_S_P", "NPDPII_TAU_F_P", "NPDPII_THR_S_P",
    "NPDPII_THR_F_P", "NPDPIE_TAU_S_P", "NPDPIE_TAU_F_P", "NPDPIE_THR_S_P", "NPDPIE_THR_F_P", "R2R_P",
)  # fmt: skip
#: ... and the chip-global biases after the four cores.
LIBCAER_GLOBAL_BIAS_ORDER: tuple[str, ...] = ("D_BUFFER", "D_SSP", "D_SSN", "U_BUFFER", "U_SSP", "U_SSN")

#: What libcaer's ``populateDeviceInfo`` reads at open, after the logic version, in its order.
DEVICE_INFO_READS: tuple[tuple[int, int], ...] = (
    (Module.SYSINFO, fr.SysinfoParam.DEVICE_IS_MASTER),
    (Module.SYSINFO, fr.SysinfoParam.LOGIC_CLOCK),
    (Module.SYSINFO, fr.SysinfoParam.CHIP_IDENTIFIER),
    (Module.AER, fr.AerParam.HAS_STATISTICS),
    (Module.MUX, fr.MuxParam.HAS_STATISTICS),
)

#: ``chip -> chip words``: the driver's additions to the start-up sequence (see :func:`default_configuration`).
ChipWordsOfChip = Callable[[int], Sequence[int]]


def select_chip(chip: int) -> ControlTransfer:
    """CHIP/ID ← the device encoding of host chip ``chip`` (libcaer ``translateChipIdHostToDevice``)."""
    return fr.single_write(Module.CHIP, fr.ChipParam.ID, fr.chip_id_to_device(chip))


def bias_word_transfers(words: Iterable[int]) -> list[ControlTransfer]:
    """Bias words one 0xC6 transfer each, as libcaer's ``setDynapseBias`` → ``dynapseConfigSet``
    (CHIP/CONTENT) sends them: every bias write is acknowledged on its own."""
    return [t for w in words for t in fr.chip_word_transfers([w])]


def default_sram_words(chip: int) -> list[int]:
    """libcaer DEFAULT_SRAM for ``chip``: cell 0 of every neuron routes to the FPGA (USB), cells 1–3 empty."""
    empty = cw.Route()
    return [
        cw.host_route_sram_word(chip, n) if cell == 0 else cw.encode_sram_word(n, cell, 0, empty, 0)
        for n in range(N_NEURONS_PER_CHIP)
        for cell in range(SRAM_ENTRIES_PER_NEURON)
    ]


def default_configuration(
    silent_bias_words: Sequence[int],
    low_power_bias_words: Sequence[int],
    extra_chip_words: ChipWordsOfChip | None = None,
    early_packet_delay_us: int = 1000,
) -> list[ControlTransfer]:
    """libcaer ``dynapseSendDefaultConfig`` as transfers.

    FPGA defaults and chip bus on; per chip: select, silent biases; per chip: select, clear
    SRAM; per chip: select, low-power biases; per chip: select, default SRAM (cell 0 → USB);
    chip bus and AER off.  The bias word lists are in :data:`LIBCAER_CORE_BIAS_ORDER` order
    (cores 0–3, then :data:`LIBCAER_GLOBAL_BIAS_ORDER`); the caller owns their values.

    ``extra_chip_words(chip)``, when given, is **our addition** to libcaer's sequence: words
    sent to each chip after the default SRAM and before the bus goes off (the driver resets
    every core to tau1 there, so its tau cache is true from the start; libcaer leaves the tau
    selection as it was).
    """
    transfers = fr.single_writes(fr.default_fpga_config(early_packet_delay_us))
    for chip in range(N_CHIPS):
        transfers += [select_chip(chip), *bias_word_transfers(silent_bias_words)]
    for chip in range(N_CHIPS):
        transfers += [select_chip(chip), *fr.chip_word_transfers(cw.clear_sram_words())]
    for chip in range(N_CHIPS):
        transfers += [select_chip(chip), *bias_word_transfers(low_power_bias_words)]
    for chip in range(N_CHIPS):
        transfers += [select_chip(chip), *fr.chip_word_transfers(default_sram_words(chip))]
    if extra_chip_words is not None:
        for chip in range(N_CHIPS):
            words = list(extra_chip_words(chip))
            if words:
                transfers += [select_chip(chip), *fr.chip_word_transfers(words)]
    transfers += fr.single_writes(fr.config_bus_off())
    return transfers


def sram_write_words(base_address: int, words16: Sequence[int] | np.ndarray) -> list[ControlTransfer]:
    """libcaer ``caerDynapseWriteSramWords``: 16-bit words into the FPGA SRAM from ``base_address``.

    The FPGA SRAM protocol is not documented beyond libcaer, so this is its sequence literally:
    an odd trailing word is written first on its own (RWCOMMAND ← WRITE, WRITEDATA ← word,
    ADDRESS ← base + n − 1: the address write executes the command); then the base address is
    written **with burst mode off** by writing a dummy 0 there; then BURSTMODE ← 1, the data as
    0xC2 batches of WRITEDATA entries (two words each, the lower address in the low half);
    then BURSTMODE ← 0.
    """
    words = [int(w) for w in np.asarray(words16, dtype=np.int64).ravel()]
    if any(not 0 <= w <= 0xFFFF for w in words):
        raise ValueError("FPGA SRAM words must fit 16 bits")
    base = int(base_address)
    if not 0 <= base or base + len(words) > fr.FPGA_SRAM_WORDS:
        raise ValueError(f"{len(words)} words from address {base} do not fit the FPGA SRAM ({fr.FPGA_SRAM_WORDS} words)")
    sram = Module.SRAM
    transfers: list[ControlTransfer] = []
    if len(words) % 2:
        transfers += fr.single_writes(
            [
                RegisterWrite(sram, fr.SramParam.RWCOMMAND, fr.SRAM_WRITE),
                RegisterWrite(sram, fr.SramParam.WRITEDATA, words[-1]),
                RegisterWrite(sram, fr.SramParam.ADDRESS, base + len(words) - 1),
            ]
        )
        words = words[:-1]
    if not words:
        return transfers
    transfers += fr.single_writes(
        [
            RegisterWrite(sram, fr.SramParam.RWCOMMAND, fr.SRAM_WRITE),
            RegisterWrite(sram, fr.SramParam.WRITEDATA, 0),
            RegisterWrite(sram, fr.SramParam.ADDRESS, base),
            RegisterWrite(sram, fr.SramParam.BURSTMODE, 1),
        ]
    )
    pairs = [RegisterWrite(sram, fr.SramParam.WRITEDATA, v) for v in sg.pack_burst_words(np.asarray(words))]
    transfers += fr.multiple_writes(pairs)
    transfers.append(fr.single_write(sram, fr.SramParam.BURSTMODE, 0))
    return transfers


def sram_write_word(address: int, word: int) -> list[ControlTransfer]:
    """One 16-bit word into the FPGA SRAM without burst mode (libcaer's single-word path)."""
    return sram_write_words(address, [word])


def poisson_rates(chip: int, codes: Mapping[int, int] | Iterable[tuple[int, int]]) -> list[ControlTransfer]:
    """Select ``chip`` on the Poisson generator, then for each ``(source, rate code)`` WRITEDATA and
    WRITEADDRESS (libcaer ``dynapseConfigSet(POISSONSPIKEGEN, CHIPID)`` and
    ``caerDynapseWritePoissonSpikeRate``).  CHIPID takes the device encoding 0/8/4/12, as libcaer
    sends it; the register is otherwise undocumented."""
    items = codes.items() if isinstance(codes, Mapping) else codes
    p = Module.POISSONSPIKEGEN
    transfers = [fr.single_write(p, fr.PoissonParam.CHIPID, fr.poisson_chip_id_value(chip))]
    for source, code in items:
        transfers += [fr.single_write(p, fr.PoissonParam.WRITEDATA, code), fr.single_write(p, fr.PoissonParam.WRITEADDRESS, source)]
    return transfers


def synapse_reconfig_select_chip(chip: int) -> ControlTransfer:
    """SYNAPSERECONFIG/CHIPSELECT ← the device encoding of ``chip`` (libcaer translates it like CHIP/ID)."""
    return fr.single_write(Module.SYNAPSERECONFIG, fr.SynapseReconfigParam.CHIPSELECT, fr.synapse_reconfig_chip_select_value(check_chip(chip)))


def read64(module: int, param: int, read: Callable[[int, int], int]) -> int:
    """A 64-bit statistics counter the way libcaer's ``caerDeviceConfigGet64`` reads it.

    High half (``param``), low half (``param + 1``), high half again; retried while the high
    half changed between the two reads (the counter carried into it).
    """
    for _ in range(8):
        high = read(module, param)
        low = read(module, param + 1)
        if read(module, param) == high:
            return (high << 32) | low
    raise RuntimeError(f"64-bit counter {module}/{param} kept changing while being read")
