"""Bias flags, labels, undo and failed writes, pressed on the real bias panel of the main window.

Every test drives the widgets a person touches (QTest keys and clicks on the combo boxes, the
check box, the slider, the spin boxes, Ctrl+Z) and then checks what the emulated chip holds: the
simulator's bias bank, which the virtual FPGA fills by decoding the bias words that arrived over
the (virtual) USB -- not the driver's or the model's cache.
"""

from __future__ import annotations

import pytest
from PyQt6.QtCore import QPoint, Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QStyle, QStyleOptionButton

from drivers.dynapse1.bias_table import BiasValue
from emulator.virtual_board import virtual_fpga_of

CHIP, CORE, BIAS = 1, 2, "IF_DC_P"


@pytest.fixture
def window(make_window, qtbot):
    """The main window on a connected fast emulator, shown, with chip 1 core 2 in the bias panel."""
    w = make_window(spike_capacity=100_000, seed=3, mismatch=False, clock="fast", acquire=False)
    w.show()
    qtbot.waitExposed(w)
    w.activateWindow()
    w.bias_panel.show_core(CHIP, CORE)
    return w


def chip_value(window, chip=CHIP, core=CORE, name=BIAS) -> BiasValue:
    """What the emulated chip holds (decoded from the bias words it received)."""
    coarse, fine, high, normal, enabled = virtual_fpga_of(window.session.board).simulator.get_bias(chip, core, name)
    return BiasValue(coarse, fine, high, normal, enabled)


def click_check_box(box) -> None:
    option = QStyleOptionButton()
    box.initStyleOption(option)
    indicator = box.style().subElementRect(QStyle.SubElement.SE_CheckBoxIndicator, option, box)
    QTest.mouseClick(box, Qt.MouseButton.LeftButton, pos=indicator.center() if indicator.isValid() else QPoint(5, box.height() // 2))


def press_ctrl_z(window) -> None:
    QTest.keyClick(window.bias_panel.slider_widget(BIAS), Qt.Key.Key_Z, Qt.KeyboardModifier.ControlModifier)


def test_flags_set_in_the_panel_survive_slider_spin_boxes_undo_and_scripts(window, qtbot):
    panel, model = window.bias_panel, window.session.biases
    model.set_value(CHIP, CORE, BIAS, BiasValue(5, 100), origin="test")
    # cascode, then low, then disabled: each a control of the panel
    type_box = panel.control_widget(BIAS, "type")
    type_box.setFocus()
    QTest.keyClick(type_box, Qt.Key.Key_Down)
    assert type_box.currentText() == "cascode"
    assert chip_value(window) == BiasValue(5, 100, high=True, normal=False, enabled=True)
    level_box = panel.control_widget(BIAS, "level")
    QTest.keyClick(level_box, Qt.Key.Key_Down)
    assert chip_value(window) == BiasValue(5, 100, high=False, normal=False, enabled=True)
    click_check_box(panel.control_widget(BIAS, "enabled"))
    flags_off = dict(high=False, normal=False, enabled=False)
    assert chip_value(window) == BiasValue(5, 100, **flags_off)
    qtbot.waitUntil(lambda: "low cascode disabled" in panel.title(BIAS), timeout=2000)  # the view follows the model

    # the slider: a page step up changes the setting on the chip, not the flags
    slider = panel.slider_widget(BIAS)
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_PageUp)
    qtbot.waitUntil(lambda: model.value(CHIP, CORE, BIAS).current > BiasValue(5, 100).current, timeout=2000)
    after_slider = chip_value(window)
    assert (after_slider.coarse, after_slider.fine) != (5, 100)
    assert after_slider == model.value(CHIP, CORE, BIAS).replace(**flags_off)

    # the fine spin box: one step up (pyqtgraph delays the spin box's signal a little)
    fine_box = panel.control_widget(BIAS, "fine")
    qtbot.waitUntil(lambda: fine_box.value() == after_slider.fine, timeout=2000)  # the box shows the slider's value
    fine_box.setFocus()
    QTest.keyClick(fine_box, Qt.Key.Key_Up)
    qtbot.waitUntil(lambda: chip_value(window).fine == after_slider.fine + 1, timeout=3000)
    assert chip_value(window) == after_slider.with_setting(after_slider.coarse, after_slider.fine + 1)

    # Ctrl+Z undoes the spin box step, and the flags stay off on the chip
    press_ctrl_z(window)
    qtbot.waitUntil(lambda: chip_value(window) == after_slider, timeout=3000)

    # a single-bias write from the console / a script keeps the flags too
    window.console_panel.execute(f"session.biases.set({CHIP}, {CORE}, '{BIAS}', 2, 77, origin='console')")
    assert chip_value(window) == BiasValue(2, 77, **flags_off)
    # and the panel's controls show the chip's flags
    qtbot.waitUntil(lambda: "(c2 f77)" in panel.title(BIAS), timeout=2000)
    assert (panel.control_widget(BIAS, "level").currentText(), panel.control_widget(BIAS, "type").currentText(),
            panel.control_widget(BIAS, "enabled").isChecked()) == ("low", "cascode", False)

    # Ctrl+Z back through the flag changes re-enables the bias on the chip step by step
    press_ctrl_z(window)  # the console write
    press_ctrl_z(window)  # the slider step
    assert chip_value(window) == BiasValue(5, 100, **flags_off)
    press_ctrl_z(window)  # "disabled"
    assert chip_value(window) == BiasValue(5, 100, high=False, normal=False, enabled=True)
    qtbot.waitUntil(lambda: panel.control_widget(BIAS, "enabled").isChecked(), timeout=2000)


def test_title_and_slider_label_describe_the_same_setting(window, qtbot):
    panel, model = window.bias_panel, window.session.biases
    model.set_value(CHIP, CORE, BIAS, BiasValue(1, 30), origin="test")  # 376 nA, spelled off the ladder (c2 f240)
    qtbot.wait(50)
    assert "(c1 f30)" in panel.title(BIAS) and "(c1 f30)" in panel.slider_label(BIAS)
    assert "376" in panel.title(BIAS) and "376" in panel.slider_label(BIAS)
    # moving the slider: both show the new rung
    slider = panel.slider_widget(BIAS)
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_Right)
    qtbot.waitUntil(lambda: model.value(CHIP, CORE, BIAS) != BiasValue(1, 30), timeout=2000)
    qtbot.wait(50)
    value = model.value(CHIP, CORE, BIAS)
    spelled = f"(c{value.coarse} f{value.fine})"
    assert spelled in panel.title(BIAS) and spelled in panel.slider_label(BIAS)
    assert chip_value(window) == value


