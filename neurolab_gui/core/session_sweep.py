"""f–I transfer-curve sweeps: step a core's DC bias and count each neuron's spikes.

This is the measurement behind the transfer-curve panel's "Sweep" button (the
DC route of emulator.md §5: IF_DC_P injects the same current into all 256
neurons of a core).  Every step is reported through ``on_step`` as it
finishes, so the curves grow live.  Event batches read here are fed to the
session's subscribers too (raster, recorder), since the acquisition thread is
paused while the sweep reads the board itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.topology import N_CORES_PER_CHIP, N_NEURONS_PER_CORE, check_chip, check_core

from .session_tasks import CancelledFn, ProgressFn, TaskCancelled

if TYPE_CHECKING:
    from .session import Session


@dataclass
class TransferCurves:
    """Measured rates of a set of neurons against an input axis, plus an optional target curve."""

    x: list[float] = field(default_factory=list)  # input per step (A for a DC sweep)
    rates_hz: list[np.ndarray] = field(default_factory=list)  # one array (per neuron) per step
    neurons: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # board-wide ids
    x_label: str = "DC current"
    x_unit: str = "A"
    target_x: np.ndarray | None = None
    target_y: np.ndarray | None = None

    @classmethod
    def from_measurement(cls, measured) -> TransferCurves:
        """The display form of a calibration measurement
        (:class:`neurolab_gui.core.calibration.measure.TransferCurves`: ``x [P]``, ``rates_hz [N, P]``)."""
        from drivers.dynapse1.topology import global_neuron_id

        rates = np.asarray(measured.rates_hz, dtype=float)
        label = "DC current" if measured.kind == "dc" else f"{measured.kind} drive"
        return cls(
            [float(v) for v in np.asarray(measured.x)],
            [rates[:, k] for k in range(rates.shape[1])],
            np.array([global_neuron_id(a.chip, a.core, a.neuron) for a in measured.addresses], dtype=np.int64),
            label,
            "A" if measured.kind == "dc" else "Hz",
        )

    def matrix(self) -> np.ndarray:
        """Rates as (steps, neurons)."""
        if not self.rates_hz:
            return np.zeros((0, len(self.neurons)))
        return np.vstack(self.rates_hz)

    def band(self, low: float = 10.0, high: float = 90.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(median, low percentile, high percentile) of the population at every step."""
        m = self.matrix()
        if m.size == 0:
            z = np.zeros(0)
            return z, z, z
        return np.median(m, axis=1), np.percentile(m, low, axis=1), np.percentile(m, high, axis=1)


def dc_sweep(
    session: Session,
    chip: int,
    core: int,
    settings: Sequence[tuple[int, int]],
    duration_s: float = 0.2,
    neurons: Sequence[int] | None = None,
    on_step: Callable[[TransferCurves], None] | None = None,
) -> Callable[[ProgressFn, CancelledFn], TransferCurves]:
    """Work function for a :class:`~neurolab_gui.core.session_tasks.BackgroundTask`.

    Parameters
    ----------
    settings : IF_DC_P (coarse, fine) steps, in order
    duration_s : board time counted per step
    neurons : neuron ids within the core (default all 256)
    on_step : called with the growing curves after every step

    The original IF_DC_P value is restored at the end, also on error or cancel.
    """
    chip, core = check_chip(chip), check_core(core)
    if not settings:
        raise ValueError("a sweep needs at least one (coarse, fine) step")
    if duration_s <= 0:
        raise ValueError(f"step duration must be positive, got {duration_s}")
    local = np.arange(N_NEURONS_PER_CORE) if neurons is None else np.asarray(list(neurons), np.int64)
    base = (chip * N_CORES_PER_CHIP + core) * N_NEURONS_PER_CORE

    def work(progress: ProgressFn, cancelled: CancelledFn) -> TransferCurves:
        curves = TransferCurves(neurons=base + local)
        original = session.biases.value(chip, core, "IF_DC_P")
        with session.connection.acquisition_paused() as board:
            try:
                for i, (coarse, fine) in enumerate(settings):
                    if cancelled():
                        raise TaskCancelled("sweep cancelled")
                    session.biases.set(chip, core, "IF_DC_P", coarse, fine, origin="sweep")
                    board.read_events(0.02)  # let the membrane settle after the step; not counted
                    events = board.read_events(duration_s)
                    session.connection.feed(events)
                    counts = events.counts()[base + local]
                    curves.x.append(nominal_current(coarse, fine))
                    curves.rates_hz.append(counts / duration_s)
                    if on_step is not None:
                        on_step(curves)
                    progress((i + 1) / len(settings), f"IF_DC_P c{coarse} f{fine}")
            finally:
                session.biases.set(chip, core, "IF_DC_P", original.coarse, original.fine, origin="sweep")
        return curves

    return work
