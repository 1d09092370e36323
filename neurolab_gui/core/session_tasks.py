"""Long operations (training, conversion, calibration, sweeps) as cancellable background tasks.

A :class:`BackgroundTask` runs ``work(progress, cancelled)`` on its own thread:
``progress(fraction, message)`` reports, ``cancelled()`` tells the work to stop
early.  Results and errors come back through signals (which the Qt layer
relays to the GUI thread) and through :meth:`BackgroundTask.result` /
``await task`` for asyncio orchestration (qasync in the GUI, plain asyncio in
scripts).  An error is never swallowed: it is re-raised by ``result()`` and
emitted on :attr:`failed`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Callable
from typing import Any

from .cancellation import Cancelled
from .events import Signal

log = logging.getLogger(__name__)

ProgressFn = Callable[[float, str], None]
CancelledFn = Callable[[], bool]


class TaskCancelled(Cancelled):
    """Raised by work that noticed :meth:`BackgroundTask.cancel`.

    A task counts as cancelled (not failed) when its work raises any :class:`Cancelled`, e.g. the
    conversion's or the calibration engine's own cancellation.
    """


class BackgroundTask:
    """Run ``work(progress, cancelled)`` on a daemon thread.

    Signals: ``progress(fraction, message)``, ``finished(result)``, ``failed(exc)``,
    ``cancelled_signal()``; exactly one of the last three fires.
    """

    def __init__(self, name: str, work: Callable[[ProgressFn, CancelledFn], Any]) -> None:
        self.name = name
        self._work = work
        self._cancel = threading.Event()
        self._future: concurrent.futures.Future = concurrent.futures.Future()
        self._thread: threading.Thread | None = None
        self.progress = Signal(f"{name} progress")
        self.finished = Signal(f"{name} finished")
        self.failed = Signal(f"{name} failed")
        self.cancelled_signal = Signal(f"{name} cancelled")
        self.last_progress: tuple[float, str] = (0.0, "")

    def start(self) -> BackgroundTask:
        if self._thread is not None:
            raise RuntimeError(f"task {self.name!r} already started")
        self._thread = threading.Thread(target=self._run, name=f"neurolab-{self.name}", daemon=True)
        self._thread.start()
        return self

    def cancel(self) -> None:
        """Ask the work to stop at its next check."""
        self._cancel.set()

    @property
    def is_cancelled(self) -> bool:
        return self._cancel.is_set()

    @property
    def done(self) -> bool:
        return self._future.done()

    def result(self, timeout: float | None = None) -> Any:
        """Block until done; returns the result or raises the work's exception."""
        return self._future.result(timeout)

    def __await__(self):
        return asyncio.wrap_future(self._future).__await__()

    def _report(self, fraction: float, message: str = "") -> None:
        self.last_progress = (float(fraction), message)
        self.progress.emit(float(fraction), message)

    def _run(self) -> None:
        try:
            result = self._work(self._report, self._cancel.is_set)
        except Cancelled as exc:
            self._future.set_exception(exc)
            self.cancelled_signal.emit()
            return
        except BaseException as exc:
            log.exception("background task %s failed", self.name)
            self._future.set_exception(exc)
            self.failed.emit(exc)
            return
        if self._cancel.is_set():
            self._future.set_result(result)
            self.cancelled_signal.emit()
            return
        self._future.set_result(result)
        self.finished.emit(result)
