"""Time constants per neuron: the result type and the inter-spike-interval fit of a synaptic tau.

:func:`fit_interval_tau` treats every inter-spike interval under a known input train as one
equation of an integrate-and-fire model driven by the synaptic current and fits the time
constant per neuron (see its docstring).  The probes that produce the data are in
:mod:`neurolab_gui.core.probing.taus`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.netlist import NeuronAddress


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
