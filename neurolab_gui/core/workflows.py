"""The session's long workflows: train a network, convert it, deploy it on the connected board, calibrate.

Each workflow is a plain function over a :class:`~neurolab_gui.core.session.Session` that takes
``progress`` and ``cancel`` like every long call (:mod:`neurolab_gui.core.jobs`) and puts its
result into the session (``set_model``, ``set_conversion``), where the panels follow it.  A
script or the CLI calls the function directly; the GUI builds the matching :class:`~.jobs.Job`
with :func:`training_job`, :func:`conversion_job`, :func:`calibration_job`, :func:`load_job` (a
checkpoint and the data it names) or :func:`data_file_job`, subscribes to its
signals and starts it, so the panels hold no workflow logic.

Bad requests (no model to convert, no board to calibrate) are refused when the job is built,
before any thread starts, with a message that says what to do.  The jobs that drive the board
(calibration, deployment, board run, network calibration) are marked ``uses_board`` and started
through ``session.board_jobs`` (:class:`~.jobs.JobSlot`): one at a time on the board.  Called
directly (a script, the CLI), those workflows claim the same slot for the call
(:func:`_claims_board`), so a second one from another thread, or one under a running board job,
is refused with :class:`~.jobs.BoardBusy` naming what runs; inside its own job the slot is
already the work's thread's, so a job never refuses itself.

Counts (``n_test``, ``n_train``, ``epochs``, ...) are positive integers, None meaning "all" or
"the default" (:func:`drivers.arguments.positive_int_or_none`): ``-1`` is no "all" (it was used
as a slice and dropped the last sample), and ``2.7``, ``"3"`` or ``True`` are refused, not
truncated.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from drivers.arguments import non_negative_int, positive_int_or_none

from . import jobs
from .bias_model import core_bias_keys
from .jobs import Job, Progress, ProgressSink

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .calibration.board_calibration import BoardCalibration
    from .conversion.deployment import Deployment, DeploymentRun
    from .conversion.models import RateRNN, RNNConfig
    from .conversion.pipeline import ConversionResult, PipelineConfig
    from .conversion.tasks import Task
    from .conversion.training import TrainResult
    from .session import Session


W = TypeVar("W", bound=Callable[..., Any])


def _claims_board(name: str) -> Callable[[W], W]:
    """Decorate a workflow ``f(session, ...)`` that drives the session's board: the call holds
    ``session.board_jobs`` (:meth:`~.jobs.JobSlot.claimed`, as ``name``), or raises
    :class:`~.jobs.BoardBusy` naming the job or call that has it.  Re-entrant on the thread that
    has the slot: the workflow's own :class:`~.jobs.Job` started through the slot runs it."""

    def decorate(work: W) -> W:
        @functools.wraps(work)
        def claimed(session: Session, *args: Any, **kwargs: Any) -> Any:
            with session.board_jobs.claimed(name):
                return work(session, *args, **kwargs)

        return claimed  # type: ignore[return-value]

    return decorate


def heavy_stack_loaded(progress: ProgressSink | None = None, cancel: threading.Event | None = None) -> None:
    """Wait until torch and the conversion and calibration stacks are imported
    (:func:`~neurolab_gui.core.warmup.warm_up`, started by the app early; started here otherwise).

    Every workflow that imports them calls this first.  Imported on a job's worker thread while
    the warm-up thread is still importing them, they stalled the window: Train pressed in the
    first seconds of the app stopped its event loop for about 1 s (the imports and the collector
    hold the GIL; the warm-up imports them the way that holds it least).  Waiting on the future
    holds nothing.
    """
    from .warmup import warm_up

    loading = warm_up()
    if not loading.done() and progress is not None:
        progress(Progress(0.0, step="loading torch and the conversion stack"))
    while not loading.done():  # a Cancel meanwhile ends the job now, not after the imports
        jobs.check_cancel(cancel, "cancelled while loading torch and the conversion stack")
        concurrent.futures.wait([loading], timeout=0.05)
    loading.result()


