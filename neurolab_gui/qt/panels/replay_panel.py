"""Replay bar: play/pause, speed, a time slider to scrub, and a timeline of bias changes and markers.

All logic lives in :class:`~neurolab_gui.core.replay.ReplaySource`; the bar only forwards
clicks and shows its position.  The raster, rate and bias panels need nothing special: the
replay feeds the same session monitors a live board does.
"""

from __future__ import annotations

import pyqtgraph as pg
from PyQt6.QtCore import Qt, QTimer
from PyQt6.QtWidgets import QDoubleSpinBox, QHBoxLayout, QLabel, QPushButton, QSlider, QVBoxLayout, QWidget

from neurolab_gui.core.replay import MAX_SPEED, MIN_SPEED
from neurolab_gui.core.session import Session

from ..bridge import relay
from ..errors import ErrorReporter

#: Slider steps per second of recording (fewer for a recording longer than a QSlider's 31 bits of
#: milliseconds, ~24.8 days: :func:`slider_steps_per_s`).
STEPS_PER_S = 1000


def slider_steps_per_s(duration_s: float) -> float:
    """Slider steps per second for a recording of ``duration_s``: :data:`STEPS_PER_S`, or as many as
    a QSlider's int range holds."""
    return min(float(STEPS_PER_S), (2**31 - 1) / max(duration_s, 1e-9))

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
        self.timeline_lines: list = []
        self._timeline: list[tuple[float, str, str]] = []
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.refresh)
        self.timer.start(refresh_ms)
        self._replay_changed(session.replay)

    # --- from the core ------------------------------------------------------------------
    def _replay_changed(self, replay) -> None:
        for item in self.timeline_lines:
            self.timeline.removeItem(item)
        self.timeline_lines = []
        self._timeline = [] if replay is None else replay.timeline()
        self.status_label.setText("")
        if replay is not None:
            relay(replay.failed, lambda error, replay=replay: self._failed(replay, error), self)
        enabled = replay is not None
        for w in (self.play_button, self.speed_spin, self.slider):
            w.setEnabled(enabled)
        if replay is None:
            self.file_label.setText("no recording open (File → Open recording…)")
            self.event_list.setText("")
            return
        info = replay.file.summary()
        self.file_label.setText(
            f"{replay.path.name}: board {info['board_serial']}, {info['spikes']:,} spikes, "
            f"{info['bias_changes']} bias changes{'' if info['complete'] else ' (incomplete: the recorder was killed)'}"
        )
        self._updating = True
        self._steps_per_s = slider_steps_per_s(replay.duration_s)
        self.slider.setRange(0, int(replay.duration_s * self._steps_per_s))
        self.slider.setValue(0)
        self.speed_spin.setValue(replay.speed)
        self._updating = False
        for t, kind, text in self._timeline:
            line = pg.InfiniteLine(t, pen=pg.mkPen(TIMELINE_COLOURS.get(kind, (180, 180, 180))), label=None)
            line.setToolTip(f"{t:.3f} s {kind}: {text}")
            self.timeline.addItem(line)
            self.timeline_lines.append(line)
        self.timeline.setXRange(0, max(replay.duration_s, 1e-3))
        self.refresh()

    def refresh(self) -> None:
        """Show the play head (timer)."""
        replay = self.session.replay
        if replay is None:
            return
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
        recent = [f"{t:.3f} s {kind}: {text}" for t, kind, text in self._timeline if t <= pos][-3:]
        self.event_list.setText("\n".join(recent))

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
