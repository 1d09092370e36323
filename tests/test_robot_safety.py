"""Motors stop on every exit path: a real host process is signalled or killed; a loop stalls.

The robot is the simulated PushBot served on TCP by this test process; the host is a separate
Python process that drives it through the driver, exactly as the app does.  What the robot's
wheels do is read from the simulator (its ground truth), never from the host.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from drivers.robot import PushBot, PushBotConfig
from neurolab_gui.core.boards import open_emulator
from neurolab_gui.core.robot_demo import PhototaxisConfig, PhototaxisSession
from neurolab_gui.core.robot_safety import MotorGuard
from robot_sim import PushBotSimConfig, SimulatedPushBot

pytestmark = pytest.mark.skipif(os.name != "posix", reason="signals and fd passing are POSIX")

REPO = Path(__file__).resolve().parents[1]

HOST = textwrap.dedent(
    """
    import sys, threading
    from drivers.robot import PushBotConfig
    from neurolab_gui.core.robot_session import RobotSession

    url, watchdog = sys.argv[1], sys.argv[2] == "watchdog"
    robot = RobotSession(None, PushBotConfig(watchdog_timeout_s=0.5 if watchdog else None))
    assert robot.connect(url), robot.status
    robot.set_motors(60, 60)
    print("driving", flush=True)
    if len(sys.argv) > 3:  # the program ends by an exception it does not catch
        threading.Event().wait(float(sys.argv[3]))
        raise RuntimeError("a bug in the host")
    threading.Event().wait()  # the main thread blocks, as in Qt's event loop
    """
)


GUI_HOST = textwrap.dedent(
    """
    import os, sys
    os.environ["QT_QPA_PLATFORM"] = "offscreen"
    from PyQt6.QtCore import QTimer
    from PyQt6.QtWidgets import QApplication
    from neurolab_gui.core.session import Session
    from neurolab_gui.qt.main_window import MainWindow

    app = QApplication([])
    session = Session()
    window = MainWindow(session, layout_path=sys.argv[2])
    window.show()

    def drive():
        assert session.robot.connect(sys.argv[1]), session.robot.status
        session.robot.set_motors(60, 60)
        print("driving", flush=True)

    QTimer.singleShot(0, drive)
    app.exec()  # the main thread sits in Qt's C++ event loop
    """
)


def _time_to_standstill(sim: SimulatedPushBot, timeout_s: float) -> float | None:
    """Seconds until both wheels stand still, or None if they still turn after ``timeout_s``."""
    t0 = time.monotonic()
    if sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), timeout_s):
        return time.monotonic() - t0
    return None


@pytest.fixture
def sim():
    robot = SimulatedPushBot(PushBotSimConfig(seed=1, noise_rate_hz=0.0))
    robot.serve_tcp()
    yield robot
    robot.close()


def _start_host(sim: SimulatedPushBot, watchdog: bool, *extra: str) -> subprocess.Popen:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, sim.address, "watchdog" if watchdog else "none", *extra],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = host.stdout.readline()
    if line.strip() != "driving":
        host.kill()
        pytest.fail(f"host did not start: {line!r} {host.stderr.read()[-2000:]}")
    assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 2.0), "the host's command never reached the robot"
    return host


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("watchdog", [False, True], ids=["host-handler-only", "with-watchdog"])
def test_sigterm_and_sighup_of_the_host_stop_the_motors_within_200_ms(sim, signum, watchdog) -> None:
    host = _start_host(sim, watchdog)
    os.kill(host.pid, signum)
    took = _time_to_standstill(sim, 2.0)
    host.wait(5.0)
    assert took is not None and took < 0.2, f"wheels still turning {took} s after {signum.name}"
    assert host.returncode == -signum  # it still dies of the signal, as without the handler
    assert "!MVD0=0" in sim.commands


def test_sigkill_of_the_host_is_covered_by_the_watchdog_process(sim) -> None:
    host = _start_host(sim, watchdog=True)
    os.kill(host.pid, signal.SIGKILL)
    took = _time_to_standstill(sim, 2.0)
    host.wait(5.0)
    assert took is not None and took < 0.2, f"wheels still turning {took} s after SIGKILL"
    assert not sim.motors_enabled  # the watchdog also sent !M-


def test_without_the_watchdog_sigkill_leaves_the_robot_driving_as_the_firmware_would(sim) -> None:
    """The firmware (and so the simulator) has no watchdog: only the !MVD decay slows it."""
    host = _start_host(sim, watchdog=False)
    os.kill(host.pid, signal.SIGKILL)
    host.wait(5.0)
    time.sleep(0.5)
    assert sim.wheel_speeds()[0] > 0


def test_a_frozen_host_sigstop_is_stopped_by_the_watchdog_and_drives_again_after_sigcont(sim) -> None:
    host = _start_host(sim, watchdog=True)
    try:
        os.kill(host.pid, signal.SIGSTOP)
        took = _time_to_standstill(sim, 2.0)
        assert took is not None and took < 0.5 + 0.35  # the heartbeat timeout, its polling, a loaded machine
        assert sim.motors_enabled  # a hold, not a shutdown: the host may come back
        os.kill(host.pid, signal.SIGCONT)
        # the host's manual setting is resent: it drives again
        assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 2.0)
    finally:
        os.kill(host.pid, signal.SIGCONT)
        host.terminate()
        host.wait(5.0)


class _StallingBoard:
    """An emulated board whose read_events hangs once, like a host thread stuck in I/O."""

    def __init__(self, board, stall_at_call: int, stall_s: float) -> None:
        self._board = board
        self.calls = 0
        self.stall_at = stall_at_call
        self._stall_s = stall_s

    def __getattr__(self, name):
        return getattr(self._board, name)

    def read_events(self, duration_s: float):
        self.calls += 1
        if self.calls == self.stall_at:
            time.sleep(self._stall_s)
        return self._board.read_events(duration_s)


def test_a_stalled_loop_stops_the_motors_within_200_ms_and_they_stay_stopped(sim) -> None:

    board = _StallingBoard(open_emulator(dt=5e-4), stall_at_call=30, stall_s=1.5)
    commands: list[tuple[float, int, int]] = []
    with PushBot(sim.address, PushBotConfig(watchdog_timeout_s=None)) as robot:
        guard = MotorGuard(robot, stall_timeout_s=0.2)
        guard.arm_loop()
        guard.commanded.connect(lambda left, right, origin: commands.append((time.monotonic(), left, right)))
        stops: list[str] = []
        guard.stopped.connect(stops.append)
        config = PhototaxisConfig(duration_s=30.0, observe_s=0.0, bias_rate_hz=60.0)
        loop = PhototaxisSession(board, robot, config, motor_sink=guard.drive)
        thread = threading.Thread(target=loop.run, daemon=True)
        thread.start()
        try:
            assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 10.0), "the loop never drove"
            deadline = time.monotonic() + 15.0
            while board.calls < board.stall_at and time.monotonic() < deadline:  # until it hangs
                time.sleep(0.005)
            assert board.calls == board.stall_at
            took = _time_to_standstill(sim, 1.0)
            assert took is not None, "a stalled loop kept the motors running"
            last_drive = max(t for t, left, right in commands if (left, right) != (0, 0))
            standstill = time.monotonic()
            assert standstill - last_drive < 0.2 + 0.1  # timeout + guard period + link latency
            assert any("stalled" in reason for reason in stops)
            time.sleep(0.3)
            assert sim.wheel_speeds() == (0.0, 0.0)  # still stopped while the loop hangs
        finally:
            loop.cancel()
            thread.join(5.0)
            guard.close()
            board.close()


def test_losing_the_board_mid_loop_stops_the_motors_within_200_ms() -> None:
    from neurolab_gui.core.session import Session

    session = Session(opener=lambda target: open_emulator(dt=5e-4, clock="fast"))
    try:
        assert session.connect("emulator", acquire=False)
        robot = session.robot
        assert robot.connect("simulated"), robot.status.message
        sim = robot.simulator
        stops: list[str] = []
        robot.safety_stop.connect(stops.append)
        robot.start_loop(config=PhototaxisConfig(duration_s=30.0, observe_s=0.0, bias_rate_hz=60.0))
        assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 10.0), "the loop never drove"
        session.connection.board.close()  # unplugged under the running loop
        took = _time_to_standstill(sim, 1.0)
        assert took is not None and took < 0.2
        robot.stop_loop()
        assert not robot.loop_running and robot.last_report is not None
        assert robot.last_report.status.startswith("error") or stops
    finally:
        session.close()


def test_after_a_stall_the_loop_drives_again_after_an_e_stop_it_cannot(sim) -> None:
    with PushBot(sim.address, PushBotConfig(watchdog_timeout_s=None)) as robot:
        guard = MotorGuard(robot, stall_timeout_s=0.2)
        try:
            guard.drive(40, 40)  # not armed: a loop that was never started cannot drive
            time.sleep(0.05)
            assert sim.wheel_speeds() == (0.0, 0.0)
            guard.arm_loop()
            guard.drive(40, 40)
            assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 1.0)
            assert _time_to_standstill(sim, 0.4) is not None  # stalled: stopped
            guard.drive(40, 40)  # the loop resumes
            assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 1.0)
            guard.stop("emergency stop")
            guard.drive(40, 40)  # a step that was under way when the e-stop came
            time.sleep(0.1)
            assert sim.wheel_speeds() == (0.0, 0.0)
        finally:
            guard.close()


def test_sigterm_of_the_desktop_app_stops_the_motors_while_qt_runs_its_event_loop(sim, tmp_path) -> None:
    host = subprocess.Popen(
        [sys.executable, "-c", GUI_HOST, sim.address, str(tmp_path / "layout.json")],
        cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = host.stdout.readline()
        assert line.strip() == "driving", host.stderr.read()[-2000:]
        assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 2.0)
        os.kill(host.pid, signal.SIGTERM)
        took = _time_to_standstill(sim, 2.0)
        assert took is not None and took < 0.2, f"wheels still turning {took} s after SIGTERM"
        host.wait(5.0)  # and the app still ends, as it did before
        assert host.returncode == -signal.SIGTERM
    finally:
        if host.poll() is None:
            host.kill()
            host.wait()


def test_a_lost_robot_link_is_reported_and_ends_the_loop(sim) -> None:
    from neurolab_gui.core.session import Session

    session = Session(opener=lambda target: open_emulator(dt=5e-4, clock="fast"))
    try:
        assert session.connect("emulator", acquire=False)
        robot = session.robot
        assert robot.connect(sim.address), robot.status.message
        robot.start_loop(config=PhototaxisConfig(duration_s=30.0, observe_s=0.0, bias_rate_hz=60.0))
        assert sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 10.0)
        sim.unplug()  # the WLAN link drops
        deadline = time.monotonic() + 5.0
        while robot.loop_running and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not robot.loop_running
        assert robot.status.state == "lost" and "robot lost" in robot.status.message
        assert robot.last_report.status == "robot disconnected"
    finally:
        session.close()


def test_a_host_that_ends_by_an_uncaught_exception_stops_the_motors_on_its_way_out(sim) -> None:
    host = _start_host(sim, False, "0.5")  # no watchdog: the exit hook alone
    host.wait(10.0)
    assert host.returncode == 1 and "a bug in the host" in host.stderr.read()
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), 0.2)
    assert "!MVD0=0" in sim.commands
