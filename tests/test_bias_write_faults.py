"""Bias writes are transactions: a transfer that fails half-way leaves board, caches and sliders agreeing.

The fault is injected in the USB transfer itself: the virtual device's chip-configuration
acknowledgement (the 2-byte IN control transfer after every batch of up to 85 chip words)
times out, so pyusb raises ``USBTimeoutError`` inside :class:`UsbTransport` exactly as with a
board whose FX2 stopped answering.  The data stage of the failing batch has reached the chip by
then (as on silicon), which is what makes a roll-back necessary.  What the board holds is read
from the emulated chip (decoded from the words it received), never from a cache.
"""

from __future__ import annotations

import pytest
from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

from drivers.dynapse1.bias_table import CORE_BIASES, BiasValue
from drivers.dynapse1.board import BiasWriteError
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP
from drivers.dynapse1.usb_transport import AckError, DeviceGone
from emulator.virtual_board import open_emulated_board, virtual_fpga_of
from neurolab_gui.core.bias_model import BiasModel

ALL_KEYS = [(chip, core, name) for chip in range(N_CHIPS) for core in range(N_CORES_PER_CHIP) for name in CORE_BIASES]


class AckFault:
    """Let ``good`` acknowledgements through, then time out ``bad`` of them (None: all later ones)."""

    def __init__(self, fpga, good: int, bad: int | None = 1) -> None:
        self.fpga, self.good, self.bad = fpga, good, bad
        self.original = fpga.take_ack
        self.failed = 0
        fpga.take_ack = self.take_ack

    def take_ack(self) -> bytes:
        if self.good > 0:
            self.good -= 1
            return self.original()
        if self.bad is None or self.failed < self.bad:
            self.failed += 1
            self.fpga.ack_fault = "timeout"
            try:
                return self.original()  # raises the USB timeout
            finally:
                self.fpga.ack_fault = None
        return self.original()


def chip_holds(board, key) -> BiasValue:
    coarse, fine, high, normal, enabled = virtual_fpga_of(board).simulator.get_bias(*key)
    return BiasValue(coarse, fine, high, normal, enabled)


def new_values() -> dict:
    """A value for every bias of every chip, different from libcaer's start-up set, with flags set."""
    return {key: BiasValue(3, 11 + i % 200, high=i % 2 == 0, normal=i % 3 != 0, enabled=i % 5 != 0) for i, key in enumerate(ALL_KEYS)}


@pytest.fixture
def board():
    b = open_emulated_board("EMUFAULT", clock="fast", prefetch=False)
    yield b
    b.close()


def test_ack_timeout_after_the_first_chip_rolls_the_board_back(board):
    model = BiasModel(board)
    before = {key: board.get_bias(*key) for key in ALL_KEYS}
    assert all(chip_holds(board, k) == v for k, v in before.items())
    fault = AckFault(virtual_fpga_of(board), good=2)  # chip 0's 100 words are 2 batches: acknowledged
    with pytest.raises(BiasWriteError) as caught:
        model.apply(new_values(), origin="test")
    error = caught.value
    assert fault.failed == 1 and isinstance(error, AckError)  # still an AckError for whoever catches those
    assert error.rolled_back and "chip 1" in str(error) and "previous values" in str(error)
    # the chip, the driver's cache and the model all hold the values from before
    for key in ALL_KEYS:
        assert chip_holds(board, key) == before[key] == board.get_bias(*key) == model.value(*key), key
    assert not board.unconfirmed_biases
    assert not model.can_undo  # nothing changed, nothing to undo
    # the next write goes through
    model.apply(new_values(), origin="test")
    assert all(chip_holds(board, k) == v for k, v in new_values().items())


def test_failed_roll_back_leaves_caches_equal_to_what_the_chip_holds(board):
    model = BiasModel(board)
    before = {key: board.get_bias(*key) for key in ALL_KEYS}
    AckFault(virtual_fpga_of(board), good=2, bad=None)  # from chip 1 on, nothing is acknowledged any more
    with pytest.raises(BiasWriteError) as caught:
        model.apply(new_values(), origin="test")
    error = caught.value
    assert not error.rolled_back and "roll-back" in str(error)
    on_chip = {key: chip_holds(board, key) for key in ALL_KEYS}
    changed = [k for k in ALL_KEYS if on_chip[k] != before[k]]
    assert changed  # a real half-applied state on the chip ...
    for key in ALL_KEYS:  # ... and every cache says exactly what the chip holds
        assert board.get_bias(*key) == on_chip[key] == model.value(*key), key
    assert set(error.on_board) >= set(changed) and error.unconfirmed <= set(error.on_board)
    assert board.unconfirmed_biases == error.unconfirmed != set()
    assert model.can_undo  # what did change is one undo step


