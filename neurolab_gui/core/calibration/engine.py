"""The closed-loop calibration of a converted network on a board (silicon or emulator alike).

:func:`calibrate_network` runs :data:`NETWORK_CALIBRATION_STEPS`, named steps over one
:class:`CalibrationState`, through the Board API only:

1. :func:`apply_nominal_biases`: the network's nominal bias set.
2. :func:`tune_time_constants`: each core's synaptic time-constant biases (``NPDPIE_TAU_F_P`` for
   AMPA, ``NPDPII_TAU_S_P`` for GABA_B) until the core population's median tau is the
   conversion's ``time.tau_s``.  First, because a synapse's mean current is
   ``rate * tau * jump``: weights tuned before would be off again.  Both types are measured in
   one run on alternate neurons (:func:`..probing.taus.measure_synaptic_taus`), GABA_B measured rather
   than copied from AMPA since the two DPI circuits have their own bias-generator mismatch; the
   gain biases stay nominal and the weight tuning absorbs the small change of gain.
3. :func:`tune_refractory_periods`: each core's ``IF_RFR_N`` until the units' median effective
   ``t_ref`` (fitted on DC f-I curves) is the model's, so units saturate like its activation
   (:func:`neurolab_gui.core.conversion.transfer.match_refractory`, the conversion's search).
4. :func:`tune_weights_to_population`: each core's AMPA and GABA_B weight biases until the
   median gain of its neurons is the copy weight ``q`` (:mod:`..probing.bias_tuning`, a ladder search),
   each round measuring every neuron of every core at once (:class:`_SynapticProbe`).
5. :func:`measure_before_compensation`: the "before" state (nominal neurons, tuned core biases).
6. :func:`select_on_pooled_gains`: a first choice of the best-matched neurons
   (:func:`.compensation.select_neurons`) on relative gains pooled over step 4's rounds.
7. :func:`tune_weights_to_selection`: the weight biases again, for the selected neurons' median.
8. :func:`select_at_final_biases`: the final choice, at the final biases, of the neurons nearest
   the target gains, weighing the inhibitory match as far as the excitatory gain CV's budget
   allows (:func:`.compensation.select_within_budget`).
9. :func:`measure_after_compensation`: a separate "after" measurement (measured, not predicted).
10. :func:`fit_unit_transfer`: the units' transfer functions (both runs at the final biases
    pooled) and the before/after gain CVs.
11. :func:`run_chip_in_the_loop` (with a task): CAM-multiplicity compensation, then the network
    itself on the board: each core's two weight biases scaled together until the units' features
    follow the hardware model's (:func:`_match_network_gains`), then fine-tuning with the
    measured transfer, redeployed and kept while it validates better (:func:`_in_the_loop`).

Why each choice, with the measurements behind it: ``docs/decisions.md``.

Cancellation (``cancel.set()``) stops at the next progress report and leaves the board in a known state: the
spike generator stopped, the chip's connections cleared and the biases of the calibrated cores
back to what they were when the calibration started.

Gain definitions: a neuron's gain is the slope of its rate (refractory compression undone with
the network's nominal ``t_ref``) against its input drive in Hz per CAM copy, over the operating
range (output 20-120 Hz by default); the *effective gain CV* reported is the excitatory (AMPA)
gain's, the inhibitory one is reported beside it.
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.board_api import BiasValue, Board
from drivers.dynapse1.netlist import NeuronAddress

from ..boards import restore_board
from ..conversion.constrain import ConstrainedNetwork, qat_epochs_for
from ..conversion.deployment import network_fingerprint
from ..conversion.mapping import EXCITATORY, INHIBITORY, TAU_BIAS, WEIGHT_BIAS, MappedNetwork, map_network
from ..conversion.pipeline import DEFAULT_SPIKE_FANO
from ..conversion.tasks import Task
from ..conversion.training import TrainConfig, evaluate, readout_features
from ..conversion.transfer import RefractoryFit, match_refractory
from ..fitting.fi import GainFit, fit_gains
from ..fitting.transfer_curves import TransferCurves
from ..jobs import CostPlan, ProgressReporter, ProgressSink
from ..probing.bias_tuning import (
    TauProbeConfig,
    TauStatistics,
    TauTuningResult,
    TuningKnob,
    TuningResult,
    tune_core_biases,
    tune_synaptic_taus,
)
from ..probing.curves import measure_synaptic_curves, probe_neurons
from ..probing.taus import tau_probe_source_end
from .compensation import (
    READOUT_RULES,
    UnitTransfer,
    compensate_multiplicities,
    fine_tune,
    hardware_model,
    refit_readout_cv,
    relocate_units,
    select_neurons,
    select_within_budget,
    unit_affine_readout,
    with_multiplicities,
)
from .progress import MeteredBoard, calibration_reporter

#: What the chip-in-the-loop stage does to the readout with its board samples (CalibrationConfig.readout_correction).
READOUT_CORRECTIONS = ("refit", "unit_affine")


@dataclass
class CalibrationConfig:
    """Choices of a network calibration; defaults are the ones the benchmark uses."""

    multiplicity: int = 4  # CAM copies of the probe source (well below the ~8-copy saturation)
    exc_levels_hz: tuple[float, ...] = (20.0, 45.0, 70.0, 95.0, 120.0)  # target output f0 per level
    inh_drive_hz: float = 150.0  # f0 of the AMPA drive under the inhibition probe
    inh_levels_hz: tuple[float, ...] = (15.0, 40.0, 65.0, 90.0, 110.0)  # f0 decrease per level
    level_s: float = 0.5
    settle_s: float = 0.1
    min_rate_hz: float = 5.0
    weight_rounds: int = 4
    weight_tolerance: float = 0.01
    tune_tau: bool = True  # tune_time_constants: synaptic time constants to the conversion's tau
    #: tune_refractory_periods: each core's refractory bias to the model's saturation
    #: (conversion.transfer.match_refractory), on a shorter DC probe than the conversion's (6 levels of 0.3 s)
    tune_refractory: bool = True
    #: spike-count noise of the chip-in-the-loop fine-tuning, as in the conversion's training: without
    #: it the fine-tune gives up the margins the network was trained with (docs/decisions.md)
    spike_fano: float = DEFAULT_SPIKE_FANO
    #: the hardware model's units emit whole spikes (``UnitTransfer.spikes_per_step``, ``RateRNN.spikes_per_step``)
    #: in the fine-tune, the network-level gain matching and the choices made on the model: the board's
    #: first-spike latency and count rounding, which a rate model misses (docs/decisions.md, "Hardware model in
    #: whole spikes")
    whole_spikes: bool = True
    refractory_currents_a: tuple[float, ...] = tuple(float(c) for c in np.geomspace(2.5e-10, 1.6e-8, 6))
    tau_rounds: int = 5
    tau_tolerance: float = 0.02  # below one ladder rung there (~3 % at fine 35): the search stops when bracketed
    tau_probe: TauProbeConfig = field(default_factory=TauProbeConfig)
    inhibitory_weight: float = 0.05  # of the first selection (select_on_pooled_gains), see compensation.select_neurons
    #: the final selection's budget for the excitatory gain CV (select_at_final_biases, compensation.select_within_budget):
    #: half a point under the 3 % target, for the difference between the selection's run and the "after" one
    selection_gain_cv_budget: float = 0.025
    #: lr 3e-3, because a smaller rate left the CAM multiplicities unchanged (only the readout learned);
    #: 12 epochs or more (``fine_tune_min_steps``), the best on the held-out model validation kept (docs/decisions.md,
    #: compensation.fine_tune)
    fine_tune: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=12, lr=3e-3, noise_std=0.05))
    #: the fine-tune's epochs are raised until it runs at least this many optimizer steps (at most 4x
    #: ``fine_tune.epochs``; conversion.constrain.qat_epochs_for): 12 epochs are 660 steps on MNIST-1D's
    #: 3,500 fit sequences but 180 on sequential digits' 959 (docs/decisions.md, "Fine-tuning: 12 epochs,
    #: at least 300 optimizer steps"); 0 keeps the epochs as set
    fine_tune_min_steps: int = 300
    #: chip time of the whole calibration (measurement + loop) the chip-in-the-loop stage plans its
    #: board samples for: what is left after the measurement goes to the network-level gain matching
    #: (``gain_match_share`` of it) and the readout's board samples (the rest)
    chip_budget_s: float = 115.0
    gain_match_share: float = 0.55
    #: _match_network_gains: most board samples per round (fewer when the budget says so; 0: off), rounds, tolerance
    n_gain_match: int = 40
    gain_match_rounds: int = 3
    gain_match_tolerance: float = 0.02
    #: _match_network_gains steps each core's weight biases by (target / slope) ** (1 / exponent) with this exponent,
    #: not one estimated from consecutive rounds: every round runs other samples, so the change of slope between
    #: rounds is mostly the samples' (MNIST-1D, 3 of 3 calibrations: round 2 at slopes 1.00-1.10, round 3 down to 0.84-0.92 on
    #: 1-3 of the 4 cores; docs/decisions.md, "Network gain matching: a fixed step exponent")
    gain_match_exponent: float = 1.0
    #: fine-tune the compensated network with the measured transfer (host only) and keep it when it
    #: validates better on the held-out samples by more than ``min_improvement``
    fine_tune_in_loop: bool = True
    min_improvement: float = 0.0
    #: training samples held out from the fine-tuning to choose between the networks and the best epoch (host only)
    n_model_validation: int = 500
    #: most board samples the readout is re-fitted on (those the gain matching ran at the final biases count)
    n_readout_fit: int = 400
    refit_readout: bool = True
    #: how the refit's pull towards the float readout is chosen (compensation.choose_readout_l2): "one_se"
    #: keeps the float readout unless a refit beats it by more than the cross-validation resolves
    readout_rule: str = "one_se"
    #: "unit_affine": instead of the refit, undo each unit's affine map from the hardware model's features
    #: to the board's on the same samples (compensation.unit_affine_readout); "refit": the refit above.
    #: On the same board runs it won +1.1 pp on sequential digits (old model), then with the longer fine-tune
    #: 0.0 / -0.6 pp (sequential digits) and -0.8 / +1.4 pp (MNIST-1D); ECG not measured (docs/decisions.md),
    #: hence off by default
    readout_correction: str = "refit"
    seed: int = 0


@dataclass
class ReadoutFitSamples:
    """Board samples a readout was re-fitted on, and the readout they started from."""

    features: np.ndarray  # [N, H] board features of training samples at the final biases
    labels: np.ndarray  # [N]
    weight: np.ndarray  # [C, H] readout before the refit
    bias: np.ndarray  # [C]
    model_features: np.ndarray | None = None  # [N, H] the hardware model's features of the same samples


@dataclass
class NetworkCalibration:
    """Everything a network calibration produced (see :func:`calibrate_network`)."""

    mapped: MappedNetwork  # final network on the selected neurons with the tuned biases
    #: the uncompensated network (nominal neurons, core weight biases tuned to the population,
    #: with the tuned synaptic time constants the weights were tuned under): the state
    #: transfer-curve matching alone reaches, for before/after comparisons
    mapped_before: MappedNetwork
    constrained: ConstrainedNetwork  # final (fine-tuned) constrained network
    selected: list[NeuronAddress]
    curves_before: dict[str, TransferCurves]
    curves_after: dict[str, TransferCurves]
    fits_before: dict[str, GainFit]
    fits_after: dict[str, GainFit]
    transfer: UnitTransfer
    gain_cv_before: float
    gain_cv_after: float
    inh_gain_cv_before: float
    inh_gain_cv_after: float
    chip_s_measurement: float
    chip_s_loop: float
    #: the excitatory gain CV of the selected neurons in the run they were selected on (flattered
    #: by the selection; ``gain_cv_after`` comes from a separate run, the difference is measurement noise)
    gain_cv_at_selection: float = float("nan")
    #: the inhibitory match's weight in the final selection (compensation.select_within_budget)
    selection_inhibitory_weight: float = float("nan")
    #: tune_refractory_periods: effective refractory period per core at the kept IF_RFR_N (empty when switched off)
    refractory: list[RefractoryFit] = field(default_factory=list)
    loop_history: list[dict] = field(default_factory=list)
    #: _match_network_gains: per round, each core's regression slope of the board's features on the hardware
    #: model's ("chip/core" -> slope; 1 = the network reproduces the model)
    network_gain_match: list[dict[str, float]] = field(default_factory=list)
    weight_biases: dict[str, list[int]] = field(default_factory=dict)
    wall_s: float = 0.0
    #: tune_time_constants: the synaptic time constants' tuning (None when it is switched off)
    tau: TauTuningResult | None = None
    #: conversion.deployment.network_fingerprint of the network calibrated (the profile keeps the
    #: compensated network for it)
    network_fingerprint: str = ""
    #: the readout refit's inputs: board features and labels of the training samples and the readout
    #: before the refit (None when no refit ran); kept so a readout choice can be re-made on the host
    readout_fit: ReadoutFitSamples | None = None

    @property
    def chip_s(self) -> float:
        return self.chip_s_measurement + self.chip_s_loop

    @property
    def chip_seconds_total(self) -> float:
        """Board time the whole calibration ran the chip (measurement + loop): what a person waits at the bench."""
        return self.chip_s

    @property
    def tau_before(self) -> dict[tuple[int, int], dict[str, TauStatistics]]:
        """Population synaptic tau per core and synapse type with the nominal biases (empty: tune_tau off)."""
        return self.tau.before if self.tau is not None else {}

    @property
    def tau_after(self) -> dict[tuple[int, int], dict[str, TauStatistics]]:
        """Population synaptic tau per core and synapse type with the tuned biases (empty: tune_tau off)."""
        return self.tau.after if self.tau is not None else {}

    def summary(self) -> dict:
        return {
            **(self.tau.summary() if self.tau is not None else {}),
            "gain_cv_before": self.gain_cv_before,
            "gain_cv_after": self.gain_cv_after,
            "inh_gain_cv_before": self.inh_gain_cv_before,
            "inh_gain_cv_after": self.inh_gain_cv_after,
            "gain_cv_at_selection": self.gain_cv_at_selection,
            "selection_inhibitory_weight": self.selection_inhibitory_weight,
            "t_ref_ms_after": {f"{f.chip}/{f.core}": round(f.t_ref_s * 1e3, 4) for f in self.refractory},
            "t_ref_ms_target": self.refractory[0].target_s * 1e3 if self.refractory else None,
            "chip_s_measurement": self.chip_s_measurement,
            "chip_s_loop": self.chip_s_loop,
            "chip_seconds_total": self.chip_seconds_total,
            "network_gain_match": self.network_gain_match,
            "loop": self.loop_history,
            "weight_biases": self.weight_biases,
            "wall_s": self.wall_s,
        }


def relative_cv(gains: np.ndarray, targets: np.ndarray) -> float:
    """CV of ``gains / targets`` (a unit's gain relative to what its core group asks for).

    Neurons without a valid fit (nan) count as missing; they are reported by the callers.
    """
    rel = np.asarray(gains, float) / np.asarray(targets, float)
    rel = rel[np.isfinite(rel)]
    return float(np.std(rel) / np.mean(rel)) if len(rel) > 1 else float("nan")


def _group_of_core(mapped: MappedNetwork) -> dict[tuple[int, int], int]:
    return {gc: g for g, gc in enumerate(mapped.group_cores)}


class _SynapticProbe:
    """Measures AMPA and GABA_B curves of all neurons of the network's cores at once."""

    def __init__(self, board: Board, mapped: MappedNetwork, scales: np.ndarray, cfg: CalibrationConfig) -> None:
        self.board, self.mapped, self.cfg = board, mapped, cfg
        self.addresses = _probe_addresses(mapped.group_cores, max(mapped.n_sources + 1, 3 + cfg.multiplicity))
        self.q = float(np.median(scales))  # one probe source for all cores: levels from the median q
        self.t_ref = float(mapped.settings.t_ref_s)

    def run(self) -> tuple[dict[str, TransferCurves], dict[str, GainFit]]:
        cfg, m = self.cfg, self.cfg.multiplicity
        exc_rates = [lvl / self.q / m for lvl in cfg.exc_levels_hz]
        exc = measure_synaptic_curves(self.board, self.addresses, EXCITATORY, exc_rates, m, level_s=cfg.level_s, settle_s=cfg.settle_s)
        drive_x = cfg.inh_drive_hz / self.q
        m_drive = int(np.clip(np.ceil(drive_x / 250.0), 1, 64 - m))
        inh_rates = [lvl / self.q / m for lvl in cfg.inh_levels_hz]
        inh = measure_synaptic_curves(self.board, self.addresses, INHIBITORY, inh_rates, m, drive_x / m_drive, m_drive,
                                      level_s=cfg.level_s, settle_s=cfg.settle_s)
        fits = {
            "AMPA": fit_gains(exc, self.t_ref, cfg.min_rate_hz),
            "GABA_B": fit_gains(inh, self.t_ref, cfg.min_rate_hz, inhibitory=True),
        }
        return {"AMPA": exc, "GABA_B": inh}, fits


def pool_relative_gains(fits: list[GainFit]) -> GainFit:
    """One fit from several measurements of the same neurons at different core weight biases.

    A core's weight bias scales all its neurons alike, so each neuron's gain *relative to its
    core's median* is a property of the neuron; it is averaged over the measurements and put
    back on the scale of the last one.  A neuron is valid where it was valid in every
    measurement.  The uncertainty is the spread of the relative gains over the measurements.
    """
    if not fits:
        raise ValueError("no measurements to pool")
    last = fits[-1]
    for f in fits:
        if f.addresses != last.addresses:
            raise ValueError("measurements of different neurons cannot be pooled")
    cores = np.array([(a.chip, a.core) for a in last.addresses])
    core_key = cores[:, 0] * 4 + cores[:, 1]
    valid = np.logical_and.reduce([f.valid for f in fits])

    def relative(f: GainFit) -> np.ndarray:
        rel = np.full(len(f.gain), np.nan)
        for key in np.unique(core_key):
            rows = (core_key == key) & valid
            if rows.any():
                rel[core_key == key] = f.gain[core_key == key] / np.median(f.gain[rows])
        return rel

    rel = np.array([relative(f) for f in fits])
    scale = np.ones(len(last.gain))
    for key in np.unique(core_key):
        rows = (core_key == key) & valid
        if rows.any():
            scale[core_key == key] = np.median(last.gain[rows])
    spread = rel.std(0, ddof=1) / np.sqrt(len(fits)) if len(fits) > 1 else last.gain_err / np.where(scale > 0, scale, 1.0)
    return GainFit(list(last.addresses), rel.mean(0) * scale, spread * scale, last.offset.copy(), valid)


def _probe_addresses(cores: list[tuple[int, int]], exclude_core0_below: int) -> list[NeuronAddress]:
    """Every probe neuron of the network's ``(chip, core)`` s, on every chip it spans."""
    chips = sorted({c for c, _ in cores})
    return [a for c in chips for a in probe_neurons(c, sorted({k for cc, k in cores if cc == c}), exclude_core0_below=exclude_core0_below)]


def deploy(mapped_template: MappedNetwork, net: ConstrainedNetwork, selected: list[NeuronAddress]) -> MappedNetwork:
    """``net`` mapped like ``mapped_template`` (time, settings, tuned biases) onto ``selected`` neurons."""
    fresh = map_network(net, copy.deepcopy(mapped_template.time), copy.deepcopy(mapped_template.settings),
                        placement=(mapped_template.unit_addresses, mapped_template.group_cores))
    fresh.biases = dict(mapped_template.biases)
    return relocate_units(fresh, selected)


@dataclass
class CalibrationState:
    """What the steps of :func:`calibrate_network` share: the inputs, and what each step leaves for the next.

    ``work`` is the network being calibrated (a copy of the caller's ``mapped``): the steps write
    the biases they tune into ``work.biases``, so the deployed network and ``mapped_before`` run
    with them.
    """

    board: MeteredBoard
    net: ConstrainedNetwork
    mapped: MappedNetwork
    work: MappedNetwork
    task: Task | None
    cfg: CalibrationConfig
    report: ProgressReporter
    probe: _SynapticProbe
    cores: list[tuple[int, int]]
    group_of: dict[tuple[int, int], int]
    t_start: float
    #: each step's expected cost (:func:`plan_network_calibration`): where its reports land on [0, 1]
    plan: CostPlan
    # --- left by the steps, in order
    tau: TauTuningResult | None = None
    refractory: list[RefractoryFit] = field(default_factory=list)
    #: the neurons whose median gain the weight tuning aims at (None: every probed neuron)
    members: list[NeuronAddress] | None = None
    #: the probe's fits of every weight-tuning round, and its last curves (shown live)
    history: list[dict[str, GainFit]] = field(default_factory=list)
    last_curves: dict[str, TransferCurves] | None = None
    curves_before: dict[str, TransferCurves] = field(default_factory=dict)
    fits_before: dict[str, GainFit] = field(default_factory=dict)
    mapped_before: MappedNetwork | None = None
    weight_tuning: TuningResult | None = None
    fits_final: dict[str, GainFit] = field(default_factory=dict)
    selected: list[NeuronAddress] = field(default_factory=list)
    inhibitory_weight: float = float("nan")
    curves_after: dict[str, TransferCurves] = field(default_factory=dict)
    fits_after: dict[str, GainFit] = field(default_factory=dict)
    chip_s_measurement: float = 0.0
    result: NetworkCalibration | None = None

    def measure_weight_ratios(self) -> dict[tuple[int, int], dict[str, float]]:
        """One probe run: per core, the members' median AMPA and GABA_B gain over the core's copy weight."""
        self.last_curves, fits = self.probe.run()
        self.history.append(fits)
        out = {}
        for core in self.cores:
            q = float(self.net.scale[self.group_of[core]])
            members = [a for a in (self.members or self.probe.addresses) if (a.chip, a.core) == core]
            out[core] = {
                WEIGHT_BIAS[EXCITATORY]: float(np.nanmedian(fits["AMPA"].gains_of(members))) / q,
                WEIGHT_BIAS[INHIBITORY]: float(np.nanmedian(fits["GABA_B"].gains_of(members))) / q,
            }
        return out

    def at(self, step: str, local: float = 0.0) -> float:
        """The overall fraction when ``step`` (a step function's name, or a part of the loop) is ``local`` done."""
        return self.plan.at(step, local)

    def weight_round_reporter(self, step: str, what: str) -> Callable[[int, dict], None]:
        """``on_round`` of a weight-bias tuning: the worst gain error, with the curves just measured."""

        def report_round(k: int, values: dict) -> None:
            worst = max((abs(v - 1.0) for per in values.values() for v in per.values() if np.isfinite(v)), default=float("nan"))
            self.report(self.at(step, k / self.cfg.weight_rounds), f"tune weight biases ({what})",
                        f"round {k}: worst gain error {worst:.2%}", curves=self.last_curves)

        return report_round


def _weight_knobs(cfg: CalibrationConfig) -> list[TuningKnob]:
    return [TuningKnob(WEIGHT_BIAS[EXCITATORY], 1.0, 1.0, cfg.weight_tolerance),
            TuningKnob(WEIGHT_BIAS[INHIBITORY], 1.0, 1.0, cfg.weight_tolerance)]


def apply_nominal_biases(s: CalibrationState) -> None:
    """Write the network's nominal bias set (the starting point of every tuning)."""
    s.report(s.at("apply_nominal_biases"), "apply biases", "writing the network's nominal bias set")
    s.board.apply_bias_set(s.work.biases)


def tune_time_constants(s: CalibrationState) -> None:
    """Tune each core's AMPA and GABA_B tau biases to the conversion's ``time.tau_s`` (module docstring).

    First because a synapse's mean current is ``rate * tau * jump``: weights tuned before would be
    off again.  The kept settings go into ``work.biases``.
    """
    if not s.cfg.tune_tau:
        return
    cfg, work, report = s.cfg, s.work, s.report
    target = work.time.tau_s
    probe_cfg = cfg.tau_probe
    m = probe_cfg.multiplicity
    # every neuron of the used cores except, on core 0, the ids the network's and the probe's
    # FPGA sources alias with (the probe uses m step and m drive sources per synapse type)
    first_free = max(work.n_sources + 1, tau_probe_source_end(2, m))
    addresses = _probe_addresses(s.cores, first_free)
    q = float(np.median(s.net.scale))  # nominal copy weight: input rates for the aimed-at output rates
    types = (EXCITATORY, INHIBITORY)
    step_hz = {t: (probe_cfg.high_hz - probe_cfg.low_hz) / q / m for t in types}
    drive_hz = {t: probe_cfg.drive_hz(t) / q / m for t in types}

    def on_round(k: int, values: dict) -> None:
        worst = max((abs(v / target - 1.0) for per in values.values() for v in per.values() if np.isfinite(v)), default=float("nan"))
        report(s.at("tune_time_constants", k / cfg.tau_rounds), "tune synaptic time constants",
               f"round {k}: worst tau error {worst:.1%} (target {target * 1e3:.1f} ms)")

    report(s.at("tune_time_constants"), "tune synaptic time constants", f"{len(addresses)} neurons, AMPA and GABA_B, target {target * 1e3:.1f} ms")
    s.tau = tune_synaptic_taus(s.board, s.cores, addresses, target, {t: TAU_BIAS[t] for t in types}, step_hz, drive_hz,
                               work.settings.t_ref_s, probe_cfg, cfg.tau_tolerance, cfg.tau_rounds, on_round)
    for chip, core in s.cores:
        for t in types:
            work.biases[(chip, core, TAU_BIAS[t])] = s.board.get_bias(chip, core, TAU_BIAS[t])


def tune_refractory_periods(s: CalibrationState) -> None:
    """Tune each core's ``IF_RFR_N`` until the units saturate like the model's activation.

    The same search the conversion runs (:func:`neurolab_gui.core.conversion.transfer.match_refractory`),
    on a shorter DC probe (``cfg.refractory_currents_a``, 0.3 s levels).
    """
    if not s.cfg.tune_refractory:
        return
    s.report(s.at("tune_refractory_periods"), "tune refractory period", f"DC f-I curves of the units, target t_ref {s.work.settings.t_ref_s * 1e3:.3f} ms")
    s.refractory = match_refractory(s.board, s.work, currents_a=s.cfg.refractory_currents_a, level_s=0.3, settle_s=0.1,
                                    cancel=s.report.cancel)
    s.report(s.at("tune_refractory_periods", 1.0), "tune refractory period", "t_ref/target per core: " + ", ".join(
        f"{f.core}: {f.t_ref_s / f.target_s:.3f}" for f in s.refractory))


def tune_weights_to_population(s: CalibrationState) -> None:
    """Tune each core's two weight biases until the median gain of all its neurons is the copy weight.

    What transfer-curve matching alone does; its rounds' measurements feed the first selection.
    """
    s.report(s.at("tune_weights_to_population"), "measure transfer curves", f"{len(s.probe.addresses)} neurons, AMPA and GABA_B")
    tune_core_biases(s.board, s.cores, _weight_knobs(s.cfg), s.measure_weight_ratios, s.cfg.weight_rounds,
                     on_round=s.weight_round_reporter("tune_weights_to_population", "population"))


def measure_before_compensation(s: CalibrationState) -> None:
    """The "before" state: every neuron measured with nominal neurons and the population-tuned biases."""
    s.curves_before, s.fits_before = s.probe.run()
    s.mapped_before = copy.deepcopy(s.work)
    for (c, k, name) in list(s.mapped_before.biases):
        if name.startswith("PS_WEIGHT"):
            s.mapped_before.biases[(c, k, name)] = s.board.get_bias(c, k, name)
    s.report(s.at("measure_before_compensation", 1.0), "measure transfer curves", "before per-neuron compensation", curves=s.curves_before)


def select_on_pooled_gains(s: CalibrationState) -> None:
    """First choice of the best-matched neurons (:func:`.compensation.select_neurons`).

    Every population-tuning round measured all neurons: their relative gains are pooled (the
    first round's far-off biases left out), which lowers the measurement noise at no chip time.
    """
    pooled = s.history[1:] + [s.fits_before]
    s.selected = select_neurons(s.work, pool_relative_gains([f["AMPA"] for f in pooled]),
                                pool_relative_gains([f["GABA_B"] for f in pooled]), s.cfg.inhibitory_weight)
    s.members = s.selected
    s.report(s.at("select_on_pooled_gains", 1.0), "select neurons", f"{len(s.selected)} best-matched neurons chosen")


def tune_weights_to_selection(s: CalibrationState) -> None:
    """Tune the weight biases again so that the *selected* neurons' median gain is the copy weight."""
    s.weight_tuning = tune_core_biases(s.board, s.cores, _weight_knobs(s.cfg), s.measure_weight_ratios, s.cfg.weight_rounds,
                                       on_round=s.weight_round_reporter("tune_weights_to_selection", "selected neurons"))
    for core, settings in s.weight_tuning.settings.items():
        for bias, (coarse, fine) in settings.items():
            s.work.biases[(core[0], core[1], bias)] = BiasValue(coarse, fine)


def select_at_final_biases(s: CalibrationState) -> None:
    """The final selection: every neuron measured at the final biases, units put on those nearest the
    target gains (:func:`.compensation.select_within_budget`).

    A neuron's gain relative to its core differs between weight biases (the pooled selection mixes
    settings), and the tuned core median is within a ladder step of its target, not on it; at the
    final biases the gains repeat closely, so choosing there removes both errors
    (docs/decisions.md, "Final neuron selection at the final biases").
    """
    s.report(s.at("select_at_final_biases"), "select neurons", "all neurons at the final biases: the ones nearest the target gains")
    _, s.fits_final = s.probe.run()
    centre = {core: (float(s.net.scale[s.group_of[core]]),) * 2 for core in s.cores}
    s.selected, s.inhibitory_weight = select_within_budget(s.work, s.fits_final["AMPA"], s.fits_final["GABA_B"], centre,
                                                           s.cfg.selection_gain_cv_budget)


def measure_after_compensation(s: CalibrationState) -> None:
    """The "after" measurement, a run of its own: its gain CV is not flattered by the selection having
    picked the neurons whose measurement happened to lie near the target."""
    s.report(s.at("measure_after_compensation"), "measure transfer curves", "after calibration")
    s.curves_after, s.fits_after = s.probe.run()
    s.report(s.at("measure_after_compensation", 1.0), "measure transfer curves", "after calibration", curves=s.curves_after)
    s.chip_s_measurement = s.board.chip_s


def fit_unit_transfer(s: CalibrationState) -> None:
    """Each unit's measured transfer (gains pooled over both runs at the final biases: less noise) and
    the calibration's result with the before/after gain CVs."""
    net, work, selected = s.net, s.work, s.selected
    pooled_after = {syn: pool_relative_gains([s.fits_final[syn], s.fits_after[syn]]) for syn in ("AMPA", "GABA_B")}
    q_unit = net.scale[net.unit_group]
    ge = pooled_after["AMPA"].gains_of(selected) / q_unit
    gi = pooled_after["GABA_B"].gains_of(selected) / q_unit
    off = s.fits_after["AMPA"].offsets_of(selected) / work.time.r_max_hz
    spikes_per_step = work.time.r_max_hz * work.time.dt_step_s if s.cfg.whole_spikes else None
    transfer = UnitTransfer(np.nan_to_num(ge, nan=1.0), np.nan_to_num(gi, nan=1.0), np.nan_to_num(off, nan=0.0),
                            spikes_per_step, work.count_correction)
    assert s.mapped_before is not None and s.weight_tuning is not None
    units = list(s.mapped.unit_addresses)
    s.result = NetworkCalibration(
        mapped=relocate_units(work, selected), mapped_before=s.mapped_before, constrained=net, selected=selected,
        curves_before=s.curves_before, curves_after=s.curves_after, fits_before=s.fits_before, fits_after=s.fits_after,
        transfer=transfer,
        gain_cv_before=relative_cv(s.fits_before["AMPA"].gains_of(units), q_unit),
        gain_cv_after=relative_cv(s.fits_after["AMPA"].gains_of(selected), q_unit),
        inh_gain_cv_before=relative_cv(s.fits_before["GABA_B"].gains_of(units), q_unit),
        inh_gain_cv_after=relative_cv(s.fits_after["GABA_B"].gains_of(selected), q_unit),
        gain_cv_at_selection=relative_cv(s.fits_final["AMPA"].gains_of(selected), q_unit),
        selection_inhibitory_weight=s.inhibitory_weight,
        chip_s_measurement=s.chip_s_measurement, chip_s_loop=0.0,
        weight_biases={f"{c}/{k}/{b}": [v[0], v[1]] for (c, k), st in s.weight_tuning.settings.items() for b, v in st.items()},
        tau=s.tau,
        refractory=s.refractory,
    )
    s.report(s.at("fit_unit_transfer", 1.0), "compensate", f"gain CV {s.result.gain_cv_before:.1%} -> {s.result.gain_cv_after:.1%}")


def run_chip_in_the_loop(s: CalibrationState) -> None:
    """With a task: CAM compensation, network gain matching and chip-in-the-loop fine-tuning (:func:`_in_the_loop`)."""
    assert s.result is not None
    if s.task is not None:
        _in_the_loop(s.board, s.result, s.work, s.net, s.task, s.cfg, s.report, s.plan)
    s.result.chip_s_loop = s.board.chip_s - s.chip_s_measurement
    s.result.wall_s = time.perf_counter() - s.t_start
    s.report(1.0, "done", f"chip time {s.board.chip_s:.1f} s")


#: The steps of :func:`calibrate_network`, in order (the module docstring tells why this order).
NETWORK_CALIBRATION_STEPS: tuple[Callable[[CalibrationState], None], ...] = (
    apply_nominal_biases,
    tune_time_constants,
    tune_refractory_periods,
    tune_weights_to_population,
    measure_before_compensation,
    select_on_pooled_gains,
    tune_weights_to_selection,
    select_at_final_biases,
    measure_after_compensation,
    fit_unit_transfer,
    run_chip_in_the_loop,
)


def calibrate_network(
    board: Board,
    mapped: MappedNetwork,
    net: ConstrainedNetwork,
    task: Task | None = None,
    config: CalibrationConfig | None = None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> NetworkCalibration:
    """Calibrate ``mapped`` (the conversion of ``net``) on ``board``: :data:`NETWORK_CALIBRATION_STEPS`
    in order; see the module docstring.

    ``task`` enables the chip-in-the-loop stage (fine-tuning on its training set, validation on a
    held-out part of it on the board); without it the calibration stops after the final
    measurement.  ``mapped`` is left unchanged.  Progress reports carry intermediate curves as
    ``payload``.  On cancellation or error the board is restored (module docstring) and the
    exception propagates (:class:`CalibrationCancelled` when cancelled).
    """
    cfg = config or CalibrationConfig()
    if cfg.readout_correction not in READOUT_CORRECTIONS:
        raise ValueError(f"unknown readout correction {cfg.readout_correction!r}; choose from {', '.join(READOUT_CORRECTIONS)}")
    if not cfg.gain_match_exponent > 0:
        raise ValueError(f"gain_match_exponent must be positive, got {cfg.gain_match_exponent}")
    if cfg.readout_rule not in READOUT_RULES:
        raise ValueError(f"unknown readout selection rule {cfg.readout_rule!r}; choose from {', '.join(READOUT_RULES)}")
    t_start = time.perf_counter()
    mboard = MeteredBoard(board)  # its own count from zero, even on a board the caller meters too
    report = calibration_reporter(progress, cancel, mboard)
    work = copy.deepcopy(mapped)
    start_biases = {key: board.get_bias(*key) for key in work.biases}
    state = CalibrationState(mboard, net, mapped, work, task, cfg, report, _SynapticProbe(mboard, work, net.scale, cfg),
                             list(work.group_cores), _group_of_core(work), t_start, plan_network_calibration(mapped, task, cfg))
    try:
        for step in NETWORK_CALIBRATION_STEPS:
            step(state)
    except BaseException:
        restore_board(board, start_biases, work.chips)
        raise
    assert state.result is not None
    state.result.network_fingerprint = network_fingerprint(mapped)
    return state.result


@dataclass
class _BoardSamples:
    """Board features of training samples and the weight biases they ran under (for reuse)."""

    features: list[np.ndarray] = field(default_factory=list)
    labels: list[np.ndarray] = field(default_factory=list)
    settings: list[dict] = field(default_factory=list)
    #: the hardware model's features of the same samples
    model_features: list[np.ndarray] = field(default_factory=list)

    def at(self, settings: dict, n_hidden: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Board features, labels and model features of the samples run at ``settings``."""
        keep = [i for i, s in enumerate(self.settings) if s == settings]
        if not keep:
            return np.zeros((0, n_hidden)), np.zeros(0, np.int64), np.zeros((0, n_hidden))
        return (np.concatenate([self.features[i] for i in keep]), np.concatenate([self.labels[i] for i in keep]),
                np.concatenate([self.model_features[i] for i in keep]))


def _weight_settings(board: Board, cores: list[tuple[int, int]]) -> dict:
    return {(c, k, WEIGHT_BIAS[t]): board.get_bias(c, k, WEIGHT_BIAS[t]) for c, k in cores for t in (EXCITATORY, INHIBITORY)}


def _match_network_gains(board: MeteredBoard, result: NetworkCalibration, work: MappedNetwork, candidate: ConstrainedNetwork,
                         x: np.ndarray, y: np.ndarray, lengths: np.ndarray, per_round: int, cfg: CalibrationConfig,
                         report: ProgressReporter, lo: float, hi: float, seen: _BoardSamples | None = None) -> None:
    """Scale each core's weight biases until the network follows the model (module docstring, step 11).

    The probe measures a neuron's gain at 20-120 Hz out of a few inputs; in the network the units
    run up to ``r_max`` under recurrent input, where the board's features run above the hardware
    model's (docs/decisions.md, "Network-level gain matching").  Both weight biases of a core scale every input of its units alike, so
    their common factor is tuned on the ladder (:func:`.bias_tuning.tune_core_biases`) until the
    slope of the board's features on the hardware model's is 1 per core group.  Every round runs
    ``per_round`` new samples of ``x`` (so no sample is run twice); their features and the biases
    they ran under go to ``seen`` (the readout re-fit reuses those at the final biases).  The kept settings
    go into ``work.biases``; the slopes of every round into ``result.network_gain_match``.  The
    measured transfer stays the fine-tuning's model: the matching makes the board follow it, and
    a core's weight bias scales all its neurons alike, so the reported gain CV is unchanged.
    """
    from ..conversion.deployment import deploy_network, run_deployment

    expected = readout_features(hardware_model(candidate, result.transfer), x, lengths)
    deployment = deploy_network(board, deploy(work, candidate, result.selected), cancel=report.cancel)
    group_of = _group_of_core(work)
    cores = list(work.group_cores)
    rounds_run = [0]

    def measure() -> dict[tuple[int, int], dict[str, float]]:
        k = rounds_run[0] % max(1, len(x) // per_round)
        rows_k = np.arange(k * per_round, min(len(x), (k + 1) * per_round))
        rounds_run[0] += 1
        settings = _weight_settings(board, cores)
        run = run_deployment(deployment, x[rows_k], y[rows_k], lengths[rows_k], seed=cfg.seed + 7 + 101 * k, cancel=report.cancel)
        if seen is not None:
            seen.features.append(run.spiking.features)
            seen.labels.append(np.asarray(y[rows_k], np.int64))
            seen.settings.append(settings)
            seen.model_features.append(expected[rows_k])
        out = {}
        for core in cores:
            rows = candidate.unit_group == group_of[core]
            e, b = expected[rows_k][:, rows].ravel(), run.spiking.features[:, rows].ravel()
            slope = float(np.dot(e, b) / np.dot(e, e)) if np.dot(e, e) > 0 else float("nan")
            out[core] = {WEIGHT_BIAS[EXCITATORY]: slope, WEIGHT_BIAS[INHIBITORY]: slope}
        result.network_gain_match.append({f"{c}/{k}": round(v[WEIGHT_BIAS[EXCITATORY]], 4) for (c, k), v in out.items()})
        return out

    def on_round(k: int, values: dict) -> None:
        text = ", ".join(f"{c}/{n}: {v[WEIGHT_BIAS[EXCITATORY]]:.3f}" for (c, n), v in values.items())
        report(lo + (hi - lo) * k / cfg.gain_match_rounds, "match network gains", f"round {k}: feature slope per core {text}")

    report(lo, "match network gains", f"{per_round} training samples per round against the hardware model")
    knobs = [TuningKnob(WEIGHT_BIAS[s], 1.0, cfg.gain_match_exponent, cfg.gain_match_tolerance) for s in (EXCITATORY, INHIBITORY)]
    exponent = (cfg.gain_match_exponent, cfg.gain_match_exponent)  # fixed: see CalibrationConfig.gain_match_exponent
    tuning = tune_core_biases(board, cores, knobs, measure, cfg.gain_match_rounds, exponent_range=exponent, on_round=on_round)
    for core, settings in tuning.settings.items():
        for bias, (coarse, fine) in settings.items():
            work.biases[(core[0], core[1], bias)] = BiasValue(coarse, fine)
            result.weight_biases[f"{core[0]}/{core[1]}/{bias}"] = [coarse, fine]


def board_sample_s(mapped: MappedNetwork, lengths: np.ndarray) -> float:
    """Mean chip time one sample of ``lengths`` takes in :func:`~..conversion.deployment.run_deployment`."""
    from ..conversion.deployment import DEFAULT_BATCH
    from ..conversion.spiking_run import TAIL_S

    t = mapped.time
    return float(np.mean(lengths)) * t.steps_per_sample * t.dt_step_s + t.gap_s + TAIL_S / DEFAULT_BATCH


def _gain_match_samples(cfg: CalibrationConfig, n_pool: int, per_sample_s: float, chip_s: float) -> int:
    """Board samples per round of the network gain matching when ``chip_s`` of the chip-time budget is
    spent (0: the matching does not run); what :func:`_in_the_loop` runs and :func:`plan_network_calibration` plans for."""
    n_left = min(n_pool, int(max(0.0, cfg.chip_budget_s - chip_s) / per_sample_s))
    per_round = min(cfg.n_gain_match, int(cfg.gain_match_share * n_left / max(1, cfg.gain_match_rounds)))
    return per_round if cfg.n_gain_match > 0 and cfg.gain_match_rounds > 0 and per_round >= 4 else 0


#: Wall seconds a board run costs beyond its chip time (writing its netlist or biases, reading its events
#: back), for the progress plan only.  Measured on the app's emulator (own process, realtime clock): a probe
#: run of 1.2 chip s took 3.3 s (two netlists of 256 neurons), 8 test samples of 3.2 chip s took 3.7 s; on
#: the fast clock 0.5 s and 1.6 s.  0.5 s keeps the ETA within a factor 2 on both (it was 3-300x low).
RUN_OVERHEAD_S = 0.5
#: Host seconds per optimizer step of the chip-in-the-loop fine-tuning, for the progress plan only
#: (its epochs over the fit samples, evaluated on the held-out ones).
FINE_TUNE_STEP_S = 0.03
#: Rounds the plan expects of the searches that stop once their target is bracketed (time constants,
#: refractory period): 2 and 3 of their 5 and 4 on the emulator (seed 5); planning the most rounds made
#: the fraction jump ahead of the work when they stopped.
EXPECTED_SEARCH_ROUNDS = 3
#: Reports of the chip-in-the-loop stage land on these parts of the plan (after the steps before it).
LOOP_PARTS = ("fine_tune", "match_network_gains", "readout")


def plan_network_calibration(mapped: MappedNetwork, task: Task | None, cfg: CalibrationConfig | None = None) -> CostPlan:
    """The expected cost, in seconds, of each step of :func:`calibrate_network` (the chip-in-the-loop stage
    as :data:`LOOP_PARTS`): chip time plus :data:`RUN_OVERHEAD_S` per board run, the fine-tuning's
    optimizer steps at :data:`FINE_TUNE_STEP_S`.  ``cfg`` None: the defaults, as :func:`calibrate_network`'s.

    The steps report where their share of [0, 1] says, so the progress fraction (and the ETA extrapolated
    from it) follows the time the work takes: the weight tunings' probe runs take most of a calibration
    without a task, the board samples most of one with a task.  Steps that stop early (a tuning that
    converges, a budget spent sooner) make the fraction jump, never go back.
    """
    cfg = cfg or CalibrationConfig()
    probe_s = (len(cfg.exc_levels_hz) + len(cfg.inh_levels_hz)) * cfg.level_s + 2 * RUN_OVERHEAD_S  # two netlists per run
    tp = cfg.tau_probe
    tau_rounds, refractory_rounds = min(cfg.tau_rounds, EXPECTED_SEARCH_ROUNDS), min(4, EXPECTED_SEARCH_ROUNDS)  # 4: match_refractory's
    tau_s = tau_rounds * (tp.off_s + tp.repeats * (tp.on_s + tp.off_s) + RUN_OVERHEAD_S) if cfg.tune_tau else 0.0
    refractory_s = refractory_rounds * (len(cfg.refractory_currents_a) * 0.3 + RUN_OVERHEAD_S) if cfg.tune_refractory else 0.0
    costs = {
        "apply_nominal_biases": 0.0, "tune_time_constants": tau_s, "tune_refractory_periods": refractory_s,
        "tune_weights_to_population": cfg.weight_rounds * probe_s, "measure_before_compensation": probe_s,
        "select_on_pooled_gains": 0.0, "tune_weights_to_selection": cfg.weight_rounds * probe_s,
        "select_at_final_biases": probe_s, "measure_after_compensation": probe_s, "fit_unit_transfer": 0.0,
        **dict.fromkeys(LOOP_PARTS, 0.0),
    }
    if task is not None:
        chip_s = sum(costs.values())  # the overheads count as chip time here: a slightly smaller board share
        n = len(task.x_train)
        n_pool = n - min(cfg.n_model_validation, n // 3)
        per_sample = board_sample_s(mapped, task.lengths_train)
        if cfg.fine_tune_in_loop:
            epochs = qat_epochs_for(cfg.fine_tune, n_pool, cfg.fine_tune_min_steps)
            costs["fine_tune"] = epochs * -(-n_pool // cfg.fine_tune.batch_size) * FINE_TUNE_STEP_S
        per_round = _gain_match_samples(cfg, n_pool, per_sample, chip_s)
        if per_round:
            costs["match_network_gains"] = cfg.gain_match_rounds * (per_round * per_sample + RUN_OVERHEAD_S) + RUN_OVERHEAD_S
        if cfg.refit_readout:
            spent = chip_s + cfg.gain_match_rounds * per_round * per_sample
            n_more = max(0, min(cfg.n_readout_fit - per_round, int(max(0.0, cfg.chip_budget_s - spent) / per_sample),
                                n_pool - cfg.gain_match_rounds * per_round))
            costs["readout"] = n_more * per_sample + RUN_OVERHEAD_S
    return CostPlan(costs)


def _in_the_loop(board: MeteredBoard, result: NetworkCalibration, work: MappedNetwork, net: ConstrainedNetwork, task: Task,
                 cfg: CalibrationConfig, report: ProgressReporter, plan: CostPlan | None = None) -> None:
    """The network itself, within the chip-time budget (``cfg.chip_budget_s``).

    On the host (no chip time): CAM compensation, then fine-tuning with the measured transfer,
    kept when the model with the measured transfer validates better on held-out training
    samples.  On the board, the chosen network: the network-level gain matching, then the readout
    re-fitted on board features of training samples: those the gain matching ran at the final
    biases, topped up by one more run (each sample runs once).  The samples the board gets are
    planned from the chip time the measurement left: ``cfg.gain_match_share`` of it for the
    matching, the rest for the readout.
    """
    from ..conversion.deployment import deploy_network, run_deployment

    plan = plan or plan_network_calibration(work, task, cfg)  # where its reports land (the whole run's plan)
    rng = np.random.default_rng(cfg.seed)
    n = len(task.x_train)
    n_held = min(cfg.n_model_validation, n // 3)
    perm = rng.permutation(n)
    held, board_pool = perm[:n_held], perm[n_held:]
    model_validation = (task.x_train[held], task.y_train[held], task.lengths_train[held])
    fit_task = copy.copy(task)  # the fine-tuning never sees the held-out samples
    fit_task.x_train, fit_task.y_train, fit_task.lengths_train = (task.x_train[board_pool], task.y_train[board_pool],
                                                                  task.lengths_train[board_pool])
    x_pool, y_pool, l_pool = task.x_train[board_pool], task.y_train[board_pool], task.lengths_train[board_pool]

    candidate = with_multiplicities(net, compensate_multiplicities(net, result.transfer.gain_exc, result.transfer.gain_inh))
    model_acc = evaluate(hardware_model(candidate, result.transfer), *model_validation)[0]
    result.loop_history.append({"stage": "compensate", "model_val_accuracy": model_acc, "kept": True, "chip_s": board.chip_s})
    report(plan.at("fine_tune"), "compensate", f"CAM copies divided by the measured gains: model with the measured transfer {model_acc:.3f} "
           f"on {n_held} held-out samples")
    if cfg.fine_tune_in_loop:
        tuning_cfg = dataclasses.replace(cfg.fine_tune, count_noise=cfg.spike_fano / (work.time.r_max_hz * work.time.dt_step_s),
                                         epochs=qat_epochs_for(cfg.fine_tune, len(fit_task.x_train), cfg.fine_tune_min_steps))
        tuned = fine_tune(candidate, result.transfer, fit_task, tuning_cfg, progress=report.span(*plan.bounds("fine_tune"), "fine-tune"),
                          cancel=report.cancel, validation=model_validation)
        tuned_acc = evaluate(hardware_model(tuned, result.transfer), *model_validation)[0]
        keep = tuned_acc > model_acc + cfg.min_improvement
        result.loop_history.append({"stage": "fine-tune", "model_val_accuracy": tuned_acc, "kept": bool(keep), "epochs": tuning_cfg.epochs,
                                    "chip_s": board.chip_s})
        report(plan.at("fine_tune", 1.0), "fine-tune", f"model with the measured transfer {tuned_acc:.3f}{'' if keep else ': compensated network kept'}")
        if keep:
            candidate = tuned

    # the board's share: plan the samples from the chip time left
    per_sample = board_sample_s(work, l_pool)
    seen = _BoardSamples()
    used = 0
    per_round = _gain_match_samples(cfg, len(x_pool), per_sample, board.chip_s)
    if per_round:
        n_match = per_round * cfg.gain_match_rounds
        _match_network_gains(board, result, work, candidate, x_pool[:n_match], y_pool[:n_match], l_pool[:n_match], per_round, cfg,
                             report, *plan.bounds("match_network_gains"), seen)
        used = per_round * len(seen.features)  # the rounds it ran; the samples of rounds it did not need are still new
    final = deploy(work, candidate, result.selected)
    entry: dict = {"stage": "readout", "kept": False}
    if cfg.refit_readout:
        reused_x, reused_y, reused_model = seen.at(_weight_settings(board, list(work.group_cores)), net.n_hidden)
        n_more = max(0, min(cfg.n_readout_fit - len(reused_y), int(max(0.0, cfg.chip_budget_s - board.chip_s) / per_sample),
                            len(x_pool) - used))
        features, labels, model_features = reused_x, reused_y, reused_model
        if n_more > 0:
            report(plan.at("readout"), "readout", f"{n_more} training samples on the board ({len(reused_y)} more from the gain matching)")
            rows = np.arange(used, used + n_more)
            run = run_deployment(deploy_network(board, final, cancel=report.cancel), x_pool[rows], y_pool[rows], l_pool[rows],
                                 seed=cfg.seed + 101, progress=report.span(*plan.bounds("readout"), "readout samples on board"), cancel=report.cancel)
            features = np.concatenate([features, run.spiking.features])
            labels = np.concatenate([labels, y_pool[rows]])
            model_features = np.concatenate([model_features, readout_features(hardware_model(candidate, result.transfer),
                                                                              x_pool[rows], l_pool[rows])])
        entry.update(n_board_samples=int(len(labels)), n_reused=int(len(reused_y)))
        if len(labels) >= 10:  # refit_readout_cv's five folds need two samples each
            result.readout_fit = ReadoutFitSamples(features, labels, final.readout_weight.copy(), final.readout_bias.copy(),
                                                   model_features)
            plain = float(np.mean((features @ final.readout_weight.T + final.readout_bias).argmax(1) == labels))
            if cfg.readout_correction == "unit_affine":
                w, b = unit_affine_readout(features, model_features, final.readout_weight, final.readout_bias)
                entry.update(board_fit_accuracy_model_readout=plain, readout_correction="unit_affine", kept=True)
            else:
                w, b, l2, cv_scores = refit_readout_cv(features, labels, final.readout_weight, final.readout_bias, seed=cfg.seed,
                                                       rule=cfg.readout_rule)
                entry.update(board_fit_accuracy_model_readout=plain, readout_l2=l2,
                             readout_cv_accuracy={str(k): v for k, v in cv_scores.items()}, kept=bool(np.isfinite(l2)))
            final.readout_weight, final.readout_bias = w, b
    entry["chip_s"] = board.chip_s
    result.loop_history.append(entry)
    report(plan.at("readout", 1.0), "readout", f"readout {'re-fitted on' if entry['kept'] else 'kept after'} {entry.get('n_board_samples', 0)} board samples")
    result.constrained, result.mapped = candidate, final
