"""Cancellation and chip-time accounting for long calibration runs.

Every long call of the calibration engine takes ``progress`` (a sink of
:class:`~neurolab_gui.core.jobs.Progress`) and ``cancel`` (a
:class:`~neurolab_gui.core.jobs.CancelToken`), and reports its named steps through
:func:`calibration_reporter`; the GUI and scripts run it as a :class:`~neurolab_gui.core.jobs.Job`
like every other long operation.

Chip time is counted by :class:`MeteredBoard`, a thin proxy around any
:class:`~drivers.dynapse1.board_api.Board` that adds up the board time of every
``read_events(duration)`` call: that is the time the chip actually ran for us (on silicon it is
also the wall-clock time the call took; the fast emulator simulates exactly that span).
"""

from __future__ import annotations

import threading
from typing import Any

from drivers.dynapse1.board_api import Board
from drivers.dynapse1.spikes import SpikeEvents

from ..cancellation import Cancelled
from ..jobs import ProgressReporter, ProgressSink


class CalibrationCancelled(Cancelled):
    """The calibration stopped because its cancel token was set (the board was restored)."""


class MeteredBoard:
    """A :class:`Board` proxy that counts the chip time of every ``read_events`` call."""

    def __init__(self, board: Board) -> None:
        self._board = board
        self.chip_s = 0.0

    @property
    def inner(self) -> Board:
        return self._board

    def read_events(self, duration_s: float) -> SpikeEvents:
        events = self._board.read_events(duration_s)
        self.chip_s += float(duration_s)
        return events

    def __getattr__(self, name: str) -> Any:  # everything else goes straight to the board
        return getattr(self._board, name)


def metered(board: Board) -> MeteredBoard:
    """``board`` wrapped in a :class:`MeteredBoard` (an already metered board is returned as is)."""
    return board if isinstance(board, MeteredBoard) else MeteredBoard(board)


def calibration_reporter(progress: ProgressSink | None, cancel: threading.Event | None, board: MeteredBoard) -> ProgressReporter:
    """The reporter of a calibration run: chip time from ``board``, :class:`CalibrationCancelled` on cancel."""
    return ProgressReporter(progress, cancel, board, CalibrationCancelled, "calibration cancelled by the user")
