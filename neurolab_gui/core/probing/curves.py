"""Transfer-curve probes on the chip, through the Board API only (silicon or emulator alike).

Every probe returns its data with an uncertainty and the chip time it cost, and measures many
neurons at once:

* :func:`measure_dc_curves` - ``IF_DC_P`` is one bias per core, so one sweep measures all 256
  neurons of every listed core together (x-axis: the nominal DC current of the bias setting).
* :func:`measure_synaptic_curves` - one FPGA spike-generator source, with ``multiplicity`` CAM
  entries on every measured neuron, steps through a list of input rates; all neurons of all
  listed cores see it at once (one CAM entry set per neuron, one source).  For inhibitory types
  a second source gives a constant excitatory drive that the inhibition then pulls down.

The rates come from :func:`~neurolab_gui.core.fitting.transfer_curves.window_rates`; the fits
(gains, refractory saturation) are in :mod:`neurolab_gui.core.fitting.fi`.  Time-constant probes
are in :mod:`.taus`.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from drivers.dynapse1.bias_table import BiasValue, nominal_current
from drivers.dynapse1.board_api import Board
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, SynapseType

from ..fitting.transfer_curves import TransferCurves, window_rates
from .program import Train, regular_train, run_program, staggered_trains, trains_program

#: FPGA source ids used by the transfer-curve probes: the constant drive (2) and the swept sources
#: from id 3 up.  (Id 0 is never used: cleared CAM entries listen to it.)
PROBE_SOURCE, DRIVE_SOURCE = 1, 2


def probe_neurons(chip: int, cores: list[int], exclude_core0_below: int = 16) -> list[NeuronAddress]:
    """Every neuron of ``cores`` that a probe can measure without aliasing.

    On core 0, neuron ids below ``exclude_core0_below`` are skipped: FPGA sources appear to the
    CAMs as core-0 neurons, so those ids would also hear the probe sources' spikes if routed.
    """
    out = []
    for core in cores:
        first = exclude_core0_below if core == 0 else 0
        out.extend(NeuronAddress(chip, core, n) for n in range(first, N_NEURONS_PER_CORE))
    return out


def measure_synaptic_curves(
    board: Board,
    addresses: list[NeuronAddress],
    synapse: SynapseType,
    input_rates_hz: list[float],
    multiplicity: int = 4,
    drive_rate_hz: float = 0.0,
    drive_multiplicity: int = 0,
    level_s: float = 0.5,
    settle_s: float = 0.1,
) -> TransferCurves:
    """Transfer curves of ``addresses`` (any chips, measured together) through ``synapse``, all neurons at once.

    The board's biases are used as they are; its connections on those chips are replaced by the
    probe netlist.  ``drive_rate_hz`` / ``drive_multiplicity`` add a constant AMPA drive (needed
    to see inhibition).  Each rate level lasts ``level_s``; its first ``settle_s`` is discarded.
    """
    if not addresses:
        raise ValueError("no neurons to measure")
    if not 1 <= multiplicity <= 64 or multiplicity + drive_multiplicity > 64:
        raise ValueError(f"multiplicity {multiplicity} + drive {drive_multiplicity} must fit 64 CAM entries")
    if not 0 <= settle_s < level_s:
        raise ValueError("settle_s must be shorter than level_s")
    # ``multiplicity`` distinct sources with one CAM entry each, their trains staggered in phase:
    # the same mean drive as one source with m copies, but m times smoother, so that no neuron
    # mode-locks to a slow periodic input (which distorts its rate per neuron).  An FPGA source
    # reaches only its own chip, so every chip measured gets the same sources and trains.
    chips = sorted({a.chip for a in addresses})
    probes = {c: [InputAddress(c, PROBE_SOURCE + DRIVE_SOURCE + k) for k in range(multiplicity)] for c in chips}
    drive = {c: InputAddress(c, DRIVE_SOURCE) for c in chips}
    netlist = Netlist(monitored=set(addresses))
    mask = dict.fromkeys(chips, 0)
    for a in addresses:
        for p in probes[a.chip]:
            netlist.add(p, a, synapse, 1)
        if drive_multiplicity and drive_rate_hz > 0:
            netlist.add(drive[a.chip], a, SynapseType.AMPA, drive_multiplicity)
        mask[a.chip] |= 1 << a.core
    board.stop_spike_generator()
    board.clear_connections(chips)
    board.write_netlist(netlist)
    trains: list[Train] = []  # channels per chip: the probes, then the drive
    windows = []
    width = multiplicity + 1
    for k, r in enumerate(input_rates_hz):
        t0, t1 = k * level_s, (k + 1) * level_s
        trains += [(i * width + j, t) for i in range(len(chips)) for j, t in enumerate(staggered_trains(multiplicity, r, t0, t1))]
        windows.append((round((t0 + settle_s) * 1e6), round(t1 * 1e6)))
    total = len(input_rates_hz) * level_s
    if drive_multiplicity and drive_rate_hz > 0:
        trains += [(i * width + multiplicity, regular_train(drive_rate_hz, 0.0, total, 0.25)) for i in range(len(chips))]
    sources = [s for c in chips for s in [*probes[c], drive[c]]]
    events = run_program(board, trains_program(trains, sources, [mask[c] for c in chips for _ in range(width)]), total)
    rates, errs = window_rates(events, addresses, windows)
    x = multiplicity * np.asarray(input_rates_hz, float)
    settings = {"multiplicity": multiplicity, "input_rates_hz": list(map(float, input_rates_hz)),
                "drive_rate_hz": drive_rate_hz, "drive_multiplicity": drive_multiplicity, "level_s": level_s, "settle_s": settle_s}
    return TransferCurves(synapse.name, list(addresses), x, rates, errs, total, settings)


#: ``on_level(curves_so_far, events)``: see :func:`measure_dc_curves`.
LevelCallback = Callable[[TransferCurves, SpikeEvents], None]
#: ``set_bias(chip, core, name, value)``, the signature of :meth:`Board.set_bias`.
BiasSetter = Callable[[int, int, str, BiasValue], None]


def measure_dc_curves(
    board: Board,
    addresses: list[NeuronAddress],
    dc_settings: list[tuple[int, int]],
    level_s: float = 0.4,
    settle_s: float = 0.1,
    *,
    clear_connections: bool = True,
    set_bias: BiasSetter | None = None,
    on_level: LevelCallback | None = None,
) -> TransferCurves:
    """f-I curves of ``addresses`` by stepping ``IF_DC_P`` of their cores through ``dc_settings``.

    Each level lasts ``level_s``; its first ``settle_s`` is read and discarded (the membrane
    settles after the step).  ``IF_DC_P`` is restored to its previous value afterwards, also when
    the measurement fails or ``on_level`` raises.

    Parameters
    ----------
    board : the board to measure on
    addresses : the neurons to measure (any chips and cores; every listed core is stepped)
    dc_settings : ``IF_DC_P`` (coarse, fine) levels, in order
    level_s, settle_s : board time per level and the discarded start of it
    clear_connections : True (calibration): stop the spike generator and clear the chips'
        connections so that only DC drives the neurons.  False (the GUI's interactive sweep):
        leave the user's network and stimulus as they are.
    set_bias : writes ``IF_DC_P`` (default ``board.set_bias``); the GUI passes its bias model's
        setter so that every step lands in the undo history and the change log.
    on_level : called after every level with the curves measured so far (a new object each time,
        safe to hand to another thread) and that level's counted events.  It may raise (e.g.
        :class:`~neurolab_gui.core.cancellation.Cancelled`) to stop the sweep.

    Returns
    -------
    TransferCurves
        ``kind="dc"``; x is the nominal current of every setting.
    """
    if not addresses:
        raise ValueError("no neurons to measure")
    if not dc_settings:
        raise ValueError("a DC sweep needs at least one (coarse, fine) setting")
    if not 0 <= settle_s < level_s:
        raise ValueError(f"settle_s ({settle_s}) must be at least 0 and shorter than level_s ({level_s})")
    write_bias = board.set_bias if set_bias is None else set_bias
    cores = sorted({(a.chip, a.core) for a in addresses})
    previous = {(c, k): board.get_bias(c, k, "IF_DC_P") for c, k in cores}
    if clear_connections:
        board.stop_spike_generator()
        board.clear_connections(sorted({c for c, _ in cores}))
        board.write_netlist(Netlist(monitored=set(addresses)))
    x = np.array([nominal_current(c, f) for c, f in dc_settings])
    rates = np.zeros((len(addresses), len(dc_settings)))
    errs = np.zeros_like(rates)
    settings = {"dc_settings": [list(s) for s in dc_settings], "level_s": level_s, "settle_s": settle_s}
    counted_us = round(level_s * 1e6) - round(settle_s * 1e6)

    def measured(levels: int) -> TransferCurves:
        return TransferCurves("dc", list(addresses), x[:levels].copy(), rates[:, :levels].copy(), errs[:, :levels].copy(),
                              levels * level_s, dict(settings))

    try:
        for p, (coarse, fine) in enumerate(dc_settings):
            for c, k in cores:
                write_bias(c, k, "IF_DC_P", BiasValue(coarse, fine))  # high, normal, enabled: the nominal current
            board.read_events(settle_s)
            events = board.read_events(level_s - settle_s)
            # read_events returns exactly the requested span of board time, so the counting window
            # is anchored on the batch itself, not on a reset clock: the board's timestamps are
            # left alone, which a live session's raster and recorder rely on.
            start_us = int(events.timestamp_us.min()) if len(events) else 0
            r, e = window_rates(events, addresses, [(start_us, start_us + counted_us)])
            rates[:, p], errs[:, p] = r[:, 0], e[:, 0]
            if on_level is not None:
                on_level(measured(p + 1), events)
    finally:
        for (c, k), v in previous.items():
            write_bias(c, k, "IF_DC_P", v)
    return measured(len(dc_settings))
