"""NIR (Neuromorphic Intermediate Representation) export and import of the constrained network.

NIR is continuous-time and has no rate or ReLU node, so what is exported is the *spiking*
network the board runs, written as a recurrent CubaLIF graph::

    input ──> w_in (Affine) ──> lif (CubaLIF) ──> readout (Affine) ──> output
                                 │      ^
                                 └─ w_rec (Linear)

Units (the convention this module writes and reads)
    Input and hidden spike rates are ``r_max * activation`` (as on the board).  Weights stay in
    the constrained model's activation units, ``scale[group] * multiplicity`` exactly; the bias
    channel (a constant ``r_max`` spike train on the board) becomes the Affine bias
    ``r_max * w_bias``.  The CubaLIF has ``tau_syn`` = the mapped synaptic time constant,
    ``tau_mem`` = the mapped membrane time constant, ``w_in = 1 / r_max`` (so the mean synaptic
    current equals the RNN pre-activation ``u``), ``v_threshold = 1``, ``v_reset = 0``,
    ``v_leak = 0`` and ``r = r_max * tau_mem``, so that a near-integrating membrane fires at
    ``r_max * u``.  The readout Affine is the host's linear readout of the *mean activation*
    (spike rate / ``r_max``); a backend that feeds it raw spikes gets logits scaled by spikes
    per step.  Bookkeeping the board needs and NIR has no field for (dt, retention, refractory
    period, multiplicities, core groups) rides in node metadata; this module's import uses it
    when present and never needs it for a foreign graph.

Import
    :func:`import_nir` accepts a recurrent graph, nested subgraphs included (snnTorch's ``RSynaptic``
    / ``RLeaky`` export their recurrent layer as a subgraph ``{input, lif, w_rec, output}``;
    :func:`flatten_graph` inlines them), of the shape (input → Affine/Linear → CubaLIF/LIF with a
    Linear/Affine self-loop, optionally → Affine/Linear readout → output) and rebuilds a leaky
    :class:`~.models.RateRNN` through the rate approximation ``rate_out ≈ R w_in (W rate_in + b) /
    (tau_mem v_th)``; graphs that do not fit the chip raise :class:`NIRImportError` naming the
    problem (node types, fan-in over the CAM budget, units that do not fit a chip, unequal time
    constants, which the core-shared biases cannot give).  A ``nir.LIF`` has an instantaneous
    synapse (its current is the weighted spike train, ``w_in = 1``), so its one ``tau`` is both
    ``tau_mem`` in the gain and the time constant of the rate model (retention ``exp(-dt/tau)``);
    a CubaLIF's retention comes from ``tau_syn``.  Refused too, never dropped or ignored: any node
    or edge off that one path (a second readout, a layer chained after the readout), node sizes
    that contradict the weights (Input/Output shapes, per-neuron parameter counts), ``v_leak`` or
    ``v_reset`` other than 0 (the gain assumes rest and reset at 0, as on the board), weights not
    finite once scaled into the model's float32, and metadata of the wrong type or range
    (``steps_per_sample`` an integer 1..:data:`~.checkpoint.MAX_STEPS_PER_SAMPLE`, ``r_max_hz``
    and ``dt_step_s`` single finite numbers > 0).  For a file, the message starts with its path.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from drivers.dynapse1.topology import CAM_ENTRIES_PER_NEURON, N_NEURONS_PER_CORE
from drivers.user_files import UserFileError, check_regular_file, write_replacing

from .checkpoint import MAX_STEPS_PER_SAMPLE
from .constrain import ConstrainedNetwork
from .mapping import NeuronSettings, TimeMapping
from .models import RateRNN, RNNConfig

if TYPE_CHECKING:
    from .tasks import Task

#: Node names of the exported graph (import accepts any names).
INPUT, W_IN, LIF, W_REC, READOUT, OUTPUT = "input", "w_in", "lif", "w_rec", "readout", "output"
#: Hidden units one chip holds (three full cores plus core 0 above the source ids), see :mod:`.mapping`.
MAX_UNITS_PER_CHIP = 4 * N_NEURONS_PER_CORE - 32


class NIRImportError(ValueError):
    """A NIR graph that cannot become a network on the chip; the message names the problem."""


def _nir():
    import nir  # imported lazily: only this module needs it

    return nir


def export_nir(net: ConstrainedNetwork, time: TimeMapping | None = None, settings: NeuronSettings | None = None):
    """The constrained spiking network as a :class:`nir.NIRGraph` (see the module docstring).

    ``time`` and ``settings`` default to what :func:`.mapping.map_network` would use.
    """
    nir = _nir()
    cfg = net.model.config
    time = time or TimeMapping(retention=cfg.retention, steps_per_sample=cfg.steps_per_sample)
    settings = settings or NeuronSettings()
    if cfg.kind != "leaky":
        raise ValueError("only leaky RNNs have a synaptic time constant to export (got an Elman RNN)")
    f, h = net.n_inputs, net.n_hidden
    w = net.weights()  # [H, F + 1 + H], scale[group] * source gain of the column * multiplicity
    t_ref = 1.0 / (cfg.saturation * time.r_max_hz) if cfg.saturation is not None else settings.t_ref_s
    r_max = time.r_max_hz
    ones = np.ones(h)
    lif = nir.CubaLIF(
        tau_syn=time.tau_s * ones,
        tau_mem=settings.tau_mem_s * ones,
        r=r_max * settings.tau_mem_s * ones,
        v_leak=0.0 * ones,
        v_threshold=ones.copy(),
        v_reset=0.0 * ones,
        w_in=ones / r_max,
        metadata={
            "r_max_hz": float(r_max),
            "dt_step_s": float(time.dt_step_s),
            "retention": float(cfg.retention),
            "steps_per_sample": int(cfg.steps_per_sample),
            "t_ref_s": float(t_ref),
            "saturation": float(cfg.saturation) if cfg.saturation is not None else -1.0,
            "unit_group": net.unit_group.astype(np.int64),
            "scale": net.scale.astype(np.float64),
            "input_gain": float(net.input_gain),
            "bias_gain": float(net.bias_gain),
            "max_fan_in": int(net.max_fan_in),
            "n_levels": int(net.precision.n_levels),
            "integrator": cfg.integrator,
        },
    )
    w_out = net.model.readout.weight.detach().cpu().numpy().astype(np.float64)
    b_out = net.model.readout.bias.detach().cpu().numpy().astype(np.float64)
    nodes = {
        INPUT: nir.Input(input_type={"input": np.array([f])}),
        W_IN: nir.Affine(
            weight=w[:, :f].copy(),
            bias=r_max * w[:, f].copy(),
            metadata={"multiplicity": net.multiplicity[:, : f + 1].astype(np.int64)},
        ),
        LIF: lif,
        W_REC: nir.Linear(
            weight=w[:, f + 1 :].copy(), metadata={"multiplicity": net.multiplicity[:, f + 1 :].astype(np.int64)}
        ),
        READOUT: nir.Affine(
            weight=w_out,
            bias=b_out,
            metadata={"applies_to": "mean activation (rate / r_max_hz)", "readout": cfg.readout},
        ),
        OUTPUT: nir.Output(output_type={"output": np.array([w_out.shape[0]])}),
    }
    edges = [(INPUT, W_IN), (W_IN, LIF), (LIF, W_REC), (W_REC, LIF), (LIF, READOUT), (READOUT, OUTPUT)]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=True)


def write_nir(
    net: ConstrainedNetwork, path: str | Path, time: TimeMapping | None = None, settings: NeuronSettings | None = None
) -> Path:
    """Export ``net`` and write it to ``path`` as a NIR (HDF5) file, read back and checked first.

    HDF5 writes into memory (``nir.write`` takes a file object) and the finished bytes reach the
    disk through :func:`drivers.user_files.write_replacing`: a temporary file of its own beside
    ``path`` (created exclusively, so two exports of one path, or a user's ``<path>.part``, are
    never touched), flushed and renamed into place.  HDF5 thus never writes to the disk: with its
    own driver a failed write (disk full, ``ulimit -f``) left ids it could not close and h5py
    crashed (SIGSEGV) in ``close`` or at interpreter exit.  The file is about the size of the
    network's weights, which are in memory anyway.

    Raises
    ------
    OSError
        Writing or renaming failed (e.g. ``strerror`` "No space left on device"); nothing is
        left beside ``path`` and a file already at ``path`` is untouched.
    ValueError
        The network cannot be exported (see :func:`export_nir`).
    """
    nir = _nir()
    graph = export_nir(net, time, settings)
    buffer = io.BytesIO()
    nir.write(buffer, graph)
    data = buffer.getvalue()
    nir.read(io.BytesIO(data))  # the format's own reader and type check, before anything is written
    return write_replacing(path, data)


@dataclass
class ImportedNetwork:
    """A NIR graph as the project's model: a leaky RateRNN plus the time mapping it implies."""

    model: RateRNN
    time: TimeMapping
    #: Present only for graphs this module exported: the exact constrained network.
    constrained: ConstrainedNetwork | None = None


