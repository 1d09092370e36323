"""Board-level calibration without a network: per-core DC-curve tuning and per-neuron f-I curves.

:func:`calibrate_board` starts every listed core from a published bias set (reference §7,
``emulator.bias_sets``; on silicon the same values are simply written), tunes ``IF_RFR_N`` and
``IF_TAU1_N`` on the bias ladder so that the core population's median saturation rate and
rheobase reach the targets (:mod:`.bias_tuning`), then measures every neuron's f-I curve with an
``IF_DC_P`` sweep (all neurons of all cores at once) and fits gain, rheobase and refractory
period per neuron.  This is what ``neurolab calibrate`` does when no model is given.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.board_api import BiasValue, Board
from drivers.dynapse1.topology import check_chip, check_core

from .bias_tuning import TuningKnob, TuningResult, dc_targets_measure, tune_core_biases
from .measure import SaturationFit, TransferCurves, fit_saturation, measure_dc_curves, probe_neurons
from .profile import CalibrationProfile, NeuronCalibration
from .progress import CalibrationCancelled, ProgressReporter, ProgressSink, metered

#: IF_DC_P sweep used for the DC curves (libcaer coarse 5 = 820 pA full scale).
DEFAULT_DC_SWEEP: tuple[tuple[int, int], ...] = ((5, 20), (5, 40), (5, 70), (5, 110), (5, 170), (5, 250))


@dataclass
class BoardTargets:
    """Per-core population targets of a board calibration (None: not tuned)."""

    saturation_hz: float | None = 300.0  # 1 / t_ref, via IF_RFR_N
    rheobase_a: float | None = None  # nominal IF_DC_P current where firing starts, via IF_TAU1_N
    tolerance: float = 0.03


@dataclass
class BoardCalibration:
    """Result of :func:`calibrate_board`."""

    chip: int
    cores: list[int]
    tuning: TuningResult | None
    curves: TransferCurves
    fits: SaturationFit
    biases: dict[tuple[int, int, str], BiasValue]
    chip_s: float
    wall_s: float

    def gain_cv(self) -> float:
        g = self.fits.gain_hz_per_a[np.isfinite(self.fits.gain_hz_per_a)]
        return float(np.std(g) / np.mean(g)) if len(g) > 1 else float("nan")

    def summary(self) -> dict:
        return {
            "chip": self.chip,
            "cores": self.cores,
            "dc_gain_cv": self.gain_cv(),
            "median_saturation_hz": float(np.nanmedian(self.fits.saturation_hz)),
            "median_rheobase_a": float(np.nanmedian(self.fits.rheobase_a)),
            "neurons_fitted": int(np.isfinite(self.fits.gain_hz_per_a).sum()),
            "tuning_converged": None if self.tuning is None else self.tuning.converged,
            "tuning_rounds": None if self.tuning is None else self.tuning.rounds,
            "chip_s": self.chip_s,
        }

    def to_profile(self, serial: str, emulated: bool) -> CalibrationProfile:
        neurons = [
            NeuronCalibration(a.chip, a.core, a.neuron, float(self.fits.gain_hz_per_a[i]), float("nan"), float(self.fits.rheobase_a[i]))
            for i, a in enumerate(self.fits.addresses) if np.isfinite(self.fits.gain_hz_per_a[i])
        ]
        return CalibrationProfile(serial, dict(self.biases), neurons, [], self.chip_s, emulated=emulated, summary=self.summary())


def calibrate_board(
    board: Board,
    chip: int = 0,
    cores: list[int] | None = None,
    start_set: str = "samna_recommended",
    targets: BoardTargets | None = None,
    dc_sweep: tuple[tuple[int, int], ...] = DEFAULT_DC_SWEEP,
    max_rounds: int = 6,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> BoardCalibration:
    """Tune ``cores`` of ``chip`` from ``start_set`` to ``targets`` and measure per-neuron f-I curves.

    On cancellation the biases of the cores are restored to ``start_set`` and the connections of
    the chip cleared (a known state), then :class:`CalibrationCancelled` propagates.
    """
    from emulator.bias_sets import bias_set  # the published sets (data only; no emulator physics)

    check_chip(chip)
    cores = [check_core(c) for c in (cores if cores is not None else [0, 1, 2, 3])]
    targets = targets or BoardTargets()
    t0 = time.perf_counter()
    mboard = metered(board)
    report = ProgressReporter(progress, cancel, mboard)
    start = {(chip, core, name): BiasValue(c, f, h) for core in cores for name, (c, f, h) in bias_set(start_set).items()}
    keys = [(chip, core) for core in cores]
    try:
        report(0.0, "apply biases", f"published set {start_set!r} on cores {cores}")
        mboard.apply_bias_set(start)
        knobs = []
        if targets.saturation_hz is not None:
            knobs.append(TuningKnob("IF_RFR_N", targets.saturation_hz, 1.0, targets.tolerance))
        if targets.rheobase_a is not None:
            knobs.append(TuningKnob("IF_TAU1_N", targets.rheobase_a, 1.0, targets.tolerance))
        tuning = None
        if knobs:
            measure = dc_targets_measure(mboard, keys, list(dc_sweep))

            def on_round(k: int, values: dict) -> None:
                text = "; ".join(f"c{core[1]} " + ", ".join(f"{b} {v:.3g}" for b, v in vals.items() if b in {kn.bias for kn in knobs})
                                 for core, vals in values.items())
                report(0.8 * k / max_rounds, "tune core biases", f"round {k}: {text}", curves=measure.last_curves)

            tuning = tune_core_biases(mboard, keys, knobs, measure, max_rounds, on_round=on_round)
        report(0.8, "measure DC curves", "per-neuron f-I curves with the tuned biases")
        curves = measure_dc_curves(mboard, probe_neurons(chip, cores, exclude_core0_below=0), list(dc_sweep))
        fits = fit_saturation(curves)
        biases = {(c, k, n): mboard.get_bias(c, k, n) for (c, k, n) in start}
        result = BoardCalibration(chip, cores, tuning, curves, fits, biases, mboard.chip_s, time.perf_counter() - t0)
        report(1.0, "done", f"chip time {mboard.chip_s:.1f} s", curves=curves)
        return result
    except BaseException:
        board.stop_spike_generator()
        board.clear_connections([chip])
        board.apply_bias_set(start)
        if cancel is not None and cancel.is_set():
            raise CalibrationCancelled("calibration cancelled by the user") from None
        raise
