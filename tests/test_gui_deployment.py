"""The network on the connected board, from the app: deploy, run, watch (emulator as the connected board)."""

from __future__ import annotations

import dataclasses
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
    panel.load_checkpoint(str(ckpt))  # in the background
    qtbot.waitUntil(lambda: panel.status.text() == "checkpoint loading finished", timeout=20_000)
    qtbot.mouseClick(panel.deploy_button, Qt.MouseButton.LeftButton)  # nothing converted yet: refused, with a message
    qtbot.waitUntil(lambda: "convert" in window.log_panel.contents())
    qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "conversion finished", timeout=60_000)

    n_log = len(window.session.biases.log)
    qtbot.mouseClick(panel.deploy_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "deployment finished", timeout=120_000)
    assert {c.origin for c in window.session.biases.log[n_log:]} == {"deployment"}  # its writes, named and undoable
    deployment = window.session.deployment
    assert deployment is not None and deployment.board is window.session.board
    assert "EMU00005" in panel.deployment_label.text()
    # the raster switched to the deployed network by layer: its input channels, then exactly its neurons
    raster = window.raster_panel
    mapped = deployment.mapped
    ids = np.array(sorted(a.chip * 1024 + a.core * 256 + a.neuron for a in mapped.unit_addresses))
    assert raster.mode_combo.currentData() == "layer"
    shown = raster.builder.selection
    n_in = mapped.n_sources
    assert shown.neurons[:n_in].tolist() == list(range(4096, 4096 + n_in)) and np.array_equal(np.sort(shown.neurons[n_in:]), ids)
    assert [b[0] for b in shown.blocks][0] == "inputs" and len(shown.blocks) == 1 + len(mapped.group_cores)
    assert raster.neuron_axis.tickStrings([0.0, float(n_in)], 1, 1) == ["in 0", str(int(shown.neurons[n_in]))]
    # the board holds the network's biases
    board = window.session.board
    for key, value in deployment.mapped.biases.items():
        assert board.get_bias(*key) == value

    received, played = [], []
    window.session.connection.events.connect(received.append)
    to_monitor = window.session.spikes.on_inputs
    monkeypatch.setattr(window.session.spikes, "on_inputs", lambda t, ch: (played.append(len(t)), to_monitor(t, ch)))
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
    # and the input rows every input spike the run played, under the input channels' ids
    assert sum(played) == run.spiking.input_spikes.sum() > 0
    t_all, g_all = window.session.spikes.ring.window(-2**62, 2**62)
    held = g_all[g_all >= 4096].astype(np.int64) - 4096
    assert len(held) > 0 and held.max() < n_in

    # `neurolab deploy` on a fresh emulated board of the same seed: the same accuracy on the same samples
    assert main(["deploy", str(ckpt), "--board", f"emulator:{SEED}", "--n-test", str(N_RUN), "--qat-epochs", "0"]) == 0
    printed = re.search(r"accuracy on 20 test samples: ([0-9.]+)", capsys.readouterr().out)
    assert printed is not None and float(printed.group(1)) == round(run.accuracy, 4)


def test_run_without_a_deployment_is_refused_with_a_message(window, qtbot):
    qtbot.mouseClick(window.model_panel.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "deploy the network" in window.log_panel.contents())


