"""Replay bar: play/pause, speed, a time slider to scrub, and a timeline of bias changes and markers.

All logic lives in :class:`~neurolab_gui.core.replay.ReplaySource`; the bar only forwards
clicks and shows its position.  The raster, rate and bias panels need nothing special: the
replay feeds the same session monitors a live board does.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QPointF, Qt, QTimer
from PyQt6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from neurolab_gui.core.replay import MAX_SPEED, MIN_SPEED, Timeline
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_file import boards_text

from ..bridge import relay
from ..errors import ErrorReporter

#: Slider steps per second of recording (fewer for a recording longer than a QSlider's 31 bits of
#: milliseconds, ~24.8 days: :func:`slider_steps_per_s`).
STEPS_PER_S = 1000


def slider_steps_per_s(duration_s: float) -> float:
    """Slider steps per second for a recording of ``duration_s``: :data:`STEPS_PER_S`, or as many as
    a QSlider's int range holds."""
    return min(float(STEPS_PER_S), (2**31 - 1) / max(duration_s, 1e-9))

#: Pixels around the pointer in which the timeline's tooltip names an entry.
TOOLTIP_RADIUS_PX = 4

TIMELINE_COLOURS = {"bias": (255, 170, 0), "timestamp_reset": (255, 60, 60), "unplugged": (255, 60, 60),
                    "disconnected": (255, 60, 60), "connected": (80, 200, 80), "dropped": (255, 0, 255)}


