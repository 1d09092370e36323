"""The Robot panel in the main window, pressed like a user: simulated PushBot + emulated board.

What the robot did is read from the simulator (pose, wheel speeds, received commands), never
from the panel's own labels.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from neurolab_gui.core.boards import open_emulator
from neurolab_gui.core.robot_demo import IMAGE_CENTRE
from neurolab_gui.core.session import Session
from neurolab_gui.qt.main_window import MainWindow


def _fast_emulator(target):
    # 0.5 ms steps and the fast clock, as `neurolab robot demo` uses, so a loaded 2-core
    # machine keeps up with the robot's real time
    return open_emulator(seed=target.seed, dt=5e-4, clock="fast")


@pytest.fixture
def window(qtbot, tmp_path):
    session = Session(opener=_fast_emulator)
    w = MainWindow(session, layout_path=tmp_path / "layout.json")
    w.reporter.show_messages = False
    qtbot.addWidget(w)
    w.show()
    yield w
    session.close()
    w.close()


def _connect_simulated(w: MainWindow, qtbot):
    panel = w.robot_panel
    w.docks["robot"].raise_()  # the user brings the Robot tab to the front
    qtbot.waitUntil(panel.isVisible, timeout=2000)
    assert panel.safety_bar.isHidden() and panel.estop_button.isHidden()  # nothing can move yet
    panel.port_box.setCurrentText("simulated")
    QTest.mouseClick(panel.connect_button, Qt.MouseButton.LeftButton)
    robot = w.session.robot
    qtbot.waitUntil(lambda: robot.status.state not in ("disconnected", "connecting"), timeout=5000)
    assert robot.status.state == "connected", robot.status.message
    qtbot.waitUntil(lambda: panel.start_button.isEnabled() and panel.left_slider.isEnabled(), timeout=2000)
    assert not panel.safety_bar.isHidden() and not panel.estop_button.isHidden()
    return panel, robot.simulator


def test_the_panel_runs_the_closed_loop_until_the_led_is_centred(window, qtbot) -> None:
    assert "robot" in window.docks
    assert window.session.connect("emulator", seed=2, acquire=False), window.session.connection.status.message
    panel, sim = _connect_simulated(window, qtbot)
    start_column = sim.led_column()
    assert start_column is not None and abs(start_column - IMAGE_CENTRE) > 35  # far in the left half
    columns: list[float] = []
    window.session.robot.loop_step.connect(lambda step: columns.append(step.led_column))

    assert panel.start_button.isVisible() and panel.start_button.isEnabled()
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert window.session.robot.loop_running

    def centred() -> bool:
        recent = np.asarray(columns[-8:], dtype=float)
        truth = sim.led_column()
        return (
            len(recent) == 8 and not np.isnan(recent).any() and abs(np.median(recent) - IMAGE_CENTRE) < 10
            and truth is not None and abs(truth - IMAGE_CENTRE) < 12
        )  # fmt: skip

    qtbot.waitUntil(centred, timeout=20_000)
    assert sim.pose.heading_rad > 0.2  # it turned left, toward the LED
    # the views followed: DVS image and rate, the motor neurons' rates, the arena's path
    qtbot.waitUntil(lambda: panel.rate_label.text() != "0 ev/s", timeout=2000)
    assert panel.dvs_image.image is not None and panel.dvs_image.image.max() > 0
    assert "LED column:" in panel.led_label.text() and "–" not in panel.led_label.text()
    heights = panel.left_bars.opts["height"]
    assert len(heights) == 16 and len(panel.right_bars.opts["height"]) == 16
    x, y = panel.path_curve.getData()
    assert x is not None and len(x) > 10 and math.hypot(x[-1] - x[0], y[-1] - y[0]) > 0.02
    assert not panel.start_button.isEnabled() and not panel.left_slider.isEnabled()

    QTest.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.session.robot.loop_running, timeout=5000)
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), 0.5)
    qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=2000)
    assert "converged" in panel.loop_label.text()


def test_escape_and_space_stop_the_motors_from_the_keyboard(window, qtbot) -> None:
    panel, sim = _connect_simulated(window, qtbot)

    def drive() -> None:
        panel.left_slider.setValue(50)
        panel.right_slider.setValue(50)
        assert sim.wait_until(lambda s: s.wheel_speeds() == (0.125, 0.125), 1.0)

    def stopped_within(seconds: float) -> bool:
        return sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), seconds)

    drive()
    QTest.keyClick(panel, Qt.Key.Key_Escape)
    assert stopped_within(0.2)
    assert panel.left_slider.value() == 0 and panel.right_slider.value() == 0

    drive()
    QTest.keyClick(panel.right_slider, Qt.Key.Key_Space)  # Space wherever the focus is
    assert stopped_within(0.2)

    drive()
    QTest.keyClick(window.raster_panel, Qt.Key.Key_Space)  # another panel: Space still stops
    assert stopped_within(0.2)

    drive()
    line_edit = panel.port_box.lineEdit()
    line_edit.setFocus()
    QTest.keyClick(line_edit, Qt.Key.Key_Space)  # typing a space in a text field is not an e-stop
    time.sleep(0.1)
    assert sim.wheel_speeds() == (0.125, 0.125)
    QTest.keyClick(line_edit, Qt.Key.Key_Escape)  # Esc is, everywhere
    assert stopped_within(0.2)

    drive()
    QTest.mouseClick(panel.bar_estop_button, Qt.MouseButton.LeftButton)  # the toolbar's button
    assert stopped_within(0.2)

    drive()
    panel.start_button.setFocus()
    QTest.keyClick(panel.start_button, Qt.Key.Key_Space)  # stops, and does not also press "Start loop"
    assert stopped_within(0.2)
    assert not window.session.robot.loop_running and window.reporter.errors == []


def test_escape_in_a_modal_dialog_stops_the_motors_and_closes_the_dialog(window, qtbot) -> None:
    """The keys are application shortcuts, which a modal dialog shadows: there the panel's event
    filter stands in, and only there (outside a dialog no Python code sees the app's events)."""
    from PyQt6.QtWidgets import QMessageBox

    panel, sim = _connect_simulated(window, qtbot)
    assert not panel._keys_installed  # the shortcuts do it: no Python call for every event of the app
    panel.left_slider.setValue(50)
    panel.right_slider.setValue(50)
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.125, 0.125), 1.0)
    box = QMessageBox(QMessageBox.Icon.Information, "NeuroLab", "a message", parent=window)
    box.open()  # window-modal, as the error reporter's messages are
    qtbot.waitUntil(lambda: box.isVisible() and panel._keys_installed, timeout=2000)
    QTest.keyClick(box, Qt.Key.Key_Escape)
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), 0.2)
    qtbot.waitUntil(lambda: not box.isVisible(), timeout=2000)  # Esc still closes the dialog
    qtbot.waitUntil(lambda: not panel._keys_installed, timeout=2000)
    # with no robot connected, Space pauses the raster again (it was the e-stop while motors could run)
    from PyQt6.QtWidgets import QApplication

    QTest.mouseClick(panel.disconnect_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(panel.estop_button.isHidden, timeout=5000)  # nothing can move: the keys are free
    raster = window.raster_panel
    window.activateWindow()
    raster.graphics.setFocus()
    qtbot.waitUntil(lambda: QApplication.focusWidget() is raster.graphics and QApplication.activeWindow() is window)
    QTest.keyClick(raster.graphics, Qt.Key.Key_Space)
    assert raster.paused


def test_arrow_keys_drive_and_closing_the_window_stops_and_releases_the_robot(window, qtbot) -> None:
    panel, sim = _connect_simulated(window, qtbot)
    panel.setFocus()
    for _ in range(3):
        QTest.keyClick(panel, Qt.Key.Key_Up)
    QTest.keyClick(panel, Qt.Key.Key_Left)
    assert (panel.left_slider.value(), panel.right_slider.value()) == (20, 40)
    assert sim.wait_until(lambda s: s.motor_command == [20.0, 40.0], 1.0)
    time.sleep(1.5)  # longer than the firmware's !MVD hold: the manual setting is refreshed
    assert sim.motor_command == [20.0, 40.0]
    window.close()
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0) and not s.motors_enabled, 0.5)
    assert window.session.robot.status.state == "disconnected"


