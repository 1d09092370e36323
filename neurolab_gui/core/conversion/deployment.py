"""Deployment: a converted network written onto one :class:`~drivers.dynapse1.board_api.Board` and run there.

The one mechanism every front end uses to put a network on a board (silicon or emulator alike):
the conversion's board stages, ``neurolab deploy``, ``neurolab calibrate --task``'s before/after
accuracies and the desktop app's "Deploy to connected board".

:func:`deploy_network` writes it:

1. the board's calibration profile, when the caller has one for the board's serial
   (:func:`neurolab_gui.core.calibration.profile.find_profile`), replaces the network's core
   biases with the calibrated ones and moves the units onto the neurons the calibration selected;
   when the profile was calibrated from this very network (same :func:`network_fingerprint`), its
   compensated connections (CAM multiplicities after compensation and fine-tuning) and its
   readout re-fitted on board features replace the network's too, so the next deploy runs what
   the calibration left on the board;
2. without a profile, each core's refractory bias and weight biases are matched on this board
   (:func:`.transfer.match_refractory`, :func:`.transfer.match_transfer`) when ``matching`` asks;
3. biases and the netlist are written (:func:`.spiking_run.configure_board`).

:func:`run_deployment` streams samples through the FPGA spike generator in small batches,
decodes the hidden units' spikes on the host (the RNN's float readout) and reports every batch
as :class:`~neurolab_gui.core.jobs.Progress` whose ``payload`` holds the samples' predictions,
class scores and spike counts and the running accuracy and confusion matrix, so a panel can draw
them while the run goes on.  Each batch is one generator program with its own encoding seed
``seed + 7919 * (batch + 1)``: the same samples, seed and batch size give the same spikes on a
deterministic board, whoever runs them.

The profile is passed in (duck-typed: ``serial``, ``biases``, ``selected``, ``network``) because conversion
sits below calibration in the core's layers (``pyproject.toml``).
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

import numpy as np

from drivers.dynapse1.board_api import BiasValue, Board
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import SynapseType

from ..jobs import Progress, ProgressSink, check_cancel, span
from .mapping import EXCITATORY, INHIBITORY, MappedNetwork, relocate_units
from .spiking_run import SpikingResult, configure_board, stream_samples
from .transfer import ProbeDesign, RefractoryFit, TransferFit, match_refractory, match_transfer

if TYPE_CHECKING:
    from .pipeline import ConversionResult

#: Samples per generator program in :func:`run_deployment`: small enough that a panel sees
#: results every fraction of a second of board time, large enough that uploads stay rare.
DEFAULT_BATCH = 8


class ProfileConnections(Protocol):
    """What deployment reads of a profile's compensated network (``calibration.profile.ProfileNetwork``)."""

    fingerprint: str  # network_fingerprint of the network the calibration started from
    multiplicity: np.ndarray  # signed CAM copies [H, F + 1 + H] after compensation
    readout_weight: np.ndarray
    readout_bias: np.ndarray


class BoardProfile(Protocol):
    """What deployment reads of a calibration profile (``calibration.profile.CalibrationProfile``)."""

    serial: str
    biases: Mapping[tuple[int, int, str], BiasValue]
    selected: Sequence[NeuronAddress]
    network: ProfileConnections | None


def network_fingerprint(mapped: MappedNetwork) -> str:
    """SHA-256 of what makes a mapped network this network: connections, readout, time mapping, placement.

    A profile keeps its compensated connections and readout for the network it was calibrated
    from; another network of the same shape (a retrained model) must not receive them.
    """
    h = hashlib.sha256()
    h.update(np.ascontiguousarray(mapped.multiplicity, np.int64).tobytes())
    h.update(np.ascontiguousarray(mapped.readout_weight, np.float64).tobytes())
    h.update(np.ascontiguousarray(mapped.readout_bias, np.float64).tobytes())
    h.update(json.dumps([dataclasses.asdict(mapped.time), [dataclasses.astuple(a) for a in mapped.unit_addresses],
                         [dataclasses.astuple(a) for a in mapped.input_addresses], mapped.readout], sort_keys=True).encode())
    return h.hexdigest()


