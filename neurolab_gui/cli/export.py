"""``neurolab export``: convert a session file to NWB, AEDAT 3.1 or CSV."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from drivers.user_files import create_temporary_beside

from .recording_option import add_salvage_option, open_recording


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a session file to NWB, AEDAT 3.1 or CSV")
    p.add_argument("file", help="session file (.h5)")
    fmt = p.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--nwb", metavar="OUT", help="NWB 2 file (units with chip/core/neuron, stimulus, biases)")
    fmt.add_argument("--aedat", metavar="OUT", help="AEDAT 3.1 file of DYNAP-SE spike packets (as cAER writes them)")
    fmt.add_argument("--csv", metavar="OUT", help="CSV: time_s, board_t_us, epoch, kind, chip, core, neuron")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists (never the session file itself)")
    add_salvage_option(p, "export the intact data")
    p.set_defaults(func=run)


def _overwrites_input(session: Path, out: Path) -> str | None:
    """Why writing ``out`` would destroy the session ``session`` (the file itself, under any name or
    link, or a file in its segments folder), or None."""
    from neurolab_gui.core.session_file import segments_dir

    try:
        if os.path.samefile(session, out):  # also a hard link, a symlink or another spelling of the path
            return f"is the session file {session} itself"
    except OSError:  # one of them does not exist: compare where they would be
        if session.resolve() == out.resolve():
            return f"is the session file {session} itself"
    if out.resolve().is_relative_to(segments_dir(session).resolve()):
        return f"lies in the segments folder of {session}"
    return None


def _discard(partial: Path) -> None:
    """Remove a half-written export; never raise over the error that made it half-written."""
    try:
        partial.unlink(missing_ok=True)
    except OSError as exc:
        if partial.exists():  # said only when something really is left behind
            print(f"warning: could not remove the partial file {partial}: {exc.strerror or exc}", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    from neurolab_gui.core.export import ExportWriteError, export_aedat, export_csv, export_nwb

    kind, out, func = next((k, getattr(args, k), f) for k, f in (("nwb", export_nwb), ("aedat", export_aedat), ("csv", export_csv)) if getattr(args, k))
    out = Path(out)
    # first: a damaged recording is refused before anything is written (the reader checks index and segments)
    session = open_recording(args.file, args.salvage)
    if session is None:
        return 2
    try:
        clash = _overwrites_input(Path(args.file), out)
    except (OSError, RuntimeError) as exc:  # e.g. a symlink loop at OUT: pathlib raises RuntimeError
        print(f"error: --{kind} {out} cannot be used as the output: {exc}", file=sys.stderr)
        return 2
    if clash:  # --force allows replacing an old export, never the recording being read
        print(f"error: --{kind} {out} {clash}; choose another output name", file=sys.stderr)
        return 2
    if out.is_dir():  # --force replaces a file, never a folder (the final rename could not, and must not)
        print(f"error: --{kind} {out} is a folder; give a file name", file=sys.stderr)
        return 2
    if out.exists() and not args.force:
        print(f"error: {out} already exists (use --force to overwrite)", file=sys.stderr)
        return 2
    if not session.complete:
        print(f"warning: {args.file} is INCOMPLETE ({session.incomplete_reason}); "
              "the export holds what was saved so far", file=sys.stderr)
    if session.salvaged:
        print(f"warning: {args.file}: {session.salvage_text()}; the export holds only the intact segments", file=sys.stderr)
    tmp: Path | None = None
    done = False
    try:
        # create the partial file first: an unwritable or missing folder fails now, not after reading the
        # recording; its name is its own, so two exports of one OUT never write or remove each other's
        fd, tmp = create_temporary_beside(out)
        os.close(fd)
        n = func(session, tmp)  # the file opened and checked above (salvaged or not)
        tmp.replace(out)  # never leave a half-written export under the asked-for name
        done = True
    except ExportWriteError as exc:
        print(f"error: writing --{kind} {out} failed: {exc.strerror}", file=sys.stderr)
        return 2
    except OSError as exc:
        if tmp is None or (exc.filename is not None and Path(exc.filename) == tmp):  # creating or renaming the partial file
            print(f"error: writing --{kind} {out} failed: {exc.strerror}", file=sys.stderr)
        else:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        if not done and tmp is not None:  # also when reading failed in a way not caught here: no partial file is left
            _discard(tmp)
    what = {"nwb": "units", "aedat": "spikes", "csv": "rows"}[kind]
    print(f"wrote {out} ({n:,} {what})")
    return 0
