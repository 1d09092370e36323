"""Raster monitor: live scrolling raster of chosen neurons, coloured by core, with per-neuron rates.

Rendering runs on its own QTimer (default 30 Hz), decoupled from acquisition:
each frame copies a time window out of the session's ring buffer and the Qt-free
:class:`~neurolab_gui.core.monitors.RasterBuilder` turns it into either ticks
(one ``PlotCurveItem`` per core with ``connect='pairs'``, never an item per
spike) or, above ``max_ticks`` spikes, a binned density image whose cost does
not depend on the event rate.

The window ends at the board's time now (:class:`~neurolab_gui.core.monitors.BoardClock`),
not at the newest event: when the board goes quiet the spikes scroll out and the rates fall to
zero.  Pausing freezes a copy of the buffers (:meth:`SpikeMonitor.snapshot`), so the paused
moment stays however long the pause lasts and however fast events arrive; the scroll-back
slider moves back from the paused time as far as that copy reaches.  Paused frames are built
from that copy on a worker thread, once per position (the newest asked for wins): scrolled back
past the binned counts' history, a frame bins up to the whole event ring, ~0.1 s of work the
event loop never waits for.  The y axis names each
row's board-wide neuron id, the rate column shares the raster's rows, the mouse wheel zooms
the time window, and a click on a row emits :attr:`RasterPanel.neuron_clicked`.
"""

from __future__ import annotations

import contextlib
import copy
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pyqtgraph as pg
from PyQt6.QtCore import QRectF, Qt, QTimer, pyqtSignal
from PyQt6.QtGui import QImage, QPainter
from PyQt6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QSizePolicy,
    QSlider,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS_PER_CORE
from neurolab_gui.core.monitors import INPUT_ROW_COLOUR, NeuronSelection, RasterBuilder, RasterFrame, SpikeMonitor
from neurolab_gui.core.session import Session
from neurolab_gui.core.session_conversion import layer_selections

from ..bridge import relay
from .readout import Readout

