"""``neurolab info``: what a session file holds (board, times, counts, epochs, markers)."""

from __future__ import annotations

import argparse
import json
import sys

from .recording_option import add_salvage_option, open_recording


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("info", help="summarise a session file (and check that all of it reads)")
    p.add_argument("file", help="session file (.h5)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_salvage_option(p, "say what was left out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurolab_gui.core.session_file import boards_text

    session = open_recording(args.file, args.salvage)  # checks the index and that every segment holds its rows
    if session is None:
        return 2
    try:
        session.verify()  # reads every row: a recording that info calls fine exports fine
        summary = session.summary()
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary))
        return 0
    state = "complete" if summary["complete"] else f"INCOMPLETE ({summary['incomplete_reason']})"
    print(f"{summary['path']}: {state}")
    if summary["salvaged"]:
        print(f"  {summary['salvaged']['text']}")
    made_with = boards_text(summary["boards"])
    if summary["boards"]:
        made_with += f" ({'emulator' if summary['board_emulated'] else 'silicon'})"
    print(f"  {made_with}, NeuroLab {summary['software_version']}")
    print(f"  started {summary['start_time']}, stopped {summary['stop_time'] or '-'}, {summary['duration_s']:.3f} s of events")
    print(f"  {summary['spikes']:,} spikes, {summary['input_events']:,} stimulus events, {summary['bias_changes']} bias changes, "
          f"{summary['dropped_events']:,} dropped, {summary['segments']} segment files")
    for e in summary["epochs"]:
        print(f"  epoch {e['epoch']} at {e['session_offset_s']:.3f} s: {e['reason']}")
    for m in summary["markers"]:
        print(f"  {m['session_time_s']:10.3f} s  {m['kind']}: {m['text']}")
    for name, rows in summary["streams"].items():
        print(f"  stream {name}: {rows:,} rows")
    return 0
