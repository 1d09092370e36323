"""PushBot device against the simulated PushBot over a pty and over TCP."""

from __future__ import annotations

import os
import threading
import time

import numpy as np
import pytest

from drivers.robot import PushBot, PushBotConfig, PushBotDisconnectedError, PushBotError, PushBotState
from drivers.robot import pushbot_protocol as proto
from drivers.robot.pushbot_protocol import DvsEvents
from robot_sim.pushbot import PushBotSimConfig, SimulatedPushBot

OPEN_BYTES = b"\nR\n!E2\nE+\n!M+\n!MVD0=0\n!MVD1=0\n"
CLOSE_BYTES = b"!MVD0=0\n!MVD1=0\n!M-\nE-\n!S-\n!PA=0\n!PA0=0\n!PB=0\n!PB0=0\n!PC=0\n!PC0=0\n!PC1=0\n"


@pytest.fixture
def sim():
    robot = SimulatedPushBot(PushBotSimConfig(seed=3, led_x_m=2.0, led_y_m=0.4))
    yield robot
    robot.close()


def _received(sim: SimulatedPushBot, expected: bytes, timeout_s: float = 2.0) -> bytes:
    sim.wait_until(lambda s: len(s.received_bytes) >= len(expected), timeout_s)
    return bytes(sim.received_bytes)


def test_open_and_close_sequences_are_byte_exact_over_a_pty(sim: SimulatedPushBot) -> None:
    bot = PushBot(sim.serve_pty())
    bot.open()
    assert bot.state is PushBotState.CONNECTED
    assert any(proto.BANNER_MARKER in line for line in bot.banner)
    assert _received(sim, OPEN_BYTES) == OPEN_BYTES
    assert sim.streaming and sim.motors_enabled and sim.event_format is proto.EventFormat.TS16
    bot.close()
    assert bot.state is PushBotState.CLOSED
    assert _received(sim, OPEN_BYTES + CLOSE_BYTES) == OPEN_BYTES + CLOSE_BYTES
    assert not sim.streaming and not sim.motors_enabled and sim.wheel_speeds() == (0.0, 0.0)
    bot.close()  # a second close is harmless


def test_optional_echo_and_sensor_steps_and_readings(sim: SimulatedPushBot) -> None:
    mask = proto.sensor_mask([proto.SENSOR_BATTERY, proto.SENSOR_WHEEL_TICKS])
    bot = PushBot(sim.serve_pty(), PushBotConfig(echo_mode=0, sensor_mask=mask, sensor_period_ms=20))
    readings = []
    bot.add_sensor_callback(readings.append)
    with bot:
        expected = b"\nR\n!U0\n!E2\nE+\n!M+\n!MVD0=0\n!MVD1=0\n!S+268435457,20\n"
        assert _received(sim, expected) == expected
        deadline = time.monotonic() + 2.0
        while len({r.sensor for r in readings}) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
    assert bot.last_sensor[0].values == (4100,)
    assert len(bot.last_sensor[28].values) == 2


def test_events_arrive_as_numpy_batches_at_the_led_column(sim: SimulatedPushBot) -> None:
    batches: list[DvsEvents] = []
    lock = threading.Lock()

    def collect(batch: DvsEvents) -> None:
        with lock:
            batches.append(batch)

    bot = PushBot(sim.serve_tcp())
    bot.add_event_callback(collect)
    with bot:
        time.sleep(0.4)
    events = DvsEvents.concatenate(batches)
    assert len(events) > 500
    assert events.x.dtype == np.uint8 and events.t_us.dtype == np.int64
    assert np.all(np.diff(events.t_us) >= 0)  # wrap extension keeps time monotonic
    led = events.x[(events.y >= 62) & (events.y <= 65)]
    # The robot did not move: the busiest column is the simulator's ground truth ± 1 px.
    assert abs(np.bincount(led, minlength=128).argmax() - sim.led_column()) <= 1.5
    assert bot.parser_counters.garbage_bytes == 0


