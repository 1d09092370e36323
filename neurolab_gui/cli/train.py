"""``neurolab train``: train an RNN with BPTT on a built-in or user task and save a checkpoint."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neurolab_gui.core.jobs import Progress


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("train", help="train an Elman or leaky ReLU RNN with BPTT and save a checkpoint")
    p.add_argument("--task", default="seq_digits", help="seq_digits, seq_digits_pixel, mnist1d, ecg, phototaxis (the robot's steering), or a .npz file")
    p.add_argument("--out", default="model.pt", help="checkpoint path (NeuroLab format)")
    p.add_argument("--kind", choices=("leaky", "elman"), default="leaky")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default: the task's, see pipeline.TASK_DEFAULTS)")
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: the task's)")
    p.add_argument("--lr", type=float, default=None, help="learning rate (default 1e-2)")
    p.add_argument("--batch-size", type=int, default=None, help="training batch size (default: the task's, else 64)")
    p.add_argument("--noise", type=float, default=None, help="pre-activation noise during training (default: the task's, else 0.1; ecg 0)")
    p.add_argument("--retention", type=float, default=None, help="leaky RNN retention a (tau = -dt/ln a; default 0.85)")
    p.add_argument("--steps-per-sample", type=int, default=None, help="RNN steps per input sample (default: the task's)")
    p.add_argument("--readout", choices=("mean", "last"), default=None, help="readout (default: the task's, else mean)")
    p.add_argument("--device", default="cpu", help="cpu, cuda or auto")
    p.add_argument("--seed", type=int, default=0)
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
    from neurolab_gui.core.conversion.tasks import load_task
    from neurolab_gui.core.jobs import Job
    from neurolab_gui.core.workflows import training_summary

    from .job_runner import run_job

    torch.set_num_threads(1)  # small matrices: threads only add contention on a busy 2-core machine
    try:
        task = load_task(args.task)
        cfg = config_for_task(
            task.name, n_hidden=args.hidden, kind=args.kind, retention=args.retention, steps_per_sample=args.steps_per_sample,
            readout=args.readout, seed=args.seed, epochs=args.epochs, lr=args.lr, noise_std=args.noise,
            batch_size=args.batch_size,
        )
        cfg.train.device = args.device
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    print(f"task {task.name}: {task.description}; {len(task.x_train)} train / {len(task.x_test)} test")
    training = Job("training", lambda progress, cancel: train_model(task, cfg, progress=progress, cancel=cancel))
    trained = run_job(training, print_progress, cancelled="training cancelled; no checkpoint written", verbose=args.verbose)
    if isinstance(trained, int):
        return trained
    model, result = trained
    path = save_checkpoint(
        args.out, model.cpu(),
        {"task": task.name, "train_loss": result.train_loss, "train_accuracy": result.train_accuracy,
         "test_accuracy": result.test_accuracy, "clean_train_accuracy": result.clean_train_accuracy, "seed": args.seed},
    )
    print(f"{training_summary(result)}; checkpoint written to {path}")  # the line the app's training job logs
    return 0