def pipeline_config(
    task_name: str,
    model_config: RNNConfig | None = None,
    *,
    n_hidden: int | None = None,
    epochs: int | None = None,
    qat_epochs: int | None = None,
    n_test_spiking: int | None = None,
    stages: Sequence[str] | None = None,
    max_fan_in: int | None = None,
    n_core_groups: int | None = None,
) -> PipelineConfig:
    """The pipeline configuration for ``task_name`` with a front end's choices on top.

    With ``model_config`` (converting a trained or loaded network) the model's own dynamics and
    size win over ``n_hidden``, since the spiking time mapping must be the one it was trained with
    (:func:`~neurolab_gui.core.conversion.pipeline.config_for_task`).

    Every choice is checked here, before anything is built, with a ``ValueError`` naming it:
    ``n_hidden``, ``epochs``, ``n_test_spiking``, ``max_fan_in`` and ``n_core_groups`` are
    positive integers, ``qat_epochs`` an integer >= 0 (0: no QAT), ``stages`` names from
    :data:`~neurolab_gui.core.conversion.pipeline.SPIKING_STAGES`; None keeps the task's default.
    """
    from .conversion.pipeline import SPIKING_STAGES, config_for_task

    n_hidden, epochs, n_test_spiking, max_fan_in, n_core_groups = (
        positive_int_or_none(name, value) for name, value in (
            ("n_hidden", n_hidden), ("epochs", epochs), ("n_test_spiking", n_test_spiking),
            ("max_fan_in", max_fan_in), ("n_core_groups", n_core_groups)))
    if qat_epochs is not None:
        qat_epochs = non_negative_int("qat_epochs", qat_epochs)
    if stages is not None:
        if isinstance(stages, str):  # tuple("board") would be five one-letter stages
            raise ValueError(f"stages must be a sequence of stage names, got the string {stages!r}")
        stages = tuple(stages)
        unknown = [stage for stage in stages if stage not in SPIKING_STAGES]
        if unknown:
            raise ValueError(f"unknown stage(s) {', '.join(map(repr, unknown))}; stages are {', '.join(SPIKING_STAGES)}")
    cfg = config_for_task(task_name, model_config, n_hidden=None if model_config is not None else n_hidden, epochs=epochs,
                          qat_epochs=qat_epochs, n_test_spiking=n_test_spiking,
                          stages=stages)
    if max_fan_in is not None:
        cfg.constraint.max_fan_in = max_fan_in
    if n_core_groups is not None:
        cfg.constraint.n_core_groups = n_core_groups
    return cfg


def session_task(session: Session, task_name: str) -> Task:
    """The session's data set when it is ``task_name`` (a built-in task's name or a data file's
    path), else ``task_name`` loaded into the session."""
    from .conversion.tasks import load_task

    current = session.task
    if current is not None and is_task(current, task_name):
        return current
    task = load_task(task_name)
    session.task = task
    return task


def is_task(task: Task, task_name: str) -> bool:
    """Whether ``task`` is what ``task_name`` names: a data file by the file it was read from (its
    stem may be a built-in task's name), a built-in task by its name."""
    from pathlib import Path

    from .conversion.tasks import BUILTIN_TASKS

    source = getattr(task, "source", "")
    if task_name in BUILTIN_TASKS:
        return not source and getattr(task, "name", None) == task_name
    return bool(source) and source == str(Path(task_name).resolve())


# --- a checkpoint, and the data it is evaluated on ---------------------------------------------
@dataclasses.dataclass
class LoadedNetwork:
    """A checkpoint made the session's model by :func:`load_network`.

    Attributes
    ----------
    path : the checkpoint file
    loaded : what :func:`~neurolab_gui.core.conversion.checkpoint.load_checkpoint` read
    task_name : the data the checkpoint names (a built-in task, or a data file's absolute path),
        loaded as the session's data set; None when it names none that can be used
    task_problem : why the named data cannot be used (None when ``task_name`` is set)
    """

    path: str
    loaded: Any
    task_name: str | None
    task_problem: str | None


