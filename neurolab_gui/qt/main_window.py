"""The main window: connection bar, dockable panels, status bar, shortcuts, saved layout.

Panels are ``QDockWidget`` s of a ``QMainWindow``; their arrangement (and the window
geometry) is saved with ``saveState``/``saveGeometry`` into a small JSON file
(base64 blobs plus a version) and restored at start.  The window holds no
application logic: every action calls the :class:`~neurolab_gui.core.session.Session`.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from concurrent.futures import Future
from pathlib import Path

from PyQt6.QtCore import QByteArray, QEvent, QObject, QStandardPaths, Qt, QTimer
from PyQt6.QtGui import QAction, QGuiApplication, QKeyEvent, QKeySequence
from PyQt6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QCheckBox,
    QComboBox,
    QDockWidget,
    QFileDialog,
    QLabel,
    QMainWindow,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QToolBar,
    QWidget,
)

from drivers.user_files import read_regular, write_replacing
from neurolab_gui.core.connection import EMULATOR, ConnectionStatus, ConnectionTarget, list_boards
from neurolab_gui.core.periodic import Periodic
from neurolab_gui.core.recording import failure_cause
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_file import DamagedSegmentsError, segments_dir

from .bridge import relay
from .dock_style import dock_title_style
from .errors import ErrorReporter
from .panels.bias_panel import BiasPanel
from .panels.console_panel import ConsolePanel
from .panels.log_panel import LogPanel
from .panels.membrane_panel import MembranePanel
from .panels.model_panel import ModelPanel
from .panels.raster_panel import RasterPanel
from .panels.replay_panel import ReplayPanel
from .panels.robot_panel import RobotPanel
from .panels.stimulus_panel import StimulusPanel
from .panels.transfer_panel import TransferPanel

log = logging.getLogger(__name__)

WINDOW_TITLE = "NeuroLab"
LAYOUT_VERSION = 1
#: A saved layout is a few kB (geometry, dock state, raster settings); anything far larger is not one.
MAX_LAYOUT_BYTES = 1 << 20


class _SpaceForFocusedControls(QObject):
    """Give Space to a focused control that takes it, not to the window's "Pause raster" shortcut.

    An application event filter on ``ShortcutOverride``: accepting it for a button, check box,
    combo box or list makes Qt deliver the key press to that control (Space presses a button,
    as keyboard users expect) instead of firing the shortcut.  Text fields claim Space already.
    Only while the pause action holds Space: while a robot's motors may run Space is its e-stop,
    which must fire whatever has the focus (see ``RobotPanel``).
    """

    TAKES_SPACE = (QAbstractButton, QComboBox, QAbstractItemView)

    def __init__(self, window: QMainWindow, pause: QAction) -> None:
        super().__init__(window)
        self.pause = pause

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:  # noqa: N802 (Qt's name)
        if (
            event.type() == QEvent.Type.ShortcutOverride
            and isinstance(obj, self.TAKES_SPACE)
            and isinstance(event, QKeyEvent)
            and event.key() == Qt.Key.Key_Space
            and event.modifiers() == Qt.KeyboardModifier.NoModifier
            and self.pause.shortcut().matches(QKeySequence(Qt.Key.Key_Space)) == QKeySequence.SequenceMatch.ExactMatch
        ):
            event.accept()
        return False


def free_recording_name(folder: Path, stem: str = "session") -> Path:
    """``folder/session.h5``, or the first ``session-N.h5`` with neither the file nor its segments folder."""
    for n in range(10_000):
        path = folder / (f"{stem}.h5" if n == 0 else f"{stem}-{n}.h5")
        if not path.exists() and not segments_dir(path).exists():
            return path
    return folder / f"{stem}.h5"  # (the recorder will say it exists)


#: The smallest window every control still fits in (a 1366 x 768 laptop screen, less a task bar).
MINIMUM_SIZE = (1024, 640)

#: Windows shorter than this start with the console and log tabbed beside the left-hand panels.
COMPACT_BELOW_HEIGHT = 900

#: How long a thread may hold the GIL while another waits for it (Python's default is 5 ms).
#: Drawing a frame calls from Qt into Python dozens of times (paint, bounds, axes), and every call
#: takes the GIL again: while worker threads run Python (a robot loop, its simulator, an
#: in-process emulator) each call could wait a full interval, so a frame of 50 calls could wait
#: 250 ms.  1 ms cuts that wait fivefold for a small cost in the workers' throughput.
GIL_SWITCH_INTERVAL_S = 0.001


def default_size() -> tuple[int, int]:
    """1600 x 1000, or the screen's free area when that is smaller (never below the minimum)."""
    screen = QGuiApplication.primaryScreen()
    free = screen.availableGeometry() if screen is not None else None
    width, height = (1600, 1000) if free is None else (min(1600, free.width()), min(1000, free.height()))
    return max(width, MINIMUM_SIZE[0]), max(height, MINIMUM_SIZE[1])


