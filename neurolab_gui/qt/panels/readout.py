"""A label whose text changes while something runs, without re-laying out the panel around it.

``QLabel.setText`` asks the parent's layout to recompute unless the label's size is fixed
(minimum = maximum in both directions).  Inside a dock's scroll area that recomputation makes
Qt repaint the scroll area, both scroll bars, the dock (whose Fusion title bar loads its button
icons on every paint) and the main window under them, on every text change: 1.6 ms of GUI-thread
CPU per change against 0.03 ms for a label of fixed size (measured offscreen; see
``docs/ARCHITECTURE.md``, "GUI-thread budget").  A robot loop changes five such labels at
10-50 Hz, a conversion its status line at every progress report.

:class:`Readout` holds the label at a fixed size that follows the space its layout gives the
readout, so a text change repaints the label and nothing else.  Panels keep the label itself as
their attribute (``panel.status.text()`` works as before) and put the readout in the layout.
"""

from __future__ import annotations

from PyQt6.QtCore import QSize
from PyQt6.QtGui import QResizeEvent
from PyQt6.QtWidgets import QLabel, QSizePolicy, QWidget


class Readout(QWidget):
    """Hold ``label`` at a fixed size: ``lines`` lines high, as wide as the layout makes the readout.

    Parameters
    ----------
    label : the label whose text changes (it is re-parented into the readout)
    lines : lines of text shown; with more than one the label wraps words
    template : a typical text, whose width is the readout's preferred width
    """

    def __init__(self, label: QLabel, lines: int = 1, template: str = "") -> None:
        super().__init__()
        self.label = label
        label.setParent(self)
        label.setWordWrap(lines > 1)
        margins = label.contentsMargins()
        metrics = label.fontMetrics()
        self._height = lines * metrics.lineSpacing() + margins.top() + margins.bottom() + 2
        self._width = metrics.horizontalAdvance(template or label.text() or " ") + margins.left() + margins.right() + 4
        self.setSizePolicy(QSizePolicy.Policy.Preferred, QSizePolicy.Policy.Fixed)
        self.setFixedHeight(self._height)
        label.setFixedSize(self._width, self._height)
        label.move(0, 0)

    def sizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(self._width, self._height)

    def minimumSizeHint(self) -> QSize:  # noqa: N802 (Qt's name)
        return QSize(0, self._height)

    def resizeEvent(self, event: QResizeEvent) -> None:  # noqa: N802 (Qt's name)
        self.label.setFixedSize(event.size())  # only when the layout resizes the readout, never on a text change
        super().resizeEvent(event)
