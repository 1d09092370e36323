"""``neurolab nir-import``: turn a recurrent LIF/CubaLIF NIR graph into a NeuroLab checkpoint.

The checkpoint then goes through ``neurolab convert`` like any other model (constrain, map,
calibrate).  Graphs that do not fit the chip are refused with the reason and exit code 2.
"""

from __future__ import annotations

import argparse
import sys

from .arguments import int_at_least, output_file, positive_float


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "nir-import", help="import a recurrent LIF/CubaLIF NIR graph as a checkpoint",
        description="Import a recurrent LIF/CubaLIF NIR graph (Input -> Affine -> neurons with a recurrent loop -> "
                    "Affine -> Output) as a NeuroLab checkpoint for `neurolab convert`. The graph's inputs are spike "
                    "trains, one per rate channel of the task: where every feature of a data file takes both signs, "
                    "feature i becomes the ON/OFF channels 2i and 2i+1, so a graph for 4 signed features takes 8 "
                    "inputs (a refusal lists the channels). Unlike an imported nn.RNN, "
                    "a graph on the raw features is not split onto the channels. With --task the graph is checked "
                    "against the task (inputs, classes, size) before anything is written.")
    p.add_argument("nir_file", help="NIR file (HDF5, as written by nir.write)")
    p.add_argument("out", type=output_file, help="checkpoint to write (NeuroLab format, for `neurolab convert`)")
    p.add_argument("--task", default=None,
                   help="task stored in the checkpoint (so `convert` needs no --task): a built-in name or a data file; "
                        "the graph must take its rate channels and give its classes")
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
    from neurolab_gui.core.conversion.constrain import check_convertible
    from neurolab_gui.core.conversion.nir_io import import_nir
    from neurolab_gui.core.conversion.tasks import load_task, task_reference

    meta = {"source": f"nir:{args.nir_file}"}
    try:
        if args.task:  # checked (and a data file stored by its absolute path) before the graph is read
            meta["task"] = task_reference(args.task)
            task = load_task(args.task)
        imported = import_nir(
            args.nir_file, dt_step_s=args.dt, r_max_hz=args.r_max, steps_per_sample=args.steps_per_sample
        )
        if args.task:  # what `convert` would refuse, refused now, before the checkpoint exists
            task = _task_for_inputs(imported.model.config.n_inputs, task, args)
            check_convertible(imported.model, task, args.nir_file)
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


def _task_for_inputs(n_inputs: int, task, args: argparse.Namespace):
    """``task`` (loaded with convert's default ``--normalize encode``), or the same data file loaded with
    ``--normalize fold`` when only that gives the graph's ``n_inputs`` channels (a raw feature that never
    goes negative keeps one channel; z-scored, every feature gets two): then a note says so.

    Raises ``ValueError`` naming the NIR file, the graph's inputs and what the task provides.
    """
    from neurolab_gui.core.conversion.nir_io import task_input_problem
    from neurolab_gui.core.conversion.tasks import load_task

    problem = task_input_problem(n_inputs, task)
    if problem is None:
        return task
    if task.encoding is not None and task.encoding.mean is not None:  # the channels depend on --normalize
        folded = load_task(args.task, normalization="fold")
        if folded.n_features == n_inputs:
            print(f"note: the graph's {n_inputs} inputs are the channels of task {task.name} without z-scoring; "
                  "convert it with --normalize fold (or none)")
            return folded
        if folded.n_features != task.n_features:
            problem += f" (or {folded.n_features}, converted with --normalize fold or none)"
    raise ValueError(f"{args.nir_file}: {problem}")
