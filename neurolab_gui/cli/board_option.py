"""The one ``--board`` option of ``convert``, ``calibrate``, ``deploy`` and ``robot demo``.

Its grammar is :func:`neurolab_gui.core.boards.parse_board`: ``emulator[:SEED]`` or a board serial.
A bad value is an argparse usage error (exit code 2) that names the problem.
"""

from __future__ import annotations

import argparse


def board_spec(text: str):
    """argparse ``type=``: the :class:`~neurolab_gui.core.boards.BoardSpec` of ``text``."""
    from neurolab_gui.core.boards import parse_board

    try:
        return parse_board(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_board_option(parser: argparse.ArgumentParser, default: str | None = "emulator", what: str = "run on") -> None:
    """Add ``--board`` to ``parser`` (``default`` None: the option is optional and absent means no board)."""
    parser.add_argument(
        "--board", type=board_spec, default=None if default is None else board_spec(default), metavar="BOARD",
        help=f"the board to {what}: 'emulator', 'emulator:SEED' (mismatch seed) or a DYNAP-SE1 serial"
             + (f" (default: {default})" if default else ""),
    )