def _describe(value) -> str:
    """A short repr of a file's value for an error message (a hostile array may be huge)."""
    text = repr(value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value)  # "2.7", not "np.float64(2.7)"
    return text if len(text) <= 60 else text[:57] + "..."


def _values(node, name: str, field: str, n: int, default: float | None = None) -> np.ndarray:
    """Per-neuron parameter ``field`` of neuron node ``name`` as ``n`` finite float64 values.

    A scalar (one value) stands for all ``n`` neurons; any other count contradicts the ``n`` rows
    of the weights that feed the node.  A missing field is ``default``, or refused when None.
    """
    value = getattr(node, field, None)
    if value is None:
        if default is None:
            raise NIRImportError(f"neuron node {name!r} has no {field}")
        return np.full(n, default)
    try:
        arr = np.asarray(value, dtype=np.float64).ravel()
    except (TypeError, ValueError):
        raise NIRImportError(f"neuron node {name!r}: {field} is not numeric ({_describe(value)})") from None
    if arr.size not in (1, n):
        raise NIRImportError(
            f"neuron node {name!r}: {field} has {arr.size} values but the weights that feed it have {n} rows (neurons)"
        )
    if not np.all(np.isfinite(arr)):
        raise NIRImportError(f"neuron node {name!r}: {field} is not finite")
    return np.broadcast_to(arr, (n,))


