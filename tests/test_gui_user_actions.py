"""The app as a user meets it: real clicks and keys on the widgets people touch, checked on the chip.

Every action here is a ``QTest`` mouse click or key press on the widget a user would use (not a
call to the method behind it), what the board received is read from the emulator's chip state
(not from the app's caches), and the ``heartbeat`` fixture (tests/conftest.py) fails a test whose
action stalls the event loop over 100 ms.  Tasks are kept tiny (a few levels, a few hundred ms of
board time).
"""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import QPoint, QPointF, Qt
from PyQt6.QtTest import QTest
from PyQt6.QtWidgets import QAbstractButton, QAbstractSpinBox, QApplication, QComboBox, QLineEdit, QSlider, QTabBar

from drivers.dynapse1.spikes import SpikeEvents
from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core.connection import ConnectionStatus
from neurolab_gui.core.session import Session
from neurolab_gui.qt.main_window import MINIMUM_SIZE, MainWindow

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def make_window(qtbot, tmp_path):
    windows: list[MainWindow] = []

    def make(spike_capacity: int = 200_000) -> MainWindow:
        w = MainWindow(Session(spike_capacity=spike_capacity), layout_path=tmp_path / "layout.json")
        w.reporter.show_messages = False
        qtbot.addWidget(w)
        windows.append(w)
        return w

    yield make
    for w in windows:
        w.session.close()
        w.close()


def connect_fast_emulator(window: MainWindow, seed: int = 3):
    """An in-process emulated board on the fast clock (tests that click on what it runs)."""
    assert window.session.connect("emulator", seed=seed, clock="fast", acquire=False), window.session.connection.status.message
    return virtual_fpga_of(window.session.board).simulator


def feed(window: MainWindow, t_us, neurons, chip: int = 0, core: int = 0) -> None:
    t_us = np.asarray(t_us, np.int64)
    n = len(t_us)
    window.session.connection.feed(SpikeEvents(t_us, np.full(n, chip), np.full(n, core), np.asarray(neurons) % 256))


# --- connect -----------------------------------------------------------------------------------
def test_connect_button_opens_the_board_in_the_background_and_events_flow(make_window, qtbot, heartbeat):
    window = make_window()
    window.session.emulator_in_separate_process = True  # as `neurolab gui` runs it
    window.show()
    qtbot.waitExposed(window)
    QTest.qWait(50)  # the first paint of the window is not part of connecting
    with heartbeat.watch("connect"):
        QTest.mouseClick(window.connection_bar.connect_button, LEFT)
        assert window.session.connection.status.state == "connecting"  # the click returned at once
        qtbot.waitUntil(lambda: window.session.connection.status.state == "connected", timeout=20_000)
        qtbot.waitUntil(lambda: len(window.session.spikes.ring) > 0, timeout=20_000)
        qtbot.waitUntil(lambda: window.raster_panel.last_frame is not None and window.raster_panel.last_frame.n_events > 0)
    heartbeat.assert_no_stall()
    # the bias panel shows what the board runs: libcaer's start-up set, not a default of its own
    qtbot.waitUntil(lambda: window.bias_panel.preset_combo.currentText() == "libcaer_low_power")
    # a core that runs none of them reads "custom", and a preset must be chosen before it is applied
    window.session.biases.set(0, 0, "IF_DC_P", 1, 1, origin="test")
    qtbot.waitUntil(lambda: window.bias_panel.preset_combo.currentIndex() == -1)
    assert "custom" in window.bias_panel.preset_combo.placeholderText() and not window.bias_panel.preset_button.isEnabled()


# --- sweep -------------------------------------------------------------------------------------
def set_up_sweep(panel) -> None:
    panel.chip_spin.setValue(2)
    panel.core_spin.setValue(3)
    panel.low_spin.setValue(0.03)
    panel.high_spin.setValue(0.3)
    panel.steps_spin.setValue(3)
    panel.duration_spin.setValue(0.1)


