"""The simulated PushBot's physics, camera and firmware states, stepped by hand (no link)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from drivers.robot.pushbot_protocol import EventFormat, PushBotStreamParser
from robot_sim.pushbot import BANNER_LINES, PushBotSimConfig, SimulatedPushBot


def _robot(**overrides) -> SimulatedPushBot:
    robot = SimulatedPushBot(PushBotSimConfig(seed=0, **overrides))
    robot.handle_bytes(b"R\n!U0\n!M+\n")
    robot._out.clear()
    return robot


def test_equal_wheels_drive_straight_at_the_commanded_speed() -> None:
    robot = _robot(max_speed_m_s=0.2)
    robot.handle_bytes(b"!MV0=50\n!MV1=50\n")  # !MV does not decay
    robot.advance(2.0)
    assert robot.pose.x_m == pytest.approx(0.2, rel=1e-6)
    assert robot.pose.y_m == pytest.approx(0.0, abs=1e-9)
    assert robot.pose.heading_rad == pytest.approx(0.0, abs=1e-12)


def test_a_faster_left_wheel_turns_right_at_the_differential_rate() -> None:
    robot = _robot(max_speed_m_s=0.2, wheel_base_m=0.1)
    robot.handle_bytes(b"!MVD0=50\n!MVD1=-50\n")
    robot.advance(0.5)
    assert robot.pose.heading_rad == pytest.approx(-0.5 * 0.2 / 0.1, rel=1e-6)  # ω = (vr - vl)/b
    assert math.hypot(robot.pose.x_m, robot.pose.y_m) == pytest.approx(0.0, abs=1e-9)


def test_nothing_moves_before_the_motor_driver_is_enabled() -> None:
    robot = SimulatedPushBot(PushBotSimConfig(seed=0))
    robot.handle_bytes(b"R\n!MVD0=80\n!MVD1=80\n")
    robot.advance(1.0)
    assert robot.pose.x_m == 0.0


@pytest.mark.parametrize(("led_y", "side"), [(0.0, "centre"), (0.5, "left"), (-0.5, "right")])
def test_the_led_appears_at_its_bearing_column(led_y: float, side: str) -> None:
    robot = _robot(led_x_m=2.0, led_y_m=led_y, noise_rate_hz=0.0)
    robot.handle_bytes(b"!E2\nE+\n")
    robot._out.clear()
    robot.advance(0.1)
    events = PushBotStreamParser(EventFormat.TS16).feed(bytes(robot._out)).events
    assert len(events) == 20 * 2 * robot.config.events_per_edge  # 200 Hz: 40 edges in 100 ms
    expected = 63.5 - (64 / math.tan(math.radians(27.5))) * led_y / 2.0
    assert np.abs(events.x.astype(float) - expected).max() <= 1.5
    mean_column = events.x.mean()
    assert {"left": mean_column < 50, "centre": abs(mean_column - 63.5) < 1.5, "right": mean_column > 77}[side]
    assert events.polarity.sum() == len(events) // 2  # as many rising (ON) as falling (OFF) edges


def test_an_led_outside_the_field_of_view_gives_only_noise() -> None:
    robot = _robot(led_x_m=-1.0, led_y_m=0.0, noise_rate_hz=5000.0)
    robot.handle_bytes(b"!E2\nE+\n")
    robot._out.clear()
    robot.advance(0.2)
    assert robot.led_column() is None
    events = PushBotStreamParser(EventFormat.TS16).feed(bytes(robot._out)).events
    assert 800 < len(events) < 1200  # Poisson(1000)
    assert np.bincount(events.x, minlength=128).max() < 30  # spread over the array


def test_p_bricks_the_robot_until_reset_and_unknown_commands_get_a_reply() -> None:
    robot = _robot()
    robot.handle_bytes(b"!MVD0=60\n!MVD1=60\nE+\n")
    robot.handle_bytes(b"P\n")
    assert robot.bricked and not robot.streaming and robot.wheel_speeds() == (0.0, 0.0)
    robot._out.clear()
    robot.handle_bytes(b"!M+\n!MVD0=60\n??\n")
    robot.advance(0.1)
    assert robot.wheel_speeds() == (0.0, 0.0) and bytes(robot._out) == b""
    robot.handle_bytes(b"R\n")
    assert not robot.bricked
    assert bytes(robot._out).decode().splitlines() == list(BANNER_LINES)
    robot._out.clear()
    robot.handle_bytes(b"!U0\n!XYZ\n")
    assert bytes(robot._out) == b"!U0\nunknown command: !XYZ\n"  # echoed while echo was still on


def test_echo_mode_one_echoes_commands() -> None:
    robot = SimulatedPushBot(PushBotSimConfig(echo_mode=1))
    robot.handle_bytes(b"R\n")
    robot._out.clear()
    robot.handle_bytes(b"!M+\n")
    assert bytes(robot._out) == b"!M+\n"


def test_an_unrefreshed_mvd_holds_for_a_second_then_decays_by_one_per_tick_like_the_firmware() -> None:
    robot = _robot()
    robot.handle_bytes(b"!MVD0=30\n!MVD1=-20\n")
    robot.advance(0.85)  # inside the 10-tick hold (0.9..1.0 s: the 10 Hz clock runs free)
    assert robot.motor_command == [30.0, -20.0]
    robot.advance(0.5)  # hold over: a few ticks of decay toward 0 from both sides
    left, right = robot.motor_command
    assert 24 <= left < 30 and -20 < right <= -14
    robot.advance(3.5)  # 1 s + |v|/10 s after the command both wheels have stopped
    assert robot.motor_command == [0.0, 0.0] and robot.wheel_speeds() == (0.0, 0.0)


def test_a_refreshed_mvd_never_decays_and_mv_runs_until_reset() -> None:
    robot = _robot()
    robot.handle_bytes(b"!MV0=40\n!MVD1=40\n")
    for _ in range(30):  # !MVD1 resent every 0.5 s restarts its hold; !MV0 holds on its own
        robot.advance(0.5)
        robot.handle_bytes(b"!MVD1=40\n")
    assert robot.motor_command == [40.0, 40.0]
    robot.handle_bytes(b"R\n")
    assert robot.wheel_speeds() == (0.0, 0.0)


def test_the_simulator_has_no_watchdog_a_lost_host_leaves_mv_driving() -> None:
    """The firmware has no timeout: nothing but the !MVD decay stops the wheels."""
    robot = _robot()
    robot.handle_bytes(b"!MV0=50\n!MV1=50\n")
    robot.advance(30.0)
    assert robot.wheel_speeds()[0] > 0
