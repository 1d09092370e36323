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

A timestamp word that does not move the clock strictly forward (its time is at or before the
current one: a bit error, or a word from another time base) is counted in
``non_monotonic_timestamps``, as libcaer's ``checkStrictMonotonicTimestamp`` logs it, and its
events are delivered with the time it gives: nothing is dropped (the raster's ``EventRing``
re-sorts or drops late events itself, a recording keeps what the board sent).  Only timestamp
words are checked, as libcaer does; a wrap or a reset sets the clock by definition.

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

Loading that kernel costs about half a second of CPU holding the GIL (importing numba, then
linking its cached machine code), which the desktop app cannot spend before its first events.
The app calls :func:`defer_kernel`: until :func:`load_kernel` has run (its warm-up does, after
the first events are drawn) buffers are decoded by :func:`_decode_vectorised`, a numpy
formulation of the same pass (identical events, counts and state, tested against the kernel and
libcaer's vectors; a few M events/s, plenty for a board that just started).  Everything else
loads the kernel at its first decode.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

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


def _decode_loop(words, core_of_code, base, low, out_ts, out_chip, out_core, out_neuron):  # pragma: no cover - compiled
    n_events = 0
    n_corrupt = 0
    n_resets = 0
    n_backwards = 0
    for i in range(words.shape[0]):
        w = words[i]
        if w & 0x8000:
            if (w & 0x7FFF) <= low:  # same base: base + new <= base + low, libcaer's strict check
                n_backwards += 1
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
    return n_events, n_corrupt, n_resets, n_backwards, base, low


_kernel = None  # _decode_loop compiled by numba, once load_kernel() ran
_kernel_lock = threading.Lock()
_deferred = False


def load_kernel():
    """Compile (or load from numba's cache) the decoding kernel; later calls return it at once."""
    global _kernel
    with _kernel_lock:
        if _kernel is None:
            import numba

            _kernel = numba.njit(cache=True, nogil=True)(_decode_loop)
            # link it now, for the argument types decode() passes (its words are a read-only view of the bytes)
            _kernel(np.frombuffer(b"", dtype="<u2"), _CORE_OF_CODE, np.int64(0), np.int64(0), *_outputs(0))
        return _kernel


def defer_kernel() -> None:
    """Decode with numpy until :func:`load_kernel` is called (see the module docstring)."""
    global _deferred
    _deferred = True


def _outputs(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return np.empty(n, np.int64), np.empty(n, np.uint8), np.empty(n, np.uint8), np.empty(n, np.uint16)


def _decode_vectorised(words: np.ndarray, base: int, low: int) -> tuple[SpikeEvents, int, int, int, int, int]:
    """:func:`_decode_loop` in whole-array numpy steps: (events, corrupt, resets, non-monotonic
    timestamps, base, low) after ``words``.

    The running state is a prefix scan: ``low`` is whatever the last timestamp, wrap or reset word
    at or before a word set it to (a timestamp word its 15 bits, the others 0), and ``base`` the
    sum of the wrap steps since the last reset (or since the call, on top of the base passed in).
    """
    n = words.shape[0]
    if n == 0:
        return SpikeEvents(), 0, 0, 0, base, low
    w = words.astype(np.int64)
    control = w < TIMESTAMP_FLAG
    code = (w >> 12) & 7
    data = w & 0xFFF
    wrap = control & (code == CODE_WRAP)
    reset = control & (w == TIMESTAMP_RESET_WORD)
    position = np.arange(n)
    last_low = np.where(~control | wrap | reset, position, -1)
    np.maximum.accumulate(last_low, out=last_low)
    low_value = np.where(control, 0, w & 0x7FFF)
    low_at = np.where(last_low >= 0, low_value[last_low], low)
    # a timestamp word is non-monotonic when its 15 bits do not exceed the low part just before it
    low_before = np.concatenate(([low], low_at[:-1]))
    backwards = int(np.count_nonzero(~control & (low_value <= low_before)))
    wraps = np.cumsum(np.where(wrap, data * WRAP_STEP_US, 0))
    last_reset = np.where(reset, position, -1)
    np.maximum.accumulate(last_reset, out=last_reset)
    base_at = np.where(last_reset >= 0, wraps - wraps[last_reset], base + wraps)
    core = _CORE_OF_CODE[code]
    chip_plus_one = data & 0xF
    spike = control & (code != 0) & (code != CODE_WRAP)
    valid = spike & (core >= 0) & (chip_plus_one >= 1) & (chip_plus_one <= 4)
    corrupt = int(np.count_nonzero(spike & ~valid)) + int(np.count_nonzero(control & (code == 0) & ~reset))
    at = np.flatnonzero(valid)
    events = SpikeEvents(base_at[at] + low_at[at], chip_plus_one[at] - 1, core[at], data[at] >> 4)
    return events, corrupt, int(np.count_nonzero(reset)), backwards, int(base_at[-1]), int(low_at[-1])


@dataclass(frozen=True)
class TimestampReset:
    """Where a timestamp reset fell in one decoded buffer.

    Attributes
    ----------
    event_index : the buffer's events before this index came before the reset (the old time
        base), those from it on after it (until the next reset of the same buffer)
    time_before_us : the board clock just before the reset, in the old time base
    """

    event_index: int
    time_before_us: int


@dataclass
class DecodeStats:
    """What one :meth:`StreamDecoder.decode` call (or the decoder's lifetime) saw."""

    events: int = 0
    corrupt_words: int = 0
    timestamp_resets: int = 0
    stray_bytes: int = 0  # trailing bytes of odd-length buffers, dropped as libcaer drops them
    #: timestamp words at or before the current time (libcaer's checkStrictMonotonicTimestamp);
    #: their events are delivered, not dropped
    non_monotonic_timestamps: int = 0
    #: the resets of this buffer, in order (one call's stats only; empty in ``StreamDecoder.total``)
    resets: tuple[TimestampReset, ...] = ()


def _raw_bytes(data: bytes | bytearray | memoryview | np.ndarray) -> bytes:
    """The bytes of a USB buffer; a TypeError for anything that is not a buffer of unsigned bytes.

    An int (``bytes(12)`` would be twelve zero bytes), a str, or an array of wider items (a float
    or uint16 array, whose memory is not what the FPGA sent) is refused rather than
    reinterpreted: a caller holding 16-bit words passes ``words.astype("<u2").tobytes()``.
    """
    if isinstance(data, bytes):
        return data
    try:
        view = memoryview(data)
    except TypeError:
        raise TypeError(f"decode() takes the bytes of a USB buffer (bytes, bytearray, memoryview or a uint8 array), got {type(data).__name__}") from None
    if view.format not in ("B", "c") or view.itemsize != 1:
        kind = f"{type(data).__name__} of {data.dtype}" if isinstance(data, np.ndarray) else f"{type(data).__name__} of format {view.format!r}"
        raise TypeError(f"decode() takes unsigned bytes, got {kind}; pass the raw bytes (e.g. words.astype('<u2').tobytes())")
    return view.tobytes()


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
        """Decode the next USB buffer; never raises on content, only on a type that is not bytes.

        ``data`` is a buffer of unsigned bytes as bulk IN delivered it (bytes, bytearray,
        memoryview, ``array('B')`` or a uint8 array); anything else raises TypeError (see
        :func:`_raw_bytes`).  An odd trailing byte is dropped and counted in ``stray_bytes``
        (libcaer: "bytes received via USB, which is not a multiple of two").  ``stats.resets``
        says where each timestamp reset fell among the events, so that a reader can tell which
        events belong to which time base.
        """
        raw = _raw_bytes(data)
        n_words = len(raw) // 2
        stray = len(raw) - 2 * n_words
        words = np.frombuffer(raw, dtype="<u2", count=n_words)
        kernel = _kernel if _kernel is not None or _deferred else load_kernel()
        # Decoded in pieces that each start at a reset word, so that where each reset fell is known;
        # resets are rare, so this is one piece nearly always.  This scan and the monotonic check cost
        # about 13 % of the decode (bench/decode_speed.py, same run: 185 -> 161 M events/s; the target is 30 M).
        starts = [0, *np.flatnonzero(words == TIMESTAMP_RESET_WORD).tolist()]
        if kernel is not None:
            out = _outputs(n_words)
        parts: list[SpikeEvents] = []
        resets: list[TimestampReset] = []
        n_events = n_corrupt = n_resets = n_backwards = 0
        for piece_index, (start, stop) in enumerate(zip(starts, [*starts[1:], n_words], strict=True)):
            if piece_index:  # this piece starts with a reset word
                resets.append(TimestampReset(n_events, self.now_us))
            piece = words[start:stop]
            if kernel is None:
                events, corrupt, reset_count, backwards, self._base, self._low = _decode_vectorised(piece, self._base, self._low)
                parts.append(events)
                n = len(events)
            else:
                n, corrupt, reset_count, backwards, base, low = kernel(
                    piece, _CORE_OF_CODE, np.int64(self._base), np.int64(self._low), *(column[n_events:] for column in out)
                )
                self._base, self._low = int(base), int(low)
            n_events += int(n)
            n_corrupt += int(corrupt)
            n_resets += int(reset_count)
            n_backwards += int(backwards)
        if kernel is None:
            events = SpikeEvents.concatenate(parts) if len(parts) > 1 else parts[0]
        else:
            events = SpikeEvents(*(column[:n_events] for column in out))
        stats = DecodeStats(n_events, n_corrupt, n_resets, stray, n_backwards, tuple(resets))
        self.total.events += stats.events
        self.total.corrupt_words += stats.corrupt_words
        self.total.timestamp_resets += stats.timestamp_resets
        self.total.stray_bytes += stats.stray_bytes
        self.total.non_monotonic_timestamps += stats.non_monotonic_timestamps
        return events, stats


def encode_words(words: list[int]) -> bytes:
    """Little-endian bytes of raw 16-bit words (for tests and hand-made streams)."""
    return np.asarray(words, "<u2").tobytes()
