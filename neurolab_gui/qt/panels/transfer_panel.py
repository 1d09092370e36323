"""Transfer-curve panel: measured f–I curves of selected neurons, the population band and the RNN's target.

It draws a :class:`~neurolab_gui.core.fitting.transfer_curves.TransferCurves` and redraws
whenever a sweep or a calibration reports a new step (``show_curves`` is called
through a queued relay, so it is safe to feed from worker threads).

Two kinds of curves share it: DC sweeps (rate against injected current; every neuron of a core,
drawn as a population band) and the transfer fits a conversion measured on a board (mean rate
against synaptic drive ``m·r``, with the RNN's target curve for that core; chosen in the
"conversion fit" box once a conversion has run).  A DC sweep has no RNN target: the RNN's
activation is defined against synaptic drive, not injected current.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QObject, pyqtSignal
from PyQt6.QtWidgets import (
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from drivers.dynapse1.bias_table import closest_setting
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP
from neurolab_gui.core.fitting.transfer_curves import TransferCurves
from neurolab_gui.core.jobs import BoardBusy, Job, Progress
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_conversion import fit_choices, fit_curves
from neurolab_gui.core.session_sweep import dc_sweep

from ..bridge import relay
from ..errors import ErrorReporter
from .readout import Readout


class _CurveSignal(QObject):
    curves = pyqtSignal(object)


class TransferPanel(QWidget):
    """f–I curves with population band and target; runs a DC sweep on the chosen core."""

    max_curves_drawn = 32  # individual neurons drawn; the band summarises all of them

    def __init__(self, session: Session, reporter: ErrorReporter) -> None:
        super().__init__()
        self.session = session
        self.reporter = reporter
        self.curves: TransferCurves | None = None
        self.updates = 0
        self.task: Job | None = None
        self._signal = _CurveSignal(self)
        self._signal.curves.connect(self.show_curves)

        self.chip_spin = QSpinBox(prefix="chip ", maximum=N_CHIPS - 1)
        self.chip_spin.setToolTip("chip of the core to sweep (also the core a calibration measures when no network is mapped)")
        self.core_spin = QSpinBox(prefix="core ", maximum=N_CORES_PER_CHIP - 1)
        self.core_spin.setToolTip("core whose IF_DC_P is swept: the same DC current goes into all its 256 neurons")
        self.low_spin = QDoubleSpinBox(prefix="from ", suffix=" nA", decimals=3, minimum=0.001, maximum=20000, value=0.1)
        self.low_spin.setToolTip("lowest IF_DC_P current of the sweep (nominal, before mismatch)")
        self.high_spin = QDoubleSpinBox(prefix="to ", suffix=" nA", decimals=3, minimum=0.001, maximum=20000, value=50.0)
        self.high_spin.setToolTip("highest IF_DC_P current of the sweep (nominal, before mismatch)")
        self.steps_spin = QSpinBox(prefix="steps ", minimum=2, maximum=200, value=12)
        self.steps_spin.setToolTip("number of currents, spaced logarithmically between 'from' and 'to'")
        self.duration_spin = QDoubleSpinBox(prefix="", suffix=" s/step", decimals=2, minimum=0.02, maximum=10.0, value=0.2, singleStep=0.05)
        self.duration_spin.setToolTip("board time counted at every step (after a short settling time)")
        self.scale_combo = QComboBox()
        self.scale_combo.addItems(["log x", "linear x"])
        self.scale_combo.setToolTip("logarithmic or linear input axis")
        self.sweep_button = QPushButton("Sweep IF_DC_P")
        self.sweep_button.setToolTip("measure every neuron's firing rate at each IF_DC_P step; the bias is restored afterwards")
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("stop the running sweep or calibration after its current step")
        self.cancel_button.setEnabled(False)
        self.progress = QProgressBar()
        self.progress.setToolTip("progress of the running sweep or calibration")
        self.status = QLabel()
        self.fit_combo = QComboBox()
        self.fit_combo.setToolTip("transfer fits measured by the last conversion, with the RNN's target curve")
        self.fit_combo.setMinimumContentsLength(24)
        self.fit_combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.fits: dict = {}
        # two rows, so the panel (Cancel and the progress bar included) fits a 1366-pixel-wide screen
        row = QHBoxLayout()
        for w in (self.chip_spin, self.core_spin, self.low_spin, self.high_spin, self.steps_spin, self.duration_spin):
            row.addWidget(w)
        row.addStretch(1)
        run_row = QHBoxLayout()
        for w in (self.scale_combo, self.sweep_button, self.cancel_button):
            run_row.addWidget(w)
        run_row.addWidget(self.progress, 1)
        fit_row = QHBoxLayout()
        fit_row.addWidget(QLabel("conversion fit"))
        fit_row.addWidget(self.fit_combo, 1)
        self.plot = pg.PlotWidget()
        self.legend = self.plot.addLegend()
        self._show_empty()
        self.band_low = pg.PlotDataItem(pen=pg.mkPen(None))
        self.band_high = pg.PlotDataItem(pen=pg.mkPen(None))
        self.band = pg.FillBetweenItem(self.band_low, self.band_high, brush=pg.mkBrush(100, 150, 255, 60))
        self.plot.addItem(self.band_low)
        self.plot.addItem(self.band_high)
        self.plot.addItem(self.band)
        self.neuron_item = self.plot.plot(pen=pg.mkPen(200, 200, 200, 90), connect="finite")  # log mode is handled per item
        self.median_item = self.plot.plot(pen=pg.mkPen((100, 150, 255), width=2), name="population median (band 10–90 %)")
        self.target_item = self.plot.plot(pen=pg.mkPen("y", width=2, style=pg.QtCore.Qt.PenStyle.DashLine))
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addLayout(run_row)
        layout.addLayout(fit_row)
        layout.addWidget(self.plot, 1)
        layout.addWidget(Readout(self.status, lines=2))  # changes at every sweep or calibration step
        # clicked(bool) must not reach start_sweep's parameters
        self.sweep_button.clicked.connect(lambda _checked=False: self.start_sweep())
        self.cancel_button.clicked.connect(self.cancel)
        self.scale_combo.currentIndexChanged.connect(self._rescale)
        for spin in (self.low_spin, self.high_spin):
            spin.valueChanged.connect(lambda *_: self.curves is None and self._show_empty())
        self.fit_combo.activated.connect(lambda *_: self.show_fit(self.fit_combo.currentText()))
        relay(session.conversion_changed, self._on_conversion, self)
        self._on_conversion(session.conversion)

    # --- conversion fits ---------------------------------------------------------------------
    def _show_empty(self) -> None:
        """Before any measurement: the axes of a DC sweep over the chosen range, and what to press."""
        self.plot.setLogMode(x=self.scale_combo.currentIndex() == 0, y=False)
        self.plot.setLabel("left", "firing rate", units="Hz")
        self.plot.setLabel("bottom", "IF_DC_P", units="A")
        low, high = self.low_spin.value() * 1e-9, self.high_spin.value() * 1e-9
        if self.scale_combo.currentIndex() == 0:
            self.plot.setXRange(np.log10(low), np.log10(high), padding=0.02)
        else:
            self.plot.setXRange(0.0, high, padding=0.02)
        self.plot.setYRange(0.0, 200.0, padding=0)
        self.status.setText("no curves yet: press \u201cSweep IF_DC_P\u201d, or run a calibration or a conversion")

    def _on_conversion(self, result) -> None:
        self.fits = fit_choices(result) if result is not None else {}
        self.fit_combo.clear()
        self.fit_combo.addItems(list(self.fits))
        self.fit_combo.setEnabled(bool(self.fits))
        if result is None:
            self.fit_combo.setPlaceholderText("no conversion yet")
        elif not self.fits:
            self.fit_combo.setPlaceholderText("the last conversion ran no board stage: no transfer fits")
        else:
            self.fit_combo.setCurrentIndex(0)
            self.fit_combo.setToolTip(f"{len(self.fits)} transfer fits measured by the last conversion, with the RNN's target curve")
            if self.curves is None:  # nothing measured here yet: show what the conversion measured
                self.show_fit(self.fit_combo.currentText())

    def _rescale(self, *_: object) -> None:
        if self.curves is None:
            self._show_empty()
        else:
            self.show_curves(self.curves)

    def show_fit(self, label: str) -> None:
        """Draw one measured conversion fit against the RNN's target (linear axes)."""
        if label not in self.fits:
            raise KeyError(f"no transfer fit {label!r}; available: {', '.join(self.fits) or 'none'}")
        self.scale_combo.setCurrentIndex(1)  # drive starts at 0: linear x
        self.show_curves(fit_curves(self.fits[label]))
        self.status.setText(f"{label}: measured mean rate (band = one value per point) and the RNN target")

    # --- feeding -----------------------------------------------------------------------------
    def post(self, curves: TransferCurves) -> None:
        """Thread-safe: schedule a redraw with ``curves`` on the GUI thread."""
        self._signal.curves.emit(curves)

    def show_curves(self, curves: TransferCurves) -> None:
        self.curves = curves
        self.updates += 1
        log_x = self.scale_combo.currentIndex() == 0
        self.plot.setLogMode(x=log_x, y=False)
        self.plot.enableAutoRange()  # the empty view's fixed range gives way to the data
        self.plot.setLabel("bottom", curves.x_label, units=curves.x_unit)
        x = np.asarray(curves.x, np.float64)
        m = curves.matrix()
        if log_x:
            ok = x > 0
            x, m = x[ok], m[ok]
        median, low, high = (np.median(m, axis=1), np.percentile(m, 10, axis=1), np.percentile(m, 90, axis=1)) if m.size else (x, x, x)
        self.band_low.setData(x, low)
        self.band_high.setData(x, high)
        self.median_item.setData(x, median)
        # the individual neurons: one item, curves separated by NaN (one draw call, nothing created per sweep)
        n_draw = min(self.max_curves_drawn, m.shape[1])
        if n_draw and len(x):
            xs = np.tile(np.append(x, np.nan), n_draw)
            ys = np.vstack([m[:, :n_draw], np.full((1, n_draw), np.nan)]).T.ravel()
            self.neuron_item.setData(xs, ys, connect="finite")
        else:
            self.neuron_item.setData([], [])
        if curves.target_x is not None and curves.target_y is not None:
            tx, ty = np.asarray(curves.target_x, np.float64), np.asarray(curves.target_y, np.float64)
            if log_x:
                tx, ty = tx[tx > 0], ty[tx > 0]
            self.target_item.setData(tx, ty)
        else:
            self.target_item.setData([], [])
        # the legend names the RNN target only when one is drawn (a DC sweep has none)
        self.legend.removeItem(self.target_item)
        if len(self.target_item.getData()[0] if self.target_item.getData()[0] is not None else []):
            self.legend.addItem(self.target_item, "RNN target")
        self.status.setText(f"{len(curves.x)} steps, {m.shape[1]} neurons")

    # --- sweep -------------------------------------------------------------------------------
    def sweep_settings(self) -> list[tuple[int, int]]:
        currents = np.geomspace(self.low_spin.value() * 1e-9, self.high_spin.value() * 1e-9, self.steps_spin.value())
        return [closest_setting(float(c)) for c in currents]

    def start_sweep(self, duration_s: float | None = None) -> Job | None:
        """Start a DC sweep of the chosen core (``duration_s``: board time per step, default the spin box)."""
        duration_s = self.duration_spin.value() if duration_s is None else duration_s
        if self.session.board is None:
            self.reporter.report(RuntimeError("connect a board before sweeping"), "sweep")
            return None
        chip, core = self.chip_spin.value(), self.core_spin.value()
        # every step's curves are a new object, so the GUI thread may draw them while the sweep goes on
        task = Job("sweep", dc_sweep(self.session, chip, core, self.sweep_settings(), duration_s, on_step=self.post), uses_board=True)
        try:  # one job at a time on the board: refused while another one (from any panel) runs
            return self.session.board_jobs.start(task, lambda: self.attach_job(task))
        except BoardBusy as exc:
            self.status.setText(str(exc))
            self.reporter.report(exc, "sweep")
            return None

    def attach_job(self, task: Job, report_errors: bool = True) -> None:
        """Show progress of ``task`` (a sweep or calibration), the curves its reports carry, and enable
        its cancel button.

        ``report_errors=False`` when whoever started the task reports its failure already.
        """
        self.task = task
        self.sweep_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.progress.setValue(0)
        relay(task.progress, lambda p: self._show_progress(p, task), self)
        relay(task.finished, lambda _r: self._task_done(task, "finished"), self)
        relay(task.cancelled, lambda _exc: self._task_done(task, task.cancel_outcome), self)  # or "stopped: the board was disconnected"
        relay(task.failed, lambda exc: (self._task_done(task, "failed"), report_errors and self.reporter.report(exc, task.name)), self)

    def _show_progress(self, progress: Progress, task: Job | None = None) -> None:
        if task is not None and task is not self.task:
            return  # a job this panel no longer follows
        self.progress.setValue(round(100 * progress.fraction))
        self.status.setText(progress.message)
        curves = progress.payload.get("curves")
        if curves is not None:
            self.show_curves(curves)

    def _task_done(self, task: Job, how: str) -> None:
        if task is not self.task:
            return  # an earlier job ended: the buttons follow the job shown now
        self.sweep_button.setEnabled(True)
        self.cancel_button.setEnabled(False)
        self.status.setText(f"{task.name} {how}")

    def cancel(self) -> None:
        if self.task is not None:
            self.task.cancel()
