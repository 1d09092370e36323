"""FPGA spike-generator memory words and the Poisson generator rate code.

Spike generator (reference §5, cAER ``fpgaspikegen`` README and ctxctl tools)
    Each event is a 14-bit word: bits 13–6 = neuron id, bits 5–4 = chip, bits 3–0 = destination
    core mask.  In variable-ISI mode every event word is followed by a 16-bit ISI word in
    ISIBase units counted from the previous event.  The words live in the FPGA SRAM (written
    through the SRAM module in burst mode, two 16-bit words per 32-bit write, low half first)
    and SPIKEGEN/STIMCOUNT holds the number of events − 1.

    **Choice (documented, unverified):** the reference calls bits 5–4 the "virtual source
    chip"; ctxctl's ``FpgaSpikeEvent`` calls the same field ``target_chip``.  We follow
    ctxctl: the field names the chip the spike is injected on, which is also the chip whose
    CAMs see source address (core 0, neuron id).  Gaps longer than the 16-bit ISI are split
    with dummy events whose core mask is 0 (they reach no core), as ctxctl does.

Poisson generator
    Rate code = rate in Hz / 0.06706, a 16-bit integer (so at most ≈ 4395 Hz), computed as
    libcaer's ``caerDynapseWritePoissonSpikeRate`` does: float32 division, truncated.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .fpga_registers import FPGA_LOGIC_CLOCK_MHZ
from .topology import check_chip, check_neuron

MAX_ISI_UNITS = 0xFFFF
MAX_EVENTS = 0x7FFF  # the cAER generator script's limit
#: ISIBase 90 cycles of the 90 MHz logic clock = 1 µs per ISI unit (samna's default resolution).
DEFAULT_ISI_BASE_CYCLES = 90
POISSON_HZ_PER_CODE = 0.06706
MAX_POISSON_CODE = 0xFFFF


@dataclass(frozen=True)
class FpgaSpikeEvent:
    """One generator event: inject (core 0, ``neuron``) on ``chip`` into ``core_mask`` after ``isi`` units."""

    chip: int
    neuron: int
    core_mask: int
    isi: int  # ISIBase units since the previous event

    def __post_init__(self) -> None:
        check_chip(self.chip)
        check_neuron(self.neuron)
        if not 0 <= self.core_mask <= 0xF:
            raise ValueError(f"core mask {self.core_mask} out of range 0..15")
        if not 0 <= self.isi <= MAX_ISI_UNITS:
            raise ValueError(f"ISI {self.isi} units out of range 0..{MAX_ISI_UNITS}")


def isi_unit_us(isi_base_cycles: int) -> float:
    """Duration of one ISI unit in µs for an ISIBase of ``isi_base_cycles`` logic-clock cycles."""
    if not 1 <= isi_base_cycles <= 0xFFFFFFFF:
        raise ValueError(f"ISIBase {isi_base_cycles} must be a positive 32-bit cycle count")
    return isi_base_cycles / FPGA_LOGIC_CLOCK_MHZ


def encode_event_word(event: FpgaSpikeEvent) -> int:
    """The 14-bit event word: neuron 13–6, chip 5–4, core mask 3–0."""
    return (event.neuron << 6) | (event.chip << 4) | event.core_mask


def decode_event_word(word: int) -> tuple[int, int, int]:
    """``(chip, neuron, core_mask)`` of a 14-bit event word."""
    if not 0 <= word < (1 << 14):
        raise ValueError(f"spike-generator event word 0x{word:X} does not fit 14 bits")
    return (word >> 4) & 3, (word >> 6) & 0xFF, word & 0xF


def events_from_delays(items: list[tuple[int, int, int, float]], isi_base_cycles: int = DEFAULT_ISI_BASE_CYCLES) -> list[FpgaSpikeEvent]:
    """Turn ``(chip, neuron, core_mask, delay_us)`` into generator events, splitting long gaps.

    A delay longer than 65535 units is covered by dummy events (core mask 0, same chip/neuron)
    carrying the full ISI, followed by the real event with the remainder.
    """
    unit = isi_unit_us(isi_base_cycles)
    all_units = []
    for _, _, _, delay_us in items:
        if delay_us < 0:
            raise ValueError(f"negative inter-spike interval {delay_us} µs")
        all_units.append(round(delay_us / unit))
    # count the dummies first: a few huge gaps must be refused, not expanded into millions of events
    n_events = sum(1 + max(0, units - 1) // MAX_ISI_UNITS for units in all_units)
    if n_events > MAX_EVENTS:
        raise ValueError(f"{n_events} spike-generator events (after splitting long gaps) exceed the limit {MAX_EVENTS}")
    out: list[FpgaSpikeEvent] = []
    for (chip, neuron, core_mask, _), units in zip(items, all_units, strict=True):
        while units > MAX_ISI_UNITS:
            out.append(FpgaSpikeEvent(chip, neuron, 0, MAX_ISI_UNITS))
            units -= MAX_ISI_UNITS
        out.append(FpgaSpikeEvent(chip, neuron, core_mask, units))
    return out


def encode_generator_memory(events: list[FpgaSpikeEvent], variable_isi: bool = True) -> np.ndarray:
    """16-bit SRAM words for ``events``: event words, each followed by its ISI in variable-ISI mode."""
    if variable_isi:
        flat = [w for e in events for w in (encode_event_word(e), e.isi)]
    else:
        flat = [encode_event_word(e) for e in events]
    return np.asarray(flat, dtype=np.uint16)


def decode_generator_memory(words: np.ndarray | list[int], n_events: int, variable_isi: bool, fixed_isi: int = 0) -> list[FpgaSpikeEvent]:
    """Inverse of :func:`encode_generator_memory` (``fixed_isi`` used when not ``variable_isi``)."""
    step = 2 if variable_isi else 1
    words = [int(w) for w in words]
    if len(words) < n_events * step:
        raise ValueError(f"generator memory holds {len(words)} words, {n_events * step} needed")
    events = []
    for i in range(n_events):
        chip, neuron, mask = decode_event_word(words[i * step] & 0x3FFF)
        isi = words[i * step + 1] if variable_isi else fixed_isi
        events.append(FpgaSpikeEvent(chip, neuron, mask, isi))
    return events


def pack_burst_words(words16: np.ndarray) -> list[int]:
    """32-bit SRAM/WRITEDATA values of a burst: two 16-bit words each, low half first (padded with 0)."""
    w = np.asarray(words16, dtype=np.uint32)
    if len(w) % 2:
        w = np.append(w, np.uint32(0))
    return [int(v) for v in (w[0::2] | (w[1::2] << 16))]


def unpack_burst_word(value: int) -> tuple[int, int]:
    """The two 16-bit words of one burst write, in memory order."""
    return value & 0xFFFF, (value >> 16) & 0xFFFF


def poisson_rate_code(rate_hz: float) -> int:
    """16-bit POISSONSPIKEGEN/WRITEDATA code for ``rate_hz``; ``ValueError`` outside 0..≈4395 Hz."""
    if rate_hz < 0 or not np.isfinite(rate_hz):
        raise ValueError(f"Poisson rate {rate_hz} Hz must be a finite non-negative number")
    # libcaer: U16T(rateHz / 0.06706f), a float32 division truncated toward zero.
    with np.errstate(over="ignore"):
        quotient = np.float32(rate_hz) / np.float32(POISSON_HZ_PER_CODE)
    if not quotient < MAX_POISSON_CODE + 1:
        raise ValueError(f"Poisson rate {rate_hz} Hz exceeds the generator's maximum {MAX_POISSON_CODE * POISSON_HZ_PER_CODE:.0f} Hz")
    return int(quotient)


def poisson_rate_hz(code: int) -> float:
    """Inverse of :func:`poisson_rate_code`."""
    return (int(code) & MAX_POISSON_CODE) * POISSON_HZ_PER_CODE