def _choose_network(panel, key: str) -> None:
    """Pick a network in the loop's combo box with the keyboard, as a user tabbing through would."""
    box = panel.network_box
    box.setFocus()
    for _ in range(box.count()):
        if box.currentData() == key:
            return
        QTest.keyClick(box, Qt.Key.Key_Down)
    assert box.currentData() == key


def test_the_converted_steering_network_drives_from_the_panel_until_the_led_is_centred(window, qtbot) -> None:
    assert window.session.connect("emulator", seed=2, acquire=False), window.session.connection.status.message
    panel, sim = _connect_simulated(window, qtbot)
    robot = window.session.robot
    # the normal conversion with a short QAT and the nominal weight biases, to keep the test short
    robot.steering_options = {"qat_samples": 200, "qat_epochs": 1, "match_on_board": False}
    _choose_network(panel, "steering")
    assert "steering" in panel.network_box.currentText()
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert robot.loop_running
    qtbot.waitUntil(lambda: "converting and deploying" in panel.loop_label.text(), timeout=2000)
    assert sim.wheel_speeds() == (0.0, 0.0)  # nothing drives while the network is converted
    qtbot.waitUntil(lambda: "driving the motors" in panel.loop_label.text(), timeout=240_000)
    assert "converted network phototaxis_steering.pt" in panel.loop_label.text()

    def centred() -> bool:
        column = sim.led_column()
        return column is not None and abs(column - IMAGE_CENTRE) < 10 and sim.pose.heading_rad > 0.2

    qtbot.waitUntil(centred, timeout=30_000)
    # the bars show the hidden units, split by the wheel their readout weight speeds up
    assert len(panel.left_bars.opts["height"]) + len(panel.right_bars.opts["height"]) == 32
    QTest.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not robot.loop_running, timeout=5000)
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), 0.5)
    assert robot.last_report.network.startswith("converted network") and window.reporter.errors == []

    # started again on the same board: no second conversion, the network is written again
    steps: list = []
    robot.loop_step.connect(steps.append)
    qtbot.waitUntil(panel.start_button.isEnabled, timeout=2000)
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "driving the motors" in panel.loop_label.text(), timeout=2000)
    qtbot.waitUntil(lambda: len(steps) > 20, timeout=30_000)
    QTest.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not robot.loop_running, timeout=5000)
    assert not any("float accuracy" in line for line in robot.last_report.log)  # no conversion notes this time

    # the same network as the session's deployment (what the Model panel's deploy sets) drives too
    window.session.set_deployment(robot.steering_network.deployment)
    qtbot.waitUntil(panel.start_button.isEnabled, timeout=2000)
    _choose_network(panel, "deployed")
    steps.clear()
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert robot.loop_running
    qtbot.waitUntil(lambda: len(steps) > 20, timeout=30_000)
    QTest.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not robot.loop_running, timeout=5000)
    assert robot.last_report.network == "deployed converted network"
    assert robot.last_report.netlist_connections == len(robot.steering_network.deployment.mapped.netlist.connections)
    assert sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), 0.5) and window.reporter.errors == []