def _uniform(node, name: str, field: str, n: int, default: float | None = None) -> float:
    """The one value of per-neuron parameter ``field`` (see :func:`_values`), which must not vary."""
    arr = _values(node, name, field, n, default)
    if np.ptp(arr) > 1e-6 * max(1.0, float(np.abs(arr).max())):
        raise NIRImportError(
            f"neuron node {name!r}: {field} differs between neurons ({arr.min():.4g}..{arr.max():.4g}); DYNAP-SE1 shares it across a core's 256 neurons"
        )
    return float(arr[0])


def _meta_number(meta: dict, owner: str, field: str, default: float, *, integer: bool = False, positive: bool = False,
                 maximum: float | None = None) -> float:
    """Scalar metadata ``field`` of node ``owner`` (``default`` when absent), refused unless it is one finite number.

    ``integer``: an integral value (``3`` or ``3.0``, not ``2.7``); ``positive``: > 0;
    ``maximum``: at most this.
    """
    value = meta.get(field)
    if value is None:
        return default
    arr = np.asarray(value)
    if arr.ndim != 0 or arr.dtype.kind not in "iuf":  # strings, bytes, booleans, arrays
        raise NIRImportError(f"node {owner!r}: metadata {field} must be a single number, got {_describe(value)}")
    number = float(arr)
    kind = "an integer" if integer else "a finite number"
    if not math.isfinite(number) or (integer and not number.is_integer()):
        raise NIRImportError(f"node {owner!r}: metadata {field} must be {kind}, got {_describe(value)}")
    if positive and number <= 0:
        raise NIRImportError(f"node {owner!r}: metadata {field} must be {kind} > 0, got {_describe(value)}")
    if maximum is not None and number > maximum:
        raise NIRImportError(f"node {owner!r}: metadata {field} must be {kind} of at most {maximum:g}, got {_describe(value)}")
    return int(number) if integer else number


def _meta_choice(meta: dict, owner: str, field: str, default: str, choices: tuple[str, ...]) -> str:
    """String metadata ``field`` of node ``owner`` (``default`` when absent), refused unless it is one of ``choices``."""
    value = meta.get(field)
    if value is None:
        return default
    text = value.decode(errors="replace") if isinstance(value, bytes) else value
    if not isinstance(text, str) or text not in choices:
        raise NIRImportError(f"node {owner!r}: metadata {field} must be one of {', '.join(choices)}, got {_describe(value)}")
    return text


def _declared_size(node, name: str) -> int:
    """Number of values an Input or Output node declares (the product of its shape)."""
    types = node.input_type if isinstance(node, _nir().Input) else node.output_type
    try:
        (shape,) = dict(types).values()
        dims = np.asarray(shape, dtype=np.float64).ravel()
        if not (np.all(np.isfinite(dims)) and np.all(dims >= 0) and np.all(dims == np.round(dims))):
            raise ValueError
    except (TypeError, ValueError):
        raise NIRImportError(f"node {name!r} declares no readable shape ({_describe(types)})") from None
    return int(np.prod(dims))


