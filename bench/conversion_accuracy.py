"""Conversion accuracy benchmark: the stage table for sequential digits and MNIST-1D.

For each task: train the leaky RNN (BPTT), constrain (fan-in 63 + reset entry, 16 weight levels,
QAT), map, then run the spiking network on the Brian2 reference (a prefix of the test set; it is
slow), on the emulated board through the USB emulation with mismatch off (``board_ideal``) and
with the emulator's default mismatch (``board_mismatch``).  Prints each task's table; the last
line is one JSON object ``{task: {stage: test accuracy as a fraction}}`` plus the losses against
the constrained float RNN in percentage points.

    .venv/bin/python bench/conversion_accuracy.py                # both tasks, full test sets
    .venv/bin/python bench/conversion_accuracy.py --quick        # fewer epochs and test samples
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="seq_digits,mnist1d")
    parser.add_argument("--quick", action="store_true", help="fewer epochs and test samples (a smoke run)")
    parser.add_argument("--brian2-samples", type=int, default=40)
    parser.add_argument("--no-brian2", action="store_true")
    parser.add_argument("--mnist1d-test", type=int, default=500, help="MNIST-1D test samples for the spiking stages")
    parser.add_argument("--mnist1d-hidden", type=int, default=128, help="hidden units of the MNIST-1D RNN (128 measured better than 64 at every stage)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from neurolab_gui.core.conversion.constrain import ConstraintConfig
    from neurolab_gui.core.conversion.pipeline import PipelineConfig, convert, train_model
    from neurolab_gui.core.conversion.tasks import load_task
    from neurolab_gui.core.conversion.training import TrainConfig

    torch.set_num_threads(1)
    per_task = {
        # MNIST-1D has 40 samples per sequence: 2 RNN steps per sample keep training affordable
        "seq_digits": dict(steps_per_sample=4, epochs=40, qat=10, n_test=None, n_hidden=64),
        "mnist1d": dict(steps_per_sample=2, epochs=30, qat=8, n_test=args.mnist1d_test, n_hidden=args.mnist1d_hidden),
    }
    summary: dict[str, dict[str, float]] = {}
    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        opts = per_task.get(name, dict(steps_per_sample=4, epochs=30, qat=8, n_test=None, n_hidden=64))
        epochs, qat, n_test = opts["epochs"], opts["qat"], opts["n_test"]
        if args.quick:
            epochs, qat, n_test = max(5, epochs // 4), 2, 100
        task = load_task(name)
        stages = (() if args.no_brian2 else ("brian2",)) + ("board_ideal", "board_mismatch")
        cfg = PipelineConfig(
            steps_per_sample=opts["steps_per_sample"], n_hidden=opts["n_hidden"], seed=args.seed, stages=stages, n_test_spiking=n_test,
            brian2_samples=args.brian2_samples,
            train=TrainConfig(epochs=epochs, lr=1e-2, noise_std=0.1, seed=args.seed),
            constraint=ConstraintConfig(max_fan_in=63, qat=TrainConfig(epochs=qat, lr=2e-3, noise_std=0.1, seed=args.seed),
                                        gain_noise_std=0.2),
        )
        t0 = time.perf_counter()
        model, _ = train_model(task, cfg)
        result = convert(model, task, cfg)
        report = result.report
        print(report.table())
        print(f"{name}: {time.perf_counter() - t0:.0f} s (2-core machine shared with other jobs: timings are noisy)\n", flush=True)
        acc = report.accuracies()
        summary[name] = acc
        for stage in ("brian2", "board_ideal", "board_mismatch"):
            s = report.stage(stage)
            if s is not None and s.loss_pp() is not None:
                summary[name][f"{stage}_loss_pp"] = round(s.loss_pp(), 2)
                summary[name][f"{stage}_samples"] = s.n_samples
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
