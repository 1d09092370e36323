"""Bias panel: the 25 biases of one chip/core in a pyqtgraph ParameterTree, applied live.

Each bias is a :class:`BiasSliderParameter` (pyqtgraph's slider parameter whose
span is the linear bias ladder of :mod:`neurolab_gui.core.bias_model`, so the
slider is a current axis) with ``coarse`` and ``fine`` children.  The label
shows the estimated current and the coarse/fine pair.  The panel only
translates: user edits call :class:`BiasModel`; model changes (from here, the
console, calibration or a file) come back through ``BiasModel.changed`` and
move the sliders.
"""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtCore import Qt
from PyQt6.QtWidgets import (
    QComboBox,
    QDialog,
    QFileDialog,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QPushButton,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)
from pyqtgraph.parametertree import Parameter, ParameterTree, registerParameterItemType
from pyqtgraph.parametertree.parameterTypes import SliderParameter
from pyqtgraph.parametertree.parameterTypes.slider import SliderParameterItem

from drivers.dynapse1.bias_table import CORE_BIASES, nominal_current
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP
from neurolab_gui.core.bias_model import LADDER, BiasChange, BiasKey, BiasModel, BiasValue, read_bias_file
from neurolab_gui.core.session import Session

from ..bridge import relay

#: File dialogs: the driver's bias-set format (drivers.dynapse1.bias_files) and its importers.
SAVE_FILTER = "Bias sets (*.json *.yaml *.yml)"
OPEN_FILTER = "Bias sets and imports (*.json *.yaml *.yml *.py);;All files (*)"


def describe(value: BiasValue) -> str:
    return f"{pg.siFormat(nominal_current(value.coarse, value.fine), suffix='A', precision=3)}  (c{value.coarse} f{value.fine})"


class BiasSliderItem(SliderParameterItem):
    """Slider over the bias ladder, labelled with the current in SI units and coarse/fine."""

    def optsChanged(self, param, opts) -> None:
        # pyqtgraph rebuilds the span from 'limits' when only the limits change; the ladder is fixed.
        super().optsChanged(param, {**opts, "span": LADDER.currents, "precision": None})

    def prettyTextValue(self, v: int) -> str:
        coarse, fine = LADDER.setting(int(v))
        return describe(BiasValue(coarse, fine))

    def updateDisplayLabel(self, value=None) -> None:
        text = self.prettyTextValue(self.slider.value())
        self.sliderLabel.setText(text)
        self.displayLabel.setText(text)


class BiasSliderParameter(SliderParameter):
    itemClass = BiasSliderItem


registerParameterItemType("bias_slider", BiasSliderItem, BiasSliderParameter, override=True)


