"""The one ``--board`` option of ``convert``, ``calibrate``, ``deploy`` and ``robot demo``, and the one
way they open it.

Its grammar is :func:`neurolab_gui.core.boards.parse_board`: ``emulator[:SEED]`` or a board serial.
A bad value is an argparse usage error (exit code 2) that names the problem.  A board that is named
well but cannot be opened (not plugged in, busy, a USB error) is reported by :func:`open_board`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


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


def open_board(spec, **options: Any):
    """Open the board ``spec`` (a :class:`~neurolab_gui.core.boards.BoardSpec`; ``options`` as
    :meth:`~neurolab_gui.core.boards.BoardSpec.open` takes them).

    Returns the open board, or exit code 1 after printing ``error: cannot open the board SPEC: <why>``
    (e.g. "no DYNAP-SE1 board found"): no board to open is not a fault of NeuroLab, so no traceback.
    """
    try:
        return spec.open(**options)
    except Exception as exc:  # noqa: BLE001 - whatever stopped the board from opening (lookup, USB, emulator)
        print(f"error: cannot open the board {spec}: {exc}", file=sys.stderr)
        return 1