def load_network(session: Session, path: str, remedy: str = "choose its data",
                 progress: ProgressSink | None = None, cancel: threading.Event | None = None) -> LoadedNetwork:
    """Read the checkpoint at ``path`` and make its model the session's, with the data it names.

    The checkpoint is read as ``neurolab convert`` reads it
    (:func:`~neurolab_gui.core.conversion.checkpoint.load_checkpoint`), and the data it was made on
    resolved by the same rule (:func:`~neurolab_gui.core.conversion.tasks.stored_task`: a built-in
    task, or the data file whose path ``neurolab train --task FILE.npz`` stored) and loaded, so the
    app converts it against what the CLI would.  A checkpoint that cannot be read raises (the
    session keeps its model); one whose data are not named or gone still loads, and
    ``task_problem`` says why, ending in ``remedy`` (what the user does instead).
    """
    heavy_stack_loaded(progress, cancel)  # imported here on the job's thread, the first load stalled the window 0.2-1 s
    if progress is not None:
        progress(Progress(0.0, step="reading the checkpoint"))
    from .conversion.checkpoint import load_checkpoint
    from .conversion.tasks import stored_task

    loaded = load_checkpoint(path)
    task_name: str | None = None
    problem: str | None = None
    try:
        task_name = stored_task(loaded.metadata, path, remedy)
    except ValueError as exc:
        problem = str(exc)
    if task_name is not None:
        if progress is not None:
            progress(Progress(0.5, step=f"loading its data {task_name}"))
        try:
            _report_task_warnings(session_task(session, task_name), progress)
        except (ValueError, FileNotFoundError) as exc:  # the data file the checkpoint names is refused
            task_name, problem = None, f"the data the checkpoint {path} names cannot be used: {exc}; {remedy}"
    jobs.check_cancel(cancel, "loading cancelled")  # cancelled: the session keeps its model
    session.set_model(loaded.model)
    return LoadedNetwork(str(path), loaded, task_name, problem)


def load_job(session: Session, path: str, remedy: str = "choose its data") -> Job[LoadedNetwork]:
    """:func:`load_network` as a job (not started): reading a large checkpoint takes a second."""
    return Job("checkpoint loading", lambda progress, cancel: load_network(session, path, remedy, progress, cancel))


def load_data_file(session: Session, path: str, progress: ProgressSink | None = None,
                   cancel: threading.Event | None = None) -> str:
    """Read the data file (``.npz``) at ``path`` with the reader of ``neurolab train/convert --task
    FILE.npz`` and make it the session's data set; returns its reference (the absolute path), the
    task name that trains and converts on it.  A file that is refused raises, naming the problem."""
    from .conversion.tasks import load_task, task_reference

    if progress is not None:
        progress(Progress(0.0, step=f"reading {path}"))
    reference = task_reference(path)
    task = load_task(reference)  # read again even when it is the session's: the file may have changed
    jobs.check_cancel(cancel, "loading cancelled")
    session.task = task
    _report_task_warnings(task, progress)
    return reference


def _report_task_warnings(task: Task, progress: ProgressSink | None) -> None:
    """A user data file's warnings (:attr:`~.conversion.tasks.Task.warnings`, e.g. test classes the
    training never saw) as steps of the job, which the app's log panel keeps: the CLI prints the
    same sentences as ``warning:`` lines."""
    if progress is not None:
        for warning in task.warnings:
            progress(Progress(1.0, step=f"warning: {warning}"))


def data_file_job(session: Session, path: str) -> Job[str]:
    """:func:`load_data_file` as a job (not started)."""
    return Job("data file loading", lambda progress, cancel: load_data_file(session, path, progress, cancel))


# --- training -----------------------------------------------------------------------------------
def train_network(session: Session, task_name: str, cfg: PipelineConfig | Callable[[], PipelineConfig], n_train: int | None = None,
                  progress: ProgressSink | None = None, cancel: threading.Event | None = None) -> RateRNN:
    """Train a fresh RNN of ``cfg`` on ``task_name`` (``n_train``: only the first ``n_train``
    training samples, a positive integer; None: all) and make it the session's model.  ``cfg`` may be a call that builds the configuration
    (:func:`pipeline_config` imports the conversion stack): it is called here, once
    :func:`heavy_stack_loaded`, so a front end that starts this as a job never waits for those imports."""
    n_train = positive_int_or_none("n_train", n_train)
    heavy_stack_loaded(progress, cancel)
    cfg = cfg() if callable(cfg) else cfg
    from .conversion.mapping import network_size_problem
    from .conversion.pipeline import train_model

    task = session_task(session, task_name)
    # the rule `neurolab train` and every conversion apply: never train a model no board can hold
    problem = network_size_problem(cfg.n_hidden, task.n_features, cfg.constraint.n_core_groups)
    if problem:
        raise ValueError(problem)
    if n_train is not None:
        task = task.subset(n_train, None)
    model, result = train_model(task, cfg, progress=progress, cancel=cancel)
    if progress is not None:  # a step of its own, so the job's log (the app's log panel) keeps the line
        progress(Progress(1.0, step=training_summary(result)))
    session.set_model(model)
    return model


