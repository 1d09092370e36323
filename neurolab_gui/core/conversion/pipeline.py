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
    source_gains_of,
)
from .deployment import BoardProfile, TransferMatching
from .mapping import MappedNetwork, NeuronSettings, TimeMapping, map_network
from .models import RateRNN, RNNConfig
from .report import ConversionReport, StageResult, paired_comparison
from .tasks import Task
from .training import TrainConfig, TrainResult, evaluate, mean_rates, train
from .transfer import ProbeDesign, TransferFit

#: A function that opens (and returns) a Board for a stage.
BoardOpener = Callable[[], Board]

#: Fano factor of the spike-count noise the RNN is trained for (see ``PipelineConfig.spike_fano``).
DEFAULT_SPIKE_FANO = 0.4

#: ``board_ideal`` / ``board_mismatch``: reference emulators the pipeline opens itself (mismatch
#: off / on); ``board``: the board the caller passes (silicon or the app's connected emulator).
SPIKING_STAGES = ("brian2", "board_ideal", "board_mismatch", "board")


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
#: (``bench/conversion_accuracy.py``; docs/decisions.md, "MNIST-1D task defaults").  MNIST-1D: 2 RNN
#: steps per sample keep its 40-sample sequences affordable; 128 hidden units over all four cores
#: leave the calibration more spare neurons per core.
TASK_DEFAULTS: dict[str, dict] = {
    "seq_digits": {"n_hidden": 128, "steps_per_sample": 4, "epochs": 40, "qat_epochs": 20},
    "mnist1d": {"n_hidden": 128, "steps_per_sample": 2, "epochs": 30, "qat_epochs": 8, "n_core_groups": 4},
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
    ``epochs``, ``qat_epochs``, ``lr``, ``noise_std``, ``seed`` and ``n_core_groups`` reach the
    training, QAT and constraint configurations.  An unknown option raises ``ValueError`` naming it.
    """
    cfg = PipelineConfig()
    opts: dict = dict(TASK_DEFAULTS.get(task_name, {}))
    if model_config is not None:
        opts.update(n_hidden=model_config.n_hidden, kind=model_config.kind, readout=model_config.readout,
                    saturation=model_config.saturation)
        if model_config.kind == "leaky":
            opts.update(retention=model_config.retention, steps_per_sample=model_config.steps_per_sample,
                        integrator=model_config.integrator)
    opts.update({k: v for k, v in overrides.items() if v is not None})
    seed = int(opts.pop("seed", cfg.seed))
    epochs, qat_epochs = opts.pop("epochs", None), opts.pop("qat_epochs", None)
    n_core_groups = opts.pop("n_core_groups", None)
    lr, noise = opts.pop("lr", None), opts.pop("noise_std", None)
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
    if n_core_groups is not None:
        cfg.constraint.n_core_groups = int(n_core_groups)
    if lr is not None:
        cfg.train.lr = float(lr)
    if noise is not None:
        cfg.train.noise_std = cfg.constraint.qat.noise_std = float(noise)
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
    digest.update(json.dumps([task.name, model, dataclasses.asdict(cfg.train), cfg.count_noise(), fan_in],
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()[:16]


def train_model_cached(
    task: Task,
    cfg: PipelineConfig,
    cache_dir: str | None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> tuple[RateRNN, bool]:
    """:func:`train_model`, or the model it made before for the same data and choices (``cache_dir``).

    Returns the model and whether it came from the cache.  Models are stored in the package's own
    checkpoint format (:mod:`.checkpoint`), named by :func:`training_key`; ``cache_dir`` None trains.
    """
    from pathlib import Path

    from .checkpoint import load_checkpoint, save_checkpoint

    if cache_dir is None:
        return train_model(task, cfg, progress, cancel)[0], False
    path = Path(cache_dir).expanduser() / f"{task.name}-{training_key(task, cfg)}.pt"
    if path.exists():
        return load_checkpoint(path).model, True
    model, result = train_model(task, cfg, progress, cancel)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(path, model, {"test_accuracy": result.test_accuracy, "training_key": path.stem})
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
    return constrain(model, task, dataclasses.replace(cfg.constraint, qat=qat), cfg.retention, cfg.steps_per_sample,
                     progress=progress, cancel=cancel, saturation=cfg.saturation)


def run_ablation(model: RateRNN, constrained: ConstrainedNetwork, task: Task, cfg: PipelineConfig) -> list[AblationRow]:
    """:func:`.ablation.constraint_ablation` with the settings :func:`constrain_model` used."""
    return constraint_ablation(model, constrained, task, cfg.constraint, cfg.retention, cfg.steps_per_sample, cfg.saturation,
                               cfg.r_max_hz * cfg.dt_step_s, cfg.count_noise(), cfg.seed)


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
) -> ConversionResult:
    """Constrain, map, match transfer curves and run every requested stage; see the module docstring.

    ``board`` is the board of the stage ``"board"`` (the CLI's ``--board``, the app's connected
    board; left open), ``profile`` its calibration profile (applied instead of transfer matching).
    Every board stage writes and runs the network with :mod:`.deployment`.

    Raises ``ValueError`` (:class:`.constrain.NonFiniteWeightsError` among them) for a model that
    cannot be converted: NaN/inf weights, or inputs/classes that do not match ``task``.
    """
    cfg = cfg or PipelineConfig()
    check_convertible(model, task)
    report = ConversionReport(task.name)

    def say(lo: float, hi: float) -> ProgressSink | None:
        return jobs.span(progress, lo, hi)

    model = copy.deepcopy(model).cpu()
    report.model = {**model.config.to_dict()}
    float_model = model
    if model.config.kind == "elman" and model.config.readout == "last" and _looks_unbounded(model, task):
        lam = normalize_activations(model, task.x_train)
        report.notes.append(f"imported unbounded-ReLU model rescaled by 1/{lam:.3g} so activations fit [0, 1]")
    report.add(_rate_stage("float", float_model, task, cfg, None))

    constrained = constrain_model(model, task, cfg, progress=say(0.0, 0.35), cancel=cancel)
    report.constraints = constrained.summary()
    time_map = cfg.time_mapping()
    mapped = map_network(constrained, time_map, cfg.settings)
    report.add(_rate_stage("constrained", constrained.model, task, cfg, np.abs(mapped.multiplicity).sum(0),
                           (constrained.input_gain, constrained.bias_gain)))
    if cfg.ablation:
        report.ablation = run_ablation(model, constrained, task, cfg)

    n_spk = len(task.x_test) if cfg.n_test_spiking is None else min(cfg.n_test_spiking, len(task.x_test))
    x, y, lengths = task.x_test[:n_spk], task.y_test[:n_spk], task.lengths_test[:n_spk]
    result = ConversionResult(report, constrained, mapped, nominal_mapped=mapped, matching=matching_of(cfg))
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
    stage_names = [s for s in cfg.stages if s == "brian2" or s in boards or (s == "board" and board is not None)]
    span = 0.65 / max(1, len(stage_names))
    ideal_mapped: MappedNetwork | None = None
    for i, stage in enumerate(stage_names):
        check_cancel(cancel)
        lo = 0.35 + i * span
        if stage == "brian2":
            continue  # runs after a board stage has matched the transfer curves (below)
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
            note += "; t_ref/target per core: " + ", ".join(f"{_core_label(f, refractory)} {f.t_ref_s / f.target_s:.3f}" for f in refractory)
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
        report.stages.sort(key=lambda s: ["float", "constrained", "brian2", "board_ideal", "board_mismatch", "board"].index(s.name) if s.name in ("float", "constrained", "brian2", "board_ideal", "board_mismatch", "board") else 99)
    report.mapping = result.mapped.summary()
    if progress:
        progress(Progress(1.0, "conversion finished"))
    return result


def _fit_note(fits: list[TransferFit]) -> str:
    return ", ".join(f"{_core_label(f, fits)} {f.synapse[:4]} {f.gain / f.target_gain:.3f}x" for f in fits)


def _core_label(fit, fits) -> str:
    """``c<core>``, or ``U<chip>c<core>`` when the fits span several chips."""
    return f"U{fit.chip}c{fit.core}" if len({f.chip for f in fits}) > 1 else f"c{fit.core}"


def _looks_unbounded(model: RateRNN, task: Task) -> bool:
    """True when the imported model's activations exceed 1 on training data (so clipping would distort it)."""
    with torch.no_grad():
        xt = torch.as_tensor(task.x_train[:256])
        h = torch.zeros(len(xt), model.config.n_hidden)
        peak = 0.0
        for t in range(xt.shape[1]):
            h = torch.relu(xt[:, t] @ model.w_in.T + model.w_bias + h @ model.w_rec.T)
            peak = max(peak, float(h.max()))
    return peak > 1.0
