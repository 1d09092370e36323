"""The network on the connected board, from the app: deploy, run, watch (emulator as the connected board)."""

from __future__ import annotations

import re

import numpy as np
import torch
from PyQt6.QtCore import Qt

from neurolab_gui.core.conversion.models import RateRNN, RNNConfig

SEED = 5
N_RUN = 20


def _checkpoint(tmp_path):
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint

    torch.manual_seed(1)
    return save_checkpoint(tmp_path / "tiny.pt", RateRNN(RNNConfig(8, 8, 10, "leaky", 0.85, 4, "mean", 1.0)), {"task": "seq_digits"})


def test_deploy_and_run_from_the_buttons_match_neurolab_deploy(make_window, qtbot, tmp_path, monkeypatch, capsys):
    from neurolab_gui.cli import main
    from neurolab_gui.core.conversion.tasks import load_task

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # no calibration profile anywhere
    ckpt = _checkpoint(tmp_path)
    window = make_window(seed=SEED, mismatch=True, clock="fast", acquire=True)
    panel = window.model_panel
    panel.task_combo.setCurrentText("seq_digits")
    panel.qat_spin.setValue(0)
    panel.groups_spin.setValue(3)  # the conversion's default, as `neurolab deploy` uses it
    for check in panel.stage_checks.values():
        check.setChecked(False)
    window.session.task = load_task("seq_digits")
    panel.load_checkpoint(str(ckpt))
    qtbot.mouseClick(panel.deploy_button, Qt.MouseButton.LeftButton)  # nothing converted yet: refused, with a message
    qtbot.waitUntil(lambda: "convert" in window.log_panel.contents())
    qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "conversion finished", timeout=60_000)

    qtbot.mouseClick(panel.deploy_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "deployment finished", timeout=120_000)
    deployment = window.session.deployment
    assert deployment is not None and deployment.board is window.session.board
    assert "EMU00005" in panel.deployment_label.text()
    # the raster switched to the deployed network's hidden layer: exactly its neurons, as rows
    raster = window.raster_panel
    ids = np.array(sorted(a.chip * 1024 + a.core * 256 + a.neuron for a in deployment.mapped.unit_addresses))
    assert raster.mode_combo.currentData() == "layer"
    assert np.array_equal(np.sort(raster.builder.selection.neurons), ids)
    # the board holds the network's biases
    board = window.session.board
    for key, value in deployment.mapped.biases.items():
        assert board.get_bias(*key) == value

    received = []
    window.session.connection.events.connect(received.append)
    panel.run_samples_spin.setValue(N_RUN)
    qtbot.mouseClick(panel.run_button, Qt.MouseButton.LeftButton)
    run_job = panel.job
    qtbot.waitUntil(lambda: panel.status.text() == "board run finished", timeout=120_000)
    run = run_job.result()
    # live views: accuracy, the latest sample's scores, the confusion matrix of all samples
    assert f"board accuracy {run.accuracy:.3f} after {N_RUN} samples" == panel.board_accuracy_label.text()
    assert "class scores" in panel.scores_label.text()
    cells = [[int(panel.confusion_table.item(i, j).text()) for j in range(10)] for i in range(10)]
    assert np.array_equal(np.array(cells), run.confusion()) and run.confusion().sum() == N_RUN
    # the stage table has its "board" row, measured on the connected board
    rows = [panel.accuracy_table.item(i, 0).text() for i in range(panel.accuracy_table.rowCount())]
    assert "board" in rows
    # the monitors received exactly the spikes the run decoded on the mapped neurons
    events_ids = np.concatenate([b.global_id for b in received]) if received else np.zeros(0, np.int64)
    on_units = np.isin(events_ids, ids).sum()
    assert run.spiking.spike_counts.sum() > 0 and on_units >= run.spiking.spike_counts.sum()

    # `neurolab deploy` on a fresh emulated board of the same seed: the same accuracy on the same samples
    assert main(["deploy", str(ckpt), "--board", f"emulator:{SEED}", "--n-test", str(N_RUN), "--qat-epochs", "0"]) == 0
    printed = re.search(r"accuracy on 20 test samples: ([0-9.]+)", capsys.readouterr().out)
    assert printed is not None and float(printed.group(1)) == round(run.accuracy, 4)


def test_run_without_a_deployment_is_refused_with_a_message(window, qtbot):
    qtbot.mouseClick(window.model_panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "deploy the network" in window.log_panel.contents())
