"""Membrane panel: the membrane trace of the neuron routed to the analog monitor (emulator readback).

The spin boxes are the selection: changing one routes that neuron to its core's analog monitor
(:meth:`MembraneMonitor.select`), and the plot's title names the neuron drawn.  Clicking a raster
row picks its neuron here too (:meth:`MembranePanel.show_neuron`).  Samples are fetched from the
board on a background thread (the emulator answers from its child process); the panel's timer
only draws what arrived.
"""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QSpinBox, QVBoxLayout, QWidget

from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS_PER_CORE
from neurolab_gui.core.periodic import Periodic
from neurolab_gui.core.session import Session

from ..bridge import relay


def neuron_name(chip: int, core: int, neuron: int) -> str:
    """``chip 0 core 1 neuron 8 (id 264)``: the address and the board-wide id the raster shows."""
    gid = (chip * N_CORES_PER_CHIP + core) * N_NEURONS_PER_CORE + neuron
    return f"chip {chip} core {core} neuron {neuron} (id {gid})"


class MembranePanel(QWidget):
    """The membrane potential of the neuron chosen in the spin boxes, over the last seconds."""

    def __init__(self, session: Session, poll_ms: int = 100) -> None:
        super().__init__()
        self.session = session
        self.chip_spin = QSpinBox(prefix="chip ", maximum=N_CHIPS - 1)
        self.chip_spin.setToolTip("chip of the neuron to watch")
        self.core_spin = QSpinBox(prefix="core ", maximum=N_CORES_PER_CHIP - 1)
        self.core_spin.setToolTip("core of the neuron to watch (one neuron per core is routed to the analog monitor)")
        self.neuron_spin = QSpinBox(prefix="neuron ", maximum=N_NEURONS_PER_CORE - 1)
        self.neuron_spin.setToolTip("neuron within the core; click a raster row to pick its neuron")
        self.span_spin = QDoubleSpinBox(prefix="window ", suffix=" s", minimum=0.01, maximum=10, value=0.5)
        self.span_spin.setToolTip("seconds of board time drawn")
        self.note = QLabel()
        row = QHBoxLayout()
        for w in (self.chip_spin, self.core_spin, self.neuron_spin, self.span_spin):
            row.addWidget(w)
        row.addStretch(1)
        self.plot = pg.PlotWidget()
        self.plot.setLabel("left", "V_mem", units="V")
        self.plot.setLabel("bottom", "board time", units="s")
        self.curve = self.plot.plot(pen=pg.mkPen("c"))
        layout = QVBoxLayout(self)
        layout.addLayout(row)
        layout.addWidget(self.plot, 1)
        layout.addWidget(self.note)
        self._following_monitor = False
        for w in (self.chip_spin, self.core_spin, self.neuron_spin):
            w.valueChanged.connect(self.monitor_selected)
        relay(session.connection.connected, lambda _b: self._update_note(), self)  # attach() routes the selection
        relay(session.connection.disconnected, lambda _r: self._update_note(), self)
        relay(session.membrane.selection_changed, self._on_selection, self)
        self._update_note()
        self.monitor_selected()
        self._poller = Periodic("membrane-poll", poll_ms / 1000, session.membrane.poll).start()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(poll_ms)

    @property
    def neuron(self) -> tuple[int, int, int]:
        """(chip, core, neuron) shown."""
        return self.chip_spin.value(), self.core_spin.value(), self.neuron_spin.value()

    def _update_note(self) -> None:
        board = self.session.board
        if board is None:
            self.note.setText("no board connected")
        elif not self.session.membrane.available:
            self.note.setText("this board has no membrane readback over USB: use the analog monitor output (SMA) and a scope")
        else:
            self.note.setText("emulator analog monitor")

    def _update_title(self) -> None:
        self.plot.setTitle(f"membrane of {neuron_name(*self.neuron)}")

    def show_neuron(self, global_id: int) -> None:
        """Watch the board-wide neuron ``global_id`` (what a click on a raster row asks for)."""
        core_index, neuron = divmod(int(global_id), N_NEURONS_PER_CORE)
        chip, core = divmod(core_index, N_CORES_PER_CHIP)
        self._following_monitor = True  # one selection for the three spin boxes, not three
        try:
            self.chip_spin.setValue(chip)
            self.core_spin.setValue(core)
            self.neuron_spin.setValue(neuron)
        finally:
            self._following_monitor = False
        self.monitor_selected()

    def monitor_selected(self, *_: object) -> None:
        """Route the spin boxes' neuron to its core's analog monitor and draw it from now on."""
        if self._following_monitor:
            return
        self.curve.setData([], [])
        self._update_title()
        self.session.membrane.select(*self.neuron, route_now=False)  # the polling thread writes it to the board

    def _on_selection(self, chip: int, core: int, neuron: int) -> None:
        """A script or the console routed another neuron of the core shown: follow it."""
        if (chip, core) == self.neuron[:2] and neuron != self.neuron[2]:
            self._following_monitor = True
            try:
                self.neuron_spin.setValue(neuron)
            finally:
                self._following_monitor = False
            self.curve.setData([], [])
            self._update_title()

    def refresh(self) -> None:
        membrane = self.session.membrane
        chip, core, neuron = self.neuron
        if not membrane.available or membrane.selected.get((chip, core)) != neuron:
            return
        t, v = membrane.trace(chip, core, span_us=self.span_spin.value() * 1e6)  # the window only, not 200 k samples
        if len(t):
            self.curve.setData(t / 1e6, v)

    def stop(self) -> None:
        self.timer.stop()
        self._poller.stop()
