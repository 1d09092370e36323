"""Log panel: every log record at INFO or above and every error, newest at the bottom."""

from __future__ import annotations

import logging

from PyQt6.QtWidgets import QPlainTextEdit, QVBoxLayout, QWidget

from ..errors import ErrorReporter


class LogPanel(QWidget):
    """Shows what the :class:`ErrorReporter` collects (bounded to ``max_lines``)."""

    def __init__(self, reporter: ErrorReporter, max_lines: int = 5000) -> None:
        super().__init__()
        self.text = QPlainTextEdit()
        self.text.setReadOnly(True)
        self.text.setMaximumBlockCount(max_lines)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.text)
        reporter.record.connect(self.append_record)
        reporter.error.connect(self.append_error)

    def append_record(self, level: int, text: str) -> None:
        self.text.appendPlainText(text if level < logging.WARNING else f"⚠ {text}")

    def append_error(self, title: str, details: str) -> None:
        self.text.appendPlainText(f"ERROR {title}\n{details}")

    def contents(self) -> str:
        return self.text.toPlainText()
