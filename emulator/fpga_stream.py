"""What the FPGA puts on bulk IN: spikes as 16-bit timestamp, wrap and spike words.

The virtual FPGA's side of the event stream (the driver's decoder is
``drivers.dynapse1.event_words.StreamDecoder``, checked against libcaer's event translator).
Layout (reference ``dynapse_protocol.md`` §3): bit 15 set = timestamp (bits 14–0 µs above the
wrap base); code 7 (bits 14–12) = wrap, base += data × 2^15 µs; codes 1/2/5/6 = a spike from
core 0/1/2/3 with data bits 11–4 the neuron and 3–0 the chip + 1; code 0 data 1 = timestamp
reset.  Written from that layout, not from the driver's code.
"""

from __future__ import annotations

import numba
import numpy as np

from drivers.dynapse1.spikes import SpikeEvents

N_CHIPS = 4
TIMESTAMP_FLAG = 0x8000
WRAP_STEP_US = 0x8000  # one wrap unit = 2^15 µs
CODE_WRAP = 7
TIMESTAMP_RESET_WORD = 0x0001
#: Event code (bits 14–12) of a spike from each source core.
SPIKE_CODE_OF_CORE = (1, 2, 5, 6)


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


def load_encoder_kernel() -> None:
    """Compile (or load from numba's cache) the encoder kernel now, with one throwaway event.

    The first call of a numba kernel in a process holds the GIL for 0.1-0.4 s while it compiles
    or links; an emulated board built in the host's process calls this when it is built, so that
    cost falls on opening the board and not on its first packet of spikes in the middle of a run
    (measured: a 106-211 ms stall of the window's event loop during a calibration).
    """
    StreamEncoder().encode(SpikeEvents(np.array([1], np.int64), np.zeros(1, np.uint8), np.zeros(1, np.uint8), np.zeros(1, np.uint16)))


class StreamEncoder:
    """The FPGA's stream encoder: spikes with timestamp and wrap words.

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
