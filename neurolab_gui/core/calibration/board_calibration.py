"""Board-level calibration without a network: per-core DC-curve tuning and per-neuron f-I curves.

:func:`calibrate_board` starts every listed core from a published bias set (reference §7,
``drivers.dynapse1.bias_sets``; on silicon the same values are simply written), tunes ``IF_RFR_N`` and
``IF_TAU1_N`` on the bias ladder so that the core population's median saturation rate and
rheobase reach the targets (:mod:`..probing.bias_tuning`), then measures every neuron's f-I curve with an
``IF_DC_P`` sweep (all neurons of all cores at once) and fits gain, rheobase and refractory
period per neuron.  With a synaptic time-constant target it then tunes ``NPDPIE_TAU_F_P`` (AMPA)
and ``NPDPII_TAU_S_P`` (GABA_B) per core the way the network calibration does
(:func:`.bias_tuning.tune_synaptic_taus`).  Published sets leave the synapses off, so during that
probe the two synapses' gain biases are set equal to their tau biases (gain ratio 1, the DPI's
linear regime) and their weights to :data:`PROBE_WEIGHT`; afterwards gains and weights go back to
the start set, only the tuned time constants stay.  Each neuron's refractory period from the DC
fits seeds the probe's dead time (the fit refines it within x0.5-1.5: the DC estimate is close but
biased, docs/decisions.md).  This is what ``neurolab calibrate`` does when no model is given.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass

import numpy as np

from drivers.dynapse1.board_api import BiasValue, Board
from drivers.dynapse1.topology import SynapseType, check_chip, check_core

from ..boards import restore_board
from ..conversion.mapping import EXCITATORY, GAIN_BIAS, INHIBITORY, TAU_BIAS, WEIGHT_BIAS
from ..fitting.fi import SaturationFit, fit_saturation
from ..fitting.transfer_curves import TransferCurves
from ..jobs import ProgressReporter, ProgressSink
from ..probing.bias_tuning import (
    TauProbeConfig,
    TauTuningResult,
    TuningKnob,
    TuningResult,
    dc_targets_measure,
    tune_core_biases,
    tune_synaptic_taus,
)
from ..probing.curves import measure_dc_curves, probe_neurons
from ..probing.taus import tau_probe_source_end
from .profile import CalibrationProfile, NeuronCalibration
from .progress import CalibrationCancelled, calibration_reporter, metered

#: IF_DC_P sweep used for the DC curves (libcaer coarse 5 = 820 pA full scale).
DEFAULT_DC_SWEEP: tuple[tuple[int, int], ...] = ((5, 20), (5, 40), (5, 70), (5, 110), (5, 170), (5, 250))
#: Time-constant, gain and weight bias of each synapse type the time-constant probe uses: the
#: converted networks' synapses (the conversion's one tau for both signs).
TAU_PROBE_SYNAPSES: dict[SynapseType, tuple[str, str, str]] = {
    s: (TAU_BIAS[s], GAIN_BIAS[s], WEIGHT_BIAS[s]) for s in (EXCITATORY, INHIBITORY)
}
#: Weight bias during the time-constant probe (libcaer coarse 3 = 3.2 nA full scale).  On the
#: emulator with samna_recommended, 4 sources at 150 Hz each drive a neuron at ~100 Hz; the probe
#: adapts its input rates to the chip, so this only has to be within an order of magnitude.
PROBE_WEIGHT = BiasValue(3, 100)
#: Input rate per probe source that the first round expects to give ``TauProbeConfig.low_hz``.
PROBE_START_RATE_HZ = 150.0
#: Highest saturation target (1 / t_ref) a calibration accepts: a refractory period of 0.1 ms, the
#: emulator's time step and ~10x the rates converted networks use (r_max 900 Hz).  Beyond it a
#: target is out of reach; below it a target the bias range cannot reach is reported as missed
#: (:meth:`BoardCalibration.targets_missed`).
MAX_SATURATION_HZ = 10_000.0
#: Relative distance from a target beyond which a tuned core counts as having missed it: well above
#: the tuning's tolerance (3 %) and the bias ladder's steps, so only a target the bias range cannot
#: reach is reported.
TARGET_MISSED_REL = 0.10


@dataclass
class BoardTargets:
    """Per-core population targets of a board calibration (None: not tuned)."""

    saturation_hz: float | None = 300.0  # 1 / t_ref, via IF_RFR_N
    rheobase_a: float | None = None  # nominal IF_DC_P current where firing starts, via IF_TAU1_N
    synaptic_tau_s: float | None = None  # AMPA and GABA_B time constants, via NPDPIE_TAU_F_P / NPDPII_TAU_S_P
    tolerance: float = 0.03

    def __post_init__(self) -> None:
        for name in ("saturation_hz", "rheobase_a", "synaptic_tau_s"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value > 0):
                raise ValueError(f"target {name} must be a finite number > 0 (or None: not tuned), got {value}")
        if self.saturation_hz is not None and self.saturation_hz > MAX_SATURATION_HZ:
            raise ValueError(f"target saturation_hz must be at most {MAX_SATURATION_HZ:g} Hz (a refractory period of "
                             f"{1e3 / MAX_SATURATION_HZ:g} ms), got {self.saturation_hz:g}")
        if self.synaptic_tau_s is not None and not 3e-3 <= self.synaptic_tau_s <= 0.2:
            raise ValueError(f"target synaptic_tau_s must be 3-200 ms (what the step probe resolves), got {self.synaptic_tau_s * 1e3:g} ms")


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
    tau: TauTuningResult | None = None  # synaptic time constants (with a tau target)
    targets: BoardTargets | None = None  # what the tuning aimed at

    def targets_missed(self, margin: float = TARGET_MISSED_REL) -> list[str]:
        """One line per core whose tuned saturation rate is further than ``margin`` (relative) from its
        target: the bias range ended before the target (the best setting found is kept)."""
        if self.tuning is None or self.targets is None or self.targets.saturation_hz is None:
            return []
        target = self.targets.saturation_hz
        missed = []
        for (chip, core), values in sorted(self.tuning.measured.items()):
            got = values.get("IF_RFR_N", float("nan"))
            if not (math.isfinite(got) and abs(got / target - 1.0) <= margin):
                missed.append(f"chip {chip} core {core}: saturation target {target:g} Hz not reached "
                              f"(closest {got:.1f} Hz)")
        return missed

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
            **(self.tau.summary() if self.tau is not None else {}),
        }

    def to_profile(self, serial: str, emulated: bool) -> CalibrationProfile:
        neurons = [
            NeuronCalibration(a.chip, a.core, a.neuron, float(self.fits.gain_hz_per_a[i]), float("nan"), float(self.fits.rheobase_a[i]))
            for i, a in enumerate(self.fits.addresses) if np.isfinite(self.fits.gain_hz_per_a[i])
        ]
        return CalibrationProfile(serial, dict(self.biases), neurons, [], self.chip_s, emulated=emulated, summary=self.summary())


def _tune_synaptic_taus(board: Board, chip: int, keys: list[tuple[int, int]], targets: BoardTargets, fits: SaturationFit,
                        start: dict[tuple[int, int, str], BiasValue], max_rounds: int, report: ProgressReporter) -> TauTuningResult:
    """The time-constant step of :func:`calibrate_board` (module docstring)."""
    assert targets.synaptic_tau_s is not None
    target = targets.synaptic_tau_s
    step_s = max(0.15, 5.0 * target)  # long enough for the current to settle, and to decay between steps
    probe = TauProbeConfig(on_s=step_s, off_s=step_s)
    for core_key in keys:  # the probe's synapses: gain = tau current, a moderate weight
        for tau_name, gain_name, weight_name in TAU_PROBE_SYNAPSES.values():
            v = board.get_bias(*core_key, tau_name)
            board.set_bias(*core_key, gain_name, v)
            board.set_bias(*core_key, weight_name, PROBE_WEIGHT)
    first_free = tau_probe_source_end(len(TAU_PROBE_SYNAPSES), probe.multiplicity)  # ids the probe's sources alias with on core 0
    addresses = probe_neurons(chip, [k for _, k in keys], exclude_core0_below=first_free)
    t_ref = {a: float(t) for a, t in zip(fits.addresses, fits.t_ref_s, strict=True) if np.isfinite(t) and t > 0}
    if not t_ref:
        raise ValueError("no neuron's refractory period could be fitted from the DC curves; the time-constant probe needs it")
    tau_biases = {syn: names[0] for syn, names in TAU_PROBE_SYNAPSES.items()}

    def on_round(k: int, values: dict) -> None:
        worst = max((abs(v / target - 1.0) for per in values.values() for v in per.values() if np.isfinite(v)), default=float("nan"))
        report(0.7 + 0.28 * k / max_rounds, "tune synaptic time constants", f"round {k}: worst tau error {worst:.1%} (target {target * 1e3:.1f} ms)")

    report(0.7, "tune synaptic time constants", f"{len(addresses)} neurons, AMPA and GABA_B, target {target * 1e3:.1f} ms")
    # start rates: PROBE_START_RATE_HZ per source gives ~ probe.low_hz; the rest scales with it
    start_hz = {syn: PROBE_START_RATE_HZ * probe.drive_hz(syn) / probe.low_hz for syn in tau_biases}
    step_hz = {syn: PROBE_START_RATE_HZ * (probe.high_hz - probe.low_hz) / probe.low_hz for syn in tau_biases}
    result = tune_synaptic_taus(board, keys, addresses, target, tau_biases, step_hz, start_hz, t_ref, probe, targets.tolerance,
                                max_rounds, on_round)
    for c, k in keys:  # the probe's synapses back to the start set; the tuned time constants stay
        for _, gain_name, weight_name in TAU_PROBE_SYNAPSES.values():
            for name in (gain_name, weight_name):
                v = start[(c, k, name)]
                board.set_bias(c, k, name, v)
    return result


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

    On cancellation or an error every bias of the cores gets back the value (flags included) the
    board held when the call started, the spike generator is stopped and the connections of the
    chip cleared (the measurements replaced them), then the exception propagates
    (:class:`CalibrationCancelled` when cancelled).  Writing a network back is the caller's: it
    knows which one was there (:func:`~neurolab_gui.core.workflows.calibrate_cores`).
    """
    from drivers.dynapse1.bias_sets import bias_set
    from drivers.dynapse1.bias_table import CORE_BIASES

    check_chip(chip)
    # a core named twice is calibrated once (it would be measured twice for nothing)
    cores = list(dict.fromkeys(check_core(c) for c in (cores if cores is not None else [0, 1, 2, 3])))
    targets = targets or BoardTargets()
    t0 = time.perf_counter()
    mboard = metered(board)
    report = calibration_reporter(progress, cancel, mboard)
    start = {(chip, core, name): BiasValue(c, f, h) for core in cores for name, (c, f, h) in bias_set(start_set).items()}
    # what a cancel puts back: the board's own values, not the start set (the user's biases)
    entry = {(chip, core, name): board.get_bias(chip, core, name) for core in cores for name in CORE_BIASES}
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
                report(0.6 * k / max_rounds, "tune core biases", f"round {k}: {text}", curves=measure.last_curves)

            tuning = tune_core_biases(mboard, keys, knobs, measure, max_rounds, on_round=on_round)
        report(0.6, "measure DC curves", "per-neuron f-I curves with the tuned biases")
        curves = measure_dc_curves(mboard, probe_neurons(chip, cores, exclude_core0_below=0), list(dc_sweep))
        fits = fit_saturation(curves)
        tau = None
        if targets.synaptic_tau_s is not None:
            tau = _tune_synaptic_taus(mboard, chip, keys, targets, fits, start, max_rounds, report)
        biases = {(c, k, n): mboard.get_bias(c, k, n) for (c, k, n) in start}
        result = BoardCalibration(chip, cores, tuning, curves, fits, biases, mboard.chip_s, time.perf_counter() - t0, tau,
                                  targets)
        report(1.0, "done", f"chip time {mboard.chip_s:.1f} s", curves=curves)
        return result
    except BaseException:
        restore_board(board, entry, [chip])
        if cancel is not None and cancel.is_set():
            raise CalibrationCancelled("calibration cancelled by the user") from None
        raise
