"""``neurolab robustness``: the accuracy of a converted network across many emulated chips.

The checkpoint is converted as ``neurolab convert`` does, with the ``board_ideal`` stage: the
network is matched on a mismatch-free emulated board, which is the *design*.  The design is then
written unchanged on ``--chips`` emulated chips at once (serials ``MC00000``, ``MC00001``, ...:
each its own mismatch; :mod:`neurolab_gui.core.robustness`), the first ``--n-test`` test samples
run on all of them, and the accuracy distribution is printed (mean, std, percentiles, worst) —
before and after the calibration model (per chip: network gain matching of each core's weight
biases and a per-unit transfer fit in the decoder, from ``--n-calibration`` training samples;
``--no-calibration`` skips it).  ``--ray ADDRESS`` runs the chips as Ray tasks on a cluster
(``pip install 'neurolab[ray]'``; every node needs the same NeuroLab installed), with exactly the
result of one machine for the same serials.
Ctrl-C cancels (exit 130).
"""

from __future__ import annotations

import argparse
import json
import sys

from drivers.user_files import write_replacing

from .arguments import output_file, seed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("robustness", help="accuracy distribution of a converted network over many emulated chips",
                              description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="NeuroLab checkpoint or a plain nn.RNN(relu)+nn.Linear state_dict")
    p.add_argument("--chips", type=int, default=100, help="emulated chips, one serial each (default 100)")
    p.add_argument("--first-serial", type=int, default=0, help="number of the first serial (MC%%05d; default 0)")
    p.add_argument("--task", default=None, help="task to evaluate on (default: the one stored in the checkpoint)")
    p.add_argument("--n-test", type=int, default=200, help="test samples run on every chip (default 200)")
    p.add_argument("--n-calibration", type=int, default=64,
                   help="training samples the calibration model measures on every chip (default 64)")
    p.add_argument("--no-calibration", action="store_true", help="report the design's biases only")
    p.add_argument("--threads", type=int, default=0, help="worker threads over chips (default: one per CPU core)")
    p.add_argument("--ray", default=None, metavar="ADDRESS",
                   help="run the chips as Ray tasks on this cluster (ray.init's address: auto, ray://host:10001, local)")
    p.add_argument("--ray-shards", type=int, default=None, help="Ray tasks to cut the chips into (default: the cluster's CPUs)")
    p.add_argument("--json", type=output_file, default=None, metavar="PATH", help="also write the report (every chip) as JSON")
    p.add_argument("--levels", type=int, default=16, help="weight levels (16: signed 4-bit; 3: ternary)")
    p.add_argument("--qat-epochs", type=int, default=None, help="QAT fine-tuning epochs (default: the task's)")
    p.add_argument("--retention", type=float, default=None, help="leaky retention for the spiking time mapping")
    p.add_argument("--steps-per-sample", type=int, default=None)
    p.add_argument("--seed", type=seed, default=0, help="seed of the conversion and of the input spike encoding")
    p.add_argument("--emulator-seed", type=seed, default=0, help="mismatch seed combined with every serial (default 0)")
    p.set_defaults(func=run)


def _check(args: argparse.Namespace) -> str | None:
    if args.chips < 1:
        return "--chips must be at least 1"
    if args.n_test < 1:
        return "--n-test must be at least 1"
    if not args.no_calibration and args.n_calibration < 2:
        return "--n-calibration must be at least 2 (or pass --no-calibration)"
    if args.first_serial < 0 or args.threads < 0:
        return "--first-serial and --threads must be >= 0"
    if args.ray_shards is not None and args.ray_shards < 1:
        return "--ray-shards must be at least 1"
    if args.ray is not None:
        import importlib.util

        if importlib.util.find_spec("ray") is None:
            return "--ray needs Ray: pip install 'neurolab[ray]'"
    return None


def run(args: argparse.Namespace) -> int:
    import torch

    from neurolab_gui.core.conversion.pipeline import convert
    from neurolab_gui.core.jobs import Job, Progress
    from neurolab_gui.core.robustness import chip_serials, robustness_inputs, run_robustness

    from .convert import load_conversion_inputs
    from .job_runner import run_job

    problem = _check(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    torch.set_num_threads(1)
    inputs = load_conversion_inputs(args, ("board_ideal",))
    if isinstance(inputs, int):
        return inputs
    loaded, task, cfg = inputs
    cfg.emulator_seed = args.emulator_seed
    serials = chip_serials(args.chips, first=args.first_serial)

    def show(event: Progress) -> None:
        print(f"{event.fraction:6.1%}  {event.message}", flush=True)

    def work(progress, cancel):
        conversion = convert(loaded.model, task, cfg, progress=lambda p: None, cancel=cancel)
        stages = {s.name: s.accuracy for s in conversion.report.stages}
        study = robustness_inputs(conversion.mapped, conversion.constrained.model, task, args.n_test,
                                  args.n_calibration, seed=args.seed, emulator_seed=args.emulator_seed,
                                  calibrate=not args.no_calibration)
        reference = {f"{name}_accuracy": stages[name] for name in ("float", "constrained", "board_ideal") if name in stages}
        return run_robustness(study, serials, task.name, args.threads, args.ray, args.ray_shards, progress, cancel,
                              reference)

    where = f"Ray at {args.ray}" if args.ray else "this machine"
    print(f"robustness of {args.checkpoint} ({task.name}) on {args.chips} emulated chips "
          f"({serials[0]}..{serials[-1]}) on {where}", flush=True)
    # a refused model or setting is an error line (exit 2); Ray unreachable or a remote task failed (exit 1)
    report = run_job(Job("robustness", work), show, cancelled="robustness study cancelled", verbose=args.verbose,
                     failures=(RuntimeError, ConnectionError))
    if isinstance(report, int):
        return report
    for name, value in report.reference.items():
        print(f"{name.replace('_', ' ')}: {value:.4f}")
    print(f"accuracy over {len(report.chips)} chips, {report.n_test} test samples each "
          f"({report.wall_s:.1f} s, {report.distributed}):")
    print(report.table())
    worst = min(report.chips, key=lambda c: c.accuracy)
    print(f"worst chip before calibration: {worst.serial} ({worst.accuracy:.4f})")
    if args.json:
        try:  # checked before the study (output_file); the file system can still change or fill
            write_replacing(args.json, json.dumps(report.to_dict(), indent=1))
        except OSError as exc:
            print(f"error: writing --json {args.json} failed: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"report written to {args.json}")
    return 0
