"""The whole conversion, stage by stage: float → constrained float → Brian2 SNN → board SNN.

Python API (used by ``neurolab train/convert/demo`` and by the GUI)::

    from neurolab_gui.core.conversion import pipeline, tasks
    task = tasks.load_task("seq_digits")
    cfg = pipeline.PipelineConfig()
    cancel = CancelToken()  # from neurolab_gui.core.jobs
    model, _ = pipeline.train_model(task, cfg, progress=lambda p: print(p.line()), cancel=cancel)
    result = pipeline.convert(model, task, cfg, progress=lambda p: print(p.line()), cancel=cancel)
    print(result.report.table())

Every long call takes ``progress`` (a sink of :class:`~neurolab_gui.core.jobs.Progress`) and a
``cancel`` token (see :mod:`neurolab_gui.core.jobs`).  Every board stage writes and runs the
network with :mod:`.deployment` (one mechanism for silicon and the emulator): ``board_ideal``
(mismatch off) and ``board_mismatch`` (the emulator's default mismatch) are reference emulators
opened through :mod:`neurolab_gui.core.boards`; ``board`` is the board the caller passes
(``convert(..., board=b, profile=p)``: the CLI's ``--board``, the app's connected board).  The
Brian2 stage configures an ``emulator.simulator.BoardSimulator`` with the same compiled tables and
biases and runs ``emulator.brian2_reference.run_brian2`` on it.

Per stage the report holds test accuracy, spikes per inference and synaptic events per
inference (see :mod:`.report`).
"""

from __future__ import annotations

import copy
import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drivers.dynapse1.board_api import Board

from .. import jobs
from ..jobs import Progress, ProgressSink, check_cancel
from .ablation import AblationRow, constraint_ablation
from .constrain import (
    ConstrainedNetwork,
    ConstraintConfig,
    FanInMask,
    check_convertible,
    constrain,
    normalize_activations,
    qat_epochs_for,
    source_gains_of,
)
from .deployment import BoardProfile, TransferMatching
from .mapping import MappedNetwork, NeuronSettings, TimeMapping, map_network
from .models import RateRNN, RNNConfig
from .report import ConversionReport, StageResult, paired_comparison
from .tasks import Task
from .training import TrainConfig, TrainResult, evaluate, mean_rates, train
from .transfer import ProbeDesign, TransferFit, core_label

#: A function that opens (and returns) a Board for a stage.
BoardOpener = Callable[[], Board]

#: Fano factor of the spike-count noise the RNN is trained for (see ``PipelineConfig.spike_fano``).
DEFAULT_SPIKE_FANO = 0.4

#: ``board_ideal`` / ``board_mismatch``: reference emulators the pipeline opens itself (mismatch
#: off / on); ``board``: the board the caller passes (silicon or the app's connected emulator);
#: ``board_calibrated``: the network calibrated on the board it runs on (the caller's board, else a
#: reference emulator with the default mismatch, as ``board_mismatch``) and run there.
SPIKING_STAGES = ("brian2", "board_ideal", "board_mismatch", "board", "board_calibrated")
#: Order of the report's rows.
STAGE_ORDER = ("float", "constrained", "brian2", "board_ideal", "board_mismatch", "board", "board_calibrated")


@dataclass
class CalibratedNetwork:
    """What a :data:`NetworkCalibrator` returns: the calibrated network to write on the board as it is."""

    mapped: MappedNetwork
    constrained: ConstrainedNetwork
    chip_s: float
    summary: dict = field(default_factory=dict)


#: Calibrates a mapped network on a board: ``(board, mapped, constrained, task, progress, cancel)``.
#: The calibration sits above the conversion in the layers, so the caller passes it
#: (``neurolab convert`` passes ``calibration.engine.calibrate_network`` through
#: ``cli.convert.network_calibrator``).
NetworkCalibrator = Callable[[Board, MappedNetwork, ConstrainedNetwork, Task, ProgressSink | None, threading.Event | None],
                             CalibratedNetwork]


