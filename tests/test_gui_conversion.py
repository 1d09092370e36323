"""The model/conversion panel driving the real conversion pipeline (tiny network, no spiking stages)."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt


def test_conversion_from_the_panel_fills_table_mapping_and_raster_layers(window, qtbot):
    from neurolab_gui.core.conversion.pipeline import build_model
    from neurolab_gui.core.conversion.tasks import load_task

    panel = window.model_panel
    panel.task_combo.setCurrentText("seq_digits")
    panel.hidden_spin.setValue(12)
    panel.qat_spin.setValue(0)
    panel.groups_spin.setValue(2)
    for check in panel.stage_checks.values():
        check.setChecked(False)
    task = load_task("seq_digits")
    window.session.task = task
    window.session.set_model(build_model(task, panel.pipeline_config()))  # untrained: the wiring is under test
    job = panel.start_conversion(n_test=30)
    qtbot.waitUntil(lambda: job.done, timeout=60_000)
    result = job.result()
    qtbot.waitUntil(lambda: panel.accuracy_table.rowCount() == 2)
    assert [panel.accuracy_table.item(i, 0).text() for i in range(2)] == ["float", "constrained"]
    assert panel.accuracy_table.item(1, 1).text() == f"{result.report.stage('constrained').accuracy:.4f}"
    # the mapping picture marks exactly the neurons that hold units, one colour per core group
    image = panel.mapping_img.image
    assert (image > 0).sum() == 12 and set(np.unique(image[image > 0])) == {1, 2}
    # the raster offers the network by layer name (inputs, then units by group), the inputs, the hidden layer
    # and each group, with the mapped neurons
    raster = window.raster_panel
    labels = [raster.layer_combo.itemText(i) for i in range(raster.layer_combo.count())]
    assert labels[:3] == ["RNN network (inputs, units by core group)", "RNN inputs", "RNN hidden layer (all units)"]
    assert len(labels) == 5
    raster.layer_combo.setCurrentIndex(2)
    raster.mode_combo.setCurrentIndex(raster.mode_combo.findData("layer"))
    ids = sorted(a.chip * 1024 + a.core * 256 + a.neuron for a in result.mapped.unit_addresses)
    assert sorted(raster.builder.selection.neurons.tolist()) == ids


def test_convert_without_a_model_is_refused_with_a_message(window, qtbot):
    window.model_panel.convert_button.click()
    qtbot.waitUntil(lambda: "load or train a model" in window.log_panel.contents())


def _tiny_seq_digits(window):
    """The panel on a tiny network over a prefix of sequential digits (the session's data set: no loading)."""
    from neurolab_gui.core.conversion.tasks import load_task

    panel = window.model_panel
    panel.task_combo.setCurrentText("seq_digits")
    panel.hidden_spin.setValue(6)
    panel.epochs_spin.setValue(1)
    panel.qat_spin.setValue(0)
    panel.groups_spin.setValue(1)
    for check in panel.stage_checks.values():
        check.setChecked(False)
    window.session.task = load_task("seq_digits").subset(96, 24)
    return panel


def test_train_and_convert_buttons_run_jobs_whose_events_reach_the_panel(window, qtbot):
    panel = _tiny_seq_digits(window)
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    training = panel.job
    assert training is not None and training.name == "training" and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: panel.status.text() == "training finished", timeout=60_000)  # the finished signal, relayed
    model = training.result()
    assert panel.last_result is model and window.session.model is model  # the result came through the job's signals
    assert panel.progress.value() == 100 and not panel.cancel_button.isEnabled()
    assert model.config.n_hidden == 6 and "6 hidden" in panel.model_label.text()
    qtbot.waitUntil(lambda: "training finished" in window.log_panel.contents())  # the job's log lines reach the log panel
    assert "training started" in window.log_panel.contents()
    assert "training set without noise" in window.log_panel.contents()  # workflows.training_summary's line

    qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    conversion = panel.job
    assert conversion is not training and conversion.name == "conversion"
    qtbot.waitUntil(lambda: panel.status.text() == "conversion finished", timeout=60_000)  # not the progress line "conversion: …"
    result = conversion.result()
    assert panel.last_result is result and window.session.conversion is result
    assert result.constrained.n_hidden == 6 and len(result.mapped.group_cores) == 1
    qtbot.waitUntil(lambda: panel.accuracy_table.rowCount() == 2)
    assert panel.accuracy_table.item(1, 1).text() == f"{result.report.stage('constrained').accuracy:.4f}"