def with_connections(mapped: MappedNetwork, multiplicity: np.ndarray) -> MappedNetwork:
    """A copy of ``mapped`` whose units receive ``multiplicity`` (signed CAM copies, same shape) instead.

    Wired as :func:`.mapping.map_network` wires them: input channel ``j`` from its copy on the
    unit's own chip (``InputAddress(chip, 1 + j)``, played there per ``core_masks[j, chip]``),
    recurrent inputs from the units.  Connections from any other source of ``mapped`` (the reset
    channel) are kept as they are.
    """
    m = np.asarray(multiplicity)
    if m.shape != mapped.multiplicity.shape or not np.issubdtype(m.dtype, np.integer):
        raise ValueError(f"need integer CAM copies of shape {mapped.multiplicity.shape}, got {m.dtype} {m.shape}")
    f = mapped.n_inputs
    units = mapped.unit_addresses
    out = copy.deepcopy(mapped)
    out.netlist = Netlist(monitored=set(mapped.netlist.monitored))
    masks = np.zeros_like(np.asarray(mapped.core_masks).reshape(len(mapped.input_addresses), -1))
    unit_set = set(units)
    for c in mapped.netlist.connections:
        weight_source = c.pre in unit_set if isinstance(c.pre, NeuronAddress) else c.pre.neuron <= f + 1
        if not weight_source:
            out.netlist.add(c.pre, c.post, c.synapse, c.multiplicity)
            if not isinstance(c.pre, NeuronAddress):
                masks[c.pre.neuron - 1, c.post.chip] |= 1 << c.post.core
    for i, post in enumerate(units):
        for j in np.flatnonzero(m[i]):
            synapse: SynapseType = EXCITATORY if m[i, j] > 0 else INHIBITORY
            pre = InputAddress(post.chip, 1 + int(j)) if j <= f else units[j - f - 1]
            out.netlist.add(pre, post, synapse, int(abs(m[i, j])))
            if j <= f:
                masks[j, post.chip] |= 1 << post.core
    out.core_masks = masks.reshape(np.asarray(mapped.core_masks).shape)
    out.multiplicity = m.astype(np.int64).copy()
    return out


@dataclass
class TransferMatching:
    """How a network without a profile is matched to the board it is written on."""

    probe: ProbeDesign = field(default_factory=ProbeDesign)
    rounds: int = 2
    saturation: bool = True  # tune IF_RFR_N first (conversion's ``match_saturation``)


@dataclass
class Deployment:
    """A network as written on ``board``: what runs there and how it got there."""

    board: Board
    mapped: MappedNetwork
    profile_applied: bool = False
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # netlist compiler warnings
    transfer_fits: list[TransferFit] = field(default_factory=list)
    refractory: list[RefractoryFit] = field(default_factory=list)

    @property
    def serial(self) -> str:
        return str(getattr(self.board, "serial", ""))


@dataclass
class DeploymentRun:
    """What :func:`run_deployment` measured (``labels`` may be None for unlabelled samples)."""

    spiking: SpikingResult
    scores: np.ndarray  # [N, classes] readout logits
    labels: np.ndarray | None
    n_classes: int
    wall_s: float = 0.0

    @property
    def predictions(self) -> np.ndarray:
        return self.spiking.predictions

    @property
    def accuracy(self) -> float:
        if self.labels is None:
            raise ValueError("these samples have no labels")
        return self.spiking.accuracy(self.labels)

    def confusion(self) -> np.ndarray:
        """``[true class, predicted class]`` counts."""
        return confusion_matrix(self.labels, self.predictions, self.n_classes)


