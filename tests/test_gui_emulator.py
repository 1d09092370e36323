"""The GUI against the real emulated board (board -> virtual USB -> emulator -> decoder -> GUI), offscreen.

Every test opens a fresh emulated DYNAP-SE1 through the same driver path as silicon
(``emulator.virtual_board.open_emulated_board``) and reaches into its simulator only to check
what arrived on the "chip".  Runs are kept to a few hundred ms of board time.
"""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.topology import N_NEURONS_PER_CORE
from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core.warmup import warm_up
from neurolab_gui.qt.main_window import MainWindow


def model_value_pair(value) -> tuple[int, int]:
    return value.coarse, value.fine


@pytest.fixture
def make_window(make_window):
    """The shared window factory (conftest), connected to a mismatched emulator with seed 3."""

    def make(clock: str, acquire: bool, separate_process: bool = False) -> MainWindow:
        if not separate_process:
            return make_window(500_000, seed=3, mismatch=True, clock=clock, acquire=acquire)
        window = make_window(500_000)
        window.session.emulator_in_separate_process = True  # as `neurolab gui` runs it (qt.app.launch)
        assert window.session.connect("emulator", seed=3, mismatch=True, clock=clock, acquire=acquire), window.session.connection.status.message
        return window

    return make


def test_slider_move_reaches_the_emulated_chip_as_bias_words(make_window, qtbot):
    window = make_window("fast", acquire=False)
    simulator = virtual_fpga_of(window.session.board).simulator
    before = simulator.get_bias(1, 2, "IF_DC_P")[:2]
    current_before = simulator.bias_current(1, 2, "IF_DC_P")
    panel = window.bias_panel
    panel.show_core(1, 2)
    panel.slider_widget("IF_DC_P").setValue(1000)
    model_value = window.session.biases.value(1, 2, "IF_DC_P")
    # the chip got a bias word for exactly this core and bias: the simulator decoded it from the wire
    assert simulator.get_bias(1, 2, "IF_DC_P")[:2] == (model_value.coarse, model_value.fine) != before
    assert simulator.get_bias(1, 3, "IF_DC_P")[:2] == before  # the neighbouring core is untouched
    # and the current the circuits see (mismatch included) moved by the nominal ratio
    nominal_ratio = nominal_current(*model_value_pair(model_value)) / nominal_current(*before)
    assert simulator.bias_current(1, 2, "IF_DC_P") / current_before == pytest.approx(nominal_ratio, rel=1e-6)
    # undo writes the old value to the chip again
    window.undo_action.trigger()
    assert simulator.get_bias(1, 2, "IF_DC_P")[:2] == before


def test_emulator_events_reach_the_raster(make_window, qtbot):
    window = make_window("realtime", acquire=True)
    session = window.session
    session.biases.apply_preset("samna_recommended")  # DC off: quiet everywhere ...
    session.biases.set(0, 1, "IF_DC_P", 5, 60, origin="test")  # ... except core 1 of chip 0
    raster = window.raster_panel
    raster.chip_spin.setValue(0)
    raster.all_cores_check.setChecked(True)  # rows 0..1023 = chip 0, cores 0..3
    driven = np.zeros(4 * N_NEURONS_PER_CORE, bool)
    driven[N_NEURONS_PER_CORE : 2 * N_NEURONS_PER_CORE] = True
    # (libcaer's start-up biases make every neuron fire; after the preset only the driven core does)
    qtbot.waitUntil(lambda: raster.last_frame is not None and np.median(raster.last_frame.rates_hz[driven]) > 20, timeout=20_000)
    frame = raster.last_frame
    qtbot.waitUntil(lambda: raster.last_frame.rates_hz[~driven].mean() < 0.05 * raster.last_frame.rates_hz[driven].mean(),
                    timeout=20_000)
    frame = raster.last_frame
    assert (frame.rates_hz[driven] > 0).mean() > 0.9  # nearly every neuron of the driven core fires
    status = session.connection.poll_status()
    assert status.received_events > 0 and status.corrupt_words == 0
    assert status.lag_s is not None and status.lag_s >= 0  # real-time clock: the emulator reports its lag
    qtbot.waitUntil(lambda: "ev/s" in window.rate_label.text())


