"""``neurolab demo``: the headless main job — train, constrain, map and run on the emulator, print the table.

Sequential digits (row by row) by default.  Runs on the emulated board through the USB
emulation (mismatch off and the default mismatch) on the first 120 test samples (``--n-test``),
then calibrates the mismatched board for the network (the calibration's chip-time budget, no
fine-tuning) and runs the calibrated network on the same samples; ``--brian2`` adds the Brian2
reference stage on a few test samples.  Designed to finish within 2 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse

from .train import print_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("demo", help="train -> constrain -> map -> run on the emulator, print the stage table")
    p.add_argument("--task", default="seq_digits", help="seq_digits (default), mnist1d, ecg or a .npz file")
    p.add_argument("--epochs", type=int, default=30, help="training epochs (30 keeps the demo within 2 minutes)")
    p.add_argument("--hidden", type=int, default=None, help="hidden units (default: the task's, see pipeline.TASK_DEFAULTS)")
    p.add_argument("--no-mismatch-stage", action="store_true", help="skip the emulator run with mismatch")
    p.add_argument("--brian2", action="store_true", help="also run the Brian2 reference model")
    p.add_argument("--brian2-samples", type=int, default=30)
    p.add_argument("--n-test", type=int, default=120,
                   help="test samples for the spiking stages and the calibration's before/after (default 120; 0: all)")
    p.add_argument("--json", default=None, help="also write the JSON report here")
    p.add_argument("--seed", type=int, default=0)
    # --- calibration step (calibration developer; neurolab_gui.core.calibration.demo_step) ---
    p.add_argument("--no-calibration", action="store_true", help="skip the closed-loop calibration step")
    p.add_argument("--figures", default="neurolab_demo_figures", help="directory for the calibration before/after figures")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import time

    import torch

    from neurolab_gui.core.conversion.pipeline import config_for_task, convert, train_model
    from neurolab_gui.core.conversion.tasks import load_task

    torch.set_num_threads(1)  # small matrices: threads only add contention on a busy 2-core machine
    t0 = time.perf_counter()
    try:
        task = load_task(args.task)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    stages = ("brian2",) if args.brian2 else ()
    stages += ("board_ideal",) + (() if args.no_mismatch_stage else ("board_mismatch",))
    cfg = config_for_task(task.name, n_hidden=args.hidden, epochs=args.epochs, seed=args.seed, stages=stages,
                          n_test_spiking=args.n_test or None, brian2_samples=args.brian2_samples)
    print(f"NeuroLab demo: {task.description}")
    print("1/2 training the leaky ReLU RNN with BPTT")
    model, trained = train_model(task, cfg, progress=print_progress)
    print("2/2 constrain -> map -> transfer-curve matching -> run on the emulated board")
    result = convert(model, task, cfg, progress=print_progress)
    print()
    print(result.report.table())
    print(f"\nconversion finished after {time.perf_counter() - t0:.0f} s")
    if args.json:
        print(f"JSON report written to {result.report.write_json(args.json)}")
    if not args.no_calibration:
        _calibration_step(args, result, task, cfg)
    print(f"demo finished in {time.perf_counter() - t0:.0f} s")
    return 0


def _calibration_step(args: argparse.Namespace, result, task, cfg) -> None:
    """Closed-loop calibration on the mismatched emulator, before/after figures (calibration API)."""
    from neurolab_gui.core.calibration.demo_step import run_calibration_step

    print("\ncalibration: measure per-neuron transfer curves, tune biases, select neurons, compensate")
    summary = run_calibration_step(
        result, task, cfg, args.figures, n_test=args.n_test or len(task.x_test), emulator_seed=cfg.emulator_seed,
        progress=lambda e: print(f"  {e.fraction:5.1%} {e.step}: {e.message}", flush=True) if e.message else None,
    )
    acc = summary["accuracy"]
    print(f"gain CV {summary['gain_cv_before']:.1%} -> {summary['gain_cv_after']:.1%}; chip time {summary['chip_seconds_total']:.1f} s "
          f"({summary['chip_s_measurement']:.1f} s measurement + {summary['chip_s_loop']:.1f} s in the loop)")
    print(f"test accuracy on {summary['n_test']} samples: constrained {acc['constrained']:.3f}, board before {acc['board_before']:.3f} "
          f"(transfer matching alone), board after {acc['board_after']:.3f}")
    print("figures: " + ", ".join(summary["figures"]))
