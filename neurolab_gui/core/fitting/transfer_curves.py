"""The transfer-curve type of NeuroLab, and rates of neurons in time windows of an event stream.

Rates are estimated from inter-spike intervals ``(n - 1) / (t_last - t_first)`` when a neuron
fired at least 3 times in a window (much finer than counts for regular firing), else from the
count.  The uncertainty given is the Poisson bound ``sqrt(max(n, 1)) / window`` - conservative
for the regular firing of a frozen-mismatch emulator, honest for noisy silicon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents


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
