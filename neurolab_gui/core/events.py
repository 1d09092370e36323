"""A tiny observable: :class:`Signal` with connect / disconnect / emit.

The core announces every state change through these signals so that the GUI,
the console and scripts can follow it without the core knowing about Qt.  The
Qt layer bridges a core signal into a Qt signal with a queued connection
(``neurolab_gui.qt.bridge``), so callbacks fired from reader or worker threads
are delivered on the GUI thread there; here, handlers run synchronously on the
emitting thread.

Thread safety: the handler list is copied under a lock before each emit, so
connecting or disconnecting from another thread while an emit is running is
safe; a handler disconnected during an emit may still receive that one call.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


class Signal:
    """An ordered list of handlers called with the emitted arguments.

    Parameters
    ----------
    name : str
        Used in log messages when a handler raises.

    Notes
    -----
    A handler that raises does not stop the others: the exception is logged and
    passed to :attr:`error_handler` if one is set (the GUI sets it to its
    exception hook so that errors are shown, never silently dropped).
    """

    #: Called as ``error_handler(exc_type, exc, traceback)`` when a handler raises.
    error_handler: Callable[[type[BaseException], BaseException, Any], None] | None = None

    def __init__(self, name: str = "signal") -> None:
        self.name = name
        self._handlers: list[Handler] = []
        self._lock = threading.Lock()

    def connect(self, handler: Handler) -> Handler:
        """Call ``handler(*args)`` on every :meth:`emit`; returns the handler (usable as a decorator)."""
        if not callable(handler):
            raise TypeError(f"{self.name}: handler {handler!r} is not callable")
        with self._lock:
            if handler not in self._handlers:
                self._handlers.append(handler)
        return handler

    def disconnect(self, handler: Handler) -> None:
        """Stop calling ``handler``; disconnecting an unknown handler is a no-op."""
        with self._lock:
            try:
                self._handlers.remove(handler)
            except ValueError:
                pass

    def emit(self, *args: Any) -> None:
        """Call every connected handler with ``args``, in connection order."""
        for exc in self.emit_collecting(*args):
            self.report(exc)

    def emit_collecting(self, *args: Any) -> list[Exception]:
        """Like :meth:`emit`, but return the handlers' exceptions instead of reporting them.

        For a sender that can tell an expected failure (the board closed under the handlers
        by the user) from a real one; it passes the real ones to :meth:`report`.
        """
        with self._lock:
            handlers = list(self._handlers)
        errors: list[Exception] = []
        for handler in handlers:
            try:
                handler(*args)
            except Exception as exc:  # one bad subscriber must not break the others
                exc.add_note(f"in handler {handler!r} of {self.name}")
                errors.append(exc)
        return errors

    def report(self, exc: Exception) -> None:
        """Log a handler's exception and pass it to :attr:`error_handler` (the GUI's error box)."""
        log.error("a handler of %s raised", self.name, exc_info=exc)
        hook = Signal.error_handler
        if hook is not None:
            hook(type(exc), exc, exc.__traceback__)

    def __len__(self) -> int:
        with self._lock:
            return len(self._handlers)
