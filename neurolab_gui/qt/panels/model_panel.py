"""Model and conversion panel: load or train a network, convert it, see weights, mapping and accuracies.

Everything long runs in a :class:`~neurolab_gui.core.session_tasks.BackgroundTask` (never on
the GUI thread) with a progress bar and a cancel button.  The work is the conversion
developer's pipeline (:mod:`neurolab_gui.core.conversion.pipeline`: ``train_model`` and
``convert``); results go into the session (``session.set_model`` / ``session.set_conversion``),
which this panel, the raster's "RNN layer" selection and the transfer panel follow.  What is
drawn is computed by :mod:`neurolab_gui.core.session_conversion`.

Calibration: "Start calibration" runs the calibration engine
(:func:`~neurolab_gui.core.calibration.board_calibration.calibrate_board`) on every core the
mapped network uses (or the transfer panel's core when nothing is mapped), with its
intermediate transfer curves growing live in the transfer panel; network-level calibration with
the stage accuracies is ``neurolab calibrate --task`` (or the calibration API).
"""

from __future__ import annotations

import threading

import numpy as np
import pyqtgraph as pg
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
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
from neurolab_gui.core.session_conversion import accuracy_rows, mapping_image
from neurolab_gui.core.session_tasks import BackgroundTask

from ..bridge import relay
from ..errors import ErrorReporter

ACCURACY_COLUMNS = ["stage", "accuracy", "loss vs constr.", "spikes/inf", "syn. events/inf", "samples", "note"]
SPIKING_STAGES = ("brian2", "board_ideal", "board_mismatch")