def test_sweep_button_sweeps_if_dc_p_on_the_chip_and_restores_it(make_window, qtbot):
    window = make_window()
    simulator = connect_fast_emulator(window)
    window.session.biases.apply_preset("samna_recommended", cores=[(2, 3)])
    panel = window.transfer_panel
    set_up_sweep(panel)
    before = simulator.get_bias(2, 3, "IF_DC_P")[:2]
    on_chip: list[tuple[int, int]] = []
    post = panel.post
    panel.post = lambda curves: (on_chip.append(simulator.get_bias(2, 3, "IF_DC_P")[:2]), post(curves))
    QTest.mouseClick(panel.sweep_button, LEFT)
    assert panel.task is not None, "the Sweep button did not start a sweep"
    qtbot.waitUntil(lambda: panel.task.done and panel.sweep_button.isEnabled(), timeout=30_000)
    qtbot.waitUntil(lambda: panel.updates == 3)
    panel.task.result()  # raises if the sweep failed
    assert window.reporter.errors == []
    assert on_chip == panel.sweep_settings()  # the chip ran every level, in order
    assert simulator.get_bias(2, 3, "IF_DC_P")[:2] == before  # and got its IF_DC_P back
    median = np.median(panel.curves.matrix(), axis=1)
    assert median[-1] > median[0]


def test_a_sweep_never_stalls_the_window(make_window, qtbot, heartbeat):
    """As ``neurolab gui`` runs it: the emulator in its own process, the window shown."""
    window = make_window()
    window.session.emulator_in_separate_process = True
    assert window.session.connect("emulator", seed=3, clock="fast", acquire=False)
    window.session.biases.apply_preset("samna_recommended", cores=[(2, 3)])
    panel = window.transfer_panel
    set_up_sweep(panel)
    window.show()
    qtbot.waitExposed(window)
    QTest.qWait(50)
    with heartbeat.watch("sweep"):
        QTest.mouseClick(panel.sweep_button, LEFT)
        qtbot.waitUntil(lambda: panel.task.done and panel.sweep_button.isEnabled(), timeout=30_000)
        qtbot.waitUntil(lambda: panel.updates == 3)
    heartbeat.assert_no_stall()
    assert window.reporter.errors == [] and len(panel.task.result().x) == 3


# --- raster ------------------------------------------------------------------------------------
def test_quiet_board_empties_the_raster_and_its_rates(make_window, qtbot):
    window = make_window()
    raster = window.raster_panel
    raster.span_spin.setValue(0.1)
    feed(window, np.arange(0, 100_000, 500), np.arange(200))
    raster.render()
    assert raster.last_frame.n_events > 0 and raster.last_frame.rates_hz.sum() > 0
    QTest.qWait(250)  # the board stays quiet longer than the window
    raster.render()
    assert raster.last_frame.n_events == 0 and raster.last_frame.rates_hz.sum() == 0
    assert raster.last_frame.t1_s > 0.3  # the window moved on with the board's time