@dataclass
class PipelineConfig:
    """Every choice of a conversion run; defaults are the ones the demo and the benchmark use."""

    n_hidden: int = 64
    kind: str = "leaky"
    retention: float = 0.85
    steps_per_sample: int = 4
    readout: str = "mean"
    saturation: float | None = 1.0  # phi(u) = u / (1 + u / s); sets t_ref = 1 / (s * r_max)
    #: Heun tracks the continuous-time spiking network closely at 4 steps per sample, Euler does not
    #: (docs/decisions.md, "Heun integrator").
    integrator: str = "heun"
    #: Pre-activation noise 0.1 in training makes the RNN robust to spike-count noise
    #: (docs/decisions.md, "Pre-activation noise").
    train: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=30, lr=1e-2, noise_std=0.1))
    #: 63 CAM entries for the network: the 64th of every unit is the reset channel's.
    constraint: ConstraintConfig = field(
        default_factory=lambda: ConstraintConfig(max_fan_in=63, qat=TrainConfig(epochs=10, lr=2e-3, noise_std=0.1), gain_noise_std=0.1)
    )
    dt_step_s: float = 0.005
    #: Rate of activation 1.  Higher rates mean more spikes per synaptic time constant and so less
    #: spike-count noise in the recurrent currents, at proportionally more spikes per inference
    #: (docs/decisions.md, "r_max").
    r_max_hz: float = 900.0
    gap_s: float | None = None  # default: reset burst + 30 ms
    settings: NeuronSettings = field(default_factory=NeuronSettings)
    probe: ProbeDesign = field(default_factory=ProbeDesign)
    transfer_rounds: int = 2
    #: tune each core's refractory bias on DC f-I curves so the units saturate like the model
    #: (:func:`.transfer.match_refractory`); the uncalibrated mismatched network gets more excitable
    #: for it, which the calibration recovers (docs/decisions.md, "Saturation matching").
    match_saturation: bool = True
    stages: tuple[str, ...] = ("board_ideal", "board_mismatch")
    n_test_spiking: int | None = None  # test samples for the spiking stages (None: all)
    brian2_samples: int | None = 60  # Brian2 is slow: a prefix of the spiking test samples
    seed: int = 0
    emulator_seed: int = 0

    reset_rate_hz: float = 1000.0
    reset_s: float | None = None  # default: 4 synaptic time constants
    #: Fano factor of the spike-count noise trained for (training and QAT): the leaky RNN's
    #: filtered rates get the count noise of ``r_max * dt_step`` spikes per step at activation 1
    #: (see ``RateRNN.forward``).  0 turns it off.  The SNN's feature error scales like count noise,
    #: which pre-activation noise does not teach margins against (docs/decisions.md, "Fano factor 0.4").
    spike_fano: float = DEFAULT_SPIKE_FANO
    #: also measure what each constraint costs, one at a time (:mod:`.ablation`; a few extra
    #: test-set evaluations of the rate model, no training)
    ablation: bool = False
    #: train the float model with the chip's fan-in in the loop (:class:`.constrain.FanInMask`:
    #: only the connections the CAM budget keeps, refitted every epoch), so the constrain step
    #: prunes nothing.  Off by default: it shrinks the constrain step's cost but the constrained
    #: network ends up less accurate than one from a dense float model (docs/decisions.md,
    #: "Fan-in-aware training").
    train_fan_in: bool = False
    #: imported models: how the readout reads the hidden states (:data:`.torch_import.READOUT_RULES`;
    #: None: what the file declares, else ``last_valid``)
    readout_rule: str | None = None
    #: imported models: the percentile of the valid-step activations that becomes activation 1
    #: (:func:`.constrain.normalize_activations`); 95, not 99.9: the constrained network kept far
    #: more of the float accuracy on both foreign cases, at 4-10x the spikes (docs/decisions.md)
    activation_percentile: float = 95.0
    #: imported Elman models: retentions tried for the spiking time mapping; the one whose leaky
    #: model keeps the most training accuracy *before* the fine-tune is used (empty: ``retention``
    #: as set; an explicit ``retention`` override empties it).  One value by default: the fit
    #: prefers fast dynamics, which lose to a^k ~ 0.5 after the fine-tune (docs/decisions.md,
    #: "Time mapping of imported models").
    imported_retentions: tuple[float, ...] = (0.7,)
    #: imported Elman models: RNN steps per input step of the spiking time mapping (None:
    #: ``steps_per_sample`` as set; an explicit ``steps_per_sample`` override sets None).  2 with
    #: retention 0.7: after one input step the state has moved half-way (a^k = 0.49), at half the
    #: fine-tune CPU and chip time of 4 (docs/decisions.md, "Time mapping of imported models").
    imported_steps_per_sample: int | None = 2
    #: imported Elman models: the neurons' rate saturation ``s`` (t_ref = 1 / (s r_max); None:
    #: ``saturation`` as set; an explicit ``saturation`` override sets None).  The imported ReLU's
    #: 95th percentile is activation 1, which ``s = 1`` squeezes to half (docs/decisions.md).
    imported_saturation: float | None = 2.0
    #: imported models: the QAT fine-tune runs at least this many optimizer steps (more epochs on a
    #: small data set, at most 4x ``constraint.qat.epochs``; :func:`.constrain.qat_epochs_for`); an
    #: explicit ``qat_epochs`` (``--qat-epochs``) is taken as given.  0: the epochs as set
    #: (docs/decisions.md, "QAT length of imported models").
    imported_qat_min_steps: int = 600
    #: imported models: learning rate of the QAT fine-tune (None: ``constraint.qat.lr``).  A model
    #: trained by NeuroLab already has the leaky dynamics and only adapts to the weight grid; an
    #: imported Elman model has to learn the time mapping too (docs/decisions.md, "Fine-tune of
    #: imported models").
    imported_qat_lr: float | None = 5e-3
    #: imported models: :attr:`.constrain.ConstraintConfig.choose_rounding` (plain or error-aware
    #: rounding, whichever quantises the network more accurately on the training set)
    imported_choose_rounding: bool = True

    #: QAT in whole spikes (:attr:`.constrain.ConstraintConfig.qat_spikes_per_step` =
    #: ``r_max dt_step``): the fine-tune sees the rounding and first-spike latency of the board's
    #: few spikes per step (docs/decisions.md, "QAT in whole spikes").
    qat_whole_spikes: bool = False

    def count_noise(self) -> float:
        """``TrainConfig.count_noise`` for this time mapping: ``F / (r_max dt_step)``."""
        return self.spike_fano / (self.r_max_hz * self.dt_step_s)

    def time_mapping(self) -> TimeMapping:
        tau = TimeMapping(self.dt_step_s, self.steps_per_sample, self.retention).tau_s
        reset_s = 4.0 * tau if self.reset_s is None else self.reset_s
        gap_s = reset_s + 0.03 if self.gap_s is None else self.gap_s
        return TimeMapping(self.dt_step_s, self.steps_per_sample, self.retention, self.r_max_hz, gap_s,
                           self.reset_rate_hz, reset_s)


