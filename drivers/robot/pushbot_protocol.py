"""PushBot / eDVS4337 wire protocol: command encoders and the parser of the mixed byte stream.

Facts follow the iniVation eDVS/PushBot user guide and the client code listed in
``shared/reference/robot.md``.  Commands are ASCII lines ending with ``\\n``.  The robot
answers with one byte stream in which binary DVS events and ASCII reply lines are
interleaved:

* an event starts with a byte whose MSB is 1 (the sync bit, low 7 bits = ``y``), followed
  by ``pxxxxxxx`` (polarity, ``x``) and 0/2/3/4 big-endian timestamp bytes, depending on the
  event format chosen with ``!E<n>``; those later bytes may have any value;
* every other byte seen *between* events (MSB 0) belongs to an ASCII reply line such as
  ``-S1 1000`` (sensor streaming), a command echo or the start-up banner.

Choices where the sources disagree or say nothing (each is a parameter):

* **Polarity**: libcaer and edvstools read ``p = 1`` as ON; one nengo_pushbot comment
  suggests the opposite.  :class:`PushBotStreamParser` takes ``on_polarity_bit`` (default 1).
* **Format numbers**: the guide numbers the formats by timestamp bytes (``!E2`` = 16 bit);
  the older edvstools firmware uses ``!E1``/``!E2``/``!E3`` for 16/24/32 bit.  The mapping is
  the ``numbering`` argument (:data:`GUIDE_FORMAT_NUMBERS` by default).  ``!E1`` of the guide
  (variable-length delta times) is not supported: its last byte has MSB 1 and cannot be
  told from an event start in a live stream.
* **Hex sensor values** (bits 10..18): parsed as hexadecimal with or without ``0x``; the
  exact text was not seen in any source.
* **Line endings**: ``\\n`` ends a line; a ``\\r`` before it is tolerated and stripped.

Never send ``P``: it puts the board into its bootloader.  Every encoder goes through
:func:`command_line`, which refuses it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

#: Columns and rows of the eDVS128 pixel array.
DVS_WIDTH = 128
DVS_HEIGHT = 128
#: Motor indices of the PushBot (T's ``motor(left, right)`` maps to MVD0/MVD1).
LEFT_MOTOR = 0
RIGHT_MOTOR = 1
#: Motor command range of ``!MV``/``!MVD``.
MOTOR_MIN = -100
MOTOR_MAX = 100
#: The substring every eDVS4337 start-up banner contains (libcaer checks for it).
BANNER_MARKER = "eDVS4337"
#: Commands the driver must never send (``P`` enters the bootloader).
FORBIDDEN_COMMANDS = frozenset({"P"})
#: Longest ASCII reply line kept; longer runs of MSB-0 bytes are garbage.
MAX_LINE_LENGTH = 512
#: Every decrease of the raw timestamp (16/24/32 bit) is taken as a wrap, as it must be for a clean
#: stream; a decrease implying more than this fraction of the wrap period since the previous event
#: (``(new - previous) mod period``: 16.4 ms for ``!E2``) is also counted in
#: ``ParserCounters.suspect_wraps``.  Random bytes (a wrong baud rate, a noisy cable) make about half
#: their decoded pairs decrease and most of those suspect, and the DVS times after them run ahead;
#: but a quiet scene leaves such gaps across a wrap too (the simulated robot's stream does), so they
#: are not dropped (a genuine wrap would turn time back by a period) and alone are no proof of noise.
WRAP_WINDOW = 0.25

# Sensor mask bits (``!S+<mask>,<ms>``) from the user guide.
SENSOR_BATTERY = 0
SENSOR_ADC0 = 1  # ADC channels 0..5 are bits 1..6
SENSOR_RAW_GYRO = 7
SENSOR_RAW_ACCEL = 8
SENSOR_RAW_COMPASS = 9
SENSOR_EVENT_RATE = 21
SENSOR_WHEEL_TICKS = 28
#: Bits whose values are hexadecimal fixed-point text (Q16/Q30/float hex).
HEX_SENSOR_BITS = frozenset(range(10, 19))


class ForbiddenCommandError(ValueError):
    """A command that would put the robot in a state the host cannot recover from."""


class EventFormat(IntEnum):
    """DVS event format, named by the number of absolute timestamp bytes after ``y`` and ``x``."""

    NO_TIMESTAMP = 0
    TS16 = 2
    TS24 = 3
    TS32 = 4

    @property
    def event_bytes(self) -> int:
        """Bytes per event on the wire."""
        return 2 + int(self)

    @property
    def timestamp_bits(self) -> int:
        return 8 * int(self)


#: ``!E<n>`` numbers of the user guide (and libcaer, nstbot, sPyNNaker).
GUIDE_FORMAT_NUMBERS: Mapping[EventFormat, int] = {
    EventFormat.NO_TIMESTAMP: 0,
    EventFormat.TS16: 2,
    EventFormat.TS24: 3,
    EventFormat.TS32: 4,
}
#: ``!E<n>`` numbers of the older firmware that edvstools talks to.
EDVSTOOLS_FORMAT_NUMBERS: Mapping[EventFormat, int] = {
    EventFormat.NO_TIMESTAMP: 0,
    EventFormat.TS16: 1,
    EventFormat.TS24: 2,
    EventFormat.TS32: 3,
}


class BoardLed(IntEnum):
    """The on-board LED (``!L0``/``!L1``/``!L2``)."""

    OFF = 0
    ON = 1
    BLINK = 2


# --- commands ------------------------------------------------------------------------------------


def command_line(text: str) -> bytes:
    """One command as wire bytes (``text`` + ``\\n``), after checking it is safe to send.

    Raises
    ------
    ForbiddenCommandError
        for ``P`` (bootloader entry).
    ValueError
        for non-ASCII text or text containing a line break (it would become two commands).
    """
    if not text.isascii():
        raise ValueError(f"PushBot commands are ASCII, got {text!r}")
    if "\n" in text or "\r" in text:
        raise ValueError(f"a PushBot command is one line; {text!r} contains a line break")
    if text.strip() in FORBIDDEN_COMMANDS:
        raise ForbiddenCommandError(f"refusing to send {text.strip()!r}: it puts the robot into its bootloader")
    return text.encode("ascii") + b"\n"


def encode_flush() -> bytes:
    """A bare line end: terminates any half-typed command left in the robot's buffer."""
    return b"\n"


