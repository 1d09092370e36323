"""Transfer-curve measurements on the chip, through the Board API only (silicon or emulator alike).

Every measurement returns its data with an uncertainty and the chip time it cost, and measures
many neurons at once:

* :func:`measure_dc_curves` - ``IF_DC_P`` is one bias per core, so one sweep measures all 256
  neurons of every listed core together (x-axis: the nominal DC current of the bias setting).
* :func:`measure_synaptic_curves` - one FPGA spike-generator source, with ``multiplicity`` CAM
  entries on every measured neuron, steps through a list of input rates; all neurons of all
  listed cores see it at once (one CAM entry set per neuron, one source).  For inhibitory types
  a second source gives a constant excitatory drive that the inhibition then pulls down.
* :func:`measure_synaptic_tau` - a step of input rate; the rise of each neuron's rate (its PSTH,
  averaged over repetitions) is fitted with ``1 - exp(-t / tau)``, the synaptic current's step
  response (the soma follows it quickly when its leak is weak).
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

from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.bias_table import nominal_current
from drivers.dynapse1.board_api import BiasValue, Board, SpikeGenEvent
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, SynapseType

#: FPGA source ids used by the probes: the step-response source, the constant drive, and the
#: transfer-curve sources from id 3 up.  (Id 0 is never used: cleared CAM entries listen to it.)
PROBE_SOURCE, DRIVE_SOURCE = 1, 2
#: The FPGA spike generator holds at most this many events per program.
MAX_GENERATOR_EVENTS = 0x7FFF


@dataclass
class TransferCurves:
    """Per-neuron responses to a swept input.

    Attributes
    ----------
    kind : ``"dc"`` or a synapse type name (``"AMPA"``, ``"GABA_B"``, ...)
    addresses : the measured neurons
    x : ``[P]`` input of every point (DC: nominal amperes; synapses: drive in Hz per CAM copy,
        ``multiplicity * rate``)
    rates_hz, rate_err_hz : ``[N, P]`` output rate and its uncertainty
    chip_s : chip time the measurement used
    settings : what was held fixed (bias values, multiplicity, drive)
    """

    kind: str
    addresses: list[NeuronAddress]
    x: np.ndarray
    rates_hz: np.ndarray
    rate_err_hz: np.ndarray
    chip_s: float
    settings: dict = field(default_factory=dict)

    def index(self) -> dict[NeuronAddress, int]:
        return {a: i for i, a in enumerate(self.addresses)}

    def subset(self, addresses: list[NeuronAddress]) -> TransferCurves:
        idx = self.index()
        rows = [idx[a] for a in addresses]
        return TransferCurves(self.kind, list(addresses), self.x.copy(), self.rates_hz[rows], self.rate_err_hz[rows], self.chip_s, dict(self.settings))

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


def measure_dc_curves(
    board: Board,
    addresses: list[NeuronAddress],
    dc_settings: list[tuple[int, int]],
    level_s: float = 0.4,
    settle_s: float = 0.1,
) -> TransferCurves:
    """f-I curves of ``addresses`` by stepping ``IF_DC_P`` of their cores through ``dc_settings``.

    Connections on the chip are cleared (only DC drives the neurons).  ``IF_DC_P`` is restored to
    its previous value afterwards, also when the measurement fails.
    """
    if not addresses:
        raise ValueError("no neurons to measure")
    cores = sorted({(a.chip, a.core) for a in addresses})
    chips = {c for c, _ in cores}
    previous = {(c, k): board.get_bias(c, k, "IF_DC_P") for c, k in cores}
    board.stop_spike_generator()
    board.clear_connections(sorted(chips))
    board.write_netlist(Netlist(monitored=set(addresses)))
    board.reset_timestamps()
    rates = np.zeros((len(addresses), len(dc_settings)))
    errs = np.zeros_like(rates)
    cursor_us = 0
    try:
        for p, (coarse, fine) in enumerate(dc_settings):
            for c, k in cores:
                board.set_bias(c, k, "IF_DC_P", coarse, fine)
            board.read_events(settle_s)
            events = board.read_events(level_s - settle_s)
            start_us = cursor_us + round(settle_s * 1e6)
            cursor_us += round(level_s * 1e6)
            r, e = window_rates(events, addresses, [(start_us, cursor_us)])
            rates[:, p], errs[:, p] = r[:, 0], e[:, 0]
    finally:
        for (c, k), v in previous.items():
            board.set_bias(c, k, "IF_DC_P", v.coarse, v.fine, v.high)
    x = np.array([nominal_current(c, f) for c, f in dc_settings])
    return TransferCurves("dc", list(addresses), x, rates, errs, len(dc_settings) * level_s,
                          {"dc_settings": [list(s) for s in dc_settings], "level_s": level_s, "settle_s": settle_s})


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
    """Time constants per neuron with their fit uncertainty and the chip time used."""

    kind: str
    addresses: list[NeuronAddress]
    tau_s: np.ndarray
    tau_err_s: np.ndarray
    chip_s: float


def measure_synaptic_tau(
    board: Board,
    addresses: list[NeuronAddress],
    synapse: SynapseType,
    input_rate_hz: float,
    multiplicity: int = 4,
    on_s: float = 0.25,
    off_s: float = 0.25,
    repeats: int = 8,
    bin_s: float = 0.005,
) -> TauMeasurement:
    """Synaptic time constant of every neuron from its rate's step response (excitatory types).

    The input switches on at the start of each ``on_s`` period; the PSTH over ``repeats`` is
    fitted with ``r_inf (1 - exp(-(t - d) / tau))`` (grid search over ``tau``, linear ``r_inf``).
    The rate follows the synaptic current when the soma's leak is weak and its rate is well
    above the rheobase, which is the regime of the converted network.

    Limitation (measured on the emulator): the fitted rise time includes the soma's integration
    to its first spikes, so it tracks the synaptic time constant in magnitude (population median)
    but does not resolve its per-neuron mismatch (7-10 % on silicon) at a few repetitions; use
    many repetitions, or the membrane monitor, for per-neuron synaptic time constants.
    """
    if not SynapseType(synapse).is_excitatory:
        raise ValueError("the step-response method needs an excitatory synapse (it reads the rise of the rate)")
    chip = addresses[0].chip
    probe = InputAddress(chip, PROBE_SOURCE)
    netlist = Netlist(monitored=set(addresses))
    mask = 0
    for a in addresses:
        netlist.add(probe, a, synapse, multiplicity)
        mask |= 1 << a.core
    board.stop_spike_generator()
    board.clear_connections([chip])
    board.write_netlist(netlist)
    period = on_s + off_s
    spikes: list[tuple[float, InputAddress, int]] = []
    for k in range(repeats):
        spikes += _regular_train(probe, mask, input_rate_hz, k * period, k * period + on_s, 0.0)
    total = repeats * period
    events = _run_program(board, _program(spikes), total)
    n_bins = int(round(on_s / bin_s))
    gid = np.array([a.chip * 1024 + a.core * 256 + a.neuron for a in addresses], np.int64)
    row_of = np.full(4096, -1, np.int64)
    row_of[gid] = np.arange(len(gid))
    rows = row_of[events.global_id]
    phase = (events.timestamp_us / 1e6) % period
    keep = (rows >= 0) & (phase < on_s)
    psth = np.zeros((len(addresses), n_bins))
    np.add.at(psth, (rows[keep], np.minimum((phase[keep] / bin_s).astype(int), n_bins - 1)), 1.0)
    psth /= repeats * bin_s
    t = (np.arange(n_bins) + 0.5) * bin_s
    taus = np.geomspace(bin_s / 2, on_s, 60)
    basis = 1.0 - np.exp(-t[None, :] / taus[:, None])  # [K, B]
    tau_fit, tau_err = np.full(len(addresses), np.nan), np.full(len(addresses), np.nan)
    for i in range(len(addresses)):
        y = psth[i]
        if y.sum() * bin_s * repeats < 20:
            continue
        amp = (basis @ y) / (basis * basis).sum(1)
        res = ((amp[:, None] * basis - y[None, :]) ** 2).sum(1)
        k = int(np.argmin(res))
        tau_fit[i] = taus[k]
        # uncertainty: the range of taus whose residual is within 10 % of the best (grid-limited)
        near = taus[res <= res[k] * 1.1]
        tau_err[i] = 0.5 * (near.max() - near.min()) if len(near) > 1 else taus[min(k + 1, len(taus) - 1)] - taus[k]
    return TauMeasurement(f"tau_{SynapseType(synapse).name}", list(addresses), tau_fit, tau_err, total)


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
