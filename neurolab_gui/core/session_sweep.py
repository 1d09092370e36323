"""f–I transfer-curve sweeps of the GUI: the calibration's DC measurement run inside a session.

This is the measurement behind the transfer-curve panel's "Sweep" button (the DC route of
emulator.md §5: IF_DC_P injects the same current into all 256 neurons of a core).  It is
:func:`~neurolab_gui.core.probing.curves.measure_dc_curves`, with what an interactive session
needs on top:

* the bias is written through the session's bias model, so every level is in the change log and
  the sliders follow it, and the whole sweep is *one* undo step (:meth:`BiasModel.undo_group`):
  undoing it restores IF_DC_P as it was before the sweep, flags included;
* the user's network and stimulus stay on the chip (calibration clears the connections);
* every level is reported through ``on_step`` as it finishes, so the curves grow live;
* the event batches read are fed to the session's subscribers (raster, recorder), since the
  acquisition thread is paused while the sweep reads the board itself;
* the task's cancel stops the sweep after the current level, and IF_DC_P is restored;
* the swept IF_DC_P is held for the whole sweep, restore included (:meth:`BiasModel.hold`): an
  edit of it from the bias panel, the console or Undo is refused, naming the bias and the sweep,
  rather than lost under the next level or recorded with a sweep level as its "old" value.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from drivers.arguments import finite_number
from drivers.dynapse1.bias_table import BiasValue, check_coarse_fine
from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, check_chip, check_core, check_neuron

from .fitting.transfer_curves import TransferCurves
from .jobs import Progress, ProgressSink, check_cancel
from .probing.curves import measure_dc_curves

if TYPE_CHECKING:
    from .session import Session

#: Board time read and discarded after every step, while the membrane settles.
SETTLE_S = 0.02


def dc_sweep(
    session: Session,
    chip: int,
    core: int,
    settings: Sequence[tuple[int, int]],
    duration_s: float = 0.2,
    neurons: Sequence[int] | None = None,
    on_step: Callable[[TransferCurves], None] | None = None,
) -> Callable[[ProgressSink, threading.Event], TransferCurves]:
    """Work function for a :class:`~neurolab_gui.core.jobs.Job`.

    Parameters
    ----------
    session : the session whose board, bias model and subscribers the sweep uses
    chip, core : the core whose IF_DC_P is stepped
    settings : IF_DC_P (coarse, fine) steps, in order
    duration_s : board time counted per step (after a settling time of :data:`SETTLE_S`)
    neurons : neuron ids within the core (default all 256)
    on_step : called with the curves measured so far after every step (a new object each time)

    Raises
    ------
    ValueError
        at once, for an id or setting that is not an integer in range (no bool, no 3.7), or a
        ``duration_s`` that is not a finite number > 0.

    Returns
    -------
    Callable
        ``work(progress, cancel)`` returning the measured
        :class:`~neurolab_gui.core.fitting.transfer_curves.TransferCurves`.  The original IF_DC_P
        value is restored at the end, also on error or cancel.
    """
    # everything is checked here, when the job is built, with the rules of the bias values (integers
    # only: (3.7, 100) is refused, not swept as (3, 100)); a bad value found on the worker is a traceback
    chip, core = check_chip(chip), check_core(core)
    settings = [check_coarse_fine(c, f) for c, f in settings]
    if not settings:
        raise ValueError("a sweep needs at least one (coarse, fine) step")
    duration_s = finite_number("duration_s", duration_s)  # NaN and inf passed "<= 0" and failed on the worker
    local = range(N_NEURONS_PER_CORE) if neurons is None else [check_neuron(n) for n in neurons]
    addresses = [NeuronAddress(chip, core, n) for n in local]

    def set_through_bias_model(chip: int, core: int, name: str, value: BiasValue) -> None:
        # whole values: the levels are high/normal/enabled, the restore puts back the user's flags
        session.biases.set_value(chip, core, name, value, origin="sweep")

    def work(progress: ProgressSink, cancel: threading.Event) -> TransferCurves:
        def on_level(curves: TransferCurves, events: SpikeEvents) -> None:
            session.connection.feed(events)
            if on_step is not None:
                on_step(curves)
            levels = len(curves.x)
            coarse, fine = settings[levels - 1]
            progress(Progress(levels / len(settings), f"IF_DC_P c{coarse} f{fine}"))
            if levels < len(settings):
                check_cancel(cancel, "sweep cancelled")

        check_cancel(cancel, "sweep cancelled")
        biases = session.biases
        # the board slot (JobSlot.claimed): already the job's when started through board_jobs; a
        # direct call of this work is refused under another board job, as a workflow is
        with (session.board_jobs.claimed("sweep"), session.connection.acquisition_paused() as board, biases.undo_group(),
              biases.hold([(chip, core, "IF_DC_P")], "being swept", "the sweep")):
            return measure_dc_curves(board, addresses, settings, duration_s + SETTLE_S, SETTLE_S, clear_connections=False,
                                     set_bias=set_through_bias_model, on_level=on_level)

    return work