class ModelPanel(QWidget):
    """Network source, constraints, conversion, calibration, and the views of their results.

    Parameters
    ----------
    session : the application session (model, task and conversion live there)
    reporter : where background errors go
    transfer_panel : the transfer-curve panel that shows calibration sweeps live (optional)
    """

    def __init__(self, session: Session, reporter: ErrorReporter, transfer_panel=None) -> None:
        super().__init__()
        from neurolab_gui.core.conversion.tasks import BUILTIN_TASKS

        self.session = session
        self.reporter = reporter
        self.transfer_panel = transfer_panel
        self.task: BackgroundTask | None = None
        # network source
        self.load_button = QPushButton("Load checkpoint…")
        self.task_combo = QComboBox()
        self.task_combo.addItems(list(BUILTIN_TASKS))
        self.hidden_spin = QSpinBox(prefix="hidden ", minimum=2, maximum=1024, value=64)
        self.epochs_spin = QSpinBox(prefix="epochs ", minimum=0, maximum=1000, value=30)
        self.train_button = QPushButton("Train")
        # constraints and conversion
        self.fan_in_spin = QSpinBox(minimum=1, maximum=64, value=63)
        self.fan_in_spin.setToolTip("CAM entries per neuron for the network (one is kept for the reset channel)")
        self.groups_spin = QSpinBox(minimum=1, maximum=4, value=3)
        self.qat_spin = QSpinBox(minimum=0, maximum=200, value=10)
        self.stage_checks = {name: QCheckBox(name) for name in SPIKING_STAGES}
        for name in ("board_ideal", "board_mismatch"):
            self.stage_checks[name].setChecked(True)
        self.samples_spin = QSpinBox(minimum=1, maximum=100_000, value=200)
        self.samples_spin.setToolTip("test sequences run on the spiking stages")
        self.convert_button = QPushButton("Convert")
        # calibration
        self.calibrate_button = QPushButton("Start calibration")
        self.calibrate_button.setToolTip(
            "Tune the cores in use from the samna_recommended set and fit every neuron's f–I curve "
            "(curves live in the transfer panel)"
        )
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.status = QLabel("no model loaded")

        src = QGroupBox("Network")
        sl = QHBoxLayout(src)
        for w in (self.load_button, self.task_combo, self.hidden_spin, self.epochs_spin, self.train_button):
            sl.addWidget(w)
        con = QGroupBox("Constraints and conversion")
        cf = QFormLayout(con)
        cf.addRow("max fan-in (CAM entries)", self.fan_in_spin)
        cf.addRow("core groups (weight scales)", self.groups_spin)
        cf.addRow("QAT epochs", self.qat_spin)
        stages = QHBoxLayout()
        for check in self.stage_checks.values():
            stages.addWidget(check)
        cf.addRow("spiking stages", stages)
        cf.addRow("test samples (spiking)", self.samples_spin)
        cf.addRow(self.convert_button)
        run = QHBoxLayout()
        for w in (self.calibrate_button, self.cancel_button, self.progress):
            run.addWidget(w)

        self.graphics = pg.GraphicsLayoutWidget()
        self.before_plot = self.graphics.addPlot(title="weights before quantisation")
        self.after_plot = self.graphics.addPlot(title="after (scale × CAM copies)")
        self.graphics.nextRow()
        self.mapping_plot = self.graphics.addPlot(title="RNN units on the chip", colspan=2)
        self.mapping_plot.setLabel("bottom", "core 0 | core 1 | core 2 | core 3 (16 × 16 neurons each)")
        self.mapping_plot.hideAxis("left")
        self.before_img, self.after_img, self.mapping_img = pg.ImageItem(), pg.ImageItem(), pg.ImageItem()
        self.before_plot.addItem(self.before_img)
        self.after_plot.addItem(self.after_img)
        self.mapping_plot.addItem(self.mapping_img)
        self.mapping_plot.setAspectLocked(True)
        cmap = pg.colormap.get("CET-D1")
        for img in (self.before_img, self.after_img):
            img.setColorMap(cmap)
        self.accuracy_table = QTableWidget(0, len(ACCURACY_COLUMNS))
        self.accuracy_table.setHorizontalHeaderLabels(ACCURACY_COLUMNS)
        self.accuracy_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.accuracy_table.horizontalHeader().setStretchLastSection(True)

        layout = QVBoxLayout(self)
        layout.addWidget(src)
        layout.addWidget(con)
        layout.addLayout(run)
        layout.addWidget(self.status)
        layout.addWidget(self.graphics, 2)
        layout.addWidget(self.accuracy_table, 1)

        self.load_button.clicked.connect(self.load_dialog)
        self.train_button.clicked.connect(lambda: self._guarded(self.start_training))
        self.convert_button.clicked.connect(lambda: self._guarded(self.start_conversion))
        self.calibrate_button.clicked.connect(lambda: self._guarded(self.start_calibration))
        self.cancel_button.clicked.connect(self.cancel)
        relay(session.model_changed, self._show_model, self)
        relay(session.conversion_changed, self._show_conversion, self)

    # --- tasks ------------------------------------------------------------------------------
    def _guarded(self, start) -> None:
        """Button slot: a refusal (no model, a task still running) becomes a message, not a crash."""
        try:
            start()
        except (RuntimeError, ValueError) as exc:
            self.reporter.report(exc, "model panel")

    def _run(self, name: str, work, on_done, before_start=None) -> BackgroundTask:
        if self.task is not None and not self.task.done:
            raise RuntimeError(f"{self.task.name} is still running; cancel it first")
        task = BackgroundTask(name, work)
        if before_start is not None:
            before_start(task)
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
            while not event.wait(0.1):
                if cancelled():
                    event.set()

        threading.Thread(target=watch, name="neurolab-cancel-watch", daemon=True).start()
        return event

    def pipeline_config(self, model=None):
        """The pipeline configuration from the panel's settings (the task's defaults underneath).

        With ``model`` (converting a trained or loaded network) its own dynamics and size win over
        the panel's hidden-unit count; without it (training) the panel's size is used.
        """
        from neurolab_gui.core.conversion.pipeline import config_for_task

        cfg = config_for_task(
            self.task_combo.currentText(), model.config if model is not None else None,
            n_hidden=None if model is not None else self.hidden_spin.value(), epochs=self.epochs_spin.value(),
            qat_epochs=self.qat_spin.value(), n_test_spiking=self.samples_spin.value(),
            stages=tuple(name for name, check in self.stage_checks.items() if check.isChecked()),
        )
        cfg.constraint.max_fan_in = self.fan_in_spin.value()
        cfg.constraint.n_core_groups = self.groups_spin.value()
        return cfg

    def _load_task(self):
        """The session's data set if it matches the chosen task, else load it (worker thread)."""
        from neurolab_gui.core.conversion.tasks import load_task

        name = self.task_combo.currentText()
        current = self.session.task
        if current is not None and getattr(current, "name", None) == name:
            return current
        task = load_task(name)
        self.session.task = task
        return task

    def start_training(self, n_train: int | None = None) -> BackgroundTask:
        """Train a fresh RNN of the panel's size on the chosen task (``n_train``: a quick run on a prefix)."""
        from neurolab_gui.core.conversion.pipeline import train_model

        cfg = self.pipeline_config()

        def work(progress, cancelled):
            task = self._load_task()
            if n_train is not None:
                task = task.subset(n_train, None)
            cancel = self._cancel_event(cancelled)
            try:
                model, _ = train_model(task, cfg, progress=progress, cancel=cancel)
            finally:
                cancel.set()
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

    def start_conversion(self, n_test: int | None = None) -> BackgroundTask:
        """Constrain, map and run the chosen stages (``n_test``: only a prefix of the test set)."""
        from neurolab_gui.core.conversion.pipeline import convert

        model = self.session.model
        if model is None:
            raise RuntimeError("load or train a model before converting")
        cfg = self.pipeline_config(model)

        def work(progress, cancelled):
            task = self._load_task()
            if n_test is not None:
                task = task.subset(None, n_test)
            cancel = self._cancel_event(cancelled)
            try:
                return convert(model, task, cfg, progress=progress, cancel=cancel)
            finally:
                cancel.set()

        return self._run("conversion", work, self.session.set_conversion)

    def calibration_cores(self) -> list[tuple[int, int]]:
        """Cores the calibration measures: those of the mapped network, else the transfer panel's core."""
        result = self.session.conversion
        mapped = getattr(result, "mapped", None)
        if mapped is not None:
            return [tuple(gc) for gc in mapped.group_cores]
        if self.transfer_panel is not None:
            return [(self.transfer_panel.chip_spin.value(), self.transfer_panel.core_spin.value())]
        return [(0, 0)]

    def start_calibration(self) -> BackgroundTask:
        """Run the calibration engine on the cores in use, curves live in the transfer panel.

        Per chip, :func:`~neurolab_gui.core.calibration.board_calibration.calibrate_board` tunes
        the cores from the published ``samna_recommended`` set to the default population targets
        and fits every neuron's f–I curve; its intermediate curves stream into the transfer panel.
        Cancel restores the starting biases and clears the chip's connections (a known state).
        """
        from neurolab_gui.core.calibration.board_calibration import calibrate_board

        board = self.session.board
        if board is None:
            raise RuntimeError("connect a board before calibrating")
        cores_by_chip: dict[int, list[int]] = {}
        for chip, core in self.calibration_cores():
            cores_by_chip.setdefault(int(chip), []).append(int(core))
        post = self.transfer_panel.post if self.transfer_panel is not None else (lambda _curves: None)

        def work(progress, cancelled):
            cancel = self._cancel_event(cancelled)
            results = {}
            try:
                for i, (chip, cores) in enumerate(cores_by_chip.items()):
                    def sink(event, i=i, chip=chip) -> None:
                        progress((i + event.fraction) / len(cores_by_chip), f"chip {chip}: {event.step} {event.message}".strip())
                        curves = event.payload.get("curves")
                        if curves is not None:
                            post(curves)

                    results[chip] = calibrate_board(board, chip, cores, progress=sink, cancel=cancel)
            finally:
                cancel.set()
            return results

        def show_in_transfer_panel(task: BackgroundTask) -> None:
            if self.transfer_panel is not None:
                self.transfer_panel.attach_task(task, report_errors=False)  # errors are reported once, here

        return self._run("calibration", work, lambda _results: None, show_in_transfer_panel)

    # --- views -------------------------------------------------------------------------------
    def _show_model(self, model) -> None:
        if model is None:
            self.status.setText("no model loaded")
            return
        from neurolab_gui.core.conversion.constrain import stacked_weights

        self._set_weights(self.before_img, stacked_weights(model))
        cfg = getattr(model, "config", None)
        self.status.setText(
            f"model: {cfg.kind} RNN, {cfg.n_inputs} inputs, {cfg.n_hidden} hidden, {cfg.n_outputs} outputs" if cfg is not None else "model loaded"
        )

    @staticmethod
    def _set_weights(img: pg.ImageItem, w: np.ndarray) -> None:
        top = float(np.abs(w).max()) or 1.0
        img.setImage(np.asarray(w, np.float32).T, levels=(-top, top), autoLevels=False)

    def _show_conversion(self, result) -> None:
        if result is None:
            return
        self._set_weights(self.after_img, result.constrained.weights())
        image = mapping_image(result.mapped)
        n_groups = len(result.mapped.group_cores)
        lut = np.vstack([[25, 25, 25, 255], pg.colormap.get("CET-C6").getLookupTable(nPts=max(2, n_groups), alpha=True)])
        self.mapping_img.setImage(image.T, levels=(0, len(lut) - 1), lut=lut, autoLevels=False)
        self.mapping_plot.setTitle(f"{len(result.mapped.unit_addresses)} RNN units → {n_groups} cores of chip {result.mapped.chip}")
        rows = accuracy_rows(result.report)
        self.accuracy_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                self.accuracy_table.setItem(i, j, QTableWidgetItem(text))