def encode_reset() -> bytes:
    """``R``: reset the board; it answers with a banner containing :data:`BANNER_MARKER`."""
    return command_line("R")


def encode_echo_mode(mode: int) -> bytes:
    """``!U0``/``!U1``/``!U2``: no echo / echo command replies / echo everything."""
    if mode not in (0, 1, 2):
        raise ValueError(f"echo mode must be 0, 1 or 2, got {mode}")
    return command_line(f"!U{mode}")


def encode_event_streaming(enabled: bool) -> bytes:
    """``E+`` starts and ``E-`` stops streaming DVS events."""
    return command_line("E+" if enabled else "E-")


def encode_event_format(fmt: EventFormat | int, numbering: Mapping[EventFormat, int] = GUIDE_FORMAT_NUMBERS) -> bytes:
    """``!E<n>`` selecting ``fmt`` in the firmware's ``numbering``."""
    fmt = EventFormat(fmt)
    if fmt not in numbering:
        raise ValueError(f"event format {fmt.name} has no command number in this firmware numbering")
    return command_line(f"!E{numbering[fmt]}")


def event_format_from_number(number: int, numbering: Mapping[EventFormat, int] = GUIDE_FORMAT_NUMBERS) -> EventFormat:
    """Inverse of the numbering: which format ``!E<number>`` selects (``ValueError`` if none)."""
    for fmt, n in numbering.items():
        if n == number:
            return fmt
    raise ValueError(f"!E{number} is not a supported event format (supported: {sorted(numbering.values())})")


