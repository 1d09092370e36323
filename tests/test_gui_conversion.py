"""The model/conversion panel driving the real conversion pipeline (tiny network, no spiking stages)."""

from __future__ import annotations

import numpy as np
import pytest

from neurolab_gui.core.session import Session
from neurolab_gui.qt.main_window import MainWindow


@pytest.fixture
def window(qtbot, tmp_path):
    session = Session(spike_capacity=10_000)
    w = MainWindow(session, layout_path=tmp_path / "layout.json")
    w.reporter.show_messages = False
    qtbot.addWidget(w)
    yield w
    w.close()


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
    # the raster offers the hidden layer and each group, with the mapped neurons
    raster = window.raster_panel
    labels = [raster.layer_combo.itemText(i) for i in range(raster.layer_combo.count())]
    assert labels[0] == "RNN hidden layer (all units)" and len(labels) == 3
    raster.mode_combo.setCurrentIndex(raster.mode_combo.findData("layer"))
    ids = sorted(a.chip * 1024 + a.core * 256 + a.neuron for a in result.mapped.unit_addresses)
    assert sorted(raster.builder.selection.neurons.tolist()) == ids


def test_convert_without_a_model_is_refused_with_a_message(window, qtbot):
    window.model_panel.convert_button.click()
    qtbot.waitUntil(lambda: "load or train a model" in window.log_panel.contents())
