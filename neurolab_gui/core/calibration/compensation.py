"""Mismatch compensation with measured per-neuron gains and offsets.

Three levers, applied in this order by :mod:`.engine`:

(a) :func:`select_neurons` - which physical neurons carry the RNN units.  A core has 256 neurons
    and a converted network uses a few dozen of them, so every core group picks the neurons
    whose measured gains lie closest to a centre (log distance, the excitatory gain weighted
    fully and the inhibitory gain by ``inhibitory_weight``): the core's median for the first
    pick, the target gains once the core's weight biases are tuned.  :func:`select_within_budget`
    sets that weight as high as a budget for the excitatory gain CV allows (the effective-gain
    target is about the excitatory transfer gain; the inhibitory spread left is known per neuron
    to (b) and (c)).
(b) :func:`compensate_multiplicities` - integer CAM multiplicities divided by the unit's
    relative gain (separately for excitatory and inhibitory inputs) and projected back onto the
    grid and the fan-in budget.  With selected neurons the correction is mostly below half a
    copy, so it changes few entries; it matters where a unit is far from its target.
(c) :class:`MeasuredTransfer` + :func:`fine_tune` - chip-in-the-loop training: the constrained
    RNN is fine-tuned in torch with every unit's *measured* transfer function in the forward pass
    (``w_eff = g_exc * W+ + g_inh * W-`` per row, rheobase offset subtracted through the bias
    channel), its weights kept on the DYNAP-SE1 grid by a straight-through quantiser with the
    core scales fixed (the weight biases were tuned to them).  The engine then redeploys the
    network, measures its accuracy on the board and repeats while the accuracy improves.

Modelling choices of (c), parameters of the functions: the refractory saturation of every unit
is the model's (the per-neuron spread of ``t_ref``, 8 % on silicon, is not modelled), and the
offset enters through the bias channel, which reaches its full value after a few ``tau``.  With
``UnitTransfer.spikes_per_step`` the units emit whole spikes from rest (``RateRNN.spikes_per_step``):
on MNIST-1D's 256-unit network, where a unit fires 3.3 spikes per sample on average (none in 57 %
of the unit-samples), that model agreed with the board on 82.0 % of the test samples against 76.1 %
for the rate model, with two board runs of different input phases agreeing on 83.4 %
(docs/decisions.md, "Hardware model in whole spikes").
"""

from __future__ import annotations

import copy
import dataclasses
import threading
from dataclasses import dataclass

import numpy as np
import torch

from drivers.dynapse1.netlist import NeuronAddress

from ..conversion.constrain import ConstrainedNetwork, project_row_multiplicities, stacked_weights
from ..conversion.mapping import MappedNetwork, relocate_units  # noqa: F401 - re-exported (it moved to mapping)
from ..conversion.models import RateRNN
from ..conversion.tasks import Task
from ..conversion.training import TrainConfig, evaluate, train
from ..fitting.fi import GainFit
from ..jobs import ProgressSink