class BiasPanel(QWidget):
    """Per chip/core bias sliders, bias-set files, copy-core, undo/redo and the change log."""

    def __init__(self, session: Session) -> None:
        super().__init__()
        self.session = session
        self.model = session.biases
        self._updating = False
        self.chip_combo = QComboBox()
        self.core_combo = QComboBox()
        for i in range(N_CHIPS):
            self.chip_combo.addItem(f"chip {i}", i)
        for i in range(N_CORES_PER_CHIP):
            self.core_combo.addItem(f"core {i}", i)
        self.copy_combo = QComboBox()
        self.copy_combo.addItem("other cores of this chip", "chip")
        self.copy_combo.addItem("all other cores", "all")
        for chip in range(N_CHIPS):
            for core in range(N_CORES_PER_CHIP):
                self.copy_combo.addItem(f"chip {chip} core {core}", (chip, core))
        self.copy_button = QPushButton("Copy core →")
        self.undo_button = QPushButton("Undo")
        self.redo_button = QPushButton("Redo")
        self.save_button = QPushButton("Save…")
        self.load_button = QPushButton("Load…")
        self.diff_button = QPushButton("Diff…")
        self.preset_combo = QComboBox()
        self.preset_combo.addItems(BiasModel.preset_names())
        self.preset_combo.setCurrentText("samna_recommended")  # the usual starting point (no-op if absent)
        self.preset_combo.setToolTip("published bias sets shipped in resources/biases")
        self.preset_button = QPushButton("Apply to this core")
        self.preset_all_button = QPushButton("… to all cores")

        self.params = Parameter.create(name="biases", type="group", children=[self._bias_param_spec(n) for n in CORE_BIASES])
        for name in CORE_BIASES:
            p = self.params.child(name)
            p.sigValueChanged.connect(self._on_slider)
            p.child("coarse").sigValueChanged.connect(self._on_coarse_fine)
            p.child("fine").sigValueChanged.connect(self._on_coarse_fine)
        self.tree = ParameterTree(showHeader=False)
        self.tree.setParameters(self.params, showTop=False)
        self.change_log = QPlainTextEdit()
        self.change_log.setReadOnly(True)
        self.change_log.setMaximumBlockCount(2000)
        self.change_log.setPlaceholderText("bias change log")

        top = QHBoxLayout()
        for w in (self.chip_combo, self.core_combo, self.undo_button, self.redo_button, self.save_button, self.load_button, self.diff_button):
            top.addWidget(w)
        copy_row = QHBoxLayout()
        copy_row.addWidget(self.copy_button)
        copy_row.addWidget(self.copy_combo, 1)
        preset_row = QHBoxLayout()
        preset_row.addWidget(QLabel("preset"))
        preset_row.addWidget(self.preset_combo, 1)
        preset_row.addWidget(self.preset_button)
        preset_row.addWidget(self.preset_all_button)
        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.addWidget(self.tree)
        splitter.addWidget(self.change_log)
        splitter.setSizes([700, 150])
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addLayout(copy_row)
        layout.addLayout(preset_row)
        layout.addWidget(splitter)

        self.chip_combo.currentIndexChanged.connect(self.refresh)
        self.core_combo.currentIndexChanged.connect(self.refresh)
        self.copy_button.clicked.connect(self.copy_core)
        self.undo_button.clicked.connect(self.model.undo)
        self.redo_button.clicked.connect(self.model.redo)
        self.save_button.clicked.connect(self.save_dialog)
        self.load_button.clicked.connect(self.load_dialog)
        self.diff_button.clicked.connect(self.diff_dialog)
        self.preset_button.clicked.connect(lambda: self.model.apply_preset(self.preset_combo.currentText(), cores=[(self.chip, self.core)]))
        self.preset_all_button.clicked.connect(lambda: self.model.apply_preset(self.preset_combo.currentText()))
        relay(self.model.changed, self._on_model_change, self)
        relay(self.model.history_changed, self._update_history_buttons, self)
        self.refresh()
        self._update_history_buttons()

    @staticmethod
    def _bias_param_spec(name: str) -> dict:
        spec = CORE_BIASES[name]
        return {
            "name": name,
            "type": "bias_slider",
            "span": LADDER.currents,
            "precision": None,
            "value": 0.0,
            "tip": f"{spec.description} ({spec.polarity}-type); slider = nominal current on the linear bias ladder",
            "expanded": False,
            "children": [
                {"name": "coarse", "type": "int", "limits": (0, 7), "value": 7, "tip": "libcaer numbering: 0 = largest current"},
                {"name": "fine", "type": "int", "limits": (0, 255), "value": 0},
            ],
        }

    # --- which core ---------------------------------------------------------------------
    @property
    def chip(self) -> int:
        return int(self.chip_combo.currentData())

    @property
    def core(self) -> int:
        return int(self.core_combo.currentData())

    def show_core(self, chip: int, core: int) -> None:
        self.chip_combo.setCurrentIndex(chip)
        self.core_combo.setCurrentIndex(core)

    def refresh(self) -> None:
        """Show the cached values of the selected core."""
        self._updating = True
        try:
            for name in CORE_BIASES:
                self._show_value(name, self.model.value(self.chip, self.core, name))
        finally:
            self._updating = False

    def _show_value(self, name: str, value: BiasValue) -> None:
        p = self.params.child(name)
        p.setValue(float(LADDER.currents[LADDER.index_of(value.coarse, value.fine)]))
        p.child("coarse").setValue(value.coarse)
        p.child("fine").setValue(value.fine)
        p.setOpts(title=f"{name}   {describe(value)}")

    def slider_widget(self, name: str):
        """The QSlider of bias ``name`` (for tests and keyboard focus)."""
        item = next(iter(self.params.child(name).items))
        return item.slider

    # --- view -> model -------------------------------------------------------------------
    def _on_slider(self, param: Parameter, current: float) -> None:
        if self._updating:
            return
        coarse, fine = LADDER.setting(LADDER.index_of_current(float(current)))
        self.model.set(self.chip, self.core, param.name(), coarse, fine, origin="gui", coalesce=True)

    def _on_coarse_fine(self, param: Parameter, _value: int) -> None:
        if self._updating:
            return
        bias = param.parent()
        self.model.set(self.chip, self.core, bias.name(), bias.child("coarse").value(), bias.child("fine").value(), origin="gui")

    def copy_core(self) -> int:
        target = self.copy_combo.currentData()
        if target == "chip":
            targets = [(self.chip, c) for c in range(N_CORES_PER_CHIP)]
        elif target == "all":
            targets = [(ch, c) for ch in range(N_CHIPS) for c in range(N_CORES_PER_CHIP)]
        else:
            targets = [tuple(target)]
        return self.model.copy_core((self.chip, self.core), targets)

    # --- model -> view -------------------------------------------------------------------
    def _on_model_change(self, change: BiasChange) -> None:
        self.change_log.appendPlainText(
            f"{change.origin:>9}  chip {change.chip} core {change.core} {change.name}: {describe(change.old)} → {describe(change.new)}"
        )
        if (change.chip, change.core) != (self.chip, self.core):
            return
        self._updating = True
        try:
            self._show_value(change.name, self.model.value(change.chip, change.core, change.name))
        finally:
            self._updating = False

    def _update_history_buttons(self) -> None:
        self.undo_button.setEnabled(self.model.can_undo)
        self.redo_button.setEnabled(self.model.can_redo)

    # --- files -----------------------------------------------------------------------------
    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save bias set", "biases.json", SAVE_FILTER)
        if path:
            self.model.save(path)

    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load bias set", "", OPEN_FILTER)
        if path:
            self.model.load(path)

    def diff_rows(self, path: str) -> list[tuple[BiasKey, BiasValue, BiasValue]]:
        return self.model.diff(read_bias_file(path))

    def diff_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Compare with bias set", "", OPEN_FILTER)
        if path:
            self.show_diff(self.diff_rows(path), path)

    def show_diff(self, rows: list[tuple[BiasKey, BiasValue, BiasValue]], title: str) -> QDialog:
        """Non-modal table of differences (current vs file)."""
        dialog = QDialog(self)
        dialog.setWindowTitle(f"Bias differences: current vs {title}")
        table = QTableWidget(len(rows), 5, dialog)
        table.setHorizontalHeaderLabels(["chip", "core", "bias", "current", "file"])
        for i, ((chip, core, name), a, b) in enumerate(rows):
            for j, text in enumerate((str(chip), str(core), name, describe(a), describe(b))):
                table.setItem(i, j, QTableWidgetItem(text))
        table.resizeColumnsToContents()
        layout = QVBoxLayout(dialog)
        layout.addWidget(QLabel(f"{len(rows)} biases differ"))
        layout.addWidget(table)
        dialog.resize(700, 400)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.show()
        return dialog