def confusion_matrix(labels: np.ndarray | None, predictions: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((n_classes, n_classes), np.int64)
    if labels is not None and len(predictions):
        np.add.at(out, (np.asarray(labels, np.int64), np.asarray(predictions, np.int64)), 1)
    return out


def apply_profile(mapped: MappedNetwork, profile: BoardProfile) -> tuple[MappedNetwork, list[str]]:
    """A copy of ``mapped`` with ``profile``'s biases on its cores, its compensated network and its
    units on the selected neurons.

    Biases are taken for every (chip, core, name) the network sets and the profile holds.  The
    compensated connections and readout are taken when the profile was calibrated from this
    network (:func:`network_fingerprint`).  The selection is used when it has one neuron per
    unit, each in its unit's core.  Whatever is not used, a note says why.
    """
    out = copy.deepcopy(mapped)
    notes = []
    taken = {key: profile.biases[key] for key in out.biases if key in profile.biases}
    out.biases.update(taken)
    notes.append(f"profile {profile.serial}: {len(taken)} of {len(out.biases)} core biases")
    network = getattr(profile, "network", None)
    if network is not None and network.fingerprint == network_fingerprint(mapped):
        out = with_connections(out, network.multiplicity)
        out.readout_weight = np.array(network.readout_weight, np.float64)
        out.readout_bias = np.array(network.readout_bias, np.float64)
        notes.append("the calibration's compensated connections and board-fitted readout")
    elif network is not None:
        notes.append("compensated connections not used: the profile was calibrated from another network")
    selected = list(profile.selected)
    same_cores = len(selected) == out.n_hidden and all(
        (a.chip, a.core) == (b.chip, b.core) for a, b in zip(out.unit_addresses, selected, strict=False))
    if same_cores and len(set(selected)) == len(selected):
        out = relocate_units(out, selected)
        notes.append(f"units on the {len(selected)} calibrated neurons")
    else:
        notes.append(f"selection not used: the profile selected {len(selected)} neurons for another layout "
                     f"than these {out.n_hidden} units")
    return out, notes


def deploy_network(
    board: Board,
    mapped: MappedNetwork,
    *,
    profile: BoardProfile | None = None,
    scales: np.ndarray | None = None,
    matching: TransferMatching | None = None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> Deployment:
    """Write ``mapped`` onto ``board`` (see the module docstring); ``mapped`` itself is not changed.

    Parameters
    ----------
    profile : the board's calibration profile, applied first; it must be the board's own
    scales, matching : without a profile, match each core's biases on this board to the
        constrained network's copy weights ``scales`` (``ConstrainedNetwork.scale``)
    """
    serial = str(getattr(board, "serial", ""))
    if profile is not None and profile.serial != serial:
        raise ValueError(f"the calibration profile is for board {profile.serial}, not {serial}")
    check_cancel(cancel)
    if profile is not None:
        work, notes = apply_profile(mapped, profile)
        deployment = Deployment(board, work, True, notes)
    else:
        deployment = Deployment(board, copy.deepcopy(mapped), False, ["no calibration profile"])
        if matching is not None and scales is not None:
            if matching.saturation:
                deployment.refractory = match_refractory(board, deployment.mapped, cancel=cancel)
            deployment.transfer_fits = match_transfer(board, deployment.mapped, scales, matching.probe, matching.rounds,
                                                      progress, cancel)
            deployment.notes.append("weight biases matched on this board")
    check_cancel(cancel)
    deployment.warnings = configure_board(board, deployment.mapped)
    if progress is not None:
        progress(Progress(1.0, f"network written on {serial}", step="deploy"))
    return deployment


def run_deployment(
    deployment: Deployment,
    x: np.ndarray,
    labels: np.ndarray | None,
    lengths: np.ndarray,
    *,
    seed: int = 0,
    batch: int = DEFAULT_BATCH,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    on_events: Callable[[SpikeEvents], None] | None = None,
    on_inputs: Callable[[np.ndarray, np.ndarray], None] | None = None,
) -> DeploymentRun:
    """Run the deployed network on samples ``x`` (with ``lengths``), ``batch`` per generator program.

    Every batch's :class:`Progress` carries ``payload``: ``indices``, ``predictions``, ``scores``
    ``[b, classes]``, ``spikes`` (hidden spikes per sample), and over all samples so far
    ``accuracy`` (None without labels), ``done`` and ``confusion``.  ``on_events`` gets the
    board's raw events of every batch (the session's monitors), then ``on_inputs`` the input
    spikes the batch played (board time µs, channel).
    """
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    mapped = deployment.mapped
    x = np.asarray(x, np.float32)
    lengths = np.asarray(lengths, np.int64)
    y = None if labels is None else np.asarray(labels, np.int64)
    n, h, c = len(x), mapped.n_hidden, int(mapped.readout_weight.shape[0])
    features, preds, scores = np.zeros((n, h)), np.zeros(n, np.int64), np.zeros((n, c))
    counts, in_counts = np.zeros((n, h)), np.zeros((n, mapped.n_sources))
    t0 = time.perf_counter()
    correct = 0
    for b, lo in enumerate(range(0, n, batch)):
        check_cancel(cancel)
        idx = np.arange(lo, min(n, lo + batch))
        part = stream_samples(deployment.board, mapped, x[idx], lengths[idx], seed + 7919 * (b + 1), cancel=cancel,
                              on_events=on_events, on_inputs=on_inputs)
        features[idx], preds[idx], counts[idx], in_counts[idx] = part.features, part.predictions, part.spike_counts, part.input_spikes
        scores[idx] = part.features @ mapped.readout_weight.T + mapped.readout_bias
        done = int(idx[-1]) + 1
        if y is not None:
            correct += int((preds[idx] == y[idx]).sum())
        if progress is not None:
            accuracy = correct / done if y is not None else None
            text = f"{done}/{n} samples" + (f", accuracy {accuracy:.3f}" if accuracy is not None else "")
            progress(Progress(done / n, text, step="run", payload={
                "indices": idx, "predictions": preds[idx].copy(), "scores": scores[idx].copy(),
                "labels": None if y is None else y[idx].copy(), "spikes": counts[idx].sum(1),
                "accuracy": accuracy, "done": done,
                "confusion": confusion_matrix(None if y is None else y[:done], preds[:done], c)}))
    wall = time.perf_counter() - t0
    spiking = SpikingResult(preds, features, counts, in_counts, wall, list(deployment.warnings))
    return DeploymentRun(spiking, scores, y, c, wall)


def deploy_and_run(
    board: Board,
    mapped: MappedNetwork,
    x: np.ndarray,
    labels: np.ndarray | None,
    lengths: np.ndarray,
    *,
    profile: BoardProfile | None = None,
    scales: np.ndarray | None = None,
    matching: TransferMatching | None = None,
    seed: int = 0,
    batch: int = DEFAULT_BATCH,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    on_events: Callable[[SpikeEvents], None] | None = None,
) -> tuple[Deployment, DeploymentRun]:
    """:func:`deploy_network` then :func:`run_deployment` (a third of the progress for writing when matching)."""
    split = 1 / 3 if profile is None and matching is not None and scales is not None else 0.05
    deployment = deploy_network(board, mapped, profile=profile, scales=scales, matching=matching,
                                progress=span(progress, 0.0, split), cancel=cancel)
    run = run_deployment(deployment, x, labels, lengths, seed=seed, batch=batch, progress=span(progress, split, 1.0),
                         cancel=cancel, on_events=on_events)
    return deployment, run


def deploy_conversion(
    board: Board,
    conversion: ConversionResult,
    x: np.ndarray,
    labels: np.ndarray | None,
    lengths: np.ndarray,
    *,
    profile: BoardProfile | None = None,
    seed: int = 0,
    batch: int = DEFAULT_BATCH,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    on_events: Callable[[SpikeEvents], None] | None = None,
) -> tuple[Deployment, DeploymentRun]:
    """A conversion's network (as mapped, before any board matched it) deployed on ``board`` and run.

    What ``neurolab deploy`` and the app's "Deploy to connected board" both call, so the same
    checkpoint, board, samples and seed give the same predictions from either.
    """
    mapped = conversion.nominal_mapped if conversion.nominal_mapped is not None else conversion.mapped
    return deploy_and_run(board, mapped, x, labels, lengths, profile=profile, scales=conversion.constrained.scale,
                          matching=conversion.matching, seed=seed, batch=batch, progress=progress, cancel=cancel,
                          on_events=on_events)


__all__ = ["DEFAULT_BATCH", "BoardProfile", "ProfileConnections", "Deployment", "DeploymentRun", "TransferMatching", "apply_profile",
           "confusion_matrix", "deploy_and_run", "deploy_conversion", "deploy_network", "network_fingerprint",
           "run_deployment", "with_connections"]
