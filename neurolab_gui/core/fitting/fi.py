"""f-I fits: per-neuron gains of a transfer curve, their spread, and the refractory saturation.

* :func:`fit_gains` - a weighted straight line per neuron through the points in the operating
  range, after undoing the refractory compression; :class:`GainFit` holds the gains and their
  statistics across neurons (coefficient of variation).
* :func:`fit_saturation` - the refractory period from DC curves: ``rate = f0 / (1 + f0 t_ref)``
  with ``f0`` linear in the current.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.netlist import NeuronAddress

from .transfer_curves import TransferCurves


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
        # Every candidate rheobase at once, by the closed-form straight-line fit: one numpy pass
        # instead of 40 lstsq calls per neuron (each of which released and re-took the GIL, which
        # starved the GUI thread for 0.1-0.2 s while a calibration fitted a core).
        candidates = np.linspace(lo, firing_min * 0.999, 40)
        u = 1.0 / (xs[None, :] - candidates[:, None])  # (candidate, level)
        du = u - u.mean(axis=1, keepdims=True)
        dv = inv - inv.mean()
        with np.errstate(divide="ignore", invalid="ignore"):
            slope = (du * dv).sum(axis=1) / (du * du).sum(axis=1)
        intercept = inv.mean() - slope * u.mean(axis=1)
        res = (((slope[:, None] * u + intercept[:, None]) - inv) ** 2).sum(axis=1)
        usable = np.isfinite(res) & (slope > 0)
        if usable.any():
            k = int(np.argmin(np.where(usable, res, np.inf)))
            a_out[i], t_ref[i], rh[i] = 1.0 / slope[k], intercept[k], candidates[k]
    with np.errstate(divide="ignore", invalid="ignore"):
        sat = np.where(t_ref > 0, 1.0 / t_ref, np.nan)
    return SaturationFit(list(curves.addresses), t_ref, sat, rh, a_out)