def test_sweep_started_from_the_gui_finishes_and_updates_the_transfer_curves(make_window, qtbot):
    window = make_window("fast", acquire=False)
    panel = window.transfer_panel
    panel.chip_spin.setValue(2)
    panel.core_spin.setValue(3)
    window.session.biases.apply_preset("samna_recommended", cores=[(2, 3)])  # refractory no longer caps the rate
    panel.low_spin.setValue(0.03)  # nA: from barely firing to ~100 Hz
    panel.high_spin.setValue(0.3)
    panel.steps_spin.setValue(3)
    original = window.session.biases.value(2, 3, "IF_DC_P")
    task = panel.start_sweep(duration_s=0.1)
    assert task is not None and not panel.sweep_button.isEnabled() and panel.cancel_button.isEnabled()
    qtbot.waitUntil(lambda: task.done and panel.sweep_button.isEnabled(), timeout=30_000)
    curves = task.result()
    qtbot.waitUntil(lambda: panel.updates == 3)
    assert panel.curves is not None and len(panel.curves.x) == 3 and panel.progress.value() == 100
    median = np.median(curves.matrix(), axis=1)
    assert median[-1] > median[0] and median[-1] > 20  # more DC current, faster firing
    assert window.session.biases.value(2, 3, "IF_DC_P") == original  # the sweep restores the bias
    assert len(window.session.spikes.ring) > 0  # the sweep's events went to the raster too


def test_calibration_started_from_the_gui_finishes_and_updates_the_transfer_curves(make_window, qtbot, heartbeat):
    # The emulator simulates in its own process, as in the app: in-process, its Python threads
    # would compete with the GUI thread for the GIL, which the desktop app never lets them do.
    window = make_window("fast", acquire=False, separate_process=True)
    transfer, model = window.transfer_panel, window.model_panel
    transfer.chip_spin.setValue(0)
    transfer.core_spin.setValue(2)  # no conversion loaded: the calibration measures the transfer panel's core
    window.show()
    qtbot.waitExposed(window)
    warm_up().result(timeout=300)  # as `neurolab gui` does once the board's events are drawn (qt.app.launch)
    QTest.qWait(50)
    with heartbeat.watch("calibration"):  # from the click to the result on screen (issue 15 item 10)
        QTest.mouseClick(model.calibrate_button, Qt.MouseButton.LeftButton)
        task = model.job
        assert task is not None and task.name == "calibration" and model.cancel_button.isEnabled()
        qtbot.waitUntil(lambda: task.done, timeout=120_000)
        # the finished signal reaches the GUI thread after the last progress report: wait for it
        qtbot.waitUntil(lambda: model.progress.value() == 100 and "calibration finished" in model.status.text())
    heartbeat.assert_no_stall()
    results = task.result()
    assert list(results) == [0] and results[0].cores == [2]
    assert results[0].summary()["neurons_fitted"] > 200  # every neuron of the core got an f–I fit
    assert not model.cancel_button.isEnabled()
    assert transfer.updates >= 1  # intermediate curves reached the panel
    final = results[0].curves
    assert transfer.curves.x.tolist() == final.x.tolist()
    assert np.median(transfer.curves.matrix()[-1]) > np.median(transfer.curves.matrix()[0])


def test_calibration_can_be_cancelled_from_the_gui(make_window, qtbot):
    window = make_window("fast", acquire=False)
    model = window.model_panel
    window.transfer_panel.steps_spin.setValue(50)
    model.calibrate_button.click()
    task = model.job
    model.cancel_button.click()
    qtbot.waitUntil(lambda: task.done, timeout=30_000)
    qtbot.waitUntil(lambda: "calibration cancelled" in model.status.text())
    assert window.transfer_panel.updates < 50
