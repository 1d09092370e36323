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



# --- Disconnect pressed right after Connect: it cancels that connect, whatever the worker is at --
def _connect_workers() -> int:
    return sum(t.name == "neurolab-connect" for t in threading.enumerate())


def _assert_ends_disconnected(window, qtbot) -> None:
    session, bar = window.session, window.connection_bar
    qtbot.waitUntil(lambda: _connect_workers() == 0, timeout=10_000)
    qtbot.waitUntil(lambda: window.state_label.text().split(":")[0] == session.connection.status.state, timeout=2_000)
    assert session.connection.status.state == "disconnected"
    assert session.board is None and session.biases.board is None
    assert bar.connect_button.isEnabled()
    assert window.reporter.errors == []


def test_disconnect_pressed_while_a_reconnect_closes_the_old_board_is_not_lost(make_window, qtbot, monkeypatch):
    # Connect pressed with a board open: the worker closes the old board first.  A Disconnect that
    # landed then found no board to close and was dropped: the new board opened and stayed
    # connected (hostile GUI t01 / reconnect cycles: 7 of 7 Connect-then-Disconnect at once).
    window = make_window()
    session, bar = window.session, window.connection_bar
    QTest.mouseClick(bar.connect_button, LEFT)
    # the bar shows it too: Connect is enabled again once the GUI thread has the "connected" status
    qtbot.waitUntil(lambda: session.connection.status.state == "connected" and bar.connect_button.isEnabled(), timeout=20_000)
    old = session.board
    closing, pressed = threading.Event(), threading.Event()
    real_close = old.close

    def close_held_after_the_disconnect() -> None:  # the worker is closing the old board when the user presses
        if threading.current_thread().name == "neurolab-connect":
            closing.set()
            pressed.wait(10)
        real_close()

    monkeypatch.setattr(old, "close", close_held_after_the_disconnect)
    QTest.mouseClick(bar.connect_button, LEFT)
    qtbot.waitUntil(closing.is_set, timeout=10_000)
    QTest.mouseClick(bar.disconnect_button, LEFT)
    pressed.set()
    _assert_ends_disconnected(window, qtbot)
    assert not old.connected


def test_disconnect_cancels_a_connect_still_waiting_for_the_one_before(make_window, qtbot, monkeypatch):
    # Connect, Ctrl+K again (queued behind the first open), then Disconnect: both are cancelled.
    # The queued one read its generation only once it ran, after the Disconnect, and connected.
    window = make_window()
    session = window.session
    opening, pressed = threading.Event(), threading.Event()
    real_opener = session.connection._opener

    def open_held_after_the_disconnect(target):
        opening.set()
        pressed.wait(10)
        return real_opener(target)

    monkeypatch.setattr(session.connection, "_opener", open_held_after_the_disconnect)
    QTest.mouseClick(window.connection_bar.connect_button, LEFT)
    qtbot.waitUntil(opening.is_set, timeout=10_000)
    window.connect_action.trigger()  # Ctrl+K: the menu action stays enabled while connecting
    qtbot.waitUntil(lambda: _connect_workers() == 2, timeout=5_000)
    QTest.mouseClick(window.connection_bar.disconnect_button, LEFT)
    pressed.set()
    _assert_ends_disconnected(window, qtbot)
    assert session.connection.status.message == "connection cancelled"

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
    QTest.mouseClick(window.connection_bar.disconnect_button, LEFT)  # the board closes on a worker
    qtbot.waitUntil(lambda: window.session.connection.status.state == "disconnected", timeout=10_000)
    qtbot.waitUntil(lambda: child_state(pid) == "dead", timeout=10_000)
    assert board is not None


# --- B3: one job at a time on the board ------------------------------------------------------
BUSY_SWEEP = "a sweep is running on the board; cancel it first"
BUSY_CALIBRATION = "a calibration is running on the board; cancel it first"


def test_a_second_board_job_is_refused_by_the_panel_pressed_and_each_panel_follows_its_own(make_window, qtbot, monkeypatch):
    from neurolab_gui.core import workflows
    from neurolab_gui.core.jobs import check_cancel

    window = make_window(seed=3, clock="fast", acquire=False)
    transfer, model = window.transfer_panel, window.model_panel
    transfer.chip_spin.setValue(0)
    transfer.core_spin.setValue(1)
    transfer.steps_spin.setValue(3)
    transfer.duration_spin.setValue(0.05)
    release = threading.Event()
    post = transfer.post
    transfer.post = lambda curves: (release.wait(20), post(curves))  # the sweep holds after its first level

    QTest.mouseClick(transfer.sweep_button, LEFT)
    sweep = transfer.task
    assert sweep is not None and sweep.name == "sweep" and not sweep.done
    # the model panel's calibration would write the very core being swept: refused, where it was pressed
    QTest.mouseClick(model.calibrate_button, LEFT)
    assert model.status.text() == BUSY_SWEEP and BUSY_SWEEP in window.reporter.errors[-1][0]
    assert model.job is None and not model.cancel_button.isEnabled()
    assert transfer.task is sweep and not transfer.sweep_button.isEnabled() and transfer.cancel_button.isEnabled()
    release.set()
    qtbot.waitUntil(lambda: sweep.done and transfer.sweep_button.isEnabled(), timeout=30_000)
    qtbot.waitUntil(lambda: transfer.status.text() == "sweep finished")
    sweep.result()

    # the other way round: a calibration (held until cancelled) has the board, Sweep is refused
    def held_calibration(session, cores, progress=None, cancel=None):
        cancel.wait(20)
        check_cancel(cancel, "calibration cancelled")

    monkeypatch.setattr(workflows, "calibrate_cores", held_calibration)
    QTest.mouseClick(model.calibrate_button, LEFT)
    calibration = model.job
    assert calibration is not None and calibration.name == "calibration" and transfer.task is calibration
    n = len(window.reporter.errors)
    QTest.mouseClick(transfer.sweep_button, LEFT)  # disabled while the calibration shows there: no job
    transfer.start_sweep()  # and called directly (a script, the console): refused by the board's guard
    assert transfer.task is calibration and transfer.status.text() == BUSY_CALIBRATION
    assert len(window.reporter.errors) == n + 1 and BUSY_CALIBRATION in window.reporter.errors[-1][0]
    QTest.mouseClick(model.cancel_button, LEFT)
    qtbot.waitUntil(lambda: calibration.done and transfer.sweep_button.isEnabled(), timeout=10_000)
    qtbot.waitUntil(lambda: transfer.status.text() == "calibration cancelled" and model.status.text() == "calibration cancelled")
    assert not transfer.cancel_button.isEnabled() and not model.cancel_button.isEnabled()
    QTest.mouseClick(transfer.sweep_button, LEFT)  # the board is free again
    assert transfer.task is not calibration and transfer.task.name == "sweep"
    qtbot.waitUntil(lambda: transfer.task.done and transfer.sweep_button.isEnabled(), timeout=30_000)
    transfer.task.result()