def training_summary(result: TrainResult) -> str:
    """One line on a finished float training: test accuracy, the training set without noise, and the
    warning when the model needs its training noise (:meth:`.conversion.training.TrainResult.noise_reliance_warning`)."""
    text = f"test accuracy {result.test_accuracy:.3f}, training set without noise {result.clean_train_accuracy:.3f}"
    warning = result.noise_reliance_warning()
    return f"{text}; warning: {warning}" if warning else text


def training_job(session: Session, task_name: str, cfg: PipelineConfig | Callable[[], PipelineConfig],
                 n_train: int | None = None) -> Job[RateRNN]:
    """:func:`train_network` as a job (not started); ``cfg`` as there; a bad ``n_train`` is refused at once."""
    positive_int_or_none("n_train", n_train)
    return Job("training", lambda progress, cancel: train_network(session, task_name, cfg, n_train, progress, cancel))


# --- conversion ---------------------------------------------------------------------------------
def convert_network(session: Session, task_name: str, cfg: PipelineConfig | Callable[[], PipelineConfig], model: RateRNN | None = None,
                    n_test: int | None = None, progress: ProgressSink | None = None,
                    cancel: threading.Event | None = None) -> ConversionResult:
    """Constrain, map and run ``cfg``'s stages for ``model`` (default: the session's) on
    ``task_name`` (``n_test``: only the first ``n_test`` test samples, a positive integer; None:
    all); the result becomes the session's.  ``cfg`` may be a call that builds the configuration,
    as in :func:`train_network`."""
    n_test = positive_int_or_none("n_test", n_test)
    heavy_stack_loaded(progress, cancel)
    cfg = cfg() if callable(cfg) else cfg
    from .conversion.pipeline import convert

    model = model if model is not None else _session_model(session)
    task = session_task(session, task_name)
    if n_test is not None:
        task = task.subset(None, n_test)
    result = convert(model, task, cfg, progress=progress, cancel=cancel)
    session.set_conversion(result)
    return result


def conversion_job(session: Session, task_name: str, cfg: PipelineConfig | Callable[[], PipelineConfig],
                   n_test: int | None = None) -> Job[ConversionResult]:
    """:func:`convert_network` of the session's current model as a job (not started); refused at
    once without a model or with a bad ``n_test``.  ``cfg`` as in :func:`convert_network`."""
    positive_int_or_none("n_test", n_test)
    model = _session_model(session)
    return Job("conversion", lambda progress, cancel: convert_network(session, task_name, cfg, model, n_test, progress, cancel))


def _session_model(session: Session) -> Any:
    if session.model is None:
        raise RuntimeError("load or train a model before converting")
    return session.model


# --- deployment on the connected board ----------------------------------------------------------
@_claims_board("deployment")
def deploy_to_board(session: Session, use_profile: bool = True, progress: ProgressSink | None = None,
                    cancel: threading.Event | None = None) -> Deployment:
    """Write the session's converted network onto the session's board (its calibration profile when
    one exists for the board's serial and ``use_profile``; otherwise the weight biases are matched on
    the board) with :func:`~neurolab_gui.core.conversion.deployment.deploy_network`; it becomes
    ``session.deployment``.  Its bias writes are logged with origin ``"deployment"``, one undo step.  The same call as ``neurolab deploy``'s, so both write the same network.
    """
    from .calibration.profile import find_profile
    from .conversion.deployment import deploy_network

    board, conversion = _session_board(session, "deploying"), _session_conversion(session, "deploying it")
    profile = find_profile(board.serial) if use_profile else None
    mapped = conversion.nominal_mapped if conversion.nominal_mapped is not None else conversion.mapped
    with session.connection.acquisition_paused(), session.biases.external_step("deployment"):
        deployment = deploy_network(board, mapped, profile=profile, scales=conversion.constrained.scale,
                                    matching=conversion.matching, progress=progress, cancel=cancel)
    session.set_deployment(deployment)
    return deployment


