"""Conversion accuracy benchmark: the stage table of every task, and one JSON line with all of them.

Tasks:

- built-in (``seq_digits``, ``mnist1d``, ``ecg``): train the leaky RNN (BPTT) with the task's
  defaults (``pipeline.TASK_DEFAULTS``), then convert; ``multichip``: sequential digits on a network
  that spans two chips (:data:`MULTICHIP`);
- foreign (``bench/foreign/``: ``jvowels_h64_nested``, ``imu_h128_flat``, ``jvowels_h128_flat``,
  ``imu_h64_nested``; two data sets x two sizes x two checkpoint layouts): a plain-PyTorch
  ``nn.RNN(relu)`` trained outside NeuroLab on raw signed, variable-length features with its own
  z-scoring, saved in a user's checkpoint layout, imported and converted as ``neurolab convert
  CKPT --task DATA.npz`` does (trained once and cached in ``~/.cache/neurolab/foreign``).

Each conversion: constrain (fan-in 63 + reset entry, 16 weight levels, QAT), map, then the spiking
network on the Brian2 reference (a prefix of the test set; it is slow), on the emulated board
through the USB emulation with mismatch off (``board_ideal``), with the emulator's default
mismatch (``board_mismatch``), and calibrated on that mismatched board (``board_calibrated``:
``neurolab calibrate``'s engine, then the whole test set on the calibrated network).

The last line is one JSON object ``{task: {...}}``; per task (schema owned by the conversion):

``units``, ``chips``
    hidden units, chips the network spans
``float``, ``constrained``, ``brian2``, ``board_ideal``, ``board_mismatch``, ``board_calibrated``
    test accuracy as a fraction (a stage that did not run is ``null``)
``chip_seconds_total``
    chip time the calibration spent on the board (``null`` without ``board_calibrated``)
``wall_s``, ``cpu_s``
    wall time and CPU time (this process and its finished children, every thread) of the task:
    training (built-in tasks) + conversion + every stage; on a shared machine the CPU time is the
    steadier of the two
``constraint_cost_pp``, ``ablation``
    float minus constrained, and the accuracy after each constraint added one at a time
``<stage>_loss_pp``, ``<stage>_loss_se_pp``, ``<stage>_agreement``, ``<stage>_samples``
    per spiking stage: loss against the constrained RNN on the same samples, its paired standard
    error, agreement with the RNN's predictions, samples run
``settings``
    the report's ``model`` field: the settings the conversion actually used

    .venv/bin/python bench/conversion_accuracy.py                     # every task, full test sets
    .venv/bin/python bench/conversion_accuracy.py --tasks jvowels_h64_nested,imu_h128_flat
    .venv/bin/python bench/conversion_accuracy.py --quick             # fewer epochs and test samples
    .venv/bin/python bench/conversion_accuracy.py --rate-only         # float, constrained and the ablation only
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "foreign"))

#: The accuracy stages of the JSON, in the order of the stage table.
STAGE_KEYS = ("float", "constrained", "brian2", "board_ideal", "board_mismatch", "board_calibrated")
BUILTIN = ("seq_digits", "mnist1d", "ecg", "multichip")
#: The ``multichip`` task: sequential digits on 256 units in 8 core groups, more groups than one
#: chip has cores, so the network spans two chips (128 units each: every inter-chip spike gets a
#: CAM tag of its own).  Its name in the JSON is ``multichip``; data and defaults are the base task's.
MULTICHIP = {"task": "seq_digits", "n_hidden": 256, "n_core_groups": 8}


def _foreign_cases() -> dict:
    import foreign_cases  # bench/foreign/foreign_cases.py: plain PyTorch, nothing from NeuroLab

    return foreign_cases.CASES


def _task_and_model(name: str, args: argparse.Namespace, overrides: dict):
    """``(task, model, cfg)`` of a built-in task (model trained here) or a foreign case (imported)."""
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint
    from neurolab_gui.core.conversion.pipeline import config_for_task, train_model_cached
    from neurolab_gui.core.conversion.tasks import load_task

    cases = _foreign_cases()
    if name in cases:
        import foreign_cases

        case = cases[name]
        info = foreign_cases.build(case)
        loaded = load_checkpoint(info["checkpoint"])
        task = load_task(info["data"])
        task.name = name
        # a nested checkpoint declares its readout in its meta; for a bare state_dict the user says it (--readout)
        rule = None if case.layout == "nested" else case.readout
        cfg = config_for_task(name, loaded.model.config, readout_rule=rule, **overrides)
        return task, loaded.model, cfg
    base, multichip = (MULTICHIP["task"], {k: v for k, v in MULTICHIP.items() if k != "task"}) if name == "multichip" else (name, {})
    task = load_task(base)
    sizes = {"n_hidden": args.mnist1d_hidden} if name == "mnist1d" else multichip
    cfg = config_for_task(base, **overrides, **sizes)
    if args.quick:
        cfg.train.epochs = max(5, cfg.train.epochs // 4)
    t0 = time.perf_counter()
    model, cached = train_model_cached(task, cfg, args.cache or None, progress=ProgressLog(f"{name} training"))
    print(f"{name}: float model {'from the cache' if cached else 'trained'} ({time.perf_counter() - t0:.0f} s)", flush=True)
    return task, model, cfg


def cpu_seconds() -> float:
    """CPU seconds of this process (all threads) and of its waited-for children."""
    import resource

    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


class ProgressLog:
    """Prints a progress line (elapsed wall and CPU, the stage's message) when the message changes,
    at most every ``every_s`` seconds: a long run's log shows where it is."""

    def __init__(self, name: str, every_s: float = 20.0) -> None:
        self.name, self.every_s = name, every_s
        self.t0, self.c0 = time.perf_counter(), cpu_seconds()
        self.last_t, self.last_msg = -1e9, ""

    def __call__(self, p) -> None:
        now = time.perf_counter()
        if p.message == self.last_msg or now - self.last_t < self.every_s:
            return
        self.last_t, self.last_msg = now, p.message
        chip = f", chip {p.chip_s:.0f} s" if getattr(p, "chip_s", 0) else ""
        print(f"  [{self.name} {now - self.t0:6.0f} s wall, {cpu_seconds() - self.c0:6.0f} s CPU, {100 * p.fraction:5.1f} %{chip}] "
              f"{p.message[:160]}", flush=True)


def task_summary(result, wall_s: float, cpu_s: float | None = None) -> dict:
    """One task's JSON entry (see the module docstring)."""
    report = result.report
    acc = report.accuracies()
    calibrated = report.stage("board_calibrated")
    out: dict = {
        "units": int(result.constrained.n_hidden),
        "chips": len({chip for chip, _ in result.mapped.group_cores}),
        **{k: (round(acc[k], 4) if k in acc else None) for k in STAGE_KEYS},
        "chip_seconds_total": round(calibrated.extra["chip_seconds"], 1) if calibrated is not None else None,
        "wall_s": round(wall_s, 1),
        "cpu_s": round(cpu_s, 1) if cpu_s is not None else None,
        "constraint_cost_pp": round(report.constraint_cost_pp(), 2),
        "ablation": [{"constraint": r.constraint, "accuracy": round(r.accuracy, 4), "changed": r.changed} for r in report.ablation],
    }
    for stage in STAGE_KEYS[2:]:
        s = report.stage(stage)
        if s is not None and s.loss_pp() is not None:
            out[f"{stage}_loss_pp"] = round(s.loss_pp(), 2)
            out[f"{stage}_samples"] = s.n_samples
            if s.loss_se_pp is not None:  # paired standard error of the loss, and agreement with the RNN
                out[f"{stage}_loss_se_pp"] = round(s.loss_se_pp, 2)
                out[f"{stage}_agreement"] = round(s.agreement, 4)
    out["settings"] = report.model
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default=",".join(BUILTIN + tuple(_foreign_cases())))
    parser.add_argument("--quick", action="store_true", help="fewer epochs and test samples (a smoke run)")
    parser.add_argument("--brian2-samples", type=int, default=40)
    parser.add_argument("--no-brian2", action="store_true")
    parser.add_argument("--no-calibration", action="store_true", help="skip the stage board_calibrated (the longest)")
    parser.add_argument("--rate-only", action="store_true", help="no spiking stages: float, constrained and the ablation")
    parser.add_argument("--stages", default=None,
                        help="spiking stages to run, comma-separated (default: brian2,board_ideal,board_mismatch,board_calibrated "
                             "less what --no-brian2/--no-calibration drop); a stage left out is null in the JSON")
    parser.add_argument("--mnist1d-test", type=int, default=1000, help="MNIST-1D test samples for the spiking stages (1000: the whole test set)")
    parser.add_argument("--mnist1d-hidden", type=int, default=None, help="hidden units of the MNIST-1D RNN (default: pipeline.TASK_DEFAULTS)")
    parser.add_argument("--cache", default="~/.cache/neurolab/bench-models",
                        help="trained float models are kept here and reused for the same data and settings ('' = always train)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import torch

    from neurolab_gui.cli.convert import network_calibrator
    from neurolab_gui.core.conversion.pipeline import convert

    torch.set_num_threads(1)
    summary: dict[str, dict] = {}
    for name in [t.strip() for t in args.tasks.split(",") if t.strip()]:
        stages = (() if args.no_brian2 else ("brian2",)) + ("board_ideal", "board_mismatch")
        stages += () if args.no_calibration else ("board_calibrated",)
        if args.stages is not None:
            stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
            unknown = set(stages) - set(STAGE_KEYS[2:])
            if unknown:
                parser.error(f"unknown stage(s) {', '.join(sorted(unknown))}; choose from {', '.join(STAGE_KEYS[2:])}")
        stages = () if args.rate_only else stages
        overrides = dict(seed=args.seed, stages=stages, brian2_samples=args.brian2_samples, ablation=True,
                         n_test_spiking=args.mnist1d_test if name == "mnist1d" else None)
        t0, c0 = time.perf_counter(), cpu_seconds()
        task, model, cfg = _task_and_model(name, args, overrides)
        if args.quick:
            cfg.constraint.qat.epochs, cfg.n_test_spiking = 2, 100
        result = convert(model, task, cfg, calibrator=network_calibrator, progress=ProgressLog(name))
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        print(result.report.table())
        print(f"{name}: {wall:.0f} s wall, {cpu:.0f} s CPU (2-core machine shared with other jobs: wall times are noisy)\n", flush=True)
        summary[name] = task_summary(result, wall, cpu)
        print(f"{name}: " + json.dumps({name: summary[name]}), flush=True)  # each task's entry as soon as it is known
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
