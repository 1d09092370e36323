"""The DYNAP-SE1 bulk-IN event stream: a stateful vectorised decoder (the FPGA side is ``emulator.fpga_stream``).

Wire format (reference ``dynapse_protocol.md`` §3, libcaer ``dynapse.c``): 16-bit
little-endian words.

==============================  ==========================================================
bit 15 = 1                      timestamp: bits 14–0 = µs added to the current wrap base;
                                applies to the events that follow
code 0 (bits 14–12), data 1     timestamp reset: base, current timestamp, overflow → 0
code 0, data 0                  reserved (counted as unknown, skipped)
code 1 / 2 / 5 / 6              spike from core 0 / 1 / 2 / 3; data 3–0 = chip + 1,
                                data 11–4 = neuron within the core
code 7                          wrap: base += data × 2^15 µs; the current timestamp
                                becomes the new base
codes 3, 4; chip field not 1–4  unknown or corrupt: counted, skipped, never raised
==============================  ==========================================================

libcaer keeps a 31-bit timestamp plus an overflow counter; the full time is
``overflow × 2^31 + timestamp``.  We keep the same quantity directly as a 64-bit
microsecond count, so the 2^31 overflow needs no special case
(:attr:`StreamDecoder.overflow_count` reports it for diagnostics).

Checked against libcaer's ``dynapseEventTranslator`` (``tests/data/libcaer``): same events and
times for wraps, 2^31 overflows, timestamp resets and odd-length buffers.  Two deliberate
differences: a spike whose chip field is outside 1–4 is counted as corrupt and skipped (libcaer
emits it with chip id 63 or 4–14, which no board has), and an unknown word is counted.

A USB buffer of odd length is cut to whole words and the stray byte dropped (and counted), as
libcaer does: the FPGA only sends whole 16-bit words, so a stray byte is a lost byte, and
cutting at the buffer boundary re-aligns the stream with the next buffer.

The decoder is one numba-compiled pass over the words (the speed target is
≥ 30 M events/s on two cores, ``bench/decode_speed.py``).  It keeps the wrap
base and the last timestamp between calls, so a stream split at any word
boundary decodes to the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .spikes import SpikeEvents

TIMESTAMP_FLAG = 0x8000
WRAP_STEP_US = 0x8000  # one wrap unit = 2^15 µs
OVERFLOW_US = 1 << 31
CODE_WRAP = 7
TIMESTAMP_RESET_WORD = 0x0001
#: Event code (bits 14–12) of a spike from each source core.
SPIKE_CODE_OF_CORE = (1, 2, 5, 6)
_CORE_OF_CODE = np.array([-1, 0, 1, -1, -1, 2, 3, -1], dtype=np.int8)


@numba.njit(cache=True, nogil=True)
def _decode_kernel(words, core_of_code, base, low, out_ts, out_chip, out_core, out_neuron):  # pragma: no cover - compiled
    n_events = 0
    n_corrupt = 0
    n_resets = 0
    for i in range(words.shape[0]):
        w = words[i]
        if w & 0x8000:
            low = w & 0x7FFF
            continue
        code = (w >> 12) & 7
        data = w & 0xFFF
        if code == 7:
            base += data * 0x8000
            low = 0
        elif code == 0:
            if data == 1:
                base = 0
                low = 0
                n_resets += 1
            else:
                n_corrupt += 1
        else:
            core = core_of_code[code]
            chip_plus_one = data & 0xF
            if core < 0 or chip_plus_one < 1 or chip_plus_one > 4:
                n_corrupt += 1
            else:
                out_ts[n_events] = base + low
                out_chip[n_events] = chip_plus_one - 1
                out_core[n_events] = core
                out_neuron[n_events] = data >> 4
                n_events += 1
    return n_events, n_corrupt, n_resets, base, low


@dataclass
class DecodeStats:
    """What one :meth:`StreamDecoder.decode` call (or the decoder's lifetime) saw."""

    events: int = 0
    corrupt_words: int = 0
    timestamp_resets: int = 0
    stray_bytes: int = 0  # trailing bytes of odd-length buffers, dropped as libcaer drops them


class StreamDecoder:
    """Decode bulk-IN bytes into :class:`SpikeEvents`, keeping state across calls.

    Attributes
    ----------
    now_us : int
        The board clock as far as the stream has told: wrap base + last timestamp.  It advances
        on timestamp and wrap words even when no neuron fires.
    total : DecodeStats
        Counts since construction.
    """

    def __init__(self) -> None:
        self._base = 0
        self._low = 0
        self.total = DecodeStats()

    @property
    def now_us(self) -> int:
        return self._base + self._low

    @property
    def overflow_count(self) -> int:
        """How often the 31-bit libcaer timestamp would have overflowed (libcaer's wrapOverflow)."""
        return self._base // OVERFLOW_US

    def reset(self) -> None:
        """Forget all state, as after a timestamp reset."""
        self._base = 0
        self._low = 0

    def decode(self, data: bytes | bytearray | memoryview | np.ndarray) -> tuple[SpikeEvents, DecodeStats]:
        """Decode the next USB buffer; never raises on content, only on a non-bytes type.

        An odd trailing byte is dropped and counted in ``stray_bytes`` (libcaer: "bytes received
        via USB, which is not a multiple of two").
        """
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data) if not isinstance(data, bytes) else data
        n_words = len(raw) // 2
        stray = len(raw) - 2 * n_words
        words = np.frombuffer(raw, dtype="<u2", count=n_words)
        ts = np.empty(n_words, np.int64)
        chip = np.empty(n_words, np.uint8)
        core = np.empty(n_words, np.uint8)
        neuron = np.empty(n_words, np.uint16)
        n, n_corrupt, n_resets, self._base, self._low = _decode_kernel(
            words, _CORE_OF_CODE, np.int64(self._base), np.int64(self._low), ts, chip, core, neuron
        )
        self._base, self._low = int(self._base), int(self._low)
        stats = DecodeStats(int(n), int(n_corrupt), int(n_resets), stray)
        self.total.events += stats.events
        self.total.corrupt_words += stats.corrupt_words
        self.total.timestamp_resets += stats.timestamp_resets
        self.total.stray_bytes += stats.stray_bytes
        return SpikeEvents(ts[:n], chip[:n], core[:n], neuron[:n]), stats


def encode_words(words: list[int]) -> bytes:
    """Little-endian bytes of raw 16-bit words (for tests and hand-made streams)."""
    return np.asarray(words, "<u2").tobytes()
