"""Errors from anywhere (slots, worker threads, core signal handlers) go to the log panel and a toast.

:class:`ErrorReporter` installs ``sys.excepthook``, ``threading.excepthook`` and
the core's :attr:`Signal.error_handler`, and a :mod:`logging` handler.  It never
opens a modal dialog: a modal ``exec()`` inside an async slot re-enters the
qasync loop (qasync #59), so errors are shown in a non-modal message box
opened with ``show()``.
"""

from __future__ import annotations

import logging
import sys
import threading
import traceback
from types import TracebackType

from PyQt6.QtCore import QObject, Qt, pyqtSignal
from PyQt6.QtWidgets import QMessageBox, QWidget

from neurolab_gui.core.events import Signal


class ErrorReporter(QObject):
    """Routes exceptions and log records to the GUI thread.

    Signals
    -------
    error(title, details) : an exception happened
    record(level, text) : a log record at INFO or above
    """

    error = pyqtSignal(str, str)
    record = pyqtSignal(int, str)

    def __init__(self, parent_widget: QWidget | None = None, show_messages: bool = True) -> None:
        super().__init__(parent_widget)
        self._parent_widget = parent_widget
        self.show_messages = show_messages
        self.errors: list[tuple[str, str]] = []
        self._boxes: list[QMessageBox] = []
        self._previous = (sys.excepthook, threading.excepthook, Signal.error_handler)
        self.error.connect(self._show, Qt.ConnectionType.QueuedConnection)
        self._log_handler = _QtLogHandler(self)

    def install(self) -> None:
        sys.excepthook = self.handle
        threading.excepthook = lambda a: self.handle(a.exc_type, a.exc_value, a.exc_traceback)
        Signal.error_handler = self.handle
        logging.getLogger().addHandler(self._log_handler)

    def uninstall(self) -> None:
        sys.excepthook, threading.excepthook, Signal.error_handler = self._previous
        logging.getLogger().removeHandler(self._log_handler)

    def handle(self, exc_type: type[BaseException], exc: BaseException | None, tb: TracebackType | None) -> None:
        """Exception hook: callable from any thread."""
        if exc_type is KeyboardInterrupt:
            sys.__excepthook__(exc_type, exc, tb)
            return
        details = "".join(traceback.format_exception(exc_type, exc, tb))
        title = f"{exc_type.__name__}: {exc}"
        logging.getLogger("neurolab.gui").error("unhandled error: %s", title)
        self.errors.append((title, details))
        self.error.emit(title, details)

    def report(self, exc: BaseException, context: str = "") -> None:
        """Report a caught exception (e.g. a failed background task)."""
        details = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        title = f"{context + ': ' if context else ''}{type(exc).__name__}: {exc}"
        logging.getLogger("neurolab.gui").error("%s", title)
        self.errors.append((title, details))
        self.error.emit(title, details)

    def _show(self, title: str, details: str) -> None:
        if not self.show_messages:
            return
        box = QMessageBox(QMessageBox.Icon.Warning, "NeuroLab error", title, QMessageBox.StandardButton.Close, self._parent_widget)
        box.setDetailedText(details)
        box.setModal(False)
        box.setWindowModality(Qt.WindowModality.NonModal)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        box.finished.connect(lambda *_: self._boxes.remove(box) if box in self._boxes else None)
        self._boxes.append(box)
        box.show()


class _QtLogHandler(logging.Handler):
    def __init__(self, reporter: ErrorReporter) -> None:
        super().__init__(logging.INFO)
        self._reporter = reporter
        self.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._reporter.record.emit(record.levelno, self.format(record))
        except RuntimeError:  # reporter already deleted at shutdown
            pass
