"""Model and conversion panel: load or train a network, convert it, see weights, mapping and accuracies.

The panel holds no workflow: its buttons build the session's jobs
(:mod:`neurolab_gui.core.workflows`: checkpoint and data-file loading, training, conversion,
calibration), subscribe to their
signals through the Qt bridge (progress bar, status line, result, errors to the reporter) and
start them; the cancel button cancels the running job.  The workflows put their results into the
session (``set_model`` / ``set_conversion``), which this panel, the raster's "RNN layer" selection
and the transfer panel follow.  The task box holds the built-in tasks and the data files
chosen or named by a loaded checkpoint (item data: the task's reference, which the workflows
take as ``neurolab --task`` does).  What is drawn is computed by
:mod:`neurolab_gui.core.session_conversion`.

Board: "Deploy to connected board" writes the converted network onto the session's board
(:func:`~neurolab_gui.core.workflows.deploy_to_board`; the raster switches to its layers) and
"Run test set on board" runs it there (:func:`~neurolab_gui.core.workflows.run_deployed`): each
batch's progress payload updates the running accuracy, the latest sample's class scores and the
confusion matrix, and the stage table gets its "board" row.

Calibration: "Start calibration" calibrates every core the mapped network uses (or the transfer
panel's core when nothing is mapped), with its intermediate transfer curves growing live in the
transfer panel; network-level calibration with the stage accuracies is ``neurolab calibrate
--task`` (or the calibration API).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QFont
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

from neurolab_gui.core import workflows
from neurolab_gui.core.jobs import BoardBusy, Job, Progress
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_conversion import accuracy_rows, inter_chip_senders, mapping_image, weight_picture

from ..bridge import relay
from ..errors import ErrorReporter
from .readout import Readout

ACCURACY_COLUMNS = ["stage", "accuracy", "loss vs constr.", "spikes/inf", "syn. events/inf", "samples", "note"]
SPIKING_STAGES = ("brian2", "board_ideal", "board_mismatch")


#: Most hidden units of a network trained in the panel: what a dense network on one input channel
#: maps onto the board (``conversion.mapping.largest_dense_network(1)``; a test keeps the two equal,
#: and importing the mapping here would import torch while the app starts).
MAX_HIDDEN_UNITS = 981


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
        self.job: Job | None = None  # the running or last job
        self.last_result = None  # what the last finished job returned
        # network source
        self.load_button = QPushButton("Load checkpoint…")
        self.task_combo = QComboBox()  # item data: the task's reference, a built-in name or a data file's path
        for name in BUILTIN_TASKS:
            self.task_combo.addItem(name, name)
        self.data_button = QPushButton("Data file…")
        # at most what a dense network maps (more input channels: training refuses at once)
        self.hidden_spin = QSpinBox(prefix="hidden ", minimum=2, maximum=MAX_HIDDEN_UNITS, value=64)
        self.epochs_spin = QSpinBox(prefix="epochs ", minimum=1, maximum=1000, value=30)
        self.train_button = QPushButton("Train")
        # constraints and conversion
        self.fan_in_spin = QSpinBox(minimum=1, maximum=64, value=63)
        self.fan_in_spin.setToolTip("CAM entries per neuron for the network (one is kept for the reset channel)")
        self.groups_spin = QSpinBox(minimum=1, maximum=4, value=3)
        self.qat_spin = QSpinBox(minimum=0, maximum=200, value=10)
        self.stage_checks = {name: QCheckBox(name) for name in SPIKING_STAGES}
        for name in ("board_ideal", "board_mismatch"):
            self.stage_checks[name].setChecked(True)
        for name, check in self.stage_checks.items():
            check.setToolTip({"brian2": "run the network in a Brian2 simulation of the chip's neurons",
                              "board_ideal": "run it on an emulated board without mismatch",
                              "board_mismatch": "run it on an emulated board with device mismatch"}[name])
        self.samples_spin = QSpinBox(minimum=1, maximum=100_000, value=200)
        self.samples_spin.setToolTip("test sequences run on the spiking stages")
        self.ablation_check = QCheckBox("constraint ablation")
        self.ablation_check.setToolTip("also measure the accuracy after each constraint added one at a time")
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
        self.status = QLabel("")  # the last job's progress and outcome
        self.model_label = QLabel("no model loaded")
        self.data_label = QLabel("")  # where the task's data come from, or why a checkpoint's cannot be used
        self.data_label.setWordWrap(True)
        # the network on the connected board: deploy, run the test set, live accuracy / scores / confusion
        self.deploy_button = QPushButton("Deploy to connected board")
        self.deploy_button.setToolTip("write the converted network onto the board of the connection bar")
        self.profile_check = QCheckBox("use the board's calibration profile")
        self.profile_check.setToolTip("apply the calibration profile saved for this board's serial when deploying")
        self.profile_check.setChecked(True)
        self.run_button = QPushButton("Run test set on board")
        self.run_button.setToolTip('run test samples through the deployed network on the connected board; accuracy and confusion matrix live')
        self.run_samples_spin = QSpinBox(prefix="samples ", minimum=1, maximum=100_000, value=100)
        self.run_samples_spin.setToolTip('how many test samples to run on the board')
        self.deployment_label = QLabel("nothing deployed")
        self.calibrate_network_button = QPushButton("Calibrate network on board")
        self.calibrate_network_button.setToolTip("the network calibration of `neurolab calibrate --task` on the connected board")
        self.in_the_loop_check = QCheckBox("chip-in-the-loop fine-tuning")
        self.in_the_loop_check.setToolTip("after the measurement, fine-tune the network with the board's measured transfer (slow: minutes of chip time)")
        self.in_the_loop_check.setChecked(True)
        #: the engine's CalibrationConfig (None: its defaults, those of ``neurolab calibrate``)
        self.calibration_config = None
        self.calibration_label = QLabel("")
        self.board_accuracy_label = QLabel("")
        self.scores_label = QLabel("")
        self.confusion_table = QTableWidget(0, 0)
        self.confusion_table.setToolTip("rows: true class, columns: predicted class")

        self.load_button.setToolTip('load a trained RNN checkpoint (.pt/.pth; weights only, no pickled code is run)')
        self.task_combo.setToolTip('data set to train on and to evaluate every stage with (a loaded checkpoint selects the one it names)')
        self.data_button.setToolTip('choose your own data file (.npz, the format of neurolab convert --help) for the task box')
        self.hidden_spin.setToolTip(f"hidden units of a network trained here (at most {MAX_HIDDEN_UNITS}, "
                                    "the most a dense network maps onto the board; fewer with many input channels)")
        self.epochs_spin.setToolTip('training epochs')
        self.train_button.setToolTip('train a fresh RNN of this size on the chosen task (in the background)')
        self.groups_spin.setToolTip('core groups: each has its own shared weight biases (the per-core weight scales)')
        self.qat_spin.setToolTip('quantisation-aware fine-tuning epochs after the constraints are applied')
        self.convert_button.setToolTip('constrain, map and run the chosen stages; accuracies fill the table below')
        self.cancel_button.setToolTip('stop the running training, conversion or calibration')
        self.progress.setToolTip('progress of the running task')
        src = QGroupBox("Network")
        sl = QHBoxLayout(src)
        for w in (self.load_button, self.task_combo, self.data_button, self.hidden_spin, self.epochs_spin, self.train_button):
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
        cf.addRow(self.ablation_check)
        cf.addRow(self.convert_button)
        run = QHBoxLayout()
        for w in (self.calibrate_button, self.cancel_button, self.progress):
            run.addWidget(w)
        board = QGroupBox("On the connected board")
        bl = QVBoxLayout(board)
        brow = QHBoxLayout()
        for w in (self.deploy_button, self.profile_check, self.run_button, self.run_samples_spin):
            brow.addWidget(w)
        bl.addLayout(brow)
        crow = QHBoxLayout()
        for w in (self.calibrate_network_button, self.in_the_loop_check):
            crow.addWidget(w)
        bl.addLayout(crow)
        for w in (self.deployment_label, self.calibration_label, Readout(self.board_accuracy_label),
                  Readout(self.scores_label, lines=2), self.confusion_table):
            bl.addWidget(w)

        self.graphics = pg.GraphicsLayoutWidget()
        self.before_plot = self.graphics.addPlot(title="weights before quantisation")
        self.after_plot = self.graphics.addPlot(title="after (scale × CAM copies)")
        self.graphics.nextRow()
        self.mapping_plot = self.graphics.addPlot(title="RNN units on the board", colspan=2)
        # the whole board as libcaer lays it out (64 x 64): chips U0 U1 / U2 U3, each 2 x 2 cores of
        # 16 x 16 neurons; solid lines between chips, dotted ones between cores, a label per chip
        self.mapping_plot.setLabel("bottom", "chips U0 U1 / U2 U3 · cores 0 1 / 2 3 of 16 × 16 neurons")
        self.mapping_plot.hideAxis("left")
        self.mapping_plot.getAxis("bottom").setTicks([[], []])
        self.mapping_plot.invertY(True)
        for pos in (16, 32, 48):
            pen = pg.mkPen((200, 200, 200), width=2) if pos == 32 else pg.mkPen((110, 110, 110), dash=[2, 4])
            for xs, ys in (([pos, pos], [0, 64]), ([0, 64], [pos, pos])):
                self.mapping_plot.plot(xs, ys, pen=pen).setZValue(10)  # over the image
        self.chip_labels = []
        for chip in range(4):
            label = pg.TextItem(f"U{chip}", color=(230, 230, 230), anchor=(0, 0))
            label.setFont(QFont(label.textItem.font().family(), 7))
            label.setPos(32 * (chip & 1), 32 * (chip >> 1))
            label.setZValue(20)
            self.mapping_plot.addItem(label)
            self.chip_labels.append(label)
        self.mapping_plot.setMouseEnabled(x=False, y=False)
        self.graphics.setMinimumHeight(340)  # weights and mapping readable; the dock scrolls on small screens
        self.graphics.ci.layout.setRowStretchFactor(1, 2)  # the board picture gets two thirds
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
        layout.addWidget(board)
        layout.addWidget(Readout(self.status, lines=2))  # changes at every progress report
        layout.addWidget(self.model_label)
        layout.addWidget(self.data_label)
        layout.addWidget(self.graphics, 2)
        layout.addWidget(self.accuracy_table, 1)

        self.load_button.clicked.connect(self.load_dialog)
        self.data_button.clicked.connect(self.data_dialog)
        self.train_button.clicked.connect(lambda: self._guarded(self.start_training))
        self.convert_button.clicked.connect(lambda: self._guarded(self.start_conversion))
        self.calibrate_button.clicked.connect(lambda: self._guarded(self.start_calibration))
        self.deploy_button.clicked.connect(lambda: self._guarded(self.start_deployment))
        self.run_button.clicked.connect(lambda: self._guarded(self.start_board_run))
        self.calibrate_network_button.clicked.connect(lambda: self._guarded(self.start_network_calibration))
        self.cancel_button.clicked.connect(self.cancel)
        relay(session.model_changed, self._show_model, self)
        relay(session.conversion_changed, self._show_conversion, self)
        relay(session.deployment_changed, self._show_deployment, self)
        relay(session.deployment_biases_changed, lambda _n: self._show_deployment(self.session.deployment), self)

    # --- jobs ---------------------------------------------------------------------------------
    def _guarded(self, start) -> None:
        """Button slot: a refusal (no model, a job still running) becomes a message, not a crash."""
        try:
            self._check_idle()  # first: "no model" is not the reason while a checkpoint is still loading
            start()
        except (RuntimeError, ValueError) as exc:
            if isinstance(exc, BoardBusy):  # another panel's job has the board: say so here
                self.status.setText(str(exc))
            self.reporter.report(exc, "model panel")

    def _check_idle(self) -> None:
        """Refuse (``RuntimeError``) while this panel's job runs: one at a time."""
        if self.job is not None and not self.job.done:
            raise RuntimeError(f"{self.job.name} is still running; cancel it first")

    def _start(self, job: Job, also: Callable[[], None] | None = None) -> Job:
        """Follow ``job``'s signals (on the GUI thread, through the bridge), then start it.

        A job that uses the board is started through ``session.board_jobs``: refused
        (:class:`BoardBusy`, nothing changed here) while another board job runs.  ``also()``
        is called once the job is accepted, before it starts (another panel following it).
        """
        self._check_idle()

        def follow() -> None:
            self.job = job
            self.cancel_button.setEnabled(True)
            self.progress.setValue(0)
            self.status.setText(f"{job.name} started")  # not the last job's outcome until the first progress
            relay(job.progress, lambda p: self._show_progress(job, p), self)
            relay(job.log, lambda text: self.reporter.record.emit(logging.INFO, text), self)  # to the log panel
            relay(job.finished, lambda result: self._finished(job, result), self)
            relay(job.cancelled, lambda _exc: self._done(job, job.cancel_outcome), self)  # or "stopped: the board was disconnected"
            relay(job.failed, lambda exc: (self._done(job, "failed"), self.reporter.report(exc, job.name)), self)
            if also is not None:
                also()

        if job.uses_board:
            return self.session.board_jobs.start(job, follow)
        follow()
        return job.start()

    # The job's signals reach the GUI thread queued (``relay``): an earlier job's last progress or
    # its end can arrive after the next job was started here (its ``done`` is true before it
    # announces the end).  The progress bar, the status line and Cancel follow ``self.job`` only,
    # so a late "finished" of a board run never switches off the Cancel of the calibration after it.
    def _show_progress(self, job: Job, progress: Progress) -> None:
        if job is not self.job:
            return  # a job this panel no longer shows
        self.progress.setValue(round(100 * progress.fraction))
        self.status.setText(f"{job.name}: {progress.text()}")

    def _finished(self, job: Job, result) -> None:
        self.last_result = result
        self._done(job, "finished")

    def _done(self, job: Job, how: str) -> None:
        """``job`` ended (``how``: finished, cancelled or failed): Cancel off and the outcome shown,
        unless the panel already shows a later job."""
        if job is not self.job:
            return  # an earlier job ended late: the buttons follow the job shown now
        self.cancel_button.setEnabled(False)
        self.status.setText(f"{job.name} {how}")

    def cancel(self) -> None:
        if self.job is not None:
            self.job.cancel()

    def pipeline_config(self, model=None):
        """The pipeline configuration from the panel's settings (:func:`~neurolab_gui.core.workflows.pipeline_config`)."""
        return self.pipeline_config_factory(model)()

    def pipeline_config_factory(self, model=None) -> Callable[[], Any]:
        """The panel's settings read now; the returned call builds their pipeline configuration.

        Building it imports the conversion stack (torch): the training and conversion jobs build it
        on their workers, after the warm-up, so Train or Convert pressed while the warm-up still
        imports does not hold the window waiting for the imports (measured 1.4-1.9 s stalls).
        """
        task_name, model_config = self.task_name(), (model.config if model is not None else None)
        choices = dict(n_hidden=self.hidden_spin.value(), epochs=self.epochs_spin.value(), qat_epochs=self.qat_spin.value(),
                       n_test_spiking=self.samples_spin.value(),
                       stages=[name for name, check in self.stage_checks.items() if check.isChecked()],
                       max_fan_in=self.fan_in_spin.value(), n_core_groups=self.groups_spin.value())
        ablation = self.ablation_check.isChecked()

        def build():
            cfg = workflows.pipeline_config(task_name, model_config, **choices)
            cfg.ablation = ablation
            return cfg

        return build

    def start_training(self, n_train: int | None = None) -> Job:
        """Train a fresh RNN of the panel's size on the chosen task (``n_train``: a quick run on a prefix)."""
        return self._start(workflows.training_job(self.session, self.task_name(), self.pipeline_config_factory(), n_train))

    def task_name(self) -> str:
        """The chosen task's reference: a built-in task's name or a data file's absolute path."""
        return self.task_combo.currentData() or self.task_combo.currentText()

    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load checkpoint", "", "Checkpoints (*.pt *.pth);;All files (*)")
        if path:
            self._guarded(lambda: self.load_checkpoint(path))

    def load_checkpoint(self, path: str) -> Job:
        """Read the checkpoint in the background (:func:`~neurolab_gui.core.workflows.load_network`):
        its model becomes the session's and the task box selects the data it names; a file that
        cannot be read is reported and the model shown before stays."""
        job = workflows.load_job(self.session, path, remedy=f"choose its data in the task box or with '{self.data_button.text()}'")
        relay(job.finished, self._show_loaded, self)
        relay(job.failed, lambda _exc: self._show_model(self.session.model), self)
        relay(job.cancelled, lambda _exc: self._show_model(self.session.model), self)
        self._start(job)
        self.model_label.setText(f"loading {path}…")  # until the model or the failure arrives (queued, so after this)
        return job

    def data_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose data file", "", "Data files (*.npz);;All files (*)")
        if path:
            self._guarded(lambda: self.load_data_file(path))

    def load_data_file(self, path: str) -> Job:
        """Read a data file in the background with the CLI's reader (:func:`~neurolab_gui.core.workflows.load_data_file`);
        once read it is the task box's choice, refused it is reported and the choice stays."""
        job = workflows.data_file_job(self.session, path)
        relay(job.finished, lambda reference: self._select_task(reference, "chosen"), self)
        return self._start(job)

    def start_conversion(self, n_test: int | None = None) -> Job:
        """Constrain, map and run the chosen stages (``n_test``: only a prefix of the test set)."""
        # the job builds the configuration on its worker (pipeline_config_factory): no import here
        return self._start(workflows.conversion_job(self.session, self.task_name(), self.pipeline_config_factory(self.session.model),
                                                    n_test))

    def calibration_cores(self) -> list[tuple[int, int]]:
        """Cores the calibration measures: those of the mapped network, else the transfer panel's core."""
        fallback = (self.transfer_panel.chip_spin.value(), self.transfer_panel.core_spin.value()) if self.transfer_panel is not None else (0, 0)
        return workflows.calibration_cores(self.session, fallback)

    def start_calibration(self) -> Job:
        """Calibrate the cores in use (:func:`~neurolab_gui.core.workflows.calibrate_cores`), curves live in the transfer panel."""
        job = workflows.calibration_job(self.session, self.calibration_cores())
        panel = self.transfer_panel
        # errors are reported once, here
        return self._start(job, (lambda: panel.attach_job(job, report_errors=False)) if panel is not None else None)

    def start_deployment(self) -> Job:
        """Write the converted network onto the connected board (:func:`~neurolab_gui.core.workflows.deploy_to_board`)."""
        return self._start(workflows.deployment_job(self.session, self.profile_check.isChecked()))

    def start_board_run(self, n_test: int | None = None) -> Job:
        """Run test samples on the board (:func:`~neurolab_gui.core.workflows.run_deployed`), results shown live."""
        job = workflows.run_job(self.session, n_test if n_test is not None else self.run_samples_spin.value())
        relay(job.progress, self._show_run_progress, self)
        return self._start(job)

    def start_network_calibration(self) -> Job:
        """Calibrate the converted network on the connected board
        (:func:`~neurolab_gui.core.workflows.calibrate_deployed_network`); its summary is shown when done."""
        job = workflows.network_calibration_job(self.session, self.calibration_config, self.in_the_loop_check.isChecked(),
                                                self.run_samples_spin.value())
        relay(job.finished, self._show_calibration_summary, self)
        return self._start(job)

    # --- views -------------------------------------------------------------------------------
    def _select_task(self, reference: str, how: str) -> None:
        """Select ``reference`` in the task box (a data file gets an item, its name shown, its path in the tooltip)."""
        index = self.task_combo.findData(reference)
        if index < 0:
            self.task_combo.addItem(Path(reference).name, reference)
            index = self.task_combo.count() - 1
            self.task_combo.setItemData(index, reference, Qt.ItemDataRole.ToolTipRole)
        self.task_combo.setCurrentIndex(index)
        self.data_label.setText(f"data: {reference} ({how})")

    def _show_loaded(self, loaded: workflows.LoadedNetwork) -> None:
        if loaded.task_name is not None:
            self._select_task(loaded.task_name, f"named by {Path(loaded.path).name}")
        else:  # the model loaded; the data it was made on are the user's to choose
            self.data_label.setText(f"data: {loaded.task_problem}")
            self.reporter.record.emit(logging.WARNING, loaded.task_problem or "")

    def _show_calibration_summary(self, summary: dict) -> None:
        text = (f"calibrated {summary['serial']}: gain CV {summary['gain_cv_before']:.1%} → {summary['gain_cv_after']:.1%}, "
                f"chip time {summary['chip_s_measurement'] + summary['chip_s_loop']:.0f} s")
        if "accuracy_after" in summary:
            text += f", accuracy {summary['accuracy_before']:.3f} → {summary['accuracy_after']:.3f} on {summary['n_test']} samples"
        self.calibration_label.setText(text + f"; profile {summary['profile']}")

    def _show_deployment(self, deployment) -> None:
        if deployment is None:
            self.deployment_label.setText("nothing deployed")
            return
        text = f"deployed on {deployment.serial}: {len(deployment.mapped.unit_addresses)} units; " + "; ".join(deployment.notes)
        changed = self.session.deployment_bias_changes if deployment is self.session.deployment else 0
        if changed:  # e.g. a calibration undone: its biases are gone, the network it wrote is still there
            since = "calibration" if deployment.notes and deployment.notes[0].startswith("calibrated here") else "it was written"
            text += (f"; {changed} bias{'es' * (changed != 1)} changed since {since} (undo or an edit): "
                     "redo, or deploy again, to run it as written")
        self.deployment_label.setText(text)

    def _show_run_progress(self, progress: Progress) -> None:
        """A batch of the board run: running accuracy, the latest sample's class scores, the confusion matrix."""
        payload = progress.payload or {}
        if "confusion" not in payload:
            return
        accuracy = payload["accuracy"]
        self.board_accuracy_label.setText(f"board accuracy {accuracy:.3f} after {payload['done']} samples" if accuracy is not None
                                          else f"{payload['done']} samples")
        scores, labels = payload["scores"][-1], payload["labels"]
        truth = f", true {int(labels[-1])}" if labels is not None else ""
        self.scores_label.setText(f"sample {int(payload['indices'][-1])}: predicted {int(payload['predictions'][-1])}{truth}; "
                                  "class scores " + " ".join(f"{v:.2f}" for v in scores))
        confusion = payload["confusion"]
        n = len(confusion)
        if self.confusion_table.rowCount() != n:
            self.confusion_table.setRowCount(n)
            self.confusion_table.setColumnCount(n)
        for i in range(n):
            for j in range(n):
                self.confusion_table.setItem(i, j, QTableWidgetItem(str(int(confusion[i, j]))))

    def _show_model(self, model) -> None:
        if model is None:
            self.model_label.setText("no model loaded")
            return
        picture, step = weight_picture(model)
        self._set_weights(self.before_img, picture)
        self.before_plot.setTitle("weights before quantisation" + (f" (one unit in {step})" if step > 1 else ""))
        cfg = getattr(model, "config", None)
        self.model_label.setText(
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
        chips = result.mapped.chips
        senders = inter_chip_senders(result.mapped)
        for chip, label in enumerate(self.chip_labels):
            units = sum(a.chip == chip for a in result.mapped.unit_addresses)
            label.setText(f"U{chip} · {units}" if units else f"U{chip}")
        crossing = f"; {int(senders.sum())} units send to another chip" if len(chips) > 1 else ""
        where = f"chip {chips[0]}" if len(chips) == 1 else "chips " + ", ".join(map(str, chips))
        self.mapping_plot.setTitle(f"{len(result.mapped.unit_addresses)} RNN units → {n_groups} cores on {where}{crossing}")
        rows = accuracy_rows(result.report)
        self.accuracy_table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, text in enumerate(row):
                self.accuracy_table.setItem(i, j, QTableWidgetItem(text))