def select_neurons(
    mapped: MappedNetwork,
    exc: GainFit,
    inh: GainFit | None = None,
    inhibitory_weight: float = 0.05,
    centre: dict[tuple[int, int], tuple[float, float]] | None = None,
) -> list[NeuronAddress]:
    """The physical neuron for every unit of ``mapped``: the best-matched ones of each core.

    Candidates are the neurons of the group's core measured in ``exc`` (and ``inh``) with valid
    fits; on core 0, ids up to the highest input-source id are excluded (they alias with the
    FPGA sources).  They are ranked by their distance to ``centre[(chip, core)]`` = (excitatory,
    inhibitory gain) - the target gains, once the core's weight biases are tuned - or, without
    it, to the core's median gains.  Raises ``ValueError`` when a core has fewer valid neurons
    than units.
    """
    idx_e = {a: i for i, a in enumerate(exc.addresses)}
    idx_i = {a: i for i, a in enumerate(inh.addresses)} if inh is not None else {}
    first_free_core0 = mapped.n_sources + 1
    out: list[NeuronAddress | None] = [None] * mapped.n_hidden
    unit_core = [(a.chip, a.core) for a in mapped.unit_addresses]
    for chip, core in sorted(set(unit_core)):
        units = [u for u, k in enumerate(unit_core) if k == (chip, core)]
        cands = [a for a in exc.addresses if (a.chip, a.core) == (chip, core) and exc.valid[idx_e[a]]
                 and (core != 0 or a.neuron >= first_free_core0)]
        if inh is not None:
            cands = [a for a in cands if a in idx_i and inh.valid[idx_i[a]]]
        if len(cands) < len(units):
            raise ValueError(f"core {chip}/{core}: {len(units)} units but only {len(cands)} neurons with valid measurements")
        le = np.log([exc.gain[idx_e[a]] for a in cands])
        centre_e = np.log(centre[(chip, core)][0]) if centre is not None else np.median(le)
        dist = ((le - centre_e) / max(np.std(le), 1e-9)) ** 2
        if inh is not None and inhibitory_weight > 0:
            li = np.log([inh.gain[idx_i[a]] for a in cands])
            centre_i = np.log(centre[(chip, core)][1]) if centre is not None else np.median(li)
            dist += inhibitory_weight * ((li - centre_i) / max(np.std(li), 1e-9)) ** 2
        chosen = [cands[i] for i in np.argsort(dist, kind="stable")[: len(units)]]
        chosen.sort(key=lambda a: a.neuron)
        for u, a in zip(units, chosen, strict=True):
            out[u] = a
    return out  # type: ignore[return-value]


#: Weights of the inhibitory match tried by :func:`select_within_budget`, strongest first.
INHIBITORY_WEIGHTS: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.01, 0.0)


def select_within_budget(
    mapped: MappedNetwork,
    exc: GainFit,
    inh: GainFit,
    centre: dict[tuple[int, int], tuple[float, float]],
    exc_cv_budget: float,
    weights: tuple[float, ...] = INHIBITORY_WEIGHTS,
) -> tuple[list[NeuronAddress], float]:
    """:func:`select_neurons` around ``centre`` with the strongest inhibitory weight within budget.

    A neuron's excitatory and inhibitory gains come from separate DPI circuits and are
    independent, so weight on the inhibitory match widens the excitatory window.  Measured on the
    emulator (sequential digits, 22 units per core of 256): excitatory / inhibitory gain CV
    1.6 % / 24 % at weight 0, 2.4 % / 10 % at 0.05, 3.4 % / 8 % at 0.2.  The excitatory CV is
    the calibration's target, so the first weight of ``weights`` whose selection keeps it (gain
    relative to the centre, in this measurement) within ``exc_cv_budget`` is taken, the last one
    when none does.  The inhibitory spread left over is known per neuron to the multiplicity
    compensation and the fine-tuning.  Returns the selection and the weight used.
    """
    if not weights:
        raise ValueError("no inhibitory weights to try")
    target = np.array([centre[(a.chip, a.core)][0] for a in mapped.unit_addresses])
    for w in weights:
        selected = select_neurons(mapped, exc, inh, w, centre=centre)
        rel = exc.gains_of(selected) / target
        if np.std(rel) / np.mean(rel) <= exc_cv_budget:
            break
    return selected, w


def compensate_multiplicities(
    net: ConstrainedNetwork, gain_exc_rel: np.ndarray, gain_inh_rel: np.ndarray
) -> np.ndarray:
    """Multiplicities with every row's excitatory part divided by ``gain_exc_rel`` and inhibitory by ``gain_inh_rel``.

    Relative gains are measured gain / target gain per unit.  The result stays on the
    precision grid and within the fan-in budget (the conversion's projection).
    """
    m = net.multiplicity.astype(float)
    ge = np.asarray(gain_exc_rel, float)[:, None]
    gi = np.asarray(gain_inh_rel, float)[:, None]
    if ge.shape[0] != m.shape[0] or gi.shape[0] != m.shape[0] or not (np.all(ge > 0) and np.all(gi > 0)):
        raise ValueError("relative gains must be positive, one per hidden unit")
    v = np.where(m > 0, m / ge, m / gi)
    return project_row_multiplicities(v, net.precision, net.max_fan_in)


