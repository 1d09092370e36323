"""Float baselines: the built-in tasks' RNNs as ``neurolab train`` and the benches train them.

Trains the leaky RNN of each task with its defaults (``pipeline.TASK_DEFAULTS`` through
``pipeline.config_for_task``) for each seed, into the same model cache as
``bench/conversion_accuracy.py`` (so a later conversion run reuses the models), and reports the
float test accuracy on the whole test set, the final training accuracy and the training time
(wall and CPU of this process; a cached model reports the times stored when it was trained).

The last line is one JSON object ``{task: {seed: {...}}}`` with ``units``, ``test_accuracy``,
``train_accuracy``, ``epochs``, ``train_wall_s``, ``train_cpu_s``, ``cached``.

    .venv/bin/python bench/float_baselines.py                          # seq_digits, mnist1d, ecg; seeds 0 and 1
    .venv/bin/python bench/float_baselines.py --tasks seq_digits --seeds 0
    .venv/bin/python bench/float_baselines.py --cache ''               # always train
    .venv/bin/python bench/float_baselines.py --set batch_size=32      # a pipeline option for every task
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def _option(text: str) -> tuple[str, object]:
    key, _, value = text.partition("=")
    if not key or not value:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE (a pipeline option), got {text!r}")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def train_one(task_name: str, seed: int, cache: str | None, options: dict) -> dict:
    """Train (or load) one task's model for one seed and measure it; see the module docstring."""
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint
    from neurolab_gui.core.conversion.pipeline import (
        cached_model_path,
        config_for_task,
        train_model,
        train_model_cached,
    )
    from neurolab_gui.core.conversion.tasks import load_task
    from neurolab_gui.core.conversion.training import evaluate

    task = load_task(task_name)
    cfg = config_for_task(task_name, seed=seed, **options)
    if cache:
        model, cached = train_model_cached(task, cfg, cache)
        meta = load_checkpoint(cached_model_path(task, cfg, cache)).metadata
    else:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        model, result = train_model(task, cfg)
        meta = {"train_accuracy": result.train_accuracy[-1], "train_wall_s": round(time.perf_counter() - wall0, 1),
                "train_cpu_s": round(time.process_time() - cpu0, 1)}
        cached = False
    accuracy, _ = evaluate(model, task.x_test, task.y_test, task.lengths_test)
    return {"units": cfg.n_hidden, "test_accuracy": round(accuracy, 4), "test_samples": len(task.y_test),
            "train_accuracy": meta.get("train_accuracy"), "epochs": cfg.train.epochs,
            "train_wall_s": meta.get("train_wall_s"), "train_cpu_s": meta.get("train_cpu_s"), "cached": cached}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="seq_digits,mnist1d,ecg")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--cache", default="~/.cache/neurolab/bench-models",
                        help="trained float models are kept here and reused for the same data and settings ('' = always train)")
    parser.add_argument("--set", type=_option, action="append", default=[], metavar="KEY=VALUE",
                        help="a pipeline option for every task (config_for_task), e.g. n_hidden=256")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: small matrices on a shared machine)")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    options = dict(args.set)
    summary: dict[str, dict] = {}
    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        for seed in args.seeds:
            row = train_one(name, seed, args.cache or None, options)
            print(f"{name} seed {seed}: float {row['test_accuracy']:.4f} on {row['test_samples']} test samples, "
                  f"{row['units']} units, {row['epochs']} epochs, training {row['train_cpu_s']} s CPU / {row['train_wall_s']} s wall"
                  f"{' (cached)' if row['cached'] else ''} (2-core machine shared with other jobs: wall times are noisy)", flush=True)
            summary.setdefault(name, {})[str(seed)] = row
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
