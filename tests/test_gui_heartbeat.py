"""The heartbeat (tests/conftest.py) itself: it fails on a blocked event loop, and a watch starts
after the clean-up its own garbage collection leaves to the event loop."""

from __future__ import annotations

import time

import pytest
from PyQt6.QtCore import QObject, QTimer
from PyQt6.QtTest import QTest


def _busy(seconds: float) -> None:
    end = time.thread_time() + seconds  # CPU time: counts on an overloaded machine too
    while time.thread_time() < end:
        pass


def test_a_slot_that_holds_the_gui_thread_fails_the_heartbeat(heartbeat, qtbot):
    with heartbeat.watch("blocked"):
        QTimer.singleShot(0, lambda: _busy(0.15))
        QTest.qWait(300)
    with pytest.raises(AssertionError, match="blocked"):
        heartbeat.assert_no_stall()
    assert heartbeat.worst_ms("blocked") >= 150


def test_a_watch_starts_after_the_deferred_deletions_that_exist_already(heartbeat, qtbot):
    deleted = []
    doomed = QObject()  # kept referenced: only deleteLater deletes it
    doomed.destroyed.connect(lambda *_: deleted.append(True))
    doomed.deleteLater()  # as PyQt does with the slot proxies of collected Python slots
    with heartbeat.watch("quiet"):
        assert deleted  # run before the clock started, not charged to the watched action
        QTest.qWait(50)
    heartbeat.assert_no_stall()