@_claims_board("board run")
def run_deployed(session: Session, n_test: int | None = None, seed: int = 0, progress: ProgressSink | None = None,
                 cancel: threading.Event | None = None) -> DeploymentRun:
    """Run the first ``n_test`` test samples (a positive integer; all when None) through the
    network on the session's board.

    The board's events of every batch reach the session's monitors (the raster shows the
    network's spikes as they come); every batch's progress carries the predictions, class scores,
    running accuracy and confusion matrix (:func:`~neurolab_gui.core.conversion.deployment.run_deployment`).
    At the end the conversion's stage table gets (or replaces) its row "board".
    """
    from .conversion.deployment import run_deployment

    n_test = positive_int_or_none("n_test", n_test)
    deployment = session.deployment
    if deployment is None or deployment.board is not session.board:
        raise RuntimeError("deploy the network to the connected board first")
    task = session.task
    if task is None:
        raise RuntimeError("load a data set (train, convert or load a model) before running the network")
    n = len(task.x_test) if n_test is None else min(n_test, len(task.x_test))
    with session.connection.acquisition_paused():
        run = run_deployment(deployment, task.x_test[:n], task.y_test[:n], task.lengths_test[:n], seed=seed,
                             progress=progress, cancel=cancel, on_events=session.connection.feed,
                             on_inputs=session.spikes.on_inputs)
    conversion = session.conversion
    if conversion is not None:
        note = f"{deployment.serial} (connected board): " + "; ".join(deployment.notes)
        conversion.report.add(_board_stage("board", deployment, run, note))
        session.set_conversion(conversion)
    return run


def _board_stage(name: str, deployment: Deployment, run: DeploymentRun, note: str) -> Any:
    """The stage table's row ``name`` for ``run`` of ``deployment`` on the connected board."""
    from .conversion.report import StageResult

    return StageResult(name, run.accuracy, len(run.predictions), run.spiking.spikes_per_inference(),
                       run.spiking.synaptic_events_per_inference(deployment.mapped), run.wall_s, note,
                       {"board_serial": deployment.serial, "profile_applied": deployment.profile_applied})


def deployment_job(session: Session, use_profile: bool = True) -> Job[Deployment]:
    """:func:`deploy_to_board` as a job (not started); refused at once without a board or a conversion."""
    _session_board(session, "deploying")
    _session_conversion(session, "deploying it")
    return Job("deployment", lambda progress, cancel: deploy_to_board(session, use_profile, progress, cancel), uses_board=True)


def run_job(session: Session, n_test: int | None = None, seed: int = 0) -> Job[DeploymentRun]:
    """:func:`run_deployed` as a job (not started); refused at once when nothing is deployed or ``n_test`` is bad."""
    positive_int_or_none("n_test", n_test)
    if session.deployment is None:
        raise RuntimeError("deploy the network to the connected board first")
    return Job("board run", lambda progress, cancel: run_deployed(session, n_test, seed, progress, cancel), uses_board=True)


def _session_conversion(session: Session, doing: str) -> Any:
    """The session's conversion; without one, a refusal naming the action asked for (as :func:`_session_board`)."""
    if session.conversion is None:
        raise RuntimeError(f"convert (or load a converted) network before {doing}")
    return session.conversion