@dataclass
class UnitTransfer:
    """Measured transfer function of every unit relative to its target: gains and offset, and
    whether the units hand on whole spikes (``spikes_per_step``, see :func:`hardware_model`)."""

    gain_exc: np.ndarray  # measured / target excitatory gain
    gain_inh: np.ndarray  # measured / target inhibitory gain
    offset: np.ndarray  # rheobase offset in activation units (offset_hz / r_max)
    #: spikes of one RNN step at activation 1 (``r_max dt_step``): the hardware model emits whole
    #: spikes (``RateRNN.spikes_per_step``); None: rates
    spikes_per_step: float | None = None
    count_correction: float = 0.5  # spikes the board's decoding adds to a non-zero count (MappedNetwork)

    def to_dict(self) -> dict:
        return {k: (np.asarray(v).round(5).tolist() if v is not None else None) for k, v in dataclasses.asdict(self).items()}


class MeasuredTransfer:
    """RNN weight transform: DYNAP-SE1 grid (straight-through) then the measured per-unit transfer.

    ``scales[group]`` stay fixed (the core weight biases realise them).  Used as
    ``RateRNN.weight_transform`` during chip-in-the-loop fine-tuning and evaluation.
    """

    def __init__(self, net: ConstrainedNetwork, transfer: UnitTransfer | None) -> None:
        self.net = net
        self.q = net.copy_weights()
        self.transfer = transfer

    def multiplicities(self, stacked: np.ndarray) -> np.ndarray:
        return project_row_multiplicities(stacked / self.q, self.net.precision, self.net.max_fan_in)

    def __call__(self, w_in: torch.Tensor, w_bias: torch.Tensor, w_rec: torch.Tensor):
        f = w_in.shape[1]
        stacked = torch.cat([w_in, w_bias[:, None], w_rec], dim=1)
        m = self.multiplicities(stacked.detach().cpu().numpy())
        wq = torch.as_tensor(self.q * m, dtype=stacked.dtype, device=stacked.device)
        w = stacked + (wq - stacked).detach()
        if self.transfer is not None:
            ge = torch.as_tensor(self.transfer.gain_exc, dtype=w.dtype, device=w.device)[:, None]
            gi = torch.as_tensor(self.transfer.gain_inh, dtype=w.dtype, device=w.device)[:, None]
            w = torch.where(wq > 0, w * ge, w * gi)
            off = torch.as_tensor(self.transfer.offset, dtype=w.dtype, device=w.device)
            w = torch.cat([w[:, :f], (w[:, f] - off)[:, None], w[:, f + 1 :]], dim=1)
        return w[:, :f], w[:, f], w[:, f + 1 :]


def with_multiplicities(net: ConstrainedNetwork, m: np.ndarray, model: RateRNN | None = None) -> ConstrainedNetwork:
    """A constrained network with multiplicities ``m`` (same groups and scales); weights = q m exactly."""
    model = copy.deepcopy(model if model is not None else net.model)
    model.weight_transform = None
    model.spikes_per_step = None  # a network's own model runs in rates (hardware_model adds the spikes)
    w = net.copy_weights() * m
    f = net.n_inputs
    with torch.no_grad():
        model.w_in.copy_(torch.as_tensor(w[:, :f]))
        model.w_bias.copy_(torch.as_tensor(w[:, f]))
        model.w_rec.copy_(torch.as_tensor(w[:, f + 1 :]))
    return dataclasses.replace(net, model=model, multiplicity=np.asarray(m, np.int64), unit_group=net.unit_group.copy(),
                               scale=net.scale.copy())


def hardware_model(net: ConstrainedNetwork, transfer: UnitTransfer | None) -> RateRNN:
    """The constrained model with the measured transfer in its forward pass (for evaluation).

    With ``transfer.spikes_per_step`` its units emit whole spikes (``RateRNN.spikes_per_step``):
    what the board's network does, and where it departs most from a rate model when units fire a
    few spikes per sample.
    """
    model = copy.deepcopy(net.model)
    model.weight_transform = MeasuredTransfer(net, transfer)
    model.spikes_per_step = transfer.spikes_per_step if transfer is not None else None
    if transfer is not None:
        model.count_correction = transfer.count_correction
    return model


