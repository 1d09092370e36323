"""``neurolab demo``: the headless main job — load (or train), constrain, map, run on the emulator, calibrate.

Sequential digits (row by row) by default, from the shipped float checkpoint
``resources/networks/seq_digits_demo.pt`` (``neurolab train --task seq_digits --epochs 40 --batch-size 64``, see
resources/networks/README.md; ``--train`` trains it here instead).  The float model is constrained
to the chip (QAT, ``--qat-epochs``), runs on the emulated board through the USB emulation
(mismatch off and the default mismatch) on the first 120 test samples (``--n-test``), then the
mismatched board is calibrated for the network (``--chip-budget`` seconds of chip time, no
fine-tuning) and the calibrated network runs on the same samples; ``--brian2`` adds the Brian2
reference stage on a few test samples.  Ends with the time line of its phases (wall and CPU).
Sized for 2 minutes on 2 idle CPU cores (docs/decisions.md, "Demo budget").
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from .arguments import output_file, print_task_warnings, seed
from .train import print_progress

#: The built-in task the shipped float checkpoint was trained on.
DEMO_TASK = "seq_digits"
#: QAT epochs of the demo's constrain step (the task's own default is longer; docs/decisions.md, "Demo budget").
DEMO_QAT_EPOCHS = 6
#: Chip time of the demo's calibration (measurement + loop), seconds (docs/decisions.md, "Demo budget").
DEMO_CHIP_BUDGET_S = 90.0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="load -> constrain -> map -> run on the emulator -> calibrate, print the stage table")
    p.add_argument("--task", default=DEMO_TASK, help="seq_digits (default), mnist1d, ecg or a .npz file; "
                                                     "tasks other than seq_digits are trained here")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--train", action="store_true",
                        help="train the float model here (BPTT) instead of loading the shipped seq_digits checkpoint")
    source.add_argument("--checkpoint", default=None, help="convert this checkpoint instead of the shipped one")
    p.add_argument("--epochs", type=int, default=None, help="training epochs when training (default: the task's)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units when training (default: the task's, see pipeline.TASK_DEFAULTS)")
    p.add_argument("--qat-epochs", type=int, default=DEMO_QAT_EPOCHS,
                   help=f"quantisation-aware fine-tuning epochs of the constrain step (default {DEMO_QAT_EPOCHS})")
    p.add_argument("--no-mismatch-stage", action="store_true", help="skip the emulator run with mismatch")
    p.add_argument("--brian2", action="store_true", help="also run the Brian2 reference model")
    p.add_argument("--brian2-samples", type=int, default=30)
    p.add_argument("--n-test", type=int, default=120,
                   help="test samples for the spiking stages and the calibration's before/after (default 120; 0: all)")
    p.add_argument("--json", type=output_file, default=None, help="also write the JSON report here")
    p.add_argument("--seed", type=seed, default=0)
    # --- calibration step (calibration developer; neurolab_gui.core.calibration.demo_step) ---
    p.add_argument("--no-calibration", action="store_true", help="skip the closed-loop calibration step")
    p.add_argument("--chip-budget", type=float, default=DEMO_CHIP_BUDGET_S,
                   help=f"chip time of the calibration in seconds, measurement and loop (default {DEMO_CHIP_BUDGET_S:g})")
    p.add_argument("--figures", default="neurolab_demo_figures", help="directory for the calibration before/after figures")
    p.set_defaults(func=run)


def seconds_since_process_start() -> float:
    """Wall seconds since this process started (Linux: /proc; elsewhere 0)."""
    import os

    try:
        with open("/proc/self/stat") as f:
            start_ticks = int(f.read().rsplit(")", 1)[1].split()[19])
        with open("/proc/uptime") as f:
            uptime_s = float(f.read().split()[0])
        return max(0.0, uptime_s - start_ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0


@dataclass
class Timeline:
    """Wall and CPU time (this process, all its threads: the emulator runs in-process) of each phase."""

    phases: list[tuple[str, float, float]] = field(default_factory=list)
    start_wall: float = field(default_factory=time.perf_counter)
    start_cpu: float = field(default_factory=time.process_time)  # CPU since the process started: the start-up's
    startup_wall: float = field(default_factory=seconds_since_process_start)

    _open: list = field(default_factory=list)  # [name, wall, cpu] of the phase now running

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        outer = self._open
        self._open = [name, time.perf_counter(), time.process_time()]
        try:
            yield
        finally:
            self._close()
            self._open = outer

    def switch(self, name: str) -> None:
        """End the phase now running and go on, in the same ``with``, with the phase ``name``."""
        self._close()
        self._open = [name, time.perf_counter(), time.process_time()]

    def running(self) -> str | None:
        return self._open[0] if self._open else None

    def _close(self) -> None:
        name, wall, cpu = self._open
        self.phases.append((name, time.perf_counter() - wall, time.process_time() - cpu))

    def total(self) -> tuple[float, float]:
        """Wall and CPU seconds since the process started."""
        return self.startup_wall + time.perf_counter() - self.start_wall, time.process_time()

    def table(self) -> str:
        startup = [("start-up (interpreter, imports)", self.startup_wall, self.start_cpu)]
        rows = [f"  {name:<46s} {wall:7.1f} {cpu:7.1f}" for name, wall, cpu in startup + self.phases]
        total = "  {:<46s} {:7.1f} {:7.1f}".format("total", *self.total())
        return "\n".join([f"  {'phase':<46s} {'wall s':>7s} {'CPU s':>7s}", *rows, total])


def shipped_checkpoint():
    """The float model the demo converts by default (see resources/networks/README.md)."""
    from drivers.resources import resource_path

    return resource_path("networks", "seq_digits_demo.pt")


def run(args: argparse.Namespace) -> int:
    import torch

    from neurolab_gui.core.conversion.checkpoint import CheckpointError, load_checkpoint
    from neurolab_gui.core.conversion.constrain import check_convertible
    from neurolab_gui.core.conversion.pipeline import config_for_task, convert, train_model
    from neurolab_gui.core.conversion.tasks import load_task

    bad = _bad_option(args)
    if bad:
        print(f"error: {bad}", file=sys.stderr)
        return 2
    clock = Timeline()
    torch.set_num_threads(1)  # small matrices: threads only add contention on a busy 2-core machine
    try:
        with clock.phase("data"):
            task = load_task(args.task)
        train_here = args.train or (args.checkpoint is None and (task.name != DEMO_TASK or args.hidden is not None
                                                                 or args.epochs is not None))
        loaded = None
        if not train_here:
            with clock.phase("float model: load"):
                loaded = load_checkpoint(args.checkpoint or shipped_checkpoint())
            check_convertible(loaded.model, task, args.checkpoint or shipped_checkpoint())
    except (ValueError, FileNotFoundError, CheckpointError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_task_warnings(task)
    stages = ("brian2",) if args.brian2 else ()
    stages += ("board_ideal",) + (() if args.no_mismatch_stage else ("board_mismatch",))
    cfg = config_for_task(task.name, None if loaded is None else loaded.model.config, n_hidden=None if loaded else args.hidden,
                          epochs=args.epochs, qat_epochs=args.qat_epochs, seed=args.seed, stages=stages,
                          n_test_spiking=args.n_test or None, brian2_samples=args.brian2_samples)
    print(f"NeuroLab demo: {task.description}")
    if loaded is None:
        print(f"1/3 training the leaky ReLU RNN with BPTT ({cfg.train.epochs} epochs)")
        with clock.phase("float model: train"):
            model, _ = train_model(task, cfg, progress=print_progress)
    else:
        model = loaded.model
        meta = loaded.metadata
        made = f"test accuracy {meta['test_accuracy']:.3f} when trained" if "test_accuracy" in meta else "no accuracy stored"
        print(f"1/3 float model loaded from {args.checkpoint or shipped_checkpoint()} ({model.config.n_hidden} {model.config.kind} ReLU units, "
              f"{made}; --train trains one here)")
    print(f"2/3 constrain (QAT {cfg.constraint.qat.epochs} epochs) -> map -> transfer-curve matching -> run on the emulated board")

    def conversion_progress(p) -> None:
        # convert() reports the constrain step (QAT) in [0, 0.35) of its progress, the stages after it
        if p.fraction >= 0.35 and clock.running() == "constrain (QAT)":
            clock.switch("spiking stages: " + ", ".join(cfg.stages))
        print_progress(p)

    with clock.phase("constrain (QAT)"):
        result = convert(model, task, cfg, progress=conversion_progress)
    print()
    print(result.report.table())
    print(f"\nconversion finished after {clock.total()[0]:.0f} s")
    if args.json:
        print(f"JSON report written to {result.report.write_json(args.json)}")
    if not args.no_calibration:
        _calibration_step(args, result, task, cfg, clock)
    print(f"\ntime line (this process; the emulator runs in it):\n{clock.table()}")
    wall, cpu = clock.total()
    print(f"demo finished in {wall:.0f} s ({cpu:.0f} s of CPU)")
    return 0


def _bad_option(args: argparse.Namespace) -> str | None:
    """What is wrong with the numbers on the command line (checked before any work starts), or None."""
    import math

    if not (math.isfinite(args.chip_budget) and args.chip_budget > 0):
        return f"the calibration's chip budget (--chip-budget) must be a positive number of seconds, got {args.chip_budget:g}"
    for option, value in (("--qat-epochs", args.qat_epochs), ("--n-test", args.n_test), ("--brian2-samples", args.brian2_samples)):
        if value < 0:
            return f"{option} must be 0 or more, got {value}"
    return None


def _calibration_step(args: argparse.Namespace, result, task, cfg, clock: Timeline) -> None:
    """Closed-loop calibration on the mismatched emulator, before/after figures (calibration API)."""
    from neurolab_gui.core.calibration.demo_step import demo_calibration_config, run_calibration_step

    print(f"\n3/3 calibration ({args.chip_budget:g} s of chip time): measure per-neuron transfer curves, tune biases, "
          "select neurons, compensate")
    summary = run_calibration_step(
        result, task, cfg, args.figures, n_test=args.n_test or len(task.x_test), emulator_seed=cfg.emulator_seed,
        config=demo_calibration_config(args.chip_budget), phase=clock.phase,
        progress=lambda e: print(f"  {e.fraction:5.1%} {e.step}: {e.message}", flush=True) if e.message else None,
    )
    acc = summary["accuracy"]
    print(f"gain CV {summary['gain_cv_before']:.1%} -> {summary['gain_cv_after']:.1%}; chip time {summary['chip_seconds_total']:.1f} s "
          f"({summary['chip_s_measurement']:.1f} s measurement + {summary['chip_s_loop']:.1f} s in the loop)")
    print(f"test accuracy on {summary['n_test']} samples: constrained {acc['constrained']:.3f}, board before {acc['board_before']:.3f} "
          f"(transfer matching alone), board after {acc['board_after']:.3f}")
    print("figures: " + ", ".join(summary["figures"]))
