"""The board's life in the app, driven by the real buttons: connect, disconnect and the jobs
that use the board (hostile GUI test B3, B4, B8).

``make_window``: the window factory of tests/conftest.py.
"""

from __future__ import annotations

import threading

from PyQt6.QtCore import Qt
from PyQt6.QtTest import QTest

LEFT = Qt.MouseButton.LeftButton


# --- B4: Disconnect while a connect is still announcing its board -----------------------------
def test_disconnect_pressed_while_the_new_board_is_being_attached_ends_as_plain_disconnected(make_window, qtbot):
    window = make_window()
    session, bar = window.session, window.connection_bar
    attaching, pressed = threading.Event(), threading.Event()
    real_attach = session.biases.attach

    def attach_after_the_disconnect(board):  # the worker reads the biases after the user's click
        attaching.set()
        pressed.wait(10)
        real_attach(board)

    session.biases.attach = attach_after_the_disconnect
    session.membrane.select(0, 0, 5)  # routed to the board by the attach: a write on the closed board
    QTest.mouseClick(bar.connect_button, LEFT)
    qtbot.waitUntil(attaching.is_set, timeout=20_000)
    assert session.connection.status.state == "connected"  # what the user saw before pressing
    QTest.mouseClick(bar.disconnect_button, LEFT)
    pressed.set()
    qtbot.waitUntil(lambda: not any(t.name == "neurolab-connect" for t in threading.enumerate()), timeout=10_000)
    qtbot.wait(50)  # what the worker said last reaches the window's widgets
    status = session.connection.status
    assert (status.state, status.message) == ("disconnected", "closed by user")
    assert window.reporter.errors == []
    assert session.board is None and session.biases.board is None and session.membrane._board is None
    assert bar.connect_button.isEnabled()


# --- B8: the emulator's child process ends with Disconnect --------------------------------------
def test_disconnect_ends_the_emulator_child_process_while_the_board_is_still_referenced(make_window, qtbot):
    from emulator.fpga_process import child_state
    from emulator.virtual_board import virtual_fpga_of

    window = make_window()
    window.session.emulator_in_separate_process = True  # as `neurolab gui` runs it
    QTest.mouseClick(window.connection_bar.connect_button, LEFT)
    qtbot.waitUntil(lambda: window.session.connection.status.state == "connected", timeout=30_000)
    board = window.session.board  # held here: the child must not wait for the board's garbage collection
    pid = virtual_fpga_of(board).pid
    assert child_state(pid) == "running"
    QTest.mouseClick(window.connection_bar.disconnect_button, LEFT)
    assert window.session.connection.status.state == "disconnected"
    qtbot.waitUntil(lambda: child_state(pid) == "dead", timeout=10_000)
    assert board is not None