def test_motor_commands_are_rate_limited_and_the_latest_wins(sim: SimulatedPushBot) -> None:
    bot = PushBot(sim.serve_pty(), PushBotConfig(motor_min_interval_s=0.05))
    with bot:
        n_before = len(sim.commands)
        for value in range(1, 41):
            bot.set_motors(value, -value)
        assert sim.wait_until(lambda s: s.motor_command == [40.0, -40.0], 2.0)
        motor_lines = [c for c in sim.commands[n_before:] if c.startswith("!MVD")]
        assert 2 <= len(motor_lines) <= 6  # 40 requests in a few ms → the first pair and the last
        assert motor_lines[-2:] == ["!MVD0=40", "!MVD1=-40"]
        assert bot.counters.motor_commands_coalesced >= 30
        bot.stop_motors()
        assert sim.wait_until(lambda s: s.motor_command == [0.0, 0.0], 2.0)


def test_the_driver_never_sends_p_and_the_simulator_bricks_on_it(sim: SimulatedPushBot) -> None:
    bot = PushBot(sim.serve_pty())
    with bot:
        with pytest.raises(proto.ForbiddenCommandError):
            bot.send_command("P")
        bot.set_motors(30, 30, immediate=True)
        assert sim.wait_until(lambda s: s.motor_command == [30.0, 30.0])
        sim.handle_bytes(b"P\n")  # as if someone typed it in a terminal
        assert sim.bricked and sim.wheel_speeds() == (0.0, 0.0)
        bot.set_motors(50, 50, immediate=True)
        time.sleep(0.1)
        assert sim.motor_command == [0.0, 0.0]  # bricked: ignored
    sent_lines = bytes(sim.received_bytes).split(b"\n")
    assert sent_lines.count(b"P") == 1  # only the one injected above, never from the driver
    # A reset recovers the bricked robot: opening again works.
    with PushBot(sim.address) as again:
        assert again.connected
        assert not sim.bricked


def test_no_banner_is_a_clear_error_and_leaves_the_device_closed() -> None:
    master, slave = os.openpty()
    import tty

    tty.setraw(slave)
    path = os.ttyname(slave)
    try:
        bot = PushBot(path, PushBotConfig(banner_timeout_s=0.3))
        with pytest.raises(PushBotError, match="eDVS4337"):
            bot.open()
        assert bot.state is PushBotState.CLOSED
    finally:
        os.close(slave)
        os.close(master)


def test_a_port_that_does_not_exist_is_a_clear_error() -> None:
    with pytest.raises(PushBotError, match="cannot open robot port /dev/does-not-exist"):
        PushBot("/dev/does-not-exist").open()


def test_commands_on_a_closed_device_raise() -> None:
    with pytest.raises(PushBotError, match="not open"):
        PushBot("loop://").set_motors(1, 1)


@pytest.mark.parametrize("link", ["pty", "tcp"])
def test_unplug_moves_to_disconnected_without_hanging(sim: SimulatedPushBot, link: str) -> None:
    url = sim.serve_pty() if link == "pty" else sim.serve_tcp()
    bot = PushBot(url)
    changes: list[tuple[PushBotState, str]] = []
    bot.add_state_listener(lambda state, reason: changes.append((state, reason)))
    bot.open()
    sim.unplug()
    deadline = time.monotonic() + 2.0
    while bot.state is not PushBotState.DISCONNECTED and time.monotonic() < deadline:
        time.sleep(0.01)
    assert bot.state is PushBotState.DISCONNECTED
    assert changes[-1][0] is PushBotState.DISCONNECTED and "read failed" in changes[-1][1]
    with pytest.raises(PushBotDisconnectedError):
        bot.set_motors(10, 10)
    started = time.monotonic()
    bot.close()
    assert time.monotonic() - started < 1.0
    assert bot.state is PushBotState.CLOSED