# --- calibration --------------------------------------------------------------------------------
@_claims_board("network calibration")
def calibrate_deployed_network(session: Session, config: Any = None, in_the_loop: bool = True, n_test: int = 100,
                               profile_dir: Any = None, progress: ProgressSink | None = None,
                               cancel: threading.Event | None = None) -> dict:
    """Calibrate the session's converted network on the session's board, with the engine of
    ``neurolab calibrate --task`` (:func:`~neurolab_gui.core.calibration.engine.calibrate_network`).

    It starts from the network as mapped (its nominal biases and neurons), with the chip-in-the-
    loop fine-tuning on the session's data set when ``in_the_loop``.  Every bias it writes is
    logged with origin ``"calibration"`` and the whole run is one undo step
    (:meth:`~neurolab_gui.core.bias_model.BiasModel.external_step`); cancelled or failed, the board
    is put back as it was (:func:`_board_put_back_on_failure`: the biases it started from and the
    network deployed on it), so nothing is left to undo.  Done, the calibrated network
    is written on the board (it becomes ``session.deployment``), the profile is saved for the
    board's serial (``profile_dir``: default location) and ``session.calibration_summary`` keeps gain CV,
    accuracy on the first ``n_test`` test samples and chip time, before and after.  The two accuracies
    are the stage table's rows ``board`` (the network before: nominal neurons, weight biases tuned to
    the population) and ``board_calibrated``, the rows ``neurolab convert --stages board,board_calibrated``
    gives.  Progress is shared by the expected cost of the calibration and of the two runs
    (:func:`~neurolab_gui.core.calibration.engine.plan_network_calibration`).
    """
    from .calibration.engine import RUN_OVERHEAD_S, board_sample_s, calibrate_network, plan_network_calibration
    from .calibration.profile import profile_from_network_calibration, save_profile
    from .conversion.deployment import deploy_network, run_deployment

    board, conversion = _session_board(session), _session_conversion(session, "calibrating it on the board")
    task = session.task
    mapped = conversion.nominal_mapped if conversion.nominal_mapped is not None else conversion.mapped
    n = min(int(n_test), len(task.x_test)) if task is not None and n_test > 0 else 0
    run_s = n * board_sample_s(mapped, task.lengths_test[:n]) + RUN_OVERHEAD_S if n else 0.0
    engine_plan = plan_network_calibration(mapped, task if in_the_loop else None, config)
    plan = jobs.CostPlan({"calibrate": engine_plan.total, "before": run_s, "after": run_s, "deploy": RUN_OVERHEAD_S})
    target = session.connection.target
    if progress is not None and (target is None or target.clock == "realtime"):
        # an ETA from the start (the first fraction comes only with the first probe run): the plan
        # counts board seconds, which are wall seconds on silicon and on the real-time emulator
        # (the "fast" emulator runs them several times faster, and its first probe ends within a second)
        progress(Progress(0.0, f"planned: about {plan.total:.0f} s", "plan", payload={"planned_s": plan.total}))
    rows = []
    # the calibrated cores are held (BiasModel.hold): an edit there would be overwritten by the
    # engine or, undone later, write one of its transient levels
    with (session.connection.acquisition_paused(), session.biases.external_step("calibration"),
          session.biases.hold(core_bias_keys(mapped.group_cores), "being calibrated", "the network calibration"),
          _board_put_back_on_failure(session, board, mapped.group_cores)):
        result = calibrate_network(_CancellableReads(board, cancel), mapped, conversion.constrained, task if in_the_loop else None, config,
                                   progress=plan.span(progress, "calibrate"), cancel=cancel)
        summary: dict[str, Any] = {
            "serial": board.serial, "gain_cv_before": result.gain_cv_before, "gain_cv_after": result.gain_cv_after,
            "inh_gain_cv_before": result.inh_gain_cv_before, "inh_gain_cv_after": result.inh_gain_cv_after,
            "chip_s_measurement": result.chip_s_measurement, "chip_s_loop": result.chip_s_loop,
            "chip_seconds_total": result.chip_seconds_total,
        }
        if n:
            x, y, lengths = task.x_test[:n], task.y_test[:n], task.lengths_test[:n]
            for when, network, stage in (("before", result.mapped_before, "board"), ("after", result.mapped, "board_calibrated")):
                deployed = deploy_network(board, network, cancel=cancel)
                run = run_deployment(deployed, x, y, lengths, cancel=cancel, progress=plan.span(progress, when))
                summary[f"accuracy_{when}"] = run.accuracy
                what = ("before calibration: nominal neurons, weight biases tuned to the population" if when == "before" else
                        f"calibrated here: gain CV {result.gain_cv_before:.1%} -> {result.gain_cv_after:.1%}, "
                        f"chip time {result.chip_seconds_total:.0f} s")
                rows.append(_board_stage(stage, deployed, run, f"{board.serial} (connected board): {what}"))
            summary["n_test"] = n
        deployment = deploy_network(board, result.mapped, cancel=cancel)
    deployment.profile_applied = True
    deployment.notes = [f"calibrated here: gain CV {result.gain_cv_before:.1%} -> {result.gain_cv_after:.1%}"]
    profile = profile_from_network_calibration(board.serial, result, board.is_emulated)
    profile.summary["accuracy"] = {k: v for k, v in summary.items() if k.startswith("accuracy_")}
    summary["profile"] = str(save_profile(profile, profile_dir))
    session.calibration_summary = summary
    session.set_deployment(deployment)
    if rows and session.conversion is conversion:
        for row in rows:
            conversion.report.add(row)
        session.set_conversion(conversion)
    return summary


