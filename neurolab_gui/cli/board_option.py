"""The one ``--board`` option of every command that opens a board.

Its grammar is :func:`neurolab_gui.core.boards.parse_board`: ``emulator``, ``emulator:SEED``, the
emulator's serial ``EMU<SEED>`` (as ``neurolab devices`` prints it) or a DYNAP-SE1 serial.  A bad
value is an argparse usage error (exit code 2) that names the problem.  ``record`` and ``gui``
also keep their older ``--seed`` (:func:`add_board_and_seed_options`).  A board that is named well
but cannot be opened (not plugged in, busy, a USB error) is reported by :func:`open_board`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .arguments import seed

BOARD_GRAMMAR = "'emulator', 'emulator:SEED' (mismatch seed), the emulator serial EMU<SEED> (e.g. EMU00009) or a DYNAP-SE1 serial"


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
        help=f"the board to {what}: {BOARD_GRAMMAR}" + (f" (default: {default})" if default else ""),
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


def handing_over(board):
    """A :class:`~neurolab_gui.core.session.Session` opener that hands over ``board``, already opened by
    :func:`open_board`, at the session's connect (so that a board that cannot be opened is reported the
    one way every command reports it); a later reconnect opens the target afresh."""
    from neurolab_gui.core.connection import open_board as open_target

    pending = [board]

    def opener(target):
        return pending.pop() if pending else open_target(target)

    return opener


def add_board_and_seed_options(parser: argparse.ArgumentParser, what: str) -> None:
    """``--board`` as :func:`add_board_option`, plus ``--seed`` (the same as ``--board emulator:SEED``)."""
    add_board_option(parser, what=what)
    parser.add_argument("--seed", type=seed, default=None, help="emulator: mismatch seed (the same as --board emulator:SEED; default 0)")


def board_and_seed(args: argparse.Namespace) -> tuple[str, int]:
    """``("emulator", seed)`` or ``(serial, 0)`` from ``--board`` and ``--seed``, for :meth:`Session.connect`.

    Raises ``ValueError`` when the two name different seeds, or ``--seed`` is given with a serial
    (its range is the ``seed`` argument type's).
    """
    spec = args.board
    if not spec.emulated:
        if args.seed is not None:
            raise ValueError(f"--seed applies to the emulator only, not to the board {spec.serial}")
        return spec.serial, 0
    if args.seed is not None and spec.seed not in (0, args.seed):
        raise ValueError(f"--board {spec} and --seed {args.seed} name different seeds; give the seed once")
    return "emulator", spec.seed if args.seed is None else args.seed
