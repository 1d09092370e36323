"""Motors that stop when the host cannot drive them any more.

Two mechanisms, one per kind of failure the host process can still act on:

* :class:`MotorGuard` — a dead-man thread between the controllers and the robot.  Every
  motor command goes through :meth:`MotorGuard.drive` (a closed loop: the command must be
  renewed within ``stall_timeout_s``, else the guard sets the motors to 0 and reports a
  stall) or :meth:`MotorGuard.hold` (a manual setting: the guard renews it itself, because
  the firmware lets an unrefreshed ``!MVD`` decay after ~1 s).  It also stops the motors when
  the board the loop runs on is lost.
* :func:`stop_motors_on_exit` — SIGTERM, SIGHUP and interpreter exit (an uncaught exception
  included) call every registered stop function.  The signal is seen by a thread reading
  Python's wake-up fd, so the motors stop within milliseconds even while the main thread sits
  in Qt's C++ event loop and cannot run a Python signal handler; the main-thread handler then
  lets the signal do what it did before (the previous handler, or the default: terminate).

SIGKILL, a segfault and a frozen process are covered by the driver's watchdog process
(:mod:`drivers.robot.watchdog`); what nothing on the host covers is listed in the README.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable

from drivers.robot import PushBot

from .events import Signal

log = logging.getLogger(__name__)

#: The loop must renew its command within this time, or the motors go to 0 (issue 18: 200 ms).
STALL_TIMEOUT_S = 0.2
#: A manual setting is resent this often (the firmware's !MVD decays after a ~1 s hold).
HOLD_REFRESH_S = 0.3
#: How often the guard thread looks (a stall is acted on within this much of the timeout).
GUARD_PERIOD_S = 0.02


class MotorGuard:
    """Sends the motor commands of one robot and zeroes them when their source falls silent.

    Parameters
    ----------
    robot : an open PushBot
    stall_timeout_s : longest gap between two loop commands before the motors are stopped
    board_alive : ``() -> bool``; while a loop drives, False stops the motors ("board lost")
    """

    def __init__(
        self,
        robot: PushBot,
        stall_timeout_s: float = STALL_TIMEOUT_S,
        board_alive: Callable[[], bool] | None = None,
    ) -> None:
        self.robot = robot
        self.stall_timeout_s = stall_timeout_s
        self.board_alive = board_alive
        #: ``stopped(reason)`` whenever the guard (or :meth:`stop`) zeroed the motors.
        self.stopped = Signal("motors stopped")
        #: ``commanded(left, right, origin)`` for every command sent ("loop", "manual", "stop").
        self.commanded = Signal("motor command")
        self.stalls = 0
        self._lock = threading.Lock()
        self._mode = "idle"  # idle | loop | manual
        self._loop_armed = False
        self._command = (0, 0)
        self._last = 0.0
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="neurolab-motor-guard", daemon=True)
        self._thread.start()

    @property
    def command(self) -> tuple[int, int]:
        return self._command

    def arm_loop(self) -> None:
        """Accept closed-loop commands (:meth:`drive`) until the next :meth:`stop`."""
        with self._lock:
            self._loop_armed = True

    def drive(self, left: float, right: float) -> None:
        """A closed-loop command: valid for ``stall_timeout_s`` unless renewed.

        Ignored unless armed (:meth:`arm_loop`): after a stop (e-stop, user, board lost) a loop
        step that was already under way cannot start the wheels again.
        """
        with self._lock:
            if not self._loop_armed:
                return
        self._send(int(round(left)), int(round(right)), "loop")

    def hold(self, left: float, right: float) -> None:
        """A manual setting, kept (resent) until changed or stopped."""
        self._send(int(round(left)), int(round(right)), "manual")

    def stop(self, reason: str, *, disarm: bool = True) -> None:
        """Motors to 0 now (not rate limited); errors on a dead link are logged, never raised.

        ``disarm`` (default) also refuses further loop commands until :meth:`arm_loop`; a stall
        stop keeps the loop armed, so a loop that resumes drives again.
        """
        with self._lock:
            self._mode = "idle"
            if disarm:
                self._loop_armed = False
            self._command = (0, 0)
            self._last = time.monotonic()
        try:
            if self.robot.connected:
                self.robot.stop_motors()
        except Exception as exc:  # a link that died meanwhile: the robot is stopping by itself or gone
            log.warning("could not stop the motors (%s): %s", reason, exc)
        log.info("motors stopped: %s", reason)
        self.commanded.emit(0, 0, "stop")
        self.stopped.emit(reason)

    def close(self) -> None:
        """Stop the motors and the guard thread."""
        if not self._closed.is_set():
            self.stop("motor guard closed")
            self._closed.set()
            if self._thread is not threading.current_thread():
                self._thread.join(timeout=1.0)

    def _send(self, left: int, right: int, mode: str) -> None:
        with self._lock:
            if mode == "loop" and not self._loop_armed:
                return
            self._mode = mode if (left, right) != (0, 0) else "idle"
            self._command = (left, right)
            self._last = time.monotonic()
            self.robot.set_motors(left, right, immediate=mode == "manual")
        self.commanded.emit(left, right, mode)

    def _watch(self) -> None:
        while not self._closed.wait(GUARD_PERIOD_S):
            reason = ""
            stalled = False
            with self._lock:
                age = time.monotonic() - self._last
                mode = self._mode
                if mode == "loop" and age > self.stall_timeout_s:
                    self.stalls += 1
                    stalled = True
                    reason = f"loop stalled: no motor command for {age * 1e3:.0f} ms"
                elif mode == "loop" and self.board_alive is not None and not self.board_alive():
                    reason = "board lost"
                elif mode == "manual" and age > HOLD_REFRESH_S and self.robot.connected:
                    try:
                        self.robot.set_motors(*self._command, immediate=True)
                        self._last = time.monotonic()
                    except Exception as exc:
                        log.warning("manual motor refresh failed: %s", exc)
            if reason:
                self.stop(reason, disarm=not stalled)


# --- process exit ---------------------------------------------------------------------------

_EXIT_SIGNALS = tuple(s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None)) if s is not None)
_stops: dict[int, Callable[[str], None]] = {}
_stops_lock = threading.RLock()
_stops_done = threading.Event()  # set by the wake-up thread once it has stopped the motors
_wakeup_thread: threading.Thread | None = None
_installed = False
_exit_hook = False
_previous_handlers: dict[int, object] = {}


def install_exit_handlers() -> None:
    """Install the SIGTERM/SIGHUP handlers and the exit hook once (from the main thread: Python
    allows signal handlers only there; from another thread only the exit hook is armed)."""
    _install()


def stop_motors_on_exit(stop: Callable[[str], None]) -> Callable[[], None]:
    """Call ``stop(reason)`` on SIGTERM, SIGHUP and interpreter exit; returns an unregister function.

    Callable from any thread; the handlers are those of :func:`install_exit_handlers`.
    """
    key = id(stop)
    with _stops_lock:
        _stops[key] = stop
    _install()

    def unregister() -> None:
        with _stops_lock:
            _stops.pop(key, None)

    return unregister


def _run_stops(reason: str) -> None:
    with _stops_lock:
        stops = list(_stops.values())
    for stop in stops:
        try:
            stop(reason)
        except Exception:
            log.exception("stopping the motors on %s failed", reason)


def _install() -> None:
    global _installed, _exit_hook
    if not _exit_hook:
        _exit_hook = True
        atexit.register(_run_stops, "interpreter exit")
    if _installed:
        return
    if threading.current_thread() is not threading.main_thread():
        log.warning("motor stop on SIGTERM/SIGHUP not installed: not called from the main thread")
        return
    _installed = True
    for signum in _EXIT_SIGNALS:
        _previous_handlers[signum] = signal.signal(signum, _on_exit_signal)
    _start_wakeup_thread()


def _on_exit_signal(signum: int, frame: object) -> None:
    """Main thread: see that the motors are stopped, then do what was there before.

    A Python signal handler runs between two bytecodes of the main thread, which may hold the
    robot's or the guard's lock at that moment; so the stops never run *in* this handler.
    The wake-up thread does them (this waits for it, bounded); without one, a helper thread
    does, bounded too.  If a lock held here blocks them, the watchdog process still stops the
    motors when this process is gone.
    """
    if _wakeup_thread is not None and _wakeup_thread.is_alive():
        _stops_done.wait(0.5)
    else:
        helper = threading.Thread(target=_run_stops, args=(f"signal {signal.Signals(signum).name}",), daemon=True)
        helper.start()
        helper.join(0.5)
    previous = _previous_handlers.get(signum, signal.SIG_DFL)
    if callable(previous):
        previous(signum, frame)
    elif previous != signal.SIG_IGN:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)  # die of the signal, as without us (exit status 128 + n)


def _start_wakeup_thread() -> None:
    """Stop the motors from a thread the moment an exit signal arrives, whatever the main thread does."""
    reader, writer = socket.socketpair()
    writer.setblocking(False)
    try:
        previous = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
    except (ValueError, OSError) as exc:
        log.warning("no wake-up fd for exit signals (%s): the motors stop when the main thread runs", exc)
        reader.close()
        writer.close()
        return
    if previous != -1:  # someone (an asyncio loop) owns the wake-up fd: leave it to them
        signal.set_wakeup_fd(previous)
        reader.close()
        writer.close()
        log.info("wake-up fd in use: the motors stop on SIGTERM/SIGHUP when the main thread runs")
        return

    main = threading.main_thread().ident
    forwarded: dict[int, float] = {}

    def watch() -> None:
        while True:
            try:
                data = reader.recv(64)
            except OSError:
                return
            if not data:
                return
            for signum in set(data):
                if signum not in _EXIT_SIGNALS:
                    continue
                _run_stops(f"signal {signal.Signals(signum).name}")
                _stops_done.set()
                # The kernel may have handed the signal to a thread other than the main one;
                # a main thread blocked in a lock or in C then never runs the Python handler
                # that exits.  Hand it on to the main thread once (its delivery writes to
                # this fd again, hence the once).
                now = time.monotonic()
                if now - forwarded.get(signum, -10.0) > 1.0 and main is not None:
                    forwarded[signum] = now
                    signal.pthread_kill(main, signum)

    global _wakeup_thread
    _wakeup_thread = threading.Thread(target=watch, name="neurolab-exit-signals", daemon=True)
    _wakeup_thread.start()
    # keep both ends alive for the life of the process
    _start_wakeup_thread.sockets = (reader, writer)  # type: ignore[attr-defined]