def test_failed_slider_move_and_failed_preset_are_reported_and_the_panel_shows_the_board(make_window, qtbot):
    window = make_window(spike_capacity=100_000, seed=3, mismatch=False, clock="fast", acquire=False)
    session = window.session
    window.show()
    qtbot.waitExposed(window)
    board, panel = session.board, window.bias_panel
    panel.show_core(1, 2)
    before = {key: chip_holds(board, key) for key in ALL_KEYS}
    fpga = virtual_fpga_of(board)

    # one slider step with the acknowledgement lost: the chip and the slider keep the old value
    first = AckFault(fpga, good=0)
    slider = panel.slider_widget("IF_DC_P")
    position = slider.value()
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_PageUp)
    assert chip_holds(board, (1, 2, "IF_DC_P")) == before[(1, 2, "IF_DC_P")] == session.biases.value(1, 2, "IF_DC_P")
    qtbot.waitUntil(lambda: "Bias write failed" in panel.status_label.text(), timeout=2000)
    assert "previous values" in panel.status_label.text()
    assert slider.value() == position
    fpga.take_ack = first.original

    # "… to all cores": the first batch (chip 0) is acknowledged, then nothing, roll-back included
    AckFault(fpga, good=1, bad=None)
    panel.preset_combo.setCurrentText("samna_recommended")  # the box shows the set the core runs: choose another
    QTest.mouseClick(panel.preset_all_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: "roll-back failed" in panel.status_label.text(), timeout=2000)
    on_chip = {key: chip_holds(board, key) for key in ALL_KEYS}
    assert any(on_chip[k] != before[k] for k in ALL_KEYS)
    for key in ALL_KEYS:
        assert board.get_bias(*key) == on_chip[key] == session.biases.value(*key), key
    # the sliders of the core shown agree with the chip
    qtbot.wait(100)
    for name in CORE_BIASES:
        value = on_chip[(1, 2, name)]
        assert f"(c{value.coarse} f{value.fine})" in panel.title(name), name
    assert panel.change_log.toPlainText().count("FAILED") == 2  # both failures are in the panel's log
    # the board answers again: the next slider step goes through and the failure line goes away
    fpga.take_ack = first.original
    slider.setFocus()
    QTest.keyClick(slider, Qt.Key.Key_PageUp)
    assert chip_holds(board, (1, 2, "IF_DC_P")) == session.biases.value(1, 2, "IF_DC_P") != on_chip[(1, 2, "IF_DC_P")]
    assert panel.status_label.text() == ""


def test_writes_from_two_threads_land_on_their_own_chips(board):
    """A worker thread writing the board directly while another writes through the model (the GUI
    during a sweep or a calibration): the chip select and its words are not interleaved, and the
    caches end up equal to the chip."""
    import threading
    import time

    from drivers.dynapse1 import fpga_registers as fr

    transport = board.transport
    write_register = transport.write_register

    def slow_chip_select(module: int, param: int, value: int) -> None:  # widen the select -> words window
        write_register(module, param, value)
        if (module, param) == (fr.Module.CHIP, fr.ChipParam.ID):
            time.sleep(0.002)

    transport.write_register = slow_chip_select
    model = BiasModel(board)
    before = {key: chip_holds(board, key) for key in ALL_KEYS}
    values = [BiasValue(4, fine) for fine in range(20, 220, 5)]

    def direct() -> None:
        for value in values:
            board.set_bias(0, 1, "IF_THR_N", value)

    worker = threading.Thread(target=direct)
    worker.start()
    for value in values:
        model.set_value(3, 2, "IF_DC_P", value.replace(enabled=False), origin="test")
    worker.join(timeout=30)
    assert chip_holds(board, (0, 1, "IF_THR_N")) == values[-1] == board.get_bias(0, 1, "IF_THR_N") == model.value(0, 1, "IF_THR_N")
    assert chip_holds(board, (3, 2, "IF_DC_P")) == values[-1].replace(enabled=False) == model.value(3, 2, "IF_DC_P")
    touched = {(0, 1, "IF_THR_N"), (3, 2, "IF_DC_P")}
    assert all(chip_holds(board, k) == before[k] for k in ALL_KEYS if k not in touched)  # nothing landed elsewhere


def test_unplug_half_way_leaves_caches_equal_to_the_chip_and_reconnect_rewrites_them():
    from drivers.dynapse1.board import open_board
    from emulator.simulator import BoardSimulator
    from emulator.virtual_usb import VirtualDynapseBackend

    backend = VirtualDynapseBackend()
    fpga = backend.add_board("EMUUNPLUG", BoardSimulator("EMUUNPLUG"), "fast")
    board = open_board("EMUUNPLUG", backend=backend, settle_s=0.0, prefetch=False)
    try:
        model = BiasModel(board)
        before = {key: board.get_bias(*key) for key in ALL_KEYS}
        acks, original = {"n": 0}, fpga.take_ack

        def take_ack_then_unplug() -> bytes:
            acks["n"] += 1
            if acks["n"] == 3:  # the cable is pulled right after chip 1's first batch
                backend.unplug("EMUUNPLUG")
            return original()

        fpga.take_ack = take_ack_then_unplug
        with pytest.raises(BiasWriteError) as caught:
            model.apply(new_values(), origin="test")
        assert isinstance(caught.value, DeviceGone) and not caught.value.rolled_back
        on_chip = {key: chip_holds_sim(fpga.simulator, key) for key in ALL_KEYS}
        assert sum(on_chip[k] != before[k] for k in ALL_KEYS) == 185  # chip 0 and chip 1's first batch ...
        for key in ALL_KEYS:  # ... and the caches say exactly which half
            assert on_chip[key] == board.get_bias(*key) == model.value(*key), key
        # replugged, reconnect rewrites the cache: the chip agrees again (the emulated chip kept its
        # state while unplugged; silicon loses it with its power, which the rewrite covers too)
        fpga.take_ack = original
        backend.replug("EMUUNPLUG")
        board.reconnect(timeout_s=2.0)
        for key in ALL_KEYS:
            assert chip_holds_sim(fpga.simulator, key) == board.get_bias(*key) == model.value(*key), key
    finally:
        board.close()


def chip_holds_sim(simulator, key) -> BiasValue:
    coarse, fine, high, normal, enabled = simulator.get_bias(*key)
    return BiasValue(coarse, fine, high, normal, enabled)