def test_cancel_button_stops_training_and_keeps_no_model(window, qtbot):
    panel = _tiny_seq_digits(window)
    panel.epochs_spin.setValue(1000)
    qtbot.mouseClick(panel.train_button, Qt.MouseButton.LeftButton)
    job = panel.job
    qtbot.waitUntil(lambda: panel.progress.value() > 0 or job.last_progress.fraction > 0, timeout=60_000)  # training runs
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "training cancelled" in panel.status.text(), timeout=30_000)
    assert job.done and job.last_progress.fraction < 0.5  # stopped long before the 1000 epochs
    assert window.session.model is None and panel.last_result is None
    assert not panel.cancel_button.isEnabled()


def test_ablation_checkbox_adds_the_constraint_rows_to_the_stage_table(window, qtbot):
    from neurolab_gui.core.conversion.ablation import ABLATION_STEPS
    from neurolab_gui.core.conversion.pipeline import build_model

    panel = _tiny_seq_digits(window)
    assert not panel.pipeline_config().ablation  # off by default: the conversion time does not grow
    qtbot.keyClick(panel.ablation_check, Qt.Key.Key_Space)  # what a keyboard user presses
    assert panel.ablation_check.isChecked() and panel.pipeline_config().ablation
    window.session.set_model(build_model(window.session.task, panel.pipeline_config()))
    qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "conversion finished", timeout=60_000)
    n = 2 + len(ABLATION_STEPS)
    qtbot.waitUntil(lambda: panel.accuracy_table.rowCount() == n)
    names = [panel.accuracy_table.item(i, 0).text() for i in range(n)]
    assert names[:2] == ["float", "constrained"] and names[2:] == [f"+ {s}" for s in ABLATION_STEPS]
    # the last ablation row is the constrained network itself
    assert panel.accuracy_table.item(n - 1, 1).text() == panel.accuracy_table.item(1, 1).text()


def test_a_conversion_the_pipeline_refuses_shows_its_message_without_a_traceback_in_the_log(window, qtbot):
    """A user error inside the job (here NaN weights) reaches the panel's error report (the traceback in its
    details) and the log panel, once: the job itself logs no ERROR for it (``core.jobs.USER_ERRORS``)."""
    import torch

    from neurolab_gui.core.conversion.pipeline import build_model

    panel = _tiny_seq_digits(window)
    model = build_model(window.session.task, panel.pipeline_config())
    with torch.no_grad():
        next(model.parameters()).view(-1)[0] = float("nan")
    window.session.set_model(model)
    window.reporter.install()  # as the app does (qt.app.launch): log records reach the log panel
    try:
        qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: panel.status.text() == "conversion failed", timeout=60_000)
        qtbot.waitUntil(lambda: bool(window.reporter.errors))
    finally:
        window.reporter.uninstall()
    with pytest.raises(ValueError) as refused:
        panel.job.result()
    title, details = window.reporter.errors[-1]
    assert title == f"conversion: {type(refused.value).__name__}: {refused.value}"
    assert "Traceback" in details  # the error box keeps the traceback in its details
    qtbot.waitUntil(lambda: str(refused.value) in window.log_panel.contents())
    log = window.log_panel.contents()
    assert "job conversion failed" not in log and log.count("Traceback") == 1  # the error report's, not also the job's
