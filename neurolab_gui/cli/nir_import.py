"""``neurolab nir-import``: turn a recurrent LIF/CubaLIF NIR graph into a NeuroLab checkpoint.

The checkpoint then goes through ``neurolab convert`` like any other model (constrain, map,
calibrate).  Graphs that do not fit the chip are refused with the reason and exit code 2.
"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nir-import", help="import a recurrent LIF/CubaLIF NIR graph as a checkpoint")
    p.add_argument("nir_file", help="NIR file (HDF5, as written by nir.write)")
    p.add_argument("out", help="checkpoint to write (NeuroLab format, for `neurolab convert`)")
    p.add_argument("--task", default=None, help="task name stored in the checkpoint (so `convert` needs no --task)")
    p.add_argument(
        "--dt", type=float, default=None, help="RNN step in seconds (default: the file's metadata, else 5 ms)"
    )
    p.add_argument(
        "--r-max", type=float, default=None, help="rate of activation 1 in Hz (default: the file's, else 900)"
    )
    p.add_argument("--steps-per-sample", type=int, default=1)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.nir_io import NIRImportError, import_nir

    try:
        imported = import_nir(
            args.nir_file, dt_step_s=args.dt, r_max_hz=args.r_max, steps_per_sample=args.steps_per_sample
        )
    except (NIRImportError, FileNotFoundError) as exc:
        print(f"error: {exc}")
        return 2
    meta = {"source": f"nir:{args.nir_file}"}
    if args.task:
        meta["task"] = args.task
    try:
        path = save_checkpoint(args.out, imported.model, meta)
    except OSError as exc:
        print(f"error: could not write {args.out}: {exc}")
        return 1
    c = imported.model.config
    print(
        f"imported {c.n_hidden} units, {c.n_inputs} inputs, {c.n_outputs} outputs, retention {c.retention:.4f} -> {path}"
    )
    return 0