def _converted(make_window, qtbot):
    """A window on emulator seed 5 with a tiny untrained network converted (12 units on one core)."""
    from neurolab_gui.core.calibration.engine import CalibrationConfig
    from neurolab_gui.core.conversion.pipeline import build_model
    from neurolab_gui.core.conversion.tasks import load_task

    # no acquisition: on the fast clock its reader would drive the emulator flat out beside the calibration
    window = make_window(seed=SEED, mismatch=True, clock="fast", acquire=False)
    panel = window.model_panel
    panel.task_combo.setCurrentText("seq_digits")
    panel.hidden_spin.setValue(12)
    panel.qat_spin.setValue(0)
    panel.groups_spin.setValue(1)
    for check in panel.stage_checks.values():
        check.setChecked(False)
    task = load_task("seq_digits").subset(96, 24)
    window.session.task = task
    window.session.set_model(build_model(task, panel.pipeline_config()))
    qtbot.mouseClick(panel.convert_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "conversion finished", timeout=60_000)
    panel.calibration_config = CalibrationConfig(exc_levels_hz=(30.0, 75.0, 120.0), inh_levels_hz=(20.0, 60.0, 100.0),
                                                 level_s=0.2, settle_s=0.05, weight_rounds=2, weight_tolerance=0.03,
                                                 tune_tau=False, tune_refractory=False)
    panel.in_the_loop_check.setChecked(False)
    panel.run_samples_spin.setValue(8)
    return window, panel


def _machine_busy() -> bool:
    """More runnable work than cores (other test runs beside this one): latency bounds do not hold."""
    import os

    return os.getloadavg()[0] > 2 * (os.cpu_count() or 1)


def _bias_table(window):
    board = window.session.board
    return {key: board.get_bias(*key) for key in window.session.biases.snapshot()}


def test_network_calibration_from_the_app_is_one_undo_step_saves_the_profile_and_is_applied_next(make_window, qtbot, tmp_path,
                                                                                                 monkeypatch):
    from neurolab_gui.core.calibration.profile import find_profile

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    window, panel = _converted(make_window, qtbot)
    biases = window.session.biases
    start, n_log, n_steps = _bias_table(window), len(biases.log), len(biases._undo)
    import time

    events, ended = [], []
    t0 = time.monotonic()
    qtbot.mouseClick(panel.calibrate_network_button, Qt.MouseButton.LeftButton)
    job = panel.job
    job.progress.connect(lambda p: events.append((time.monotonic() - t0, p)))
    job.finished.connect(lambda _summary: ended.append(time.monotonic() - t0))
    qtbot.waitUntil(lambda: panel.status.text() == "network calibration finished", timeout=300_000)
    summary = window.session.calibration_summary
    assert summary is not None and summary["serial"] == "EMU00005" and "accuracy_after" in summary
    # progress from the first second, with an ETA once the first measurement is done (none before: the
    # fraction follows the planned work, and nothing of it is done while the first probe runs)
    with_eta = [t for t, p in events if p.eta_s == p.eta_s]
    print(f"first progress after {events[0][0]:.2f} s, first ETA after {with_eta[0]:.2f} s")
    # measured 0.00 / 0.77 s at load ~2; 3.4 s in a full suite at load 6-9 on 2 cores
    assert with_eta and ((events[0][0] < 1.0 and with_eta[0] < 2.0) or _machine_busy()), (events[0][0], with_eta[0])
    # round 7, F4: the ETA is within a factor 4 of the time actually left while a fifth of the run is left
    # (it was 0.0 s at the start and 0.4 s with 3.2 s left, after the probe runs: 0.0-0.13x; now 0.6-1.3x;
    # the wide bound leaves room for a machine whose load changes during the run)
    total = ended[0]
    ratios = [(round(t, 2), round(p.eta_s / (total - t), 2)) for t, p in events if p.eta_s == p.eta_s and total - t > 0.2 * total]
    assert ratios and (all(0.25 <= r <= 4.0 for _, r in ratios) or _machine_busy()), ratios
    # round 7, F5: the stage table gets the rows of `neurolab convert --stages board,board_calibrated`,
    # the accuracies the calibration measured before and after, on the board it ran on
    table = {panel.accuracy_table.item(i, 0).text(): [panel.accuracy_table.item(i, j).text() if panel.accuracy_table.item(i, j) else ""
                                                       for j in range(panel.accuracy_table.columnCount())]
             for i in range(panel.accuracy_table.rowCount())}
    assert list(table)[-2:] == ["board", "board_calibrated"], list(table)
    assert table["board"][1] == f"{summary['accuracy_before']:.4f}" and table["board_calibrated"][1] == f"{summary['accuracy_after']:.4f}"
    assert table["board"][5] == table["board_calibrated"][5] == str(summary["n_test"])
    assert "EMU00005" in table["board_calibrated"][-1] and "calibrated here" in table["board_calibrated"][-1]
    assert summary["gain_cv_after"] < summary["gain_cv_before"]
    assert "calibrated EMU00005" in panel.calibration_label.text()
    # every bias write of the calibration is logged as "calibration", and the run is one undo step
    origins = {c.origin for c in biases.log[n_log:]}
    assert origins == {"calibration"}, origins
    assert len(biases._undo) == n_steps + 1
    # the profile is saved for the board's serial and the calibrated network is on the board
    profile = find_profile("EMU00005")
    assert profile is not None and len(profile.selected) == 12
    assert window.session.deployment.mapped.unit_addresses == profile.selected
    calibrated = window.session.deployment.mapped
    # undo returns the whole table to the user's biases
    assert biases.undo()
    assert _bias_table(window) == start
    # the next deploy applies the saved profile
    panel.profile_check.setChecked(True)
    qtbot.mouseClick(panel.deploy_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: panel.status.text() == "deployment finished", timeout=60_000)
    deployment = window.session.deployment
    assert deployment.profile_applied and deployment.mapped.unit_addresses == profile.selected
    # ... with the calibrated network itself: its connections and readout, not only biases and neurons
    assert profile.network is not None and any("compensated connections" in n for n in deployment.notes), deployment.notes
    assert set(deployment.mapped.netlist.connections) == set(calibrated.netlist.connections)
    assert np.array_equal(deployment.mapped.readout_weight, calibrated.readout_weight)
    for key, value in deployment.mapped.biases.items():
        assert window.session.board.get_bias(*key) == profile.biases.get(key, value)


