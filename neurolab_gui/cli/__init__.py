"""The ``neurolab`` command.

Each subcommand lives in its own module of this package and exposes
``register(subparsers) -> None``, which adds an ``argparse`` sub-parser whose
``func`` default takes the parsed namespace and returns an exit code.  Heavy
imports (torch, brian2, Qt) happen inside those functions so that ``neurolab
--version`` and ``neurolab doctor`` start quickly and work on a broken install.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from neurolab_gui import __version__

#: Subcommand modules, in the order ``neurolab --help`` lists them.
SUBCOMMAND_MODULES = (
    "gui",
    "demo",
    "devices",
    "train",
    "convert",
    "nir_import",
    "calibrate",
    "deploy",
    "robustness",
    "robot",
    "record",
    "export",
    "info",
    "doctor",
)


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser with every available subcommand registered."""
    parser = argparse.ArgumentParser(
        prog="neurolab",
        description="Put a BPTT-trained RNN onto DYNAP-SE1 spiking hardware or its emulator.",
    )
    parser.add_argument("--version", action="version", version=f"neurolab {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (repeatable)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"neurolab_gui.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"neurolab_gui.cli.{name}":
                raise
            continue  # subcommand not part of this build
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurolab`` console script; returns the process exit code.

    With no subcommand it opens the GUI, like ``neurolab gui``.  Unknown
    subcommands and bad options print a usage message and exit with code 2
    (argparse's convention).
    """
    import logging

    parser = build_parser()
    args = parser.parse_args(list(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        args = parser.parse_args(["gui", *(sys.argv[1:] if argv is None else argv)])
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # here, not at the interpreter's exit, where a broken pipe cannot be caught
        return code
    except BrokenPipeError:
        # the reader of our output went away (`neurolab info F | head -2`): not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush does not fail again
        # (Python's documented recipe), and end quietly.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