def test_space_pauses_and_the_paused_moment_survives_a_full_ring(make_window, qtbot):
    window = make_window(spike_capacity=5_000)
    window.show()
    window.activateWindow()
    qtbot.waitActive(window)
    raster = window.raster_panel
    raster.span_spin.setValue(0.5)
    feed(window, np.arange(0, 1_000_000, 1000), np.arange(1000))  # 1 s, neuron = ms % 256
    # the board's time stays at that second (as a board that went quiet and was closed), so the paused
    # half second holds those events however long a loaded machine takes to deliver the key press
    window.session.spikes.clock.stop()
    raster.render()
    raster.graphics.setFocus()  # the user looks at the raster and presses Space
    qtbot.waitUntil(lambda: QApplication.focusWidget() is raster.graphics and QApplication.activeWindow() is window)
    QTest.keyClick(raster.graphics, Qt.Key.Key_Space)
    assert raster.paused and raster.pause_button.text() == "Resume"
    qtbot.waitUntil(lambda: raster.frozen is not None)  # the copy is made on a worker thread
    qtbot.waitUntil(lambda: raster._paused_request is not None and raster.frames_rendered > 0)
    paused_events, paused_at = raster.last_frame.n_events, raster.last_frame.t1_s
    assert paused_events > 0 and paused_at < 5
    for k in range(1, 12):  # the live ring is overwritten many times over
        feed(window, 1_000_000 * k + np.arange(0, 1_000_000, 200), np.zeros(5000))
    QTest.qWait(100)
    assert raster.last_frame.n_events == paused_events and raster.last_frame.t1_s == paused_at
    # scroll back from the paused moment: all the way back shows the first half second
    raster.back_slider.setFocus()
    QTest.keyClick(raster.back_slider, Qt.Key.Key_End)
    assert raster.back_slider.value() == 1000
    qtbot.waitUntil(lambda: raster.last_frame.t0_s == pytest.approx(0.0, abs=0.01))  # built on a worker
    assert raster.last_frame.n_events > 0
    QTest.mouseClick(raster.pause_button, LEFT)  # resume: live again
    QTest.qWait(100)
    assert not raster.paused and raster.last_frame.t1_s > 10


def test_space_presses_a_focused_button_or_check_box_and_pauses_the_raster_otherwise(make_window, qtbot):
    """Keyboard-only use: Space is the focused control's (as everywhere else), the raster's when nothing takes it."""
    window = make_window(spike_capacity=5_000)
    window.show()
    window.activateWindow()
    qtbot.waitActive(window)
    bar, raster = window.connection_bar, window.raster_panel

    def press_space_on(widget) -> None:
        widget.setFocus()
        qtbot.waitUntil(lambda: QApplication.focusWidget() is widget)
        QTest.keyClick(widget, Qt.Key.Key_Space)

    checked = bar.mismatch_check.isChecked()
    press_space_on(bar.mismatch_check)
    assert bar.mismatch_check.isChecked() != checked and not raster.paused
    rescans: list[bool] = []
    bar.refresh_button.clicked.connect(lambda: rescans.append(True))
    press_space_on(bar.refresh_button)
    assert rescans == [True] and not raster.paused
    press_space_on(raster.graphics)  # the raster (no control that takes Space) has the focus: pause
    assert raster.paused
    press_space_on(raster.graphics)
    assert not raster.paused
    # every dock has a working View shortcut: Alt+1 .. Alt+9, Alt+0 (no empty "Alt+10")
    shortcuts = [d.toggleViewAction().shortcut().toString() for d in window.docks.values()]
    assert shortcuts[:10] == [f"Alt+{(i + 1) % 10}" for i in range(min(10, len(shortcuts)))]


def test_pausing_with_the_default_buffers_full_does_not_stall(make_window, qtbot, heartbeat):
    window = make_window(spike_capacity=4_000_000)  # the app's default: 61 MB to copy
    n = 4_000_000
    t = np.arange(n, dtype=np.int64)  # 4 s at 1 M events/s
    window.session.spikes.ring.push(t, (t % 4096).astype(np.uint16))
    window.session.spikes.binned.push(t, t % 4096)
    window.session.spikes.clock.observe(n)
    raster = window.raster_panel
    window.show()
    qtbot.waitExposed(window)
    with heartbeat.watch("pause"):
        QTest.mouseClick(raster.pause_button, LEFT)
        qtbot.waitUntil(lambda: raster.frozen is not None)
        qtbot.waitUntil(lambda: raster.last_frame.t1_s == pytest.approx(raster.frozen.now_us() / 1e6, abs=1e-5))
    heartbeat.assert_no_stall()
    assert len(raster.frozen.ring) == n