def test_a_sweep_leaves_no_undo_step_so_one_ctrl_z_undoes_the_step_before(window, qtbot):
    model, transfer = window.session.biases, window.transfer_panel
    before = BiasValue(6, 40, high=True, normal=False, enabled=False)  # off: "DC on" after the undo would show
    model.set_value(CHIP, CORE, BIAS, before, origin="test")
    transfer.chip_spin.setValue(CHIP)
    transfer.core_spin.setValue(CORE)
    transfer.steps_spin.setValue(3)
    transfer.duration_spin.setValue(0.05)
    undo_depth, log_length = len(model._undo), len(model.log)
    QTest.mouseClick(transfer.sweep_button, Qt.MouseButton.LeftButton)  # the user's Sweep button
    task = transfer.task
    assert task is not None
    qtbot.waitUntil(lambda: task.done and transfer.sweep_button.isEnabled(), timeout=60_000)
    levels = [c.new for c in model.log[log_length:] if c.origin == "sweep"]
    assert len(levels) == 3 + 1  # every level and the restore are in the change log ...
    # ... and the sweep ended as it started (off and cascode, not the last level): no undo step,
    # which would change nothing and make the user press Ctrl+Z twice
    assert chip_value(window) == before == model.value(CHIP, CORE, BIAS)
    assert len(model._undo) == undo_depth
    press_ctrl_z(window)  # one Ctrl+Z undoes what came before the sweep
    assert chip_value(window) != before


def test_load_button_refuses_a_bad_file_and_loads_flags_from_a_good_one(window, qtbot, tmp_path, monkeypatch):
    import json

    from PyQt6.QtWidgets import QFileDialog

    panel = window.bias_panel
    before = chip_value(window)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": "neurolab-biases", "cores": {"1/2": {BIAS: {"coarse": 3.9, "fine": 10}}}}))
    good = tmp_path / "good.yaml"
    good.write_text(f"format: neurolab-biases\ncores:\n  '1/2':\n    {BIAS}: {{coarse: 4, fine: 77, normal: false, enabled: false}}\n")
    chosen = [str(bad)]
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (chosen[0], "")))
    QTest.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    assert "bad.json: cores['1/2'].IF_DC_P: coarse must be an integer" in panel.status_label.text()
    assert chip_value(window) == before  # nothing was sent
    chosen[0] = str(good)
    QTest.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    assert chip_value(window) == BiasValue(4, 77, normal=False, enabled=False)
    qtbot.waitUntil(lambda: "cascode disabled" in panel.title(BIAS), timeout=2000)


