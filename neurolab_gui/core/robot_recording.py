"""The robot's streams in the session file: DVS events, motor commands, sensor readings, loop steps.

The board's spikes are recorded by the session as always (the closed loop forwards what it
reads); this module adds the robot's side as typed tables of the recorder
(``Recorder.add_stream`` / ``Recorder.append``), readable as ``/streams/robot/<name>/<column>``
with plain h5py, and marks every safety stop (``/markers``, kind ``robot stop``).

Clocks: ``host_time_s`` is the host's Unix time when the row was produced, the one clock all
robot rows share with the bias log and the markers; DVS rows also keep the robot's own event
timestamp ``t_us`` (the eDVS clock, -1 when the event format carries none).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from drivers.robot import DvsEvents, SensorReading

from .robot_demo import PhototaxisStep

DVS = "robot/dvs"
MOTOR = "robot/motor"
SENSOR = "robot/sensor"
LOOP = "robot/loop"
#: Values kept per sensor line (battery 1, ADC 1, wheel ticks 2, IMU triples 3, quaternion 4).
SENSOR_VALUES = 4

_STREAMS: dict[str, tuple[dict[str, str], str]] = {
    DVS: (
        {"host_time_s": "f8", "t_us": "i8", "x": "u1", "y": "u1", "on": "?"},
        "eDVS events of the robot (x column, y row, polarity ON=True, robot timestamp in µs)",
    ),
    MOTOR: (
        {"host_time_s": "f8", "left": "i1", "right": "i1", "origin": "S8"},
        "motor commands sent (!MVD0/1, -100..100); origin loop | manual | stop",
    ),
    SENSOR: (
        {"host_time_s": "f8", "sensor": "u1", "n_values": "u1", **{f"value{i}": "i8" for i in range(SENSOR_VALUES)}},
        "sensor lines (-S<bit> values); bit 0 battery mV, 1/2 light sensors ADC0/1, 28 wheel ticks",
    ),
    LOOP: (
        {
            "host_time_s": "f8", "t_s": "f8", "led_column": "f4",
            "dvs_left_hz": "f4", "dvs_right_hz": "f4", "input_left_hz": "f4", "input_right_hz": "f4",
            "motor_left_hz": "f4", "motor_right_hz": "f4", "command_left": "i1", "command_right": "i1",
        },  # fmt: skip
        "closed-loop steps: LED column seen, DVS and input rates per half, motor population rates, commands",
    ),
}


class RobotStreams:
    """Declares the robot's tables on one recorder and appends rows (any thread)."""

    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder
        for path, (columns, description) in _STREAMS.items():
            recorder.add_stream(path, columns, None, description)

    def write(self, stream: str, data: Any) -> None:
        """One item from :class:`~neurolab_gui.core.robot_session.RobotSession`'s callbacks."""
        now = time.time()
        if stream == "dvs":
            self._dvs(data, now)
        elif stream == "motor":
            left, right, origin = data
            self.recorder.append(MOTOR, {"host_time_s": now, "left": left, "right": right, "origin": origin.encode()[:8]})
        elif stream == "sensor":
            self._sensor(data, now)
        elif stream == "step":
            self._step(data, now)
        elif stream in ("safety", "loop"):
            text = data.get("reason") or data.get("message", "")
            self.recorder.mark("robot stop" if stream == "safety" else "robot loop", str(text))

    def _dvs(self, events: DvsEvents, now: float) -> None:
        n = len(events)
        if n:
            self.recorder.append(
                DVS, {"host_time_s": np.full(n, now), "t_us": events.t_us, "x": events.x, "y": events.y, "on": events.polarity}
            )

    def _sensor(self, reading: SensorReading, now: float) -> None:
        values = list(reading.values[:SENSOR_VALUES]) + [0] * (SENSOR_VALUES - min(SENSOR_VALUES, len(reading.values)))
        row = {"host_time_s": now, "sensor": reading.sensor, "n_values": len(reading.values)}
        row |= {f"value{i}": v for i, v in enumerate(values)}
        self.recorder.append(SENSOR, row)

    def _step(self, step: PhototaxisStep, now: float) -> None:
        self.recorder.append(
            LOOP,
            {
                "host_time_s": now, "t_s": step.t_s, "led_column": step.led_column,
                "dvs_left_hz": step.dvs_left_hz, "dvs_right_hz": step.dvs_right_hz,
                "input_left_hz": step.input_left_hz, "input_right_hz": step.input_right_hz,
                "motor_left_hz": step.motor_left_hz, "motor_right_hz": step.motor_right_hz,
                "command_left": step.command_left, "command_right": step.command_right,
            },  # fmt: skip
        )