class _CancellableReads:
    """A board proxy whose ``read_events`` reads in slices of at most ``slice_s`` of board time and
    checks ``cancel`` between them, so a long measurement stops within one slice of a cancel
    (the engine checks only between its measurements).  Consecutive reads continue the board's
    time, so the events are those of one read."""

    def __init__(self, board: Any, cancel: threading.Event | None, slice_s: float = 0.1) -> None:
        self._board, self._cancel, self._slice_s = board, cancel, slice_s

    def read_events(self, duration_s: float) -> Any:
        from drivers.dynapse1.spikes import SpikeEvents

        from .calibration.progress import CalibrationCancelled

        batches, left = [], float(duration_s)
        while left > 1e-9:
            if self._cancel is not None and self._cancel.is_set():
                raise CalibrationCancelled("calibration cancelled by the user")
            step = min(self._slice_s, left)
            batches.append(self._board.read_events(step))
            left -= step
        return batches[0] if len(batches) == 1 else SpikeEvents.concatenate(batches)

    def __getattr__(self, name: str) -> Any:  # everything else goes straight to the board
        return getattr(self._board, name)


def network_calibration_job(session: Session, config: Any = None, in_the_loop: bool = True, n_test: int = 100) -> Job[dict]:
    """:func:`calibrate_deployed_network` as a job (not started); refused at once without a board or a conversion."""
    _session_board(session)
    _session_conversion(session, "calibrating it on the board")
    return Job("network calibration", lambda progress, cancel: calibrate_deployed_network(
        session, config, in_the_loop, n_test, progress=progress, cancel=cancel), uses_board=True)


def calibration_cores(session: Session, fallback: tuple[int, int] = (0, 0)) -> list[tuple[int, int]]:
    """The cores a calibration measures: those of the mapped network, else ``fallback``."""
    mapped = getattr(session.conversion, "mapped", None)
    if mapped is not None:
        return [(int(c), int(k)) for c, k in mapped.group_cores]
    return [(int(fallback[0]), int(fallback[1]))]


@_claims_board("calibration")
def calibrate_cores(session: Session, cores: Sequence[tuple[int, int]], progress: ProgressSink | None = None,
                    cancel: threading.Event | None = None) -> dict[int, BoardCalibration]:
    """Tune ``cores`` of the session's board from the published ``samna_recommended`` set and fit
    every neuron's f-I curve, chip by chip
    (:func:`~neurolab_gui.core.calibration.board_calibration.calibrate_board`).

    Progress reports carry each step's intermediate curves as ``payload["curves"]``.  Cancelled or
    failed, the board is put back as it was (:func:`_board_put_back_on_failure`: every bias as it
    was when the calibration started, flags included, and the network deployed on it).  Done, the
    cores keep their calibrated biases and the deployed network, whose connections the measurements
    replaced, is written again (its bias changes show as :attr:`Session.deployment_bias_changes`).
    The cores' biases are held meanwhile (:meth:`~neurolab_gui.core.bias_model.BiasModel.hold`).
    """
    heavy_stack_loaded(progress, cancel)
    from .calibration.board_calibration import calibrate_board

    board = _session_board(session)
    cores_by_chip: dict[int, list[int]] = {}
    for chip, core in cores:
        cores_by_chip.setdefault(int(chip), []).append(int(core))
    results = {}
    # the cores are held for the whole run, restore on cancel included (BiasModel.hold): an edit of
    # one of their biases is refused, naming the calibration, rather than overwritten
    with (session.biases.hold(core_bias_keys(cores), "being calibrated", "the calibration"),
          _board_put_back_on_failure(session, board, cores) as deployed):
        for i, (chip, chip_cores) in enumerate(cores_by_chip.items()):
            def per_chip(event: Progress, i: int = i, chip: int = chip) -> None:
                if progress is not None:
                    progress(dataclasses.replace(event, fraction=(i + event.fraction) / len(cores_by_chip),
                                                 message=f"chip {chip}: {event.message}"))

            results[chip] = calibrate_board(board, chip, chip_cores, progress=per_chip, cancel=cancel)
        if deployed is not None:  # the calibrated biases stay; the network's connections come back
            _write_network_back(session, board, deployed, list(cores_by_chip))
    return results