def encode_motor_driver(enabled: bool) -> bytes:
    """``!M+`` enables the motor driver (nothing moves before it), ``!M-`` disables it."""
    return command_line("!M+" if enabled else "!M-")


def _check_motor(motor: int) -> int:
    if motor not in (LEFT_MOTOR, RIGHT_MOTOR):
        raise ValueError(f"PushBot motor index must be 0 (left) or 1 (right), got {motor}")
    return motor


def clamp_motor_value(value: float) -> int:
    """``value`` rounded to an integer and clamped to -100..100 (``ValueError`` for NaN)."""
    value = float(value)
    if value != value:
        raise ValueError("motor value is NaN")
    return int(max(MOTOR_MIN, min(MOTOR_MAX, round(value))))


def encode_motor_duty_velocity(motor: int, value: float) -> bytes:
    """``!MVD<motor>=<value>``: duty velocity, clamped to -100..100 (motor 0 = left, 1 = right).

    This is what nstbot and nengo_pushbot drive with and resend every ~10 ms.  In the
    firmware's source (EDVSBoardOS 0.7.0) an unrefreshed ``!MVD`` holds for ~1 s and then
    decays by 1 per 100 ms: the robot's only fail-safe when the host is gone.
    """
    return command_line(f"!MVD{_check_motor(motor)}={clamp_motor_value(value)}")


#: The firmware's only fail-safe (EDVSBoardOS 0.7.0, :func:`encode_motor_duty_velocity`): an unrefreshed
#: ``!MVD`` holds for this long, then its magnitude falls by 1 every :data:`MVD_DECAY_STEP_S`.
MVD_HOLD_S = 1.0
MVD_DECAY_STEP_S = 0.1


def mvd_coast_s(left: float, right: float) -> float:
    """How long a robot last told ``!MVD`` ``(left, right)`` may go on moving once nothing refreshes
    the command (a lost link, a dead host): ~1 s + |v|/10 s, 0 when both wheels were told 0."""
    v = max(abs(clamp_motor_value(left)), abs(clamp_motor_value(right)))
    return MVD_HOLD_S + v * MVD_DECAY_STEP_S if v else 0.0


def encode_motor_velocity(motor: int, value: float) -> bytes:
    """``!MV<motor>=<value>``: velocity through the firmware's P controller, clamped to -100..100."""
    return command_line(f"!MV{_check_motor(motor)}={clamp_motor_value(value)}")


def encode_board_led(mode: BoardLed | int) -> bytes:
    """``!L0``/``!L1``/``!L2``: board LED off, on or blinking."""
    return command_line(f"!L{int(BoardLed(mode))}")


_TIMER_CHANNELS = {"A": (0,), "B": (0,), "C": (0, 1)}  # A laser, B buzzer, C back (0) / front (1) LEDs


def _check_timer(timer: str) -> str:
    if timer not in _TIMER_CHANNELS:
        raise ValueError(f"PushBot timer must be 'A' (laser), 'B' (buzzer) or 'C' (LEDs), got {timer!r}")
    return timer


def encode_timer_period(timer: str, period_us: int) -> bytes:
    """``!P<timer>=<period µs>`` (0 switches the timer off)."""
    if int(period_us) < 0:
        raise ValueError(f"timer period must be >= 0 µs, got {period_us}")
    return command_line(f"!P{_check_timer(timer)}={int(period_us)}")


def encode_timer_on_time(timer: str, channel: int, on_time_us: int) -> bytes:
    """``!P<timer><channel>=<on-time µs>``."""
    if channel not in _TIMER_CHANNELS[_check_timer(timer)]:
        raise ValueError(f"timer {timer} has channels {_TIMER_CHANNELS[timer]}, got {channel}")
    if int(on_time_us) < 0:
        raise ValueError(f"on-time must be >= 0 µs, got {on_time_us}")
    return command_line(f"!P{timer}{channel}={int(on_time_us)}")


