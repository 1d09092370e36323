"""Membrane panel: the membrane trace of the neuron routed to the analog monitor (emulator readback)."""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSpinBox, QVBoxLayout, QWidget

from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS_PER_CORE
from neurolab_gui.core.session import Session

from ..bridge import relay


class MembranePanel(QWidget):
    """Choose a neuron per core; the panel polls the membrane monitor and plots the last seconds."""

    def __init__(self, session: Session, poll_ms: int = 100) -> None:
        super().__init__()
        self.session = session
        self.chip_spin = QSpinBox(prefix="chip ", maximum=N_CHIPS - 1)
        self.core_spin = QSpinBox(prefix="core ", maximum=N_CORES_PER_CHIP - 1)
        self.neuron_spin = QSpinBox(prefix="neuron ", maximum=N_NEURONS_PER_CORE - 1)
        self.span_spin = QDoubleSpinBox(prefix="window ", suffix=" s", minimum=0.01, maximum=10, value=0.5)
        self.monitor_button = QPushButton("Monitor")
        self.note = QLabel()
        row = QHBoxLayout()
        for w in (self.chip_spin, self.core_spin, self.neuron_spin, self.span_spin, self.monitor_button):
            row.addWidget(w)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "V_mem", units="V")
        self.plot.setLabel("bottom", "board time", units="s")
        self.curve = self.plot.plot(pen=pg.mkPen("c"))
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)
        self.monitor_button.clicked.connect(self.monitor_selected)
        relay(session.connection.connected, lambda _b: self._update_note(), self)
        relay(session.connection.disconnected, lambda _r: self._update_note(), self)
        self._update_note()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(poll_ms)

    def _update_note(self) -> None:
        board = self.session.board
        if board is None:
            self.note.setText("no board connected")
        elif not self.session.membrane.available:
            self.note.setText("this board has no membrane readback over USB: use the analog monitor output (SMA) and a scope")
        else:
            self.note.setText("emulator analog monitor")

    def monitor_selected(self) -> None:
        self.session.membrane.select(self.chip_spin.value(), self.core_spin.value(), self.neuron_spin.value())

    def refresh(self) -> None:
        membrane = self.session.membrane
        if not membrane.available:
            return
        membrane.poll()
        key = (self.chip_spin.value(), self.core_spin.value())
        if key not in membrane.selected:
            return
        t, v = membrane.trace(*key)
        if len(t):
            keep = t >= t[-1] - self.span_spin.value() * 1e6
            self.curve.setData(t[keep] / 1e6, v[keep])

    def stop(self) -> None:
        self.timer.stop()
