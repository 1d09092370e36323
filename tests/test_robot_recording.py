"""A recorded robot session: DVS events, motor commands, sensor readings, loop steps and the
board's spikes in one session file, read back with plain h5py."""

from __future__ import annotations

import time

import h5py
import numpy as np

from neurolab_gui.core.boards import open_emulator
from neurolab_gui.core.robot_demo import PhototaxisConfig
from neurolab_gui.core.session import Session


def test_the_robot_session_goes_into_the_session_file(tmp_path) -> None:
    session = Session(opener=lambda target: open_emulator(dt=5e-4, clock="fast"))
    path = tmp_path / "robot.h5"
    try:
        assert session.connect("emulator", acquire=False)
        robot = session.robot
        assert robot.connect("simulated"), robot.status.message
        session.start_recording(path, notes="robot test")
        robot.set_motors(20, -20)  # by hand first
        time.sleep(0.3)
        robot.start_loop(config=PhototaxisConfig(duration_s=1.2, observe_s=0.2))
        deadline = time.monotonic() + 15.0
        while robot.loop_running and time.monotonic() < deadline:
            time.sleep(0.02)
        robot.emergency_stop("test stop")
        steps = robot.last_report.steps
        time.sleep(0.2)
        path = session.stop_recording()
        writer = getattr(session, "last_recorder", None)  # a recorder that finishes in the background
        if writer is not None:
            writer.wait(10.0)
    finally:
        session.close()

    with h5py.File(path, "r") as f:
        motor = f["streams/robot/motor"]
        left, right, origin = motor["left"][:], motor["right"][:], motor["origin"][:]
        assert (20, -20, b"manual") in set(zip(left.tolist(), right.tolist(), origin.tolist(), strict=True))
        assert b"loop" in set(origin.tolist()) and b"stop" in set(origin.tolist())
        assert np.all(np.diff(motor["host_time_s"][:]) >= 0)
        dvs = f["streams/robot/dvs"]
        assert len(dvs["x"]) > 100 and dvs["x"][:].max() < 128 and dvs["on"].dtype == bool
        sensor = f["streams/robot/sensor"]
        assert {0, 1, 2, 28} <= set(sensor["sensor"][:].tolist())
        battery = sensor["value0"][:][sensor["sensor"][:] == 0]
        assert np.all(battery == 4100)
        loop = f["streams/robot/loop"]
        assert len(loop["t_s"]) == steps > 10
        assert np.isfinite(loop["motor_left_hz"][:]).all()
        # the board's side of the loop: the motor neurons' spikes, read by the loop, are recorded too
        spikes = f["events/spikes/neuron"][:]
        assert len(spikes) > 100 and set(np.unique(spikes)) <= set(range(32))
        kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in f["markers"]["kind"][:]]
        assert "robot stop" in kinds


def test_robot_tables_are_declared_once_and_bad_rows_are_refused(tmp_path) -> None:
    import pytest

    from neurolab_gui.core.recording import Recorder
    from neurolab_gui.core.robot_recording import MOTOR, RobotStreams

    recorder = Recorder(tmp_path / "r.h5", software_version="test", board_serial="", board_emulated=True)
    recorder.start()
    try:
        streams = RobotStreams(recorder)
        RobotStreams(recorder)  # declaring the same tables again is harmless
        with pytest.raises(KeyError, match="not declared"):
            recorder.append("robot/nothing", {"x": [1]})
        with pytest.raises(ValueError, match="takes columns"):
            recorder.append(MOTOR, {"left": [1]})
        streams.write("motor", (10, -10, "manual"))
    finally:
        recorder.stop()
    with h5py.File(tmp_path / "r.h5", "r") as f:
        assert f["streams/robot/motor/left"][:].tolist() == [10]