#: One colour per core index (chip*4 + core): 4 hues per chip, chips shifted in lightness; then
#: light grey for a network's input channels (index ``INPUT_ROW_COLOUR``).
CORE_COLOURS = [pg.intColor(i % 4, hues=4, values=1, minValue=255, maxValue=255, sat=255 - 40 * (i // 4)) for i in range(16)]
CORE_COLOURS.append(pg.mkColor(200, 200, 200))


#: Brightness levels per colour in the density image (17 colours x 16 levels = one 272-entry table).
DENSITY_LEVELS = 16


def round_up_nice(x: float) -> float:
    """The smallest of 1, 1.5, 2, 3, 5 or 7 times a power of ten that is at least ``x`` (> 0)."""
    scale = 10.0 ** np.floor(np.log10(x))
    return float(next(m * scale for m in (1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0) if m * scale >= x * (1 - 1e-12)))


def _density_lut() -> np.ndarray:
    """Colour table as 0xAARRGGBB words: entry colour * LEVELS + n is a core's (or the inputs')
    colour at n spikes per bin (0 = black).

    One spike already shows at 40 % brightness (so it stays visible); more spikes brighten the
    pixel with the square root of the count up to the core's full colour.
    """
    lut = np.full(len(CORE_COLOURS) * DENSITY_LEVELS, 0xFF000000, np.uint32)
    ramp = 0.4 + 0.6 * np.sqrt(np.arange(1, DENSITY_LEVELS) / (DENSITY_LEVELS - 1))
    for core in range(len(CORE_COLOURS)):
        r, g, b = (np.rint(ramp * c).astype(np.uint32) for c in CORE_COLOURS[core].getRgb()[:3])
        lut[core * DENSITY_LEVELS + 1 : (core + 1) * DENSITY_LEVELS] = 0xFF000000 | (r << 16) | (g << 8) | b
    return lut


class DensityImageItem(pg.GraphicsObject):
    """An opaque ARGB32 image stretched over a rectangle of the plot.

    Qt's raster engine draws ``Format_ARGB32_Premultiplied`` without converting it first; an
    indexed or RGBA image (what ``pg.ImageItem`` makes of a colour-table image) is converted on
    every paint, which measured ~5-7 ms per frame for a 1024 x 500 raster against ~0.7 ms here.
    The colour lookup itself is one ``np.take`` of 32-bit words (~1 ms).
    """

    def __init__(self) -> None:
        super().__init__()
        self._pixels = np.zeros((1, 1), np.uint32)
        self._image: QImage | None = None
        self._rect = QRectF(0, 0, 1, 1)

    def set_pixels(self, argb: np.ndarray, rect: QRectF) -> None:
        """Show ``argb`` (rows x columns uint32 0xAARRGGBB, row 0 at the bottom) over ``rect``."""
        self._pixels = np.ascontiguousarray(argb, np.uint32)  # the QImage borrows this buffer
        rows, cols = self._pixels.shape
        self._image = QImage(self._pixels.data, cols, rows, 4 * cols, QImage.Format.Format_ARGB32_Premultiplied)
        self.prepareGeometryChange()
        self._rect = QRectF(rect)
        self.update()

    def boundingRect(self) -> QRectF:
        return QRectF(self._rect)

    def paint(self, painter: QPainter, *args) -> None:
        if self._image is not None:
            painter.drawImage(self._rect, self._image)


DENSITY_LUT = _density_lut()


class NeuronAxis(pg.AxisItem):
    """Left axis of the raster: ticks on whole rows, labelled with the row's board-wide neuron id
    (or, for a network's input channel, the channel's name)."""

    def __init__(self) -> None:
        super().__init__("left")
        self.selection = NeuronSelection(np.zeros(0, np.int64))

    @property
    def neurons(self) -> np.ndarray:
        return self.selection.neurons

    def tickValues(self, minVal, maxVal, size):  # noqa: N802 - pyqtgraph's name
        levels = super().tickValues(minVal, maxVal, size)
        out = []
        for spacing, values in levels:
            spacing = max(1.0, float(np.ceil(spacing)))
            rows = np.unique(np.round(np.asarray(values, np.float64)))
            rows = rows[(rows >= 0) & (rows < len(self.neurons))]
            out.append((spacing, rows.tolist()))
        return out

    def tickStrings(self, values, scale, spacing):  # noqa: N802 - pyqtgraph's name
        n = len(self.neurons)
        return [self.selection.row_label(int(v)) if 0 <= int(round(v)) < n and float(v).is_integer() else "" for v in values]


def describe_mode(frame: RasterFrame) -> str:
    """How a frame shows its spikes, for the info line: ticks, or a density image and its pixel."""
    if frame.mode != "density":
        return frame.mode
    rows = f"{frame.rows_per_pixel} neurons × " if frame.rows_per_pixel > 1 else ""
    return f"density: spikes per {rows}{frame.bin_s * 1e3:g} ms" if frame.bin_s else "density"


def core_legend_html(cores: np.ndarray) -> str:
    """Coloured squares naming the cores (chip·core) a selection shows, in the raster's colours."""
    parts = []
    for c in np.unique(cores):
        colour = CORE_COLOURS[int(c)].name()
        name = "inputs" if c == INPUT_ROW_COLOUR else f"chip&nbsp;{int(c) // N_CORES_PER_CHIP}&nbsp;core&nbsp;{int(c) % N_CORES_PER_CHIP}"
        parts.append(f'<span style="color:{colour}">&#9632;</span>&nbsp;{name}')
    return "&nbsp;&nbsp; ".join(parts)


class RasterPanel(QWidget):
    """Live raster with neuron selection, pause and scroll-back.

    Parameters
    ----------
    session : the session whose spike monitor is drawn
    fps : redraw rate of the timer
    max_ticks : spikes per frame above which the density image is drawn
    """

    #: ``neuron_clicked(global_id)`` when the user clicks a raster row.
    neuron_clicked = pyqtSignal(int)
    _frozen_ready = pyqtSignal(int, object)
    _paused_frame_ready = pyqtSignal(object, object)  # (request, RasterFrame or None)

    def __init__(self, session: Session, fps: float = 30.0, max_ticks: int = 50_000) -> None:
        super().__init__()
        self.session = session
        self.builder = RasterBuilder(NeuronSelection.core_range(0, 0), max_ticks=max_ticks)
        self.paused = False
        self.frozen: SpikeMonitor | None = None  # the buffers as they were when paused (once copied)
        self._paused_at: int | None = None
        self._pause_count = 0
        self._frozen_ready.connect(self._on_frozen)
        #: what the paused view shows or is being built for: (pause, end, span, selection) numbers
        self._paused_request: tuple | None = None
        self._selection_number = 0
        self._paused_builds = ThreadPoolExecutor(max_workers=1, thread_name_prefix="neurolab-raster-paused")
        self._paused_frame_ready.connect(self._on_paused_frame)
        self.frames_rendered = 0
        self.last_frame: RasterFrame | None = None
        self.frame_times_s: list[float] = []
        self.layer_selections: dict[str, NeuronSelection] = {}
        self._drawing = False

        self.mode_combo = QComboBox()
        self.mode_combo.addItem("chip/core range", "range")
        self.mode_combo.addItem("RNN layer", "layer")
        self.mode_combo.addItem("all neurons", "all")
        self.mode_combo.setToolTip("which neurons get a row: a range of one core (or of all cores of a chip), a mapped RNN layer, or all 4096")
        self.chip_spin = QSpinBox(prefix="chip ", maximum=N_CHIPS - 1)
        self.chip_spin.setToolTip("chip shown")
        self.core_spin = QSpinBox(prefix="core ", maximum=N_CORES_PER_CHIP - 1)
        self.core_spin.setToolTip("core shown")
        self.all_cores_check = QCheckBox("all cores of chip")
        self.all_cores_check.setToolTip("show the range in all four cores of the chip")
        self.start_spin = QSpinBox(prefix="from ", maximum=N_NEURONS_PER_CORE - 1)
        self.start_spin.setToolTip("first neuron of the range (within the core)")
        self.stop_spin = QSpinBox(prefix="to ", minimum=1, maximum=N_NEURONS_PER_CORE, value=N_NEURONS_PER_CORE)
        self.stop_spin.setToolTip("end of the range (exclusive, within the core)")
        self.layer_combo = QComboBox()
        self.layer_combo.setToolTip("RNN layer or core group of the last conversion")
        self.span_spin = QDoubleSpinBox(prefix="window ", suffix=" s", minimum=0.05, maximum=10.0, value=1.0, singleStep=0.25)
        self.span_spin.setToolTip("seconds of board time shown (the mouse wheel over the raster zooms it too)")
        self.pause_button = QPushButton("Pause")
        self.pause_button.setCheckable(True)
        self.pause_button.setToolTip("freeze the raster at this moment (Space); scroll back from there with the slider below")
        self.back_slider = QSlider(Qt.Orientation.Horizontal)
        self.back_slider.setRange(0, 1000)
        self.back_slider.setToolTip("scroll back (only while paused): 0 = the paused moment, right = as far back as the buffer reaches")
        self.back_slider.setEnabled(False)
        self.info_label = QLabel()
        self.title_label = QLabel()
        self.legend_label = QLabel()
        self.legend_label.setToolTip("raster colours: one per core")
        self.legend_label.setWordWrap(True)  # all 16 cores wrap instead of widening the window
        self.title_label.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)

        # two rows of controls, so the panel (Pause included) fits a 1366-pixel-wide screen
        selection_row = QHBoxLayout()
        for w in (self.mode_combo, self.chip_spin, self.core_spin, self.all_cores_check, self.start_spin, self.stop_spin,
                  self.layer_combo):
            selection_row.addWidget(w)
        selection_row.addStretch(1)
        view_row = QHBoxLayout()
        view_row.addWidget(self.span_spin)
        view_row.addWidget(self.pause_button)
        view_row.addWidget(self.title_label, 1)
        legend_row = QHBoxLayout()
        legend_row.addWidget(self.legend_label, 1)
        back = QHBoxLayout()
        back.addWidget(QLabel("scroll back"))
        back.addWidget(self.back_slider, 1)
        back.addWidget(Readout(self.info_label, template="1,000,000 spikes shown (density: spikes per 4 neurons × 32 ms) — paused"))  # changes every frame

        self.graphics = pg.GraphicsLayoutWidget()
        self.neuron_axis = NeuronAxis()
        self.plot = self.graphics.addPlot(row=0, col=0, axisItems={"left": self.neuron_axis})
        self.plot.setLabel("bottom", "board time", units="s")
        self.plot.setLabel("left", "neuron id")
        self.plot.disableAutoRange()
        self.plot.setMouseEnabled(x=True, y=True)
        self.plot.hideButtons()
        self.rate_plot = self.graphics.addPlot(row=0, col=1)
        self.rate_plot.setLabel("bottom", "rate", units="Hz")
        self.rate_plot.setYLink(self.plot)  # same rows; no title on either plot, so the view boxes line up
        self.rate_plot.hideAxis("left")
        self.rate_plot.setMouseEnabled(x=False, y=True)
        self.rate_plot.hideButtons()
        self.rate_plot.setMaximumWidth(160)
        self.rate_plot.setXRange(0.0, 10.0, padding=0)
        self._rate_end = 10.0
        self.graphics.ci.layout.setColumnStretchFactor(0, 5)
        self.tick_items: dict[int, pg.PlotCurveItem] = {}
        for c in range(len(CORE_COLOURS)):
            # separate segments drawn with QPainter.drawLines from one numpy buffer, not built into a
            # QPainterPath point by point (pyqtgraph's default for 1-pixel pens)
            item = pg.PlotCurveItem(pen=pg.mkPen(CORE_COLOURS[c], width=1), connect="pairs", skipFiniteCheck=True, antialias=False)
            item.setSegmentedLineMode("on")
            self.plot.addItem(item)
            self.tick_items[c] = item
        self.density_item = DensityImageItem()
        self.plot.addItem(self.density_item)
        #: a dashed line on the lower edge of each named block of rows (a network's layers) and its name
        self.block_items: list[tuple[pg.InfiniteLine, pg.TextItem]] = []
        # one horizontal bar per row, from 0 to its rate, at the row's height
        self.rate_curve = pg.PlotCurveItem(pen=pg.mkPen("w"), connect="pairs", skipFiniteCheck=True)
        self.rate_curve.setSegmentedLineMode("on")
        self.rate_plot.addItem(self.rate_curve)

        layout = QVBoxLayout(self)
        layout.addLayout(selection_row)
        layout.addLayout(view_row)
        layout.addLayout(legend_row)
        layout.addWidget(self.graphics, 1)
        layout.addLayout(back)

        for w in (self.mode_combo, self.layer_combo):
            w.currentIndexChanged.connect(self._selection_changed)
        for w in (self.chip_spin, self.core_spin, self.start_spin, self.stop_spin):
            w.valueChanged.connect(self._selection_changed)
        self.all_cores_check.toggled.connect(self._selection_changed)
        self.pause_button.toggled.connect(self.set_paused)
        self.back_slider.valueChanged.connect(lambda *_: self.paused and self.render())
        self.plot.sigXRangeChanged.connect(self._on_x_zoom)
        self.plot.scene().sigMouseClicked.connect(self._on_click)
        relay(session.conversion_changed, self._on_conversion, self)
        relay(session.deployment_changed, self._on_deployment, self)
        self._update_mode_widgets()
        self._selection_changed()

        self.timer = QTimer(self)
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.timeout.connect(self.render)
        self._base_interval_ms = int(1000 / fps)
        self.timer.start(self._base_interval_ms)

    # --- selection ------------------------------------------------------------------------
    def _update_mode_widgets(self) -> None:
        mode = self.mode_combo.currentData()
        for w in (self.chip_spin, self.core_spin, self.all_cores_check, self.start_spin, self.stop_spin):
            w.setVisible(mode == "range")
        self.core_spin.setEnabled(not self.all_cores_check.isChecked())
        self.layer_combo.setVisible(mode == "layer")

    def current_selection(self) -> NeuronSelection:
        mode = self.mode_combo.currentData()
        if mode == "all":
            return NeuronSelection.all()
        if mode == "layer":
            name = self.layer_combo.currentData()
            if name in self.layer_selections:
                return self.layer_selections[name]
            return NeuronSelection.from_ids([], "no RNN mapping loaded")
        start, stop = self.start_spin.value(), max(self.start_spin.value() + 1, self.stop_spin.value())
        chip = self.chip_spin.value()
        cores = range(N_CORES_PER_CHIP) if self.all_cores_check.isChecked() else [self.core_spin.value()]
        parts = [NeuronSelection.core_range(chip, c, start, stop).neurons for c in cores]
        return NeuronSelection(np.concatenate(parts), f"chip {chip} cores {list(cores)} [{start}:{stop})")

    def select(self, selection: NeuronSelection) -> None:
        """Show an explicit selection (from a script or another panel)."""
        self.layer_selections[selection.label or "custom"] = selection
        self._refresh_layers()
        self.mode_combo.setCurrentIndex(self.mode_combo.findData("layer"))
        self.layer_combo.setCurrentIndex(self.layer_combo.findData(selection.label or "custom"))

    def _selection_changed(self, *_: object) -> None:
        self._update_mode_widgets()
        selection = self.current_selection()
        self.builder.set_selection(selection)
        self._selection_number += 1
        self.neuron_axis.selection = selection
        self.plot.setLabel("left", "input channel / neuron id" if selection.row_labels else "neuron id")
        self._show_blocks(selection)
        self.neuron_axis.picture = None  # pyqtgraph caches the drawn axis: relabel it
        self.neuron_axis.update()
        n = max(1, len(selection.neurons))
        self.plot.setYRange(-0.5, n - 0.5, padding=0)
        self.title_label.setText(f"{selection.label}: {len(selection.neurons)} rows")
        self.legend_label.setText(core_legend_html(self.builder.row_core))
        if self.paused:
            self.render()

    def _show_blocks(self, selection: NeuronSelection) -> None:
        for line, text in self.block_items:
            self.plot.removeItem(line)
            self.plot.removeItem(text)
        self.block_items = []
        for name, start, _stop in selection.blocks:
            line = pg.InfiniteLine(pos=start - 0.5, angle=0, pen=pg.mkPen((160, 160, 160), style=Qt.PenStyle.DashLine))
            # anchored at its bottom-left on the block's lower edge: the name sits inside its own block
            text = pg.TextItem(name, color=(230, 230, 230), anchor=(0, 1), fill=pg.mkBrush(0, 0, 0, 170))
            self.plot.addItem(line, ignoreBounds=True)
            self.plot.addItem(text, ignoreBounds=True)
            text.setPos(0.0, start - 0.5)
            self.block_items.append((line, text))

    def _on_conversion(self, result) -> None:
        """Offer the RNN layers (hidden units, per core group) as selections: those of the network
        deployed on the connected board, else those of the conversion result."""
        deployed = self.session.deployment
        mapped = deployed.mapped if deployed is not None else getattr(result, "mapped", None)
        self._offer_layers(mapped)
        if self.mode_combo.currentData() == "layer":
            self._selection_changed()

    def _on_deployment(self, deployment) -> None:
        """A network was written on the board: show its hidden layer, on the neurons it really uses."""
        if deployment is None:
            return
        self._offer_layers(deployment.mapped)
        first = next(iter(layer_selections(deployment.mapped)))
        self.layer_combo.setCurrentIndex(self.layer_combo.findData(first))
        self.mode_combo.setCurrentIndex(self.mode_combo.findData("layer"))
        self._selection_changed()

    def _offer_layers(self, mapped) -> None:
        if mapped is not None:
            self.layer_selections = {k: v for k, v in self.layer_selections.items() if not k.startswith("RNN ")}
            self.layer_selections.update(layer_selections(mapped))
        self._refresh_layers()

    def _refresh_layers(self) -> None:
        current = self.layer_combo.currentData()
        self.layer_combo.blockSignals(True)
        self.layer_combo.clear()
        for name in self.layer_selections:
            self.layer_combo.addItem(name, name)
        i = self.layer_combo.findData(current)
        self.layer_combo.setCurrentIndex(max(0, i))
        self.layer_combo.blockSignals(False)

    # --- mouse ------------------------------------------------------------------------------
    def row_at(self, scene_pos) -> int | None:
        """The raster row under a scene position, or None outside the rows."""
        if not self.plot.vb.sceneBoundingRect().contains(scene_pos):
            return None
        row = int(np.floor(self.plot.vb.mapSceneToView(scene_pos).y() + 0.5))
        return row if 0 <= row < len(self.builder.selection.neurons) else None

    def _on_click(self, event) -> None:
        if event.button() != Qt.MouseButton.LeftButton:
            return
        row = self.row_at(event.scenePos())
        if row is not None and self.builder.selection.is_neuron(row):  # an input channel has no membrane
            self.neuron_clicked.emit(int(self.builder.selection.neurons[row]))

    def _on_x_zoom(self, _view, x_range) -> None:
        """The user zoomed the time axis (mouse wheel, drag): the window follows."""
        if self._drawing:
            return
        width = float(x_range[1] - x_range[0])
        if width > 0:
            self.span_spin.setValue(min(self.span_spin.maximum(), max(self.span_spin.minimum(), width)))

    # --- pause / scroll ---------------------------------------------------------------------
    def set_paused(self, paused: bool) -> None:
        """Pause (freeze a copy of the buffers at the board's time now) or resume the live view.

        The view stops at once; the copy is made on a worker thread (~0.1 s for the default
        buffers, without the GIL) and drawn from as soon as it is there.
        """
        paused = bool(paused)
        if paused and not self.paused:
            self._paused_at = self.session.spikes.now_us()
            self._pause_count += 1
            threading.Thread(target=self._freeze, args=(self._pause_count, self._paused_at),
                             name="neurolab-raster-freeze", daemon=True).start()
        self.paused = paused
        self.pause_button.setText("Resume" if paused else "Pause")
        if self.pause_button.isChecked() != self.paused:
            self.pause_button.setChecked(self.paused)
        self.back_slider.setEnabled(paused)
        if not paused:
            self.frozen = None
            self._paused_request = None
            self.back_slider.setValue(0)
        self.render()

    def _freeze(self, count: int, at_us: int | None) -> None:
        frozen = self.session.spikes.snapshot(at_us)
        with contextlib.suppress(RuntimeError):  # the panel was closed meanwhile
            self._frozen_ready.emit(count, frozen)  # queued to the GUI thread

    def _on_frozen(self, count: int, frozen: SpikeMonitor) -> None:
        if self.paused and count == self._pause_count:
            self.frozen = frozen
            self.render()

    def toggle_pause(self) -> None:
        self.set_paused(not self.paused)

    def stop(self) -> None:
        self.timer.stop()
        self._paused_builds.shutdown(wait=False, cancel_futures=True)

    def settings(self) -> dict:
        return {"span_s": self.span_spin.value(), "mode": self.mode_combo.currentData(), "chip": self.chip_spin.value(),
                "core": self.core_spin.value(), "all_cores": self.all_cores_check.isChecked(),
                "start": self.start_spin.value(), "stop": self.stop_spin.value()}

    def apply_settings(self, s: dict) -> None:
        """Apply saved settings (from the layout file), all or nothing.

        Raises
        ------
        ValueError
            If ``s`` is not a dict, or a value has the wrong type or lies outside its control's
            range; nothing is changed then (the file may be hand-edited or damaged).
        """
        if not isinstance(s, dict):
            raise ValueError(f"raster settings must be an object, not {type(s).__name__}")

        def number(key: str, spin: QSpinBox | QDoubleSpinBox, default: float, kind: type) -> float:
            value = s.get(key, default)
            ok_type = (int,) if kind is int else (int, float)
            if isinstance(value, bool) or not isinstance(value, ok_type) or not spin.minimum() <= value <= spin.maximum():
                raise ValueError(f"raster {key} {value!r} is not a number in [{spin.minimum()}, {spin.maximum()}]")
            return value

        values = {"span_s": number("span_s", self.span_spin, 1.0, float), "chip": number("chip", self.chip_spin, 0, int),
                  "core": number("core", self.core_spin, 0, int), "start": number("start", self.start_spin, 0, int),
                  "stop": number("stop", self.stop_spin, N_NEURONS_PER_CORE, int)}
        all_cores = s.get("all_cores", False)
        if not isinstance(all_cores, bool):
            raise ValueError(f"raster all_cores {all_cores!r} is not true or false")
        mode = s.get("mode", "range")
        i = self.mode_combo.findData(mode) if isinstance(mode, str) else -1
        if i < 0:
            raise ValueError(f"raster mode {mode!r} is not one of the view modes")
        self.span_spin.setValue(float(values["span_s"]))
        self.chip_spin.setValue(int(values["chip"]))
        self.core_spin.setValue(int(values["core"]))
        self.all_cores_check.setChecked(all_cores)
        self.start_spin.setValue(int(values["start"]))
        self.stop_spin.setValue(int(values["stop"]))
        self.mode_combo.setCurrentIndex(i)

    # --- drawing ----------------------------------------------------------------------------
    def view_end_us(self) -> int | None:
        """Where the window ends: the board's time now, or (paused) the paused moment minus the scroll-back."""
        monitor = self.frozen if self.paused and self.frozen is not None else self.session.spikes
        now = self._paused_at if self.paused else monitor.now_us()
        if now is None or not self.paused:
            return now
        oldest = monitor.ring.oldest_us
        span_us = int(self.span_spin.value() * 1e6)
        reach = 0 if oldest is None else max(0, now - oldest - span_us)
        return int(now - reach * self.back_slider.value() / 1000)

    def render(self) -> None:
        """Draw one frame (timer slot).

        Paused, the frame is built on a worker from the frozen copy; until the copy is made the
        frame shown at the pause stays, and the GUI thread never waits for the buffers' locks,
        which the copy holds.
        """
        if self.paused:
            self._request_paused_frame()
            return
        end_us = self.view_end_us()
        if end_us is None:
            return
        started = time.perf_counter()
        frame = self.builder.frame(self.session.spikes, self.span_spin.value(), end_us + 1)
        if frame is None:
            return
        self._show(frame)
        cost_s = time.perf_counter() - started
        self.frame_times_s.append(cost_s)
        del self.frame_times_s[:-300]
        self._pace(cost_s)

    def _request_paused_frame(self) -> None:
        """Have the paused view's frame built on the worker, unless it shows (or is being built
        for) this position already: the timer asks 30 times a second, a dragged slider more."""
        if self.frozen is None:
            return
        end_us = self.view_end_us()
        if end_us is None:
            return
        span = self.span_spin.value()
        request = (self._pause_count, end_us, span, self._selection_number)
        if request == self._paused_request:
            return
        self._paused_request = request
        # a shallow copy keeps this selection: changing self.builder's replaces its attributes
        builder = copy.copy(self.builder)
        with contextlib.suppress(RuntimeError):  # stop() shut the worker down: the panel is closing
            self._paused_builds.submit(self._build_paused_frame, request, builder, self.frozen, span, end_us)

    def _build_paused_frame(self, request: tuple, builder: RasterBuilder, frozen: SpikeMonitor, span: float,
                            end_us: int) -> None:
        """Worker: one paused frame from the frozen copy (which nothing writes to any more)."""
        if request != self._paused_request:
            return  # the user has moved on (slider dragged further): build only the newest
        frame = builder.frame(frozen, span, end_us + 1)
        with contextlib.suppress(RuntimeError):  # the panel was closed meanwhile
            self._paused_frame_ready.emit(request, frame)  # queued to the GUI thread

    def _on_paused_frame(self, request: tuple, frame: RasterFrame | None) -> None:
        if self.paused and request == self._paused_request and frame is not None:
            self._show(frame)

    def _show(self, frame: RasterFrame) -> None:
        """Draw a frame and say what it shows."""
        self._draw(frame)
        self.last_frame = frame
        self.frames_rendered += 1
        invalid = self.session.spikes.invalid_events
        self.info_label.setText(f"{frame.n_events:,} spikes shown ({describe_mode(frame)})" + (" — paused" if self.paused else "")
                                + (f" — {invalid:,} events with ids outside the board dropped" if invalid else ""))

    def _pace(self, cost_s: float) -> None:
        """Leave the event loop at least twice a frame's cost between frames: a slow frame (a busy
        machine, a huge window) lowers the frame rate instead of starving input and other views."""
        interval_ms = max(self._base_interval_ms, int(3e3 * cost_s))
        if interval_ms != self.timer.interval():
            self.timer.setInterval(interval_ms)

    def _draw(self, frame: RasterFrame) -> None:
        self._drawing = True
        try:
            self.plot.setXRange(frame.t0_s, frame.t1_s, padding=0)
        finally:
            self._drawing = False
        for _, text in self.block_items:  # block names stay at the window's left edge
            text.setPos(frame.t0_s, text.pos().y())
        if frame.mode == "ticks":
            self.density_item.setVisible(False)
            for c, item in self.tick_items.items():
                if c in frame.ticks:
                    x, y = frame.ticks[c]
                    item.setData(x, y, connect="pairs")
                    item.setVisible(True)
                elif item.isVisible():
                    item.setData([], [])
                    item.setVisible(False)
        else:
            for item in self.tick_items.values():
                item.setVisible(False)
            # One index per pixel, colour * LEVELS + min(count, LEVELS - 1), looked up in a
            # table of ARGB words: no per-pixel float maths.
            index = np.minimum(frame.density, DENSITY_LEVELS - 1).astype(np.uint16)
            row_core = frame.row_core if frame.density_row_core is None else frame.density_row_core
            index += (row_core * DENSITY_LEVELS).astype(np.uint16)[:, None]
            # an image row may sum several selection rows (padded at the end): it spans all of them
            height = frame.density.shape[0] * frame.rows_per_pixel
            rect = QRectF(frame.density_t0_s, -0.5, frame.density_t1_s - frame.density_t0_s, height)
            self.density_item.set_pixels(np.take(DENSITY_LUT, index), rect)
            self.density_item.setVisible(True)
        rows = np.repeat(np.arange(frame.n_rows, dtype=np.float64), 2)
        bars = np.zeros(2 * frame.n_rows)
        bars[1::2] = frame.rates_hz
        self.rate_curve.setData(bars, rows, connect="pairs")
        # the rate axis ends at a round number: it changes (and its ticks are laid out again) only
        # when the top rate crosses one, not at every frame
        rate_end = round_up_nice(max(10.0, float(frame.rates_hz.max(initial=0.0))) * 1.05)
        if rate_end != self._rate_end:
            self._rate_end = rate_end
            self.rate_plot.setXRange(0.0, rate_end, padding=0)