def encode_pwm_frequency(timer: str, frequency_hz: float, duty: float = 0.5) -> bytes:
    """Run ``timer`` at ``frequency_hz`` with ``duty`` on every channel (sPyNNaker's encoding:
    period = 1e6/f µs, on-time = duty × period)."""
    _check_timer(timer)
    if not 0 < frequency_hz <= 1e6:
        raise ValueError(f"frequency must be in (0, 1 MHz], got {frequency_hz}")
    if not 0 <= duty <= 1:
        raise ValueError(f"duty must be in [0, 1], got {duty}")
    out = encode_timer_period(timer, round(1e6 / frequency_hz))
    for channel in _TIMER_CHANNELS[timer]:
        out += encode_timer_on_time(timer, channel, round(duty * 1e6 / frequency_hz))
    return out


def encode_timer_off(timer: str) -> bytes:
    """Switch ``timer`` and all its channels off (``!PA=0``, ``!PA0=0``, ...)."""
    out = encode_timer_period(timer, 0)
    for channel in _TIMER_CHANNELS[_check_timer(timer)]:
        out += encode_timer_on_time(timer, channel, 0)
    return out


def encode_all_lights_off() -> bytes:
    """Laser, buzzer and LEDs off, as the close sequences of nstbot/nengo_pushbot do."""
    return encode_timer_off("A") + encode_timer_off("B") + encode_timer_off("C")


def sensor_mask(bits: Iterable[int]) -> int:
    """The ``!S`` bit mask of the given sensor bits (0..31)."""
    mask = 0
    for bit in bits:
        if not 0 <= int(bit) < 32:
            raise ValueError(f"sensor bit must be 0..31, got {bit}")
        mask |= 1 << int(bit)
    return mask


def encode_sensor_stream(mask: int, period_ms: int) -> bytes:
    """``!S+<mask>,<period ms>``: stream the sensors in ``mask`` every ``period_ms``."""
    if not 0 < int(mask) < 2**32:
        raise ValueError(f"sensor mask must be a non-zero 32-bit mask, got {mask}")
    if not 1 <= int(period_ms) <= 65535:
        raise ValueError(f"sensor period must be 1..65535 ms, got {period_ms}")
    return command_line(f"!S+{int(mask)},{int(period_ms)}")


def encode_sensor_stop(mask: int | None = None) -> bytes:
    """``!S-`` stops every sensor stream; ``!S-<mask>`` only those in ``mask``."""
    if mask is None:
        return command_line("!S-")
    if not 0 < int(mask) < 2**32:
        raise ValueError(f"sensor mask must be a non-zero 32-bit mask, got {mask}")
    return command_line(f"!S-{int(mask)}")


# --- events --------------------------------------------------------------------------------------


@dataclass
class DvsEvents:
    """DVS events as parallel numpy arrays.

    Attributes
    ----------
    x, y : uint8 arrays, pixel column and row (0..127)
    polarity : bool array, True = ON (brightness increase)
    t_us : int64 array, µs; extended past the wire format's wrap by counting wraps
        (-1 where the format carries no timestamp and no host time was given)
    """

    x: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    y: np.ndarray = field(default_factory=lambda: np.zeros(0, np.uint8))
    polarity: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))
    t_us: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.x = np.asarray(self.x, dtype=np.uint8)
        self.y = np.asarray(self.y, dtype=np.uint8)
        self.polarity = np.asarray(self.polarity, dtype=bool)
        self.t_us = np.asarray(self.t_us, dtype=np.int64)
        if not (len(self.x) == len(self.y) == len(self.polarity) == len(self.t_us)):
            raise ValueError("DvsEvents columns must all have the same length")

    def __len__(self) -> int:
        return len(self.x)

    @classmethod
    def concatenate(cls, batches: Iterable[DvsEvents]) -> DvsEvents:
        batches = list(batches)
        if not batches:
            return cls()
        return cls(
            np.concatenate([b.x for b in batches]),
            np.concatenate([b.y for b in batches]),
            np.concatenate([b.polarity for b in batches]),
            np.concatenate([b.t_us for b in batches]),
        )

    def select(self, mask: np.ndarray) -> DvsEvents:
        return DvsEvents(self.x[mask], self.y[mask], self.polarity[mask], self.t_us[mask])


