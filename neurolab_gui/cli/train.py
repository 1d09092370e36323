"""``neurolab train``: train an RNN with BPTT on a built-in or user task and save a checkpoint."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from .arguments import int_at_least, nonnegative_float, output_file, positive_float, retention

if TYPE_CHECKING:
    from neurolab_gui.core.jobs import Progress


def register(subparsers: argparse._SubParsersAction) -> None:
    from .arguments import seed

    p = subparsers.add_parser("train", help="train an Elman or leaky ReLU RNN with BPTT and save a checkpoint")
    p.add_argument("--task", default="seq_digits", help="seq_digits, seq_digits_pixel, mnist1d, ecg, phototaxis (the robot's steering), or a .npz file")
    p.add_argument("--out", type=output_file, default="model.pt", help="checkpoint path (NeuroLab format)")
    p.add_argument("--kind", choices=("leaky", "elman"), default="leaky")
    p.add_argument("--hidden", type=int_at_least(1), default=None, help="hidden units (default: the task's, see pipeline.TASK_DEFAULTS)")
    p.add_argument("--epochs", type=int_at_least(1), default=None, help="training epochs (default: the task's)")
    p.add_argument("--lr", type=positive_float, default=None, help="learning rate (default 1e-2)")
    p.add_argument("--batch-size", type=int_at_least(1), default=None, help="training batch size (default: the task's, else 64)")
    p.add_argument("--noise", type=nonnegative_float, default=None, help="pre-activation noise during training (default: the task's, else 0.1; ecg 0)")
    p.add_argument("--retention", type=retention, default=None, help="leaky RNN retention a, 0 < a < 1 (tau = -dt/ln a; default 0.85)")
    p.add_argument("--steps-per-sample", type=int_at_least(1), default=None, help="RNN steps per input sample (default: the task's)")
    p.add_argument("--readout", choices=("mean", "last"), default=None, help="readout (default: the task's, else mean)")
    p.add_argument("--device", choices=("cpu", "cuda", "auto"), default="cpu", help="cpu (default), cuda or auto")
    p.add_argument("--seed", type=seed, default=0, help="seed of the training (0..10**18-1)")
    p.set_defaults(func=run)


_T0: list[float] = []


def print_progress(progress: Progress) -> None:
    """Progress sink of the CLI: percentage, elapsed seconds, step, message and ETA when known."""
    import time

    if not _T0:
        _T0.append(time.perf_counter())
    print(f"[{100 * progress.fraction:5.1f} % {time.perf_counter() - _T0[0]:6.1f} s] {progress.text()}", flush=True)


def run(args: argparse.Namespace) -> int:
    import torch

    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.pipeline import config_for_task, train_model
    from neurolab_gui.core.conversion.tasks import load_task, task_reference
    from neurolab_gui.core.conversion.training import pick_device
    from neurolab_gui.core.jobs import Job
    from neurolab_gui.core.workflows import training_summary

    from .arguments import print_task_warnings
    from .job_runner import run_job

    torch.set_num_threads(1)  # small matrices: threads only add contention on a busy 2-core machine
    # --hidden beyond what any dense network maps: refused before the data are read
    problem = size_problem(args.hidden, None, args.task) if args.hidden is not None else None
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        pick_device(args.device)  # 'cuda' without a GPU: refused before the data are read
        task = load_task(args.task)
        # stored in the checkpoint: a data file by its absolute path, so that `convert`/`deploy` find
        # the same data later and never take a built-in task of the file's name for it
        task_ref = task_reference(args.task)
        # a data file's defaults are the generic ones, even when its name is a built-in task's
        cfg = config_for_task(
            task_ref, n_hidden=args.hidden, kind=args.kind, retention=args.retention, steps_per_sample=args.steps_per_sample,
            readout=args.readout, seed=args.seed, epochs=args.epochs, lr=args.lr, noise_std=args.noise,
            batch_size=args.batch_size,
        )
        cfg.train.device = args.device
        # the same rule as convert's (constrain.check_convertible), on the channels the model will have
        problem = size_problem(cfg.n_hidden, task.n_features, args.task, args.hidden is not None,
                               task.encoding.n_raw if task.encoding is not None else None, cfg.constraint.n_core_groups)
        if problem:
            raise ValueError(problem)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_task_warnings(task)
    print(f"task {task.name}: {task.description}; {len(task.x_train)} train / {len(task.x_test)} test")
    training = Job("training", lambda progress, cancel: train_model(task, cfg, progress=progress, cancel=cancel))
    trained = run_job(training, print_progress, cancelled="training cancelled; no checkpoint written", verbose=args.verbose)
    if isinstance(trained, int):
        return trained
    model, result = trained
    diverged = _diverged(model, result)
    if diverged:
        print(f"error: the training diverged ({diverged}); no checkpoint written (try a smaller --lr)", file=sys.stderr)
        return 1
    try:
        path = save_checkpoint(
            args.out, model.cpu(),
            {"task": task_ref, "train_loss": result.train_loss, "train_accuracy": result.train_accuracy,
             "test_accuracy": result.test_accuracy, "clean_train_accuracy": result.clean_train_accuracy, "seed": args.seed},
        )
    except (OSError, RuntimeError) as exc:  # torch's writer raises RuntimeError for some unwritable paths
        print(f"error: could not write the checkpoint {args.out}: {exc}", file=sys.stderr)
        return 1
    print(f"{training_summary(result)}; checkpoint written to {path}")  # the line the app's training job logs
    return 0


def size_problem(n_hidden: int, n_channels: int | None, task: str, hidden_given: bool = True, n_raw: int | None = None,
                 n_core_groups: int | None = None) -> str | None:
    """Why a model of ``n_hidden`` units on ``n_channels`` rate channels of ``task`` could never be
    converted (:func:`.mapping.network_size_problem`, the rule ``convert`` applies), naming
    ``--hidden`` or the data file; None when it fits the board.

    ``n_raw``: the data file's features (``n_channels`` counts a feature that goes negative twice,
    ON and OFF).  ``n_channels`` None (the data not read yet): the check for one channel, the fewest.
    """
    from neurolab_gui.core.conversion.mapping import DEFAULT_CORE_GROUPS, MAX_INPUT_CHANNELS, network_size_problem

    problem = network_size_problem(n_hidden, n_channels or 1, n_core_groups or DEFAULT_CORE_GROUPS, n_channels is not None)
    if problem is None:
        return None
    if n_channels is not None and n_channels > MAX_INPUT_CHANNELS:
        features = f"{n_raw} features ({n_channels} rate channels after the ON/OFF split)" if n_raw else f"{n_channels} features"
        return f"{task}: {features}; {problem}"
    where = f"--hidden {n_hidden}" if hidden_given else f"the task's default of {n_hidden} hidden units"
    return f"{where}: {problem}"


def _diverged(model, result) -> str | None:
    """Why the trained model is unusable (a NaN/inf final loss or weight), or None."""
    import math

    from neurolab_gui.core.conversion.constrain import NonFiniteWeightsError, check_finite_weights

    if result.train_loss and not math.isfinite(result.train_loss[-1]):
        return f"final training loss {result.train_loss[-1]}"
    try:
        check_finite_weights(model, "the trained model")
    except NonFiniteWeightsError as exc:
        return str(exc)
    return None
