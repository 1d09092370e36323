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
    constants, which the core-shared biases cannot give).
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from drivers.dynapse1.topology import CAM_ENTRIES_PER_NEURON, N_NEURONS_PER_CORE
from drivers.user_files import UserFileError, check_regular_file, write_replacing

from .constrain import ConstrainedNetwork
from .mapping import NeuronSettings, TimeMapping
from .models import RateRNN, RNNConfig

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


def _uniform(node, field: str, default: float | None = None) -> float:
    value = getattr(node, field, None)
    if value is None:
        if default is None:
            raise NIRImportError(f"the neuron node has no {field}")
        return default
    arr = np.asarray(value, dtype=np.float64).ravel()
    if arr.size == 0 or not np.all(np.isfinite(arr)):
        raise NIRImportError(f"{field} of the neuron node is empty or not finite")
    if np.ptp(arr) > 1e-6 * max(1.0, float(np.abs(arr).max())):
        raise NIRImportError(
            f"{field} differs between neurons ({arr.min():.4g}..{arr.max():.4g}); DYNAP-SE1 shares it across a core's 256 neurons"
        )
    return float(arr[0])


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

    Parameters
    ----------
    graph_or_path : a ``nir.NIRGraph`` or a path for ``nir.read``
    dt_step_s, r_max_hz : RNN step and activation-1 rate (finite, > 0); None: this module's metadata
        when present, else :class:`TimeMapping`'s
    steps_per_sample : RNN steps per input sample (>= 1); None: the graph's metadata, else 1
    max_fan_in : CAM entries a neuron holds; a unit with more non-zero inputs is refused
    """
    nir = _nir()
    for name, value in (("dt_step_s", dt_step_s), ("r_max_hz", r_max_hz)):  # 0 is refused, not read as "default"
        if value is not None and not (math.isfinite(value) and value > 0):
            raise NIRImportError(f"{name} must be a finite number > 0, got {value}")
    if steps_per_sample is not None and not (isinstance(steps_per_sample, int) and steps_per_sample >= 1):
        raise NIRImportError(f"steps_per_sample must be an integer >= 1, got {steps_per_sample}")
    if isinstance(graph_or_path, (str, Path)):
        try:  # before h5py opens it: a FIFO would block for ever
            check_regular_file(graph_or_path, "a NIR file")
        except (UserFileError, FileNotFoundError) as exc:
            raise NIRImportError(str(exc)) from None
        try:
            graph = nir.read(graph_or_path, type_check=False)
        except (OSError, KeyError, ValueError) as exc:
            raise NIRImportError(f"{graph_or_path}: not a readable NIR file ({exc})") from exc
    else:
        graph = graph_or_path
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

    def weight_of(name: str) -> tuple[np.ndarray, np.ndarray]:
        node = nodes[name]
        w = np.asarray(node.weight, dtype=np.float64)
        b = np.asarray(node.bias, dtype=np.float64) if isinstance(node, nir.Affine) else np.zeros(w.shape[0])
        if w.ndim != 2 or b.shape != (w.shape[0],):
            raise NIRImportError(
                f"node {name!r}: weight must be 2-D with one bias per row, got {w.shape} and {b.shape}"
            )
        if not (np.all(np.isfinite(w)) and np.all(np.isfinite(b))):
            raise NIRImportError(f"node {name!r} has NaN or infinite weights")
        return w, b

    rec = [p for p in preds[lif_name] if isinstance(nodes[p], (nir.Affine, nir.Linear)) and preds[p] == [lif_name]]
    feed = [p for p in preds[lif_name] if p not in rec]
    if len(rec) != 1:
        raise NIRImportError(
            f"neuron node {lif_name!r} needs exactly one recurrent Linear/Affine edge back from itself, found {len(rec)}"
        )
    if len(feed) != 1 or not isinstance(nodes[feed[0]], (nir.Affine, nir.Linear)):
        raise NIRImportError(
            f"neuron node {lif_name!r} needs exactly one feed-forward Affine/Linear input, found {feed}"
        )
    if not any(isinstance(nodes[p], nir.Input) for p in preds[feed[0]]):
        raise NIRImportError(f"input weights {feed[0]!r} are not fed by an Input node")
    w_in, b_in = weight_of(feed[0])
    w_rec, b_rec = weight_of(rec[0])
    h, f = w_in.shape
    if w_rec.shape != (h, h):
        raise NIRImportError(f"recurrent weights {rec[0]!r} are {w_rec.shape}, expected ({h}, {h}) for {h} neurons")
    if h > MAX_UNITS_PER_CHIP:
        raise NIRImportError(f"{h} neurons do not fit one DYNAP-SE1 chip (at most {MAX_UNITS_PER_CHIP} units)")
    if f + 2 > N_NEURONS_PER_CORE:
        raise NIRImportError(f"{f} inputs do not fit the spike generator's {N_NEURONS_PER_CORE - 1} usable source ids")
    bias = b_in + b_rec
    fan_in = (w_in != 0).sum(1) + (bias != 0) + (w_rec != 0).sum(1)
    if fan_in.max() > max_fan_in:
        worst = int(np.argmax(fan_in))
        raise NIRImportError(
            f"neuron {worst} has {int(fan_in[worst])} non-zero inputs; a DYNAP-SE1 neuron holds {max_fan_in} CAM entries "
            f"(prune the graph to at most {max_fan_in} non-zero inputs per neuron, bias included)"
        )

    meta = getattr(lif, "metadata", {}) or {}
    r_max = float(r_max_hz if r_max_hz is not None else meta.get("r_max_hz", TimeMapping.r_max_hz))
    dt = float(dt_step_s if dt_step_s is not None else meta.get("dt_step_s", TimeMapping.dt_step_s))
    if not (math.isfinite(r_max) and r_max > 0 and math.isfinite(dt) and dt > 0):  # the file's own values
        raise NIRImportError(f"r_max_hz and dt_step_s must be finite and positive, got {r_max} and {dt}")
    if steps_per_sample is None:
        steps_per_sample = int(meta.get("steps_per_sample", 1))
        if steps_per_sample < 1:
            raise NIRImportError(f"the graph's steps_per_sample must be >= 1, got {steps_per_sample}")
    tau_mem = _uniform(lif, "tau_mem")
    r = _uniform(lif, "r", 1.0)
    v_th = _uniform(lif, "v_threshold")
    w_syn = _uniform(lif, "w_in", 1.0)
    if tau_mem <= 0 or v_th <= 0 or r <= 0:
        raise NIRImportError(f"tau_mem, r and v_threshold must be positive, got {tau_mem}, {r}, {v_th}")
    tau = _uniform(lif, "tau_syn") if isinstance(lif, nir.CubaLIF) else tau_mem
    if tau <= 0:
        raise NIRImportError(f"the synaptic time constant must be positive, got {tau}")
    gain = r * w_syn / (tau_mem * v_th)  # rate_out = gain * (W rate_in + b) for an integrating membrane

    readers = [s for s in succs[lif_name] if s != rec[0]]
    readout = next((s for s in readers if isinstance(nodes[s], (nir.Affine, nir.Linear))), None)
    w_out, b_out = weight_of(readout) if readout else (np.eye(h), np.zeros(h))
    if w_out.shape[1] != h:
        raise NIRImportError(f"readout {readout!r} takes {w_out.shape[1]} inputs, the neuron node has {h}")
    rmeta = getattr(nodes[readout], "metadata", {}) if readout else {}
    readout_mode = rmeta.get("readout", "mean")
    readout_mode = readout_mode.decode() if isinstance(readout_mode, bytes) else str(readout_mode)
    sat = float(meta.get("saturation", -1.0))
    integrator = meta.get("integrator", "heun")  # Heun tracks the continuous-time spiking system best
    integrator = integrator.decode() if isinstance(integrator, bytes) else str(integrator)
    cfg = RNNConfig(
        n_inputs=f,
        n_hidden=h,
        n_outputs=w_out.shape[0],
        kind="leaky",
        retention=math.exp(-dt / tau),
        steps_per_sample=steps_per_sample,
        readout=readout_mode if readout_mode in ("mean", "last") else "mean",
        saturation=sat if sat > 0 else None,
        integrator=integrator if integrator in ("euler", "heun") else "heun",
    )
    model = RateRNN(cfg)
    with torch.no_grad():
        model.w_in.copy_(torch.as_tensor(gain * w_in, dtype=model.w_in.dtype))
        model.w_rec.copy_(torch.as_tensor(gain * w_rec, dtype=model.w_rec.dtype))
        model.w_bias.copy_(torch.as_tensor(gain * bias / r_max, dtype=model.w_bias.dtype))
        model.readout.weight.copy_(torch.as_tensor(w_out, dtype=model.readout.weight.dtype))
        model.readout.bias.copy_(torch.as_tensor(b_out, dtype=model.readout.bias.dtype))
    time = TimeMapping(dt_step_s=dt, steps_per_sample=cfg.steps_per_sample, retention=cfg.retention, r_max_hz=r_max)
    constrained = _constrained_from_metadata(model, nodes[feed[0]], nodes[rec[0]], meta)
    return ImportedNetwork(model, time, constrained)


def _constrained_from_metadata(model: RateRNN, w_in_node, w_rec_node, meta: dict) -> ConstrainedNetwork | None:
    """The exact constrained network when the graph carries this module's multiplicities and scales."""
    from .constrain import WeightPrecision, copy_weight_matrix

    m_in = (getattr(w_in_node, "metadata", {}) or {}).get("multiplicity")
    m_rec = (getattr(w_rec_node, "metadata", {}) or {}).get("multiplicity")
    if m_in is None or m_rec is None or "scale" not in meta or "unit_group" not in meta:
        return None
    m = np.concatenate([np.asarray(m_in), np.asarray(m_rec)], axis=1).astype(np.int64)
    groups = np.asarray(meta["unit_group"], dtype=np.int64)
    scale = np.asarray(meta["scale"], dtype=np.float64)
    h = model.config.n_hidden
    if m.shape != (h, model.config.n_inputs + 1 + h) or groups.shape != (h,) or groups.max() >= len(scale):
        raise NIRImportError("the graph's multiplicity metadata does not match its weights' shapes")
    input_gain, bias_gain = float(meta.get("input_gain", 1.0)), float(meta.get("bias_gain", 1.0))
    w = copy_weight_matrix(scale, groups, model.config.n_inputs, input_gain, bias_gain) * m
    ours = torch.cat([model.w_in, model.w_bias[:, None], model.w_rec], dim=1).detach().cpu().numpy()
    if not np.allclose(w, ours, rtol=1e-6, atol=1e-9):
        raise NIRImportError(
            "the graph's weights differ from scale x multiplicity in its own metadata (edited after export?)"
        )
    try:
        precision = WeightPrecision(n_levels=int(meta.get("n_levels", 16)))
    except ValueError as exc:
        raise NIRImportError(f"the graph's metadata: {exc}") from None
    return ConstrainedNetwork(model, m, groups, scale, precision, int(meta.get("max_fan_in", CAM_ENTRIES_PER_NEURON)),
                              input_gain, bias_gain)