def encode_dvs_events(
    x: np.ndarray,
    y: np.ndarray,
    polarity: np.ndarray,
    t_us: np.ndarray | None,
    fmt: EventFormat | int = EventFormat.TS16,
    on_polarity_bit: int = 1,
) -> bytes:
    """Events as the robot sends them in ``fmt`` (timestamps taken modulo the format's wrap).

    Used by the simulated PushBot and by tests; vectorised.
    """
    fmt = EventFormat(fmt)
    x = np.asarray(x, dtype=np.int64)
    y = np.asarray(y, dtype=np.int64)
    pol = np.asarray(polarity, dtype=bool)
    n = len(x)
    if len(y) != n or len(pol) != n:
        raise ValueError("x, y and polarity must have the same length")
    if n and (x.min() < 0 or x.max() >= DVS_WIDTH or y.min() < 0 or y.max() >= DVS_HEIGHT):
        raise ValueError("DVS coordinates must be in 0..127")
    p_bit = pol if on_polarity_bit == 1 else ~pol
    out = np.empty((n, fmt.event_bytes), np.uint8)
    out[:, 0] = 0x80 | y
    out[:, 1] = (p_bit.astype(np.int64) << 7) | x
    if fmt.timestamp_bits:
        if t_us is None or len(t_us) != n:
            raise ValueError(f"format {fmt.name} needs one timestamp per event")
        ts = np.asarray(t_us, dtype=np.int64) & ((1 << fmt.timestamp_bits) - 1)
        for j in range(int(fmt)):
            out[:, 2 + j] = (ts >> (8 * (int(fmt) - 1 - j))) & 0xFF
    return out.tobytes()


# --- replies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SensorReading:
    """One ``-S<bit> v1 v2 ...`` reply line."""

    sensor: int  # the mask bit, e.g. 0 = battery, 28 = wheel ticks
    values: tuple[int, ...]
    text: str  # the line as received (without line end)


_SENSOR_LINE = re.compile(r"-S(\d{1,2})((?:[ \t]+[+-]?(?:0[xX])?[0-9A-Fa-f]+)*)[ \t]*$")


def parse_sensor_line(line: str) -> SensorReading | None:
    """The sensor reading in ``line``, or None if it is not one.

    Leading bytes before ``-S`` are tolerated (a line that began while the host was
    resynchronising).  Decimal values may carry a sign; bits 10..18 are hexadecimal.
    """
    match = _SENSOR_LINE.search(line)
    if match is None:
        return None
    bit = int(match.group(1))
    tokens = match.group(2).split()
    base = 16 if bit in HEX_SENSOR_BITS else 10
    values = []
    for token in tokens:
        try:
            values.append(int(token, base) if base == 10 else int(token.lower().replace("0x", ""), 16))
        except ValueError:
            return None  # e.g. a hex digit in a decimal sensor: not a reading we understand
    return SensorReading(bit, tuple(values), line[match.start() :])


# --- stream parser -------------------------------------------------------------------------------


@dataclass
class ParseResult:
    """What one :meth:`PushBotStreamParser.feed` call found."""

    events: DvsEvents
    sensor_readings: list[SensorReading]
    lines: list[str]  # every other complete reply line: banner, echoes, help text


@dataclass
class ParserCounters:
    """What the parser met so far; the ``discarded``/``garbage``/``suspect`` counts show a noisy link."""

    events: int = 0
    sensor_readings: int = 0
    lines: int = 0
    discarded_lines: int = 0  # lines with control bytes or longer than MAX_LINE_LENGTH
    garbage_bytes: int = 0  # bytes in discarded lines
    timestamp_wraps: int = 0
    #: wraps after a gap longer than :data:`WRAP_WINDOW` of a period: rare on a clean link, many on a noisy one
    suspect_wraps: int = 0
    #: timestamped "events" whose bytes are all 0xFF (what an idle or broken line reads as); dropped
    suspect_events: int = 0