def fine_tune(
    net: ConstrainedNetwork,
    transfer: UnitTransfer,
    task: Task,
    config: TrainConfig,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    validation: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> ConstrainedNetwork:
    """Fine-tune ``net`` (left unchanged) with the measured transfer in the loop; see the module docstring.

    With ``validation = (x, y, lengths)`` (samples the training does not see) the model with the
    measured transfer is scored on it before training and after every epoch, and the best state
    is kept, the starting one included (early stopping: at lr 3e-3 on MNIST-1D, 4 epochs gave
    test accuracy 0.548 with the measured transfer, 10 epochs 0.531, and one 4-epoch run fell to
    0.50 on the board's validation samples).
    """
    model = hardware_model(net, transfer)
    after_epoch = None
    if validation is not None:
        x_val, y_val, l_val = validation

        def snapshot() -> dict[str, torch.Tensor]:
            return {k: v.detach().clone() for k, v in model.state_dict().items()}

        best = [evaluate(model, x_val, y_val, l_val)[0], snapshot()]

        def after_epoch(epoch: int) -> None:
            acc = evaluate(model, x_val, y_val, l_val)[0]
            if acc > best[0]:
                best[:] = [acc, snapshot()]

    train(model, task, config, progress=progress, cancel=cancel, after_epoch=after_epoch)
    if validation is not None:
        model.load_state_dict(best[1])
    m = model.weight_transform.multiplicities(stacked_weights(model))
    return with_multiplicities(net, m, model)


def refit_readout(
    features: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    l2_to_start: float = 1e-3,
    steps: int = 300,
    lr: float = 0.05,
) -> tuple[np.ndarray, np.ndarray]:
    """Readout ``(weight, bias)`` re-fitted by softmax regression on board ``features [N, H]``.

    Starts from the current readout and is pulled towards it by ``l2_to_start`` (few board
    samples must not undo what the float training learned).  Deterministic (full-batch Adam).
    """
    x = torch.as_tensor(np.asarray(features, np.float32))
    y = torch.as_tensor(np.asarray(labels, np.int64))
    w0 = torch.as_tensor(np.asarray(weight, np.float32))
    b0 = torch.as_tensor(np.asarray(bias, np.float32))
    if x.shape[0] != y.shape[0] or x.shape[1] != w0.shape[1]:
        raise ValueError(f"features {tuple(x.shape)} do not match labels {tuple(y.shape)} and readout {tuple(w0.shape)}")
    w, b = w0.clone().requires_grad_(True), b0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w, b], lr=lr)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: extra threads only contend on a busy machine
    try:
        for _ in range(steps):
            loss = torch.nn.functional.cross_entropy(x @ w.T + b, y) + l2_to_start * ((w - w0) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
    finally:
        torch.set_num_threads(threads)
    return w.detach().numpy().astype(np.float64), b.detach().numpy().astype(np.float64)


def unit_affine_readout(
    board_features: np.ndarray,
    model_features: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    slope_range: tuple[float, float] = (0.5, 2.0),
) -> tuple[np.ndarray, np.ndarray]:
    """The readout ``(weight, bias)`` re-expressed for board features that follow each unit's model
    feature through an affine map ``board_u = k_u model_u + c_u``, fitted per unit (least squares over
    the samples, ``k_u`` clipped to ``slope_range``; a unit that does not vary keeps ``k_u = 1``).

    Two numbers per unit instead of a refit of every readout weight: the readout the float training
    learned stays, only each unit's scale and offset on the board are undone.
    """
    e, b = np.asarray(model_features, float), np.asarray(board_features, float)
    if e.shape != b.shape or e.ndim != 2 or len(e) < 2:
        raise ValueError(f"need board and model features of the same samples [N >= 2, H]; got {b.shape} and {e.shape}")
    de, db = e - e.mean(0), b - b.mean(0)
    var = (de * de).sum(0)
    varies = var > 1e-9
    slope = np.where(varies, (de * db).sum(0) / np.where(varies, var, 1.0), 1.0)
    slope = np.clip(slope, *slope_range)
    offset = b.mean(0) - slope * e.mean(0)
    w = np.asarray(weight, float) / slope[None, :]
    return w, np.asarray(bias, float) - w @ offset


#: Pulls towards the float readout tried by :func:`refit_readout_cv`; ``inf`` keeps it unchanged.
READOUT_L2_GRID: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, float("inf"))
#: How :func:`refit_readout_cv` picks the pull from its cross-validated accuracies (:func:`choose_readout_l2`).
READOUT_RULES = ("one_se", "best")


