"""``neurolab deploy``: write a converted checkpoint onto a board and run its test set there.

The checkpoint is constrained and mapped as ``neurolab convert`` does (no spiking stages), then
written onto ``--board`` with :mod:`neurolab_gui.core.conversion.deployment`: the board's
calibration profile when one exists for its serial (``--no-profile`` skips it), otherwise the
weight biases are matched on the board.  The first ``--n-test`` test samples run through the
FPGA spike generator; the running accuracy is printed as it goes, then the accuracy and the
confusion matrix.  Ctrl-C cancels (exit 130) and puts the board's biases back as they were before the
deploy (the network's connections cleared), since a deployment cut short leaves them half-matched.
"""

from __future__ import annotations

import argparse
import sys

from neurolab_gui.core.boards import bias_table, restore_board

from .arguments import seed
from .board_option import add_board_option
from .convert import add_input_options, load_conversion_inputs, open_with_profile


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("deploy", help="write a converted network onto a board and run its test set there",
                              description=__doc__.splitlines()[0])
    p.add_argument("checkpoint", help="NeuroLab checkpoint or a plain nn.RNN(relu)+nn.Linear state_dict")
    add_board_option(p, what="deploy on")
    p.add_argument("--task", default=None, help="task to evaluate on (default: the one stored in the checkpoint)")
    p.add_argument("--n-test", type=int, default=100, help="test samples to run on the board (default 100)")
    p.add_argument("--no-profile", action="store_true", help="do not apply the board's calibration profile")
    p.add_argument("--levels", type=int, default=16, help="weight levels (16: signed 4-bit; 3: ternary)")
    p.add_argument("--qat-epochs", type=int, default=None, help="QAT fine-tuning epochs (default: the task's)")
    p.add_argument("--retention", type=float, default=None, help="leaky retention for the spiking time mapping")
    p.add_argument("--steps-per-sample", type=int, default=None)
    p.add_argument("--seed", type=seed, default=0, help="seed of the conversion and of the input spike encoding")
    add_input_options(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from neurolab_gui.core.cancellation import Cancelled
    from neurolab_gui.core.conversion.deployment import deploy_conversion
    from neurolab_gui.core.conversion.pipeline import convert
    from neurolab_gui.core.jobs import Job, Progress

    from .job_runner import run_job

    torch.set_num_threads(1)
    if args.n_test < 1:
        print("error: --n-test must be at least 1", file=sys.stderr)
        return 2
    inputs = load_conversion_inputs(args, ())
    if isinstance(inputs, int):
        return inputs
    loaded, task, cfg = inputs
    opened = open_with_profile(args)
    if isinstance(opened, int):
        return opened
    board, profile = opened
    n = min(args.n_test, len(task.x_test))
    x, y = task.x_test[:n], task.y_test[:n]

    def show(event: Progress) -> None:
        print(f"{event.fraction:6.1%}  {event.message}", flush=True)

    def work(progress, cancel):
        start = bias_table(board)
        conversion = convert(loaded.model, task, cfg, progress=lambda p: None, cancel=cancel)
        lengths = conversion.task.lengths_test[:n]  # the readout rule last_step runs the padding too
        try:
            return deploy_conversion(board, conversion, x, y, lengths, profile=profile, seed=args.seed, progress=progress,
                                     cancel=cancel)
        except Cancelled:
            # on the job's thread, after the work stopped at a cancel check (never mid-write): the board
            # gets back the biases it had at the start; the app has its undo for this, the CLI has not
            restore_board(board, start, conversion.mapped.chips)
            raise

    print(f"deploying {args.checkpoint} ({task.name}) on board {board.serial} "
          + ("with its calibration profile" if profile else "(no calibration profile)"), flush=True)
    try:  # a model or setting the conversion refuses is an error line, exit 2
        deployed = run_job(Job("deployment", work), show, cancelled="deployment cancelled; the board's biases are back to those it had before the deploy", verbose=args.verbose)
    finally:
        board.close()
    if isinstance(deployed, int):
        return deployed
    deployment, result = deployed
    for note in deployment.notes:
        print(f"note: {note}")
    print(f"accuracy on {n} test samples: {result.accuracy:.4f}")
    print("confusion matrix (rows: true class, columns: predicted):")
    for row in result.confusion():
        print("  " + " ".join(f"{v:4d}" for v in row))
    return 0
