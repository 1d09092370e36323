"""Progress, cancellation and chip-time accounting for long calibration runs.

Every long call of the calibration engine takes ``progress`` (a callable receiving
:class:`ProgressEvent`) and ``cancel`` (a :class:`threading.Event`).  A GUI can instead run a job
in a worker thread with :class:`CalibrationJob` and consume the events with ``async for``.

Chip time is counted by :class:`MeteredBoard`, a thin proxy around any
:class:`~drivers.dynapse1.board_api.Board` that adds up the board time of every
``read_events(duration)`` call: that is the time the chip actually ran for us (on silicon it is
also the wall-clock time the call took; the fast emulator simulates exactly that span).
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from drivers.dynapse1.board_api import Board
from drivers.dynapse1.spikes import SpikeEvents

from ..conversion.training import Cancelled


class CalibrationCancelled(Cancelled):
    """The calibration stopped because its cancel event was set (the board was restored)."""


@dataclass
class ProgressEvent:
    """One progress report.

    Attributes
    ----------
    fraction : overall progress in [0, 1]
    step : name of the current step (e.g. ``"measure AMPA curves"``)
    eta_s : estimated wall-clock seconds left (nan until it can be estimated)
    chip_s : chip time used so far
    message : human-readable detail
    payload : intermediate results, e.g. ``{"curves": TransferCurves}`` as they are measured
    """

    fraction: float
    step: str
    eta_s: float = float("nan")
    chip_s: float = 0.0
    message: str = ""
    payload: dict[str, Any] = field(default_factory=dict)


ProgressSink = Callable[[ProgressEvent], None]


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


class ProgressReporter:
    """Turns (fraction, step) updates into :class:`ProgressEvent` s with an ETA, and checks cancel.

    The ETA is the elapsed wall time scaled by the remaining fraction (linear extrapolation).
    """

    def __init__(self, sink: ProgressSink | None, cancel: threading.Event | None, board: MeteredBoard | None = None) -> None:
        self.sink = sink
        self.cancel = cancel
        self.board = board
        self.t0 = time.perf_counter()
        self.fraction = 0.0

    def check(self) -> None:
        """Raise :class:`CalibrationCancelled` when the cancel event is set."""
        if self.cancel is not None and self.cancel.is_set():
            raise CalibrationCancelled("calibration cancelled by the user")

    def __call__(self, fraction: float, step: str, message: str = "", **payload: Any) -> None:
        self.check()
        self.fraction = min(1.0, max(self.fraction, float(fraction)))
        elapsed = time.perf_counter() - self.t0
        eta = elapsed * (1.0 - self.fraction) / self.fraction if self.fraction > 1e-3 else float("nan")
        if self.sink is not None:
            chip_s = self.board.chip_s if self.board is not None else 0.0
            self.sink(ProgressEvent(self.fraction, step, eta, chip_s, message, dict(payload)))

    def span(self, lo: float, hi: float, step: str) -> Callable[[float, str], None]:
        """A ``(fraction, message)`` callback (the conversion package's style) mapped into [lo, hi]."""

        def report(f: float, message: str) -> None:
            self(lo + (hi - lo) * float(f), step, message)

        return report


class CalibrationJob:
    """Run a calibration function in a worker thread and stream its progress.

    ``fn`` must accept ``progress=`` and ``cancel=`` keyword arguments.  Use ``async for event in
    job.events()`` (or :meth:`wait`) and :meth:`cancel` from the GUI thread; after cancellation
    :attr:`error` holds the :class:`CalibrationCancelled` and the board is in its restored state.
    """

    def __init__(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        self._queue: queue.Queue[ProgressEvent | None] = queue.Queue()
        self._cancel = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None

        def run() -> None:
            try:
                self.result = fn(*args, progress=self._queue.put, cancel=self._cancel, **kwargs)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller through .error
                self.error = exc
            finally:
                self._queue.put(None)

        self._thread = threading.Thread(target=run, name="calibration", daemon=True)
        self._thread.start()

    def cancel(self) -> None:
        self._cancel.set()

    def wait(self, timeout: float | None = None) -> Any:
        self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result

    async def events(self) -> AsyncIterator[ProgressEvent]:
        """Progress events until the job ends (then :attr:`result` or :attr:`error` is set)."""
        loop = asyncio.get_running_loop()
        while True:
            event = await loop.run_in_executor(None, self._queue.get)
            if event is None:
                return
            yield event