def default_layout_path() -> Path:
    base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppConfigLocation) or str(Path.home() / ".config")
    return Path(base) / "neurolab" / "layout.json"


class ConnectionBar(QToolBar):
    """Choose a board (emulator with seed/mismatch, or a real DYNAP-SE1), connect, disconnect."""

    def __init__(self, session: Session, parent: QWidget | None = None) -> None:
        super().__init__("Connection", parent)
        self.setObjectName("connection_bar")
        self.session = session
        self.board_combo = QComboBox()
        self.board_combo.setToolTip("board to connect: the emulator or a DYNAP-SE1 found on USB")
        self.seed_spin = QSpinBox()
        self.seed_spin.setRange(0, 2**31 - 1)
        self.seed_spin.setPrefix("seed ")
        self.seed_spin.setToolTip("mismatch seed of the emulated board")
        self.mismatch_check = QCheckBox("mismatch")
        self.mismatch_check.setChecked(True)
        self.mismatch_check.setToolTip("emulate the chip's device mismatch (off: every neuron and synapse ideal)")
        self.refresh_button = QPushButton("Rescan")
        self.refresh_button.setToolTip("look for DYNAP-SE1 boards on the USB bus again (F5)")
        self.connect_button = QPushButton("Connect")
        self.connect_button.setToolTip("open the chosen board and start streaming its events (Ctrl+K); runs in the background")
        self.disconnect_button = QPushButton("Disconnect")
        self.disconnect_button.setToolTip("stop streaming and close the board (Ctrl+D)")
        self.record_button = QPushButton("Record")
        self.record_button.setCheckable(True)
        self.record_button.setToolTip("record events, stimulus and bias changes to an HDF5 file (Ctrl+R)")
        for w in (QLabel(" Board "), self.board_combo, self.seed_spin, self.mismatch_check, self.refresh_button,
                  self.connect_button, self.disconnect_button, self.record_button):
            self.addWidget(w)
        self.refresh_button.clicked.connect(self.refresh)
        self.connect_button.clicked.connect(self.connect_selected)
        # closing waits for the board's reader and its running job: on a worker, never on this thread
        self.disconnect_button.clicked.connect(lambda: self.session.disconnect_in_background())
        self.board_combo.currentIndexChanged.connect(self._update_emulator_controls)
        self.refresh()

    def refresh(self) -> None:
        current = self.board_combo.currentData()
        self.board_combo.clear()
        for choice in list_boards():
            self.board_combo.addItem(choice.label, choice.serial if choice.kind == "usb" else EMULATOR)
            if not choice.accessible:
                self.board_combo.setItemData(self.board_combo.count() - 1, choice.problem, Qt.ItemDataRole.ToolTipRole)
        if current is not None:
            i = self.board_combo.findData(current)
            if i >= 0:
                self.board_combo.setCurrentIndex(i)

    def _update_emulator_controls(self) -> None:
        emulator = self.board_combo.currentData() == EMULATOR
        self.seed_spin.setEnabled(emulator)
        self.mismatch_check.setEnabled(emulator)

    def select(self, board: str, seed: int, mismatch: bool) -> None:
        i = self.board_combo.findData(board)
        if i < 0:  # a serial given on the command line that is not plugged in (yet): offer it anyway
            self.board_combo.addItem(f"DYNAP-SE1 {board} (not found)", board)
            i = self.board_combo.count() - 1
        self.board_combo.setCurrentIndex(i)
        self.seed_spin.setValue(seed)
        self.mismatch_check.setChecked(mismatch)

    def target(self) -> ConnectionTarget:
        return ConnectionTarget(
            self.board_combo.currentData() or EMULATOR,
            self.seed_spin.value(),
            self.mismatch_check.isChecked(),
            separate_process=self.session.emulator_in_separate_process,
        )

    def connect_selected(self) -> Future:
        """Open the chosen board on a worker thread (the window stays responsive); a future of the bool result."""
        return self.session.connection.connect_in_background(self.target())