#: Per-task choices that differ from :class:`PipelineConfig`'s defaults, measured on the task
#: (``bench/conversion_accuracy.py``, ``bench/float_baselines.py``; docs/decisions.md, "MNIST-1D task
#: defaults", "Sequential digits: batch 16, 60 epochs", "MNIST-1D: chunks of 4 samples, 8,000
#: training samples").  MNIST-1D: 2 RNN steps per input step (4 signal samples, see
#: ``tasks.mnist1d``); 256 hidden units over all four cores of one chip; the training noises
#: warm up over the first half of its 60 epochs (it underfit with the full noise from the start).
#: Sequential digits: batches of 16 give the 1,437 training sequences 4x the optimiser steps per epoch.
TASK_DEFAULTS: dict[str, dict] = {
    # QAT at 5e-3, the imported models' rate: on the 4-step seq_digits models it cost 0.56 / 0.56 pp
    # (seeds 0 / 1) instead of 1.95 / 1.95 pp at 2e-3, ECG seed 0 0.0 instead of 2.25 pp (docs/decisions.md);
    # on the 6-step ones 1.11 / -0.28 pp
    # seq_digits: 6 steps per row (the synaptic low-pass blurs rows less) and weight decay 1e-4 (it overfit:
    # training accuracy 0.997): float 0.961 / 0.955 / 0.950 on seeds 0 / 1 / 2 (was 0.939 / 0.928 / 0.930; docs/decisions.md).
    # 80 epochs (was 60): on an AMD Zen 4 host 0.955 / 0.961 / 0.955 against 0.961 / 0.947 / 0.947 (docs/decisions.md)
    "seq_digits": {"n_hidden": 128, "steps_per_sample": 6, "epochs": 80, "qat_epochs": 20, "batch_size": 16,
                   "qat_lr": 5e-3, "weight_decay": 1e-4},
    # ECG: no pre-activation noise.  With 0.1 the single-channel network learned to work only with the noise
    # on (rectified noise lifts near-silent units): seed 1 trained to 0.85 with noise and tested 0.64 / 0.59
    # clean; without it 0.94.  2 steps per sample halve its chip time per beat; 30 QAT epochs (1-2 s each): with
    # 10 the quantised network of seed 0 stayed at 0.64 (docs/decisions.md, "ECG baseline")
    "ecg": {"steps_per_sample": 2, "epochs": 60, "lr": 3e-3, "noise_std": 0.0, "qat_epochs": 30, "qat_lr": 5e-3},
    # MNIST-1D's 256 units lose the most to the fan-in limit; its QAT keeps learning past 8 epochs (seed 1,
    # float 0.805: 8 epochs at 2e-3 0.625, at 5e-3 0.679, 24 epochs at 5e-3 0.717; docs/decisions.md).  The
    # fan-in limit is all of the constrain step's cost (ablation: -58 pp before QAT); pruning gradually over
    # the first 12 QAT epochs keeps more (seeds 0 / 1: 0.695 / 0.707 -> 0.714 / 0.714; docs/decisions.md)
    "mnist1d": {"n_hidden": 256, "steps_per_sample": 2, "epochs": 60, "qat_epochs": 24, "qat_lr": 5e-3,
                "n_core_groups": 4, "noise_warmup": 0.5, "prune_epochs": 12},
    # the robot's steering network (robot_task.py): small, one core, the state at the end of a sequence read out
    # (the closed loop decodes the units' filtered rates continuously)
    "phototaxis": {"n_hidden": 32, "readout": "last", "epochs": 20, "qat_epochs": 4, "n_core_groups": 1},
}


def config_for_task(task_name: str, model_config: RNNConfig | None = None, **overrides: object) -> PipelineConfig:
    """The pipeline configuration every front end (CLI, GUI, benchmarks) uses for ``task_name``.

    Starts from :class:`PipelineConfig`, applies :data:`TASK_DEFAULTS` for the task, then — when
    a trained model is given — its own dynamics (kind, hidden units, retention, steps per sample,
    readout, saturation), because the spiking time mapping must be the one the model was trained
    with.  ``overrides`` that are not None come last and set :class:`PipelineConfig` fields;
    ``epochs``, ``qat_epochs``, ``lr``, ``qat_lr``, ``noise_std``, ``seed``, ``n_core_groups`` and
    ``prune_epochs`` (gradual pruning in QAT) reach the training, QAT and constraint configurations;
    ``batch_size``, ``shift`` (augmentation), ``noise_warmup``, ``label_smoothing`` and ``weight_decay``
    the float training only.  An unknown option raises ``ValueError`` naming it.
    """
    cfg = PipelineConfig()
    opts: dict = dict(TASK_DEFAULTS.get(task_name, {}))
    if model_config is not None:
        opts.update(n_hidden=model_config.n_hidden, kind=model_config.kind, readout=model_config.readout)
        if model_config.saturation is not None:  # a hard clip (or an imported unbounded ReLU) gets the neurons' curve
            opts.update(saturation=model_config.saturation)
        if model_config.kind == "leaky":
            opts.update(retention=model_config.retention, steps_per_sample=model_config.steps_per_sample,
                        integrator=model_config.integrator)
    opts.update({k: v for k, v in overrides.items() if v is not None})
    seed = int(opts.pop("seed", cfg.seed))
    epochs, qat_epochs = opts.pop("epochs", None), opts.pop("qat_epochs", None)
    n_core_groups = opts.pop("n_core_groups", None)
    prune_epochs = opts.pop("prune_epochs", None)
    lr, noise = opts.pop("lr", None), opts.pop("noise_std", None)
    qat_lr = opts.pop("qat_lr", None)
    batch_size, shift = opts.pop("batch_size", None), opts.pop("shift", None)
    noise_warmup, smoothing = opts.pop("noise_warmup", None), opts.pop("label_smoothing", None)
    weight_decay = opts.pop("weight_decay", None)
    unknown = sorted(set(opts) - set(PipelineConfig.__dataclass_fields__))
    if unknown:
        raise ValueError(f"unknown pipeline option(s): {', '.join(unknown)}")
    for key, value in opts.items():
        setattr(cfg, key, value)
    cfg.seed = cfg.train.seed = cfg.constraint.qat.seed = seed
    if epochs is not None:
        cfg.train.epochs = int(epochs)
    if qat_epochs is not None:
        cfg.constraint.qat.epochs = int(qat_epochs)
    if overrides.get("qat_epochs") is not None:  # asked for: not lengthened for imported models
        cfg.imported_qat_min_steps = 0
    # an explicit time mapping is the user's, not the one chosen for imported models
    if overrides.get("retention") is not None:
        cfg.imported_retentions = ()
    if overrides.get("steps_per_sample") is not None:
        cfg.imported_steps_per_sample = None
    if overrides.get("saturation") is not None:
        cfg.imported_saturation = None
    if n_core_groups is not None:
        cfg.constraint.n_core_groups = int(n_core_groups)
    if prune_epochs is not None:  # replace: ConstraintConfig refuses a negative one
        cfg.constraint = dataclasses.replace(cfg.constraint, prune_epochs=int(prune_epochs))
    if lr is not None:
        cfg.train.lr = float(lr)
    if qat_lr is not None:
        cfg.constraint.qat.lr = float(qat_lr)
    if noise is not None:
        cfg.train.noise_std = cfg.constraint.qat.noise_std = float(noise)
    if batch_size is not None:  # the float training's; QAT keeps its own
        cfg.train.batch_size = int(batch_size)
    if shift is not None:
        cfg.train.shift = (int(shift[0]), int(shift[1]))
    if noise_warmup is not None:
        cfg.train.noise_warmup = float(noise_warmup)
    if smoothing is not None:
        cfg.train.label_smoothing = float(smoothing)
    if weight_decay is not None:
        cfg.train.weight_decay = float(weight_decay)
    return cfg


