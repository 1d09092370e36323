"""GUI smoke tests (offscreen): the window, every panel, slider → bias model, events → raster, layout."""

import numpy as np
import pytest
from PyQt6.QtWidgets import QScrollArea

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.spikes import SpikeEvents
from neurolab_gui.core.session import Session
from neurolab_gui.qt.main_window import WINDOW_TITLE, MainWindow


def test_main_window_opens_with_title_and_closes(window, qtbot):
    window.show()
    qtbot.waitExposed(window)
    assert window.windowTitle() == WINDOW_TITLE
    assert window.close()


def test_every_panel_builds(window):
    for key in ("bias", "raster", "transfer", "membrane", "stimulus", "model", "console", "log"):
        panel = window.docks[key].widget()
        if isinstance(panel, QScrollArea):  # tall panels scroll on small screens
            panel = panel.widget()
        assert panel is getattr(window, f"{key}_panel") and type(panel).__name__ == f"{key.capitalize()}Panel"
    assert window.state_label.text().startswith("disconnected")


def test_slider_move_reaches_the_bias_model_and_console_changes_reach_the_slider(window, qtbot):
    panel = window.bias_panel
    panel.show_core(1, 2)
    slider = panel.slider_widget("IF_DC_P")
    slider.setValue(1000)
    value = window.session.biases.value(1, 2, "IF_DC_P")
    assert window.session.biases.parameter(1, 2, "IF_DC_P").ladder_index == 1000  # the setting at the slider's rung
    shown = panel.params.child("IF_DC_P")
    qtbot.waitUntil(lambda: (shown.child("coarse").value(), shown.child("fine").value()) == (value.coarse, value.fine))  # and shows it
    slider.setValue(1001)
    higher = window.session.biases.value(1, 2, "IF_DC_P")
    assert nominal_current(higher.coarse, higher.fine) > nominal_current(value.coarse, value.fine)  # one rung up: more current
    assert window.session.biases.log[-1].origin == "gui"
    window.console_panel.execute("session.biases.set(1, 2, 'IF_DC_P', 2, 77, origin='console')")
    qtbot.waitUntil(lambda: panel.params.child("IF_DC_P").child("fine").value() == 77)
    assert "console" in panel.change_log.toPlainText()


def test_fed_events_reach_the_raster(window, qtbot):
    n = 2000
    ev = SpikeEvents(np.arange(n) * 100, np.zeros(n), np.zeros(n), np.arange(n) % 256)
    window.session.connection.feed(ev)
    window.raster_panel.render()
    frame = window.raster_panel.last_frame
    assert frame is not None and frame.n_events == n and frame.mode == "ticks"
    assert frame.rates_hz.sum() == pytest.approx(n / window.raster_panel.span_spin.value())


def test_layout_round_trips(window, qtbot, tmp_path):
    window.show()
    window.docks["console"].setFloating(True)
    window.docks["membrane"].hide()
    window.raster_panel.span_spin.setValue(2.5)
    path = window.save_layout(tmp_path / "saved.json")
    other = MainWindow(Session(spike_capacity=1000), layout_path=path)
    qtbot.addWidget(other)
    other.show()
    assert other.restore_layout()
    assert other.docks["console"].isFloating()
    assert not other.docks["membrane"].isVisible()
    assert other.raster_panel.span_spin.value() == 2.5
    other.close()


def test_errors_reach_the_log_panel(window, qtbot):
    window.reporter.report(ValueError("boom"), "test")
    qtbot.waitUntil(lambda: "boom" in window.log_panel.contents())
    assert window.reporter.errors[-1][0].startswith("test: ValueError")


def test_unopenable_board_leaves_the_gui_up(qtbot, tmp_path):
    def opener(target):
        raise OSError("device unplugged")

    w = MainWindow(Session(opener=opener, spike_capacity=1000), layout_path=tmp_path / "l.json")
    qtbot.addWidget(w)
    assert not w.connection_bar.connect_selected().result(timeout=10)
    qtbot.waitUntil(lambda: w.state_label.text().startswith("error"))
    assert "unplugged" in w.session.connection.status.message
    w.close()


@pytest.mark.parametrize("damage", ["list", "null", "raster_str", "raster_chip_huge", "span_nan", "geometry_int",
                                    "truncated", "directory", "unreadable", "fifo"])
def test_a_damaged_layout_file_is_logged_and_the_default_layout_used(window, qtbot, tmp_path, monkeypatch, caplog, damage):
    """The layout is read at every start: nothing in it may stop the window from being built."""
    import json
    from pathlib import Path

    from neurolab_gui.qt.app import create_main_window

    good = window.layout_state()
    path = tmp_path / "damaged.json"
    text = {"list": "[]", "null": "null", "raster_str": json.dumps({**good, "raster": "oops"}),
            "raster_chip_huge": json.dumps({**good, "raster": {**good["raster"], "chip": 10**30}}),
            "span_nan": json.dumps({**good, "raster": {**good["raster"], "span_s": float("nan")}}),
            "geometry_int": json.dumps({**good, "geometry": 5}), "truncated": json.dumps(good)[:200]}.get(damage)
    if damage == "directory":
        path.mkdir()
    elif damage == "unreadable":  # e.g. owned by root after `sudo neurolab gui` (the tests may run as root)
        path.write_text(json.dumps(good))
        import os

        real = os.open
        monkeypatch.setattr(os, "open", lambda name, *a, **k: (_ for _ in ()).throw(PermissionError(13, "Permission denied"))
                            if Path(name) == path else real(name, *a, **k))
    elif damage == "fifo":  # read at every start: a FIFO must not block the start for ever
        import os

        os.mkfifo(path)
    else:
        path.write_text(text)
    with caplog.at_level("WARNING"):
        w = create_main_window(Session(spike_capacity=1000), layout_path=path, install_hooks=False)
    qtbot.addWidget(w)
    assert any("ignoring saved layout" in r.getMessage() and str(path) in r.getMessage() for r in caplog.records)
    assert w.raster_panel.settings() == window.raster_panel.settings()  # the defaults, nothing half-applied
    w.close()
    w.session.close()
