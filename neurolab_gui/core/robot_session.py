"""The robot in the desktop app: connect a PushBot, watch it, drive it, close the loop through the board.

:class:`RobotSession` is everything the Robot panel shows and does, without Qt:

* **connect** a PushBot on a listed serial port, a ``socket://host:port`` URL, or the
  simulated robot (:data:`SIMULATED_ROBOT`, served on a pty by :mod:`robot_sim`);
* **watch** its DVS as a decaying two-colour event image with the event rate
  (:class:`DvsFrame`, pulled by the view at its own frame rate) and its sensor readings;
* **drive** it by hand (:meth:`RobotSession.set_motors`, :meth:`RobotSession.set_led`);
* **close the loop** through the session's board (:meth:`RobotSession.start_loop`): the
  hand-wired phototaxis network of :mod:`.robot_demo`, the shipped converted steering RNN
  (converted and deployed first) or the network the Model panel deployed
  (:mod:`.robot_network`) runs on a worker thread with the board's acquisition paused (its
  spikes still reach the raster and the recorder), and every step is announced;
* **stop** on every path the host can act on: the e-stop, a loop that stalls for more than
  200 ms, a lost board or robot, a closed window, SIGTERM / SIGHUP / interpreter exit
  (:mod:`.robot_safety`), and through the driver's watchdog process SIGKILL and a frozen host.

While the session records, the robot's streams (DVS events, motor commands, sensor readings,
loop steps, safety stops) go into the session file beside the board's spikes
(:mod:`.robot_recording`).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from drivers.robot import (
    DvsEvents,
    PushBot,
    PushBotConfig,
    PushBotDisconnectedError,
    PushBotError,
    PushBotState,
    SensorReading,
)
from drivers.robot.pushbot_protocol import DVS_HEIGHT, DVS_WIDTH, mvd_coast_s

from .cancellation import Cancelled
from .events import Signal
from .jobs import SlotHold
from .robot_demo import LoopController, PhototaxisConfig, PhototaxisReport, PhototaxisSession, PhototaxisStep
from .robot_network import BUILTIN_STEERING, DEPLOYED_NETWORK, WIRED_NETWORK, RobotNetwork, network_of_deployment
from .robot_recording import RobotStreams
from .robot_safety import STALL_TIMEOUT_S, MotorGuard, install_exit_handlers, stop_motors_on_exit

log = logging.getLogger(__name__)

#: The connect target that starts the simulated PushBot.
SIMULATED_ROBOT = "simulated"
#: Networks that can drive the motors in the closed loop, with the names the panel shows.
PHOTOTAXIS = WIRED_NETWORK
NETWORKS = {
    WIRED_NETWORK: "phototaxis (hand-wired)",
    BUILTIN_STEERING: "steering RNN (converted)",
    DEPLOYED_NETWORK: "deployed network (Model panel)",
}
#: Battery, the two light sensors (ADC0/1) and the wheel ticks, every 100 ms.
DEFAULT_SENSOR_MASK = (1 << 0) | (1 << 1) | (1 << 2) | (1 << 28)


@dataclass(frozen=True)
class RobotPort:
    """A serial port the connect box offers."""

    device: str
    description: str


def list_robot_ports() -> list[RobotPort]:
    """Serial ports of this machine (USB-serial adapters; a PushBot over WLAN is a ``socket://`` URL)."""
    from serial.tools import list_ports

    return [RobotPort(p.device, p.description or "") for p in sorted(list_ports.comports(), key=lambda p: p.device)]


@dataclass(frozen=True)
class ArenaView:
    """What a top view of the simulated robot's arena draws."""

    led_xy: tuple[float, float]
    pose: tuple[float, float, float]  # x, y (m), heading (rad)
    path: np.ndarray  # (n, 2) x, y of the recent path


@dataclass(frozen=True)
class RobotStatus:
    state: str = "disconnected"  # disconnected | connecting | connected | lost | error
    url: str = ""
    simulated: bool = False
    message: str = ""
    #: state "lost": when the link went (``time.time()``) and how long the robot may go on moving after it
    #: (the firmware's ``!MVD`` decay from the last command, :func:`~drivers.robot.pushbot_protocol.mvd_coast_s`;
    #: nothing on the host can stop it once the link is gone); 0 for the other states
    lost_at: float = 0.0
    coast_s: float = 0.0


class DvsFrame:
    """The DVS as an image: ON and OFF events accumulate per pixel and fade with ``tau_s``.

    Fed from the robot's reader thread (:meth:`add`); a view pulls :meth:`snapshot` at its
    own frame rate, so the cost per event is one ``bincount`` and nothing waits on the GUI.
    """

    def __init__(self, tau_s: float = 0.05, rate_window_s: float = 0.5) -> None:
        if not tau_s > 0:
            raise ValueError(f"decay time must be > 0 s, got {tau_s}")
        self.tau_s = tau_s
        self.rate_window_s = rate_window_s
        self._lock = threading.Lock()
        self._image = np.zeros((2, DVS_HEIGHT, DVS_WIDTH), np.float32)  # [OFF, ON][y, x]
        self._t = time.monotonic()
        self._counts: deque[tuple[float, int]] = deque()
        self.total_events = 0

    def add(self, events: DvsEvents) -> None:
        n = len(events)
        if not n:
            return
        index = (events.polarity.astype(np.int64) * DVS_HEIGHT + events.y) * DVS_WIDTH + events.x
        hits = np.bincount(index, minlength=2 * DVS_HEIGHT * DVS_WIDTH).reshape(self._image.shape)
        now = time.monotonic()
        with self._lock:
            self._decay_to(now)
            self._image += hits
            self._counts.append((now, n))
            self.total_events += n

    def _decay_to(self, now: float) -> None:
        dt = now - self._t
        if dt > 0:
            self._image *= math.exp(-dt / self.tau_s)
            self._t = now

    def snapshot(self) -> tuple[np.ndarray, np.ndarray, float]:
        """(ON image, OFF image, event rate in ev/s over the last ``rate_window_s``)."""
        now = time.monotonic()
        with self._lock:
            self._decay_to(now)
            while self._counts and self._counts[0][0] < now - self.rate_window_s:
                self._counts.popleft()
            rate = sum(n for _, n in self._counts) / self.rate_window_s
            return self._image[1].copy(), self._image[0].copy(), rate

    def clear(self) -> None:
        with self._lock:
            self._image[:] = 0
            self._counts.clear()


class RobotSession:
    """One robot, its live views, its manual control and its closed loop.

    Parameters
    ----------
    session : the application session (its board drives the loop; its recorder records)
    robot_config : link settings (baud rate, sensor streaming, watchdog)
    stall_timeout_s : longest gap between loop commands before the motors are stopped
    """

    def __init__(
        self,
        session: Any = None,
        robot_config: PushBotConfig | None = None,
        stall_timeout_s: float = STALL_TIMEOUT_S,
    ) -> None:
        self.session = session
        self.robot_config = robot_config or PushBotConfig(sensor_mask=DEFAULT_SENSOR_MASK, sensor_period_ms=100)
        self.stall_timeout_s = stall_timeout_s
        self.robot: PushBot | None = None
        self.simulator: Any = None  # robot_sim.SimulatedPushBot while the simulated robot is connected
        self.guard: MotorGuard | None = None
        self.frame = DvsFrame()
        self.sensors: dict[int, SensorReading] = {}
        self.last_report: PhototaxisReport | None = None
        #: keyword arguments of :func:`.robot_network.deploy_robot_network` for the steering RNN
        #: (e.g. ``qat_epochs``, ``match_on_board``); the defaults convert it as ``neurolab robot demo`` does
        self.steering_options: dict[str, Any] = {}
        #: the steering RNN as last deployed (reused, written again, while the board is the same one)
        self.steering_network: RobotNetwork | None = None
        self._status = RobotStatus()
        self._loop: PhototaxisSession | None = None
        self._loop_thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self._unregister_exit: Callable[[], None] | None = None
        self._streams: RobotStreams | None = None
        #: ``status_changed(RobotStatus)``.
        self.status_changed = Signal("robot status")
        #: ``sensor(SensorReading)`` for every sensor line (reader thread).
        self.sensor = Signal("robot sensor")
        #: ``motors(left, right, origin)`` for every motor command ("loop", "manual", "stop").
        self.motors = Signal("robot motors")
        #: ``safety_stop(reason)`` when the motors were stopped by a guard or the e-stop.
        self.safety_stop = Signal("robot safety stop")
        #: ``loop_changed(running: bool, message: str)``.
        self.loop_changed = Signal("robot loop")
        #: ``loop_step(PhototaxisStep)`` after every closed-loop step (loop thread).
        self.loop_step = Signal("robot loop step")
        install_exit_handlers()  # now, from the thread that builds the session (the main one)

    # --- state ------------------------------------------------------------------------------
    @property
    def status(self) -> RobotStatus:
        return self._status

    @property
    def connected(self) -> bool:
        return self.robot is not None and self.robot.connected

    def link_noise(self) -> str | None:
        """What the stream parser found that a clean link never sends, in words, or None.

        Garbage bytes in reply lines and 0xFF filler "events"
        (:class:`drivers.robot.pushbot_protocol.ParserCounters`) mean a wrong baud rate or a noisy
        cable: the DVS events then hold phantoms and their times run ahead.  Suspect timestamp
        wraps alone are no such sign (a quiet scene leaves long gaps across a wrap too, as the
        simulated robot's does); they are named beside the others.
        """
        robot = self.robot
        if robot is None:
            return None
        c = robot.parser_counters
        if not (c.garbage_bytes or c.suspect_events):
            return None
        parts = [f"{n:,} {what}" for n, what in ((c.garbage_bytes, "garbage bytes"),
                                                  (c.suspect_events, "0xFF filler events"),
                                                  (c.suspect_wraps, "suspect timestamp wraps")) if n]
        return f"noisy link: {', '.join(parts)} (check the baud rate and the cable)"

    @property
    def loop_running(self) -> bool:
        return self._loop_thread is not None and self._loop_thread.is_alive()

    @property
    def motors_may_run(self) -> bool:
        """True while a connected robot could move (the e-stop must be in reach)."""
        return self.connected

    def _set_status(self, **changes: Any) -> None:
        values = {**self._status.__dict__, "lost_at": 0.0, "coast_s": 0.0, **changes}  # only "lost" keeps them
        self._status = RobotStatus(**values)
        self.status_changed.emit(self._status)

    # --- connect ------------------------------------------------------------------------------
    def connect(self, target: str, baudrate: int | None = None) -> bool:
        """Open ``target``: a serial device, a ``socket://`` URL or :data:`SIMULATED_ROBOT`.

        Returns False (status ``error`` with the reason) when it cannot be opened.
        """
        self.disconnect("switching robots")
        target = target.strip()
        if not target:
            self._set_status(state="error", message="no robot port given")
            return False
        simulated = target == SIMULATED_ROBOT
        self._set_status(state="connecting", url=target, simulated=simulated, message=f"connecting to {target}")
        sim = None
        try:
            url = target
            if simulated:
                from robot_sim import PushBotSimConfig, SimulatedPushBot

                sim = SimulatedPushBot(PushBotSimConfig(led_x_m=2.0, led_y_m=0.8))
                url = sim.serve_pty() if os.name == "posix" else sim.serve_tcp()
            config = self.robot_config
            if baudrate is not None:
                config = PushBotConfig(**{**config.__dict__, "baudrate": int(baudrate)})
            robot = PushBot(url, config)
            robot.add_event_callback(self._on_dvs)
            robot.add_sensor_callback(self._on_sensor)
            robot.add_state_listener(self._on_robot_state)
            robot.open()
        except (PushBotError, OSError, ValueError) as exc:
            if sim is not None:
                sim.close()
            self._set_status(state="error", message=f"could not open robot {target}: {exc}")
            return False
        with self._lock:
            self.robot, self.simulator = robot, sim
            self.sensors = {}
            self.frame.clear()
            self.guard = MotorGuard(robot, self.stall_timeout_s, board_alive=self._board_alive)
            self.guard.commanded.connect(self._on_motor_command)
            self.guard.stopped.connect(self._on_guard_stop)
        self._unregister_exit = stop_motors_on_exit(self.emergency_stop)
        self._set_status(state="connected", url=url, message=f"connected to {'the simulated robot' if sim else url}")
        return True

    def connect_in_background(self, target: str, baudrate: int | None = None) -> threading.Thread:
        """:meth:`connect` on a worker thread (a robot's reset and banner take up to 2 s); the
        outcome arrives through :attr:`status_changed`."""
        thread = threading.Thread(target=self.connect, args=(target, baudrate), name="neurolab-robot-connect", daemon=True)
        thread.start()
        return thread

    def disconnect(self, reason: str = "closed by user") -> None:
        """Stop the loop and the motors, close the robot (motors 0, ``!M-``, streams off)."""
        self.stop_loop()
        with self._lock:
            robot, sim, guard = self.robot, self.simulator, self.guard
            self.robot = self.simulator = self.guard = None
        if robot is None:
            return
        if guard is not None:
            guard.close()
        robot.close()
        if sim is not None:
            sim.close()
        if self._unregister_exit is not None:
            self._unregister_exit()
            self._unregister_exit = None
        self._set_status(state="disconnected", message=reason)

    def close(self) -> None:
        """The window closes: everything stops."""
        self.disconnect("window closed")

    # --- manual control -----------------------------------------------------------------------
    def set_motors(self, left: float, right: float) -> None:
        """Drive by hand (-100..100 each, clamped); refused while the closed loop drives."""
        if not (math.isfinite(left) and math.isfinite(right)):
            raise ValueError(f"motor commands must be finite numbers, got {left!r} / {right!r}")
        guard = self._require_guard()
        if self.loop_running:
            raise RuntimeError("the closed loop drives the motors: stop it first")
        guard.hold(left, right)

    def set_led(self, frequency_hz: float) -> None:
        """Blink the robot's LEDs at ``frequency_hz`` (0: off)."""
        if not (math.isfinite(frequency_hz) and frequency_hz >= 0):
            raise ValueError(f"LED frequency must be a finite number >= 0 Hz (0: off), got {frequency_hz!r}")
        robot = self._require_robot()
        if frequency_hz > 0:
            robot.set_leds(frequency_hz)
        else:
            robot.lights_off()

    def emergency_stop(self, reason: str = "emergency stop") -> None:
        """Motors to 0 at once and the loop stopped; safe in any state."""
        loop = self._loop
        if loop is not None:
            loop.cancel()
        guard = self.guard
        if guard is not None:
            guard.stop(reason)
        else:
            self.safety_stop.emit(reason)

    def _require_robot(self) -> PushBot:
        robot = self.robot
        if robot is None or not robot.connected:
            raise RuntimeError("no robot connected")
        return robot

    def _require_guard(self) -> MotorGuard:
        self._require_robot()
        guard = self.guard
        if guard is None:
            raise RuntimeError("no robot connected")
        return guard

    # --- closed loop --------------------------------------------------------------------------
    def start_loop(self, network: str = PHOTOTAXIS, config: PhototaxisConfig | None = None) -> None:
        """Run ``network`` (a key of :data:`NETWORKS`) between the robot and the session's board on a worker thread.

        ``steering`` is converted and deployed on the board first, on the loop's thread (the
        motors stay at 0 meanwhile); ``deployed`` must be a network trained for the robot
        (``ValueError`` naming the mismatch otherwise).
        """
        if network not in NETWORKS:
            raise ValueError(f"unknown network {network!r}; choose one of {', '.join(NETWORKS)}")
        guard = self._require_guard()
        robot = self._require_robot()
        if self.loop_running:
            raise RuntimeError("the closed loop is already running")
        session = self.session
        board = getattr(session, "board", None) if session is not None else None
        if board is None:
            raise RuntimeError("no board connected: connect the emulator or a DYNAP-SE1 first")
        controller: LoopController | None = None
        if network == DEPLOYED_NETWORK:
            deployment = getattr(session, "deployment", None)
            if deployment is None or deployment.board is not board:
                raise ValueError("no network is deployed on this board: convert one trained on the task 'phototaxis' "
                                 "and deploy it from the Model panel, or pick the steering RNN")
            # written again: another loop may have used the board since
            controller = network_of_deployment(deployment).controller(write=True)
        steering = self.steering_network
        if network == BUILTIN_STEERING and steering is not None and steering.deployment.board is board:
            controller = steering.controller(write=True)  # converted before for this board: no second conversion
        config = config or PhototaxisConfig(duration_s=3600.0)
        # the loop drives the board for as long as it runs: no sweep, calibration or deployment under it
        # (BoardBusy, nothing started, when one is running); released when the loop's thread ends
        hold = session.board_jobs.hold("closed robot loop")
        try:
            sim = self.simulator

            def ground_truth() -> tuple[float | None, tuple[float, float, float]]:
                pose = sim.pose
                return sim.led_column(), (pose.x_m, pose.y_m, pose.heading_rad)

            loop = PhototaxisSession(
                board, robot, config, ground_truth if sim is not None else None, controller=controller,
                motor_sink=guard.drive, on_spikes=session.connection.feed, on_step=self._on_step,
            )  # fmt: skip
            self._loop = loop
            if guard.command != (0, 0):  # no manual setting keeps driving while the network is set up
                guard.stop("closed loop starting")
            guard.arm_loop()
            deploy = network == BUILTIN_STEERING and controller is None
            self._loop_thread = threading.Thread(target=self._run_loop, args=(loop, deploy, hold), name="neurolab-robot-loop",
                                                 daemon=True)
            self._loop_thread.start()
        except BaseException:
            hold.release()
            raise
        self.loop_changed.emit(True, f"{NETWORKS[network]}: converting and deploying on the board…" if deploy
                               else f"{NETWORKS[network]} driving the motors")

    def stop_loop(self, wait: bool = True) -> None:
        """Stop the closed loop: the motors go to 0 now, the loop ends after its current step
        (``wait``: return only when its thread has ended; ``loop_changed`` says so either way)."""
        loop, thread = self._loop, self._loop_thread
        if loop is not None:
            loop.cancel()
            guard = self.guard
            if guard is not None:
                guard.stop("loop stopped by the user")
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)

    def _run_loop(self, loop: PhototaxisSession, deploy_steering: bool, hold: SlotHold) -> None:
        message = ""
        try:
            with self.session.connection.acquisition_paused():
                if deploy_steering:
                    loop.controller = self._deploy_steering(loop)
                    self.loop_changed.emit(True, f"{loop.controller.name} driving the motors")
                report = loop.run()
            message = report.summary()
            if report.status == "robot disconnected":  # the loop saw the loss before a command failed on it
                message = self._link_lost(loop.robot.disconnect_reason or "no reason given", message)
        except Cancelled:
            message = "closed loop cancelled while the network was deployed"
        except PushBotDisconnectedError as exc:  # a command failed on the lost link
            message = self._link_lost(str(exc))
        except Exception as exc:
            log.exception("closed loop stopped by an error")
            message = f"closed loop stopped: {type(exc).__name__}: {exc}"
        finally:
            guard = self.guard
            if guard is not None:
                guard.stop("closed loop ended")
            self.last_report = loop.report
            self._loop = None
            hold.release()
            self._record("loop", {"event": "stopped", "message": message})
            self.loop_changed.emit(False, message)

    @staticmethod
    def _link_lost(reason: str, summary: str = "") -> str:
        """The closed loop's end when the robot's link went: an expected event (a cable, a radio link), so one
        WARNING naming the reason and no traceback; returns the message the panel shows."""
        log.warning("closed loop stopped: the robot's link was lost: %s", reason)
        return f"closed loop stopped: the robot's link was lost: {reason}" + (f" ({summary})" if summary else "")

    def _deploy_steering(self, loop: PhototaxisSession) -> LoopController:
        """The shipped steering RNN converted and written on the loop's board (its profile when it has one)."""
        from .calibration.profile import ProfileError, find_profile
        from .robot_network import builtin_steering_checkpoint, deploy_robot_network

        try:
            profile = find_profile(loop.board.serial)
        except ProfileError as exc:
            loop.report.note(f"calibration profile not used: {exc}")
            profile = None
        network = deploy_robot_network(loop.board, builtin_steering_checkpoint(), profile=profile, cancel=loop.cancel_event,
                                       **self.steering_options)
        for note in network.notes:
            loop.report.note(note)
        self.steering_network = network
        return network.controller()

    def arena(self, max_points: int = 5000) -> ArenaView | None:
        """The simulated robot's arena (None for a real robot)."""
        sim = self.simulator
        if sim is None:
            return None
        pose, cfg = sim.pose, sim.config
        points = np.asarray(sim.trajectory[-max_points:], dtype=float).reshape(-1, 4)
        return ArenaView((cfg.led_x_m, cfg.led_y_m), (pose.x_m, pose.y_m, pose.heading_rad), points[:, 1:3])

    def _board_alive(self) -> bool:
        board = getattr(self.session, "board", None) if self.session is not None else None
        return board is not None and bool(getattr(board, "connected", True))

    # --- callbacks (reader / loop / guard threads) --------------------------------------------
    def _on_dvs(self, events: DvsEvents) -> None:
        self.frame.add(events)
        self._record("dvs", events)

    def _on_sensor(self, reading: SensorReading) -> None:
        self.sensors[reading.sensor] = reading
        self._record("sensor", reading)
        self.sensor.emit(reading)

    def _on_robot_state(self, state: PushBotState, reason: str) -> None:
        if state is PushBotState.DISCONNECTED:  # a running loop sees it at its next step and ends
            robot = self.robot  # its last command (a stop after the loss never reached the robot)
            left, right = robot.motor_target if robot is not None else (0, 0)
            self._set_status(state="lost", message=f"robot lost: {reason}", lost_at=time.time(), coast_s=mvd_coast_s(left, right))
            self._record("safety", {"reason": f"robot lost: {reason}"})

    def _on_motor_command(self, left: int, right: int, origin: str) -> None:
        self._record("motor", (left, right, origin))
        self.motors.emit(left, right, origin)

    def _on_guard_stop(self, reason: str) -> None:
        self._record("safety", {"reason": reason})
        self.safety_stop.emit(reason)

    def _on_step(self, step: PhototaxisStep) -> None:
        self._record("step", step)
        self.loop_step.emit(step)

    def _record(self, stream: str, data: Any) -> None:
        """Hand one item to the session's recorder while it records (robot streams, markers)."""
        recorder = getattr(self.session, "recorder", None) if self.session is not None else None
        if recorder is None:
            return
        streams = self._streams
        if streams is None or streams.recorder is not recorder:
            with self._lock:
                streams = self._streams
                if streams is None or streams.recorder is not recorder:
                    streams = self._streams = RobotStreams(recorder)
        try:
            streams.write(stream, data)
        except Exception:  # a recorder that stopped meanwhile must not break the robot's threads
            log.debug("robot %s item not recorded", stream, exc_info=True)

