"""``neurolab convert``: constrain, map and run a checkpoint on Brian2 and the board; write the report."""

from __future__ import annotations

import argparse
import sys
import traceback

from .arguments import int_at_least, output_file, retention, seed
from .board_option import add_board_option, open_board
from .train import print_progress


def register(subparsers: argparse._SubParsersAction) -> None:
    from neurolab_gui.core.conversion.constrain import MAX_LEVELS, MIN_LEVELS
    from neurolab_gui.core.conversion.tasks import DATA_FILE_FORMAT

    p = subparsers.add_parser("convert", help="convert a checkpoint to a spiking network and report every stage",
                              description="Convert a checkpoint to a spiking network and report every stage: float, "
                                          "constrained, Brian2, board ideal, board mismatch, board, board calibrated.",
                              epilog=DATA_FILE_FORMAT, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", help="NeuroLab checkpoint or a plain nn.RNN(relu)+nn.Linear state_dict")
    p.add_argument("--task", default=None,
                   help="task to evaluate on: a built-in name or a data file FILE.npz (format below; default: the one stored in the checkpoint)")
    p.add_argument("--stages", default="board_ideal,board_mismatch",
                   help="comma-separated spiking stages: brian2, board_ideal, board_mismatch (reference emulators), "
                        "board (the --board; added when --board is given), board_calibrated (calibrates the --board, "
                        "else an emulator with the default mismatch, and runs there)")
    add_input_options(p)
    add_board_option(p, default=None, what="run the stage 'board' on")
    p.add_argument("--no-profile", action="store_true", help="do not apply the board's calibration profile")
    p.add_argument("--n-test", type=int_at_least(1), default=None, help="test samples for the spiking stages (default: all)")
    p.add_argument("--brian2-samples", type=int_at_least(1), default=60, help="test samples for the (slow) Brian2 stage")
    p.add_argument("--levels", type=int, default=16,
                   help=f"weight levels, {MIN_LEVELS}..{MAX_LEVELS} (16: signed 4-bit; 3: ternary)")
    p.add_argument("--qat-epochs", type=int_at_least(0), default=None, help="QAT fine-tuning epochs (default: the task's)")
    p.add_argument("--retention", type=retention, default=None, help="leaky retention for the spiking time mapping, 0 < a < 1")
    p.add_argument("--steps-per-sample", type=int_at_least(1), default=None)
    p.add_argument("--json", type=output_file, default="conversion_report.json", help="where to write the JSON report (default: conversion_report.json in the current directory, replaced if it exists)")
    p.add_argument("--seed", type=seed, default=0, help="seed of the conversion and of the input spike encoding")
    p.add_argument("--nir", metavar="OUT", type=output_file, default=None,
                   help="also write the constrained spiking network as a NIR file (HDF5)")
    p.add_argument("--ablation", action="store_true",
                   help="also report the accuracy after each constraint added one at a time (a few extra rate-model evaluations)")
    p.set_defaults(func=run)


def add_input_options(p: argparse.ArgumentParser) -> None:
    """Options of a user data file and an imported model (``convert`` and ``calibrate``)."""
    from neurolab_gui.core.conversion.encoding import NORMALIZATIONS
    from neurolab_gui.core.conversion.torch_import import READOUT_RULES

    p.add_argument("--normalize", choices=NORMALIZATIONS, default="encode",
                   help="where a data file's mean/std are applied: encode (z-score the features before spike encoding; default), "
                        "fold (into the imported model's W_ih and b_ih) or none (ignore them)")
    p.add_argument("--readout", choices=tuple(READOUT_RULES), default=None,
                   help="imported models: the readout's input, the state at the last valid step, the mean over valid steps, or "
                        "the state at the last padded step (default: what the file's meta declares, else last_valid)")


def load_conversion_inputs(args: argparse.Namespace, stages: tuple[str, ...]):
    """Checkpoint, task and pipeline configuration of a ``convert``/``deploy`` command line, the
    model checked convertible (no NaN/inf weights, inputs/classes of the task).

    Returns ``(loaded, task, cfg)``, or an exit code after printing what is wrong.
    """
    from neurolab_gui.core.conversion.checkpoint import CheckpointError, load_checkpoint
    from neurolab_gui.core.conversion.constrain import WeightPrecision, check_convertible
    from neurolab_gui.core.conversion.pipeline import config_for_task
    from neurolab_gui.core.conversion.tasks import load_task, stored_task

    from .arguments import option_problem, print_task_warnings

    # deploy and robustness share this code and parse these options as plain numbers
    problem = option_problem(args, {"--retention": retention, "--steps-per-sample": int_at_least(1),
                                    "--qat-epochs": int_at_least(0)})
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    try:
        loaded = load_checkpoint(args.checkpoint)
        task_name = args.task or stored_task(loaded.metadata, args.checkpoint)
        task = load_task(task_name, normalization=getattr(args, "normalize", "encode"))
        precision = WeightPrecision(args.levels)
    except (CheckpointError, ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    mc = loaded.model.config
    try:
        # by the name given (a data file's path): a data file gets the generic defaults even when
        # its stem is a built-in task's name
        cfg = config_for_task(
            task_name, mc, retention=args.retention, steps_per_sample=args.steps_per_sample, qat_epochs=args.qat_epochs,
            stages=stages, n_test_spiking=args.n_test, brian2_samples=getattr(args, "brian2_samples", None), seed=args.seed,
            ablation=getattr(args, "ablation", False) or None, readout_rule=getattr(args, "readout", None),
        )
        if args.retention is not None:  # the user's time mapping, not one fitted to an imported model
            cfg.imported_retentions = ()
        cfg.constraint.precision = precision
        check_convertible(loaded.model, task, args.checkpoint)
    except ValueError as exc:  # a model or setting the conversion refuses (NaN/inf weights, bad options)
        print(f"error: {exc}", file=sys.stderr)
        if getattr(args, "verbose", 0):
            traceback.print_exc()
        return 2
    print_task_warnings(task)
    if loaded.metadata.get("ignored_tensors"):
        print(f"note: tensors in the file that are not weights were ignored: {', '.join(loaded.metadata['ignored_tensors'])}")
    return loaded, task, cfg


def open_with_profile(args: argparse.Namespace):
    """The ``--board`` opened, and its calibration profile unless ``--no-profile`` (None when it has none).

    Returns ``(board, profile)``, or an exit code after telling the user why: 2 for a profile that
    cannot be used, 1 for a board that cannot be opened.
    """
    from neurolab_gui.core.calibration.profile import ProfileError, find_profile

    board = open_board(args.board)
    if isinstance(board, int):
        return board
    try:
        profile = None if args.no_profile else find_profile(board.serial)
    except ProfileError as exc:
        board.close()
        print(f"error: {exc} (pass --no-profile to run without it)", file=sys.stderr)
        return 2
    except BaseException:
        board.close()
        raise
    return board, profile


def network_calibrator(board, mapped, constrained, task, progress, cancel):
    """:data:`~neurolab_gui.core.conversion.pipeline.NetworkCalibrator` of the stage ``board_calibrated``:
    the calibration engine of ``neurolab calibrate --task`` (``calibrate_network``)."""
    from neurolab_gui.core.calibration.engine import calibrate_network
    from neurolab_gui.core.conversion.pipeline import CalibratedNetwork

    result = calibrate_network(board, mapped, constrained, task, progress=progress, cancel=cancel)
    return CalibratedNetwork(result.mapped, result.constrained, result.chip_s, result.summary())


def run(args: argparse.Namespace) -> int:
    import torch

    from neurolab_gui.core.conversion.pipeline import SPIKING_STAGES, convert
    from neurolab_gui.core.jobs import Job

    from .job_runner import run_job

    torch.set_num_threads(1)  # small matrices: threads only add contention on a busy 2-core machine
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    if not stages and args.stages.strip():  # "--stages ,,": a list that lost its names, not the deliberate ""
        print(f"error: --stages {args.stages!r} names no stage; choose from {', '.join(SPIKING_STAGES)} "
              "(or --stages \"\" for the rate models only)", file=sys.stderr)
        return 2
    bad = [s for s in stages if s not in SPIKING_STAGES]
    if bad:
        print(f"error: unknown stage(s) {', '.join(bad)}; choose from {', '.join(SPIKING_STAGES)}", file=sys.stderr)
        return 2
    if args.board is not None and "board" not in stages:
        stages = (*stages, "board")
    if "board" in stages and args.board is None:
        print("error: the stage 'board' needs --board emulator[:SEED] or --board SERIAL", file=sys.stderr)
        return 2
    inputs = load_conversion_inputs(args, stages)
    if isinstance(inputs, int):
        return inputs
    loaded, task, cfg = inputs
    if stages and args.n_test is not None and args.n_test > len(task.x_test):  # the report's samples column would say so only
        print(f"note: --n-test {args.n_test} is more than the {len(task.x_test)} test samples of {task.name}; "
              f"the spiking stages run all {len(task.x_test)}")
    mc = loaded.model.config
    board = profile = None
    if args.board is not None:
        opened = open_with_profile(args)
        if isinstance(opened, int):
            return opened
        board, profile = opened
        print(f"board {board.serial}: " + (f"calibration profile of {profile.created} applied" if profile else "no calibration profile"))
    print(f"converting {args.checkpoint} ({loaded.source_format}, {mc.kind}, {mc.n_hidden} units) on {task.name}")
    conversion = Job("conversion", lambda progress, cancel: convert(loaded.model, task, cfg, progress=progress, cancel=cancel,
                                                                    board=board, profile=profile,
                                                                    calibrator=network_calibrator))
    try:  # a model or setting the conversion refuses (NaN/inf weights, a tanh RNN) is an error line, exit 2
        result = run_job(conversion, print_progress, cancelled="conversion cancelled", verbose=args.verbose)
    finally:
        if board is not None:
            board.close()
    if isinstance(result, int):
        return result
    print()
    print(result.report.table())
    try:
        path = result.report.write_json(args.json)
    except OSError as exc:  # checked before the conversion; the file system can still change or fill
        print(f"error: writing --json {args.json} failed: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"\nJSON report written to {path}")
    if args.nir:
        from neurolab_gui.cli.nir_export import write_nir_file

        return write_nir_file(result, args.nir)
    return 0
