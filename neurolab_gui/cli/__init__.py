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


#: The subcommand that a command line naming none runs (``neurolab --seed 3`` is ``neurolab gui --seed 3``).
DEFAULT_COMMAND = "gui"


def with_default_command(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """``argv`` with :data:`DEFAULT_COMMAND` put where the subcommand belongs, when it names none.

    The subcommand comes after the top-level options (``-v``, ``--version``, ``-h``); the first
    option that is not one of them starts the default command's options, so
    ``neurolab -v --board SERIAL`` is ``neurolab -v gui --board SERIAL``.  A command line of top-level
    options only gets the default command at its end.  A word that is not an option is left where
    it is: a subcommand, or a misspelt one that argparse then names among the valid choices.
    """
    argv = list(argv)
    for i, word in enumerate(argv):
        if not word.startswith("-"):
            return argv
        # -vv counts like -v -v
        top_level = word in parser._option_string_actions or (len(word) > 1 and not word[1:].strip("v"))
        if not top_level:
            return [*argv[:i], DEFAULT_COMMAND, *argv[i:]]
    return [*argv, DEFAULT_COMMAND]


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``neurolab`` console script; returns the process exit code.

    With no subcommand it opens the GUI, like ``neurolab gui``, and takes that command's options
    (``neurolab --seed 3``; :func:`with_default_command`).  Unknown subcommands and bad options
    print a usage message and exit with code 2 (argparse's convention).
    """
    import logging

    parser = build_parser()
    args = parser.parse_args(with_default_command(parser, sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.WARNING - 10 * min(args.verbose, 2),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
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
