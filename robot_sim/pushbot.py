"""A simulated PushBot that speaks the eDVS4337 text protocol over a pty or TCP.

The robot lives on a plane with one LED that blinks at ``led_frequency_hz`` (100..300 Hz
in the phototaxis demos).  It has

* **differential drive**: wheel speed = motor command / 100 × ``max_speed_m_s``; forward
  speed is the mean of the wheels, the turn rate their difference over ``wheel_base_m``
  (left wheel faster turns right);
* **a 128 × 128 DVS** with a pinhole lens of ``fov_deg`` horizontal field of view (about 55°
  for the eDVS lens).  Column 0 is the left edge of the image, so an LED to the robot's
  left appears at small columns: ``column = 63.5 - f_px tan(bearing)`` with
  ``f_px = 64 / tan(fov/2)`` and bearing positive counter-clockwise.  Every LED edge emits
  ``events_per_edge`` events (ON for a rising edge, OFF for a falling one) at the LED's
  column and row ± 1 px with a small time jitter; Poisson noise events are spread over
  the whole array at ``noise_rate_hz``.  The mounting of the real camera (mirrored or not)
  was not verified; ``mirror_columns`` flips it;
* **the protocol** of ``shared/reference/robot.md``: ``R`` (banner containing
  ``eDVS4337``), ``E±``, ``!E<n>`` (0/2/3/4), ``!M±``, ``!MV<i>=``, ``!MVD<i>=``, ``!M<i>=``,
  ``!MD<i>=``, ``!MP<i>=``, ``!S+mask,period``, ``!S-[mask]``, ``?S<mask>``, ``!P*``, ``!L*``,
  ``!U*``, ``!B*``, ``!ET*``, ``??`` and ``?V``.  Sensors: battery (bit 0), ADC0/ADC1 as a
  left/right light sensor pair (bits 1, 2), the event rate (bit 21) and the wheel tick
  counters (bit 28, ``-S28 <left> <right>``); other bits are accepted and not streamed.
  ``P`` enters the bootloader: the simulator is then "bricked" (motors stop, no streaming,
  every command ignored) until ``R``.

**Motor fail-safe, as the firmware has it.** The eDVS4337 firmware (EDVSBoardOS 0.7.0,
``motors.c``/``sensors.c``; ``shared/reference/interop.md`` §2) has no watchdog and no motor
timeout; its only fail-safe is the *decay* of ``!MVD``: each ``!MVD<i>=v`` sets a hold of 10
ticks of a free-running 10 Hz clock, and once the hold has run out ``|v|`` drops by 1 per
tick, so an unrefreshed ``!MVD`` coasts for ~1 s + ``|v|``/10 s.  ``!MV`` (no decay) runs
until reset.  The simulator models exactly that (``mvd_decay``) and invents nothing more:
a host that dies without stopping the motors leaves this robot driving as a real one would.

Choices where the reference is silent (all parameters): the echo mode after reset
is 1 (each command line is echoed back, as edvstools observed); unknown commands get the
reply ``unknown command: <text>``.

Time follows the wall clock (a real robot does not wait for the host).  The physics can
also be stepped by hand with :meth:`SimulatedPushBot.advance` when no link is served.

Links: :meth:`SimulatedPushBot.serve_pty` (POSIX; returns ``/dev/pts/N`` for
``serial.Serial``) and :meth:`SimulatedPushBot.serve_tcp` (returns ``socket://127.0.0.1:N``
like the WLAN module's port 56000).  :meth:`SimulatedPushBot.unplug` pulls the cable.
"""

from __future__ import annotations

import errno
import logging
import math
import os
import select
import socket
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from drivers.robot import pushbot_protocol as proto
from drivers.robot.pushbot_protocol import EventFormat

log = logging.getLogger(__name__)

BANNER_LINES = (
    "EDVS-4337 PushBot simulator (NeuroLab emulator)",
    "eDVS4337 firmware protocol, type ?? for help",
)
HELP_LINES = (
    "E+/E- start/stop events, !E<n> event format (0,2,3,4), !M+/!M- motor driver",
    "!MV<i>=v, !MVD<i>=v (v=-100..100), !S+mask,ms / !S- sensors, !P<A|B|C>[c]=us timers",
    "!L0/1/2 LED, !U0/1/2 echo, !ET0 reset time, R reset, ?V version",
)
VERSION_LINE = "EDVS4337 SIM V0.1"


