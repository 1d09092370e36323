"""``neurolab gui``: open the main window, connected to the emulator unless told otherwise."""

from __future__ import annotations

import argparse

from .board_option import add_board_and_seed_options, board_and_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("gui", help="open the NeuroLab window (default command)")
    add_board_and_seed_options(p, what="open")
    p.add_argument("--no-mismatch", action="store_true", help="emulate an ideal board")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os
    import sys

    from neurolab_gui.cli.doctor import display_available

    try:
        board, seed = board_and_seed(args)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    shown, why = display_available()
    if not shown and not os.environ.get("QT_QPA_PLATFORM"):
        # Qt would abort the process with a platform-plugin error; say what to do instead.
        print(f"neurolab gui: cannot open a window here ({why}).\n"
              "Run the headless end-to-end job with `neurolab demo`, or start the GUI under Xvfb "
              "(xvfb-run neurolab gui).", file=sys.stderr)
        return 2
    from neurolab_gui.core.connection import app_target, start_early

    # the emulator's child boots (~0.7 s of CPU) while Qt and the window load, instead of after them
    start_early(app_target(board, seed, not args.no_mismatch))
    from neurolab_gui.qt.app import run_app

    return run_app(board=board, seed=seed, mismatch=not args.no_mismatch)
