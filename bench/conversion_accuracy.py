"""Conversion accuracy benchmark: the stage table for sequential digits, MNIST-1D and ``multichip``
(a network spanning two chips, :data:`MULTICHIP`).

For each task: train the leaky RNN (BPTT), constrain (fan-in 63 + reset entry, 16 weight levels,
QAT), map, then run the spiking network on the Brian2 reference (a prefix of the test set; it is
slow), on the emulated board through the USB emulation with mismatch off (``board_ideal``) and
with the emulator's default mismatch (``board_mismatch``).  Prints each task's table; the last
line is one JSON object ``{task: {stage: test accuracy as a fraction}}`` plus the losses against
the constrained float RNN in percentage points, their paired standard errors and each spiking
stage's agreement with the RNN's predictions, the cost of the constrain step (``constraint_cost_pp``,
float minus constrained) and the constraint ablation (``ablation``: accuracy after each constraint
added one at a time, see ``neurolab_gui.core.conversion.ablation``).

    .venv/bin/python bench/conversion_accuracy.py                # both tasks, full test sets
    .venv/bin/python bench/conversion_accuracy.py --quick        # fewer epochs and test samples
    .venv/bin/python bench/conversion_accuracy.py --rate-only    # float, constrained and the ablation only
"""

from __future__ import annotations

import argparse
import json
import sys
import time

#: The ``multichip`` task: sequential digits on 256 units in 8 core groups, more groups than one
#: chip has cores, so the network spans two chips (128 units each: every inter-chip spike gets a
#: CAM tag of its own).  Its name in the JSON is ``multichip``; data and defaults are the base task's.
MULTICHIP = {"task": "seq_digits", "n_hidden": 256, "n_core_groups": 8}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="seq_digits,mnist1d,multichip")
    parser.add_argument("--quick", action="store_true", help="fewer epochs and test samples (a smoke run)")
    parser.add_argument("--brian2-samples", type=int, default=40)
    parser.add_argument("--no-brian2", action="store_true")
    parser.add_argument("--rate-only", action="store_true", help="no spiking stages: float, constrained and the ablation")
    parser.add_argument("--mnist1d-test", type=int, default=1000, help="MNIST-1D test samples for the spiking stages (1000: the whole test set)")
    parser.add_argument("--mnist1d-hidden", type=int, default=None, help="hidden units of the MNIST-1D RNN (default: pipeline.TASK_DEFAULTS)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", default="~/.cache/neurolab/bench-models",
                        help="trained float models are kept here and reused for the same data and settings ('' = always train)")
    args = parser.parse_args(argv)

    import torch

    from neurolab_gui.core.conversion.pipeline import config_for_task, convert, train_model_cached
    from neurolab_gui.core.conversion.tasks import load_task

    torch.set_num_threads(1)
    summary: dict[str, dict] = {}
    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        base, multichip = (MULTICHIP["task"], {k: v for k, v in MULTICHIP.items() if k != "task"}) if name == "multichip" else (name, {})
        task = load_task(base)
        stages = (() if args.no_brian2 else ("brian2",)) + ("board_ideal", "board_mismatch")
        stages = () if args.rate_only else stages
        # the task's defaults (pipeline.TASK_DEFAULTS), as the CLI and the GUI use them
        cfg = config_for_task(base, seed=args.seed, stages=stages, brian2_samples=args.brian2_samples,
                              n_test_spiking=args.mnist1d_test if name == "mnist1d" else None,
                              n_hidden=args.mnist1d_hidden if name == "mnist1d" else None, ablation=True, **multichip)
        if args.quick:
            cfg.train.epochs, cfg.constraint.qat.epochs, cfg.n_test_spiking = max(5, cfg.train.epochs // 4), 2, 100
        t0 = time.perf_counter()
        model, cached = train_model_cached(task, cfg, args.cache or None)
        print(f"{name}: float model {'from the cache' if cached else 'trained'} ({time.perf_counter() - t0:.0f} s)", flush=True)
        result = convert(model, task, cfg)
        report = result.report
        print(report.table())
        print(f"{name}: {time.perf_counter() - t0:.0f} s (2-core machine shared with other jobs: timings are noisy)\n", flush=True)
        acc = report.accuracies()
        summary[name] = acc
        summary[name]["constraint_cost_pp"] = round(report.constraint_cost_pp(), 2)
        summary[name]["ablation"] = [{"constraint": r.constraint, "accuracy": round(r.accuracy, 4), "changed": r.changed}
                                     for r in report.ablation]
        for stage in ("brian2", "board_ideal", "board_mismatch"):
            s = report.stage(stage)
            if s is not None and s.loss_pp() is not None:
                summary[name][f"{stage}_loss_pp"] = round(s.loss_pp(), 2)
                summary[name][f"{stage}_samples"] = s.n_samples
                if s.loss_se_pp is not None:  # paired standard error of the loss, and agreement with the RNN
                    summary[name][f"{stage}_loss_se_pp"] = round(s.loss_se_pp, 2)
                    summary[name][f"{stage}_agreement"] = round(s.agreement, 4)
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