#: Subgraph nesting levels :func:`flatten_graph` follows (a hostile file may nest without end).
MAX_NESTING = 8


def flatten_graph(graph) -> tuple[dict, list[tuple[str, str]]]:
    """Nodes and edges of ``graph`` with every nested ``NIRGraph`` node inlined.

    A subgraph ``S``'s nodes become ``S.<name>``; an edge into ``S`` (or into ``S.<its Input>``)
    goes to what its Input feeds, an edge out of ``S`` (or ``S.<its Output>``) leaves from what
    feeds its Output; the subgraph's own Input/Output nodes disappear.  Edges naming a node the
    graph does not have raise :class:`NIRImportError`.
    """
    nir = _nir()
    inner_io: list[str] = []  # Input/Output nodes of subgraphs (bypassed at the end)

    def inline(g, prefix: str, depth: int) -> tuple[dict, list[tuple[str, str]], list[str], list[str]]:
        """Flattened nodes and edges of ``g``, and the names of its own Input and Output nodes."""
        if depth > MAX_NESTING:
            raise NIRImportError(f"subgraphs nested deeper than {MAX_NESTING} levels at {prefix.rstrip('.')!r}")
        nodes: dict = {}
        edges: list[tuple[str, str]] = []
        ends: dict[str, tuple[list[str], list[str]]] = {}  # subgraph -> (its Input nodes, its Output nodes)
        ins, outs = [], []
        for name, node in dict(g.nodes).items():
            full = prefix + str(name)
            if isinstance(node, nir.NIRGraph):
                sub_nodes, sub_edges, sub_ins, sub_outs = inline(node, full + ".", depth + 1)
                nodes.update(sub_nodes)
                edges += sub_edges
                ends[full] = (sub_ins, sub_outs)
                inner_io.extend(sub_ins + sub_outs)
            else:
                nodes[full] = node
                if isinstance(node, nir.Input):
                    ins.append(full)
                elif isinstance(node, nir.Output):
                    outs.append(full)

        def resolve(end: str, side: int) -> list[str]:
            full = prefix + str(end)
            if full in ends:
                return ends[full][side]
            if full not in nodes:
                raise NIRImportError(f"edge {src!r} -> {dst!r} names a node {end!r} the graph does not have")
            return [full]

        for src, dst in (tuple(e) for e in g.edges):
            edges += [(a, b) for a in resolve(src, 1) for b in resolve(dst, 0)]
        return nodes, edges, ins, outs

    nodes, edges, _, _ = inline(graph, "", 0)
    for n in inner_io:  # a subgraph's Input/Output only passes spikes on: connect around it
        preds = [a for a, b in edges if b == n]
        succs = [b for a, b in edges if a == n]
        edges = [e for e in edges if n not in e] + [(a, b) for a in preds for b in succs]
        del nodes[n]
    return nodes, list(dict.fromkeys(edges))


def import_nir(
    graph_or_path,
    dt_step_s: float | None = None,
    r_max_hz: float | None = None,
    steps_per_sample: int | None = None,
    max_fan_in: int = CAM_ENTRIES_PER_NEURON,
) -> ImportedNetwork:
    """Read a recurrent LIF/CubaLIF NIR graph (or a file) into a leaky :class:`RateRNN`.

    The graph must be exactly ``Input -> Affine/Linear -> LIF/CubaLIF (with one Affine/Linear
    self-loop) -> [one Affine/Linear readout ->] Output``; any other node or edge (a second
    readout, a chained layer), node sizes that contradict each other, ``v_leak`` or ``v_reset``
    other than 0, weights that are not finite once scaled into the model's float32, and metadata
    of the wrong type or range are refused.  A ``nir.LIF`` has no synaptic filter (its input
    current is the weighted spike train), so its ``w_in`` is 1 and its one time constant ``tau``
    is both the membrane's in the rate gain and the leak the rate model keeps (retention
    ``exp(-dt / tau)``); a ``CubaLIF``'s retention comes from ``tau_syn``.

    Parameters
    ----------
    graph_or_path : a ``nir.NIRGraph`` or a path for ``nir.read``
    dt_step_s, r_max_hz : RNN step and activation-1 rate (finite, > 0); None: this module's metadata
        when present, else :class:`TimeMapping`'s
    steps_per_sample : RNN steps per input sample (1 ..
        :data:`~.checkpoint.MAX_STEPS_PER_SAMPLE`); None: the graph's metadata, else 1
    max_fan_in : CAM entries a neuron holds; a unit with more non-zero inputs is refused

    Raises
    ------
    NIRImportError
        naming the problem; for a path, the message starts with ``"<path>: "``
    """
    nir = _nir()
    for name, value in (("dt_step_s", dt_step_s), ("r_max_hz", r_max_hz)):  # 0 is refused, not read as "default"
        if value is not None and not (math.isfinite(value) and value > 0):
            raise NIRImportError(f"{name} must be a finite number > 0, got {value}")
    if steps_per_sample is not None and not (
        isinstance(steps_per_sample, int) and 1 <= steps_per_sample <= MAX_STEPS_PER_SAMPLE
    ):
        raise NIRImportError(f"steps_per_sample must be an integer from 1 to {MAX_STEPS_PER_SAMPLE}, got {steps_per_sample}")
    if not isinstance(graph_or_path, (str, Path)):
        return _import_graph(graph_or_path, dt_step_s, r_max_hz, steps_per_sample, max_fan_in)
    try:  # before h5py opens it: a FIFO would block for ever
        check_regular_file(graph_or_path, "a NIR file")
    except (UserFileError, FileNotFoundError) as exc:
        raise NIRImportError(str(exc)) from None  # the message names the path already
    try:
        graph = nir.read(graph_or_path, type_check=False)
    except Exception as exc:  # noqa: BLE001 - nir.read of a foreign HDF5 file also raises AssertionError, TypeError, ...
        raise NIRImportError(f"{graph_or_path}: not a readable NIR file ({type(exc).__name__}: {exc})") from None
    try:
        return _import_graph(graph, dt_step_s, r_max_hz, steps_per_sample, max_fan_in)
    except NIRImportError as exc:
        raise NIRImportError(f"{graph_or_path}: {exc}") from None


