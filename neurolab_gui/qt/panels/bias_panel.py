"""Bias panel: the 25 biases of one chip/core in a pyqtgraph ParameterTree, applied live.

Each bias is a :class:`BiasSliderParameter` (pyqtgraph's slider parameter whose
span is the driver's bias ladder, so the slider is a current axis) with children
for every field of its :class:`~drivers.dynapse1.bias_table.BiasValue`: ``coarse``
and ``fine`` spin boxes, and the three flags CortexControl offers -- current level
(high/low), type (normal/cascode) and enabled.  Title and slider label both show
the value the board holds (current, coarse/fine, non-default flags); while the
slider is between that value and another rung, the label shows the rung.

The panel only translates: user edits call :class:`BiasModel` (the slider and the
spin boxes change the setting and keep the flags, the flag controls change one
flag and keep the setting); model changes (from here, the console, calibration,
a file or a failed write's roll-back) come back through ``BiasModel.changed`` and
move the controls.  A write the board refused is shown in the panel's status line
and the log; the controls then show what the board holds.  Biases a running job holds (the
swept IF_DC_P, :meth:`BiasModel.hold`) have their controls greyed, the reason as tooltip, from
``BiasModel.holds_changed``; only the controls' Qt enabled state changes, never a bias's
"enabled" flag.  A write the model refused as held is shown in the status line, nothing written.
"""

from __future__ import annotations

import logging
import time

import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer
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
from pyqtgraph.parametertree.parameterTypes import SliderParameter, WidgetParameterItem
from pyqtgraph.parametertree.parameterTypes.slider import SliderParameterItem

from drivers.dynapse1.bias_files import BiasFileError
from drivers.dynapse1.bias_table import CORE_BIASES, LADDER, SILENT, BiasValue
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP
from neurolab_gui.core.bias_model import BiasChange, BiasHeldError, BiasKey, BiasModel, BiasWriteError, read_bias_file
from neurolab_gui.core.preset_match import matching_preset
from neurolab_gui.core.session import Session

from ..bridge import relay

#: File dialogs: the driver's bias-set format (drivers.dynapse1.bias_files) and its importers.
SAVE_FILTER = "Bias sets (*.json *.yaml *.yml)"
OPEN_FILTER = "Bias sets and imports (*.json *.yaml *.yml *.py);;All files (*)"
#: Longest stretch the panel redraws changed biases before it lets the event loop run again.
SHOW_SLICE_S = 0.008


log = logging.getLogger("neurolab.gui.biases")

#: The flag controls: child name -> (BiasValue field, choices as (label, flag value)) or None for a check box.
LEVEL_CHOICES = {"high": True, "low": False}
TYPE_CHOICES = {"normal": True, "cascode": False}
#: The children of every bias in the tree: its setting and flag controls.
BIAS_FIELDS = ("coarse", "fine", "level", "type", "enabled")


def describe(value: BiasValue) -> str:
    """"376 nA  (c1 f30)", plus the non-default flags ("low cascode disabled")."""
    flags = value.flags_text()
    text = f"{pg.siFormat(value.current, suffix='A', precision=3)}  (c{value.coarse} f{value.fine})"
    return f"{text}  {flags}" if flags else text


