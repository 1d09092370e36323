"""``neurolab record``: record a board (or the emulator) to a session file for a given time."""

from __future__ import annotations

import argparse
import sys
import time


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("record", help="record spikes, stimulus and bias changes of a board to a session file")
    p.add_argument("file", help="new session file (.h5); a .segments folder is created next to it")
    p.add_argument("--board", default="emulator", help="'emulator' (default) or the serial of a DYNAP-SE1")
    p.add_argument("--seconds", type=float, required=True, help="how long to record (wall-clock seconds; inf: until Ctrl-C, which finishes the file)")
    p.add_argument("--seed", type=int, default=0, help="emulator: mismatch seed")
    p.add_argument("--clock", choices=("realtime", "fast"), default="realtime",
                   help="emulator: real-time clock (default) or as fast as the machine simulates")
    p.add_argument("--preset", help="apply a shipped bias set to every core before recording (e.g. libcaer_low_power)")
    p.add_argument("--bias-file", help="apply a bias file (JSON/YAML, validated first) before recording")
    p.add_argument("--set", nargs=5, action="append", default=[], metavar=("CHIP", "CORE", "BIAS", "COARSE", "FINE"),
                   help="set one bias before recording (repeatable), e.g. --set 0 1 IF_DC_P 5 60")
    p.add_argument("--notes", default="", help="free text stored in the file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurolab_gui.core.session import Session
    from neurolab_gui.core.session_file import SessionFile, segments_dir

    if not args.seconds > 0:
        print(f"neurolab record: --seconds must be positive, got {args.seconds}", file=sys.stderr)
        return 2
    path = Path(args.file)
    if path.exists() or segments_dir(path).exists():
        print(f"neurolab record: {path} already exists; choose a new name", file=sys.stderr)
        return 2
    session = Session()
    if not session.connect(args.board, seed=args.seed, clock=args.clock):
        print(f"neurolab record: {session.connection.status.message}", file=sys.stderr)
        return 2
    try:
        try:
            if args.preset:
                session.biases.apply_preset(args.preset, origin="cli")
            if args.bias_file:
                session.biases.load(args.bias_file)
            for chip, core, name, coarse, fine in args.set:
                session.biases.set(int(chip), int(core), name, int(coarse), int(fine), origin="cli")
        except (KeyError, ValueError, OSError) as exc:
            print(f"neurolab record: {exc}", file=sys.stderr)
            return 2
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