class ReplayPanel(QWidget):
    """Controls for the session's replay source (disabled while none is open).

    Parameters
    ----------
    session : the session whose replay this bar drives
    reporter : where a failed replay is reported (besides the bar's own status line)
    refresh_ms : how often the play head is shown
    """

    def __init__(self, session: Session, reporter: ErrorReporter | None = None, refresh_ms: int = 50) -> None:
        super().__init__()
        self.session = session
        self.reporter = reporter
        self.file_label = QLabel("no recording open (File → Open recording…)")
        #: Why the replay stopped, when reading the recording failed (empty otherwise).
        self.status_label = QLabel()
        self.status_label.setWordWrap(True)
        self.status_label.setStyleSheet("color: #ff5050")
        self.status_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.play_button = QPushButton("Play")
        self.play_button.setCheckable(True)
        self.play_button.setToolTip("play / pause the recording (its events feed the raster and rate views)")
        self.speed_spin = QDoubleSpinBox(minimum=MIN_SPEED, maximum=MAX_SPEED, value=1.0, singleStep=0.1, decimals=1, suffix=" ×")
        self.speed_spin.setToolTip(f"replay speed, {MIN_SPEED}–{MAX_SPEED}× real time")
        self.slider = QSlider(Qt.Orientation.Horizontal)
        self.slider.setToolTip("scrub: the views show the moment under the slider (Home/End/PgUp/PgDown work too)")
        self.slider.setSingleStep(STEPS_PER_S // 10)
        self.slider.setPageStep(STEPS_PER_S)
        self._steps_per_s = float(STEPS_PER_S)
        self.time_label = QLabel("0.000 / 0.000 s")
        self.timeline = pg.PlotWidget()
        self.timeline.setFixedHeight(70)
        self.timeline.hideAxis("left")
        self.timeline.setLabel("bottom", "session time", units="s")
        self.timeline.setMouseEnabled(x=True, y=False)
        self.timeline.setYRange(0, 1, padding=0)
        self.timeline.scene().sigMouseMoved.connect(self._timeline_hovered)
        self.head = pg.InfiniteLine(0, pen=pg.mkPen("w"))
        self.timeline.addItem(self.head)
        self.event_list = QLabel()
        self.event_list.setWordWrap(True)
        row = QHBoxLayout()
        for w in (self.play_button, self.speed_spin, self.slider, self.time_label):
            row.addWidget(w, 1 if w is self.slider else 0)
        layout = QVBoxLayout(self)
        layout.addWidget(self.file_label)
        layout.addWidget(self.status_label)
        layout.addLayout(row)
        layout.addWidget(self.timeline)
        layout.addWidget(self.event_list)
        self.play_button.toggled.connect(self._play_toggled)
        self.speed_spin.valueChanged.connect(self._speed_changed)
        self.slider.valueChanged.connect(self._slider_moved)
        relay(session.replay_changed, self._replay_changed, self)
        self._updating = False
        #: The timeline's ticks: one curve per colour, whatever the number of entries (a calibration's
        #: recording holds thousands of bias changes: one graphics item and tooltip each froze the
        #: window for seconds when it was opened, and their painting stalled it while it played).
        self.timeline_curves: dict[tuple[int, int, int], pg.PlotCurveItem] = {}
        self._timeline: Timeline | None = None
        self._shown = None  # the replay the bar shows
        self._recent = ""
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(refresh_ms)
        self._replay_changed(session.replay)

    # --- from the core ------------------------------------------------------------------
    def _replay_changed(self, _replay=None) -> None:
        """A recording was opened or closed: show the session's replay *now*.

        The notification is queued from whichever thread opened or closed it (a Connect closes a
        replay from the connection's worker), so the one it carries may be gone already: the bar
        always shows ``session.replay``, and a later notification brings any later change.
        """
        replay = self.session.replay
        if replay is self._shown and replay is not None:
            return
        self._shown = replay
        for curve in self.timeline_curves.values():
            self.timeline.removeItem(curve)
        self.timeline_curves = {}
        self._timeline = None if replay is None else replay.timeline()
        self._recent = ""
        self.status_label.setText("")
        enabled = replay is not None
        for w in (self.play_button, self.speed_spin, self.slider):
            w.setEnabled(enabled)
        if replay is None:
            self._show_closed()
            return
        relay(replay.failed, lambda error, replay=replay: self._failed(replay, error), self)
        info = replay.file.summary()
        incomplete = "" if info["complete"] else f" (incomplete: {info['incomplete_reason']})"
        left_out = len(replay.file.salvaged)
        salvaged = f" (salvaged: {left_out} segment{'s' if left_out != 1 else ''} left out)" if left_out else ""
        self.file_label.setText(
            f"{replay.path.name}: {boards_text(info['boards'])}, {info['spikes']:,} spikes, "
            f"{info['bias_changes']} bias changes{incomplete}{salvaged}"
        )
        self.file_label.setToolTip(info["salvaged"]["text"] if info["salvaged"] else "")
        self._updating = True
        self._steps_per_s = slider_steps_per_s(replay.duration_s)
        self.slider.setRange(0, int(replay.duration_s * self._steps_per_s))
        self.slider.setValue(0)
        self.speed_spin.setValue(replay.speed)
        self._updating = False
        self._draw_timeline(self._timeline)
        self.timeline.setXRange(0, max(replay.duration_s, 1e-3))
        self.refresh()

    def _show_closed(self) -> None:
        """No recording open: the bar as at start (button released, no time, no entries)."""
        self._updating = True
        self.play_button.setChecked(False)
        self.play_button.setText("Play")
        self.slider.setValue(0)
        self._updating = False
        self.file_label.setText("no recording open (File → Open recording…)")
        self.file_label.setToolTip("")
        self.time_label.setText("0.000 / 0.000 s")
        self.event_list.setText("")
        self.timeline.setToolTip("")
        self.head.setValue(0)

    def _draw_timeline(self, timeline: Timeline) -> None:
        """One vertical tick per entry, drawn as one curve per colour (``connect="pairs"``)."""
        by_kind = {kind: TIMELINE_COLOURS.get(kind, (180, 180, 180)) for kind in dict.fromkeys(timeline.kinds)}
        for colour in dict.fromkeys(by_kind.values()):
            kinds = [k for k, c in by_kind.items() if c == colour]
            times = timeline.times[np.isin(timeline.kinds, kinds)]
            curve = pg.PlotCurveItem(np.repeat(times, 2), np.tile([0.0, 1.0], len(times)), connect="pairs", pen=pg.mkPen(colour))
            self.timeline.addItem(curve)
            self.timeline_curves[colour] = curve

    def timeline_tooltip(self, t_s: float, radius_s: float | None = None) -> str:
        """What the timeline's tooltip says at session time ``t_s``: the nearest entry (within
        ``radius_s`` when given), or nothing."""
        timeline = self._timeline
        i = timeline.nearest(t_s) if timeline is not None else None
        if i is None or (radius_s is not None and abs(timeline.times[i] - t_s) > radius_s):
            return ""
        return timeline.describe(i)

    def _timeline_hovered(self, pos: QPointF) -> None:
        """The pointer moved over the timeline: name the entry under it (one tooltip for all)."""
        view = self.timeline.getPlotItem().vb
        if self._timeline is None or not view.sceneBoundingRect().contains(pos):
            return
        x = view.mapSceneToView(pos).x()
        px = view.viewPixelSize()[0]
        self.timeline.setToolTip(self.timeline_tooltip(x, TOOLTIP_RADIUS_PX * px))

    def refresh(self) -> None:
        """Show the play head (timer)."""
        replay = self.session.replay
        if replay is None or replay is not self._shown:
            return  # closed or replaced: the queued replay_changed brings the bar up to date
        pos = replay.position_s
        self._updating = True
        if not self.slider.isSliderDown():
            self.slider.setValue(min(self.slider.maximum(), int(round(pos * self._steps_per_s))))
        if self.play_button.isChecked() != replay.playing:
            self.play_button.setChecked(replay.playing)
        self.play_button.setText("Pause" if replay.playing else "Play")
        self._updating = False
        self.time_label.setText(f"{pos:.3f} / {replay.duration_s:.3f} s")
        self.head.setValue(pos)
        recent = "\n".join(self._timeline.recent(pos, 3)) if self._timeline is not None else ""
        if recent != self._recent:  # a label's relayout is not free: only when the entries change
            self._recent = recent
            self.event_list.setText(recent)

    def _failed(self, replay, error: Exception) -> None:
        """Reading the recording failed (the replay has paused): say why, once, and show the
        paused state at once (the button back to Play)."""
        if replay is not self.session.replay:
            return  # a recording closed since: its failure is not this bar's
        self.status_label.setText(f"replay stopped: {error}")
        if self.reporter is not None:
            self.reporter.report(error)
        self.refresh()

    # --- from the user ------------------------------------------------------------------
    def _play_toggled(self, on: bool) -> None:
        replay = self.session.replay
        if self._updating or replay is None:
            return
        if on:
            self.status_label.setText("")
        replay.play() if on else replay.pause()
        self.play_button.setText("Pause" if on else "Play")

    def _speed_changed(self, value: float) -> None:
        replay = self.session.replay
        if not self._updating and replay is not None:
            replay.set_speed(value)

    def _slider_moved(self, value: int) -> None:
        replay = self.session.replay
        if not self._updating and replay is not None:
            replay.seek(value / self._steps_per_s)
            self.refresh()

    def stop(self) -> None:
        self.timer.stop()
