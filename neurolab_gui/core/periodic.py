"""A function called every few hundred milliseconds on its own daemon thread.

Status polls and membrane readback ask the board (or the emulator's child process) and may wait
on it; run from a GUI timer, every such wait would freeze the window.  The GUI starts a
:class:`Periodic` instead and shows what the function published (through core signals).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class Periodic:
    """Call ``fn()`` every ``interval_s`` seconds on a daemon thread until :meth:`stop`.

    An exception is logged once per distinct message and does not end the loop (a board that
    was unplugged mid-call is the normal case, not a crash).
    """

    def __init__(self, name: str, interval_s: float, fn: Callable[[], object]) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval must be positive, got {interval_s} s")
        self.name = name
        self.interval_s = float(interval_s)
        self._fn = fn
        self._stop = threading.Event()
        self._last_error = ""
        self._thread = threading.Thread(target=self._run, name=f"neurolab-{name}", daemon=True)

    def start(self) -> Periodic:
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 2.0) -> None:
        """Stop calling; waits up to ``timeout_s`` for a call in progress."""
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    @property
    def running(self) -> bool:
        return self._thread.is_alive() and not self._stop.is_set()

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._fn()
            except Exception as exc:  # noqa: BLE001 - logged, the loop goes on
                if str(exc) != self._last_error:
                    log.warning("%s: %s", self.name, exc)
                    self._last_error = str(exc)