class MainWindow(QMainWindow):
    """The NeuroLab main window.

    Parameters
    ----------
    session : the application core this window shows
    layout_path : where the dock layout is saved on close and restored on start
    reporter : error reporter (created and installed here when not given)
    """

    def __init__(self, session: Session, layout_path: Path | None = None, reporter: ErrorReporter | None = None) -> None:
        super().__init__()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        self.session = session
        self.setWindowTitle(WINDOW_TITLE)
        self.setMinimumSize(*MINIMUM_SIZE)
        self.resize(*default_size())
        self.setDockNestingEnabled(True)
        self.layout_path = Path(layout_path) if layout_path is not None else default_layout_path()
        self.reporter = reporter or ErrorReporter(self)

        self.connection_bar = ConnectionBar(session, self)
        self.addToolBar(self.connection_bar)
        self.connection_bar.record_button.toggled.connect(self._toggle_recording)

        self.log_panel = LogPanel(self.reporter)
        self.bias_panel = BiasPanel(session)
        self.raster_panel = RasterPanel(session)
        self.transfer_panel = TransferPanel(session, self.reporter)
        self.membrane_panel = MembranePanel(session)
        self.stimulus_panel = StimulusPanel(session, self.reporter)
        self.model_panel = ModelPanel(session, self.reporter, self.transfer_panel)
        self.console_panel = ConsolePanel(session)
        self.replay_panel = ReplayPanel(session, self.reporter)
        self.robot_panel = RobotPanel(session.robot, self.reporter)
        self.docks: dict[str, QDockWidget] = {}
        area = Qt.DockWidgetArea
        self._add_dock("bias", "Biases", self.bias_panel, area.LeftDockWidgetArea)
        self._add_dock("raster", "Raster", self.raster_panel, area.RightDockWidgetArea)
        self._add_dock("transfer", "Transfer curves", self.transfer_panel, area.RightDockWidgetArea)
        self._add_dock("membrane", "Membrane", self.membrane_panel, area.RightDockWidgetArea)
        self._add_dock("model", "Model and conversion", self.model_panel, area.LeftDockWidgetArea, scroll=True)
        self._add_dock("stimulus", "Stimulus", self.stimulus_panel, area.LeftDockWidgetArea, scroll=True)
        self._add_dock("console", "Console", self.console_panel, area.BottomDockWidgetArea)
        self._add_dock("log", "Log", self.log_panel, area.BottomDockWidgetArea)
        self._add_dock("replay", "Replay", self.replay_panel, area.BottomDockWidgetArea)
        self._add_dock("robot", "Robot", self.robot_panel, area.RightDockWidgetArea, scroll=True)
        self.addToolBar(self.robot_panel.safety_bar)  # the e-stop, shown while a robot is connected
        self.tabifyDockWidget(self.docks["transfer"], self.docks["membrane"])
        self.tabifyDockWidget(self.docks["membrane"], self.docks["robot"])
        # the left column is one tab group, so the bias tree gets its full height
        self.tabifyDockWidget(self.docks["bias"], self.docks["model"])
        self.tabifyDockWidget(self.docks["model"], self.docks["stimulus"])
        self.tabifyDockWidget(self.docks["console"], self.docks["log"])
        self.tabifyDockWidget(self.docks["log"], self.docks["replay"])
        if self.height() < COMPACT_BELOW_HEIGHT:
            # a laptop screen: console, log and replay join the left tab group, so the raster and the
            # transfer curves get the right column's full height
            for key in ("console", "log", "replay"):
                self.tabifyDockWidget(self.docks["stimulus"], self.docks[key])
        self.docks["transfer"].raise_()
        self.docks["console"].raise_()
        self.docks["bias"].raise_()

        self.raster_panel.neuron_clicked.connect(self.watch_membrane)

        self._build_status_bar()
        self._build_menus()
        relay(session.connection.status_changed, self._show_status, self)
        relay(session.recording_changed, self._on_recording_changed, self)
        relay(session.recording_finished, self._on_recording_finished, self)
        relay(session.spikes.invalid_events_found, self._on_invalid_events, self)
        # the poll asks the board (an emulator's child process may take a while to answer): never on this thread
        self._status_poller = Periodic("status-poll", 0.5, session.connection.poll_status).start()
        self._show_status(session.connection.status)

    # --- construction ----------------------------------------------------------------
    def _add_dock(self, key: str, title: str, widget: QWidget, area: Qt.DockWidgetArea, scroll: bool = False) -> None:
        """Add ``widget`` as a dock; ``scroll``: inside a scroll area, for panels taller than a laptop screen."""
        dock = QDockWidget(title, self)
        dock.setObjectName(f"dock_{key}")  # saveState identifies docks by objectName
        dock.setStyle(dock_title_style())  # the title's icons made once, not at every paint
        if scroll:
            area_widget = QScrollArea()
            area_widget.setWidgetResizable(True)
            area_widget.setFrameShape(QScrollArea.Shape.NoFrame)
            area_widget.setWidget(widget)
            dock.setWidget(area_widget)
        else:
            dock.setWidget(widget)
        self.addDockWidget(area, dock)
        self.docks[key] = dock

    def _build_status_bar(self) -> None:
        bar = self.statusBar()
        self.state_label = QLabel()
        self.rate_label = QLabel()
        self.counter_label = QLabel()
        self.lag_label = QLabel()
        self.recording_label = QLabel()
        tips = ("connection state and board (hover: the last message)", "events per second received from the board",
                "events the board dropped, corrupt USB words skipped, and timestamps that went back (events kept)", "how far the emulator's simulated time trails the wall clock",
                "the file being recorded")
        # Widths fit the longest text each label shows, so nothing is clipped when the bar is short of room.
        widest = ("connected: emulator (seed 2147483647, mismatch off, realtime clock)", "9,999,999 ev/s",
                  "dropped 9,999,999  corrupt 9,999,999  ts back 9,999,999", "emulator lag 9999 ms", "")
        metrics = self.fontMetrics()
        for w, tip, text in zip((self.state_label, self.rate_label, self.counter_label, self.lag_label, self.recording_label),
                                tips, widest, strict=True):
            w.setToolTip(tip)
            if text:
                w.setMinimumWidth(metrics.horizontalAdvance(text) + 8)
            bar.addPermanentWidget(w)

    def _action(self, menu, text: str, slot, shortcut: str | QKeySequence.StandardKey | None = None) -> QAction:
        action = QAction(text, self)
        if shortcut is not None:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        menu.addAction(action)
        self.addAction(action)
        return action

    def _build_menus(self) -> None:
        mb = self.menuBar()
        file = mb.addMenu("&File")
        self.open_recording_action = self._action(file, "&Open recording…", self.open_recording_dialog, "Ctrl+Shift+O")
        board = mb.addMenu("&Board")
        self.connect_action = self._action(board, "&Connect", self.connection_bar.connect_selected, "Ctrl+K")
        self._action(board, "&Reconnect", self._reconnect, "Ctrl+Shift+K")
        self._action(board, "&Disconnect", lambda: self.session.disconnect_in_background(), "Ctrl+D")
        self._action(board, "Re&scan boards", self.connection_bar.refresh, "F5")
        self.record_action = self._action(board, "Start/stop &recording", self.connection_bar.record_button.toggle, "Ctrl+R")
        board.addSeparator()
        self._action(board, "&Quit", self.close, QKeySequence.StandardKey.Quit)
        biases = mb.addMenu("B&iases")
        self.undo_action = self._action(biases, "&Undo bias change", self.bias_panel.undo, QKeySequence.StandardKey.Undo)
        self.redo_action = self._action(biases, "&Redo bias change", self.bias_panel.redo, QKeySequence.StandardKey.Redo)
        self._action(biases, "&Save bias set…", self.bias_panel.save_dialog, QKeySequence.StandardKey.Save)
        self._action(biases, "&Load bias set…", self.bias_panel.load_dialog, QKeySequence.StandardKey.Open)
        view = mb.addMenu("&View")
        pause = self._action(view, "&Pause/resume raster", self.raster_panel.toggle_pause, "Space")
        # while a robot's motors may run, Space is its e-stop (an application shortcut of the robot
        # panel); two shortcuts on one key would be ambiguous and neither would fire
        self.robot_panel.estop_keys_changed.connect(lambda on: pause.setShortcut(QKeySequence() if on else QKeySequence("Space")))
        self.pause_action = pause
        # a focused button or check box takes Space (pressing it), the raster's shortcut does not
        QApplication.instance().installEventFilter(_SpaceForFocusedControls(self, pause))
        self._action(view, "&Save layout", lambda: self.save_layout(), "Ctrl+Shift+S")
        self._action(view, "&Restore layout", lambda: self.restore_layout(), "Ctrl+Shift+L")
        view.addSeparator()
        for i, dock in enumerate(self.docks.values()):
            action = dock.toggleViewAction()
            if i < 10:  # Alt+1 .. Alt+9, then Alt+0 as on the keyboard's digit row ("Alt+10" is no key)
                action.setShortcut(QKeySequence(f"Alt+{(i + 1) % 10}"))
            view.addAction(action)

    def watch_membrane(self, global_id: int) -> None:
        """Show the membrane of a board-wide neuron (a click on its raster row)."""
        self.membrane_panel.show_neuron(global_id)
        self.docks["membrane"].show()
        self.docks["membrane"].raise_()

    # --- status ---------------------------------------------------------------------------
    def _show_status(self, status: ConnectionStatus) -> None:
        self.state_label.setText(f"{status.state}: {status.target}" if status.target else status.state)
        self.state_label.setToolTip(status.message or "connection state and board")
        # a board being opened or closed: Connect again once that is done
        self.connection_bar.connect_button.setEnabled(status.state not in ("connecting", "disconnecting"))
        self.rate_label.setText(f"{status.event_rate_hz:,.0f} ev/s")
        fpga = "" if status.fpga_dropped_events is None else f" (FPGA {status.fpga_dropped_events:,})"
        back = f"  ts back {status.non_monotonic_timestamps:,}" if status.non_monotonic_timestamps else ""
        self.counter_label.setText(f"dropped {status.dropped_events:,}{fpga}  corrupt {status.corrupt_words:,}{back}")
        self.lag_label.setText("" if status.lag_s is None else f"emulator lag {status.lag_s * 1e3:.0f} ms")
        if status.message and status.state in ("error", "unplugged", "disconnected"):
            # the log panel has it already: the connection logs every failed open (once)
            self.statusBar().showMessage(status.message, 10_000)

    def _on_invalid_events(self, text: str) -> None:
        """The spike monitor dropped events outside the board: say so once (log panel and status
        bar); the raster's info line keeps the running count."""
        replay = self.session.replay
        message = f"{'replay of ' + str(replay.path) if replay is not None else 'board'}: {text}"
        log.warning("%s", message)
        self.statusBar().showMessage(message, 15_000)

    def _reconnect(self) -> None:
        if self.session.connection.target is None:
            self.connection_bar.connect_selected()
        else:
            self.session.connection.reconnect_in_background()

    # --- recording ---------------------------------------------------------------------------
    def _toggle_recording(self, on: bool) -> None:
        if on == (self.session.recording is not None):
            return
        if on:
            # A recording never replaces a file (the recorder refuses: a session file is an index
            # plus a segments folder the dialog does not show, and a crashed recording lives on only
            # in those segments), so the dialog must not offer to: no "replace?" question, the rule
            # in its title, and a free name to start from.
            path, _ = QFileDialog.getSaveFileName(
                self, "Record session to a new file (a recording never replaces one)", str(free_recording_name(Path.cwd())),
                "HDF5 (*.h5)", options=QFileDialog.Option.DontConfirmOverwrite)
            if not path:
                self.connection_bar.record_button.setChecked(False)
                return
            try:
                self.session.start_recording(path)
            except Exception as exc:
                self.connection_bar.record_button.setChecked(False)
                self.reporter.report(exc, "could not start recording")
        else:  # missing_ok: a writer that failed meanwhile has ended the recording (its box follows)
            self.session.stop_recording(missing_ok=True)

    def _on_recording_changed(self, path) -> None:
        self.recording_label.setText(f"● recording {Path(path).name}" if path else "finishing the recording…")
        if path and getattr(self, "_recording_timer", None) is None:
            self._recording_timer = QTimer(self)
            self._recording_timer.timeout.connect(self._show_recording)
            self._recording_timer.start(500)
        button = self.connection_bar.record_button
        button.blockSignals(True)
        button.setChecked(path is not None)
        button.blockSignals(False)

    def _show_recording(self) -> None:
        """While recording: events written and, loudly, any dropped (timer)."""
        status = self.session.recording_status()
        if status is not None and self.session.recording is not None:
            self.recording_label.setText(
                f"● recording {self.session.recording.name}: {status.written_events:,} events"
                + (f", {status.dropped_events:,} DROPPED" if status.dropped_events else "")
            )

    def _on_recording_finished(self, path, error) -> None:
        if error is not None:  # the session has ended the recording (recording_changed(None) came first)
            self.recording_label.setText(f"recording FAILED: {failure_cause(error)}")
            self.reporter.report(error, f"recording to {path} failed")
            return
        status = self.session.recording_status()
        dropped = status.dropped_events if status is not None else 0
        self.recording_label.setText(f"saved {Path(path).name}" + (f" ({dropped:,} events dropped)" if dropped else ""))

    def open_recording_dialog(self) -> None:
        """File → Open recording: replay a session file through the same panels as a live board."""
        path, _ = QFileDialog.getOpenFileName(self, "Open recording", "", "NeuroLab session (*.h5)")
        if not path:
            return
        try:
            # the board (if any) closes on a worker, never here: the replay bar follows replay_changed
            try:
                self.session.open_recording_in_background(path)
            except DamagedSegmentsError as exc:  # an intact index: the other segments can be read
                question = f"{exc.segments_phrase(of=Path(path).name)}: open the intact part?\n\n{exc}"
                answer = QMessageBox.question(self, "Open recording", question,
                                              QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
                                              QMessageBox.StandardButton.No)
                if answer != QMessageBox.StandardButton.Yes:
                    return  # declined: the board and any replay stay as they were
                self.session.open_recording_in_background(path, salvage=True)
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file raises (KeyError, IndexError from h5py/numpy): name the file
            self.reporter.report(exc, f"could not open the recording {path}")
            return
        self.docks["replay"].show()
        self.docks["replay"].raise_()

    # --- layout ----------------------------------------------------------------------------
    def layout_state(self) -> dict:
        return {
            "version": LAYOUT_VERSION,
            "state": base64.b64encode(bytes(self.saveState(LAYOUT_VERSION))).decode(),
            "geometry": base64.b64encode(bytes(self.saveGeometry())).decode(),
            "raster": self.raster_panel.settings(),
        }

    def save_layout(self, path: Path | None = None) -> Path:
        # Written beside it and renamed over it: an app killed mid-write leaves the old layout, and
        # whatever sits at the path (a FIFO would block a plain write, and so the app's exit) is
        # replaced, not written into.
        return write_replacing(path if path is not None else self.layout_path, json.dumps(self.layout_state(), indent=1))

    def restore_layout(self, path: Path | None = None) -> bool:
        """Restore a saved layout; False (and a log line) if the file is missing or unusable.

        The file is read at every start, so nothing in it may stop the window from coming up:
        an unreadable path (a directory, no permission), a document that is not a layout object,
        or values out of range are all logged and the default layout kept. The document is
        checked before anything is applied, so a bad file changes nothing.
        """
        path = Path(path) if path is not None else self.layout_path
        if not path.exists():
            return False
        try:
            doc = json.loads(read_regular(path, MAX_LAYOUT_BYTES, "a layout file"))  # not a FIFO or device: it is read at start-up
            if not isinstance(doc, dict):
                raise ValueError(f"the layout must be a JSON object, not {type(doc).__name__}")
            if doc.get("version") != LAYOUT_VERSION:
                raise ValueError(f"layout version {doc.get('version')!r} is not {LAYOUT_VERSION}")
            if not isinstance(doc.get("geometry"), str) or not isinstance(doc.get("state"), str):
                raise ValueError("geometry and state must be base64 strings")
            geometry = base64.b64decode(doc["geometry"], validate=True)
            state = base64.b64decode(doc["state"], validate=True)
            raster = doc.get("raster", {})
            if raster:  # first: it checks every value before it changes any
                self.raster_panel.apply_settings(raster)
            self.restoreGeometry(QByteArray(geometry))
            ok = self.restoreState(QByteArray(state), LAYOUT_VERSION)
        except (OSError, ValueError, RecursionError) as exc:  # UnicodeDecodeError, binascii.Error are ValueErrors
            log.warning("ignoring saved layout %s: %s", path, exc)
            return False
        return bool(ok)

    def closeEvent(self, event) -> None:
        try:
            self.save_layout()
        except OSError as exc:
            log.warning("could not save the layout: %s", exc)
        self._status_poller.stop()
        self.raster_panel.stop()
        self.membrane_panel.stop()
        self.replay_panel.stop()
        self.robot_panel.shutdown()
        super().closeEvent(event)
