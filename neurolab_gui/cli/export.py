"""``neurolab export``: convert a session file to NWB, AEDAT 3.1 or CSV."""

from __future__ import annotations

import argparse
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("export", help="export a session file to NWB, AEDAT 3.1 or CSV")
    p.add_argument("file", help="session file (.h5)")
    fmt = p.add_mutually_exclusive_group(required=True)
    fmt.add_argument("--nwb", metavar="OUT", help="NWB 2 file (units with chip/core/neuron, stimulus, biases)")
    fmt.add_argument("--aedat", metavar="OUT", help="AEDAT 3.1 file of DYNAP-SE spike packets (as cAER writes them)")
    fmt.add_argument("--csv", metavar="OUT", help="CSV: time_s, board_t_us, epoch, kind, chip, core, neuron")
    p.add_argument("--force", action="store_true", help="overwrite OUT if it exists")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from neurolab_gui.core.export import export_aedat, export_csv, export_nwb

    kind, out, func = next((k, getattr(args, k), f) for k, f in (("nwb", export_nwb), ("aedat", export_aedat), ("csv", export_csv)) if getattr(args, k))
    out = Path(out)
    if out.exists() and not args.force:
        print(f"neurolab export: {out} already exists (use --force to overwrite)", file=sys.stderr)
        return 2
    tmp = out.with_name(f".{out.stem}.partial{out.suffix}")
    try:
        n = func(args.file, tmp)
    except (ValueError, OSError) as exc:
        tmp.unlink(missing_ok=True)
        print(f"neurolab export: {exc}", file=sys.stderr)
        return 2
    tmp.replace(out)  # never leave a half-written export under the asked-for name
    what = {"nwb": "units", "aedat": "spikes", "csv": "rows"}[kind]
    print(f"wrote {out} ({n:,} {what})")
    return 0