class BiasSliderItem(SliderParameterItem):
    """Slider over the bias ladder, labelled with the current in SI units and coarse/fine.

    At the position of the value the board holds the label describes that value (which may be
    spelled off the ladder, e.g. c1 f30 where the ladder's rung is c2 f240), so it agrees with the
    title; elsewhere it describes the rung the slider would write.
    """

    def optsChanged(self, param, opts) -> None:
        # The span is the fixed ladder, set once.  pyqtgraph's slider item would rebuild it, and a
        # string array of all its rungs, at every option change -- every title change included --
        # which made each bias change and each core switch visibly slow (docs/ARCHITECTURE.md,
        # "Biases").  Labels come from prettyTextValue instead.
        try:
            WidgetParameterItem.optsChanged(self, param, opts)
        except AttributeError:  # called while pyqtgraph is still building the widget
            pass
        slider = getattr(self, "slider", None)
        if slider is not None and getattr(self, "span", None) is not LADDER.currents:
            self.span = LADDER.currents
            slider.setMinimum(0)
            slider.setMaximum(len(LADDER) - 1)

    def prettyTextValue(self, v: int) -> str:
        shown: BiasValue | None = self.param.opts.get("bias_value")
        if shown is not None and LADDER.index_of(shown.coarse, shown.fine) == int(v):
            return describe(shown)
        return describe(LADDER.value(int(v), like=shown or SILENT))

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
        self._pending_changes: list[BiasChange] = []
        self._to_show: dict[str, None] = {}  # biases of the shown core still to redraw (in order)
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
        self.preset_combo.setToolTip("published bias sets shipped in resources/biases; shows the set this core runs, if any")
        self.preset_combo.setPlaceholderText("custom (none of the shipped sets)")
        self.preset_button = QPushButton("Apply to this core")
        self.preset_all_button = QPushButton("… to all cores")
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #c0392b")
        self.status_label.setToolTip("the last bias write the board did not acknowledge, and what the board holds now")
        self.copy_button.setToolTip("copy all 25 biases of this core (flags included) to the cores chosen on the right")
        self.copy_combo.setToolTip("which cores 'Copy core' writes to")
        self.undo_button.setToolTip("undo the last bias change (a drag, a file, a preset or a whole sweep is one step)")
        self.redo_button.setToolTip("redo the bias change just undone")
        self.save_button.setToolTip("save every core's biases (with their flags) as a JSON or YAML bias file")
        self.load_button.setToolTip("load a bias file (NeuroLab JSON/YAML, samna JSON or a CortexControl script); "
                                    "it is checked completely before anything is written")
        self.diff_button.setToolTip("compare the current biases with a bias file")
        self.chip_combo.setToolTip("chip whose biases are shown")
        self.core_combo.setToolTip("core whose biases are shown (a core's 256 neurons share them)")
        self.preset_button.setToolTip("write the selected published set to the core shown")
        self.preset_all_button.setToolTip("write the selected published set to all 16 cores")

        self.params = Parameter.create(name="biases", type="group", children=[self._bias_param_spec(n) for n in CORE_BIASES])
        for name in CORE_BIASES:
            p = self.params.child(name)
            p.sigValueChanged.connect(self._on_slider)
            p.child("coarse").sigValueChanged.connect(self._on_coarse_fine)
            p.child("fine").sigValueChanged.connect(self._on_coarse_fine)
            for flag in ("level", "type", "enabled"):
                p.child(flag).sigValueChanged.connect(self._on_flag)
        # tooltips to put back when a hold ends; what the panel last showed as held, per bias
        self._tips = {(n, c): self.params.child(n, *([c] if c else [])).opts.get("tip", "")
                      for n in CORE_BIASES for c in ("", *BIAS_FIELDS)}
        self._held_shown: dict[str, str | None] = dict.fromkeys(CORE_BIASES)
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
        layout.addWidget(self.status_label)
        layout.addWidget(splitter)

        self.chip_combo.currentIndexChanged.connect(self.refresh)
        self.core_combo.currentIndexChanged.connect(self.refresh)
        self.copy_button.clicked.connect(self.copy_core)
        self.undo_button.clicked.connect(self.undo)
        self.redo_button.clicked.connect(self.redo)
        self.save_button.clicked.connect(self.save_dialog)
        self.load_button.clicked.connect(self.load_dialog)
        self.diff_button.clicked.connect(self.diff_dialog)
        self.preset_combo.currentIndexChanged.connect(self._update_preset_buttons)
        self.preset_button.clicked.connect(
            lambda: self._guarded(self.model.apply_preset, self.preset_combo.currentText(), cores=[(self.chip, self.core)]))
        self.preset_all_button.clicked.connect(lambda: self._guarded(self.model.apply_preset, self.preset_combo.currentText()))
        relay(self.model.changed, self._on_model_change, self)
        relay(self.model.history_changed, self._update_history_buttons, self)
        relay(self.model.write_failed, self._on_write_failed, self)
        relay(self.model.history_cleared, self._on_history_cleared, self)
        relay(self.model.holds_changed, self._show_holds, self)
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
            "tip": f"{spec.description} ({spec.polarity}-type, address {spec.offset} on core 0); "
                   "slider = nominal current on the bias ladder (finest coarse range for each current)",
            "expanded": False,
            "children": [
                {"name": "coarse", "type": "int", "limits": (0, 7), "value": 7,
                 "tip": "coarse range, libcaer numbering: 0 = largest current (24 µA full scale), 7 = smallest (15 pA)"},
                {"name": "fine", "type": "int", "limits": (0, 255), "value": 0,
                 "tip": "fine value: the current is fine/255 of the coarse range's full scale"},
                {"name": "level", "title": "current level", "type": "list", "limits": list(LEVEL_CHOICES), "value": "high",
                 "tip": "HighBias or LowBias: 'low' scales the generator's output down to a much smaller current "
                        "(CortexControl's HighBias/LowBias)"},
                {"name": "type", "title": "type", "type": "list", "limits": list(TYPE_CHOICES), "value": "normal",
                 "tip": "Normal or Cascode bias type (CortexControl's Normal/Cascode); libcaer always writes Normal"},
                {"name": "enabled", "title": "enabled", "type": "bool", "value": True,
                 "tip": "when off the bias generator drives no current into this bias (the setting is kept)"},
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
        self._show_holds()
        self._show_matching_preset()

    def _show_holds(self) -> None:
        """Grey the controls of the shown core's biases that a job holds, with the reason as
        tooltip, and enable them again when the hold ends.  Only the Qt enabled state changes:
        the bias's own "enabled" flag (a child's value) is left exactly as it is."""
        for name in CORE_BIASES:
            reason = self.model.hold_reason(self.chip, self.core, name)
            if reason == self._held_shown[name]:
                continue
            self._held_shown[name] = reason
            if reason is None:  # the job's restore may not be drawn yet: never enable a control showing a level
                self._updating = True
                try:
                    self._show_value(name, self.model.value(self.chip, self.core, name))
                finally:
                    self._updating = False
            for child in ("", *BIAS_FIELDS):
                param = self.params.child(name, *([child] if child else []))
                param.setOpts(enabled=reason is None, tip=reason or self._tips[(name, child)])

    def held_reason_shown(self, name: str) -> str | None:
        """The hold reason the panel shows for bias ``name`` of the shown core (None: editable)."""
        return self._held_shown[name]

    def _show_matching_preset(self) -> None:
        """Point the preset box at the set this core runs (libcaer's start-up set on a fresh board),
        or leave it empty, reading "custom", when the core runs none of them."""
        name = matching_preset(self.model, self.chip, self.core)
        self.preset_combo.setCurrentIndex(-1 if name is None else self.preset_combo.findText(name))

    def _update_preset_buttons(self) -> None:
        chosen = self.preset_combo.currentIndex() >= 0
        self.preset_button.setEnabled(chosen)
        self.preset_all_button.setEnabled(chosen)

    def _show_value(self, name: str, value: BiasValue) -> None:
        p = self.params.child(name)
        p.opts["bias_value"] = value  # read by the slider label (before the slider moves)
        p.setValue(float(LADDER.currents[LADDER.index_of(value.coarse, value.fine)]))
        p.child("coarse").setValue(value.coarse)
        p.child("fine").setValue(value.fine)
        p.child("level").setValue("high" if value.high else "low")
        p.child("type").setValue("normal" if value.normal else "cascode")
        p.child("enabled").setValue(value.enabled)
        p.setOpts(title=f"{name}   {describe(value)}")
        for item in p.items:
            item.updateDisplayLabel()

    def _item(self, name: str, child: str | None = None):
        param = self.params.child(name) if child is None else self.params.child(name, child)
        return next(iter(param.items))

    def slider_widget(self, name: str):
        """The QSlider of bias ``name`` (for tests and keyboard focus)."""
        return self._item(name).slider

    def slider_label(self, name: str) -> str:
        """The text beside the slider of bias ``name``."""
        return self._item(name).sliderLabel.text()

    def title(self, name: str) -> str:
        """The title of bias ``name`` in the tree."""
        return self._item(name).text(0)

    def control_widget(self, name: str, child: str):
        """The editor of one field of bias ``name``: ``coarse``/``fine`` (spin boxes), ``level`` and
        ``type`` (combo boxes), ``enabled`` (check box).  Expands the bias so it is visible."""
        self.params.child(name).setOpts(expanded=True)
        return self._item(name, child).widget

    # --- view -> model -------------------------------------------------------------------
    def _on_slider(self, param: Parameter, current: float) -> None:
        if self._updating:
            return
        coarse, fine = LADDER.setting(LADDER.index_of_current(float(current)))
        # the model keeps the bias's flags: only the setting changes
        self._guarded(self.model.set, self.chip, self.core, param.name(), coarse, fine, origin="gui", coalesce=True)

    def _on_coarse_fine(self, param: Parameter, value: int) -> None:
        if self._updating:
            return
        # only the field that was edited changes: the other comes from the model, which may be
        # newer than this view (model changes reach the view through the event queue)
        name = param.parent().name()
        current = self.model.value(self.chip, self.core, name)
        coarse, fine = (int(value), current.fine) if param.name() == "coarse" else (current.coarse, int(value))
        self._guarded(self.model.set, self.chip, self.core, name, coarse, fine, origin="gui")

    def _on_flag(self, param: Parameter, value: object) -> None:
        if self._updating:
            return
        flag = {"level": ("high", LEVEL_CHOICES.get), "type": ("normal", TYPE_CHOICES.get), "enabled": ("enabled", bool)}
        field, convert = flag[param.name()]
        self._guarded(self.model.set_flags, self.chip, self.core, param.parent().name(), **{field: convert(value)}, origin="gui")

    def _guarded(self, write, *args, **kwargs) -> bool:
        """Run a model write; a write the board refused was reported by ``write_failed``: show the board's state."""
        try:
            write(*args, **kwargs)
        except BiasWriteError:
            self.refresh()  # the control the user moved goes back to what the board holds
            return False
        except BiasHeldError as exc:  # refused before anything was sent: say why, show the model's value
            self.status_label.setText(f"Not changed: {exc}.")
            self.change_log.appendPlainText(f"{'refused':>9}  {exc}")
            log.warning("bias write refused: %s", exc)
            # after the control's own change has been delivered: refreshed inside it, pyqtgraph's
            # item would still get the refused value afterwards and show it
            QTimer.singleShot(0, self.refresh)
            return False
        self.status_label.clear()  # this write went through: a failure shown before is history
        return True

    def undo(self) -> bool:
        """Undo the last bias change (the Undo button and Ctrl+Z)."""
        return self._guarded(self.model.undo)

    def redo(self) -> bool:
        return self._guarded(self.model.redo)

    def _on_write_failed(self, error: BiasWriteError) -> None:
        what = "the board was rolled back and holds the previous values" if error.rolled_back else (
            "the roll-back failed too; the controls show what the board was last sent")
        self.status_label.setText(f"Bias write failed: {error.cause}. {what[0].upper()}{what[1:]}.")
        self.change_log.appendPlainText(f"{'FAILED':>9}  {error}")
        log.error("bias write failed: %s", error)
        self.refresh()

    def copy_core(self) -> int:
        target = self.copy_combo.currentData()
        if target == "chip":
            targets = [(self.chip, c) for c in range(N_CORES_PER_CHIP)]
        elif target == "all":
            targets = [(ch, c) for ch in range(N_CHIPS) for c in range(N_CORES_PER_CHIP)]
        else:
            targets = [tuple(target)]
        before = len(self.model.log)
        self._guarded(self.model.copy_core, (self.chip, self.core), targets)
        return len(self.model.log) - before

    # --- model -> view -------------------------------------------------------------------
    def _on_model_change(self, change: BiasChange) -> None:
        # Changes come in bursts (a board's 400 biases read back on connect, a preset, a file):
        # they are drawn together once the burst has been delivered, not one relayout each.
        self._pending_changes.append(change)
        if len(self._pending_changes) == 1:
            QTimer.singleShot(0, self._show_pending_changes)

    def _show_pending_changes(self) -> None:
        changes, self._pending_changes = self._pending_changes, []
        if not changes:  # already shown (a history note flushed them)
            return
        self.change_log.appendPlainText("\n".join(
            f"{c.origin:>9}  chip {c.chip} core {c.core} {c.name}: {describe(c.old)} → {describe(c.new)}" for c in changes
        ))
        drawing = bool(self._to_show)
        self._to_show.update(dict.fromkeys(c.name for c in changes if (c.chip, c.core) == (self.chip, self.core)))
        if self._to_show and not drawing:
            self._show_some()

    def _show_some(self) -> None:
        """Redraw the changed biases of the shown core, at most ``SHOW_SLICE_S`` of them per pass
        of the event loop (one costs ~1 ms of pyqtgraph parameter updates): a preset or a
        calibration's bias burst is drawn over a few passes, not in one long stall."""
        started = time.perf_counter()
        self._updating = True
        try:
            while self._to_show and time.perf_counter() - started < SHOW_SLICE_S:
                name = next(iter(self._to_show))
                del self._to_show[name]
                self._show_value(name, self.model.value(self.chip, self.core, name))
        finally:
            self._updating = False
        if self._to_show:
            QTimer.singleShot(0, self._show_some)
        else:
            self._show_matching_preset()

    def _on_history_cleared(self, reason: str) -> None:
        self._show_pending_changes()  # the board's read-back lines first, so the log reads in order
        self.change_log.appendPlainText(f"{'history':>9}  {reason}")

    def _update_history_buttons(self) -> None:
        self.undo_button.setEnabled(self.model.can_undo)
        self.redo_button.setEnabled(self.model.can_redo)

    # --- files -----------------------------------------------------------------------------
    def save_dialog(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save bias set", "biases.json", SAVE_FILTER)
        if not path:
            return
        try:
            self.model.save(path)
        except OSError as exc:  # a folder that is gone, a directory, no permission, a full disk
            reason = exc.strerror or str(exc)
            self.status_label.setText(f"Could not save the bias set to {path}: {reason}")
            log.error("could not save the bias set to %s: %s", path, reason)
            return
        self.status_label.clear()  # saved: a failure shown before is history
        log.info("bias set saved to %s", path)

    def load_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load bias set", "", OPEN_FILTER)
        if path:
            try:
                self._guarded(self.model.load, path)
            except BiasFileError as exc:  # checked before anything was written: nothing changed
                self._report_file_error(exc)

    def diff_rows(self, path: str) -> list[tuple[BiasKey, BiasValue, BiasValue]]:
        return self.model.diff(read_bias_file(path))

    def diff_dialog(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Compare with bias set", "", OPEN_FILTER)
        if path:
            try:
                rows = self.diff_rows(path)
            except BiasFileError as exc:
                self._report_file_error(exc)
                return
            self.show_diff(rows, path)

    def _report_file_error(self, error: BiasFileError) -> None:
        self.status_label.setText(f"Bias file refused, nothing written: {error}")
        log.error("bias file refused: %s", error)

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