def calibration_job(session: Session, cores: Sequence[tuple[int, int]]) -> Job[dict[int, BoardCalibration]]:
    """:func:`calibrate_cores` as a job (not started)."""
    _session_board(session)
    cores = list(cores)
    return Job("calibration", lambda progress, cancel: calibrate_cores(session, cores, progress, cancel), uses_board=True)


@contextlib.contextmanager
def _board_put_back_on_failure(session: Session, board: Any, cores: Sequence[tuple[int, int]]) -> Iterator[Deployment | None]:
    """Put ``board`` back as it was when the block started if the block raises (a cancel included).

    Both calibrations measure ``cores`` (``(chip, core)`` pairs, held meanwhile) with their own
    biases and probe connections on their chips.  Cancelled, they give the user's board back
    (``Session.close``, docs "Jobs"): every bias of ``cores`` written back as the bias model held it
    at the start, flags included (those the board's cache shows changed; other cores stay free to
    edit meanwhile and keep their edits), the spike generator stopped, and the network deployed on
    the board written again, since the measurements replaced the chips' connections while
    ``session.deployment`` still names it.  A deployed network that cannot be put back is dropped
    (``run_deployed`` then refuses rather than running an empty chip) and the exception says so.
    Yields that deployment (None: none).
    """
    from .boards import restore_board
    from .cancellation import Cancelled

    chips = sorted({int(chip) for chip, _ in cores})
    start = session.biases.snapshot(cores)
    deployment = session.deployment if session.deployment is not None and session.deployment.board is board else None
    try:
        yield deployment
    except BaseException as exc:
        try:
            restore_board(board, {k: v for k, v in start.items() if board.get_bias(*k) != v}, chips)
        except BaseException:
            if deployment is not None:  # neither its biases nor its connections are known to be on the chip
                session.set_deployment(None)
            raise
        problem = _write_network_back(session, board, deployment, chips) if deployment is not None else None
        if problem is None:
            raise
        if isinstance(exc, Cancelled):  # what Job.result() raises and the job's cancelled signal carries
            raise type(exc)(f"{exc}; {problem}") from exc
        exc.add_note(problem)
        raise


def _write_network_back(session: Session, board: Any, deployment: Deployment, chips: Sequence[int]) -> str | None:
    """Write ``deployment``'s connections on ``board`` again after a calibration replaced those of
    ``chips``; returns None, or why it could not be done, after dropping the deployment (nothing
    runs a network the chip does not hold) and logging the reason as a warning (the app's log)."""
    try:
        board.stop_spike_generator()
        board.clear_connections(sorted(set(chips) | set(deployment.mapped.chips)))
        board.write_netlist(deployment.mapped.netlist)
    except Exception as exc:  # noqa: BLE001 - any refusal: the chip does not hold the deployment
        session.set_deployment(None)
        problem = f"the network deployed before could not be written back ({exc}): deploy it again"
        log.warning("%s", problem)
        return problem
    return None


def _session_board(session: Session, doing: str = "calibrating") -> Any:
    if session.board is None:
        raise RuntimeError(f"connect a board before {doing}")
    return session.board
