"""Stimulus panel: Poisson generator and FPGA spike generator controls (calls the session's StimulusController)."""

from __future__ import annotations

from PyQt6.QtWidgets import (
    QCheckBox,
    QDoubleSpinBox,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from drivers.dynapse1.topology import N_CHIPS
from neurolab_gui.core.session import Session

from ..errors import ErrorReporter


def parse_ids(text: str, limit: int) -> list[int]:
    """Parse "0-15, 20, 30-31" into ids; raises ValueError naming the bad part."""
    ids: list[int] = []
    for part in text.replace(" ", "").split(","):
        if not part:
            continue
        try:
            if "-" in part:
                a, b = part.split("-", 1)
                ids.extend(range(int(a), int(b) + 1))
            else:
                ids.append(int(part))
        except ValueError:
            raise ValueError(f"cannot read source ids from {part!r} (use e.g. 0-15, 20)") from None
    bad = [i for i in ids if not 0 <= i < limit]
    if bad:
        raise ValueError(f"source ids must lie in 0..{limit - 1}, got {bad[:5]}")
    return ids


class StimulusPanel(QWidget):
    def __init__(self, session: Session, reporter: ErrorReporter) -> None:
        super().__init__()
        self.session = session
        self.reporter = reporter
        # Poisson generator
        self.p_chip = QSpinBox(maximum=N_CHIPS - 1)
        self.p_sources = QLineEdit("0-15")
        self.p_rate = QDoubleSpinBox(suffix=" Hz", maximum=100_000, value=50.0)
        self.p_apply = QPushButton("Apply rates")
        self.p_stop = QPushButton("All off")
        poisson = QGroupBox("Poisson generator")
        pf = QFormLayout(poisson)
        pf.addRow("chip", self.p_chip)
        pf.addRow("sources (core·256+neuron)", self.p_sources)
        pf.addRow("rate", self.p_rate)
        row = QHBoxLayout()
        row.addWidget(self.p_apply)
        row.addWidget(self.p_stop)
        pf.addRow(row)
        # FPGA spike generator
        self.s_chip = QSpinBox(maximum=N_CHIPS - 1)
        self.s_sources = QLineEdit("0-3")
        self.s_mask = QSpinBox(minimum=1, maximum=15, value=1)
        self.s_rate = QDoubleSpinBox(suffix=" Hz", minimum=0.1, maximum=100_000, value=100.0)
        # 3 decimals: the 1 ms minimum must be a value the box can show and Load accepts
        self.s_duration = QDoubleSpinBox(suffix=" s", decimals=3, minimum=0.001, maximum=600, value=1.0)
        self.s_repeat = QCheckBox("repeat")
        self.s_load = QPushButton("Load train")
        self.s_start = QPushButton("Start")
        self.s_stop = QPushButton("Stop")
        spikegen = QGroupBox("FPGA spike generator (regular trains)")
        sf = QFormLayout(spikegen)
        sf.addRow("chip", self.s_chip)
        sf.addRow("sources (0..255)", self.s_sources)
        sf.addRow("core mask (1..15)", self.s_mask)
        sf.addRow("rate per source", self.s_rate)
        sf.addRow("duration", self.s_duration)
        sf.addRow(self.s_repeat)
        row2 = QHBoxLayout()
        for b in (self.s_load, self.s_start, self.s_stop):
            row2.addWidget(b)
        sf.addRow(row2)
        self.p_chip.setToolTip('chip whose Poisson generator drives the sources')
        self.p_sources.setToolTip('virtual sources to drive, as core·256+neuron ids, e.g. 0-15, 20')
        self.p_rate.setToolTip('Poisson rate of every listed source')
        self.p_apply.setToolTip('set the listed sources to this rate (others keep theirs)')
        self.p_stop.setToolTip('turn every Poisson source of the chip off')
        self.s_chip.setToolTip('chip the FPGA spike generator sends to')
        self.s_sources.setToolTip('source ids (0..255) of the regular trains')
        self.s_mask.setToolTip("cores (bit mask, 1..15) the trains' events are broadcast to")
        self.s_rate.setToolTip("spikes per second of each source's regular train")
        self.s_duration.setToolTip('length of the train')
        self.s_repeat.setToolTip('replay the train in a loop until stopped')
        self.s_load.setToolTip('build the regular trains and load them into the FPGA spike generator')
        self.s_start.setToolTip('start the loaded spike generator program')
        self.s_stop.setToolTip('stop the spike generator')
        layout = QVBoxLayout(self)
        layout.addWidget(poisson)
        layout.addWidget(spikegen)
        layout.addStretch(1)
        stim = session.stimulus
        self.p_apply.clicked.connect(self._guard(lambda: stim.set_poisson(self.p_chip.value(), parse_ids(self.p_sources.text(), 1024), self.p_rate.value())))
        self.p_stop.clicked.connect(self._guard(stim.stop_poisson))
        self.s_load.clicked.connect(self._guard(lambda: stim.load_regular_train(
            self.s_chip.value(), parse_ids(self.s_sources.text(), 256), self.s_mask.value(), self.s_rate.value(),
            self.s_duration.value(), self.s_repeat.isChecked())))
        self.s_start.clicked.connect(self._guard(stim.start_spike_generator))
        self.s_stop.clicked.connect(self._guard(stim.stop_spike_generator))

    def _guard(self, action):
        """Bad input or no board: report it (log + non-modal message), change nothing."""
        def run(*_):
            try:
                action()
            except (ValueError, RuntimeError) as exc:
                self.reporter.report(exc, "stimulus")
        return run
