"""Robot panel: a PushBot's DVS, sensors, manual drive and closed loop, over :class:`RobotSession`.

The panel holds no logic: every button calls the core's :class:`RobotSession`, and the views
follow its signals (relayed to the GUI thread) or pull its DVS frame at 25 Hz.  The emergency
stop lives in a toolbar of its own (:attr:`RobotPanel.safety_bar`) that the main window shows
while a robot is connected, so it stays in sight when the dock is tabbed away.  While a robot
is connected, Esc anywhere in the application stops the motors, and so does Space anywhere but
in a text field (where it types a space); Space then no longer pauses the raster
(:attr:`RobotPanel.estop_keys_changed` tells the window).

The keys are application-wide ``QShortcut`` s, which Qt matches in C++ on key presses only.
An application-wide Python event filter would see every event of the application (paints,
timers, queued signals: thousands a second while the loop runs and the panels draw), each a
call into Python that wraps its arguments, and it cost the GUI thread close to half of its time
while the loop ran.  A modal dialog shadows application shortcuts, so while one is open (and
only then) :class:`_EmergencyKeys` filters the application's events instead; Esc then also goes
on to close the dialog.
"""

from __future__ import annotations

import math
import time

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QEvent, QObject, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QKeyEvent, QKeySequence, QShortcut
from PyQt6.QtWidgets import (
    QAbstractSpinBox,
    QApplication,
    QComboBox,
    QDoubleSpinBox,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QSlider,
    QTextEdit,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from drivers.robot.pushbot_protocol import DVS_WIDTH, SENSOR_ADC0, SENSOR_BATTERY, SENSOR_WHEEL_TICKS, SensorReading
from neurolab_gui.core.jobs import BoardBusy
from neurolab_gui.core.robot_demo import IMAGE_CENTRE, PhototaxisStep
from neurolab_gui.core.robot_session import NETWORKS, SIMULATED_ROBOT, RobotSession, RobotStatus, list_robot_ports

from ..bridge import relay
from ..errors import ErrorReporter
from .readout import Readout

#: Motor command per arrow-key press.
ARROW_STEP = 10
FRAME_INTERVAL_MS = 40
STEP_DRAW_INTERVAL_S = 0.1
_TEXT_INPUTS = (QLineEdit, QTextEdit, QPlainTextEdit, QAbstractSpinBox)
_ON_COLOUR = np.array([40, 255, 90], np.float32)  # ON events green
_OFF_COLOUR = np.array([255, 60, 200], np.float32)  # OFF events magenta


class _EmergencyKeys(QObject):
    """Esc/Space → e-stop as an application event filter: only while a modal dialog shadows the shortcuts."""

    def __init__(self, panel: RobotPanel) -> None:
        super().__init__(panel)
        self.panel = panel

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        kind = event.type()
        if kind not in (QEvent.Type.KeyPress, QEvent.Type.ShortcutOverride):
            if QApplication.activeModalWidget() is None:  # the dialog is gone: the shortcuts serve again
                self.panel._follow_modal_dialogs()
            return False
        if not self.panel.robot.motors_may_run:
            return False
        assert isinstance(event, QKeyEvent)
        key = event.key()
        if key == Qt.Key.Key_Space and isinstance(obj, _TEXT_INPUTS):
            return False  # typing a space in a text field is not an emergency
        if key not in (Qt.Key.Key_Escape, Qt.Key.Key_Space):
            return False
        if kind == QEvent.Type.ShortcutOverride:
            event.accept()  # ours, not a window shortcut's (the raster's Space)
            return True
        if not event.isAutoRepeat():
            self.panel.emergency_stop("emergency stop (keyboard)")
        # Space is consumed (it would also press whatever button has the focus, "Start loop"
        # included); Esc goes on as well, so it still closes a dialog
        return key == Qt.Key.Key_Space


class RobotPanel(QWidget):
    """Connect, watch, drive and close the loop; see the module docstring."""

    #: True while Esc and Space are the e-stop (motors may run): Space must not also pause the raster.
    estop_keys_changed = pyqtSignal(bool)

    def __init__(self, robot: RobotSession, reporter: ErrorReporter) -> None:
        super().__init__()
        self.robot = robot
        self.reporter = reporter
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self._last_step_drawn = 0.0
        self._arena_range: tuple[np.ndarray, np.ndarray] | None = None

        # --- connection ---------------------------------------------------------------------
        self.port_box = QComboBox(editable=True)
        self.port_box.setToolTip("a serial port, socket://<ip>:56000 (WLAN), or 'simulated'")
        self.refresh_button = QPushButton("Rescan")
        self.refresh_button.setToolTip("list the serial ports again (plug the robot in first)")
        self.connect_button = QPushButton("Connect")
        self.connect_button.setToolTip("open the robot on the chosen port: reset, banner, DVS stream and motors enabled")
        self.disconnect_button = QPushButton("Disconnect")
        self.disconnect_button.setToolTip("stop the motors, switch the DVS and LEDs off and close the link")
        self.status_label = QLabel("no robot")
        self.status_label.setWordWrap(True)
        conn = QGroupBox("Robot")
        cl = QGridLayout(conn)
        cl.addWidget(self.port_box, 0, 0, 1, 2)
        cl.addWidget(self.refresh_button, 0, 2)
        cl.addWidget(self.connect_button, 1, 0)
        cl.addWidget(self.disconnect_button, 1, 1)
        cl.addWidget(self.status_label, 2, 0, 1, 3)

        # --- emergency stop (in the panel and in the always-visible safety bar) ---------------
        self.estop_button = self._estop_button()
        self.safety_bar = QToolBar("Robot safety")
        self.safety_bar.setObjectName("robot_safety_bar")
        self.bar_estop_button = self._estop_button()
        self.safety_bar.addWidget(self.bar_estop_button)
        self.safety_label = QLabel("")
        self.safety_bar.addWidget(self.safety_label)
        # the link lost while the robot drove: the host can stop nothing now, the firmware's !MVD decay
        # stops it (~1 s + |v|/10 s); where the e-stop was, so nobody reads the hidden button as "stopped"
        self.unreachable_label = QLabel("")
        self.unreachable_label.setWordWrap(True)
        self.unreachable_label.setStyleSheet("QLabel { background: #e8a000; color: black; font-weight: bold; padding: 6px; }")
        self.unreachable_label.setVisible(False)

        # --- DVS view -----------------------------------------------------------------------
        self.dvs_view = pg.GraphicsLayoutWidget()
        self.dvs_view.setMinimumSize(200, 200)
        vb = self.dvs_view.addViewBox(lockAspect=True, invertY=True)
        vb.setMouseEnabled(False, False)
        self.dvs_image = pg.ImageItem(axisOrder="row-major")
        vb.addItem(self.dvs_image)
        vb.setRange(xRange=(0, DVS_WIDTH), yRange=(0, DVS_WIDTH), padding=0)
        self.rate_label = QLabel("0 ev/s")
        self.led_label = QLabel("LED column: –")
        # what the parser met that a clean link never sends (a wrong baud rate, a noisy cable)
        self.link_label = QLabel("link: clean")
        dvs = QGroupBox("DVS (ON green, OFF magenta, 50 ms decay)")
        dl = QVBoxLayout(dvs)
        dl.addWidget(self.dvs_view, 1)
        row = QHBoxLayout()
        row.addWidget(Readout(self.rate_label, template="1,000,000 ev/s"))
        row.addWidget(Readout(self.led_label, template="LED column: 64.0 (centre 64.0)"))
        dl.addLayout(row)
        dl.addWidget(self.link_label)

        # --- sensors ------------------------------------------------------------------------
        self.battery_label = QLabel("–")
        self.light_label = QLabel("–")
        self.ticks_label = QLabel("–")
        sensors = QGroupBox("Sensors")
        sl = QFormLayout(sensors)
        sl.addRow("battery", Readout(self.battery_label, template="10000 mV"))
        sl.addRow("light left / right", Readout(self.light_label, template="1000 / 1000"))
        sl.addRow("wheel ticks", Readout(self.ticks_label, template="-100000 / -100000"))

        # --- manual control -----------------------------------------------------------------
        self.left_slider = self._motor_slider()
        self.right_slider = self._motor_slider()
        self.zero_button = QPushButton("Motors 0")
        self.zero_button.setToolTip("set both wheels to 0 (the sliders too)")
        self.led_hz = QDoubleSpinBox(suffix=" Hz", minimum=0.0, maximum=2000.0, value=200.0, decimals=0)
        self.led_hz.setToolTip("blink frequency of the robot's LEDs (what another robot's DVS sees)")
        self.led_on_button = QPushButton("LEDs on")
        self.led_on_button.setToolTip("blink the LEDs at the frequency above")
        self.led_off_button = QPushButton("LEDs off")
        self.led_off_button.setToolTip("switch the LEDs off")
        self.command_label = QLabel("command 0 / 0")
        manual = QGroupBox("Manual drive (sliders or arrow keys)")
        ml = QGridLayout(manual)
        ml.addWidget(QLabel("left"), 0, 0)
        ml.addWidget(QLabel("right"), 0, 1)
        ml.addWidget(self.left_slider, 1, 0)
        ml.addWidget(self.right_slider, 1, 1)
        ml.addWidget(self.zero_button, 2, 0, 1, 2)
        ml.addWidget(Readout(self.command_label, template="command -100 / -100 (loop)"), 3, 0, 1, 2)
        ml.addWidget(self.led_hz, 4, 0, 1, 2)
        ml.addWidget(self.led_on_button, 5, 0)
        ml.addWidget(self.led_off_button, 5, 1)

        # --- closed loop --------------------------------------------------------------------
        self.network_box = QComboBox()
        self.network_box.setToolTip(
            "what drives the motors through the connected board: the hand-wired phototaxis network; the shipped "
            "steering RNN (trained with BPTT, converted and deployed when the loop starts); or the network the "
            "Model panel deployed (it must be trained on the task 'phototaxis')"
        )
        for name, label in NETWORKS.items():
            self.network_box.addItem(label, name)
        self.start_button = QPushButton("Start loop")
        self.start_button.setToolTip("close the loop: DVS events -> board -> motor neurons' rates -> wheels")
        self.stop_button = QPushButton("Stop loop")
        self.stop_button.setToolTip("stop the closed loop and the motors")
        self.loop_label = QLabel("loop stopped")
        self.rates_plot = pg.PlotWidget()
        self.rates_plot.setMinimumHeight(120)
        self.rates_plot.setLabel("left", "rate", units="Hz")
        self.rates_plot.setLabel("bottom", "neurons driving the left | right wheel")
        self.left_bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#4f9fe0")
        self.right_bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#e0a04f")
        self.rates_plot.addItem(self.left_bars)
        self.rates_plot.addItem(self.right_bars)
        loop = QGroupBox("Closed loop through the board")
        ll = QGridLayout(loop)
        ll.addWidget(self.network_box, 0, 0, 1, 2)
        ll.addWidget(self.start_button, 1, 0)
        ll.addWidget(self.stop_button, 1, 1)
        ll.addWidget(Readout(self.loop_label, lines=3), 2, 0, 1, 2)  # wraps words
        ll.addWidget(self.rates_plot, 3, 0, 1, 2)

        # --- arena (simulated robot) ----------------------------------------------------------
        self.arena = pg.PlotWidget()
        self.arena.setAspectLocked(True)
        self.arena.setMinimumHeight(160)
        self.arena.setLabel("bottom", "x", units="m")
        self.arena.setLabel("left", "y", units="m")
        self.path_curve = self.arena.plot([], [], pen=pg.mkPen("#88c", width=1))
        self.led_marker = pg.ScatterPlotItem(size=14, brush="#ff0", symbol="star")
        self.robot_marker = pg.ScatterPlotItem(size=12, brush="#f44")
        self.heading_line = self.arena.plot([], [], pen=pg.mkPen("#f44", width=2))
        self.arena.addItem(self.led_marker)
        self.arena.addItem(self.robot_marker)
        self.arena_box = QGroupBox("Arena (simulated robot; top view)")
        al = QVBoxLayout(self.arena_box)
        al.addWidget(self.arena)

        left = QVBoxLayout()
        left.addWidget(conn)
        left.addWidget(self.estop_button)
        left.addWidget(self.unreachable_label)
        left.addWidget(sensors)
        left.addWidget(manual)
        left.addStretch(1)
        right = QVBoxLayout()
        right.addWidget(dvs, 2)
        right.addWidget(loop, 2)
        right.addWidget(self.arena_box, 2)
        top = QHBoxLayout(self)
        top.addLayout(left, 0)
        top.addLayout(right, 1)

        # --- wiring ---------------------------------------------------------------------------
        self.refresh_button.clicked.connect(self.refresh_ports)
        self.connect_button.clicked.connect(self.connect_selected)
        self.disconnect_button.clicked.connect(lambda: self.robot.disconnect())
        self.left_slider.valueChanged.connect(self._send_sliders)
        self.right_slider.valueChanged.connect(self._send_sliders)
        self.zero_button.clicked.connect(lambda: self._set_sliders(0, 0))
        self.led_on_button.clicked.connect(lambda: self._call(self.robot.set_led, self.led_hz.value()))
        self.led_off_button.clicked.connect(lambda: self._call(self.robot.set_led, 0.0))
        self.start_button.clicked.connect(self.start_loop)
        self.stop_button.clicked.connect(lambda: self.robot.stop_loop(wait=False))
        relay(robot.status_changed, self._show_status, self)
        relay(robot.sensor, self._show_sensor, self)
        relay(robot.motors, self._show_command, self)
        relay(robot.safety_stop, self._show_safety_stop, self)
        relay(robot.loop_changed, self._show_loop, self)
        relay(robot.loop_step, self._show_step, self)
        self._estop_shortcuts = []
        for key in (Qt.Key.Key_Escape, Qt.Key.Key_Space):
            shortcut = QShortcut(QKeySequence(key), self, context=Qt.ShortcutContext.ApplicationShortcut)
            shortcut.setAutoRepeat(False)
            shortcut.setEnabled(False)  # only while motors may run (see _listen_for_estop_keys)
            shortcut.activated.connect(lambda: self.emergency_stop("emergency stop (keyboard)"))
            self._estop_shortcuts.append(shortcut)
        self._estop_keys_on = False
        self._keys = _EmergencyKeys(self)
        self._keys_installed = False  # while a modal dialog is open and motors may run
        app = QApplication.instance()
        if app is not None:
            app.focusWindowChanged.connect(self._follow_modal_dialogs)
        self._timer = QTimer(self)
        self._timer.timeout.connect(self._refresh_views)
        self._timer.start(FRAME_INTERVAL_MS)
        self.refresh_ports()
        self._show_status(robot.status)
        self._show_loop(False, "loop stopped")

    # --- construction helpers -----------------------------------------------------------------
    def _estop_button(self) -> QPushButton:
        button = QPushButton("EMERGENCY STOP  (Esc / Space)")
        button.setToolTip("stop both wheels now and end the closed loop (also Esc or Space)")
        button.setStyleSheet("QPushButton { background: #c00; color: white; font-weight: bold; padding: 8px; }")
        button.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # Space must never "click" some other focused button
        button.clicked.connect(lambda: self.emergency_stop("emergency stop (button)"))
        return button

    @staticmethod
    def _motor_slider() -> QSlider:
        slider = QSlider(Qt.Orientation.Vertical, minimum=-100, maximum=100, value=0)
        slider.setToolTip("wheel speed, -100..100 % (arrow keys drive both)")
        slider.setTickPosition(QSlider.TickPosition.TicksBothSides)
        slider.setTickInterval(25)
        slider.setMinimumHeight(120)
        return slider

    def _call(self, fn, *args) -> bool:
        try:
            fn(*args)
            return True
        except Exception as exc:
            self.reporter.report(exc, "robot")
            return False

    # --- actions --------------------------------------------------------------------------------
    def refresh_ports(self) -> None:
        current = self.port_box.currentText()
        self.port_box.clear()
        self.port_box.addItem(SIMULATED_ROBOT)
        try:
            ports = list_robot_ports()
        except Exception as exc:  # no serial support on this machine: the simulated robot still works
            ports = []
            self.status_label.setText(f"cannot list serial ports: {exc}")
        for port in ports:
            self.port_box.addItem(port.device)
            self.port_box.setItemData(self.port_box.count() - 1, port.description, Qt.ItemDataRole.ToolTipRole)
        self.port_box.addItem("socket://192.168.1.1:56000")
        if current:
            self.port_box.setCurrentText(current)

    def connect_selected(self) -> None:
        """Connect on a worker thread; the status line and the controls follow the core's status."""
        self.connect_button.setEnabled(False)
        self.robot.connect_in_background(self.port_box.currentText())

    def start_loop(self) -> None:
        self._set_sliders(0, 0, send=False)
        try:
            self.robot.start_loop(self.network_box.currentData())
        except Exception as exc:
            if isinstance(exc, BoardBusy):  # a sweep or calibration has the board: say so here too
                self.status_label.setText(str(exc))
            self.reporter.report(exc, "robot")

    def emergency_stop(self, reason: str) -> None:
        self._set_sliders(0, 0, send=False)
        self.robot.emergency_stop(reason)

    def _set_sliders(self, left: int, right: int, send: bool = True) -> None:
        for slider, value in ((self.left_slider, left), (self.right_slider, right)):
            slider.blockSignals(True)
            slider.setValue(value)
            slider.blockSignals(False)
        if send:
            self._send_sliders()

    def _send_sliders(self) -> None:
        if not self.robot.connected or self.robot.loop_running:
            return
        self._call(self.robot.set_motors, self.left_slider.value(), self.right_slider.value())

    def keyPressEvent(self, event: QKeyEvent) -> None:  # noqa: N802 (Qt's name)
        steps = {
            Qt.Key.Key_Up: (ARROW_STEP, ARROW_STEP),
            Qt.Key.Key_Down: (-ARROW_STEP, -ARROW_STEP),
            Qt.Key.Key_Left: (-ARROW_STEP, ARROW_STEP),  # right wheel faster: turn left
            Qt.Key.Key_Right: (ARROW_STEP, -ARROW_STEP),
        }
        step = steps.get(Qt.Key(event.key()))
        if step is None:
            super().keyPressEvent(event)
            return
        self._set_sliders(self.left_slider.value() + step[0], self.right_slider.value() + step[1])

    def shutdown(self) -> None:
        """The window closes: stop the views and the robot."""
        self._timer.stop()
        self._listen_for_estop_keys(False)
        self.robot.close()

    def _listen_for_estop_keys(self, on: bool) -> None:
        """Esc and Space stop the motors while they may run, and only then."""
        if on != self._estop_keys_on:
            self._estop_keys_on = on
            for shortcut in self._estop_shortcuts:
                shortcut.setEnabled(on)
            self.estop_keys_changed.emit(on)
        self._follow_modal_dialogs()

    def _follow_modal_dialogs(self, *_: object) -> None:
        """The application-wide filter stands in for the shortcuts while a modal dialog shadows
        them (it sees every event of the application, each a call into Python: never longer)."""
        app = QApplication.instance()
        on = self._estop_keys_on and app is not None and QApplication.activeModalWidget() is not None
        if app is None or on == self._keys_installed:
            return
        if on:
            app.installEventFilter(self._keys)
        else:
            app.removeEventFilter(self._keys)
        self._keys_installed = on

    # --- views ------------------------------------------------------------------------------------
    def _show_status(self, status: RobotStatus) -> None:
        connected = status.state == "connected"
        self.status_label.setText(f"{status.state}: {status.message}")
        self.connect_button.setEnabled(status.state != "connecting")
        self.disconnect_button.setEnabled(status.state in ("connected", "lost"))
        for widget in (self.left_slider, self.right_slider, self.zero_button, self.led_on_button, self.led_off_button):
            widget.setEnabled(connected)
        self.start_button.setEnabled(connected and not self.robot.loop_running)
        may_run = self.robot.motors_may_run
        self._listen_for_estop_keys(may_run)
        self.estop_button.setVisible(may_run)
        self.safety_bar.setVisible(may_run)
        # shown from the loss until the next connect (a Disconnect after the loss stops nothing either)
        if status.state == "lost" and status.coast_s > 0:
            self.unreachable_label.setText(
                f"robot unreachable since {time.strftime('%H:%M:%S', time.localtime(status.lost_at))}: it may still be moving "
                f"(about {status.coast_s:.0f} s, the firmware's motor decay; the host cannot stop it now)")
            self.unreachable_label.setVisible(True)
        elif status.state in ("connecting", "connected"):
            self.unreachable_label.setVisible(False)
        self.arena_box.setVisible(self.robot.simulator is not None)
        if not connected:
            self._set_sliders(0, 0, send=False)
            self._arena_range = None

    def _show_sensor(self, reading: SensorReading) -> None:
        sensors = self.robot.sensors
        if reading.sensor == SENSOR_BATTERY and reading.values:
            self.battery_label.setText(f"{reading.values[0]} mV")
        elif reading.sensor in (SENSOR_ADC0, SENSOR_ADC0 + 1):
            left, right = sensors.get(SENSOR_ADC0), sensors.get(SENSOR_ADC0 + 1)
            self.light_label.setText(
                f"{left.values[0] if left and left.values else '–'} / {right.values[0] if right and right.values else '–'}"
            )
        elif reading.sensor == SENSOR_WHEEL_TICKS and len(reading.values) >= 2:
            self.ticks_label.setText(f"{reading.values[0]} / {reading.values[1]}")

    def _show_command(self, left: int, right: int, origin: str) -> None:
        self.command_label.setText(f"command {left} / {right} ({origin})")

    def _show_safety_stop(self, reason: str) -> None:
        self.safety_label.setText(f"  motors stopped: {reason}")
        self.command_label.setText(f"command 0 / 0 ({reason})")
        self._set_sliders(0, 0, send=False)

    def _show_loop(self, running: bool, message: str) -> None:
        self.loop_label.setText(message)
        connected = self.robot.connected
        self.start_button.setEnabled(connected and not running)
        self.stop_button.setEnabled(running)
        self.network_box.setEnabled(not running)
        for widget in (self.left_slider, self.right_slider, self.zero_button):
            widget.setEnabled(connected and not running)

    def _show_step(self, step: PhototaxisStep) -> None:
        now = time.monotonic()
        if now - self._last_step_drawn < STEP_DRAW_INTERVAL_S:
            return  # the loop runs at up to 100 Hz; people read ~10 updates a second
        self._last_step_drawn = now
        column = "–" if math.isnan(step.led_column) else f"{step.led_column:.1f} (centre {IMAGE_CENTRE:.1f})"
        self.led_label.setText(f"LED column: {column}")
        self.loop_label.setText(
            f"t = {step.t_s:.1f} s   motor neurons {step.motor_left_hz:.0f} / {step.motor_right_hz:.0f} Hz"
            f"   command {step.command_left} / {step.command_right}"
        )
        n = len(step.left_neuron_hz)
        self.left_bars.setOpts(x=np.arange(n), height=step.left_neuron_hz, width=0.8)
        self.right_bars.setOpts(x=np.arange(n, n + len(step.right_neuron_hz)) + 1, height=step.right_neuron_hz, width=0.8)

    def _refresh_views(self) -> None:
        if not self.robot.connected or not self.isVisible():
            return
        on, off, rate = self.robot.frame.snapshot()
        on = np.clip(on / 3.0, 0.0, 1.0)[..., None]
        off = np.clip(off / 3.0, 0.0, 1.0)[..., None]
        rgb = np.clip(on * _ON_COLOUR + off * _OFF_COLOUR, 0, 255).astype(np.uint8)
        self.dvs_image.setImage(rgb, autoLevels=False, levels=(0, 255))
        self.rate_label.setText(f"{rate:,.0f} ev/s")
        noise = self.robot.link_noise()
        if (noise or "link: clean") != self.link_label.text():
            self.link_label.setText(noise or "link: clean")
            self.link_label.setStyleSheet("color: #c0392b" if noise else "")
        arena = self.robot.arena()
        if arena is not None:
            x, y, heading = arena.pose
            self.led_marker.setData([arena.led_xy[0]], [arena.led_xy[1]])
            self.robot_marker.setData([x], [y])
            self.heading_line.setData([x, x + 0.15 * math.cos(heading)], [y, y + 0.15 * math.sin(heading)])
            self.path_curve.setData(arena.path[:, 0], arena.path[:, 1])
            self._fit_arena(np.vstack([arena.path, [arena.led_xy, (x, y)]]))

    def _fit_arena(self, points: np.ndarray) -> None:
        """Keep the LED, the robot and its path in view (the range only grows, so it does not jitter)."""
        lo, hi = points.min(axis=0) - 0.3, points.max(axis=0) + 0.3
        if self._arena_range is not None:
            lo, hi = np.minimum(lo, self._arena_range[0]), np.maximum(hi, self._arena_range[1])
            if np.array_equal(lo, self._arena_range[0]) and np.array_equal(hi, self._arena_range[1]):
                return
        self._arena_range = (lo, hi)
        self.arena.setRange(xRange=(lo[0], hi[0]), yRange=(lo[1], hi[1]), padding=0)
