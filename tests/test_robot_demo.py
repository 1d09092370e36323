"""Closed-loop phototaxis on the simulated PushBot and the emulated DYNAP-SE1 board."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pytest

from drivers.dynapse1.netlist import InputAddress
from neurolab_gui.core.robot_demo import (
    IMAGE_CENTRE,
    PhototaxisConfig,
    build_phototaxis_network,
    locate_led,
    run_simulated_phototaxis,
)


def test_the_wiring_is_crossed_with_a_forward_bias_into_both_motors() -> None:
    net, layout = build_phototaxis_network(
        PhototaxisConfig(population_size=4, input_sources_per_side=2, bias_sources=3)
    )
    targets: dict[int, set] = {}
    for c in net.connections:
        assert isinstance(c.pre, InputAddress)
        targets.setdefault(c.pre.neuron, set()).add(c.post)
    for source in layout.left_input_sources:
        assert targets[source] == set(layout.right_motor)
    for source in layout.right_input_sources:
        assert targets[source] == set(layout.left_motor)
    for source in layout.bias_sources:
        assert targets[source] == set(layout.left_motor + layout.right_motor)
    assert net.monitored == set(layout.left_motor + layout.right_motor)


def test_the_wiring_compiles_without_warnings_and_never_uses_the_cleared_cam_tag() -> None:
    # Source id 0 is the tag every cleared CAM entry listens to: a demo input there would reach
    # every neuron of the core through its unused CAM entries.
    from drivers.dynapse1.netlist_compiler import compile_netlist

    net, layout = build_phototaxis_network(PhototaxisConfig())
    sources = layout.left_input_sources + layout.right_input_sources + layout.bias_sources
    assert 0 not in sources and len(set(sources)) == len(sources)
    assert compile_netlist(net).warnings == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"control_period_s": 0.2}, "control period"),
        ({"population_size": 200}, "do not fit"),
        ({"input_sources_per_side": 60, "bias_sources": 10}, "CAM entries"),
        ({"duration_s": 0}, "duration"),
    ],
)
def test_bad_demo_settings_are_refused(overrides: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        PhototaxisConfig(**overrides).validate()


def test_locate_led_finds_a_peak_over_noise_and_nothing_in_pure_noise() -> None:
    rng = np.random.default_rng(0)
    noise = rng.poisson(5.0, 128)
    assert math.isnan(locate_led(noise))
    with_led = noise.copy()
    with_led[40:43] += [20, 60, 25]
    assert locate_led(with_led) == pytest.approx(41.0, abs=0.6)


def test_phototaxis_turns_the_robot_toward_the_led(tmp_path) -> None:
    report = run_simulated_phototaxis(PhototaxisConfig(duration_s=4.0))
    assert report.status == "completed"
    start_error = abs(report.initial_led_column - IMAGE_CENTRE)
    final_error = abs(report.final_led_column - IMAGE_CENTRE)
    assert start_error > 35  # the LED starts far in the left half (~column 14)
    assert final_error < 10 and final_error < start_error / 4
    assert report.converged
    # The simulator's ground truth agrees with what the robot saw.
    true_tail = np.array(report.true_led_column[-10:], dtype=float)
    assert np.nanmax(np.abs(true_tail - IMAGE_CENTRE)) < 15
    # The robot turned left (counter-clockwise) toward the LED and drove forward.
    headings = [p[2] for p in report.pose]
    assert headings[-1] > headings[0] + 0.2
    assert report.pose[-1][0] > report.pose[0][0] + 0.05
    # While the LED was on the left, the right motor population fired faster.
    early = [i for i, t in enumerate(report.t_s) if 0.3 <= t < 0.6]
    assert np.mean([report.motor_right_hz[i] - report.motor_left_hz[i] for i in early]) > 30
    # The loop rate depends on how fast the emulator runs on a loaded machine; 40 Hz is the ceiling.
    assert report.steps > 20 and 5 < report.achieved_rate_hz <= 41
    path = tmp_path / "phototaxis.json"
    report.save(path)
    saved = json.loads(path.read_text())
    assert saved["status"] == "completed" and len(saved["t_s"]) == report.steps
    assert any("netlist" in line for line in saved["log"])


def test_a_cancelled_session_stops_early_and_stops_the_robot() -> None:
    def cancel_soon(session) -> None:
        threading.Timer(0.4, session.cancel).start()

    report = run_simulated_phototaxis(PhototaxisConfig(duration_s=30.0), session_ready=cancel_soon)
    assert report.status == "cancelled"
    assert report.wall_time_s < 3.0
    assert "robot stopped" in report.log
