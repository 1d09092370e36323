"""Readout lines that change while an action runs repaint themselves, not their dock (issue 15 item 10).

A ``QLabel`` whose size is not fixed re-lays out its panel at every text change; in a dock's scroll
area Qt then repaints the scroll area, its scroll bars, the dock and the window under them.  The
test counts the paint events those widgets receive while the robot's readouts change (no board).
"""

from __future__ import annotations

from PyQt6.QtCore import QEvent, QObject
from PyQt6.QtWidgets import QApplication, QScrollArea


class _Paints(QObject):
    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 (Qt's name)
        if event.type() == QEvent.Type.Paint:
            self.count += 1
        return False


def _scroll_area(window, key: str) -> QScrollArea:
    area = window.docks[key].widget()
    assert isinstance(area, QScrollArea)
    return area


def test_robot_readouts_changing_leave_the_dock_and_its_scroll_bars_alone(make_window, qtbot):
    window = make_window()
    window.resize(1024, 800)
    window.show()
    window.docks["robot"].raise_()
    qtbot.waitExposed(window)
    panel, area = window.robot_panel, _scroll_area(window, "robot")
    qtbot.waitUntil(lambda: area.verticalScrollBar().isVisible())  # the case that repainted everything
    qtbot.wait(200)  # the window has settled
    paints = {w: _Paints() for w in (area.verticalScrollBar(), window.docks["robot"], area)}
    for widget, counter in paints.items():
        widget.installEventFilter(counter)
    size = panel.size()
    for i in range(10):
        panel.rate_label.setText(f"{1000 + 997 * i:,} ev/s")
        panel.led_label.setText("LED column: –" if i % 2 else f"LED column: {40 + i:.1f} (centre 64.0)")
        panel.loop_label.setText(f"t = {i * 9.7:.1f} s   motor neurons {i} / {10 * i} Hz   command {i} / {20 * i}" * (1 + i % 2))
        panel.command_label.setText(f"command {i} / {-10 * i} (loop)")
        panel.ticks_label.setText(f"{100 * i} / {-1000 * i}")
        QApplication.processEvents()
    qtbot.wait(20)
    counts = {type(w).__name__: c.count for w, c in paints.items()}
    assert panel.rate_label.text() == "9,973 ev/s"  # the labels themselves did change
    assert panel.size() == size, counts  # nothing re-laid out
    # a re-layout repainted all three at every change (10 each)
    assert max(counts.values()) <= 2, counts