def _import_graph(graph, dt_step_s, r_max_hz, steps_per_sample, max_fan_in) -> ImportedNetwork:
    """:func:`import_nir` of a graph, the arguments already checked."""
    nir = _nir()
    nodes, edges = flatten_graph(graph)
    supported = (nir.Input, nir.Output, nir.Affine, nir.Linear, nir.CubaLIF, nir.LIF)
    for name, node in nodes.items():
        if not isinstance(node, supported):
            raise NIRImportError(
                f"node {name!r} is a {type(node).__name__}; importable graphs hold only Input, Output, Affine, Linear, CubaLIF and LIF"
            )
    neurons = [n for n, node in nodes.items() if isinstance(node, (nir.CubaLIF, nir.LIF))]
    if len(neurons) != 1:
        raise NIRImportError(
            f"expected one recurrent neuron population (CubaLIF or LIF), found {len(neurons)}: {neurons}"
        )
    lif_name = neurons[0]
    lif = nodes[lif_name]
    preds = {d: [s for s, d2 in edges if d2 == d] for d in nodes}
    succs = {s: [d for s2, d in edges if s2 == s] for s in nodes}
    weights = (nir.Affine, nir.Linear)

    def weight_of(name: str) -> tuple[np.ndarray, np.ndarray]:
        node = nodes[name]
        try:
            w = np.asarray(node.weight, dtype=np.float64)
            b = np.asarray(node.bias, dtype=np.float64) if isinstance(node, nir.Affine) else np.zeros(w.shape[:1])
        except (TypeError, ValueError):
            raise NIRImportError(f"node {name!r}: weight or bias is not numeric") from None
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise NIRImportError(
                f"node {name!r}: weight must be 2-D with one bias per row, got {w.shape} and {b.shape}"
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise NIRImportError(f"node {name!r} has NaN or infinite weights")
        return w, b

    # The one supported structure; every node and edge of the graph must be part of it.
    rec = [p for p in preds[lif_name] if isinstance(nodes[p], weights) and preds[p] == [lif_name]]
    feed = [p for p in preds[lif_name] if p not in rec]
    if len(rec) != 1:
        raise NIRImportError(
            f"neuron node {lif_name!r} needs exactly one recurrent Linear/Affine edge back from itself, found {len(rec)}"
        )
    if len(feed) != 1 or not isinstance(nodes[feed[0]], weights):
        raise NIRImportError(
            f"neuron node {lif_name!r} needs exactly one feed-forward Affine/Linear input, found {feed}"
        )
    rec_name, feed_name = rec[0], feed[0]
    sources = preds[feed_name]
    if len(sources) != 1 or not isinstance(nodes[sources[0]], nir.Input):
        raise NIRImportError(f"input weights {feed_name!r} must be fed by exactly one Input node, found {sources}")
    in_name = sources[0]
    readers = [s for s in succs[lif_name] if s != rec_name]
    if len(readers) != 1 or not isinstance(nodes[readers[0]], (*weights, nir.Output)):
        raise NIRImportError(
            f"neuron node {lif_name!r} must feed exactly one readout (an Affine/Linear to an Output, or an Output), "
            f"found {readers}; extra readouts are not supported"
        )
    readout = readers[0] if isinstance(nodes[readers[0]], weights) else None
    if readout is None:
        out_name = readers[0]
    else:
        after = succs[readout]
        if len(after) != 1 or not isinstance(nodes[after[0]], nir.Output):
            raise NIRImportError(
                f"readout {readout!r} must feed exactly one Output node, found {after}; "
                "layers chained after the readout are not supported"
            )
        out_name = after[0]
    path = [in_name, feed_name, lif_name, rec_name] + ([readout] if readout else []) + [out_name]
    expected = {(in_name, feed_name), (feed_name, lif_name), (lif_name, rec_name), (rec_name, lif_name)}
    expected |= {(lif_name, readout), (readout, out_name)} if readout else {(lif_name, out_name)}
    extra_nodes = sorted(set(nodes) - set(path))
    extra_edges = sorted(set(edges) - expected)
    if extra_nodes or extra_edges:
        what = f"node {extra_nodes[0]!r}" if extra_nodes else f"edge {extra_edges[0][0]!r} -> {extra_edges[0][1]!r}"
        raise NIRImportError(
            f"{what} is not on the one supported path (input -> weights -> neurons with a recurrent loop -> "
            "readout -> output); extra paths and layers are not supported"
        )

    w_in, b_in = weight_of(feed_name)
    w_rec, b_rec = weight_of(rec_name)
    h, f = w_in.shape
    if w_rec.shape != (h, h):
        raise NIRImportError(f"recurrent weights {rec_name!r} are {w_rec.shape}, expected ({h}, {h}) for {h} neurons")
    declared = _declared_size(nodes[in_name], in_name)
    if declared != f:
        raise NIRImportError(f"Input node {in_name!r} declares {declared} values but {feed_name!r} takes {f} inputs")
    if h > MAX_UNITS_PER_CHIP:
        raise NIRImportError(f"{h} neurons do not fit one DYNAP-SE1 chip (at most {MAX_UNITS_PER_CHIP} units)")
    if f + 2 > N_NEURONS_PER_CORE:
        raise NIRImportError(f"{f} inputs do not fit the spike generator's {N_NEURONS_PER_CORE - 1} usable source ids")
    w_out, b_out = weight_of(readout) if readout else (np.eye(h), np.zeros(h))
    if w_out.shape[1] != h:
        raise NIRImportError(f"readout {readout!r} takes {w_out.shape[1]} inputs, the neuron node has {h}")
    declared = _declared_size(nodes[out_name], out_name)
    if declared != w_out.shape[0]:
        feeder = repr(readout) if readout else f"neuron node {lif_name!r}"
        raise NIRImportError(f"Output node {out_name!r} declares {declared} values but {feeder} gives {w_out.shape[0]}")
    bias = b_in + b_rec
    fan_in = (w_in != 0).sum(1) + (bias != 0) + (w_rec != 0).sum(1)
    if fan_in.max() > max_fan_in:
        worst = int(np.argmax(fan_in))
        raise NIRImportError(
            f"neuron {worst} has {int(fan_in[worst])} non-zero inputs; a DYNAP-SE1 neuron holds {max_fan_in} CAM entries "
            f"(prune the graph to at most {max_fan_in} non-zero inputs per neuron, bias included)"
        )

    meta = getattr(lif, "metadata", None) or {}
    r_max = r_max_hz if r_max_hz is not None else _meta_number(meta, lif_name, "r_max_hz", TimeMapping.r_max_hz, positive=True)
    dt = dt_step_s if dt_step_s is not None else _meta_number(meta, lif_name, "dt_step_s", TimeMapping.dt_step_s, positive=True)
    if steps_per_sample is None:
        steps_per_sample = _meta_number(meta, lif_name, "steps_per_sample", 1, integer=True, positive=True,
                                        maximum=MAX_STEPS_PER_SAMPLE)
    is_lif = isinstance(lif, nir.LIF)
    tau_mem = _uniform(lif, lif_name, "tau" if is_lif else "tau_mem", h)
    r = _uniform(lif, lif_name, "r", h, 1.0)
    v_th = _uniform(lif, lif_name, "v_threshold", h)
    w_syn = 1.0 if is_lif else _uniform(lif, lif_name, "w_in", h, 1.0)  # a LIF's input current is the spikes
    if tau_mem <= 0 or v_th <= 0 or r <= 0 or w_syn <= 0:
        raise NIRImportError(
            f"neuron node {lif_name!r}: {'tau' if is_lif else 'tau_mem'}, r, v_threshold and w_in must be positive, "
            f"got {tau_mem}, {r}, {v_th} and {w_syn}"
        )
    for field in ("v_leak", "v_reset"):  # the rate gain below holds for a neuron that rests and resets at 0
        values = _values(lif, lif_name, field, h, 0.0)
        if np.any(np.abs(values) > 1e-9 * v_th):
            raise NIRImportError(
                f"neuron node {lif_name!r} has {field} = {values[np.abs(values) > 1e-9 * v_th][0]:g}; the "
                "importer supports only neurons that rest and reset at 0 (v_leak = v_reset = 0), as the board's do"
            )
    tau = _uniform(lif, lif_name, "tau_syn", h) if not is_lif else tau_mem
    if tau <= 0:
        raise NIRImportError(f"neuron node {lif_name!r}: the synaptic time constant must be positive, got {tau}")
    with np.errstate(over="ignore", under="ignore"):
        gain = r * w_syn / (tau_mem * v_th)  # rate_out = gain * (W rate_in + b) for an integrating membrane
    if not (math.isfinite(gain) and gain > 0):
        raise NIRImportError(
            f"neuron node {lif_name!r}: the rate gain r * w_in / (tau * v_threshold) = {gain:g} is not a finite number > 0"
        )
    readout_meta = (getattr(nodes[readout], "metadata", None) or {}) if readout else {}
    sat = _meta_number(meta, lif_name, "saturation", -1.0)  # <= 0: none (our export writes -1)
    retention = math.exp(-dt / tau)
    if not 0.0 < retention < 1.0:  # exp underflows to 0 or rounds to 1 for extreme dt / tau
        raise NIRImportError(
            f"neuron node {lif_name!r}: its time constant {tau:g} s gives retention exp(-dt/tau) = {retention} at "
            f"dt {dt:g} s; it must lie strictly between 0 and 1"
        )
    cfg = RNNConfig(
        n_inputs=f,
        n_hidden=h,
        n_outputs=w_out.shape[0],
        kind="leaky",
        retention=retention,
        steps_per_sample=int(steps_per_sample),
        readout=_meta_choice(readout_meta, str(readout), "readout", "mean", ("mean", "last")),
        saturation=sat if sat > 0 else None,
        # Heun tracks the continuous-time spiking system best
        integrator=_meta_choice(meta, lif_name, "integrator", "heun", ("euler", "heun")),
    )
    model = RateRNN(cfg)
    with np.errstate(over="ignore", under="ignore"):
        gained = f", times the neuron gain {gain:.4g},"
        scaled = {  # parameter: (where its values come from, how they were scaled, the values in the model's units)
            "w_in": (f"node {feed_name!r}", gained, gain * w_in),
            "w_rec": (f"node {rec_name!r}", gained, gain * w_rec),
            "w_bias": (f"the biases of {feed_name!r} and {rec_name!r}", gained, gain * bias / r_max),
            "readout.weight": (f"readout {readout!r}", "", w_out),
            "readout.bias": (f"readout {readout!r}", "", b_out),
        }
    params = dict(model.named_parameters())
    with torch.no_grad():
        for key, (source, how, values) in scaled.items():
            t = torch.as_tensor(values, dtype=params[key].dtype)  # float32: 1e300 is finite in float64 only
            if not bool(torch.isfinite(t).all()):
                raise NIRImportError(
                    f"{source}: the weights{how} are not finite in the model's {str(t.dtype).removeprefix('torch.')} "
                    f"(largest |value| {float(np.abs(values).max()):.4g})"
                )
            params[key].copy_(t)
    time = TimeMapping(dt_step_s=dt, steps_per_sample=cfg.steps_per_sample, retention=cfg.retention, r_max_hz=r_max)
    constrained = _constrained_from_metadata(model, nodes, feed_name, rec_name, lif_name)
    return ImportedNetwork(model, time, constrained)


def _meta_array(meta: dict, owner: str, field: str, dtype) -> np.ndarray:
    """Array metadata ``field`` of node ``owner`` as ``dtype``, refused by name when it is not numeric."""
    value = meta[field]
    arr = np.asarray(value)
    if arr.dtype.kind not in "iuf" or not np.all(np.isfinite(arr)):
        raise NIRImportError(f"node {owner!r}: metadata {field} must be finite numbers, got {_describe(value)}")
    if np.dtype(dtype).kind == "i" and not np.all(arr == np.round(arr)):
        raise NIRImportError(f"node {owner!r}: metadata {field} must be integers, got {_describe(value)}")
    return arr.astype(dtype)


def _constrained_from_metadata(model: RateRNN, nodes: dict, feed_name: str, rec_name: str,
                               lif_name: str) -> ConstrainedNetwork | None:
    """The exact constrained network when the graph carries this module's multiplicities and scales."""
    from .constrain import WeightPrecision, copy_weight_matrix

    in_meta, rec_meta, meta = (getattr(nodes[n], "metadata", None) or {} for n in (feed_name, rec_name, lif_name))
    if "multiplicity" not in in_meta or "multiplicity" not in rec_meta or "scale" not in meta or "unit_group" not in meta:
        return None
    m_in, m_rec = _meta_array(in_meta, feed_name, "multiplicity", np.int64), _meta_array(rec_meta, rec_name, "multiplicity", np.int64)
    groups = _meta_array(meta, lif_name, "unit_group", np.int64)
    scale = _meta_array(meta, lif_name, "scale", np.float64)
    h, f = model.config.n_hidden, model.config.n_inputs
    if (m_in.shape != (h, f + 1) or m_rec.shape != (h, h) or groups.shape != (h,) or scale.ndim != 1
            or groups.min() < 0 or groups.max() >= len(scale)):
        raise NIRImportError("the graph's multiplicity metadata does not match its weights' shapes")
    m = np.concatenate([m_in, m_rec], axis=1)
    input_gain, bias_gain = _meta_number(meta, lif_name, "input_gain", 1.0), _meta_number(meta, lif_name, "bias_gain", 1.0)
    w = copy_weight_matrix(scale, groups, f, input_gain, bias_gain) * m
    ours = torch.cat([model.w_in, model.w_bias[:, None], model.w_rec], dim=1).detach().cpu().numpy()
    if not np.allclose(w, ours, rtol=1e-6, atol=1e-9):
        raise NIRImportError(
            "the graph's weights differ from scale x multiplicity in its own metadata (edited after export?)"
        )
    n_levels = _meta_number(meta, lif_name, "n_levels", 16, integer=True, positive=True)
    max_fan_in = _meta_number(meta, lif_name, "max_fan_in", CAM_ENTRIES_PER_NEURON, integer=True, positive=True)
    try:
        precision = WeightPrecision(n_levels=n_levels)
    except ValueError as exc:
        raise NIRImportError(f"the graph's metadata: {exc}") from None
    return ConstrainedNetwork(model, m, groups, scale, precision, max_fan_in, input_gain, bias_gain)


def task_channels_text(task: Task) -> str:
    """What ``task`` gives a network as input, for a message: its rate channels and, for a data file of
    raw features, which feature each channel carries."""
    enc = task.encoding
    if enc is None:
        return f"task {task.name} provides {task.n_features} rate channels"
    signed = bool(np.any(enc.channels[:, 1] < 0))
    if enc.n_channels == 2 * enc.n_raw:
        layout = "feature i -> channels 2i (ON), 2i+1 (OFF)"
    elif enc.n_channels == enc.n_raw:
        layout = "feature i -> channel i"
    else:  # some features never go negative and keep one channel
        names = enc.summary()["channel_names"]
        shown = " ".join(names[:16]) + (" ..." if len(names) > 16 else "")
        layout = f"in order {shown}; k+ is ON, k- is OFF of feature k"
    return (f"task {task.name} provides {enc.n_raw} raw {'signed ' if signed else ''}features, which NeuroLab feeds "
            f"as {enc.n_channels} {'ON/OFF ' if signed else ''}rate channels ({layout})")


def task_input_problem(n_inputs: int, task: Task) -> str | None:
    """Why an imported NIR graph with ``n_inputs`` inputs cannot run on ``task``, or None.

    A NIR graph's inputs are spike trains, so they are the task's rate channels (ON/OFF pairs for
    signed features), never raw features: unlike an imported ``nn.RNN``, whose inputs are values and
    whose input weights the pipeline splits to ``[s W, -s W]``, a spiking graph has no negative input
    to split, and the split's scale ``s`` is fitted from the data only at conversion.
    """
    if n_inputs == task.n_features:
        return None
    return (f"the graph takes {n_inputs} inputs; {task_channels_text(task)}; a NIR graph's inputs are spike trains, "
            f"one per rate channel: build the graph's first Affine with {task.n_features} inputs")