def test_ctrl_z_after_connecting_never_writes_an_offline_edit_to_the_board(make_window, qtbot):
    """An offline slider step's undo belongs to no board: after Connect it is gone (and the log says so)."""
    window = make_window(spike_capacity=10_000)
    window.show()
    qtbot.waitExposed(window)
    window.activateWindow()
    panel, model = window.bias_panel, window.session.biases
    panel.show_core(CHIP, CORE)
    slider = panel.slider_widget(BIAS)
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_PageUp)  # an offline edit: one undo step
    qtbot.waitUntil(lambda: model.can_undo, timeout=2000)
    assert window.session.connect("emulator", seed=3, mismatch=False, clock="fast", acquire=False)
    on_chip = chip_value(window)
    assert model.value(CHIP, CORE, BIAS) == on_chip  # the board's value, read on attach
    qtbot.waitUntil(lambda: not panel.undo_button.isEnabled(), timeout=2000)
    qtbot.waitUntil(lambda: "undo history cleared" in panel.change_log.toPlainText(), timeout=2000)
    press_ctrl_z(window)
    assert chip_value(window) == on_chip == model.value(CHIP, CORE, BIAS)  # nothing stale was written


def test_load_button_refuses_a_file_that_sets_no_bias(window, qtbot, tmp_path, monkeypatch):
    from PyQt6.QtWidgets import QFileDialog

    panel, model = window.bias_panel, window.session.biases
    script = tmp_path / "ctx.py"
    script.write_text("import os\nos.system('touch " + str(tmp_path / "ran") + "')\n")  # never run: parsed, not executed
    monkeypatch.setattr(QFileDialog, "getOpenFileName", staticmethod(lambda *a, **k: (str(script), "")))
    before, log_length = chip_value(window), len(model.log)
    QTest.mouseClick(panel.load_button, Qt.MouseButton.LeftButton)
    assert f"no biases found in {script}" in panel.status_label.text()
    assert chip_value(window) == before and len(model.log) == log_length and not (tmp_path / "ran").exists()


def test_save_to_an_unwritable_path_says_so_and_a_later_save_clears_it(window, qtbot, tmp_path, monkeypatch):
    from PyQt6.QtWidgets import QFileDialog

    panel = window.bias_panel
    chosen = [str(tmp_path / "no_such_folder" / "b.json")]
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (chosen[0], "")))
    QTest.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)  # raised through the exception hook before
    assert panel.status_label.text() == f"Could not save the bias set to {chosen[0]}: No such file or directory"
    chosen[0] = str(tmp_path)  # a directory
    QTest.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    assert panel.status_label.text() == f"Could not save the bias set to {tmp_path}: Is a directory"
    assert window.reporter.errors == []
    chosen[0] = str(tmp_path / "b.json")
    QTest.mouseClick(panel.save_button, Qt.MouseButton.LeftButton)
    assert panel.status_label.text() == "" and (tmp_path / "b.json").exists()


# --- a sweep holds its IF_DC_P -----------------------------------------------------------------
HELD = f"{BIAS} of chip {CHIP} core {CORE} is being swept; cancel the sweep to change it"


def start_paused_sweep(window, qtbot, at_level=None):
    """Press Sweep (3 short levels of chip 1 core 2) with the worker stopped after the first level
    until the returned event is set; the chip's value at every level is appended to ``levels``.
    ``at_level`` (called on the worker after the first level) may raise to make the sweep fail."""
    import threading

    transfer = window.transfer_panel
    transfer.chip_spin.setValue(CHIP)
    transfer.core_spin.setValue(CORE)
    transfer.low_spin.setValue(0.03)
    transfer.high_spin.setValue(0.3)
    transfer.steps_spin.setValue(3)
    transfer.duration_spin.setValue(0.05)
    go, levels, post = threading.Event(), [], transfer.post

    def paused_post(curves):
        levels.append(chip_value(window))
        if len(levels) == 1:
            assert go.wait(20), "the test never let the sweep go on"
            if at_level is not None:
                at_level()
        post(curves)

    transfer.post = paused_post
    QTest.mouseClick(transfer.sweep_button, Qt.MouseButton.LeftButton)
    assert transfer.task is not None
    qtbot.waitUntil(lambda: len(levels) == 1, timeout=20_000)
    return go, levels


