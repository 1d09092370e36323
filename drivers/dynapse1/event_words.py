"""The DYNAP-SE1 bulk-IN event stream: a stateful vectorised decoder and the matching encoder.

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

The decoder is one numba-compiled pass over the words (the speed target is
≥ 30 M events/s on two cores, ``bench/decode_speed.py``).  It keeps the wrap
base, the last timestamp and a dangling odd byte between calls, so a stream
split at any byte boundary decodes to the same events.
"""

from __future__ import annotations

from dataclasses import dataclass

import numba
import numpy as np

from .spikes import SpikeEvents
from .topology import N_CHIPS

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
        self._pending = b""
        self.total = DecodeStats()

    @property
    def now_us(self) -> int:
        return self._base + self._low

    @property
    def overflow_count(self) -> int:
        """How often the 31-bit libcaer timestamp would have overflowed (libcaer's wrapOverflow)."""
        return self._base // OVERFLOW_US

    def reset(self) -> None:
        """Forget all state, as after a timestamp reset, dropping a dangling odd byte."""
        self._base = 0
        self._low = 0
        self._pending = b""

    def decode(self, data: bytes | bytearray | memoryview | np.ndarray) -> tuple[SpikeEvents, DecodeStats]:
        """Decode the next chunk of the stream; never raises on content, only on a non-bytes type."""
        raw = data.tobytes() if isinstance(data, np.ndarray) else bytes(data) if not isinstance(data, bytes) else data
        if self._pending:
            raw = self._pending + raw
        n_words = len(raw) // 2
        self._pending = raw[2 * n_words :]
        words = np.frombuffer(raw, dtype="<u2", count=n_words)
        ts = np.empty(n_words, np.int64)
        chip = np.empty(n_words, np.uint8)
        core = np.empty(n_words, np.uint8)
        neuron = np.empty(n_words, np.uint16)
        n, n_corrupt, n_resets, self._base, self._low = _decode_kernel(
            words, _CORE_OF_CODE, np.int64(self._base), np.int64(self._low), ts, chip, core, neuron
        )
        self._base, self._low = int(self._base), int(self._low)
        stats = DecodeStats(int(n), int(n_corrupt), int(n_resets))
        self.total.events += stats.events
        self.total.corrupt_words += stats.corrupt_words
        self.total.timestamp_resets += stats.timestamp_resets
        return SpikeEvents(ts[:n], chip[:n], core[:n], neuron[:n]), stats


@numba.njit(cache=True, nogil=True)
def _encode_kernel(ts, chip, core, neuron, spike_codes, base, low, out):  # pragma: no cover - compiled
    k = 0
    for i in range(ts.shape[0]):
        t = ts[i]
        if t < base + low:
            t = base + low  # the wire cannot go back in time: clamp to the current clock
        while t >= base + 0x8000:
            out[k] = (7 << 12) | 1
            k += 1
            base += 0x8000
            low = 0
        if t - base != low:
            low = t - base
            out[k] = 0x8000 | low
            k += 1
        out[k] = (spike_codes[core[i]] << 12) | (neuron[i] << 4) | (chip[i] + 1)
        k += 1
    return k, base, low


class StreamEncoder:
    """What the FPGA puts on bulk IN: spikes with timestamp and wrap words (used by the virtual board).

    Like the FPGA it sends one wrap word (data 1) per 2^15 µs boundary crossed, a timestamp word
    whenever the time differs from the last one sent, then the spike word.  The first event after
    construction or :meth:`reset` gets an explicit timestamp word only if its time is not 0.
    """

    def __init__(self) -> None:
        self._base = 0
        self._low = 0

    @property
    def now_us(self) -> int:
        return self._base + self._low

    def reset(self) -> bytes:
        """Zero the clock and return the timestamp-reset word that tells the host."""
        self._base = 0
        self._low = 0
        return np.array([TIMESTAMP_RESET_WORD], "<u2").tobytes()

    def encode(self, events: SpikeEvents) -> bytes:
        """Bytes for ``events`` (sorted by time; earlier-than-now times are clamped to now)."""
        n = len(events)
        if n == 0:
            return b""
        if np.any(events.chip >= N_CHIPS):
            raise ValueError("event chip id out of range 0..3")
        ts = events.timestamp_us.astype(np.int64)
        span_wraps = max(0, int(ts.max() - self._base) // WRAP_STEP_US + 1)
        out = np.empty(2 * n + span_wraps + 1, np.uint16)
        k, self._base, self._low = _encode_kernel(
            ts,
            events.chip.astype(np.int64),
            events.core.astype(np.int64),
            events.neuron.astype(np.int64),
            np.array(SPIKE_CODE_OF_CORE, np.int64),
            np.int64(self._base),
            np.int64(self._low),
            out,
        )
        self._base, self._low = int(self._base), int(self._low)
        return out[:k].astype("<u2").tobytes()

    def advance_to(self, t_us: int) -> bytes:
        """Wrap words for every 2^15 µs boundary up to ``t_us`` and a timestamp word marking ``t_us``.

        This is how the host clock advances when no neuron fires; times before now are ignored.
        """
        t_us = int(t_us)
        if t_us <= self.now_us:
            return b""
        words: list[int] = []
        while t_us >= self._base + WRAP_STEP_US:
            words.append((CODE_WRAP << 12) | 1)
            self._base += WRAP_STEP_US
            self._low = 0
        if t_us - self._base != self._low:
            self._low = t_us - self._base
            words.append(TIMESTAMP_FLAG | self._low)
        return np.asarray(words, "<u2").tobytes()


def encode_words(words: list[int]) -> bytes:
    """Little-endian bytes of raw 16-bit words (for tests and hand-made streams)."""
    return np.asarray(words, "<u2").tobytes()
