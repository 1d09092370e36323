"""Model and conversion panel: load or train a network, constrain it, see weights, mapping and accuracies.

Everything runs in :class:`~neurolab_gui.core.session_tasks.BackgroundTask` s
(never on the GUI thread) with a progress bar and a cancel button; results go
into the session (``session.set_model`` / ``session.set_conversion``), which the
panel and the raster's RNN-layer selection follow.  The work functions are the
conversion developer's (``neurolab_gui.core.conversion``) and the calibration
developer's (``neurolab_gui.core.calibration``); this panel only calls them.
"""

from __future__ import annotations

import importlib
import threading

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from neurolab_gui.core.session import Session
from neurolab_gui.core.session_tasks import BackgroundTask

from ..bridge import relay
from ..errors import ErrorReporter


class ModelPanel(QWidget):
    def __init__(self, session: Session, reporter: ErrorReporter, transfer_panel=None) -> None:
        super().__init__()
        self.session = session
        self.reporter = reporter
        self.transfer_panel = transfer_panel
        self.task: BackgroundTask | None = None
        self.constrained = None
        # model source
        self.load_button = QPushButton("Load checkpoint…")
        self.task_combo = QComboBox()
        self.task_combo.addItems(["seq_digits", "ecg", "mnist1d"])
        self.hidden_spin = QSpinBox(prefix="hidden ", minimum=2, maximum=1024, value=64)
        self.epochs_spin = QSpinBox(prefix="epochs ", minimum=1, maximum=1000, value=10)
        self.train_button = QPushButton("Train")
        # constraints
        self.fan_in_spin = QSpinBox(minimum=1, maximum=64, value=64)
        self.groups_spin = QSpinBox(minimum=1, maximum=16, value=3)
        self.qat_spin = QSpinBox(minimum=0, maximum=200, value=5)
        self.constrain_button = QPushButton("Constrain")
        # calibration
        self.calibrate_button = QPushButton("Start calibration")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("no model loaded")

        src = QGroupBox("Network")
        sl = QHBoxLayout(src)
        for w in (self.load_button, self.task_combo, self.hidden_spin, self.epochs_spin, self.train_button):
            sl.addWidget(w)
        con = QGroupBox("Constraints")
        cf = QFormLayout(con)
        cf.addRow("max fan-in (CAM entries)", self.fan_in_spin)
        cf.addRow("core groups (weight scales)", self.groups_spin)
        cf.addRow("QAT epochs", self.qat_spin)
        cf.addRow(self.constrain_button)
        run = QHBoxLayout()
        for w in (self.calibrate_button, self.cancel_button, self.progress):
            run.addWidget(w)

        self.graphics = pg.GraphicsLayoutWidget()
        self.before_plot = self.graphics.addPlot(title="weights before quantisation")
        self.after_plot = self.graphics.addPlot(title="after (scale × CAM copies)")
        self.mapping_plot = self.graphics.addPlot(title="RNN units → core groups")
        self.before_img, self.after_img, self.mapping_img = pg.ImageItem(), pg.ImageItem(), pg.ImageItem()
        self.before_plot.addItem(self.before_img)
        self.after_plot.addItem(self.after_img)
        self.mapping_plot.addItem(self.mapping_img)
        cmap = pg.colormap.get("CET-D1")
        for img in (self.before_img, self.after_img):
            img.setColorMap(cmap)
        self.mapping_img.setColorMap(pg.colormap.get("CET-C6"))
        self.accuracy_table = QTableWidget(0, 3)
        self.accuracy_table.setHorizontalHeaderLabels(["stage", "accuracy", "spikes/inference"])

        layout = QVBoxLayout(self)
        layout.addWidget(src)
        layout.addWidget(con)
        layout.addLayout(run)
        layout.addWidget(self.status)
        layout.addWidget(self.graphics, 2)
        layout.addWidget(self.accuracy_table, 1)

        self.load_button.clicked.connect(self.load_dialog)
        self.train_button.clicked.connect(lambda: self.start_training())
        self.constrain_button.clicked.connect(lambda: self.start_constrain())
        self.calibrate_button.clicked.connect(lambda: self.start_calibration())
        self.cancel_button.clicked.connect(self.cancel)
        relay(session.model_changed, self._show_model, self)
        relay(session.conversion_changed, self._show_conversion, self)
        self._calibration = self._find_calibration()
        if self._calibration is None:
            self.calibrate_button.setEnabled(False)
            self.calibrate_button.setToolTip("the calibration engine (neurolab_gui.core.calibration) is not in this build")

    @staticmethod
    def _find_calibration():
        try:
            return importlib.import_module("neurolab_gui.core.calibration")
        except ModuleNotFoundError:
            return None

    # --- tasks ------------------------------------------------------------------------------
    def _run(self, name: str, work, on_done) -> BackgroundTask:
        if self.task is not None and not self.task.done:
            raise RuntimeError(f"{self.task.name} is still running; cancel it first")
        task = BackgroundTask(name, work)
        self.task = task
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        relay(task.progress, lambda f, msg: (self.progress.setValue(int(100 * f)), self.status.setText(f"{name}: {msg}")), self)
        relay(task.finished, lambda r: (self._done(f"{name} finished"), on_done(r)), self)
        relay(task.cancelled_signal, lambda: self._done(f"{name} cancelled"), self)
        relay(task.failed, lambda exc: (self._done(f"{name} failed"), self.reporter.report(exc, name)), self)
        return task.start()

    def _done(self, text: str) -> None:
        self.cancel_button.setEnabled(False)
        self.status.setText(text)

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()

    @staticmethod
    def _cancel_event(cancelled) -> threading.Event:
        """The conversion API takes a threading.Event; mirror the task's cancel flag into one."""
        event = threading.Event()

        def watch() -> None:
            while not event.is_set():
                if cancelled():
                    event.set()
                    return
                threading.Event().wait(0.1)

        threading.Thread(target=watch, daemon=True).start()
        return event

    def start_training(self, n_train: int | None = None) -> BackgroundTask:
        from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
        from neurolab_gui.core.conversion.tasks import load_task
        from neurolab_gui.core.conversion.training import TrainConfig, train

        task_name, hidden, epochs = self.task_combo.currentText(), self.hidden_spin.value(), self.epochs_spin.value()

        def work(progress, cancelled):
            task = load_task(task_name)
            if n_train is not None:  # a quick run (tests, demos)
                task.x_train, task.y_train, task.lengths_train = task.x_train[:n_train], task.y_train[:n_train], task.lengths_train[:n_train]
            model = RateRNN(RNNConfig(task.x_train.shape[2], hidden, task.n_classes))
            cancel = self._cancel_event(cancelled)
            try:
                train(model, task, TrainConfig(epochs=epochs), progress=progress, cancel=cancel)
            finally:
                cancel.set()
            self._task_data = task
            return model

        return self._run("training", work, self.session.set_model)

    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self.load_checkpoint(path)

    def load_checkpoint(self, path: str) -> None:
        from neurolab_gui.core.conversion.checkpoint import load_checkpoint

        try:
            loaded = load_checkpoint(path)
        except (ValueError, OSError) as exc:
            self.reporter.report(exc, f"could not load {path}")
            return
        self.session.set_model(loaded.model)

    def start_constrain(self) -> BackgroundTask:
        from neurolab_gui.core.conversion.constrain import ConstraintConfig, constrain
        from neurolab_gui.core.conversion.tasks import load_task
        from neurolab_gui.core.conversion.training import TrainConfig

        model = self.session.model
        if model is None:
            raise RuntimeError("load or train a model first")
        config = ConstraintConfig(max_fan_in=self.fan_in_spin.value(), n_core_groups=self.groups_spin.value(),
                                  qat=TrainConfig(epochs=self.qat_spin.value(), lr=2e-3))
        task_name = self.task_combo.currentText()

        def work(progress, cancelled):
            data = getattr(self, "_task_data", None) or load_task(task_name)
            cancel = self._cancel_event(cancelled)
            try:
                return constrain(model, data, config, progress=progress, cancel=cancel)
            finally:
                cancel.set()

        return self._run("constrain", work, self._show_constrained)

    def start_calibration(self) -> BackgroundTask | None:
        # The calibration engine (neurolab_gui.core.calibration) had not landed when this panel was
        # written; until it is wired here the button stays disabled and this reports why.
        self.reporter.report(RuntimeError("the calibration engine is not wired into this build"), "calibration")
        return None

    # --- views -------------------------------------------------------------------------------
    def _show_model(self, model) -> None:
        if model is None:
            self.status.setText("no model loaded")
            return
        from neurolab_gui.core.conversion.constrain import stacked_weights

        w = stacked_weights(model)
        self._set_weights(self.before_img, w)
        cfg = getattr(model, "config", None)
        self.status.setText(f"model: {cfg}" if cfg is not None else "model loaded")

    @staticmethod
    def _set_weights(img: pg.ImageItem, w: np.ndarray) -> None:
        top = float(np.abs(w).max()) or 1.0
        img.setImage(np.asarray(w, np.float32).T, levels=(-top, top), autoLevels=False)

    def _show_constrained(self, constrained) -> None:
        self.constrained = constrained
        self._set_weights(self.after_img, constrained.weights())
        groups = np.asarray(constrained.unit_group, np.float32)
        side = int(np.ceil(np.sqrt(len(groups))))
        grid = np.full(side * side, np.nan, np.float32)
        grid[: len(groups)] = groups
        self.mapping_img.setImage(grid.reshape(side, side).T, levels=(0, max(1, groups.max())), autoLevels=False)
        self.mapping_plot.setTitle(f"{len(groups)} units → {len(constrained.scale)} core groups")
        self.session.set_conversion(constrained)

    def _show_conversion(self, result) -> None:
        accuracies = getattr(result, "stages", None)
        if accuracies is None:
            return
        self.accuracy_table.setRowCount(len(accuracies))
        for i, s in enumerate(accuracies):
            spikes = "-" if s.spikes_per_inference is None else f"{s.spikes_per_inference:.0f}"
            for j, text in enumerate((s.name, f"{s.accuracy:.4f}", spikes)):
                self.accuracy_table.setItem(i, j, QTableWidgetItem(text))
