"""What the GUI shows of a conversion, computed from the conversion pipeline's own objects.

The conversion developer's :mod:`neurolab_gui.core.conversion.pipeline` returns a
``ConversionResult`` (``report``: a ``ConversionReport`` of ``StageResult`` s; ``constrained``:
the ``ConstrainedNetwork``; ``mapped``: the ``MappedNetwork`` with ``unit_addresses`` and
``group_cores``; ``transfer_fits``: measured ``TransferFit`` s per board stage).  This module
turns those into plain data for the panels, Qt-free so scripts and tests can use it too:

* :func:`layer_selections` — the raster's "by RNN layer" choices (board-wide neuron ids);
* :func:`mapping_image` — the picture of RNN units on the board's chips and cores, and
  :func:`inter_chip_senders` — which units send spikes to other chips;
* :func:`weight_picture` — a network's weights as drawn (every unit, or every k-th of a large one);
* :func:`accuracy_rows` — the per-stage accuracy table;
* :func:`fit_curves` — a measured transfer fit and the RNN's target curve for the transfer panel.

Everything reads attributes the pipeline defines; nothing here invents fields.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from drivers.dynapse1.topology import N_CHIPS, N_NEURONS_PER_CORE, SynapseType, global_neuron_id

from .fitting.transfer_curves import TransferCurves
from .monitors import INPUT_ID_BASE, NeuronSelection

#: Neurons per side of a core's tile in :func:`mapping_image` (256 = 16 x 16).
TILE = int(math.isqrt(N_NEURONS_PER_CORE))

#: Order of the stages in the accuracy table (the report's own order is kept for others).
STAGE_ORDER = ("float", "constrained", "brian2", "board_ideal", "board_mismatch", "board")


#: Largest side of :func:`weight_picture`: about the pixels a weight plot has on a screen.
MAX_PICTURE_SIDE = 1024


def weight_picture(model: Any, max_side: int = MAX_PICTURE_SIDE) -> tuple[np.ndarray, int]:
    """``[w_in | w_bias | w_rec]`` of a :class:`~.conversion.models.RateRNN` as drawn, float32, and its step.

    A network of more than ``max_side`` units is drawn by every ``step``-th unit (its row and its
    recurrent column; the input and bias columns all stay): reading only those weights keeps the
    GUI thread under a few milliseconds where stacking and scaling all 16 M weights of a
    4096-unit network took 0.7 s, and a plot has no more pixels to show anyway.
    """
    import torch

    n_hidden = int(model.w_rec.shape[0])
    step = max(1, -(-n_hidden // max_side))
    with torch.no_grad():
        picture = torch.cat([model.w_in[::step], model.w_bias[::step, None], model.w_rec[::step, ::step]], dim=1)
        return picture.detach().to(torch.float32).cpu().numpy(), step


def unit_neuron_ids(mapped: Any) -> np.ndarray:
    """Board-wide neuron id of every hidden unit, in unit order."""
    return np.array([global_neuron_id(a.chip, a.core, a.neuron) for a in mapped.unit_addresses], np.int64)


def input_channel_names(mapped: Any) -> list[str]:
    """Names of a mapped network's FPGA input channels: ``in k`` per feature, then ``bias`` and
    (when the time mapping has one) ``reset``."""
    names = [f"in {k}" for k in range(mapped.n_inputs)] + ["bias", "reset"]
    names += [f"source {k}" for k in range(len(names), mapped.n_sources)]  # any further source, by its index
    return names[: mapped.n_sources]


def layer_selections(mapped: Any) -> dict[str, NeuronSelection]:
    """Raster selections for a mapped network by layer name: the whole network first (input
    channels, then the hidden units by core group, as named blocks), then the inputs, all hidden
    units and each core group alone.

    Input channels are the FPGA spike generator's sources, which the chip never reports: their
    rows show what the host played (monitor ids from :data:`~.monitors.INPUT_ID_BASE`, fed by
    :meth:`~.monitors.SpikeMonitor.on_inputs`).  Hidden rows are labelled with their board-wide
    neuron ids, input rows with their channel names.
    """
    ids = unit_neuron_ids(mapped)
    names = input_channel_names(mapped)
    inputs = np.arange(len(names), dtype=np.int64) + INPUT_ID_BASE
    cores = np.array([(a.chip, a.core) for a in mapped.unit_addresses], np.int64).reshape(-1, 2)
    groups = []
    for g, (chip, core) in enumerate(mapped.group_cores):
        in_group = (cores[:, 0] == chip) & (cores[:, 1] == core)
        groups.append((f"RNN group {g} (chip {chip} core {core})", ids[in_group]))
    rows = [("RNN inputs", inputs), *groups]
    blocks, start = [], 0
    for name, members in rows:
        blocks.append((name.removeprefix("RNN "), start, start + len(members)))
        start += len(members)
    network = np.concatenate([members for _, members in rows])
    labels = tuple(names) + tuple(str(int(i)) for i in network[len(names):])
    out = {"RNN network (inputs, units by core group)": NeuronSelection(network, "RNN network", labels, tuple(blocks)),
           "RNN inputs": NeuronSelection(inputs, "RNN inputs", tuple(names)),
           "RNN hidden layer (all units)": NeuronSelection(ids, "RNN hidden layer")}
    out.update({name: NeuronSelection(members, name) for name, members in groups})
    return out


#: Side of :func:`mapping_image`: 2 x 2 chips of 2 x 2 cores of 16 x 16 neurons.
BOARD_SIDE = 4 * TILE


def board_pixel(chip: int, core: int, neuron: int) -> tuple[int, int]:
    """(row, column) of a neuron in the board picture: libcaer's 64 x 64 layout, chips U0 top-left,
    U1 top-right, U2 bottom-left, U3 bottom-right, the cores of a chip in the same order, and
    neuron ``row * 16 + column`` within its core."""
    r, c = divmod(neuron, TILE)
    return (chip >> 1) * 2 * TILE + (core >> 1) * TILE + r, (chip & 1) * 2 * TILE + (core & 1) * TILE + c


def mapping_image(mapped: Any) -> np.ndarray:
    """The whole board as a (64, 64) image (:func:`board_pixel`), whatever chips the network spans.

    A pixel's value is the core group + 1 of the hidden unit placed on that neuron, 0 where no
    unit sits.
    """
    image = np.zeros((BOARD_SIDE, BOARD_SIDE), np.int64)
    group_of_core = {gc: g for g, gc in enumerate(mapped.group_cores)}
    for a in mapped.unit_addresses:
        image[board_pixel(a.chip, a.core, a.neuron)] = group_of_core.get((a.chip, a.core), -1) + 1
    return image


def inter_chip_senders(mapped: Any) -> np.ndarray:
    """``[4, 4]`` counts: ``[a, b]`` units on chip ``a`` whose spikes reach chip ``b != a`` (one SRAM
    route each, so one event per spike crosses from ``a`` to ``b``)."""
    units = set(mapped.unit_addresses)
    pairs = {(c.pre, c.post.chip) for c in mapped.netlist.connections if c.pre in units and c.pre.chip != c.post.chip}
    out = np.zeros((N_CHIPS, N_CHIPS), np.int64)
    for pre, chip in pairs:
        out[pre.chip, chip] += 1
    return out


def accuracy_rows(report: Any) -> list[tuple[str, str, str, str, str, str, str]]:
    """One row per stage: name, accuracy, loss against the constrained RNN, spikes per inference,
    synaptic events per inference, samples, note (strings, ready for a table); then one row per
    constraint-ablation step (name ``+ constraint``, cumulative, see :mod:`.conversion.ablation`)."""
    ref = report.stage("constrained")
    order = {name: i for i, name in enumerate(STAGE_ORDER)}
    stages = sorted(report.stages, key=lambda s: order.get(s.name, len(order)))
    rows = []
    for s in stages:
        loss = f"{100 * (ref.accuracy - s.accuracy):+.1f} pp" if ref is not None and s.name not in ("float", "constrained") else ""
        spikes = "-" if s.spikes_per_inference is None else f"{s.spikes_per_inference:.0f}"
        syn = "-" if s.synaptic_events_per_inference is None else f"{s.synaptic_events_per_inference:.0f}"
        rows.append((s.name, f"{s.accuracy:.4f}", loss, spikes, syn, str(s.n_samples), s.note))
    ablation = getattr(report, "ablation", [])
    if ablation:
        from .conversion.ablation import ablation_note
    for i, a in enumerate(ablation):  # the constraint ablation, cumulative, after the stages
        step = "" if i == 0 else f"{100 * (a.accuracy - ablation[i - 1].accuracy):+.1f} pp this step; "
        loss = f"{100 * (ref.accuracy - a.accuracy):+.1f} pp" if ref is not None else ""
        rows.append((f"+ {a.constraint}", f"{a.accuracy:.4f}", loss, "-", "-", "", step + ablation_note(a.changed)))
    return rows


def fit_choices(result: Any) -> dict[str, Any]:
    """Every measured transfer fit of a conversion, labelled ``stage: chip/core synapse``."""
    return {
        f"{stage}: chip {f.chip} core {f.core} {f.synapse}": f
        for stage, fits in getattr(result, "transfer_fits", {}).items()
        for f in fits
    }


def fit_curves(fit: Any, n_target: int = 60) -> TransferCurves:
    """A measured transfer fit as curves: mean output rate against synaptic drive ``m·r`` (Hz),
    with the RNN's target.

    The target is what the constrained RNN asks of a unit with this copy gain: before
    saturation ``f0 = target_gain · x`` (excitatory) or ``f0 = -offset - target_gain · x``
    (inhibitory, around the fit's own drive point), then the refractory saturation the model
    was trained with, ``rate = f0 / (1 + f0 · t_ref)`` (skipped when ``t_ref`` is unknown).
    """
    points = sorted(fit.points)
    x = np.array([float(p[0]) for p in points])
    rates = np.array([[float(p[1]) for p in points]])  # one row: the core's mean rate
    # a conversion keeps no per-point uncertainty or chip time: NaN says "not measured here"
    curves = TransferCurves(fit.synapse, [], x, rates, np.full_like(rates, np.nan), float("nan"),
                            {"chip": fit.chip, "core": fit.core, "weight_bias": list(fit.weight_bias)})
    if len(x):
        tx = np.linspace(0.0, max(x) * 1.05, n_target)
        if SynapseType[fit.synapse].is_excitatory:
            f0 = np.maximum(0.0, fit.target_gain * tx)
        else:
            f0 = np.maximum(0.0, -fit.offset_hz - fit.target_gain * tx)
        t_ref = float(fit.t_ref_s)
        ty = f0 / (1.0 + f0 * t_ref) if math.isfinite(t_ref) and t_ref > 0 else f0
        curves.target_x, curves.target_y = tx, ty
    return curves