def test_cancelling_the_network_calibration_restores_the_bias_table_bit_exactly(make_window, qtbot, tmp_path, monkeypatch):
    import time

    from drivers.dynapse1.board_api import BiasValue

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    window, panel = _converted(make_window, qtbot)
    board = window.session.board
    # the user's own setting, flags included: one bias with another fine value and the other current range
    key = next(iter(window.session.biases.snapshot()))
    old = board.get_bias(*key)
    board.set_bias(key[0], key[1], key[2], dataclasses.replace(old, fine=(old.fine + 3) % 256, high=not old.high))
    start, n_steps = _bias_table(window), len(window.session.biases._undo)
    qtbot.mouseClick(panel.calibrate_network_button, Qt.MouseButton.LeftButton)
    job = panel.job
    seen = []
    job.progress.connect(seen.append)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=60_000)
    t0 = time.monotonic()
    qtbot.mouseClick(panel.cancel_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: job.done, timeout=30_000)
    latency = time.monotonic() - t0
    qtbot.waitUntil(lambda: panel.status.text() == "network calibration cancelled")
    print(f"cancel latency {latency:.2f} s")
    # issue 16 asks for 2 s: 9-10 s at load 12 while the restore cleared all 65,536 CAM entries of the
    # chip; since the driver clears only the cells its netlists set, 1.84 s at load 17 on this 2-core machine
    assert latency < 2.0 or _machine_busy(), latency
    assert _bias_table(window) == start
    assert len(window.session.biases._undo) == n_steps and window.session.calibration_summary is None
    assert isinstance(start[key], BiasValue)


def test_deploy_and_calibrate_without_a_conversion_name_the_action_asked_for(make_window, qtbot):
    window = make_window(seed=SEED, mismatch=False, clock="fast", acquire=False)
    panel = window.model_panel
    for button, doing in ((panel.calibrate_network_button, "calibrating it on the board"), (panel.deploy_button, "deploying it")):
        n = len(window.reporter.errors)
        qtbot.mouseClick(button, Qt.MouseButton.LeftButton)
        assert [e[0] for e in window.reporter.errors[n:]] == [
            f"model panel: RuntimeError: convert (or load a converted) network before {doing}"]
    assert panel.job is None