def test_raster_of_all_neurons_over_10_s_keeps_the_event_loop_free_and_counts_every_spike(make_window, qtbot, heartbeat):
    """Issue: "all neurons" with a 10 s window held the GUI thread 80-350 ms per frame (a 4096 x 2048
    image built per frame) and drew only the newest 4.1 s of the window."""
    window = make_window(spike_capacity=1_000_000)
    window.resize(1400, 900)
    window.show()
    qtbot.waitExposed(window)
    raster = window.raster_panel
    raster.mode_combo.setCurrentIndex(raster.mode_combo.findData("all"))
    raster.span_spin.setValue(10.0)
    n = 450_000  # 9 s at 50 k events/s, every neuron in turn, from 0.5 s to 9.5 s of board time
    t = 500_000 + np.arange(n, dtype=np.int64) * 20
    g = np.arange(n) % 4096
    window.session.connection.feed(SpikeEvents(t, g // 1024, (g // 256) % 4, g % 256))
    window.session.spikes.clock.stop()  # the board's time stays at 9.5 s: the 10 s window holds every event
    frames = raster.frames_rendered
    with heartbeat.watch("10 s window of all neurons"):
        qtbot.waitUntil(lambda: raster.frames_rendered >= frames + 5, timeout=10_000)
    heartbeat.assert_no_stall()
    frame = raster.last_frame
    assert frame.mode == "density" and frame.n_events == n and int(frame.density.sum()) == n
    assert frame.density.size <= 1024 * 1024  # the image is bounded, whatever the window
    assert "density" in raster.info_label.text() and f"{n:,} spikes" in raster.info_label.text()
    # a short window of the same stream is drawn spike by spike: one tick per event in it
    raster.span_spin.setValue(0.05)
    raster.render()
    frame = raster.last_frame
    inside = int(((t >= frame.t0_s * 1e6) & (t < frame.t1_s * 1e6)).sum())
    assert frame.mode == "ticks" and frame.n_events == inside > 0
    assert sum(len(x) for x, _ in frame.ticks.values()) == 2 * inside


def test_paused_raster_scrolled_back_past_the_counts_history_draws_the_rings_spikes(make_window, qtbot, heartbeat):
    """Issue: scrolled back further than the binned counts reach (16.4 s), a dense window was drawn
    from empty bins although the event ring still held its spikes."""
    window = make_window(spike_capacity=1_000_000)
    window.show()
    qtbot.waitExposed(window)
    raster = window.raster_panel
    raster.builder.max_ticks = 100  # a density frame from 200 events in a window (the app's: 50 k)
    t = np.arange(0, 30_000_000, 500, dtype=np.int64)  # 30 s at 2 kHz, neuron = sample % 256
    feed(window, t, np.arange(len(t)))
    window.session.spikes.clock.stop()
    QTest.mouseClick(raster.pause_button, LEFT)
    qtbot.waitUntil(lambda: raster.frozen is not None)
    with heartbeat.watch("scroll back to the oldest second"):
        raster.back_slider.setFocus()
        QTest.keyClick(raster.back_slider, Qt.Key.Key_End)
        qtbot.waitUntil(lambda: raster.last_frame.t0_s < 0.01)
    heartbeat.assert_no_stall()
    frame = raster.last_frame
    inside = int(((t >= frame.t0_s * 1e6) & (t < frame.t1_s * 1e6)).sum())
    assert frame.mode == "density" and inside > 1000
    assert frame.n_events == int(frame.density.sum()) == inside  # every spike of the ring, none lost
    QTest.keyClick(raster.back_slider, Qt.Key.Key_Home)  # back at the paused moment: the counts again
    qtbot.waitUntil(lambda: raster.last_frame.t1_s > 29.9)
    assert raster.last_frame.n_events == int(raster.last_frame.density.sum()) > 1000


def test_raster_axes_name_neurons_and_the_wheel_zooms_time(make_window, qtbot):
    window = make_window()
    window.resize(1366, 740)
    window.show()
    qtbot.waitExposed(window)
    raster = window.raster_panel
    raster.chip_spin.setValue(1)
    raster.core_spin.setValue(2)
    raster.start_spin.setValue(10)
    raster.stop_spin.setValue(20)
    assert raster.neuron_axis.tickStrings([0, 9, 0.5], 1, 1) == [str(1024 + 512 + 10), str(1024 + 512 + 19), ""]
    assert "chip 1 core 2" in raster.legend_label.text().replace("&nbsp;", " ")
    feed(window, np.arange(0, 200_000, 1000), np.full(200, 12), chip=1, core=2)
    raster.render()
    # the rate bar of neuron 12 lies on its raster row (row 2), in the same view coordinates
    x, y = raster.rate_curve.getData()
    assert y[4] == y[5] == 2 and x[5] == pytest.approx(raster.last_frame.rates_hz[2])
    assert raster.rate_plot.vb.viewRange()[1] == pytest.approx(raster.plot.vb.viewRange()[1])
    assert raster.rate_plot.vb.sceneBoundingRect().top() == pytest.approx(raster.plot.vb.sceneBoundingRect().top(), abs=1)
    span = raster.span_spin.value()
    viewport = raster.graphics.viewport()
    centre = raster.graphics.mapFromScene(raster.plot.vb.sceneBoundingRect().center())
    wheel(viewport, centre, -120)  # scroll down = zoom out
    assert raster.span_spin.value() > span


def wheel(widget, pos: QPoint, delta: int) -> None:
    from PyQt6.QtCore import QPointF as _P
    from PyQt6.QtGui import QWheelEvent
    from PyQt6.QtWidgets import QApplication

    global_pos = widget.mapToGlobal(pos)
    event = QWheelEvent(_P(pos), _P(global_pos), QPoint(0, 0), QPoint(0, delta), Qt.MouseButton.NoButton,
                        Qt.KeyboardModifier.NoModifier, Qt.ScrollPhase.NoScrollPhase, False)
    QApplication.sendEvent(widget, event)


def test_clicking_a_raster_row_routes_that_neuron_to_the_membrane_panel_and_the_chip(make_window, qtbot):
    window = make_window()
    assert window.session.connect("emulator", seed=3, clock="realtime", acquire=True)
    simulator = virtual_fpga_of(window.session.board).simulator
    window.resize(1366, 740)
    window.show()
    qtbot.waitExposed(window)
    raster, membrane = window.raster_panel, window.membrane_panel
    raster.chip_spin.setValue(0)
    raster.core_spin.setValue(1)
    raster.start_spin.setValue(0)
    raster.stop_spin.setValue(16)
    QTest.qWait(50)
    vb = raster.plot.vb
    x_mid = sum(vb.viewRange()[0]) / 2
    point = raster.graphics.mapFromScene(vb.mapViewToScene(QPointF(x_mid, 8.0)))
    QTest.mouseClick(raster.graphics.viewport(), LEFT, pos=point)
    assert membrane.neuron == (0, 1, 8)
    assert "chip 0 core 1 neuron 8 (id 264)" in membrane.plot.plotItem.titleLabel.text
    qtbot.waitUntil(lambda: simulator.tables.monitor[0, 1] == 8)  # the chip routes it to the analog monitor
    # the spin box is the selection: one step up, and the chip monitors neuron 9
    membrane.neuron_spin.setFocus()
    QTest.keyClick(membrane.neuron_spin, Qt.Key.Key_Up)
    assert "neuron 9 (id 265)" in membrane.plot.plotItem.titleLabel.text
    qtbot.waitUntil(lambda: simulator.tables.monitor[0, 1] == 9)
    # and its trace is drawn: samples of neuron 9 only (the old trace was dropped with the change)
    qtbot.waitUntil(lambda: membrane.curve.getData()[0] is not None and len(membrane.curve.getData()[0]) > 10, timeout=15_000)


# --- window ------------------------------------------------------------------------------------
def test_the_window_fits_a_1366x768_screen_with_every_control_visible(make_window, qtbot):
    window = make_window()
    raster = window.raster_panel
    raster.mode_combo.setCurrentIndex(raster.mode_combo.findData("all"))  # the longest legend: 16 cores
    assert window.minimumSizeHint().width() <= 1366 and window.minimumSizeHint().height() <= 740
    assert MINIMUM_SIZE[0] <= 1366 and MINIMUM_SIZE[1] <= 740
    window.resize(1366, 740)  # a 1366 x 768 screen less its task bar
    window.show()
    qtbot.waitExposed(window)
    QTest.qWait(50)
    assert window.width() <= 1366 and window.height() <= 740
    rect = window.rect()
    for widget in (window.raster_panel.pause_button, window.transfer_panel.cancel_button, window.transfer_panel.progress,
                   window.transfer_panel.sweep_button, window.raster_panel.back_slider, window.connection_bar.record_button):
        assert widget.isVisible(), widget
        top_left = widget.mapTo(window, QPoint(0, 0))
        assert rect.contains(top_left) and rect.contains(top_left + QPoint(widget.width() - 1, widget.height() - 1)), widget
        assert widget.width() >= widget.minimumSizeHint().width(), widget  # not squeezed below its text
    rate_box = window.raster_panel.rate_plot.vb.sceneBoundingRect()
    assert rate_box.width() > 40  # the rate column is there
    status = window.session.connection.status
    window._show_status(ConnectionStatus("connected", "emulator (seed 3, mismatch on, realtime clock)", event_rate_hz=1.6e6,
                                         dropped_events=12_345, corrupt_words=0, lag_s=0.013))
    for label in (window.state_label, window.rate_label, window.counter_label, window.lag_label):
        assert label.fontMetrics().horizontalAdvance(label.text()) <= label.width(), label.text()
    assert window.lag_label.text() == "emulator lag 13 ms"
    window._show_status(status)


def built_by_a_library(widget) -> bool:
    """Qt's own pieces (dock title buttons, tab scrollers) and pyqtgraph's (parameter-tree rows,
    whose tips are on the tree items, the console's buttons) are not controls this app made."""
    if widget.objectName().startswith("qt_"):
        return True
    w = widget
    while w is not None:
        if isinstance(w, QTabBar) or type(w).__module__.startswith("pyqtgraph"):
            return True
        w = w.parent()
    return False


def interactive_widgets(window):
    for cls in (QAbstractButton, QAbstractSpinBox, QComboBox, QSlider, QLineEdit):
        for w in window.findChildren(cls):
            if not built_by_a_library(w) and not isinstance(w.parent(), (QAbstractSpinBox, QComboBox)):
                yield w


def test_every_control_has_a_tooltip(make_window):
    window = make_window()
    controls = list(interactive_widgets(window))
    assert len(controls) > 60
    missing = [f"{type(w).__name__} {getattr(w, 'text', lambda: '')() or w.objectName()!r} in {type(w.parent()).__name__}"
               for w in controls if not w.toolTip()]
    assert not missing, "controls without a tooltip: " + "; ".join(missing)


def test_transfer_plot_starts_with_a_sweeps_axes_and_says_what_to_press(make_window):
    window = make_window()
    panel = window.transfer_panel
    plot = panel.plot.getPlotItem()
    assert "IF_DC_P" in plot.getAxis("bottom").labelText and "rate" in plot.getAxis("left").labelText
    y_low, y_high = plot.vb.viewRange()[1]
    assert y_low == 0 and y_high >= 100  # Hz, not mHz around zero
    assert "Sweep" in panel.status.text()
    assert "no conversion" in panel.fit_combo.placeholderText()
    assert "RNN target" not in [label.text for _, label in panel.legend.items]  # nothing drawn, nothing named


# --- conversion ----------------------------------------------------------------------------------
def test_convert_button_keeps_the_window_responsive_and_the_fit_chooser_follows(make_window, qtbot, heartbeat):
    from neurolab_gui.core.conversion.pipeline import build_model
    from neurolab_gui.core.conversion.tasks import load_task

    window = make_window(spike_capacity=10_000)
    panel, transfer = window.model_panel, window.transfer_panel
    panel.task_combo.setCurrentText("seq_digits")
    panel.qat_spin.setValue(0)
    panel.groups_spin.setValue(2)
    for name, check in panel.stage_checks.items():
        check.setChecked(name == "board_ideal")  # one board stage: transfer matching and a run on an emulated board
    panel.samples_spin.setValue(5)
    task = load_task("seq_digits")
    window.session.task = task
    panel.hidden_spin.setValue(12)
    window.session.set_model(build_model(task, panel.pipeline_config()))  # untrained: the wiring is under test
    window.show()
    qtbot.waitExposed(window)
    QTest.qWait(50)
    with heartbeat.watch("conversion"):
        QTest.mouseClick(panel.convert_button, LEFT)
        qtbot.waitUntil(lambda: panel.job is not None and panel.job.done, timeout=60_000)
        qtbot.waitUntil(lambda: panel.accuracy_table.rowCount() == 3)
    heartbeat.assert_no_stall()
    result = panel.job.result()
    # the board stage's transfer fits are offered, and the first is drawn against the RNN's target
    qtbot.waitUntil(lambda: transfer.fit_combo.isEnabled())
    labels = [transfer.fit_combo.itemText(i) for i in range(transfer.fit_combo.count())]
    assert labels == list(transfer.fits) and all(label.startswith("board_ideal: ") for label in labels)
    assert transfer.curves is not None and len(transfer.target_item.getData()[0]) > 0
    assert "RNN target" in [label.text for _, label in transfer.legend.items]
    # the mapping picture is the board's 64 x 64 neurons with chips and cores named, not pixel indices
    mapping = panel.mapping_plot
    assert panel.mapping_img.image.shape == (64, 64) and not mapping.getAxis("left").isVisible()
    assert "chips U0 U1 / U2 U3" in mapping.getAxis("bottom").labelText
    chips = {a.chip for a in result.mapped.unit_addresses}
    assert [label.toPlainText() for label in panel.chip_labels] == [f"U{c} · 12" if c in chips else f"U{c}" for c in range(4)]
    assert "12 RNN units" in mapping.titleLabel.text
    # a conversion without a board stage: the chooser says so, rather than "no conversion yet"
    result.transfer_fits.clear()
    window.session.set_conversion(result)
    qtbot.waitUntil(lambda: not transfer.fit_combo.isEnabled())
    assert "no board stage" in transfer.fit_combo.placeholderText()


# --- robot loop ----------------------------------------------------------------------------------
def test_the_robot_loop_running_never_stalls_the_window(qtbot, tmp_path, heartbeat):
    from neurolab_gui.core.boards import open_emulator

    # the emulated board as `neurolab robot demo` runs it (0.5 ms steps, fast clock), the simulated robot
    session = Session(opener=lambda target: open_emulator(seed=target.seed, dt=5e-4, clock="fast"))
    window = MainWindow(session, layout_path=tmp_path / "layout.json")
    window.reporter.show_messages = False
    qtbot.addWidget(window)
    try:
        window.show()
        assert session.connect("emulator", seed=2, acquire=False), session.connection.status.message
        panel = window.robot_panel
        window.docks["robot"].raise_()
        panel.port_box.setCurrentText("simulated")
        QTest.mouseClick(panel.connect_button, LEFT)
        qtbot.waitUntil(lambda: panel.start_button.isEnabled(), timeout=10_000)
        steps = []
        session.robot.loop_step.connect(steps.append)
        QTest.mouseClick(panel.start_button, LEFT)
        qtbot.waitUntil(lambda: len(steps) > 0, timeout=60_000)  # the loop has written its network and runs
        with heartbeat.watch("robot loop"):  # the loop drives, the panel draws DVS frames, rates and the arena
            n = len(steps)
            qtbot.waitUntil(lambda: len(steps) >= n + 20, timeout=30_000)
        heartbeat.assert_no_stall()
        QTest.mouseClick(panel.stop_button, LEFT)
        qtbot.waitUntil(lambda: not session.robot.loop_running, timeout=5000)
    finally:
        session.close()
        window.close()