@dataclass
class ConversionResult:
    """The artefacts of :func:`convert` and its report."""

    report: ConversionReport
    constrained: ConstrainedNetwork
    mapped: MappedNetwork
    transfer_fits: dict[str, list[TransferFit]] = field(default_factory=dict)
    #: the network as mapped, before any board matched it (what :mod:`.deployment` writes on a new board)
    nominal_mapped: MappedNetwork | None = None
    #: how a board without a profile is matched (``cfg``'s probe, rounds, saturation matching)
    matching: TransferMatching = field(default_factory=TransferMatching)
    #: the task as converted (:attr:`PreparedModel.task`: with the readout rule ``last_step`` every
    #: sequence runs its full padded length); run samples from it
    task: Task | None = None


def build_model(task: Task, cfg: PipelineConfig) -> RateRNN:
    return RateRNN(RNNConfig(task.n_features, cfg.n_hidden, task.n_classes, cfg.kind, cfg.retention, cfg.steps_per_sample, cfg.readout, cfg.saturation,
                             cfg.integrator if cfg.kind == "leaky" else "euler"))


def train_model(
    task: Task,
    cfg: PipelineConfig,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> tuple[RateRNN, TrainResult]:
    """A fresh model of ``cfg`` trained on ``task`` with BPTT."""
    torch.manual_seed(cfg.seed)
    model = build_model(task, cfg)
    c = cfg.constraint
    mask = FanInMask(model, c.precision, c.max_fan_in, source_gains_of(c)) if cfg.train_fan_in else None
    model.weight_transform = mask
    try:
        result = train(model, task, dataclasses.replace(cfg.train, count_noise=cfg.count_noise()), progress=progress, cancel=cancel,
                       after_epoch=mask.refit if mask else None)
    finally:
        model.weight_transform = None
    if mask is not None:
        mask.bake()
        result.test_accuracy, _ = evaluate(model, task.x_test, task.y_test, task.lengths_test)
    # one noise-free pass over the training set: does the model work without the noise it trained with?
    result.clean_train_accuracy, _ = evaluate(model, task.x_train, task.y_train, task.lengths_train)
    return model, result


def training_key(task: Task, cfg: PipelineConfig) -> str:
    """A digest of everything :func:`train_model` depends on: the task's data and ``cfg``'s training choices."""
    import hashlib
    import json

    digest = hashlib.sha256()
    for a in (task.x_train, task.y_train, task.lengths_train):
        digest.update(np.ascontiguousarray(a).tobytes())
    model = {k: getattr(cfg, k) for k in ("n_hidden", "kind", "retention", "steps_per_sample", "readout", "saturation",
                                          "integrator", "seed", "train_fan_in")}
    c = cfg.constraint
    fan_in = (c.max_fan_in, c.precision.n_levels, source_gains_of(c)) if cfg.train_fan_in else None
    train = dataclasses.asdict(cfg.train)
    for name, off in _KEYED_ONLY_WHEN_SET.items():  # models cached before these options existed keep their keys
        if train[name] == off:
            del train[name]
    digest.update(json.dumps([task.name, model, train, cfg.count_noise(), fan_in],
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


#: :class:`TrainConfig` fields added after models were cached, with their "off" values: a
#: training with the option off is the training it was before, so its key leaves the field out.
_KEYED_ONLY_WHEN_SET: dict[str, float] = {"noise_warmup": 0.0, "label_smoothing": 0.0}


def cached_model_path(task: Task, cfg: PipelineConfig, cache_dir: str) -> Path:
    """Where :func:`train_model_cached` keeps the model of ``task`` and ``cfg`` in ``cache_dir``."""
    return Path(cache_dir).expanduser() / f"{task.name}-{training_key(task, cfg)}.pt"


def train_model_cached(
    task: Task,
    cfg: PipelineConfig,
    cache_dir: str | None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> tuple[RateRNN, bool]:
    """:func:`train_model`, or the model it made before for the same data and choices (``cache_dir``).

    Returns the model and whether it came from the cache.  Models are stored in the package's own
    checkpoint format (:mod:`.checkpoint`), named by :func:`training_key` (:func:`cached_model_path`),
    with the test and final training accuracy and the training's wall and CPU seconds in the
    metadata; ``cache_dir`` None trains.
    """
    from .checkpoint import load_checkpoint, save_checkpoint

    if cache_dir is None:
        return train_model(task, cfg, progress, cancel)[0], False
    path = cached_model_path(task, cfg, cache_dir)
    if path.exists():
        return load_checkpoint(path).model, True
    wall0, cpu0 = time.perf_counter(), time.process_time()
    model, result = train_model(task, cfg, progress, cancel)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, {"test_accuracy": result.test_accuracy, "train_accuracy": result.train_accuracy[-1],
                                  "clean_train_accuracy": result.clean_train_accuracy,
                                  "train_wall_s": round(time.perf_counter() - wall0, 3),
                                  "train_cpu_s": round(time.process_time() - cpu0, 3), "training_key": path.stem})
    return model, False


def constrain_model(
    model: RateRNN,
    task: Task,
    cfg: PipelineConfig,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> ConstrainedNetwork:
    """:func:`.constrain.constrain` with ``cfg``'s constraints, dynamics and spike-count noise."""
    qat = dataclasses.replace(cfg.constraint.qat, count_noise=cfg.count_noise())
    spikes = cfg.r_max_hz * cfg.dt_step_s if cfg.qat_whole_spikes else None
    constraint = dataclasses.replace(cfg.constraint, qat=qat, qat_spikes_per_step=spikes)
    return constrain(model, task, constraint, cfg.retention, cfg.steps_per_sample, progress=progress, cancel=cancel,
                     saturation=cfg.saturation)


def run_ablation(model: RateRNN, constrained: ConstrainedNetwork, task: Task, cfg: PipelineConfig) -> list[AblationRow]:
    """:func:`.ablation.constraint_ablation` with the settings :func:`constrain_model` used."""
    return constraint_ablation(model, constrained, task, cfg.constraint, cfg.retention, cfg.steps_per_sample, cfg.saturation,
                               cfg.r_max_hz * cfg.dt_step_s, cfg.count_noise(), cfg.seed)


@dataclass
class PreparedModel:
    """The float model the constrain step starts from, and what was done to get it.

    For a model the tool trained: the model itself.  For an imported ``nn.RNN``
    (``model.foreign``, see :class:`.torch_import.ForeignSource`): the readout rule applied, the
    input weights split onto the task's rate channels (:meth:`.encoding.InputEncoding.input_weights`),
    the activations rescaled (:func:`.constrain.normalize_activations`), and its float accuracy as
    PyTorch computes it (unbounded activation).
    """

    model: RateRNN
    task: Task
    #: the configuration to constrain and map with (an imported model's fitted retention)
    cfg: PipelineConfig
    settings: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    float_accuracy: float | None = None


def prepare_model(model: RateRNN, task: Task, cfg: PipelineConfig) -> PreparedModel:
    """See :class:`PreparedModel`; ``model`` is left unchanged.

    Raises ``ValueError`` when an imported model does not fit the task, or when a bare state_dict
    that does not declare its nonlinearity fits the data as a tanh RNN clearly better than as ReLU.
    """
    from .torch_import import READOUT_RULES, elman_logits

    model = copy.deepcopy(model).cpu()
    foreign = getattr(model, "foreign", None)
    if foreign is None:
        if cfg.readout_rule is not None:
            raise ValueError("the readout rule is an option of imported models; this model was trained by NeuroLab "
                             f"with readout {model.config.readout!r}")
        return PreparedModel(model, task, cfg, {"source": "neurolab"})
    rule = cfg.readout_rule or foreign.readout or "last_valid"
    if rule not in READOUT_RULES:
        raise ValueError(f"unknown readout rule {rule!r}; choose from {', '.join(READOUT_RULES)}")
    settings: dict = {"source": "torch-state-dict", **foreign.to_dict(), "readout_rule": rule,
                      "readout_rule_from": "option" if cfg.readout_rule else ("file" if foreign.readout else "default")}
    notes = [f"imported model read out by rule {rule!r} ({settings['readout_rule_from']})"]
    enc = task.encoding
    if rule == "last_step":
        if enc is not None and enc.normalization == "fold":
            raise ValueError("the readout rule 'last_step' presents the zero padding as input, which is zero only after "
                             "normalisation; folding mean/std into the weights would turn it into -mean/std: use --normalize encode")
        task = task.with_full_lengths()
        notes.append("readout at the last padded step: every sequence is presented for its full padded length")
    model.config.readout = READOUT_RULES[rule]
    if model.config.n_inputs != task.n_features:
        if enc is None or enc.n_raw != model.config.n_inputs:
            raise ValueError(f"the model takes {model.config.n_inputs} inputs but task {task.name} has {task.n_features} "
                             "rate channels" + (f" from {enc.n_raw} raw features" if enc is not None else ""))
        with torch.no_grad():
            w, b = enc.input_weights(model.w_in.numpy(), model.w_bias.numpy())
        split = RateRNN(dataclasses.replace(model.config, n_inputs=enc.n_channels))
        with torch.no_grad():
            split.w_in.copy_(torch.as_tensor(w))
            split.w_bias.copy_(torch.as_tensor(b))
            split.w_rec.copy_(model.w_rec)
            split.readout.load_state_dict(model.readout.state_dict())
        split.foreign = foreign
        model = split
        notes.append(f"input weights split onto {enc.n_channels} rate channels of {enc.n_raw} features "
                     f"(normalisation {enc.normalization}; {enc.clipped_fraction:.2%} of training values clipped)")
        notes.extend(enc.notes)
    if enc is not None:
        settings["input_encoding"] = enc.summary()

    def accuracy(nonlinearity: str, x: np.ndarray, y: np.ndarray, lengths: np.ndarray) -> float:
        with torch.no_grad():
            logits = elman_logits(model.w_in, model.w_bias, model.w_rec, model.readout, torch.as_tensor(x),
                                  torch.as_tensor(lengths), nonlinearity, rule)
        return float((logits.argmax(1).numpy() == y).mean())

    if foreign.nonlinearity is None:
        n = min(len(task.x_train), 2000)
        relu, tanh = (accuracy(f, task.x_train[:n], task.y_train[:n], task.lengths_train[:n]) for f in ("relu", "tanh"))
        settings["train_accuracy_read_as"] = {"relu": relu, "tanh": tanh}
        if tanh > relu + 0.05:
            raise ValueError(
                f"the checkpoint does not declare its nonlinearity and fits the training data as a tanh RNN "
                f"(accuracy {tanh:.3f}) far better than as ReLU ({relu:.3f}); nn.RNN's default is tanh, which a spiking "
                "neuron cannot compute (its rate cannot be negative). Retrain with nn.RNN(..., nonlinearity='relu'), "
                "or, if it is ReLU, say so in the file: {'model': state_dict, 'meta': {'nonlinearity': 'relu'}}")
        notes.append(f"nonlinearity not declared by the file: read as ReLU (training accuracy {relu:.3f} as ReLU, "
                     f"{tanh:.3f} as tanh)")
    float_accuracy = accuracy("relu", task.x_test, task.y_test, task.lengths_test)
    lam = normalize_activations(model, task.x_train, task.lengths_train, cfg.activation_percentile)
    settings.update(activation_scale=lam, activation_percentile=cfg.activation_percentile)
    notes.append(f"activations rescaled by 1/{lam:.3g} (the {cfg.activation_percentile:g}th percentile over valid "
                 "training steps) so they fit the neurons' rate range")
    if model.config.kind == "elman":
        cfg = _imported_time_mapping(cfg, notes)
        if cfg.imported_retentions:
            cfg = _fit_retention(model, task, cfg, settings, notes)
    qat = cfg.constraint.qat
    epochs = qat_epochs_for(qat, len(task.x_train), cfg.imported_qat_min_steps)
    if epochs != qat.epochs:
        notes.append(f"QAT fine-tune {epochs} epochs (was {qat.epochs}): at least "
                     f"{cfg.imported_qat_min_steps} optimizer steps on {len(task.x_train)} training sequences")
    lr = qat.lr if cfg.imported_qat_lr is None else float(cfg.imported_qat_lr)
    if lr != qat.lr:
        notes.append(f"QAT learning rate {lr:g} (was {qat.lr:g}): the fine-tune also learns the leaky time mapping")
    constraint = dataclasses.replace(cfg.constraint, qat=dataclasses.replace(qat, epochs=epochs, lr=lr),
                                     choose_rounding=cfg.constraint.choose_rounding or cfg.imported_choose_rounding)
    cfg = dataclasses.replace(cfg, constraint=constraint)
    return PreparedModel(model, task, cfg, settings, notes, float_accuracy)


def _imported_time_mapping(cfg: PipelineConfig, notes: list[str]) -> PipelineConfig:
    """``cfg`` with :attr:`PipelineConfig.imported_steps_per_sample` and ``imported_saturation`` where set."""
    changes = {}
    if cfg.imported_steps_per_sample is not None and cfg.imported_steps_per_sample != cfg.steps_per_sample:
        changes["steps_per_sample"] = int(cfg.imported_steps_per_sample)
    if cfg.imported_saturation is not None and cfg.imported_saturation != cfg.saturation:
        changes["saturation"] = float(cfg.imported_saturation)
    if changes:
        notes.append("time mapping of the imported model: " + ", ".join(
            f"{k.replace('_', ' ')} {v:g} (was {getattr(cfg, k)})" for k, v in changes.items()))
    return dataclasses.replace(cfg, **changes)


def _fit_retention(model: RateRNN, task: Task, cfg: PipelineConfig, settings: dict, notes: list[str]) -> PipelineConfig:
    """``cfg`` with the retention of :attr:`PipelineConfig.imported_retentions` whose leaky model keeps the most
    training accuracy (ties: the longer time constant, which averages more spikes)."""
    from .constrain import to_hardware_dynamics

    n = min(len(task.x_train), 1000)
    saturation = cfg.saturation if cfg.saturation is not None else 1.0
    scores = {a: evaluate(to_hardware_dynamics(model, a, cfg.steps_per_sample, saturation), task.x_train[:n], task.y_train[:n],
                          task.lengths_train[:n])[0] for a in cfg.imported_retentions}
    best = max(scores, key=lambda a: (round(scores[a], 3), a))
    settings["retention_fit"] = {str(a): acc for a, acc in scores.items()}
    if len(scores) == 1:
        notes.append(f"retention of the time mapping {best:g} (training accuracy before the fine-tune {scores[best]:.3f})")
    else:
        notes.append("retention of the time mapping fitted on training data: " + ", ".join(
            f"{a:g} {acc:.3f}" for a, acc in scores.items()) + f" -> {best:g}")
    return dataclasses.replace(cfg, retention=best)


def constrained_network(
    model: RateRNN,
    task: Task,
    cfg: PipelineConfig,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> tuple[PreparedModel, ConstrainedNetwork]:
    """The one constrained network of a checkpoint: :func:`prepare_model` then :func:`constrain_model`.

    ``neurolab convert`` and ``neurolab calibrate`` both build theirs here, so the same checkpoint,
    task and options give the same network.
    """
    prepared = prepare_model(model, task, cfg)
    return prepared, constrain_model(prepared.model, prepared.task, prepared.cfg, progress=progress, cancel=cancel)


def used_settings(prepared: PreparedModel, constrained: ConstrainedNetwork) -> dict:
    """The report's ``model`` field: the network as converted (its dynamics, sizes, readout) and how it was prepared."""
    cfg = prepared.cfg
    return {**constrained.model.config.to_dict(), "source_model": prepared.model.config.to_dict(), **prepared.settings,
            "r_max_hz": cfg.r_max_hz, "dt_step_s": cfg.dt_step_s, "n_levels": cfg.constraint.precision.n_levels,
            "max_fan_in": cfg.constraint.max_fan_in, "n_core_groups": cfg.constraint.n_core_groups,
            "qat_epochs": cfg.constraint.qat.epochs, "qat_lr": cfg.constraint.qat.lr,
            "prune_epochs": cfg.constraint.prune_epochs,
            "qat_whole_spikes": cfg.qat_whole_spikes,
            "rounding": "error-aware" if constrained.error_aware else "plain", "seed": cfg.seed}


def _rate_stage(name: str, model: RateRNN, task: Task, cfg: PipelineConfig, fanout: np.ndarray | None,
                source_gains: tuple[float, float] = (1.0, 1.0)) -> StageResult:
    """Accuracy and rate-implied spike / synaptic-event counts of a float model (``source_gains``: input and bias channel rates)."""
    t0 = time.perf_counter()
    acc, _ = evaluate(model, task.x_test, task.y_test, task.lengths_test)
    rates = mean_rates(model, task.x_test, task.lengths_test)  # [N, T*k, H]
    k = model.config.steps_per_sample
    valid = np.arange(rates.shape[1])[None, :] < (task.lengths_test[:, None] * k)
    hidden_spikes = (rates * valid[:, :, None]).sum(1) * cfg.r_max_hz * cfg.dt_step_s  # [N, H]
    spikes = float(hidden_spikes.sum(1).mean())
    syn = None
    if fanout is not None:
        f1 = task.n_features + 1
        in_spikes = task.x_test[:, :, :].sum(1) * cfg.r_max_hz * k * cfg.dt_step_s * source_gains[0]  # [N, F]
        bias_spikes = task.lengths_test * k * cfg.dt_step_s * cfg.r_max_hz * source_gains[1]
        syn = float((in_spikes @ fanout[: f1 - 1] + bias_spikes * fanout[f1 - 1] + hidden_spikes @ fanout[f1:]).mean())
    return StageResult(name, acc, len(task.x_test), spikes, syn, time.perf_counter() - t0, note="spikes implied by rates")


def matching_of(cfg: PipelineConfig) -> TransferMatching:
    """How the board stages match a network to their board without a profile (``cfg``'s probe and rounds)."""
    return TransferMatching(cfg.probe, cfg.transfer_rounds, cfg.match_saturation)


def default_emulator_boards(seed: int = 0) -> dict[str, BoardOpener]:
    """Two emulated boards reached through the USB emulation: mismatch off and the default mismatch."""
    from ..boards import open_emulator

    return {
        "board_ideal": lambda: open_emulator("NLEMU-IDEAL", seed=seed, mismatch=False),
        "board_mismatch": lambda: open_emulator("NLEMU-MISMATCH", seed=seed),
    }


def convert(
    model: RateRNN,
    task: Task,
    cfg: PipelineConfig | None = None,
    boards: dict[str, BoardOpener] | None = None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    board: Board | None = None,
    profile: BoardProfile | None = None,
    calibrator: NetworkCalibrator | None = None,
) -> ConversionResult:
    """Constrain, map, match transfer curves and run every requested stage; see the module docstring.

    ``board`` is the board of the stage ``"board"`` (the CLI's ``--board``, the app's connected
    board; left open), ``profile`` its calibration profile (applied instead of transfer matching).
    ``calibrator`` runs the stage ``"board_calibrated"``: it calibrates the network on ``board``
    when one is given, else on a reference emulator with the default mismatch, and the calibrated
    network runs there.  Every board stage writes and runs the network with :mod:`.deployment`.

    Raises ``ValueError`` (:class:`.constrain.NonFiniteWeightsError` among them) for a model that
    cannot be converted: NaN/inf weights, or inputs/classes that do not match ``task``.
    """
    cfg = cfg or PipelineConfig()
    check_convertible(model, task)
    report = ConversionReport(task.name)

    def say(lo: float, hi: float) -> ProgressSink | None:
        return jobs.span(progress, lo, hi)

    prepared, constrained = constrained_network(model, task, cfg, progress=say(0.0, 0.35), cancel=cancel)
    model, task, cfg = prepared.model, prepared.task, prepared.cfg
    report.notes.extend(prepared.notes)
    float_stage = _rate_stage("float", model, task, cfg, None)
    if prepared.float_accuracy is not None:  # the imported model as PyTorch computes it (unbounded activation)
        float_stage.accuracy = prepared.float_accuracy
        float_stage.note = "as PyTorch computes it; spikes implied by the rescaled rates"
    report.add(float_stage)
    report.model = used_settings(prepared, constrained)
    report.constraints = constrained.summary()
    time_map = cfg.time_mapping()
    mapped = map_network(constrained, time_map, cfg.settings)
    report.add(_rate_stage("constrained", constrained.model, task, cfg, np.abs(mapped.multiplicity).sum(0),
                           (constrained.input_gain, constrained.bias_gain)))
    if cfg.ablation:
        report.ablation = run_ablation(model, constrained, task, cfg)

    n_spk = len(task.x_test) if cfg.n_test_spiking is None else min(cfg.n_test_spiking, len(task.x_test))
    x, y, lengths = task.x_test[:n_spk], task.y_test[:n_spk], task.lengths_test[:n_spk]
    result = ConversionResult(report, constrained, mapped, nominal_mapped=mapped, matching=matching_of(cfg), task=task)
    _, constrained_pred = evaluate(constrained.model, task.x_test, task.y_test, task.lengths_test)
    constrained_correct = constrained_pred == task.y_test

    def reference(n: int) -> float:
        """Constrained-RNN accuracy on the first ``n`` test samples (what a spiking stage ran)."""
        return float(constrained_correct[:n].mean())

    def paired(predictions: np.ndarray) -> dict[str, float]:
        n = len(predictions)
        agreement, se = paired_comparison(predictions, constrained_pred[:n], task.y_test[:n])
        return {"reference_accuracy": reference(n), "agreement": agreement, "loss_se_pp": se}

    if boards is None:
        boards = default_emulator_boards(cfg.emulator_seed) if any(s.startswith("board_") for s in cfg.stages) else {}
    if "board" in cfg.stages and board is None:
        raise ValueError("the stage 'board' needs a board: pass board= (the CLI's --board, the app's connected board)")
    if "board_calibrated" in cfg.stages and calibrator is None:
        raise ValueError("the stage 'board_calibrated' needs a calibrator (neurolab convert passes the calibration engine)")
    stage_names = [s for s in cfg.stages if s in ("brian2", "board_calibrated") or s in boards or (s == "board" and board is not None)]
    span = 0.65 / max(1, len(stage_names))
    ideal_mapped: MappedNetwork | None = None
    for i, stage in enumerate(stage_names):
        check_cancel(cancel)
        lo = 0.35 + i * span
        if stage == "brian2":
            continue  # runs after a board stage has matched the transfer curves (below)
        if stage == "board_calibrated":
            opener = boards.get("board_mismatch") or default_emulator_boards(cfg.emulator_seed)["board_mismatch"]
            report.add(_calibrated_stage(calibrator, board or opener(), board is None, mapped, constrained, task, x, y, lengths,
                                         cfg, paired, say(lo, lo + span), cancel))
            continue
        from .deployment import deploy_and_run

        # the emulator reference stages open (and close) their own boards; "board" is the caller's
        stage_board = board if stage == "board" else boards[stage]()
        stage_profile = profile if stage == "board" else None
        try:
            deployment, run = deploy_and_run(stage_board, mapped, x, y, lengths, profile=stage_profile,
                                             scales=constrained.scale, matching=matching_of(cfg), seed=cfg.seed,
                                             progress=say(lo, lo + span), cancel=cancel)
        finally:
            if stage != "board":
                stage_board.close()
        stage_mapped, fits, refractory = deployment.mapped, deployment.transfer_fits, deployment.refractory
        if fits:
            result.transfer_fits[stage] = fits
        if ideal_mapped is None or stage == "board_ideal":
            ideal_mapped = stage_mapped
        note = "; ".join(deployment.notes)
        if fits:
            note += f"; transfer gains (exc/inh per core): {_fit_note(fits)}"
        if refractory:
            note += "; t_ref/target per core: " + ", ".join(f"{core_label(f, refractory)} {f.t_ref_s / f.target_s:.3f}" for f in refractory)
        if deployment.warnings:
            note += f"; {len(deployment.warnings)} netlist warnings"
        if stage == "board":
            note = f"{deployment.serial}: {note}"
        report.add(
            StageResult(stage, run.accuracy, n_spk, run.spiking.spikes_per_inference(),
                        run.spiking.synaptic_events_per_inference(stage_mapped),
                        run.wall_s, note, {"transfer": [f.__dict__ for f in fits], "refractory": [f.__dict__ for f in refractory],
                                           "netlist_warnings": deployment.warnings, "board_serial": deployment.serial,
                                           "profile_applied": deployment.profile_applied},
                        **paired(run.predictions))
        )
        result.mapped = stage_mapped
    if "brian2" in stage_names:
        from .spiking_run import run_on_brian2

        n_b = n_spk if cfg.brian2_samples is None else min(n_spk, cfg.brian2_samples)
        b_mapped = ideal_mapped or mapped
        run = run_on_brian2(b_mapped, x[:n_b], lengths[:n_b], cfg.seed, say(0.9, 1.0), cancel)
        note = "mismatch off; weight biases from the board_ideal transfer match" if ideal_mapped else "nominal weight biases (no board stage ran)"
        report.add(StageResult("brian2", run.accuracy(y[:n_b]), n_b, run.spikes_per_inference(), run.synaptic_events_per_inference(b_mapped),
                               run.wall_s, note, **paired(run.predictions)))
    report.stages.sort(key=lambda s: STAGE_ORDER.index(s.name) if s.name in STAGE_ORDER else len(STAGE_ORDER))
    report.mapping = result.mapped.summary()
    if progress:
        progress(Progress(1.0, "conversion finished"))
    return result


def _calibrated_stage(calibrator: NetworkCalibrator, board: Board, close: bool, mapped: MappedNetwork,
                      constrained: ConstrainedNetwork, task: Task, x: np.ndarray, y: np.ndarray, lengths: np.ndarray,
                      cfg: PipelineConfig, paired: Callable[[np.ndarray], dict], progress: ProgressSink | None,
                      cancel: threading.Event | None) -> StageResult:
    """The stage ``board_calibrated``: calibrate the network on ``board``, write the result as it is, run it."""
    from .deployment import deploy_and_run

    t0 = time.perf_counter()
    try:
        calibrated = calibrator(board, mapped, constrained, task, jobs.span(progress, 0.0, 0.8), cancel)
        deployment, run = deploy_and_run(board, calibrated.mapped, x, y, lengths, seed=cfg.seed,
                                         progress=jobs.span(progress, 0.8, 1.0), cancel=cancel)
    finally:
        if close:
            board.close()
    note = (f"{deployment.serial}: calibrated on this board, chip time {calibrated.chip_s:.1f} s, "
            f"calibration wall {time.perf_counter() - t0 - run.wall_s:.0f} s")
    return StageResult("board_calibrated", run.accuracy, len(x), run.spiking.spikes_per_inference(),
                       run.spiking.synaptic_events_per_inference(deployment.mapped), run.wall_s, note,
                       {"chip_seconds": calibrated.chip_s, "board_serial": deployment.serial, "calibration": calibrated.summary,
                        "netlist_warnings": deployment.warnings}, **paired(run.predictions))


def _fit_note(fits: list[TransferFit]) -> str:
    return ", ".join(f"{core_label(f, fits)} {f.synapse[:4]} {f.gain / f.target_gain:.3f}x" for f in fits)