# Printable ASCII, tab and CR may appear in a reply line; other MSB-0 bytes mark garbage.
_LINE_BYTES = bytes(range(0x20, 0x7F)) + b"\t\r"
_DEFAULT_BLOCK = 64
_MAX_BLOCK = 1 << 16


class PushBotStreamParser:
    """Stateful parser of the robot's mixed DVS-event / ASCII byte stream.

    Semantics are those of the byte-wise state machine (as in pushbotctrl's parser): in the
    idle state a byte with MSB 1 starts an event of ``fmt.event_bytes`` bytes whose other
    bytes are taken as they come; a byte with MSB 0 is appended to the current reply line,
    which ``\\n`` ends.  Feeding a stream in any split gives the same result.  The walk is
    vectorised over runs of events (the common case: long runs of events with a few reply
    lines), so Python work is per run, not per byte.

    Resynchronisation: a line that contains control bytes or grows past
    :data:`MAX_LINE_LENGTH` is dropped at its ``\\n`` and counted as garbage; the next byte
    with MSB 1 starts an event again.  Nothing raises on bad input.

    Timestamps of the 16/24/32-bit formats are extended by counting wraps (libcaer's
    approach for ``!E2``).  A gap without events longer than one wrap period (65.5 ms for
    ``!E2``) cannot be seen in the data and loses one period; that is inherent to the format.

    The format has no framing, so noise on the link (random bytes, a wrong baud rate) decodes
    as phantom events; not all can be told from real ones.  Two kinds are flagged: a wrap
    after an implausibly long gap (:data:`WRAP_WINDOW`) is still a wrap (a clean stream must
    decode exactly) but is counted in ``counters.suspect_wraps``, the sign of a noisy link; and a
    timestamped event whose bytes are all 0xFF (a run of 0xFF, what an idle line reads as,
    would otherwise give a flood at pixel (127, 127)) is dropped and counted in
    ``counters.suspect_events``.  A real event of that value (ON at (127, 127) in the very
    microsecond 0xFFFF of a period) is lost with it.  ``!E0`` has no timestamp to tell them
    apart: its 0xFF pairs stay events.

    Parameters
    ----------
    fmt : the event format the robot was told to use (``!E<n>``)
    on_polarity_bit : the value of the polarity bit that means ON (1 per libcaer)
    """

    def __init__(self, fmt: EventFormat | int = EventFormat.TS16, on_polarity_bit: int = 1) -> None:
        if on_polarity_bit not in (0, 1):
            raise ValueError(f"on_polarity_bit must be 0 or 1, got {on_polarity_bit}")
        self.fmt = EventFormat(fmt)
        self.on_polarity_bit = on_polarity_bit
        self.counters = ParserCounters()
        self._pending = b""  # bytes of an event cut by a chunk boundary
        self._line = bytearray()
        self._line_bad = False
        self._last_raw_ts: int | None = None
        self._wraps = 0

    def set_format(self, fmt: EventFormat | int) -> None:
        """Switch format (after sending ``!E<n>``); a half-received event is dropped."""
        self.fmt = EventFormat(fmt)
        self._pending = b""
        self._last_raw_ts = None
        self._wraps = 0

    def feed(self, data: bytes, host_time_us: int | None = None) -> ParseResult:
        """Parse the next chunk of the stream.

        ``host_time_us`` stamps the events of the timestamp-less format ``!E0``.
        """
        buf = self._pending + bytes(data)
        arr = np.frombuffer(buf, dtype=np.uint8)
        n = arr.size
        width = self.fmt.event_bytes
        # Positions where an ASCII run stops: the start of an event or a line end.
        stops = np.flatnonzero((arr >= 0x80) | (arr == 0x0A))
        runs: list[np.ndarray] = []
        lines: list[str] = []
        readings: list[SensorReading] = []
        p = 0
        while p < n:
            if arr[p] >= 0x80:
                available = (n - p) // width
                if available == 0:
                    break  # an event cut by the chunk boundary: keep it for the next feed
                count = self._event_run_length(arr, p, width, available)
                runs.append(p + width * np.arange(count))
                p += width * count
            else:
                i = int(np.searchsorted(stops, p))
                q = int(stops[i]) if i < stops.size else n
                self._append_line_bytes(buf[p:q])
                if q < n and arr[q] == 0x0A:
                    self._finish_line(lines, readings)
                    q += 1
                p = q
        self._pending = buf[p:]
        starts = np.concatenate(runs) if runs else np.zeros(0, np.int64)
        events = self._decode_events(arr, starts, host_time_us)
        self.counters.events += len(events)
        return ParseResult(events, readings, lines)

    @staticmethod
    def _event_run_length(arr: np.ndarray, p: int, width: int, available: int) -> int:
        """How many consecutive events start at ``p``: until a start position holds an MSB-0 byte.

        Checks candidate starts in growing blocks so that a long run costs a few numpy calls
        and a short one (garbage) costs little.
        """
        count = 0
        block = _DEFAULT_BLOCK
        while count < available:
            m = min(block, available - count)
            candidates = p + width * (count + np.arange(m))
            not_start = np.flatnonzero(arr[candidates] < 0x80)
            if not_start.size:
                return count + int(not_start[0])
            count += m
            block = min(2 * block, _MAX_BLOCK)
        return count

    def _append_line_bytes(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._line_bad:
            self.counters.garbage_bytes += len(chunk)
            return
        if chunk.translate(None, _LINE_BYTES) or len(self._line) + len(chunk) > MAX_LINE_LENGTH:
            # Control bytes or a runaway line: drop everything up to the next line end.
            self.counters.garbage_bytes += len(self._line) + len(chunk)
            self._line.clear()
            self._line_bad = True
            return
        self._line += chunk

    def _finish_line(self, lines: list[str], readings: list[SensorReading]) -> None:
        if self._line_bad:
            self.counters.discarded_lines += 1
            self._line_bad = False
            self._line.clear()
            return
        text = self._line.decode("ascii").strip()
        self._line.clear()
        if not text:
            return
        reading = parse_sensor_line(text)
        if reading is not None:
            readings.append(reading)
            self.counters.sensor_readings += 1
        else:
            lines.append(text)
            self.counters.lines += 1

    def _decode_events(self, arr: np.ndarray, starts: np.ndarray, host_time_us: int | None) -> DvsEvents:
        n_ts = int(self.fmt)
        if n_ts and starts.size:
            filler = np.ones(starts.size, bool)
            for j in range(self.fmt.event_bytes):
                filler &= arr[starts + j] == 0xFF
            if filler.any():
                self.counters.suspect_events += int(filler.sum())
                starts = starts[~filler]
        if starts.size == 0:
            return DvsEvents()
        b0 = arr[starts]
        b1 = arr[starts + 1]
        y = b0 & 0x7F
        x = b1 & 0x7F
        polarity = (b1 >> 7) == self.on_polarity_bit
        if n_ts == 0:
            t = np.full(starts.size, -1 if host_time_us is None else int(host_time_us), np.int64)
            return DvsEvents(x, y, polarity, t)
        raw = np.zeros(starts.size, np.int64)
        for j in range(n_ts):
            raw = (raw << 8) | arr[starts + 2 + j].astype(np.int64)
        previous = raw[0] if self._last_raw_ts is None else self._last_raw_ts
        period = 1 << self.fmt.timestamp_bits
        step = np.diff(raw, prepend=previous)
        decreased = step < 0
        wraps = self._wraps + np.cumsum(decreased)
        self.counters.timestamp_wraps += int(decreased.sum())
        # step + period: the time since the previous event, this decrease being a wrap
        self.counters.suspect_wraps += int((decreased & (step + period > int(period * WRAP_WINDOW))).sum())
        self._wraps = int(wraps[-1])
        self._last_raw_ts = int(raw[-1])
        t = (wraps << self.fmt.timestamp_bits) + raw
        return DvsEvents(x, y, polarity, t)
