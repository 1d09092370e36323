"""RobotSession without Qt: bad targets, the DVS frame, refusals that name the problem."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest

from drivers.robot import DvsEvents
from neurolab_gui.core.robot_session import SIMULATED_ROBOT, DvsFrame, RobotSession
from robot_sim import PushBotSimConfig, SimulatedPushBot


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("", "no robot port given"),
        ("/dev/ttyNOPE", "could not open robot /dev/ttyNOPE"),
        ("socket://127.0.0.1:1", "could not open robot socket://127.0.0.1:1"),
    ],
)
def test_a_robot_that_cannot_be_opened_is_an_error_status_not_an_exception(target: str, message: str) -> None:
    robot = RobotSession()
    assert robot.connect(target) is False
    assert robot.status.state == "error" and message in robot.status.message
    assert not robot.connected and robot.simulator is None
    with pytest.raises(RuntimeError, match="no robot connected"):
        robot.set_motors(10, 10)
    robot.emergency_stop()  # safe in any state


def test_something_that_is_not_a_pushbot_is_refused_by_its_missing_banner() -> None:
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def chatter() -> None:  # a device that answers, but not like an eDVS4337
        conn, _ = server.accept()
        conn.sendall(b"hello, I am a modem\n")
        time.sleep(3.0)
        conn.close()

    threading.Thread(target=chatter, daemon=True).start()
    robot = RobotSession()
    try:
        assert robot.connect(f"socket://127.0.0.1:{server.getsockname()[1]}") is False
        assert "eDVS4337" in robot.status.message and "banner" in robot.status.message
    finally:
        server.close()


def test_the_dvs_frame_separates_polarities_fades_with_its_time_constant_and_counts_the_rate() -> None:
    frame = DvsFrame(tau_s=0.05, rate_window_s=0.5)
    events = DvsEvents(x=[10, 10, 20], y=[5, 5, 7], polarity=[True, True, False], t_us=[0, 1, 2])
    frame.add(events)
    on, off, rate = frame.snapshot()
    assert on[5, 10] == pytest.approx(2.0, rel=0.05) and off[7, 20] == pytest.approx(1.0, rel=0.05)
    assert on[7, 20] == 0 and off[5, 10] == 0  # [row y, column x], each polarity in its own image
    assert rate == pytest.approx(3 / 0.5)
    time.sleep(0.1)
    on_later, _, _ = frame.snapshot()
    assert on_later[5, 10] / on[5, 10] == pytest.approx(math.exp(-0.1 / 0.05), rel=0.3)
    with pytest.raises(ValueError, match="decay time"):
        DvsFrame(tau_s=0)


def test_manual_drive_is_refused_while_the_loop_drives_and_the_loop_needs_a_board() -> None:
    robot = RobotSession()  # no application session: no board
    try:
        assert robot.connect(SIMULATED_ROBOT), robot.status.message
        assert robot.arena() is not None
        with pytest.raises(RuntimeError, match="no board connected"):
            robot.start_loop()
        with pytest.raises(ValueError, match="unknown network 'mystery'"):
            robot.start_loop("mystery")
        robot.set_motors(30, -30)
        assert robot.simulator.wait_until(lambda s: s.motor_command == [30.0, -30.0], 1.0)
        for bad in (math.nan, math.inf):
            with pytest.raises(ValueError, match="finite"):
                robot.set_motors(bad, 0)
            with pytest.raises(ValueError, match="LED frequency"):
                robot.set_led(bad)
        with pytest.raises(ValueError, match="LED frequency"):
            robot.set_led(-5)
        robot.set_motors(1e9, -1e9)  # clamped to the protocol's range, as the driver documents
        assert robot.simulator.wait_until(lambda s: s.motor_command == [100.0, -100.0], 1.0)
    finally:
        robot.close()
    assert robot.status.state == "disconnected"


def test_a_real_robot_url_has_no_arena_and_the_sensors_stream() -> None:
    with SimulatedPushBot(PushBotSimConfig(seed=0)) as sim:
        url = sim.serve_tcp()
        robot = RobotSession()
        try:
            assert robot.connect(url), robot.status.message
            assert robot.simulator is None and robot.arena() is None  # a URL is a robot we cannot see from above
            deadline = time.monotonic() + 2.0
            while len(robot.sensors) < 4 and time.monotonic() < deadline:
                time.sleep(0.02)
            assert {0, 1, 2, 28} <= set(robot.sensors)
            assert robot.sensors[0].values == (4100,)
            on, off, rate = robot.frame.snapshot()
            assert rate > 0 and np.isfinite(on).all()
        finally:
            robot.close()


def test_starting_the_loop_stops_a_manual_setting_before_the_network_is_set_up() -> None:
    from neurolab_gui.core.boards import open_emulator
    from neurolab_gui.core.robot_demo import PhototaxisConfig
    from neurolab_gui.core.session import Session

    session = Session(opener=lambda target: open_emulator(seed=target.seed, dt=5e-4))
    try:
        assert session.connect("emulator", seed=2, acquire=False)
        robot = session.robot
        assert robot.connect("simulated"), robot.status
        sim = robot.simulator
        robot.set_motors(40, 40)
        assert sim.wait_until(lambda s: s.wheel_speeds() == (0.1, 0.1), 1.0)
        stops: list[str] = []
        robot.safety_stop.connect(stops.append)
        robot.start_loop(config=PhototaxisConfig(duration_s=0.5, observe_s=0.5))  # motors 0 for the whole run
        assert stops == ["closed loop starting"]
        assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), 0.2)  # at once, not after the set-up
        robot.stop_loop()
    finally:
        session.close()
