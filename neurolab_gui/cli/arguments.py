"""argparse types and checks that several subcommands share.

A value these refuse is an argparse usage error: ``neurolab COMMAND: error: argument --OPTION:
<why>`` on stderr and exit code 2, before any work starts.  ``float("nan")`` compares False with
everything, so a bare ``> 0`` lets NaN through; every number here is checked finite first.
"""

from __future__ import annotations

import argparse
import math
import os
from collections.abc import Callable
from pathlib import Path

from drivers.user_files import folder_problem


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def positive_float(text: str) -> float:
    """argparse ``type=``: a finite number > 0 (NaN and inf refused)."""
    value = _float(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    """argparse ``type=``: a finite number >= 0 (NaN and inf refused)."""
    value = _float(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {text}")
    return value


def non_empty(text: str) -> str:
    """argparse ``type=``: a value that is not empty or blank (an unset ``$VAR`` expands to ``''``, which
    must not quietly mean the same as leaving the option out); returned unchanged."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty (leave the option out for its default)")
    return text


def retention(text: str) -> float:
    """argparse ``type=``: a leaky retention ``a`` strictly between 0 and 1 (``tau = -dt / ln a`` must exist)."""
    value = _float(text)
    if not 0.0 < value < 1.0:  # False for NaN too
        raise argparse.ArgumentTypeError(f"must lie strictly between 0 and 1 (tau = -dt / ln a), got {text}")
    return value


def int_at_least(minimum: int) -> Callable[[str], int]:
    """argparse ``type=``: an integer >= ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"  # argparse names the type in some of its messages
    return parse


def seed(text: str) -> int:
    """argparse ``type=`` of every ``--seed`` (and ``--emulator-seed``): an integer in 0..``MAX_EMULATOR_SEED``.

    One range for every seed: numpy's generators refuse negative seeds and torch's refuse seeds
    of 2**64 and more (a stack of "Overflow when unpacking long long" after the data were read),
    and a seed may become an emulator's mismatch seed, whose serial ``EMU<SEED>`` has at most 18
    digits (:data:`neurolab_gui.core.boards.MAX_EMULATOR_SEED`).
    """
    from neurolab_gui.core.boards import MAX_EMULATOR_SEED

    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value <= MAX_EMULATOR_SEED:
        raise argparse.ArgumentTypeError(f"a seed must lie in 0..{MAX_EMULATOR_SEED}, got {value}")
    return value


def option_problem(args: argparse.Namespace, checks: dict[str, Callable[[str], object]]) -> str | None:
    """The first parsed option of ``args`` that a shared type of ``checks`` (``{"--option": type}``) refuses,
    as ``"argument --option: why"``, or None.  For commands whose parser declares an option with a
    plain ``int``/``float`` and code shared with commands that check it at parse time."""
    for option, check in checks.items():
        value = getattr(args, option.lstrip("-").replace("-", "_"), None)
        if value is None:
            continue
        try:
            check(str(value))
        except argparse.ArgumentTypeError as exc:
            return f"argument {option}: {exc}"
    return None


def output_path_problem(path: str | Path, *, parents: bool = False) -> str | None:
    """Why a file cannot be written at ``path`` (None: it can).

    Checked before a command does its work, so a long conversion or calibration is not thrown away
    at the end: ``path`` must not be a directory or another non-regular file (a FIFO, a device),
    and its parent directory must exist and let a file be created there, which is tried
    (:func:`~drivers.user_files.folder_problem`: a read-only, foreign or virtual folder is refused).  Parent directories are not created;
    with ``parents`` (for a writer that creates them, e.g. the default profile folder) they may be
    missing, and then the nearest one that exists must be a writable directory.
    """
    path = Path(path)
    if path.is_dir():
        return f"{path} is a directory"
    if path.exists() and not path.is_file():
        return f"{path} exists and is not a regular file"
    problem = folder_problem(path, create_missing=parents)
    if problem:
        return problem
    if path.exists() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    return None


def output_file(text: str) -> str:
    """argparse ``type=``: a path a file can be written to (:func:`output_path_problem`); returned unchanged."""
    problem = output_path_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(f"cannot write {text}: {problem}")
    return text


def print_task_warnings(task) -> None:
    """Each of ``task.warnings`` (a user data file that is usable but likely wrong) as a ``warning:`` line on stderr."""
    import sys

    for warning in task.warnings:
        print(f"warning: {warning}", file=sys.stderr)