@dataclass
class PushBotSimConfig:
    """World, robot and sensor parameters of the simulated PushBot (SI units)."""

    start_x_m: float = 0.0
    start_y_m: float = 0.0
    start_heading_rad: float = 0.0
    led_x_m: float = 2.0
    led_y_m: float = 0.0
    led_frequency_hz: float = 200.0
    led_height_m: float = 0.10  # the camera's height too by default: the LED sits on row ~64
    camera_height_m: float = 0.10
    max_speed_m_s: float = 0.25  # wheel speed at command 100
    wheel_base_m: float = 0.13
    ticks_per_m: float = 1000.0  # wheel encoder resolution behind -S28 (unverified, a choice)
    fov_deg: float = 55.0
    mirror_columns: bool = False
    events_per_edge: int = 6
    edge_jitter_us: float = 100.0
    noise_rate_hz: float = 2000.0
    mvd_decay: bool = True  # the firmware's !MVD decay (hold, then |v| -= 1 per tick)
    decay_tick_s: float = 0.1  # the firmware's 10 Hz SysTick stage
    decay_hold_ticks: int = 10
    echo_mode: int = 1
    format_numbering: Mapping[EventFormat, int] = field(default_factory=lambda: dict(proto.GUIDE_FORMAT_NUMBERS))
    battery_mv: int = 4100
    tick_s: float = 0.004  # physics and I/O step of the serving thread
    max_backlog_bytes: int = 1 << 18  # unsent bytes beyond this drop new events (RTS/CTS stand-in)
    seed: int | None = None


@dataclass
class Pose:
    x_m: float
    y_m: float
    heading_rad: float


class _Link(ABC):
    """The host-facing end: reads commands, writes the stream, knows whether a host is there."""

    address = ""

    @abstractmethod
    def read(self, timeout_s: float) -> bytes | None:
        """Bytes from the host, b"" for none yet, None when no host is attached."""

    @abstractmethod
    def write(self, data: bytes) -> int:
        """Write what the link accepts now; return the number of bytes taken (-1: no host)."""

    @abstractmethod
    def close(self) -> None:
        """Release the link (idempotent)."""


class _PtyLink(_Link):
    """A pseudo-terminal: the host opens ``address`` (``/dev/pts/N``), we hold the master."""

    def __init__(self) -> None:
        import tty

        master, slave = os.openpty()
        # Raw mode at once: otherwise the line discipline echoes our output back to us and
        # turns "\n" into "\r\n" before the host has opened the port.
        tty.setraw(slave)
        self.address = os.ttyname(slave)
        os.close(slave)  # the host holds the only slave fd: its close shows up as EIO here
        os.set_blocking(master, False)
        self._master: int | None = master

    def read(self, timeout_s: float) -> bytes | None:
        fd = self._master
        if fd is None:
            return None
        try:
            ready, _, _ = select.select([fd], [], [], timeout_s)
            if not ready:
                return b""
            return os.read(fd, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):
                time.sleep(timeout_s)  # no host has the slave open; poll again later
                return None
            raise

    def write(self, data: bytes) -> int:
        fd = self._master
        if fd is None:
            return -1
        try:
            return os.write(fd, data)
        except BlockingIOError:
            return 0
        except OSError as exc:
            if exc.errno in (errno.EIO, errno.EBADF):
                return -1
            raise

    def close(self) -> None:
        fd, self._master = self._master, None
        if fd is not None:
            os.close(fd)


