"""Transfer-curve measurements on the chip, through the Board API only (silicon or emulator alike).

Every measurement returns its data with an uncertainty and the chip time it cost, and measures
many neurons at once:

* :func:`measure_dc_curves` - ``IF_DC_P`` is one bias per core, so one sweep measures all 256
  neurons of every listed core together (x-axis: the nominal DC current of the bias setting).
* :func:`measure_synaptic_curves` - one FPGA spike-generator source, with ``multiplicity`` CAM
  entries on every measured neuron, steps through a list of input rates; all neurons of all
  listed cores see it at once (one CAM entry set per neuron, one source).  For inhibitory types
  a second source gives a constant excitatory drive that the inhibition then pulls down.
* :func:`measure_synaptic_taus` / :func:`measure_synaptic_tau` - steps of input rate through one
  synapse type per group of neurons (excitatory: the rate rises and falls; inhibitory: a driven
  neuron's rate drops and recovers), all groups in one run; every inter-spike interval is one
  equation of an integrate-and-fire model driven by the synaptic current, fitted per neuron for
  the time constant (:func:`fit_interval_tau`).
* :func:`measure_membrane_tau` - a sub-threshold DC step switched off; the decay of the monitored
  neuron's membrane trace.  Silicon has no membrane path over USB (``read_membrane`` is None):
  the function then returns None and says so; measure on the oscilloscope instead.
* the refractory period comes out of the DC curves: :func:`fit_saturation` fits
  ``rate = f0 / (1 + f0 t_ref)`` with ``f0`` linear in the current.

Rates are estimated from inter-spike intervals ``(n - 1) / (t_last - t_first)`` when a neuron
fired at least 3 times in a window (much finer than counts for regular firing), else from the
count.  The uncertainty given is the Poisson bound ``sqrt(max(n, 1)) / window`` - conservative
for the regular firing of a frozen-mismatch emulator, honest for noisy silicon.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.board_api import BiasValue, Board, SpikeGenEvent
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, SynapseType

#: FPGA source ids used by the transfer-curve probes: the constant drive (2) and the swept sources
#: from id 3 up.  (Id 0 is never used: cleared CAM entries listen to it.)
PROBE_SOURCE, DRIVE_SOURCE = 1, 2
#: The time-constant probe's sources start here: ``multiplicity`` per synapse type, then the drive.
TAU_PROBE_FIRST_SOURCE = 3
#: The FPGA spike generator holds at most this many events per program.
MAX_GENERATOR_EVENTS = 0x7FFF


@dataclass
class TransferCurves:
    """Per-neuron responses to a swept input.

    The one curve type of NeuroLab: calibration measures it, and the GUI's transfer panel draws it
    (DC sweeps, calibration progress, and a conversion's transfer fits with the RNN's target).

    Attributes
    ----------
    kind : ``"dc"`` or a synapse type name (``"AMPA"``, ``"GABA_B"``, ...)
    addresses : the measured neurons, one per row of ``rates_hz``; empty when the single row is
        a population mean (a conversion's transfer fit)
    x : ``[P]`` input of every point (DC: nominal amperes; synapses: drive in Hz per CAM copy,
        ``multiplicity * rate``)
    rates_hz, rate_err_hz : ``[N, P]`` output rate and its uncertainty
    chip_s : chip time the measurement used
    settings : what was held fixed (bias values, multiplicity, drive)
    target_x, target_y : optional curve the rates should follow (the RNN's target), drawn with them
    """

    kind: str
    addresses: list[NeuronAddress]
    x: np.ndarray
    rates_hz: np.ndarray
    rate_err_hz: np.ndarray
    chip_s: float
    settings: dict = field(default_factory=dict)
    target_x: np.ndarray | None = None
    target_y: np.ndarray | None = None

    @property
    def x_label(self) -> str:
        return "DC current" if self.kind == "dc" else f"{self.kind} drive m·r"

    @property
    def x_unit(self) -> str:
        return "A" if self.kind == "dc" else "Hz"

    def matrix(self) -> np.ndarray:
        """Rates as ``[P, N]`` (points, neurons): one row per input level, as plotted."""
        return np.asarray(self.rates_hz, float).T

    def index(self) -> dict[NeuronAddress, int]:
        return {a: i for i, a in enumerate(self.addresses)}

    def subset(self, addresses: list[NeuronAddress]) -> TransferCurves:
        idx = self.index()
        rows = [idx[a] for a in addresses]
        return TransferCurves(self.kind, list(addresses), self.x.copy(), self.rates_hz[rows], self.rate_err_hz[rows], self.chip_s,
                              dict(self.settings), self.target_x, self.target_y)

    def to_dict(self) -> dict:
        return {
            "kind": self.kind,
            "addresses": [[a.chip, a.core, a.neuron] for a in self.addresses],
            "x": self.x.tolist(),
            "rates_hz": np.round(self.rates_hz, 4).tolist(),
            "rate_err_hz": np.round(self.rate_err_hz, 4).tolist(),
            "chip_s": self.chip_s,
            "settings": self.settings,
        }


@dataclass
class GainFit:
    """Per-neuron straight-line fits ``f0 = gain * x - offset`` (``f0``: rate with saturation undone).

    For inhibitory curves the fitted line is ``f0 = base - gain * x`` and ``offset = -base``.
    ``valid`` is False where fewer than two points lay in the operating range.
    """

    addresses: list[NeuronAddress]
    gain: np.ndarray
    gain_err: np.ndarray
    offset: np.ndarray
    valid: np.ndarray

    def cv(self, addresses: list[NeuronAddress] | None = None) -> float:
        """Coefficient of variation of the gain over ``addresses`` (default: all valid)."""
        g = self.gains_of(addresses) if addresses is not None else self.gain[self.valid]
        g = g[np.isfinite(g)]
        return float(np.std(g) / np.mean(g)) if len(g) > 1 and np.mean(g) > 0 else float("nan")

    def gains_of(self, addresses: list[NeuronAddress]) -> np.ndarray:
        idx = {a: i for i, a in enumerate(self.addresses)}
        return np.array([self.gain[idx[a]] if self.valid[idx[a]] else np.nan for a in addresses])

    def offsets_of(self, addresses: list[NeuronAddress]) -> np.ndarray:
        idx = {a: i for i, a in enumerate(self.addresses)}
        return np.array([self.offset[idx[a]] for a in addresses])


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


def window_rates(events: SpikeEvents, addresses: list[NeuronAddress], windows_us: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """Rates ``[N, W]`` and Poisson-bound errors of ``addresses`` in each ``[start, end)`` window."""
    gid = np.array([a.chip * 1024 + a.core * 256 + a.neuron for a in addresses], np.int64)
    row_of = np.full(4096, -1, np.int64)
    row_of[gid] = np.arange(len(gid))
    rows = row_of[events.global_id] if len(events) else np.zeros(0, np.int64)
    keep = rows >= 0
    t, rows = events.timestamp_us[keep], rows[keep]
    order = np.lexsort((t, rows))
    t, rows = t[order], rows[order]
    n = len(addresses)
    rates = np.zeros((n, len(windows_us)))
    errs = np.zeros((n, len(windows_us)))
    for w, (start, end) in enumerate(windows_us):
        sel = (t >= start) & (t < end)
        r_w, t_w = rows[sel], t[sel]
        span_s = (end - start) / 1e6
        count = np.bincount(r_w, minlength=n).astype(float)
        rate = count / span_s
        if len(r_w):
            first = np.full(n, np.inf)
            last = np.full(n, -np.inf)
            np.minimum.at(first, r_w, t_w)
            np.maximum.at(last, r_w, t_w)
            many = (count >= 3) & (last > first)
            rate[many] = (count[many] - 1) / ((last[many] - first[many]) / 1e6)
        rates[:, w] = rate
        errs[:, w] = np.sqrt(np.maximum(count, 1.0)) / span_s
    return rates, errs


def _regular_train(source: InputAddress, mask: int, rate_hz: float, t0_s: float, t1_s: float, phase: float) -> list[tuple[float, InputAddress, int]]:
    if rate_hz <= 0:
        return []
    t = t0_s + (np.arange(int((t1_s - t0_s) * rate_hz)) + phase) / rate_hz
    return [(float(x), source, mask) for x in t if x < t1_s]


def _program(spikes: list[tuple[float, InputAddress, int]]) -> list[SpikeGenEvent]:
    spikes.sort(key=lambda s: s[0])
    if len(spikes) > MAX_GENERATOR_EVENTS:
        raise ValueError(f"probe needs {len(spikes)} generator events; the FPGA holds {MAX_GENERATOR_EVENTS} (shorten it)")
    out, last = [], 0.0
    for t_s, src, mask in spikes:
        t_us = round(t_s * 1e6)
        out.append(SpikeGenEvent(src, mask, float(t_us - last)))
        last = t_us
    return out


def _run_program(board: Board, program: list[SpikeGenEvent], duration_s: float) -> SpikeEvents:
    board.stop_spike_generator()
    board.reset_timestamps()
    board.load_spike_generator(program)
    board.start_spike_generator()
    try:
        return board.read_events(duration_s)
    finally:
        board.stop_spike_generator()


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
    """Transfer curves of ``addresses`` (one chip) through ``synapse``, all neurons at once.

    The board's biases are used as they are; its connections on the chip are replaced by the
    probe netlist.  ``drive_rate_hz`` / ``drive_multiplicity`` add a constant AMPA drive (needed
    to see inhibition).  Each rate level lasts ``level_s``; its first ``settle_s`` is discarded.
    """
    if not addresses:
        raise ValueError("no neurons to measure")
    chips = {a.chip for a in addresses}
    if len(chips) != 1:
        raise ValueError(f"measure one chip at a time, got chips {sorted(chips)}")
    if not 1 <= multiplicity <= 64 or multiplicity + drive_multiplicity > 64:
        raise ValueError(f"multiplicity {multiplicity} + drive {drive_multiplicity} must fit 64 CAM entries")
    if not 0 <= settle_s < level_s:
        raise ValueError("settle_s must be shorter than level_s")
    chip = chips.pop()
    # ``multiplicity`` distinct sources with one CAM entry each, their trains staggered in phase:
    # the same mean drive as one source with m copies, but m times smoother, so that no neuron
    # mode-locks to a slow periodic input (which distorts its rate per neuron).
    probes = [InputAddress(chip, PROBE_SOURCE + DRIVE_SOURCE + k) for k in range(multiplicity)]
    drive = InputAddress(chip, DRIVE_SOURCE)
    netlist = Netlist(monitored=set(addresses))
    for a in addresses:
        for p in probes:
            netlist.add(p, a, synapse, 1)
        if drive_multiplicity and drive_rate_hz > 0:
            netlist.add(drive, a, SynapseType.AMPA, drive_multiplicity)
    mask = 0
    for a in addresses:
        mask |= 1 << a.core
    board.stop_spike_generator()
    board.clear_connections([chip])
    board.write_netlist(netlist)
    spikes: list[tuple[float, InputAddress, int]] = []
    windows = []
    for k, r in enumerate(input_rates_hz):
        t0, t1 = k * level_s, (k + 1) * level_s
        for j, p in enumerate(probes):
            spikes += _regular_train(p, mask, r, t0, t1, (j + 0.5) / len(probes))
        windows.append((round((t0 + settle_s) * 1e6), round(t1 * 1e6)))
    total = len(input_rates_hz) * level_s
    if drive_multiplicity and drive_rate_hz > 0:
        spikes += _regular_train(drive, mask, drive_rate_hz, 0.0, total, 0.25)
    events = _run_program(board, _program(spikes), total)
    rates, errs = window_rates(events, addresses, windows)
    x = multiplicity * np.asarray(input_rates_hz, float)
    settings = {"multiplicity": multiplicity, "input_rates_hz": list(map(float, input_rates_hz)),
                "drive_rate_hz": drive_rate_hz, "drive_multiplicity": drive_multiplicity, "level_s": level_s, "settle_s": settle_s}
    return TransferCurves(synapse.name, list(addresses), x, rates, errs, total, settings)


#: ``on_level(curves_so_far, events)``: see :func:`measure_dc_curves`.
LevelCallback = Callable[[TransferCurves, SpikeEvents], None]
#: ``set_bias(chip, core, name, coarse, fine, high)``, the signature of :meth:`Board.set_bias`.
BiasSetter = Callable[[int, int, str, int, int, bool], None]


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
                write_bias(c, k, "IF_DC_P", coarse, fine, True)
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
            write_bias(c, k, "IF_DC_P", v.coarse, v.fine, v.high)
    return measured(len(dc_settings))


def fit_gains(curves: TransferCurves, t_ref_s: float = 0.0, min_rate_hz: float = 5.0, max_rate_hz: float = np.inf,
              inhibitory: bool = False) -> GainFit:
    """Weighted least-squares line per neuron through the points in ``[min_rate, max_rate]``.

    With ``t_ref_s`` > 0 the refractory compression ``rate = f0 / (1 + f0 t_ref)`` is undone first
    (the conversion trains with exactly that curve, so the gain is the slope of ``f0``).
    """
    y = curves.rates_hz
    denom = np.clip(1.0 - y * t_ref_s, 0.05, None)
    y_lin = y / denom
    err = curves.rate_err_hz / denom**2
    x = curves.x
    n = len(curves.addresses)
    gain, gerr, offset = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    ok = (y >= min_rate_hz) & (y <= max_rate_hz)
    valid = ok.sum(1) >= 2
    for i in np.flatnonzero(valid):
        m = ok[i]
        w = 1.0 / np.maximum(err[i, m], 1e-9) ** 2
        xs, ys = x[m], y_lin[i, m]
        sw, sx, sy = w.sum(), (w * xs).sum(), (w * ys).sum()
        sxx, sxy = (w * xs * xs).sum(), (w * xs * ys).sum()
        det = sw * sxx - sx * sx
        if det <= 0:
            valid[i] = False
            continue
        slope = (sw * sxy - sx * sy) / det
        intercept = (sxx * sy - sx * sxy) / det
        resid = ys - (slope * xs + intercept)
        dof = max(1, m.sum() - 2)
        # standard error: the larger of the propagated and the scatter-based estimate
        var_prop = sw / det
        var_scatter = (w * resid**2).sum() / dof * sw / det
        gain[i] = -slope if inhibitory else slope
        gerr[i] = float(np.sqrt(max(var_prop, var_scatter)))
        offset[i] = -intercept
    return GainFit(list(curves.addresses), gain, gerr, offset, valid & np.isfinite(gain) & (np.nan_to_num(gain) > 0))


@dataclass
class SaturationFit:
    """Per-neuron refractory period from DC curves: ``rate = f0 / (1 + f0 t_ref)``, ``f0 = a I - b``."""

    addresses: list[NeuronAddress]
    t_ref_s: np.ndarray
    saturation_hz: np.ndarray  # 1 / t_ref
    rheobase_a: np.ndarray  # b / a: the current where f0 reaches zero
    gain_hz_per_a: np.ndarray  # a


def fit_saturation(curves: TransferCurves, min_rate_hz: float = 5.0) -> SaturationFit:
    """Fit ``1/rate = 1/f0 + t_ref`` (linear in ``1/f0``) per neuron on a DC curve.

    With ``f0 = a (I - I_rh)``: ``1/rate = (1/a) * 1/(I - I_rh) + t_ref``.  ``I_rh`` is found by
    a 1-D grid search (it is the rheobase: just below the first current that made the neuron fire).
    """
    if curves.kind != "dc":
        raise ValueError("fit_saturation needs a DC curve")
    x, y = curves.x, curves.rates_hz
    n = len(curves.addresses)
    t_ref, a_out, rh = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    for i in range(n):
        m = y[i] >= min_rate_hz
        if m.sum() < 3:
            continue
        xs, inv = x[m], 1.0 / y[i, m]
        firing_min = xs.min()
        silent = x[(y[i] < min_rate_hz) & (x < firing_min)]
        lo = silent.max() if len(silent) else 0.0
        best = (np.inf, np.nan, np.nan, np.nan)
        for i_rh in np.linspace(lo, firing_min * 0.999, 40):
            u = 1.0 / (xs - i_rh)
            A = np.vstack([u, np.ones_like(u)]).T
            coef, *_ = np.linalg.lstsq(A, inv, rcond=None)
            res = float(np.sum((A @ coef - inv) ** 2))
            if res < best[0] and coef[0] > 0:
                best = (res, 1.0 / coef[0], coef[1], i_rh)
        _, a_out[i], t_ref[i], rh[i] = best
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = np.where(t_ref > 0, 1.0 / t_ref, np.nan)
    return SaturationFit(list(curves.addresses), t_ref, sat, rh, a_out)


@dataclass
class TauMeasurement:
    """Time constants per neuron with their fit uncertainty and the chip time used.

    ``rate_on_hz`` / ``rate_off_hz`` (step-response probes only): each neuron's mean rate over the
    last third of the input-on and input-off periods, for choosing the probe's input rates.
    """

    kind: str
    addresses: list[NeuronAddress]
    tau_s: np.ndarray
    tau_err_s: np.ndarray
    chip_s: float
    rate_on_hz: np.ndarray | None = None
    rate_off_hz: np.ndarray | None = None

    def population(self, addresses: list[NeuronAddress] | None = None) -> tuple[float, float]:
        """Median time constant of ``addresses`` (default: all) and the standard error of that median.

        The error is the robust spread (1.4826 x MAD) times 1.2533 / sqrt(n): it contains both the
        neurons' mismatch and each fit's own uncertainty.  (nan, nan) when no neuron has a fit.
        """
        tau = self.tau_s if addresses is None else self.taus_of(addresses)
        tau = tau[np.isfinite(tau)]
        if len(tau) == 0:
            return float("nan"), float("nan")
        median = float(np.median(tau))
        spread = 1.4826 * float(np.median(np.abs(tau - median)))
        return median, 1.2533 * spread / np.sqrt(len(tau)) if len(tau) > 1 else float("nan")

    def taus_of(self, addresses: list[NeuronAddress]) -> np.ndarray:
        idx = {a: i for i, a in enumerate(self.addresses)}
        return np.array([self.tau_s[idx[a]] for a in addresses])


#: Time constants the step-response fit can return (a grid with 9 % steps, refined between its
#: points; on the emulator 97 points over 1 ms - 1 s gave the same medians within 0.1 %).
TAU_GRID_S = np.geomspace(2e-3, 0.5, 64)
#: Resolution of the synaptic-current reconstruction in the step-response fit.
_TAU_FIT_DT_S = 1e-4


def _staggered_train(sources: list[InputAddress], mask: int, rate_hz: float, t0_s: float, t1_s: float) -> list[tuple[float, InputAddress, int]]:
    """Regular trains of every source at ``rate_hz``, their phases spread evenly (smooth drive)."""
    out: list[tuple[float, InputAddress, int]] = []
    for j, s in enumerate(sources):
        out += _regular_train(s, mask, rate_hz, t0_s, t1_s, (j + 0.5) / len(sources))
    return out


def _synaptic_integrals(input_times_s: np.ndarray, duration_s: float, taus_s: np.ndarray) -> np.ndarray:
    """``C[k, i] = integral over [0, i dt] of the synaptic response to the inputs``, for every tau.

    The response of a linear synapse with time constant ``tau`` to input events ``t_j`` is
    ``sum_j exp(-(t - t_j) / tau)`` (unit jumps); it is built exactly on the ``dt`` grid.
    """
    n_grid = int(np.ceil(duration_s / _TAU_FIT_DT_S)) + 2
    counts = np.bincount(np.minimum((input_times_s / _TAU_FIT_DT_S).astype(np.int64), n_grid - 1), minlength=n_grid).astype(float)
    decay = np.exp(-_TAU_FIT_DT_S / taus_s)
    response = np.empty((len(taus_s), n_grid))
    current = np.zeros(len(taus_s))
    for i in range(n_grid):
        current = current * decay + counts[i]
        response[:, i] = current
    integral = np.zeros_like(response)
    np.cumsum(response[:, :-1] * _TAU_FIT_DT_S, axis=1, out=integral[:, 1:])
    return integral


def fit_interval_tau(
    spike_rows: np.ndarray,
    spike_times_s: np.ndarray,
    n_neurons: int,
    input_times_s: np.ndarray,
    duration_s: float,
    dead_time_s: np.ndarray,
    interval_ok: Callable[[np.ndarray, np.ndarray], np.ndarray],
    excitatory: bool,
    dead_time_factors: tuple[float, ...] = (1.0,),
    min_intervals: int = 6,
) -> tuple[np.ndarray, np.ndarray]:
    """Per-neuron synaptic time constant from inter-spike intervals under a known input train.

    Model: a neuron with a weak leak integrates ``f0(t) = A s(t; tau) - L`` (``s``: the synaptic
    current's response to the input events, ``L``: leak and rheobase, constant) and fires when the
    integral reaches one; its membrane is frozen for a dead time ``d`` (the refractory period)
    after a spike.  So every interval ``(t_k, t_k+1)`` gives one equation, linear in ``A`` and ``L``::

        A * integral_{t_k + d}^{t_k+1} s(t; tau) dt - L * (t_k+1 - t_k - d) = 1

    For each ``tau`` of :data:`TAU_GRID_S` and each dead time ``d = dead_time_s * factor``
    (``dead_time_factors``) ``A`` and ``L`` are solved by least squares; the pair with the least
    residual wins (the dead time absorbs what the soma adds near threshold, e.g. positive
    feedback), ``tau`` is refined by a parabola in ``log tau`` and its uncertainty comes from
    the residual's curvature there (a one-sigma change of the chi-square, the residual variance
    taken as the noise; conditional on the dead time).  Inhibitory probes use the same equations
    with a constant excitatory drive inside ``-L`` and ``A < 0``.  Unlike a fit of the PSTH this
    uses every spike and does not mistake the soma's integration up to its first spike for
    synaptic rise time.

    ``interval_ok(start, end)`` selects the intervals to use (their spike times, seconds).
    Returns ``(tau_s, tau_err_s)``; nan where a neuron had fewer than ``min_intervals`` intervals,
    the fit went to the grid's edge, or ``A`` had the wrong sign.
    """
    order = np.lexsort((spike_times_s, spike_rows))
    rows, t = spike_rows[order], spike_times_s[order]
    same = rows[1:] == rows[:-1]
    start, end, r = t[:-1], t[1:], rows[:-1]
    use = same & interval_ok(start, end)
    start, end, r = start[use], end[use], r[use]
    taus = TAU_GRID_S
    tau_fit, tau_err = np.full(n_neurons, np.nan), np.full(n_neurons, np.nan)
    if len(r) == 0:
        return tau_fit, tau_err
    integral = _synaptic_integrals(input_times_s, duration_s, taus)

    def at(x: np.ndarray) -> np.ndarray:
        f = np.clip(x / _TAU_FIT_DT_S, 0.0, integral.shape[1] - 1.0)
        i = np.minimum(f.astype(np.int64), integral.shape[1] - 2)
        w = f - i
        return integral[:, i] * (1.0 - w) + integral[:, i + 1] * w

    # intervals are grouped by neuron (sorted rows): per-neuron sums are reduceat over the groups
    neurons, first = np.unique(r, return_index=True)
    count = np.zeros(n_neurons)
    count[neurons] = np.diff(np.append(first, len(r)))

    def per_neuron(x: np.ndarray) -> np.ndarray:
        out = np.zeros(x.shape[:-1] + (n_neurons,))
        out[..., neurons] = np.add.reduceat(x, first, axis=-1)
        return out

    at_end = at(end)
    best_res = np.full((len(taus), n_neurons), np.inf)  # residual profile over tau at each neuron's best dead time
    best_score = np.full(n_neurons, np.inf)
    for factor in dead_time_factors:
        a = start + dead_time_s[r] * factor
        s = at_end - at(a)  # [K, I]
        d = np.maximum(end - a, 0.0)  # [I]
        sss, ssd, ss = per_neuron(s * s), per_neuron(s * d), per_neuron(s)  # [K, N]
        sdd, sd = per_neuron(d * d), per_neuron(d)
        det = sss * sdd - ssd**2
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            amp = (ss * sdd - ssd * sd) / det  # A
            leak = (ss * ssd - sss * sd) / det  # L (the equation reads A s - L d = 1)
            res = count + amp**2 * sss + leak**2 * sdd - 2 * amp * leak * ssd - 2 * amp * ss + 2 * leak * sd
        res = np.where(np.isfinite(res) & (det > 0) & ((amp > 0) == excitatory), np.maximum(res, 0.0), np.inf)
        score = res.min(0)
        better = score < best_score
        best_score[better] = score[better]
        best_res[:, better] = res[:, better]
    log_step = float(np.log(taus[1] / taus[0]))
    for i in np.flatnonzero((count >= min_intervals) & np.isfinite(best_score)):
        res = best_res[:, i]
        k = int(np.argmin(res))
        if not 0 < k < len(taus) - 1 or not np.isfinite(res[k - 1 : k + 2]).all():
            continue
        y0, y1, y2 = res[k - 1], res[k], res[k + 1]
        curvature = (y0 - 2 * y1 + y2) / log_step**2  # d2 res / d(log tau)2
        shift = 0.5 * (y0 - y2) / (y0 - 2 * y1 + y2) if curvature > 0 else 0.0
        tau_fit[i] = taus[k] * np.exp(shift * log_step)
        variance = y1 / max(count[i] - 3, 1.0)  # residual variance per interval
        sigma_log = np.sqrt(2.0 * variance / curvature) if curvature > 0 else log_step
        tau_err[i] = tau_fit[i] * max(sigma_log, 1e-4)
    return tau_fit, tau_err


#: Dead times the step-response fit tries, relative to the given refractory period: the fit picks
#: the best per neuron (a DC-curve estimate of t_ref was 20 % off on the emulator, and the soma's
#: positive feedback shortens the effective dead time).  Six values gave the medians of eleven
#: within 0.1 % on the emulator.
DEFAULT_DEAD_TIME_FACTORS: tuple[float, ...] = (0.5, 0.7, 0.9, 1.1, 1.3, 1.5)


def tau_probe_source_end(n_types: int, multiplicity: int) -> int:
    """One past the highest FPGA source id :func:`measure_synaptic_taus` uses for ``n_types`` types.

    Core-0 neurons with lower ids hear the probe's sources when routed (sources look like core-0
    neurons to the CAMs), so probes skip them.
    """
    return TAU_PROBE_FIRST_SOURCE + 2 * n_types * multiplicity


def measure_synaptic_taus(
    board: Board,
    groups: Mapping[SynapseType, list[NeuronAddress]],
    step_rates_hz: Mapping[SynapseType, float],
    drive_rates_hz: Mapping[SynapseType, float],
    multiplicity: int = 4,
    on_s: float = 0.15,
    off_s: float = 0.15,
    repeats: int = 2,
    dead_time_s: float | Mapping[NeuronAddress, float] = 0.0,
    dead_time_factors: tuple[float, ...] = DEFAULT_DEAD_TIME_FACTORS,
    connect: bool = True,
) -> dict[SynapseType, TauMeasurement]:
    """Synaptic time constants of several synapse types on disjoint neurons, in one run.

    Every neuron of ``groups[type]`` fires all the time under a constant AMPA drive
    (``multiplicity`` sources at ``drive_rates_hz[type]`` each, one CAM entry per source, phases
    staggered), and ``multiplicity`` more sources step its input through ``type`` at
    ``step_rates_hz[type]`` during the first ``on_s`` of every ``on_s + off_s`` period: an
    excitatory step raises the rate, an inhibitory one pulls it down, and the rate relaxes back
    when the step ends.  The drive starts ``off_s`` before the first step (lead-in) so it has
    settled.  Every inter-spike interval after the lead-in is one equation of
    :func:`fit_interval_tau`.  Driving the excitatory probes too keeps the neuron firing at two
    distinct levels, which pins the dead time the fit also adjusts, and keeps the input above
    the soma's threshold, where the model holds.

    ``dead_time_s`` is the refractory period (one value, or one per neuron, e.g. from
    :func:`fit_saturation`; missing neurons take the median); the fit tries it times each of
    ``dead_time_factors``.  Chip time: ``off_s + repeats * (on_s + off_s)``.  The board's biases
    are used as they are; the chip's connections are replaced by the probe's, unless ``connect``
    is False: the caller then guarantees that an earlier call with the same ``groups`` left them
    on the chip (repeated rounds of a tuning; rewriting 64 CAM words per neuron costs seconds).
    """
    if not groups or not any(groups.values()):
        raise ValueError("no neurons to measure")
    all_addresses = [a for addrs in groups.values() for a in addrs]
    if len(set(all_addresses)) != len(all_addresses):
        raise ValueError("each neuron can probe one synapse type only")
    chips = {a.chip for a in all_addresses}
    if len(chips) != 1:
        raise ValueError(f"measure one chip at a time, got chips {sorted(chips)}")
    if not 1 <= multiplicity <= 32:
        raise ValueError(f"multiplicity must be 1..32 (a step and a drive share 64 CAM entries), got {multiplicity}")
    if not (on_s > 0 and off_s > 0 and repeats >= 1):
        raise ValueError(f"need on_s > 0, off_s > 0 and repeats >= 1 (got {on_s}, {off_s}, {repeats})")
    if not dead_time_factors or min(dead_time_factors) < 0:
        raise ValueError(f"dead_time_factors must be non-negative and not empty, got {dead_time_factors}")
    types = [SynapseType(s) for s in groups]
    for syn in types:
        if not step_rates_hz.get(syn, 0.0) > 0:
            raise ValueError(f"no positive step rate for {syn.name}")
        if not drive_rates_hz.get(syn, 0.0) > 0:
            raise ValueError(f"no positive drive rate for {syn.name}: the probe reads a driven neuron's rate")
    chip = chips.pop()
    first = TAU_PROBE_FIRST_SOURCE
    step_sources = {syn: [InputAddress(chip, first + (2 * k) * multiplicity + j) for j in range(multiplicity)] for k, syn in enumerate(types)}
    drive_sources = {syn: [InputAddress(chip, first + (2 * k + 1) * multiplicity + j) for j in range(multiplicity)] for k, syn in enumerate(types)}
    netlist = Netlist(monitored=set(all_addresses))
    masks = {syn: 0 for syn in types}
    for syn in types:
        for a in groups[syn]:
            masks[syn] |= 1 << a.core
            for s in step_sources[syn]:
                netlist.add(s, a, syn, 1)
            for s in drive_sources[syn]:
                netlist.add(s, a, SynapseType.AMPA, 1)
    if connect:
        board.stop_spike_generator()
        board.clear_connections([chip])
        board.write_netlist(netlist)
    lead_in, period = off_s, on_s + off_s
    total = lead_in + repeats * period
    spikes: list[tuple[float, InputAddress, int]] = []
    step_times: dict[SynapseType, np.ndarray] = {}
    for syn in types:
        train: list[tuple[float, InputAddress, int]] = []
        for k in range(repeats):
            t0 = lead_in + k * period
            train += _staggered_train(step_sources[syn], masks[syn], step_rates_hz[syn], t0, t0 + on_s)
        step_times[syn] = np.array([s[0] for s in train])
        spikes += train + _staggered_train(drive_sources[syn], masks[syn], drive_rates_hz[syn], 0.0, total)
    events = _run_program(board, _program(spikes), total)
    # steady rates: the last third of every on and off period
    on_windows = [(round((lead_in + k * period + on_s * 2 / 3) * 1e6), round((lead_in + k * period + on_s) * 1e6)) for k in range(repeats)]
    off_windows = [(round((lead_in + k * period + on_s + off_s * 2 / 3) * 1e6), round((lead_in + (k + 1) * period) * 1e6)) for k in range(repeats)]
    out = {}
    for syn in types:
        addresses = list(groups[syn])
        if not addresses:
            continue
        gid = np.array([a.chip * 1024 + a.core * 256 + a.neuron for a in addresses], np.int64)
        row_of = np.full(4096, -1, np.int64)
        row_of[gid] = np.arange(len(gid))
        rows = row_of[events.global_id] if len(events) else np.zeros(0, np.int64)
        keep = rows >= 0
        if isinstance(dead_time_s, Mapping):
            dead = np.array([float(dead_time_s.get(a, np.nan)) for a in addresses])
            dead = np.where(np.isfinite(dead), dead, np.nanmedian(dead) if np.isfinite(dead).any() else 0.0)
        else:
            dead = np.full(len(addresses), float(dead_time_s))
        tau, err = fit_interval_tau(rows[keep], events.timestamp_us[keep] / 1e6, len(addresses), step_times[syn], total, dead,
                                    lambda start, end: start >= lead_in, syn.is_excitatory, dead_time_factors)
        rate_on = window_rates(events, addresses, on_windows)[0].mean(1)
        rate_off = window_rates(events, addresses, off_windows)[0].mean(1)
        out[syn] = TauMeasurement(f"tau_{syn.name}", addresses, tau, err, total, rate_on, rate_off)
    return out


def measure_synaptic_tau(
    board: Board,
    addresses: list[NeuronAddress],
    synapse: SynapseType,
    input_rate_hz: float,
    multiplicity: int = 4,
    on_s: float = 0.15,
    off_s: float = 0.15,
    repeats: int = 2,
    dead_time_s: float | Mapping[NeuronAddress, float] = 0.0,
    drive_rate_hz: float | None = None,
) -> TauMeasurement:
    """Synaptic time constant of every neuron of ``addresses`` through one synapse type.

    One type of :func:`measure_synaptic_taus` (see there): ``input_rate_hz`` per step source;
    the AMPA drive per source defaults to ``input_rate_hz`` for excitatory types (the step then
    doubles the drive) and twice that for inhibitory ones (the step takes about half away).

    Accuracy (measured on the emulator, 2 repeats of 0.15 s on + 0.15 s off, rates 150-300 Hz):
    with mismatch off the population median is within 1.5 % of the true time constant, both
    with the conversion's biases (weak leak, tau 31 ms) and with samna_recommended (20 ms soma,
    tau 13 ms); with the default mismatch the per-core medians are within ~2 % and each neuron's
    estimate within a few % of its own hidden time constant.  A delay between the spike
    generator and the timestamps biases it (0.5 ms: -2 % at 31 ms).
    """
    syn = SynapseType(synapse)
    drive = drive_rate_hz if drive_rate_hz is not None else input_rate_hz * (1.0 if syn.is_excitatory else 2.0)
    return measure_synaptic_taus(board, {syn: list(addresses)}, {syn: input_rate_hz}, {syn: drive}, multiplicity, on_s, off_s,
                                 repeats, dead_time_s)[syn]


def measure_membrane_tau(board: Board, chip: int, core: int, neuron: int, dc: BiasValue, on_s: float = 0.3, off_s: float = 0.5) -> TauMeasurement | None:
    """Membrane time constant of one neuron per core from the decay after a DC step (analog monitor).

    Returns None on silicon, where the membrane is only on the SMA output (``read_membrane`` is
    None).  ``dc`` should be sub-threshold; ``IF_DC_P`` is restored afterwards.
    """
    previous = board.get_bias(chip, core, "IF_DC_P")
    board.monitor_neuron(chip, core, neuron)
    board.read_membrane(chip, core)  # drop old samples
    try:
        board.set_bias(chip, core, "IF_DC_P", dc.coarse, dc.fine, dc.high)
        board.read_events(on_s)
        board.set_bias(chip, core, "IF_DC_P", 7, 0)
        t0_trace = board.read_membrane(chip, core)
        board.read_events(off_s)
        trace = board.read_membrane(chip, core)
    finally:
        board.set_bias(chip, core, "IF_DC_P", previous.coarse, previous.fine, previous.high)
    addr = [NeuronAddress(chip, core, neuron)]
    if trace is None or t0_trace is None or len(trace[0]) < 10:
        return None
    t_us, v = trace
    t = (t_us - t_us[0]) / 1e6
    v = v - v[-1]
    ok = v > 0.05 * v[0] if v[0] > 0 else np.zeros_like(v, bool)
    if ok.sum() < 5:
        return TauMeasurement("tau_mem", addr, np.array([np.nan]), np.array([np.nan]), on_s + off_s)
    # the membrane *voltage* trace of a DPI neuron decays linearly in V (log of the current):
    # V = V0 - (U_T / kappa) t / tau, so tau comes from the slope and U_T/kappa (model constants).
    slope, _ = np.polyfit(t[ok], v[ok], 1)
    ut_over_kappa = 0.025 / 0.705
    tau = ut_over_kappa / -slope if slope < 0 else np.nan
    return TauMeasurement("tau_mem", addr, np.array([tau]), np.array([abs(tau) * 0.05]), on_s + off_s)