def test_the_swept_bias_cannot_be_edited_during_a_sweep_and_undo_writes_only_values_the_user_set(window, qtbot):
    panel, model, transfer = window.bias_panel, window.session.biases, window.transfer_panel
    original = chip_value(window)
    users = BiasValue(6, 10, high=True, normal=False, enabled=True)  # cascode: the restore must keep it
    model.set_value(CHIP, CORE, BIAS, users, origin="gui")
    other = chip_value(window, core=CORE + 1)
    go, levels = start_paused_sweep(window, qtbot)
    box = panel.control_widget(BIAS, "enabled")
    qtbot.waitUntil(lambda: not box.isEnabled(), timeout=5000)  # greyed, saying why
    assert box.toolTip() == HELD and box.isChecked()
    slider, fine_box = panel.slider_widget(BIAS), panel.control_widget(BIAS, "fine")
    assert not slider.isEnabled() and not fine_box.isEnabled() and fine_box.toolTip() == HELD
    level = chip_value(window)
    assert level == levels[0] and level.normal  # the sweep's level is on the chip

    # the user unticks "enabled", moves the slider and types in the fine box: nothing reaches the chip
    click_check_box(box)
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_PageUp)
    QTest.keyClicks(fine_box, "99")
    QTest.keyClick(fine_box, Qt.Key.Key_Return)
    assert chip_value(window) == level and box.isChecked()
    # a change that reaches the panel before it greyed the controls is refused by the model, with the reason
    slider.setValue(slider.value() + 5)
    assert panel.status_label.text() == f"Not changed: {HELD}."
    panel.params.child(BIAS, "enabled").setValue(False)
    qtbot.waitUntil(lambda: box.isChecked(), timeout=2000)  # the box shows the model's value again
    assert chip_value(window) == level and model.value(CHIP, CORE, BIAS) == level
    # Undo (its step is the user's write of this bias) and a preset on this core are refused whole
    QTest.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    panel.preset_combo.setCurrentText("samna_recommended")
    QTest.mouseClick(panel.preset_button, Qt.MouseButton.LeftButton)
    assert HELD in panel.status_label.text() and chip_value(window) == level
    assert chip_value(window, name="IF_THR_N") == model.value(CHIP, CORE, "IF_THR_N")

    # the same bias of another core stays editable
    panel.show_core(CHIP, CORE + 1)
    other_box = panel.control_widget(BIAS, "enabled")
    assert other_box.isEnabled() and other_box.toolTip() != HELD
    click_check_box(other_box)
    assert chip_value(window, core=CORE + 1) == other.replace(enabled=False)
    panel.show_core(CHIP, CORE)

    go.set()
    qtbot.waitUntil(lambda: transfer.task.done and transfer.sweep_button.isEnabled(), timeout=30_000)
    transfer.task.result()
    assert len(levels) == 3 and all(v.normal and v.enabled for v in levels)  # the sweep's own levels
    assert chip_value(window) == users  # restored with the user's flags
    qtbot.waitUntil(lambda: box.isEnabled(), timeout=5000)
    assert box.isChecked() and box.toolTip() != HELD and slider.isEnabled()
    assert panel.control_widget(BIAS, "type").currentText() == "cascode"

    # Undo: the other core's untick, then the user's value before the sweep -- never a sweep level
    QTest.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    assert chip_value(window, core=CORE + 1) == other and chip_value(window) == users
    QTest.mouseClick(panel.undo_button, Qt.MouseButton.LeftButton)
    assert chip_value(window) == original


@pytest.mark.parametrize("how", ["cancelled", "failed"])
def test_held_controls_come_back_when_a_sweep_is_cancelled_or_fails(window, qtbot, how):
    panel, model, transfer = window.bias_panel, window.session.biases, window.transfer_panel
    users = BiasValue(5, 100, high=False, normal=True, enabled=False)  # off: must stay off after the sweep
    model.set_value(CHIP, CORE, BIAS, users, origin="gui")

    def fail():
        raise RuntimeError("measurement broke")

    go, _ = start_paused_sweep(window, qtbot, at_level=fail if how == "failed" else None)
    box = panel.control_widget(BIAS, "enabled")
    qtbot.waitUntil(lambda: not box.isEnabled(), timeout=5000)
    if how == "cancelled":
        QTest.mouseClick(transfer.cancel_button, Qt.MouseButton.LeftButton)
    go.set()
    qtbot.waitUntil(lambda: transfer.task.done and transfer.sweep_button.isEnabled(), timeout=30_000)
    assert transfer.status.text() == f"sweep {how}"
    qtbot.waitUntil(lambda: box.isEnabled(), timeout=5000)
    assert not box.isChecked() and chip_value(window) == users == model.value(CHIP, CORE, BIAS)
    assert model.hold_reason(CHIP, CORE, BIAS) is None and box.toolTip() != HELD
    click_check_box(box)  # editable again
    assert chip_value(window) == users.replace(enabled=True)