class _TcpLink(_Link):
    """A TCP server on 127.0.0.1 taking one host at a time, like the WLAN module."""

    def __init__(self, port: int = 0) -> None:
        self._server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(1)
        self._server.setblocking(False)
        self.port = self._server.getsockname()[1]
        self.address = f"socket://127.0.0.1:{self.port}"
        self._client: socket.socket | None = None
        self._closed = False

    def read(self, timeout_s: float) -> bytes | None:
        if self._closed:
            return None
        if self._client is None:
            ready, _, _ = select.select([self._server], [], [], timeout_s)
            if not ready:
                return None
            try:
                client, _ = self._server.accept()
            except OSError:
                return None
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            return b""
        client = self._client  # unplug() may drop it from another thread meanwhile
        try:
            ready, _, _ = select.select([client], [], [], timeout_s)
            if not ready:
                return b""
            data = client.recv(65536)
        except BlockingIOError:
            return b""
        except (OSError, ValueError):  # ValueError: select on a socket closed under us
            data = b""
        if not data:  # the host closed the connection
            if self._client is client:
                self.drop_client()
            return None
        return data

    def write(self, data: bytes) -> int:
        client = self._client
        if client is None:
            return -1
        try:
            return client.send(data)
        except BlockingIOError:
            return 0
        except OSError:
            if self._client is client:
                self.drop_client()
            return -1

    def drop_client(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                client.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            client.close()

    def close(self) -> None:
        self._closed = True
        self.drop_client()
        self._server.close()


class SimulatedPushBot:
    """The robot: world physics, DVS, sensors, and the protocol on a served link.

    Thread safety: the serving thread owns the physics; the public read-outs (``pose``,
    ``commands``, ``led_column``) take the lock and return copies.
    """

    def __init__(self, config: PushBotSimConfig | None = None) -> None:
        self.config = config or PushBotSimConfig()
        self._rng = np.random.default_rng(self.config.seed)
        self._lock = threading.RLock()
        self._link: _Link | None = None
        self._thread: threading.Thread | None = None
        self._running = threading.Event()
        self._in_line = bytearray()
        self._out = bytearray()
        #: Every byte the host sent, in order (tests check exact command bytes here).
        self.received_bytes = bytearray()
        self.dropped_events = 0
        self.pose = Pose(self.config.start_x_m, self.config.start_y_m, self.config.start_heading_rad)
        self.trajectory: list[tuple[float, float, float, float]] = []  # (t_s, x, y, heading)
        self._commands: list[str] = []
        self._t_s = 0.0  # simulated time since construction
        self._ts_origin_s = 0.0  # DVS timestamp zero (R, !ET0)
        self._next_edge_index = 0
        self._wheel_m = [0.0, 0.0]
        self._events_last_second: list[tuple[float, int]] = []
        self._power_on_state()

    # --- firmware state -------------------------------------------------------------------------

    def _power_on_state(self) -> None:
        self.bricked = False
        self.streaming = False
        self.event_format = EventFormat.NO_TIMESTAMP
        self.motors_enabled = False
        self.motor_command = [0.0, 0.0]
        self._motor_decays = [False, False]  # per motor: last set by !MVD (decays) or !MV (holds)
        self._decay_hold = [0, 0]  # ticks left before the decay starts
        self.sensors: dict[int, tuple[float, float]] = {}  # bit -> (period s, next due time)
        self.timers: dict[str, int] = {}
        self.board_led = proto.BoardLed.OFF
        self.echo_mode = self.config.echo_mode
        self._ts_origin_s = self._t_s
        self._wheel_m = [0.0, 0.0]

    @property
    def commands(self) -> list[str]:
        """The command lines received so far (without line ends; empty lines included)."""
        with self._lock:
            return list(self._commands)

    # --- serving ----------------------------------------------------------------------------------

    def serve_pty(self) -> str:
        """Serve on a new pseudo-terminal; returns its path (POSIX only)."""
        if os.name != "posix":
            raise RuntimeError("pty serving needs a POSIX system; use serve_tcp() and a socket:// URL")
        return self._serve(_PtyLink())

    def serve_tcp(self, port: int = 0) -> str:
        """Serve on TCP 127.0.0.1:``port`` (0 picks a free one); returns the ``socket://`` URL."""
        return self._serve(_TcpLink(port))

    def _serve(self, link: _Link) -> str:
        if self._thread is not None:
            raise RuntimeError(f"this simulated PushBot already serves {self._link.address if self._link else ''}")
        self._link = link
        self._running.set()
        self._thread = threading.Thread(target=self._serve_loop, name=f"pushbot-sim {link.address}", daemon=True)
        self._thread.start()
        return link.address

    @property
    def address(self) -> str:
        return self._link.address if self._link else ""

    def _serve_loop(self) -> None:
        link = self._link
        assert link is not None
        last = time.monotonic()
        while self._running.is_set():
            data = link.read(self.config.tick_s)
            if not self._running.is_set():
                break
            if data:
                self.handle_bytes(data)
            now = time.monotonic()
            self.advance(now - last)
            last = now
            if data is None:
                with self._lock:
                    self._out.clear()  # no host: the bytes go nowhere, like an unplugged UART
                continue
            with self._lock:
                if self._out:
                    sent = link.write(bytes(self._out))
                    if sent < 0:
                        self._out.clear()
                    else:
                        del self._out[:sent]

    def unplug(self) -> None:
        """Pull the cable: the host's next read fails.  A pty is gone for good; the TCP server
        keeps listening (the WLAN module accepts a new connection)."""
        link = self._link
        if isinstance(link, _TcpLink):
            link.drop_client()
        elif link is not None:
            self._running.clear()
            if self._thread is not None:
                self._thread.join(timeout=2.0)
                self._thread = None
            link.close()

    def close(self) -> None:
        """Stop serving and release the link."""
        self._running.clear()
        if self._thread is not None:
            self._thread.join(timeout=2.0)
            self._thread = None
        if self._link is not None:
            self._link.close()

    def __enter__(self) -> SimulatedPushBot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def line_noise(self, data: bytes) -> None:
        """Put raw bytes on the line to the host, between the robot's own output, as a noisy cable
        or a wrong baud rate would."""
        with self._lock:
            self._out += data

    def wait_until(self, condition: Callable[[SimulatedPushBot], bool], timeout_s: float = 2.0) -> bool:
        """Poll ``condition(self)`` until it holds or ``timeout_s`` passes; returns the last value."""
        deadline = time.monotonic() + timeout_s
        while True:
            with self._lock:
                if condition(self):
                    return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.005)

    # --- protocol -------------------------------------------------------------------------------------

    def handle_bytes(self, data: bytes) -> None:
        """Take bytes from the host; complete lines are executed as commands."""
        with self._lock:
            self.received_bytes += data
            self._in_line += data
            while True:
                end = self._in_line.find(b"\n")
                if end < 0:
                    break
                raw = bytes(self._in_line[:end])
                del self._in_line[: end + 1]
                self._execute(raw.decode("ascii", errors="replace").strip())

    def _reply(self, *lines: str) -> None:
        for line in lines:
            self._out += line.encode("ascii") + b"\n"

    def _execute(self, cmd: str) -> None:
        self._commands.append(cmd)
        if cmd == "R":
            self._power_on_state()
            self._out.clear()
            self._reply(*BANNER_LINES)
            return
        if self.bricked or not cmd:
            return
        if cmd == "P":
            self.bricked = True
            self.streaming = False
            self.motors_enabled = False
            self.motor_command = [0.0, 0.0]
            self.sensors.clear()
            return
        if self.echo_mode >= 1:
            self._reply(cmd)
        try:
            handled = self._dispatch(cmd)
        except ValueError as exc:
            self._reply(f"error in {cmd}: {exc}")
            return
        if not handled:
            self._reply(f"unknown command: {cmd}")

    def _dispatch(self, cmd: str) -> bool:
        if cmd in ("E+", "E-"):
            self.streaming = cmd == "E+"
            return True
        if cmd.startswith("!ET"):
            if cmd == "!ET0":
                self._ts_origin_s = self._t_s
            return True
        if cmd.startswith("!E"):
            self.event_format = proto.event_format_from_number(int(cmd[2:]), self.config.format_numbering)
            return True
        if cmd in ("!M+", "!M-"):
            self.motors_enabled = cmd == "!M+"
            if not self.motors_enabled:
                self.motor_command = [0.0, 0.0]
            return True
        for prefix in ("!MVD", "!MV"):
            if cmd.startswith(prefix) and "=" in cmd:
                index, value = cmd[len(prefix) :].split("=", 1)
                motor = int(index)
                if motor not in (0, 1):
                    raise ValueError(f"motor {motor} does not exist")
                self.motor_command[motor] = float(proto.clamp_motor_value(int(value)))
                self._motor_decays[motor] = prefix == "!MVD"
                self._decay_hold[motor] = self.config.decay_hold_ticks
                return True
        if cmd[:3] in ("!MD", "!MP", "!MC") or (cmd.startswith("!M") and cmd[2:3].isdigit()):
            return True  # duty width / PWM period / PID gains: accepted, no effect on the model
        if cmd.startswith("!S+"):
            mask, period = cmd[3:].split(",", 1)
            period_s = int(period) / 1000.0
            if period_s <= 0:
                raise ValueError("sensor period must be > 0 ms")
            for bit in _bits(int(mask)):
                self.sensors[bit] = (period_s, self._t_s + period_s)
            return True
        if cmd.startswith("!S-"):
            rest = cmd[3:].split(",", 1)[0]
            if rest:
                for bit in _bits(int(rest)):
                    self.sensors.pop(bit, None)
            else:
                self.sensors.clear()
            return True
        if cmd.startswith("?S"):
            for bit in _bits(int(cmd[2:])):
                self._emit_sensor(bit)
            return True
        if cmd.startswith("!P") and "=" in cmd:
            name, value = cmd[2:].split("=", 1)
            if not name or name[0] not in "ABC" or name[1:] not in ("", "0", "1"):
                raise ValueError(f"no timer {name}")
            self.timers[name] = int(value.lstrip("%"))
            return True
        if cmd in ("!L0", "!L1", "!L2"):
            self.board_led = proto.BoardLed(int(cmd[2]))
            return True
        if cmd in ("!U0", "!U1", "!U2"):
            self.echo_mode = int(cmd[2])
            return True
        if cmd.startswith(("!U=", "!B", "?B")):
            return True  # baud rate and DVS biases: accepted, no effect on the model
        if cmd == "??":
            self._reply(*HELP_LINES)
            return True
        if cmd == "?V":
            self._reply(VERSION_LINE)
            return True
        return False

    # --- physics -------------------------------------------------------------------------------------

    def led_bearing(self) -> float:
        """Bearing of the LED from the robot's heading, radians, positive to the left."""
        with self._lock:
            cfg, pose = self.config, self.pose
            angle = math.atan2(cfg.led_y_m - pose.y_m, cfg.led_x_m - pose.x_m) - pose.heading_rad
            return math.atan2(math.sin(angle), math.cos(angle))

    def _focal_px(self) -> float:
        return (proto.DVS_WIDTH / 2) / math.tan(math.radians(self.config.fov_deg) / 2)

    def led_column(self) -> float | None:
        """Ground truth: the image column of the LED, or None when it is outside the view."""
        bearing = self.led_bearing()
        if abs(bearing) >= math.radians(self.config.fov_deg) / 2:
            return None
        offset = self._focal_px() * math.tan(bearing)
        column = (proto.DVS_WIDTH - 1) / 2 + (offset if self.config.mirror_columns else -offset)
        return column if 0 <= column <= proto.DVS_WIDTH - 1 else None

    def _led_row(self) -> float:
        cfg, pose = self.config, self.pose
        distance = max(1e-3, math.hypot(cfg.led_x_m - pose.x_m, cfg.led_y_m - pose.y_m))
        return (proto.DVS_HEIGHT - 1) / 2 - self._focal_px() * (cfg.led_height_m - cfg.camera_height_m) / distance

    def wheel_speeds(self) -> tuple[float, float]:
        """(left, right) wheel speeds in m/s from the motor commands."""
        if not self.motors_enabled or self.bricked:
            return 0.0, 0.0
        v = self.config.max_speed_m_s / 100.0
        return self.motor_command[0] * v, self.motor_command[1] * v

    def advance(self, dt_s: float) -> None:
        """Move the world on by ``dt_s``: kinematics, DVS events and due sensor lines."""
        if dt_s <= 0:
            return
        with self._lock:
            t0 = self._t_s
            self._move(dt_s)
            self._t_s = t0 + dt_s
            if self.streaming and not self.bricked:
                self._emit_events(t0, self._t_s)
            for bit, (period, due) in list(self.sensors.items()):
                if due <= self._t_s:
                    self._emit_sensor(bit)
                    self.sensors[bit] = (period, max(due + period, self._t_s))
            self.trajectory.append((self._t_s, self.pose.x_m, self.pose.y_m, self.pose.heading_rad))
            if len(self.trajectory) > 100_000:
                del self.trajectory[: len(self.trajectory) // 2]

    def _move(self, dt_s: float) -> None:
        cfg = self.config
        if cfg.mvd_decay:
            # Ticks of the firmware's free-running 10 Hz clock inside (t, t + dt]: split the
            # step there so the speed changes exactly at the ticks.
            t, end = self._t_s, self._t_s + dt_s
            tick = (math.floor(t / cfg.decay_tick_s) + 1) * cfg.decay_tick_s
            while tick <= end:
                self._integrate(tick - t)
                self._decay_tick()
                t = tick
                tick += cfg.decay_tick_s
            self._integrate(end - t)
        else:
            self._integrate(dt_s)

    def _decay_tick(self) -> None:
        for motor in (0, 1):
            if not self._motor_decays[motor]:
                continue
            if self._decay_hold[motor] > 0:
                self._decay_hold[motor] -= 1
            elif self.motor_command[motor] > 0:
                self.motor_command[motor] -= 1
            elif self.motor_command[motor] < 0:
                self.motor_command[motor] += 1

    def _integrate(self, dt_s: float) -> None:
        if dt_s <= 0:
            return
        cfg = self.config
        v_left, v_right = self.wheel_speeds()
        v = 0.5 * (v_left + v_right)
        omega = (v_right - v_left) / cfg.wheel_base_m
        steps = max(1, math.ceil(dt_s / 0.001))  # 1 ms Euler steps keep arcs accurate
        h = dt_s / steps
        x, y, theta = self.pose.x_m, self.pose.y_m, self.pose.heading_rad
        for _ in range(steps):
            x += v * math.cos(theta) * h
            y += v * math.sin(theta) * h
            theta += omega * h
        self.pose = Pose(x, y, math.atan2(math.sin(theta), math.cos(theta)))
        self._wheel_m[0] += v_left * dt_s
        self._wheel_m[1] += v_right * dt_s

    def drive(self, left: float, right: float) -> None:
        """Set both wheels as ``!M+`` then ``!MV0=left`` / ``!MV1=right`` would (no decay): for
        stepping the world by hand (:meth:`step_offline`) without a link."""
        with self._lock:
            self.motors_enabled = True
            self.motor_command = [float(np.clip(left, -100, 100)), float(np.clip(right, -100, 100))]
            self._motor_decays = [False, False]

    def step_offline(self, dt_s: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Move the world on by ``dt_s`` and return the DVS events of that interval as arrays
        ``(x, y, polarity, t_s)``, without a link or a byte stream (data sets, e.g. the robot
        network's training data, are made this way, faster than real time)."""
        with self._lock:
            t0 = self._t_s
            self._move(dt_s)
            self._t_s = t0 + dt_s
            self.trajectory.append((self._t_s, self.pose.x_m, self.pose.y_m, self.pose.heading_rad))
            if len(self.trajectory) > 100_000:
                del self.trajectory[: len(self.trajectory) // 2]
            rendered = self._render_events(t0, self._t_s)
        if rendered is None:
            empty = np.zeros(0, np.int64)
            return empty, empty, np.zeros(0, bool), np.zeros(0)
        return rendered

    def _emit_events(self, t0: float, t1: float) -> None:
        rendered = self._render_events(t0, t1)
        if rendered is None:
            return
        x, y, polarity, t = rendered
        t_us = np.rint((t - self._ts_origin_s) * 1e6).astype(np.int64)
        self._events_last_second.append((t1, len(t)))
        if len(self._out) > self.config.max_backlog_bytes:
            self.dropped_events += len(t)
            return
        self._out += proto.encode_dvs_events(x, y, polarity, t_us, self.event_format)

    def _render_events(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
        """The LED's edge events and the noise events in ``[t0, t1)``, sorted by time (None: none)."""
        cfg, rng = self.config, self._rng
        xs, ys, pols, ts = [], [], [], []
        column = self.led_column()
        half_period = 0.5 / cfg.led_frequency_hz
        first = max(self._next_edge_index, math.ceil(t0 / half_period))
        last = math.ceil(t1 / half_period)  # edges k*half_period in [t0, t1)
        self._next_edge_index = last
        if column is not None and last > first:
            edges = np.arange(first, last)
            n = cfg.events_per_edge
            edge_t = np.repeat(edges * half_period, n)
            xs.append(np.clip(np.rint(column + rng.integers(-1, 2, edge_t.size)), 0, proto.DVS_WIDTH - 1))
            row = self._led_row()
            ys.append(np.clip(np.rint(row + rng.integers(-1, 2, edge_t.size)), 0, proto.DVS_HEIGHT - 1))
            pols.append(np.repeat(edges % 2 == 0, n))  # even edges: the LED switches on
            ts.append(edge_t + rng.exponential(cfg.edge_jitter_us * 1e-6, edge_t.size))
        n_noise = rng.poisson(cfg.noise_rate_hz * (t1 - t0))
        if n_noise:
            xs.append(rng.integers(0, proto.DVS_WIDTH, n_noise))
            ys.append(rng.integers(0, proto.DVS_HEIGHT, n_noise))
            pols.append(rng.random(n_noise) < 0.5)
            ts.append(rng.uniform(t0, t1, n_noise))
        if not xs:
            return None
        t = np.concatenate(ts)
        order = np.argsort(t, kind="stable")
        return (np.concatenate(xs)[order].astype(np.int64), np.concatenate(ys)[order].astype(np.int64),
                np.concatenate(pols)[order].astype(bool), t[order])

    def _light_level(self, sensor_offset_rad: float) -> int:
        """A 10-bit ADC reading of a light sensor aimed ``sensor_offset_rad`` off the heading."""
        cfg, pose = self.config, self.pose
        distance = math.hypot(cfg.led_x_m - pose.x_m, cfg.led_y_m - pose.y_m)
        alignment = max(0.0, math.cos(self.led_bearing() - sensor_offset_rad))
        return int(min(1023, 1023 * alignment / (1.0 + distance**2)))

    def _emit_sensor(self, bit: int) -> None:
        if bit == proto.SENSOR_BATTERY:
            self._reply(f"-S0 {self.config.battery_mv}")
        elif bit == proto.SENSOR_ADC0:
            self._reply(f"-S1 {self._light_level(math.radians(30))}")  # left-looking sensor
        elif bit == proto.SENSOR_ADC0 + 1:
            self._reply(f"-S2 {self._light_level(math.radians(-30))}")
        elif bit == proto.SENSOR_EVENT_RATE:
            horizon = self._t_s - 1.0
            self._events_last_second = [(t, n) for t, n in self._events_last_second if t > horizon]
            self._reply(f"-S21 {sum(n for _, n in self._events_last_second)}")
        elif bit == proto.SENSOR_WHEEL_TICKS:
            left, right = (round(m * self.config.ticks_per_m) for m in self._wheel_m)
            self._reply(f"-S28 {left} {right}")


def _bits(mask: int) -> list[int]:
    if not 0 <= mask < 2**32:
        raise ValueError(f"sensor mask {mask} is not a 32-bit mask")
    return [bit for bit in range(32) if mask >> bit & 1]


def main(argv: list[str] | None = None) -> int:
    """``python -m robot_sim [--tcp PORT | --pty]``: serve a simulated PushBot."""
    import argparse

    parser = argparse.ArgumentParser(description="Serve a simulated PushBot (eDVS4337 protocol).")
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--tcp", type=int, metavar="PORT", help="serve TCP on 127.0.0.1:PORT (56000 like the WLAN module)"
    )
    group.add_argument("--pty", action="store_true", help="serve on a pseudo-terminal (default)")
    args = parser.parse_args(argv)
    sim = SimulatedPushBot()
    address = sim.serve_tcp(args.tcp) if args.tcp is not None else sim.serve_pty()
    print(f"simulated PushBot on {address}  (Ctrl-C to stop)", flush=True)
    try:
        while True:
            time.sleep(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        sim.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
