"""Opening a board off the caller's thread (the GUI's Connect), and the polling threads."""

from __future__ import annotations

import threading
import time

from neurolab_gui.core.connection import ConnectionManager, ConnectionTarget, open_board
from neurolab_gui.core.periodic import Periodic

FAST = ConnectionTarget("emulator", seed=1, clock="fast")


def slow_opener(release: threading.Event, opened: list):
    def opener(target):
        release.wait(10)
        board = open_board(target)
        opened.append(board)
        return board

    return opener


def test_connect_in_background_returns_at_once_and_connects_on_a_worker():
    release, opened = threading.Event(), []
    manager = ConnectionManager(slow_opener(release, opened))
    states = []
    manager.status_changed.connect(lambda s: states.append(s.state))
    future = manager.connect_in_background(FAST, acquire=False)
    assert manager.status.state == "connecting" and not future.done()  # the caller was not held up
    release.set()
    assert future.result(timeout=30) is True
    assert manager.board is opened[0] and manager.status.state == "connected" and states[-1] == "connected"
    manager.disconnect()


def test_disconnect_while_opening_closes_the_board_as_soon_as_it_is_open():
    release, opened = threading.Event(), []
    manager = ConnectionManager(slow_opener(release, opened))
    future = manager.connect_in_background(FAST, acquire=False)
    time.sleep(0.05)
    manager.disconnect("user changed their mind")
    release.set()
    assert future.result(timeout=30) is False
    assert manager.board is None and manager.status.state == "disconnected"
    assert not opened[0].connected  # the board opened late was closed, not leaked


def test_a_failing_open_in_the_background_is_an_error_state_not_an_exception():
    def opener(target):
        raise OSError("no such board")

    manager = ConnectionManager(opener)
    assert manager.connect_in_background(FAST).result(timeout=10) is False
    assert manager.status.state == "error" and "no such board" in manager.status.message


def test_periodic_calls_until_stopped_and_survives_errors():
    calls = []

    def fn():
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise RuntimeError("board unplugged mid-call")

    poller = Periodic("test", 0.01, fn).start()
    deadline = time.monotonic() + 5
    while len(calls) < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    poller.stop()
    n = len(calls)
    assert n >= 5 and not poller.running
    time.sleep(0.05)
    assert len(calls) == n  # stopped means stopped
