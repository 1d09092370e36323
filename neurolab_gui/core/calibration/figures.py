"""Before/after figures of a calibration (matplotlib with the Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..fitting.transfer_curves import TransferCurves


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _rows(curves: TransferCurves, addresses) -> np.ndarray:
    idx = curves.index()
    return curves.rates_hz[[idx[a] for a in addresses]]


def network_figures(result, out_dir: str | Path, accuracies: dict[str, float] | None = None) -> list[Path]:
    """Write the before/after figures of a :class:`~.engine.NetworkCalibration` into ``out_dir``.

    ``gain_histogram.png``: gains relative to target of the units' neurons before (nominal
    placement) and after (selected neurons, tuned biases); ``transfer_curves.png``: the AMPA
    transfer curves of those neurons; ``accuracy.png`` when ``accuracies`` is given.
    """
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    q = result.constrained.scale[result.constrained.unit_group]
    nominal = list(result.mapped_before.unit_addresses)
    g_before = result.fits_before["AMPA"].gains_of(nominal) / q
    g_after = result.fits_after["AMPA"].gains_of(result.selected) / q
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = np.linspace(0.4, 1.6, 49)
    ax.hist(g_before[np.isfinite(g_before)], bins, alpha=0.6, label=f"before (CV {result.gain_cv_before:.1%})")
    ax.hist(g_after[np.isfinite(g_after)], bins, alpha=0.6, label=f"after (CV {result.gain_cv_after:.1%})")
    ax.set_xlabel("AMPA gain / target")
    ax.set_ylabel("neurons in use")
    ax.legend()
    fig.tight_layout()
    paths.append(out / "gain_histogram.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(9, 4), sharey=True)
    for ax, curves, addrs, title in ((axes[0], result.curves_before["AMPA"], nominal, "before"),
                                     (axes[1], result.curves_after["AMPA"], result.selected, "after")):
        rates = _rows(curves, addrs)
        ax.plot(curves.x, rates.T, color="tab:blue", alpha=0.25, lw=0.8)
        ax.plot(curves.x, np.median(rates, 0), color="k", lw=2, label="median")
        ax.set_title(f"{title}: {len(addrs)} neurons in use")
        ax.set_xlabel("input drive (Hz per CAM copy)")
    axes[0].set_ylabel("output rate (Hz)")
    axes[0].legend()
    fig.tight_layout()
    paths.append(out / "transfer_curves.png")
    fig.savefig(paths[-1], dpi=100)
    plt.close(fig)

    if accuracies:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        names = list(accuracies)
        ax.bar(names, [accuracies[n] for n in names], color=["tab:gray", "tab:red", "tab:green"][: len(names)])
        ax.set_ylim(0, 1)
        ax.set_ylabel("test accuracy")
        for i, n in enumerate(names):
            ax.text(i, accuracies[n] + 0.02, f"{accuracies[n]:.3f}", ha="center")
        fig.tight_layout()
        paths.append(out / "accuracy.png")
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    return paths


def board_figures(result, out_dir: str | Path) -> list[Path]:
    """f-I curves and the DC-gain histogram of a :class:`~.board_calibration.BoardCalibration`."""
    plt = _pyplot()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    c = result.curves
    axes[0].plot(c.x * 1e9, c.rates_hz.T, color="tab:blue", alpha=0.05, lw=0.6)
    axes[0].plot(c.x * 1e9, np.median(c.rates_hz, 0), color="k", lw=2)
    axes[0].set_xlabel("IF_DC_P nominal current (nA)")
    axes[0].set_ylabel("rate (Hz)")
    g = result.fits.gain_hz_per_a[np.isfinite(result.fits.gain_hz_per_a)]
    axes[1].hist(g / np.median(g), 40)
    axes[1].set_xlabel(f"f-I gain / median (CV {result.gain_cv():.1%})")
    fig.tight_layout()
    path = out / "board_fi_curves.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return [path]
