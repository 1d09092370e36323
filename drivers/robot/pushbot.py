"""``PushBot``: a PushBot / eDVS4337 robot over pyserial.

The port is opened with :func:`serial.serial_for_url`, so one class serves every link the
robot (or its simulator) offers: ``/dev/ttyUSB0`` (FTDI, RTS/CTS flow control), a pty
such as ``/dev/pts/7`` and ``socket://192.168.1.10:56000`` (the WLAN module, TCP).

Life cycle (the sequences of libcaer, nstbot and nengo_pushbot, ``reference/robot.md``)::

    open:   "\\n" (flush a half-typed command), "R", wait for the banner containing
            "eDVS4337", [!U<echo>], !E<format>, E+, !M+, !MVD0=0, !MVD1=0, [!S+mask,period]
    close:  !MVD0=0, !MVD1=0, !M-, E-, !S-, laser/buzzer/LEDs off (!PA=0 !PA0=0 ...)

A reader thread parses the byte stream and calls the registered callbacks with numpy
batches of DVS events, sensor readings and other reply lines.  Motor commands are rate
limited: at most one ``!MVD`` pair per ``motor_min_interval_s`` (nstbot drops commands
sent sooner; here the latest one wins and the reader thread sends it when the interval
has passed, so the robot never keeps a stale speed).  A read or write failure (cable
pulled, TCP peer gone, pty closed) moves the device to :attr:`PushBotState.DISCONNECTED`
and notifies the state listeners; later commands raise :class:`PushBotDisconnectedError`
instead of blocking.

The firmware has no watchdog, so by default (``watchdog_timeout_s``) an open robot gets a
:class:`~drivers.robot.watchdog.MotorWatchdog` process: it holds a copy of the link's file
descriptor and stops the motors when this process dies (SIGKILL included) or freezes; the
reader thread feeds its heartbeat.
"""

from __future__ import annotations

import enum
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import serial

from . import pushbot_protocol as proto
from .pushbot_protocol import DvsEvents, EventFormat, PushBotStreamParser, SensorReading
from .watchdog import MotorWatchdog

log = logging.getLogger(__name__)


class PushBotError(RuntimeError):
    """The robot did not behave as the protocol says (no banner, port cannot be opened...)."""


class PushBotDisconnectedError(PushBotError):
    """The link to the robot is gone; the device must be closed and opened again."""


class PushBotState(enum.Enum):
    CLOSED = "closed"
    OPENING = "opening"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"


@dataclass
class PushBotConfig:
    """Link and start-up settings.

    ``baudrate``: 4 Mbaud for serial numbers 613xx, 12 Mbaud for 126xx (the user guide);
    ignored by ``socket://`` and ptys.  ``sensor_mask`` 0 streams no sensors.  ``echo_mode``
    None leaves the firmware's (unverified) default echo alone; the parser copes with echoes.
    """

    baudrate: int = 4_000_000
    rtscts: bool = True
    event_format: EventFormat = EventFormat.TS16
    format_numbering: Mapping[EventFormat, int] = field(default_factory=lambda: dict(proto.GUIDE_FORMAT_NUMBERS))
    on_polarity_bit: int = 1
    banner_timeout_s: float = 2.0
    echo_mode: int | None = None
    sensor_mask: int = 0
    sensor_period_ms: int = 100
    motor_min_interval_s: float = 0.010
    read_timeout_s: float = 0.005
    write_timeout_s: float = 1.0
    read_size: int = 65536
    #: Heartbeat silence after which the watchdog process stops the motors; None: no watchdog.
    watchdog_timeout_s: float | None = 0.5


@dataclass
class PushBotCounters:
    bytes_received: int = 0
    events: int = 0
    sensor_readings: int = 0
    lines: int = 0
    motor_commands_sent: int = 0
    motor_commands_coalesced: int = 0  # superseded by a newer command inside the rate limit


