"""The FPGA spike generator of the Stimulus panel, driven as a user does (QTest keys and clicks), checked
on the emulator's own generator."""

from __future__ import annotations

import numpy as np
import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from emulator.virtual_board import virtual_fpga_of
from neurolab_gui.core.session import Session
from neurolab_gui.qt.main_window import MainWindow

LEFT = Qt.MouseButton.LeftButton


@pytest.fixture
def window(qtbot, tmp_path):
    w = MainWindow(Session(spike_capacity=10_000), layout_path=tmp_path / "layout.json")
    w.reporter.show_messages = False
    qtbot.addWidget(w)
    assert w.session.connect("emulator", seed=3, clock="fast", acquire=False), w.session.connection.status.message
    yield w
    w.session.close()
    w.close()


def type_into(widget, text: str) -> None:
    """Select all, type ``text`` and press Enter, as a user edits a spin box or a line edit."""
    edit = widget.lineEdit() if hasattr(widget, "lineEdit") else widget
    edit.selectAll()
    QTest.keyClicks(edit, text)
    QTest.keyClick(edit, Qt.Key.Key_Enter)


def set_train(panel, sources: str, rate: str, duration: str, repeat: bool) -> None:
    type_into(panel.s_sources, sources)
    type_into(panel.s_rate, rate)
    type_into(panel.s_duration, duration)
    if panel.s_repeat.isChecked() != repeat:
        QTest.keyClick(panel.s_repeat, Qt.Key.Key_Space)  # a focused check box toggles on Space
    assert panel.s_repeat.isChecked() == repeat


def test_load_at_the_boxes_maxima_is_refused_at_once_in_the_panels_words(window):
    """100 kHz × 600 s × 256 sources used to build the whole train first (an unhandled MemoryError)."""
    panel = window.stimulus_panel
    set_train(panel, "0-255", "100000", "600", repeat=False)
    assert (panel.s_rate.value(), panel.s_duration.value()) == (100_000.0, 600.0)
    QTest.mouseClick(panel.s_load, LEFT)
    assert [title for title, _ in window.reporter.errors] == [
        "stimulus: ValueError: the program needs 15360000000 spike-generator events; the FPGA holds 32767 (shorten it)"]


@pytest.mark.parametrize(("sources", "rate", "duration"), [("0-3", "100", "0.01"), ("0", "100", "1"), ("0", "100", "0.01")])
def test_a_repeating_train_plays_the_set_rate_on_the_emulator(window, sources, rate, duration):
    """Each source fires at the set rate over several wraps, with no zero ISI at the wrap, and the train
    starts at Start (it used to start one step late); the one-event train (source 0, 100 Hz, 10 ms)
    is loaded and plays too (Start used to refuse it)."""
    panel = window.stimulus_panel
    set_train(panel, sources, rate, duration, repeat=True)
    QTest.mouseClick(panel.s_load, LEFT)
    QTest.mouseClick(panel.s_start, LEFT)
    assert window.reporter.errors == []
    generator = virtual_fpga_of(window.session.board).simulator.spike_generator
    assert generator.running and generator.repeat
    t, index = generator.event_times(generator.start_s, generator.start_s + 5.0)  # 5 s of board time
    spikes = generator.core_mask[index] != 0  # not the loop's closing dummy event, which reaches no core
    t, index = t[spikes], index[spikes]
    assert t[0] == pytest.approx(generator.start_s, abs=1e-6)  # the first spike fires at Start
    lo, _, hi = sources.partition("-")
    for neuron in range(int(lo), int(hi or lo) + 1):
        own = t[generator.neuron[index] == neuron]
        assert np.allclose(np.diff(own), 1 / float(rate), rtol=0.01), neuron
        assert abs(len(own) / 5.0 - float(rate)) <= 0.01 * float(rate)


def test_the_duration_box_at_its_minimum_loads(window):
    """The box claims 1 ms as its minimum: it must hold it (it showed 0.00 s and Load refused it)."""
    panel = window.stimulus_panel
    set_train(panel, "0", "1000", "0.001", repeat=False)
    assert panel.s_duration.value() == panel.s_duration.minimum() == 0.001
    QTest.mouseClick(panel.s_load, LEFT)
    QTest.mouseClick(panel.s_start, LEFT)
    assert window.reporter.errors == []
    assert len(virtual_fpga_of(window.session.board).simulator.spike_generator.neuron) == 1