def test_the_deployed_network_choice_says_why_when_nothing_fit_is_deployed(window, qtbot) -> None:
    assert window.session.connect("emulator", seed=2, acquire=False), window.session.connection.status.message
    panel, sim = _connect_simulated(window, qtbot)
    _choose_network(panel, "deployed")
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert not window.session.robot.loop_running
    assert window.reporter.errors and "no network is deployed" in window.reporter.errors[-1][1]
    assert sim.wheel_speeds() == (0.0, 0.0) and panel.start_button.isEnabled()


def test_escape_while_the_steering_network_is_converted_ends_the_loop_before_it_drives(window, qtbot) -> None:
    assert window.session.connect("emulator", seed=2, acquire=False), window.session.connection.status.message
    panel, sim = _connect_simulated(window, qtbot)
    robot = window.session.robot
    _choose_network(panel, "steering")  # the default conversion: tens of seconds, checked for cancel throughout
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "converting and deploying" in panel.loop_label.text(), timeout=2000)
    QTest.keyClick(panel, Qt.Key.Key_Escape)
    qtbot.waitUntil(lambda: not robot.loop_running, timeout=20_000)
    qtbot.waitUntil(lambda: "cancelled" in panel.loop_label.text(), timeout=2000)
    assert sim.wheel_speeds() == (0.0, 0.0) and robot.steering_network is None
    assert not any(c.startswith("!MVD0=") and c != "!MVD0=0" for c in sim.commands)  # the wheels never got a command
    qtbot.waitUntil(panel.start_button.isEnabled, timeout=2000)