def choose_readout_l2(scores: dict[float, float], n: int, rule: str = "one_se") -> float:
    """The pull :func:`refit_readout_cv` keeps, from cross-validated accuracies ``scores`` on ``n`` samples.

    Ties and near-ties go to the stronger pull (closer to what the float training learned):
    ``"best"`` takes the best score, ``"one_se"`` the strongest pull within one binomial standard
    error of it.
    """
    strong_first = sorted(scores, reverse=True)
    top = max(scores.values())
    if rule == "best":
        return max(strong_first, key=lambda l2: scores[l2])
    se = float(np.sqrt(top * (1.0 - top) / max(1, n)))
    return next(l2 for l2 in strong_first if scores[l2] >= top - se - 1e-12)


def refit_readout_cv(
    features: np.ndarray,
    labels: np.ndarray,
    weight: np.ndarray,
    bias: np.ndarray,
    l2_grid: tuple[float, ...] = READOUT_L2_GRID,
    folds: int = 5,
    seed: int = 0,
    rule: str = "one_se",
) -> tuple[np.ndarray, np.ndarray, float, dict[float, float]]:
    """:func:`refit_readout` with its pull towards the float readout chosen by k-fold cross-validation.

    A few hundred board samples against a readout of ``H x C`` weights over-fit with a weak pull
    (measured on MNIST-1D, 128 units, 200 samples: board validation accuracy 0.49 refitted vs
    0.56 unchanged), so the strength is chosen on the fit samples themselves — host computation
    only, no chip time.  ``inf`` in the grid stands for the unchanged readout.

    ``rule`` picks the strength from the cross-validated accuracies: ``"one_se"`` (default) the
    strongest pull whose accuracy is within one standard error (binomial, of the best score on
    ``len(labels)`` samples) of the best, so a refit must beat the float readout by more than the
    cross-validation resolves; ``"best"`` the best score (ties to the stronger pull).  Why: on
    sequential digits the best score won by 1-2 of 158-170 samples and chose the weakest pulls
    (docs/decisions.md, "Readout refit: one-standard-error rule").

    Returns the readout refitted on all samples with the chosen strength, that strength and the
    cross-validated accuracy of every strength tried.
    """
    if rule not in READOUT_RULES:
        raise ValueError(f"unknown readout selection rule {rule!r}; choose from {', '.join(READOUT_RULES)}")
    x, y = np.asarray(features, float), np.asarray(labels, np.int64)
    if len(x) != len(y) or len(y) < 2 * folds:
        raise ValueError(f"need matching features and labels, at least {2 * folds} samples for {folds}-fold cross-validation; got {len(x)} and {len(y)}")
    fold_of = np.random.default_rng(seed).permutation(len(y)) % folds
    scores: dict[float, float] = {}
    for l2 in l2_grid:
        correct = 0
        for k in range(folds):
            train, test = fold_of != k, fold_of == k
            w, b = (weight, bias) if np.isinf(l2) else refit_readout(x[train], y[train], weight, bias, l2_to_start=l2)
            correct += int(np.sum((x[test] @ np.asarray(w).T + b).argmax(1) == y[test]))
        scores[l2] = correct / len(y)
    best = choose_readout_l2(scores, len(y), rule)
    if np.isinf(best):
        return np.asarray(weight, float), np.asarray(bias, float), best, scores
    w, b = refit_readout(x, y, weight, bias, l2_to_start=best)
    return w, b, best, scores