EventCallback = Callable[[DvsEvents], None]
SensorCallback = Callable[[SensorReading], None]
LineCallback = Callable[[str], None]
StateListener = Callable[[PushBotState, str], None]


class PushBot:
    """A PushBot robot (real or simulated) on a pyserial URL.

    Parameters
    ----------
    url : anything :func:`serial.serial_for_url` opens (``/dev/ttyUSB0``, ``socket://host:56000``)
    config : link and start-up settings
    serial_factory : opens the port; default :func:`serial.serial_for_url` (tests may wrap it)
    """

    def __init__(
        self,
        url: str,
        config: PushBotConfig | None = None,
        *,
        serial_factory: Callable[..., Any] = serial.serial_for_url,
    ) -> None:
        self.url = url
        self.config = config or PushBotConfig()
        self.counters = PushBotCounters()
        self.banner: list[str] = []
        self.disconnect_reason = ""
        self.last_sensor: dict[int, SensorReading] = {}
        self._serial_factory = serial_factory
        self._port: Any = None
        self._watchdog: MotorWatchdog | None = None
        self._state = PushBotState.CLOSED
        self._parser = PushBotStreamParser(self.config.event_format, self.config.on_polarity_bit)
        self._reader: threading.Thread | None = None
        self._stop = threading.Event()
        self._write_lock = threading.Lock()
        self._motor_lock = threading.Lock()
        self._lines_cond = threading.Condition()
        self._recent_lines: deque[str] = deque(maxlen=64)
        self._motor_target = (0, 0)
        self._motor_pending = False
        self._last_motor_send = -1e9
        self._event_callbacks: list[EventCallback] = []
        self._sensor_callbacks: list[SensorCallback] = []
        self._line_callbacks: list[LineCallback] = []
        self._state_listeners: list[StateListener] = []

    # --- state ----------------------------------------------------------------------------------

    @property
    def state(self) -> PushBotState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is PushBotState.CONNECTED

    @property
    def parser_counters(self) -> proto.ParserCounters:
        """Garbage and wrap counters of the stream parser."""
        return self._parser.counters

    def _set_state(self, state: PushBotState, reason: str = "") -> None:
        if state is self._state:
            return
        self._state = state
        for listener in list(self._state_listeners):
            try:
                listener(state, reason)
            except Exception:
                log.exception("PushBot state listener failed")

    def add_state_listener(self, listener: StateListener) -> None:
        """``listener(state, reason)`` after every state change (reader thread on disconnect)."""
        self._state_listeners.append(listener)

    def add_event_callback(self, callback: EventCallback) -> None:
        """``callback(DvsEvents)`` for every non-empty batch, from the reader thread."""
        self._event_callbacks.append(callback)

    def remove_event_callback(self, callback: EventCallback) -> None:
        self._event_callbacks.remove(callback)

    def add_sensor_callback(self, callback: SensorCallback) -> None:
        """``callback(SensorReading)`` for every ``-S`` line, from the reader thread."""
        self._sensor_callbacks.append(callback)

    def add_line_callback(self, callback: LineCallback) -> None:
        """``callback(str)`` for every other reply line (banner, echoes, help), from the reader thread."""
        self._line_callbacks.append(callback)

    # --- open / close ---------------------------------------------------------------------------

    def open(self) -> PushBot:
        """Open the port and run the start-up sequence; raises :class:`PushBotError` on failure
        (the port is then closed again and the state is CLOSED)."""
        if self._state is not PushBotState.CLOSED:
            raise PushBotError(f"PushBot on {self.url} is {self._state.value}; close it before opening again")
        cfg = self.config
        try:
            self._port = self._serial_factory(
                self.url,
                baudrate=cfg.baudrate,
                rtscts=cfg.rtscts,
                timeout=cfg.read_timeout_s,
                write_timeout=cfg.write_timeout_s,
            )
        except (serial.SerialException, OSError, ValueError) as exc:
            raise PushBotError(f"cannot open robot port {self.url}: {exc}") from exc
        self.counters = PushBotCounters()
        self._parser = PushBotStreamParser(EventFormat.NO_TIMESTAMP, cfg.on_polarity_bit)
        self.disconnect_reason = ""
        self._stop.clear()
        self._set_state(PushBotState.OPENING, f"opening {self.url}")
        self._reader = threading.Thread(target=self._read_loop, name=f"pushbot-reader {self.url}", daemon=True)
        self._reader.start()
        try:
            self._start_up()
            self._start_watchdog()
        except Exception:
            self._shutdown_port()
            self._set_state(PushBotState.CLOSED, "start-up failed")
            raise
        self._set_state(PushBotState.CONNECTED, f"connected to {self.url}")
        return self

    def _start_up(self) -> None:
        cfg = self.config
        self._write(proto.encode_flush())
        with self._lines_cond:
            self._recent_lines.clear()
        self._write(proto.encode_reset())
        self.banner = self._wait_for_banner(cfg.banner_timeout_s)
        if cfg.echo_mode is not None:
            self._write(proto.encode_echo_mode(cfg.echo_mode))
        # Streaming is off after the reset, so switching the parser before the robot is safe.
        self._parser.set_format(cfg.event_format)
        self._write(proto.encode_event_format(cfg.event_format, cfg.format_numbering))
        self._write(proto.encode_event_streaming(True))
        self._write(proto.encode_motor_driver(True))
        self._write(proto.encode_motor_duty_velocity(proto.LEFT_MOTOR, 0))
        self._write(proto.encode_motor_duty_velocity(proto.RIGHT_MOTOR, 0))
        self._last_motor_send = time.monotonic()
        if cfg.sensor_mask:
            self._write(proto.encode_sensor_stream(cfg.sensor_mask, cfg.sensor_period_ms))

    def _start_watchdog(self) -> None:
        timeout = self.config.watchdog_timeout_s
        if timeout is None:
            return
        fd = _link_fileno(self._port)
        if fd is None or os.name != "posix":
            log.warning("PushBot %s: no motor watchdog (the link has no file descriptor to hand over)", self.url)
            return
        motors_off = proto.encode_motor_duty_velocity(proto.LEFT_MOTOR, 0) + proto.encode_motor_duty_velocity(
            proto.RIGHT_MOTOR, 0
        )
        self._watchdog = MotorWatchdog(
            fd, b"\n" + motors_off + proto.encode_motor_driver(False), b"\n" + motors_off, timeout
        ).start()

    @property
    def watchdog(self) -> MotorWatchdog | None:
        """The motor watchdog process's handle while one runs."""
        return self._watchdog

    def _stop_watchdog(self) -> None:
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            watchdog.disarm()

    def _wait_for_banner(self, timeout_s: float) -> list[str]:
        deadline = time.monotonic() + timeout_s
        with self._lines_cond:
            while True:
                lines = list(self._recent_lines)
                if any(proto.BANNER_MARKER.lower() in line.lower() for line in lines):
                    # Give the rest of a multi-line banner a moment to arrive.
                    self._lines_cond.wait(0.05)
                    return list(self._recent_lines)
                if self._state is PushBotState.DISCONNECTED:
                    raise PushBotDisconnectedError(
                        f"robot on {self.url} went away during reset: {self.disconnect_reason}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = "; ".join(lines[-5:]) or "nothing"
                    raise PushBotError(
                        f"no '{proto.BANNER_MARKER}' banner from {self.url} within {timeout_s} s after reset "
                        f"(received: {seen}); is this an eDVS/PushBot, and is the baud rate right?"
                    )
                self._lines_cond.wait(remaining)

    def close(self) -> None:
        """Stop the robot (motors 0, ``!M-``, ``E-``, ``!S-``, lights off) and close the port.

        Safe to call in any state and more than once; never blocks longer than the write
        timeout when the link is half dead.
        """
        if self._state is PushBotState.CLOSED:
            return
        if self._state in (PushBotState.CONNECTED, PushBotState.OPENING):
            try:
                with self._motor_lock:
                    self._motor_pending = False
                self._write(
                    proto.encode_motor_duty_velocity(proto.LEFT_MOTOR, 0)
                    + proto.encode_motor_duty_velocity(proto.RIGHT_MOTOR, 0)
                    + proto.encode_motor_driver(False)
                    + proto.encode_event_streaming(False)
                    + proto.encode_sensor_stop()
                    + proto.encode_all_lights_off()
                )
                self._port.flush()
            except (PushBotError, serial.SerialException, OSError) as exc:
                log.warning("PushBot %s: close sequence not delivered: %s", self.url, exc)
        self._stop_watchdog()
        self._shutdown_port()
        self._set_state(PushBotState.CLOSED, "closed by host")

    def _shutdown_port(self) -> None:
        self._stop_watchdog()
        self._stop.set()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)
        self._reader = None
        if self._port is not None:
            try:
                self._port.close()
            except Exception as exc:  # a vanished device may fail to close; it is gone either way
                log.debug("closing %s: %s", self.url, exc)
        self._port = None

    def __enter__(self) -> PushBot:
        return self.open() if self._state is PushBotState.CLOSED else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- commands -------------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self._state is PushBotState.DISCONNECTED:
            raise PushBotDisconnectedError(f"robot on {self.url} is disconnected: {self.disconnect_reason}")
        port = self._port
        if port is None:
            raise PushBotError(f"robot on {self.url} is not open")
        try:
            with self._write_lock:
                port.write(data)
        except (serial.SerialException, OSError) as exc:
            self._mark_disconnected(f"write failed: {exc}")
            raise PushBotDisconnectedError(f"robot on {self.url}: write failed: {exc}") from exc

    def send_command(self, text: str) -> None:
        """Send one raw command line (console use); ``P`` (bootloader) is refused."""
        self._require_open()
        self._write(proto.command_line(text))

    def _require_open(self) -> None:
        if self._state is PushBotState.DISCONNECTED:
            raise PushBotDisconnectedError(f"robot on {self.url} is disconnected: {self.disconnect_reason}")
        if self._state is not PushBotState.CONNECTED:
            raise PushBotError(f"robot on {self.url} is not open (state {self._state.value})")

    def set_motors(self, left: float, right: float, *, immediate: bool = False) -> bool:
        """Drive the wheels with ``!MVD0``/``!MVD1`` (-100..100, clamped).

        Returns True if the command went out now, False if it was deferred by the rate limit
        (the reader thread sends the latest deferred command once the interval has passed).
        ``immediate`` bypasses the limit (stops, safety).
        """
        target = (proto.clamp_motor_value(left), proto.clamp_motor_value(right))
        self._require_open()
        with self._motor_lock:
            if self._motor_pending:
                self.counters.motor_commands_coalesced += 1
            self._motor_target = target
            if immediate or time.monotonic() - self._last_motor_send >= self.config.motor_min_interval_s:
                self._send_motor_target_locked()
                return True
            self._motor_pending = True
            return False

    def stop_motors(self) -> None:
        """Both wheels to 0 at once (not rate limited)."""
        self.set_motors(0, 0, immediate=True)

    def _send_motor_target_locked(self) -> None:
        left, right = self._motor_target
        self._motor_pending = False
        self._last_motor_send = time.monotonic()
        self._write(
            proto.encode_motor_duty_velocity(proto.LEFT_MOTOR, left)
            + proto.encode_motor_duty_velocity(proto.RIGHT_MOTOR, right)
        )
        self.counters.motor_commands_sent += 1

    def _flush_deferred_motor_command(self) -> None:
        with self._motor_lock:
            if not self._motor_pending or self._state is not PushBotState.CONNECTED:
                return
            if time.monotonic() - self._last_motor_send < self.config.motor_min_interval_s:
                return
            try:
                self._send_motor_target_locked()
            except PushBotDisconnectedError:
                pass  # already reported through the state listeners

    @property
    def motor_target(self) -> tuple[int, int]:
        """The latest (left, right) command, sent or deferred."""
        return self._motor_target

    def set_leds(self, frequency_hz: float, duty: float = 0.5) -> None:
        """Blink the front and back LEDs at ``frequency_hz`` (``!PC=`` period, ``!PC0=``/``!PC1=`` on-time)."""
        self._require_open()
        self._write(proto.encode_pwm_frequency("C", frequency_hz, duty))

    def lights_off(self) -> None:
        """Laser, buzzer and LEDs off."""
        self._require_open()
        self._write(proto.encode_all_lights_off())

    def start_sensors(self, mask: int, period_ms: int) -> None:
        """Stream the sensors in ``mask`` every ``period_ms`` (``!S+mask,period``)."""
        self._require_open()
        self._write(proto.encode_sensor_stream(mask, period_ms))

    def stop_sensors(self, mask: int | None = None) -> None:
        self._require_open()
        self._write(proto.encode_sensor_stop(mask))

    # --- reader ---------------------------------------------------------------------------------

    def _mark_disconnected(self, reason: str) -> None:
        if self._state in (PushBotState.CLOSED, PushBotState.DISCONNECTED) or self._stop.is_set():
            return
        self.disconnect_reason = reason
        log.warning("PushBot %s disconnected: %s", self.url, reason)
        self._stop_watchdog()  # the link is gone: nothing left for it to write to
        self._set_state(PushBotState.DISCONNECTED, reason)
        with self._lines_cond:
            self._lines_cond.notify_all()

    def _read_loop(self) -> None:
        port = self._port
        size = self.config.read_size
        while not self._stop.is_set():
            try:
                data = port.read(size)
            except (serial.SerialException, OSError, TypeError, AttributeError) as exc:
                # TypeError/AttributeError: pyserial's fd was closed under us by close().
                if not self._stop.is_set():
                    self._mark_disconnected(f"read failed: {exc}")
                return
            if data:
                self._dispatch(data)
            self._flush_deferred_motor_command()
            watchdog = self._watchdog
            if watchdog is not None:
                watchdog.beat()

    def _dispatch(self, data: bytes) -> None:
        self.counters.bytes_received += len(data)
        host_time_us = time.monotonic_ns() // 1000
        result = self._parser.feed(data, host_time_us=host_time_us)
        if result.lines:
            with self._lines_cond:
                self._recent_lines.extend(result.lines)
                self._lines_cond.notify_all()
            self.counters.lines += len(result.lines)
            for line in result.lines:
                for callback in list(self._line_callbacks):
                    _call_safely(callback, line)
        for reading in result.sensor_readings:
            self.last_sensor[reading.sensor] = reading
            self.counters.sensor_readings += 1
            for callback in list(self._sensor_callbacks):
                _call_safely(callback, reading)
        if len(result.events):
            self.counters.events += len(result.events)
            for callback in list(self._event_callbacks):
                _call_safely(callback, result.events)


def _link_fileno(port: Any) -> int | None:
    """The OS file descriptor under a pyserial port (tty/pty or ``socket://``), if it has one."""
    try:
        return int(port.fileno())
    except (AttributeError, OSError, ValueError, TypeError, serial.SerialException):
        pass
    sock = getattr(port, "_socket", None)  # pyserial's socket:// handler keeps its socket here
    try:
        return int(sock.fileno()) if sock is not None else None
    except OSError:
        return None


def _call_safely(callback: Callable[[Any], None], value: Any) -> None:
    try:
        callback(value)
    except Exception:
        log.exception("PushBot callback failed")