def test_the_closed_loop_and_a_sweep_never_share_the_board(window, qtbot) -> None:
    """One job at a time on the board (session.board_jobs) holds for the robot's loop too:
    a sweep is refused while the loop drives the board, and Start loop while a sweep runs."""
    import threading

    busy_sweep, busy_loop = ("a sweep is running on the board; cancel it first",
                             "a closed robot loop is running on the board; cancel it first")
    assert window.session.connect("emulator", seed=2, acquire=False), window.session.connection.status.message
    panel, sim = _connect_simulated(window, qtbot)
    transfer = window.transfer_panel
    transfer.steps_spin.setValue(3)
    transfer.duration_spin.setValue(0.05)

    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert window.session.robot.loop_running
    QTest.mouseClick(transfer.sweep_button, Qt.MouseButton.LeftButton)
    assert transfer.task is None and transfer.status.text() == busy_loop
    assert busy_loop in window.reporter.errors[-1][0]
    qtbot.waitUntil(panel.stop_button.isEnabled, timeout=2000)  # the panel shows the loop running
    QTest.mouseClick(panel.stop_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not window.session.robot.loop_running and panel.start_button.isEnabled(), timeout=5000)
    assert window.session.board_jobs.running is None  # the loop gave the board back

    release = threading.Event()
    post = transfer.post
    transfer.post = lambda curves: (release.wait(20), post(curves))  # the sweep holds after its first level
    QTest.mouseClick(transfer.sweep_button, Qt.MouseButton.LeftButton)
    sweep = transfer.task
    assert sweep is not None and not sweep.done
    drives = [c for c in sim.commands if c.startswith("!MVD")]
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    assert not window.session.robot.loop_running and panel.status_label.text() == busy_sweep
    assert busy_sweep in window.reporter.errors[-1][0]
    assert sim.wheel_speeds() == (0.0, 0.0) and [c for c in sim.commands if c.startswith("!MVD")] == drives
    release.set()
    qtbot.waitUntil(lambda: sweep.done and transfer.sweep_button.isEnabled(), timeout=30_000)
    sweep.result()


def test_a_noisy_link_is_shown_in_the_panel(window, qtbot) -> None:
    """Hostile report 3, #7: garbage on the serial line (a wrong baud rate, a noisy cable) decoded as
    phantom DVS events and nothing said so.  The panel now says what the parser found."""
    panel, sim = _connect_simulated(window, qtbot)
    assert panel.link_label.text() == "link: clean"
    qtbot.waitUntil(lambda: panel.rate_label.text() != "0 ev/s", timeout=2000)  # the DVS streams
    sim.line_noise(b"\xff" * 400 + b"\x01\x02garbage line\n")
    qtbot.waitUntil(lambda: panel.link_label.text().startswith("noisy link:"), timeout=3000)
    text = panel.link_label.text()
    assert "0xFF filler events" in text and "garbage bytes" in text, text


def test_a_link_lost_while_driving_leaves_a_warning_that_the_robot_may_still_move(window, qtbot, caplog) -> None:
    """Round 7, F9: the link dropped mid-drive; the panel zeroed its sliders and hid the e-stop, which read as
    "stopped" while the robot coasted on the firmware's !MVD decay (~1 s + |v|/10 s), and a link lost under
    the closed loop was logged at ERROR with a traceback."""
    import logging

    panel, sim = _connect_simulated(window, qtbot)
    panel.setFocus()
    for _ in range(6):
        QTest.keyClick(panel, Qt.Key.Key_Up)
    assert sim.wait_until(lambda s: s.motor_command == [60.0, 60.0], 1.0)
    sim.unplug()
    robot = window.session.robot
    qtbot.waitUntil(lambda: panel.unreachable_label.isVisible(), timeout=5000)
    assert robot.status.state == "lost" and robot.status.coast_s == pytest.approx(7.0)
    text = panel.unreachable_label.text()
    assert "robot unreachable since " in text and "may still be moving (about 7 s" in text, text
    assert sim.motor_command == [60.0, 60.0]  # what the warning is about: nothing reached the robot
    QTest.mouseClick(panel.disconnect_button, Qt.MouseButton.LeftButton)  # stops nothing: the warning stays
    qtbot.waitUntil(lambda: panel.status_label.text().startswith("disconnected"), timeout=5000)
    assert panel.unreachable_label.isVisible()

    # the link lost under the closed loop: one WARNING naming the reason, no traceback
    assert window.session.connect("emulator", seed=2, acquire=False), window.session.connection.status.message
    panel, sim = _connect_simulated(window, qtbot)
    assert panel.unreachable_label.isHidden()  # a new link: the robot answers again
    QTest.mouseClick(panel.start_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: sim.motor_command != [0.0, 0.0], timeout=10_000)
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="neurolab_gui.core.robot_session"):
        sim.unplug()
        qtbot.waitUntil(lambda: not robot.loop_running, timeout=5000)
    records = [r for r in caplog.records if r.name == "neurolab_gui.core.robot_session"]
    assert [r.levelno for r in records] == [logging.WARNING], [(r.levelname, r.getMessage()) for r in records]
    assert "the robot's link was lost: " in records[0].getMessage() and "failed" in records[0].getMessage()  # the driver's reason
    assert records[0].exc_info is None
    qtbot.waitUntil(lambda: panel.unreachable_label.isVisible(), timeout=5000)
    qtbot.waitUntil(lambda: "link was lost" in panel.loop_label.text(), timeout=2000)
