"""``neurolab calibrate``: calibrate a board (the emulator by default) and write its profile.

Without a model: per-core bias tuning from a published bias set and per-neuron f-I curves, and
with ``--tau-ms`` the synaptic time constants
(:func:`~neurolab_gui.core.calibration.board_calibration.calibrate_board`).  With ``--task``
(and optionally ``--checkpoint``; otherwise a model is trained with the pipeline's defaults):
the full network calibration (synaptic time constants, transfer curves, bias tuning, neuron
selection, CAM compensation, chip-in-the-loop fine-tuning) and the board accuracy before and after.
Progress goes to stdout; Ctrl-C cancels and leaves the board in its starting state.  The profile's
destination is checked before any chip time is spent; with ``--task`` the profile is saved as soon as
the calibration is done, before the accuracy runs, so a Ctrl-C during those keeps it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from neurolab_gui.core.boards import bias_table, restore_board

from .arguments import int_at_least, output_path_problem, positive_float
from .board_option import add_board_option, board_spec, open_board
from .convert import add_input_options


def register(subparsers: argparse._SubParsersAction) -> None:
    from neurolab_gui.core.calibration.board_calibration import MAX_SATURATION_HZ
    from neurolab_gui.core.conversion.tasks import DATA_FILE_FORMAT

    p = subparsers.add_parser("calibrate", help="calibrate a board (emulator by default) and write its profile",
                              description=__doc__.splitlines()[0], epilog=DATA_FILE_FORMAT,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
    add_board_option(p, what="calibrate")
    p.add_argument("--emulator-serial", type=_serial, default=None,
                   help="serial of the emulated board (default: EMU<seed>, as the app names it, so the app finds its profile)")
    p.add_argument("--chip", type=int, default=0)
    p.add_argument("--cores", type=int, nargs="+", default=[1, 2, 3], help="cores to calibrate (board mode)")
    p.add_argument("--start-set", default="samna_recommended", help="published bias set to start from (board mode)")
    p.add_argument("--saturation-hz", type=_saturation_hz, default=300.0,
                   help=f"target saturation rate 1/t_ref, up to {MAX_SATURATION_HZ:g} Hz (board mode; default 300)")
    p.add_argument("--tau-ms", type=positive_float, default=None,
                   help="target AMPA and GABA_B synaptic time constant in ms (board mode; default: not tuned)")
    p.add_argument("--task", help="calibrate for a converted network on this task (seq_digits, mnist1d, ecg, file.npz)")
    p.add_argument("--checkpoint", help="trained model for --task (default: train one with the pipeline defaults)")
    add_input_options(p)
    p.add_argument("--epochs", type=int_at_least(1), default=None, help="training epochs when no checkpoint is given")
    p.add_argument("--n-test", type=int_at_least(1), default=200,
                   help="test samples for the before/after board accuracy (network mode)")
    p.add_argument("--profile", type=_profile_file, metavar="FILE.json",
                   help="profile file to write (default ~/.local/share/neurolab/calibration/<serial>.json)")
    p.add_argument("--figures", metavar="DIR", help="write before/after figures here")
    p.add_argument("--apply-profile", metavar="PROFILE",
                   help="instead of calibrating: write a saved profile's biases to the board (its serial must match); "
                        "a profile file, or a board serial for that board's profile in the default folder")
    p.add_argument("--allow-other-board", action="store_true",
                   help="with --apply-profile: apply a profile measured on another board (its mismatch differs)")
    p.set_defaults(func=run)


def _serial(text: str) -> str:
    """argparse ``type=`` of ``--emulator-serial``: a board serial (also the profile's file name), checked
    before the calibration rather than when its profile is saved."""
    spec = board_spec(text)
    if spec.serial is None:
        raise argparse.ArgumentTypeError(f"{text!r} names the emulator, not a serial (letters, digits, '_', '.', '-')")
    return spec.serial


def _profile_file(text: str) -> str:
    """argparse ``type=`` of ``--profile``: a ``.json`` file that can be written.

    Only a ``.json`` name: the profile module takes any other name for a folder to put
    ``<serial>.json`` in (a new name became a folder, an existing file failed after the calibration).
    """
    if Path(text).suffix != ".json":
        raise argparse.ArgumentTypeError(f"{text!r} is not a .json file name (the profile is written as JSON)")
    problem = output_path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {problem}")
    return text


class _SaveFailed(Exception):
    """The profile could not be written (the message says what the board holds); exit code 1."""


class _CancelledAfterCalibration(Exception):
    """Ctrl-C after the calibration finished (the message says what the board holds and where the profile is)."""


def _profile_target(args: argparse.Namespace, serial: str) -> Path:
    """Where the profile of board ``serial`` will be written, checked writable before any chip time is spent.

    Raises ``ValueError`` (exit code 2) naming the path and the problem.
    """
    from neurolab_gui.core.calibration.profile import profile_path

    target = profile_path(serial, args.profile)
    # save_profile creates the default folder, so missing folders above it are fine
    problem = output_path_problem(target, parents=args.profile is None)
    if problem:
        where = "--profile" if args.profile else "the default profile folder (set XDG_DATA_HOME or pass --profile FILE.json)"
        raise ValueError(f"cannot write the calibration profile {target}: {problem}; {where}")
    return target


def _save(profile, target: Path, if_failed: str = "the calibration's biases are on the board but not saved") -> Path:
    """``save_profile`` to ``target``; a failure (a folder made read-only meanwhile, disk full) is
    :class:`_SaveFailed`, its message ending with ``if_failed``: what the user still has."""
    from neurolab_gui.core.calibration.profile import save_profile

    try:
        return save_profile(profile, target)
    except OSError as exc:
        why = f"{exc.strerror} ({exc.filename})" if exc.strerror and exc.filename else str(exc)
        raise _SaveFailed(f"cannot write the calibration profile {target}: {why}; {if_failed}") from None


def _saturation_hz(text: str) -> float:
    """argparse ``type=`` of ``--saturation-hz``: a target :class:`BoardTargets` accepts (finite, > 0, at
    most ``MAX_SATURATION_HZ``)."""
    from neurolab_gui.core.calibration.board_calibration import BoardTargets

    value = positive_float(text)
    try:
        BoardTargets(saturation_hz=value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def _printer(event) -> None:
    eta = f", ETA {event.eta_s:.0f} s" if event.eta_s == event.eta_s else ""
    print(f"{event.fraction:6.1%}  {event.step}: {event.message}  [chip {event.chip_s:.1f} s{eta}]", flush=True)


def _open(args: argparse.Namespace):
    """The ``--board`` opened, or exit code 1 after saying why not (:func:`.board_option.open_board`)."""
    return open_board(args.board, emulator_serial=args.emulator_serial)


def run(args: argparse.Namespace) -> int:
    from neurolab_gui.core.calibration.profile import apply_profile, load_profile
    from neurolab_gui.core.calibration.progress import CalibrationCancelled
    from neurolab_gui.core.jobs import CancelToken

    cancel = CancelToken()
    try:  # bad input files are refused before the board is touched
        inputs = _network_inputs(args) if args.task else None
        stored = load_profile(args.apply_profile) if args.apply_profile else None
    except (ValueError, FileNotFoundError) as exc:  # CheckpointError and ProfileError are ValueErrors
        print(f"error: {exc}", file=sys.stderr)
        return 2
    board = _open(args)
    if isinstance(board, int):
        return board
    try:
        if stored is not None:
            apply_profile(board, stored, allow_other_board=args.allow_other_board, log=print)
            print(f"applied {len(stored.biases)} biases of {args.apply_profile} (board {stored.serial}) to board {board.serial}")
            return 0
        target = _profile_target(args, board.serial)
        if args.task:
            path = _network(args, board, cancel, target, *inputs)
        else:
            path = _save(_board(args, board, cancel), target)
        print(f"profile written to {path}")
        return 0
    except _CancelledAfterCalibration as exc:
        print(exc)
        return 130
    except KeyboardInterrupt:  # during the calibration: it restored the board itself
        cancel.set()
        print("cancelled; the board was restored to its starting biases")
        return 130
    except CalibrationCancelled:
        print("cancelled; the board was restored to its starting biases")
        return 130
    except _SaveFailed as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (ValueError, KeyError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        board.close()


def _print_taus(summary: dict) -> None:
    """One line per core: synaptic time constants before and after tuning, with standard errors."""
    if "tau_ms_after" not in summary:
        return
    for core, after in summary["tau_ms_after"].items():
        before = summary["tau_ms_before"][core]
        text = ", ".join(f"{syn} {before[syn][0]:.1f}±{before[syn][1]:.1f} -> {v[0]:.1f}±{v[1]:.1f} ms" for syn, v in after.items())
        print(f"synaptic tau, chip/core {core}: {text} (target {summary['tau_target_ms']:.1f} ms)")
    print(f"worst tau error {summary['tau_rel_error_before']:.1%} -> {summary['tau_rel_error_after']:.1%}")


def _board(args: argparse.Namespace, board, cancel):
    from neurolab_gui.core.calibration.board_calibration import BoardTargets, calibrate_board

    tau_s = None if args.tau_ms is None else args.tau_ms * 1e-3
    targets = BoardTargets(saturation_hz=args.saturation_hz, synaptic_tau_s=tau_s)  # validated before any bias is written
    result = calibrate_board(board, args.chip, args.cores, args.start_set, targets, progress=_printer, cancel=cancel)
    s = result.summary()
    print(f"cores {s['cores']}: median saturation {s['median_saturation_hz']:.1f} Hz (target {args.saturation_hz:.1f}), "
          f"f-I gain CV {s['dc_gain_cv']:.1%} over {s['neurons_fitted']} neurons, chip time {s['chip_s']:.1f} s")
    for miss in result.targets_missed():
        print(f"warning: {miss}", file=sys.stderr)
    _print_taus(s)
    if args.figures:
        from neurolab_gui.core.calibration.figures import board_figures

        for p in board_figures(result, args.figures):
            print(f"figure: {p}")
    return result.to_profile(board.serial, board.is_emulated)


def _network_inputs(args: argparse.Namespace):
    """The task and the checkpoint's model (or None), read and checked before a board is opened."""
    from neurolab_gui.core.conversion import tasks

    from .arguments import print_task_warnings

    task = tasks.load_task(args.task, normalization=args.normalize)
    model = None
    if args.checkpoint:
        from neurolab_gui.core.conversion.checkpoint import load_checkpoint
        from neurolab_gui.core.conversion.constrain import check_convertible

        model = load_checkpoint(args.checkpoint).model
        check_convertible(model, task, args.checkpoint)
    print_task_warnings(task)
    return task, model


def _network(args: argparse.Namespace, board, cancel, target: Path, task, model) -> Path:
    """Calibrate for the network, save its profile at ``target``, then measure the board accuracy before
    and after and add it to the saved profile; returns the profile's path."""
    from neurolab_gui.core.calibration.engine import calibrate_network
    from neurolab_gui.core.calibration.profile import profile_from_network_calibration
    from neurolab_gui.core.cancellation import Cancelled
    from neurolab_gui.core.conversion import pipeline
    from neurolab_gui.core.conversion.deployment import deploy_network, run_deployment
    from neurolab_gui.core.conversion.mapping import map_network
    from neurolab_gui.core.conversion.training import evaluate

    # the task's defaults, or the loaded model's own dynamics (the time mapping it was trained for)
    cfg = pipeline.config_for_task(task.name, model.config if model is not None else None, epochs=args.epochs,
                                   readout_rule=args.readout)
    if model is None:
        print(f"training a model on {task.name} ({cfg.train.epochs} epochs)...", flush=True)
        model, _ = pipeline.train_model(task, cfg, progress=lambda p: print(f"  {p.message}", flush=True), cancel=cancel)
    # the constrained network `neurolab convert` builds from the same checkpoint, task and options;
    # its QAT takes minutes for a large network, so it says how it goes (it said nothing for 150 s)
    print("constraining the network to the chip (QAT)...", flush=True)
    prepared, net = pipeline.constrained_network(model, task, cfg, progress=lambda p: print(f"  {p.message}", flush=True),
                                                 cancel=cancel)
    for note in prepared.notes:
        print(f"note: {note}")
    task, cfg = prepared.task, prepared.cfg
    mapped = map_network(net, cfg.time_mapping(), cfg.settings, chip=args.chip)
    start = bias_table(board)
    result = calibrate_network(board, mapped, net, task, progress=_printer, cancel=cancel)  # restores the board on Ctrl-C
    path: Path | None = None
    try:
        # saved now, so the accuracy runs (minutes on a chip) cannot lose the calibration
        path = _save(profile_from_network_calibration(board.serial, result, board.is_emulated), target)
        print(f"profile written to {path}; measuring the board accuracy before and after", flush=True)
        n = min(args.n_test, len(task.x_test))
        x, y, lengths = task.x_test[:n], task.y_test[:n], task.lengths_test[:n]

        def board_accuracy(network, which: str) -> float:  # written and run like `neurolab deploy` does
            def show(event) -> None:
                print(f"  board {which}: {event.message}", flush=True)

            return run_deployment(deploy_network(board, network, cancel=cancel), x, y, lengths, progress=show,
                                  cancel=cancel).accuracy

        float_acc = prepared.float_accuracy
        if float_acc is None:
            float_acc = evaluate(prepared.model, task.x_test, task.y_test, task.lengths_test)[0]
        acc = {
            "float": float_acc,
            "constrained": evaluate(net.model, x, y, lengths)[0],
            "board_before": board_accuracy(result.mapped_before, "before"),
            "board_after": board_accuracy(result.mapped, "after"),
        }
    except (KeyboardInterrupt, Cancelled):
        # A Ctrl-C here left the before- or after-network on the board, possibly half-written.  The board
        # goes back to its starting biases, as after a Ctrl-C at any other point of this command: one rule
        # the user can rely on, and nothing is lost, since the finished calibration is in the saved profile
        # (`deploy` applies it, `calibrate --apply-profile` writes its biases).
        restore_board(board, start, result.mapped.chips)
        kept = f"the profile is saved at {path}" if path is not None else "the profile was not saved"
        raise _CancelledAfterCalibration(f"cancelled after the calibration; the board was restored to its starting "
                                         f"biases and {kept}") from None
    _print_taus(result.summary())
    print(f"gain CV {result.gain_cv_before:.1%} -> {result.gain_cv_after:.1%} (inhibitory {result.inh_gain_cv_before:.1%} -> "
          f"{result.inh_gain_cv_after:.1%}); chip time {result.chip_s_measurement:.1f} s measurement + {result.chip_s_loop:.1f} s in the loop")
    print(f"float {acc['float']:.4f} (whole test set); on {n} test samples: constrained {acc['constrained']:.4f}, "
          f"board before {acc['board_before']:.4f}, board after {acc['board_after']:.4f}")
    if args.figures:
        from neurolab_gui.core.calibration.figures import network_figures

        for p in network_figures(result, args.figures, acc):
            print(f"figure: {p}")
    profile = profile_from_network_calibration(board.serial, result, board.is_emulated)
    profile.summary["accuracy"] = acc
    return _save(profile, target, "the profile saved before the accuracy runs stays, without them")

