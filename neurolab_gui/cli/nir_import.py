"""``neurolab nir-import``: turn a recurrent LIF/CubaLIF NIR graph into a NeuroLab checkpoint.

The checkpoint then goes through ``neurolab convert`` like any other model (constrain, map,
calibrate).  Graphs that do not fit the chip are refused with the reason and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .arguments import int_at_least, output_file, positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("nir-import", help="import a recurrent LIF/CubaLIF NIR graph as a checkpoint")
    p.add_argument("nir_file", help="NIR file (HDF5, as written by nir.write)")
    p.add_argument("out", type=output_file, help="checkpoint to write (NeuroLab format, for `neurolab convert`)")
    p.add_argument("--task", default=None,
                   help="task stored in the checkpoint (so `convert` needs no --task): a built-in name or a data file")
    p.add_argument(
        "--dt", type=positive_float, default=None, help="RNN step in seconds (default: the file's metadata, else 5 ms)"
    )
    p.add_argument(
        "--r-max", type=positive_float, default=None, help="rate of activation 1 in Hz (default: the file's, else 900)"
    )
    p.add_argument("--steps-per-sample", type=int_at_least(1), default=None,
                   help="RNN steps per input sample (default: the file's metadata, else 1)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint
    from neurolab_gui.core.conversion.nir_io import import_nir
    from neurolab_gui.core.conversion.tasks import task_reference

    meta = {"source": f"nir:{args.nir_file}"}
    try:
        if args.task:  # checked (and a data file stored by its absolute path) before the graph is read
            meta["task"] = task_reference(args.task)
        imported = import_nir(
            args.nir_file, dt_step_s=args.dt, r_max_hz=args.r_max, steps_per_sample=args.steps_per_sample
        )
    except (ValueError, FileNotFoundError) as exc:  # NIRImportError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        path = save_checkpoint(args.out, imported.model, meta)
    except (OSError, RuntimeError) as exc:  # torch's writer raises RuntimeError for some unwritable paths
        print(f"error: could not write {args.out}: {exc}", file=sys.stderr)
        return 1
    c = imported.model.config
    print(
        f"imported {c.n_hidden} units, {c.n_inputs} inputs, {c.n_outputs} outputs, retention {c.retention:.4f} -> {path}"
    )
    return 0
