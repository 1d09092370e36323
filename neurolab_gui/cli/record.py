"""``neurolab record``: record a board (or the emulator) to a session file for a given time."""

from __future__ import annotations

import argparse
import sys
import time

from .board_option import add_board_and_seed_options, board_and_seed


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("record", help="record spikes, stimulus and bias changes of a board to a session file")
    p.add_argument("file", help="new session file (.h5); a .segments folder is created next to it")
    add_board_and_seed_options(p, what="record")
    p.add_argument("--seconds", type=float, required=True, help="how long to record (wall-clock seconds; inf: until Ctrl-C, which finishes the file)")
    p.add_argument("--clock", choices=("realtime", "fast"), default="realtime",
                   help="emulator: real-time clock (default) or as fast as the machine simulates")
    p.add_argument("--preset", help="apply a shipped bias set to every core before recording (e.g. libcaer_low_power)")
    p.add_argument("--bias-file", help="apply a bias file (JSON/YAML, validated first) before recording")
    p.add_argument("--set", nargs=5, action="append", default=[], metavar=("CHIP", "CORE", "BIAS", "COARSE", "FINE"),
                   help="set one bias before recording (repeatable), e.g. --set 0 1 IF_DC_P 5 60")
    p.add_argument("--notes", default="", help="free text stored in the file")
    p.set_defaults(func=run)


def _error(text: object) -> int:
    print(f"error: {text}", file=sys.stderr)
    return 2


def _bias_settings(values: list[list[str]]) -> list[tuple[int, int, str, int, int]]:
    """The ``--set CHIP CORE BIAS COARSE FINE`` values as numbers; ``ValueError`` naming the option."""
    out = []
    for chip, core, name, coarse, fine in values:
        try:
            out.append((int(chip), int(core), name, int(coarse), int(fine)))
        except ValueError:
            raise ValueError(f"--set {chip} {core} {name} {coarse} {fine}: CHIP, CORE, COARSE and FINE must be integers "
                             "(e.g. --set 0 1 IF_DC_P 5 60)") from None
    return out


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurolab_gui.core.bias_model import read_bias_file
    from neurolab_gui.core.session import Session
    from neurolab_gui.core.session_file import SessionFile, segments_dir

    if not args.seconds > 0:
        return _error(f"--seconds must be positive, got {args.seconds}")
    path = Path(args.file)
    if path.exists() or segments_dir(path).exists():
        return _error(f"{path} already exists; choose a new name")
    try:  # every input is read and checked before the board is opened
        board, seed = board_and_seed(args)
        settings = _bias_settings(args.set)
        bias_file = read_bias_file(args.bias_file) if args.bias_file else None
    except (ValueError, OSError) as exc:
        return _error(exc)
    session = Session()
    if not session.connect(board, seed=seed, clock=args.clock):
        return _error(f"{session.connection.status.message}")
    try:
        try:
            if args.preset:
                session.biases.apply_preset(args.preset, origin="cli")
            if bias_file is not None:
                session.biases.apply(bias_file, origin="file")
            for chip, core, name, coarse, fine in settings:
                session.biases.set(chip, core, name, coarse, fine, origin="cli")
        except (KeyError, ValueError, OSError) as exc:
            return _error(exc)
        session.start_recording(path, notes=args.notes)
        deadline = time.monotonic() + args.seconds
        try:
            while time.monotonic() < deadline:
                time.sleep(min(0.2, max(0.0, deadline - time.monotonic())))
                status = session.connection.poll_status()
                if status.state != "connected":
                    print(f"neurolab record: board {status.state}: {status.message}", file=sys.stderr)
                    break
        except KeyboardInterrupt:
            print("neurolab record: interrupted, finishing the file", file=sys.stderr)
        session.stop_recording(wait=True)
    finally:
        session.close()
    s = SessionFile(path).summary()
    print(f"recorded {s['spikes']:,} spikes, {s['input_events']:,} stimulus events, {s['bias_changes']} bias changes "
          f"in {s['duration_s']:.3f} s to {path} (dropped {s['dropped_events']:,})")
    return 0
