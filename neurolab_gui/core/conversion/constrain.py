"""Train-and-constrain: fit an RNN to DYNAP-SE1's weight scheme and fan-in limit.

On DYNAP-SE1 a connection's efficacy is ``sign x multiplicity x w_core(type)``: the number of
CAM entries (copies) on the target neuron that listen to the source, times the weight bias of
the target's core for that synapse type, which all 256 neurons of the core share.  A neuron has
64 CAM entries, so **the sum of |multiplicity| over its inputs is at most 64**.

The constrained weight of the connection ``j -> i`` is therefore ``q[core(i)] * m_ij`` with

- ``m_ij`` an integer in ``[precision.m_min, precision.m_max]`` (negative = inhibitory, GABA_B;
  positive = excitatory, AMPA), and ``sum_j |m_ij| <= max_fan_in``;
- ``q[c]`` one scale per core group: the weight, in activation units, of one CAM copy.  The
  mapping stage sets the AMPA and GABA_B weight biases of core ``c`` so that one copy has this
  efficacy (transfer-curve matching, :mod:`.transfer`).

The columns of the weight matrix are ``[inputs | bias channel | hidden units]``: the per-unit
bias is a constant-rate input source with learned, quantised weights, because a DC bias would be
shared by the whole core.

Precision is a parameter (:class:`WeightPrecision`): ``n_levels=16`` gives the signed 4-bit grid
``-8..7`` (TrueNorth's 16 levels), ``n_levels=3`` gives ternary weights ``{-1, 0, 1}`` (Reservoir
Transfer), any odd ``n_levels`` a symmetric grid.

Projection onto the constraints (:func:`project_row_multiplicities`): round ``w / q`` to the
grid, then, while a row is over its CAM budget, take one copy away from the entry where that
costs the least squared error (``2 (|v| - |m|) + 1`` in copies²) — a greedy L1 knapsack that
prunes the smallest weights first.  This is the pruning step; quantisation-aware fine-tuning
with a straight-through estimator (forward with projected weights, gradient to the float
weights) lets the network recover, and connections may come back when they grow (as in Deep R).

Core groups: hidden units are sorted by the scale they would pick on their own and cut into
``n_core_groups`` contiguous groups (at most 256 units each), so that units with small and large
weights do not have to share one scale.  Each group's scale is the one, on a geometric grid,
that minimises the group's squared weight error after projection.

Per-group precision (input, bias, recurrent).  The three column groups have very different
weight magnitudes (a trained network's bias weights are typically a fraction of one recurrent
copy: with one step for all three, most of them round to zero).  The copy weight of a column is
``q[core] * g[column group]`` with ``g = 1`` for the recurrent columns and two global source
gains ``input_gain`` and ``bias_gain`` for the input and bias columns, realised where the chip
allows it without touching the per-core weight biases: the inputs and the bias channel are
FPGA spike-generator sources, so channel ``k`` fires at ``input_gain * r_max * x_k`` and the
bias channel at ``bias_gain * r_max`` (:mod:`.encoding`).  A gain below 1 gives its group a finer
step (and costs more CAM copies per weight), a gain above 1 a coarser step with more spikes.
The gains lie on a power-of-two grid in ``[ConstraintConfig.min_source_gain, max_source_gain]``
and are chosen, with the core scales, to minimise the error below.

Error-aware rounding.  What matters is the error of the pre-activation, not of the weights: a
weight error ``d w_ij`` moves unit ``i``'s input by ``d w_ij x_j``, so the squared error of
column ``j`` counts with the column's mean square activity ``E[x_j^2]`` (the bias channel is
always 1, inputs and hidden rates are mostly much smaller).  The scale search and the greedy
pruning both weigh every column by it (``column_energy``; uniform when not given).
"""

from __future__ import annotations

import copy
import math
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from drivers.dynapse1.topology import CAM_ENTRIES_PER_NEURON, N_NEURONS_PER_CORE

from ..jobs import Progress, ProgressSink
from .models import RateRNN, RNNConfig
from .tasks import Task
from .training import Distillation, TrainConfig, check_distillation, evaluate, logits_of, mean_rates, train


class NonFiniteWeightsError(ValueError):
    """A model whose weights (or activations) are NaN or infinite: it cannot be constrained or mapped."""


def check_finite_weights(model: RateRNN, what: str = "the model") -> None:
    """Raise :class:`NonFiniteWeightsError` naming every parameter of ``model`` with NaN or inf values."""
    bad = []
    with torch.no_grad():
        for name, p in model.named_parameters():
            finite = torch.isfinite(p)
            if not bool(finite.all()):
                n_nan = int(torch.isnan(p).sum())
                bad.append(f"{name}: {n_nan} NaN, {int((~finite).sum()) - n_nan} inf of {p.numel()}")
    if bad:
        raise NonFiniteWeightsError(f"{what} has non-finite weights ({'; '.join(bad)}); it cannot be put on the chip")


def check_convertible(model: RateRNN, task: Task, source: str | Path | None = None) -> None:
    """Raise ``ValueError`` unless ``model`` has finite weights and the inputs and classes of ``task``,
    and a dense network of its size on the task's rate channels maps onto the board
    (:func:`.mapping.network_size_problem`: checked here, before fine-tuning and mapping spend minutes).

    ``source``: the checkpoint the model came from, which then begins the message (``FILE: ...``).
    """
    try:
        _check_convertible(model, task)
    except ValueError as exc:
        if source is None:
            raise
        raise type(exc)(f"{source}: {exc}") from None


def _check_convertible(model: RateRNN, task: Task) -> None:
    from .mapping import network_size_problem

    check_finite_weights(model)
    mc = model.config
    problem = network_size_problem(mc.n_hidden, task.n_features)
    if problem:
        raise ValueError(problem)
    raw = task.encoding.n_raw if task.encoding is not None else None
    if getattr(model, "foreign", None) is not None and mc.n_inputs == raw and mc.n_outputs == task.n_classes:
        return  # an imported model on raw features: the pipeline splits its input weights onto the rate channels
    if (mc.n_inputs, mc.n_outputs) != (task.n_features, task.n_classes):
        features = f"{raw} raw features ({task.n_features} rate channels)" if raw is not None else f"{task.n_features} features"
        absent = mc.n_outputs > task.n_classes and mc.n_inputs in (task.n_features, raw)
        raise ValueError(f"the model takes {mc.n_inputs} inputs / {mc.n_outputs} classes but task {task.name} has "
                         f"{features} / {task.n_classes} classes"
                         + (f" (if the data lack some of the model's classes, give the data file n_classes={mc.n_outputs})" if absent else ""))


#: Fewest weight levels: ternary (-1, 0, +1).
MIN_LEVELS = 3
#: Most weight levels: multiplicities -64..64, a single weight filling all of a neuron's CAM entries
#: (more levels only add multiplicities no neuron can hold).
MAX_LEVELS = 2 * CAM_ENTRIES_PER_NEURON + 1


@dataclass(frozen=True)
class WeightPrecision:
    """Integer multiplicity grid: ``n_levels`` signed levels including zero (:data:`MIN_LEVELS`..:data:`MAX_LEVELS`)."""

    n_levels: int = 16

    def __post_init__(self) -> None:
        if not MIN_LEVELS <= self.n_levels <= MAX_LEVELS:
            raise ValueError(f"weight precision needs at least {MIN_LEVELS} levels (ternary) and at most {MAX_LEVELS} "
                             f"(a weight of multiplicity m takes m of a neuron's {CAM_ENTRIES_PER_NEURON} CAM entries), "
                             f"got {self.n_levels}")

    @property
    def m_max(self) -> int:
        """Largest excitatory multiplicity."""
        return (self.n_levels - 1) // 2 if self.n_levels % 2 else self.n_levels // 2 - 1

    @property
    def m_min(self) -> int:
        """Most negative (inhibitory) multiplicity."""
        return -((self.n_levels - 1) // 2) if self.n_levels % 2 else -(self.n_levels // 2)

    def levels(self) -> np.ndarray:
        return np.arange(self.m_min, self.m_max + 1)


@dataclass
class ConstraintConfig:
    """How to constrain: precision, CAM budget, core groups and the QAT fine-tune."""

    precision: WeightPrecision = field(default_factory=WeightPrecision)
    max_fan_in: int = CAM_ENTRIES_PER_NEURON
    n_core_groups: int = 3
    qat: TrainConfig = field(default_factory=lambda: TrainConfig(epochs=10, lr=2e-3))
    #: Std of a random log-normal gain per unit and sign (excitatory / inhibitory), drawn anew for
    #: every batch during QAT: trains for the per-neuron synaptic-weight and soma-gain mismatch of
    #: analog hardware (DYNAP-SE1: synaptic weight CV 14-30 %).  0 disables it.
    gain_noise_std: float = 0.0
    #: Give input and bias columns their own copy weight through the FPGA source rates (see the
    #: module docstring).  False: one copy weight per core for all three groups.
    per_group_scales: bool = True
    #: Range of the source gains (powers of two).  The lower end bounds the spike-generator
    #: rate of a channel at value 1 (``min_source_gain * r_max``), the upper end its event count.
    min_source_gain: float = 1.0 / 8.0
    max_source_gain: float = 2.0
    #: Weigh every column's rounding and pruning error by its mean square activity on the
    #: training data (error-aware rounding); False: plain squared weight error.  Off by default:
    #: measured on sequential digits it prunes recurrent copies for the bias and costs accuracy
    #: (docs/decisions.md, "Per-group weight precision").
    error_aware: bool = False
    #: Try both roundings (plain and error-aware) on the network the fine-tune starts from and keep
    #: the one whose quantised network is more accurate on the training set (ties: ``error_aware``).
    #: Which one wins depends on the network (docs/decisions.md, "Fine-tune of imported models").
    choose_rounding: bool = False
    #: Gradual pruning: over the first ``prune_epochs`` QAT epochs the CAM budget of the
    #: fine-tune shrinks from the dense network's (no fan-in limit) to ``max_fan_in`` on a cosine
    #: schedule (:func:`fan_in_schedule`); the remaining epochs and the final projection use
    #: ``max_fan_in``.  0: the chip's budget from the first epoch.
    prune_epochs: int = 0
    #: The last ``fixed_grid_fraction`` of the QAT epochs (rounded up) keep the copy weights (core
    #: scales, source gains) of the refit before them, and the final projection uses that grid: the
    #: fine-tune ends on the weights the chip gets.  0: refit after every epoch and once more for
    #: the final projection (a grid no epoch trained on).
    fixed_grid_fraction: float = 0.0
    #: Knowledge distillation in the QAT fine-tune: weight of the float model's soft targets
    #: (:class:`.training.Distillation`; 0 disables it) and their temperature.
    distill_weight: float = 0.0
    distill_temperature: float = 2.0
    #: QAT in whole spikes: the fine-tune's forward pass hands on whole spikes of integrators
    #: from rest, this many per RNN step at activation 1 (``r_max dt_step``; ``RateRNN.spikes_per_step``,
    #: straight-through gradients), as the board's neurons do; the constrained network is still
    #: evaluated in rates.  None: rates.  What the whole-spike hardware model of the calibration
    #: does for the board it measures, done once for the design (docs/decisions.md, "QAT in whole spikes").
    qat_spikes_per_step: float | None = None

    def __post_init__(self) -> None:
        check_distillation(self.distill_weight, self.distill_temperature)
        if self.qat_spikes_per_step is not None and not (math.isfinite(self.qat_spikes_per_step) and self.qat_spikes_per_step > 0):
            raise ValueError(f"qat_spikes_per_step must be a positive number or None, got {self.qat_spikes_per_step}")
        if not 0.0 <= self.fixed_grid_fraction <= 1.0:
            raise ValueError(f"fixed_grid_fraction must lie in [0, 1], got {self.fixed_grid_fraction}")
        if self.prune_epochs < 0:
            raise ValueError(f"prune_epochs must be >= 0, got {self.prune_epochs}")
        if not 0.0 < self.min_source_gain <= 1.0 <= self.max_source_gain:
            raise ValueError(f"source gains need 0 < min <= 1 <= max, got [{self.min_source_gain}, {self.max_source_gain}]")
        if not 1 <= self.max_fan_in <= CAM_ENTRIES_PER_NEURON:
            raise ValueError(f"max_fan_in must lie in 1..{CAM_ENTRIES_PER_NEURON}, got {self.max_fan_in}")
        if self.n_core_groups < 1:
            raise ValueError(f"n_core_groups must be >= 1, got {self.n_core_groups}")


@dataclass
class ConstrainedNetwork:
    """A network on the DYNAP-SE1 weight grid.

    Attributes
    ----------
    model : leaky RateRNN whose weights equal ``scale[group] * multiplicity`` exactly
    multiplicity : int ``[H, F + 1 + H]`` signed CAM copies, columns ``[inputs | bias | hidden]``
    unit_group : int ``[H]`` core group of every hidden unit
    scale : float ``[n_groups]`` weight of one CAM copy from a unit (recurrent) in each group
        (activation units): what the core's AMPA / GABA_B weight biases realise
    precision, max_fan_in : the constraints that were applied
    input_gain, bias_gain : spike-generator rate of the input channels per unit of input and of
        the bias channel, relative to ``r_max``; a copy from them weighs ``scale * gain``
    """

    model: RateRNN
    multiplicity: np.ndarray
    unit_group: np.ndarray
    scale: np.ndarray
    precision: WeightPrecision
    max_fan_in: int
    input_gain: float = 1.0
    bias_gain: float = 1.0
    #: the rounding used: error-aware (columns weighted by their mean square activity) or plain
    error_aware: bool = False

    @property
    def n_inputs(self) -> int:
        return self.model.config.n_inputs

    @property
    def n_hidden(self) -> int:
        return self.model.config.n_hidden

    def fan_in(self) -> np.ndarray:
        """CAM entries used by every hidden unit (sum of |multiplicity|)."""
        return np.abs(self.multiplicity).sum(1)

    def copy_weights(self) -> np.ndarray:
        """Weight of one CAM copy of every connection, ``[H, F + 1 + H]``: ``scale[group] x column gain``."""
        return copy_weight_matrix(self.scale, self.unit_group, self.n_inputs, self.input_gain, self.bias_gain)

    def weights(self) -> np.ndarray:
        """``copy_weights() * multiplicity``: the float weights the constrained model uses."""
        return self.copy_weights() * self.multiplicity

    def summary(self) -> dict:
        m = self.multiplicity
        return {
            "n_levels": self.precision.n_levels,
            "multiplicity_range": [int(self.precision.m_min), int(self.precision.m_max)],
            "max_fan_in_used": int(self.fan_in().max()),
            "mean_fan_in_used": float(self.fan_in().mean()),
            "nonzero_connections": int((m != 0).sum()),
            "excitatory_copies": int(m[m > 0].sum()),
            "inhibitory_copies": int(-m[m < 0].sum()),
            "core_group_scales": [float(s) for s in self.scale],
            "input_gain": float(self.input_gain),
            "bias_gain": float(self.bias_gain),
            "units_per_group": [int((self.unit_group == g).sum()) for g in range(len(self.scale))],
            "rounding": "error-aware" if self.error_aware else "plain",
        }


def stacked_weights(model: RateRNN) -> np.ndarray:
    """``[w_in | w_bias | w_rec]`` as one ``[H, F + 1 + H]`` array (float weights, no transform)."""
    with torch.no_grad():
        return torch.cat([model.w_in, model.w_bias[:, None], model.w_rec], dim=1).cpu().numpy().astype(np.float64)


def _load_stacked(model: RateRNN, w: np.ndarray) -> None:
    """Write stacked weights ``[w_in | w_bias | w_rec]`` into ``model`` (in place)."""
    f = model.config.n_inputs
    with torch.no_grad():
        model.w_in.copy_(torch.as_tensor(w[:, :f]))
        model.w_bias.copy_(torch.as_tensor(w[:, f]))
        model.w_rec.copy_(torch.as_tensor(w[:, f + 1 :]))


def copy_weight_matrix(scale: np.ndarray, groups: np.ndarray, n_inputs: int, input_gain: float = 1.0,
                       bias_gain: float = 1.0) -> np.ndarray:
    """``[H, F + 1 + H]`` weight of one copy: ``scale[groups[i]]`` times the column's source gain."""
    h = len(groups)
    gains = np.concatenate([np.full(n_inputs, float(input_gain)), [float(bias_gain)], np.ones(h)])
    return np.asarray(scale, np.float64)[groups][:, None] * gains[None, :]


def project_row_multiplicities(v: np.ndarray, precision: WeightPrecision, budget: int,
                               copy_cost: np.ndarray | None = None) -> np.ndarray:
    """Integer multiplicities close to ``v`` (in copies) on the grid with ``sum |m| <= budget`` per row.

    ``v`` is ``[rows, n]`` and must be finite; see the module docstring for the greedy rule.
    ``copy_cost`` (broadcast to ``v``, positive) is what one copy² of error costs in each entry —
    the copy weight squared times the column's energy for error-aware pruning; uniform when None.
    The greedy (one copy at a time from the entry where it costs least) is computed in one stable
    sort per row, with the same result, ties included.
    """
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    if not np.isfinite(v).all():  # NaN cast to int64 is INT64_MIN: |m| sums would wrap around
        raise NonFiniteWeightsError(f"cannot quantise non-finite weights ({int(np.isnan(v).sum())} NaN, "
                                    f"{int(np.isinf(v).sum())} infinite of {v.size})")
    m = np.clip(np.rint(v), precision.m_min, precision.m_max).astype(np.int64)
    mag = np.abs(m)
    excess = mag.sum(1) - budget
    rows = np.flatnonzero(excess > 0)
    if not rows.size:
        return m
    # The greedy, in one sort: removing copy k (k = 0, 1, ...) of an entry costs
    # 2 (|v| - (|m| - k)) + 1 copies² (times its copy cost), which grows with k, so the copies the
    # pass-by-pass greedy takes from a row are the ``excess`` cheapest of all its (entry, copy) pairs,
    # ties to the lower entry (np.argmin's choice): a stable sort of the costs flattened entry-major.
    before = mag[rows][:, :, None] - np.arange(int(mag[rows].max()))[None, None, :]  # |m| before removal k
    cost = 2.0 * (np.abs(v[rows])[:, :, None] - before) + 1.0
    if copy_cost is not None:
        cost = cost * np.broadcast_to(np.asarray(copy_cost, np.float64), v.shape)[rows][:, :, None]
    cost[before <= 0] = np.inf
    flat = cost.reshape(len(rows), -1)
    rank = np.empty(flat.shape, np.int64)
    np.put_along_axis(rank, np.argsort(flat, axis=1, kind="stable"), np.arange(flat.shape[1])[None, :], axis=1)
    removed = (rank < excess[rows][:, None]).reshape(cost.shape).sum(2)
    m[rows] -= np.sign(m[rows]) * removed
    return m


def _projection_error(w: np.ndarray, unit: np.ndarray, energy: np.ndarray | None, precision: WeightPrecision,
                      budget: int) -> tuple[float, np.ndarray]:
    """Energy-weighted squared error of ``w`` projected with copy weights ``unit``, and the multiplicities."""
    cost = unit**2 if energy is None else unit**2 * energy
    m = project_row_multiplicities(w / unit, precision, budget, cost)
    err = (w - unit * m) ** 2
    return float(np.sum(err if energy is None else err * energy)), m


def _best_scale(w: np.ndarray, precision: WeightPrecision, budget: int, n_grid: int = 40,
                column_gain: np.ndarray | None = None, energy: np.ndarray | None = None) -> float:
    """Scale on a geometric grid minimising the (energy-weighted) squared error of ``w`` after projection."""
    gain = np.ones(w.shape[1]) if column_gain is None else np.asarray(column_gain, np.float64)
    peak = float(np.max(np.abs(w) / gain))
    if not np.isfinite(peak):
        raise NonFiniteWeightsError("cannot choose a weight scale for non-finite weights")
    if peak == 0.0:
        return 1.0
    top = peak / 0.5  # even a 1-copy weight at this scale rounds most weights to zero
    low = peak / (4.0 * max(precision.m_max, 1))
    best_q, best_err = top, np.inf
    for q in np.geomspace(low, top, n_grid):
        err, _ = _projection_error(w, np.broadcast_to(q * gain, w.shape), energy, precision, budget)
        if err < best_err:
            best_q, best_err = float(q), err
    return best_q


def assign_core_groups(w: np.ndarray, precision: WeightPrecision, budget: int, n_groups: int) -> np.ndarray:
    """Group hidden units (rows of ``w``) by the scale each would choose alone; ≤ 256 per group."""
    h = len(w)
    n_groups = max(n_groups, -(-h // N_NEURONS_PER_CORE))
    n_groups = min(n_groups, h)
    own = np.array([_best_scale(w[i : i + 1], precision, budget, n_grid=20) for i in range(h)])
    order = np.argsort(own, kind="stable")
    groups = np.empty(h, np.int64)
    for g, idx in enumerate(np.array_split(order, n_groups)):
        groups[idx] = g
    return groups


@dataclass
class Quantisation:
    """Core scales, source gains and multiplicities of one projection onto the chip's weight grid."""

    scale: np.ndarray
    input_gain: float
    bias_gain: float
    multiplicity: np.ndarray

    def copy_weights(self, groups: np.ndarray) -> np.ndarray:
        n_inputs = self.multiplicity.shape[1] - len(groups) - 1
        return copy_weight_matrix(self.scale, groups, n_inputs, self.input_gain, self.bias_gain)

    def weights(self, groups: np.ndarray) -> np.ndarray:
        return self.copy_weights(groups) * self.multiplicity


def column_energy(model: RateRNN, x: np.ndarray, lengths: np.ndarray | None = None, max_samples: int = 256) -> np.ndarray:
    """Mean square activity ``[F + 1 + H]`` of every column (inputs, bias channel, hidden states) on ``x``.

    What one unit of weight error in that column costs the pre-activation (error-aware rounding).
    A floor of 1 % of the largest keeps silent columns from being free to wreck.
    """
    x = np.asarray(x[:max_samples], np.float32)
    lengths = None if lengths is None else np.asarray(lengths[:max_samples])
    k = model.config.steps_per_sample
    steps = x.shape[1] * k
    valid = np.ones((len(x), steps), bool) if lengths is None else np.arange(steps)[None, :] < lengths[:, None] * k
    x_steps = np.repeat(x, k, axis=1)
    e_in = (x_steps**2 * valid[:, :, None]).sum((0, 1)) / valid.sum()
    rates = mean_rates(model, x, lengths)
    e_rec = (rates**2 * valid[:, :, None]).sum((0, 1)) / valid.sum()
    e = np.concatenate([e_in, [1.0], e_rec]).astype(np.float64)
    return np.maximum(e, 0.01 * e.max())


def quantise(w: np.ndarray, groups: np.ndarray, precision: WeightPrecision, budget: int,
             energy: np.ndarray | None = None, source_gains: tuple[float, float] | None = (1.0 / 8.0, 2.0),
             n_rounds: int = 1) -> Quantisation:
    """Per-group scales, source gains and multiplicities for stacked weights ``w`` ``[H, F + 1 + H]``.

    ``energy`` ``[F + 1 + H]``: column weights of the error (error-aware rounding, see the module
    docstring).  ``source_gains``: the range of the input and bias gains searched (powers of two);
    None keeps both at 1 (one copy weight per core for every column).  Alternates ``n_rounds``
    times between the core scales and the two gains, each chosen to minimise the error.
    """
    n_groups = int(groups.max()) + 1
    h = len(groups)
    f = w.shape[1] - h - 1
    rows_of = [np.flatnonzero(groups == g) for g in range(n_groups)]

    def col_gain(g_in: float, g_b: float) -> np.ndarray:
        return np.concatenate([np.full(f, g_in), [g_b], np.ones(h)])

    def fit_scales(g_in: float, g_b: float) -> np.ndarray:
        gain = col_gain(g_in, g_b)
        return np.array([_best_scale(w[r], precision, budget, column_gain=gain, energy=energy) for r in rows_of])

    def error(scales: np.ndarray, g_in: float, g_b: float) -> tuple[float, np.ndarray]:
        unit = copy_weight_matrix(scales, groups, f, g_in, g_b)
        return _projection_error(w, unit, energy, precision, budget)

    g_in = g_b = 1.0
    scales = fit_scales(g_in, g_b)
    if source_gains is not None:
        lo, hi = source_gains
        grid = 2.0 ** np.arange(np.floor(np.log2(lo)), np.log2(hi) + 1e-9)
        grid = grid[(grid >= lo * (1 - 1e-9)) & (grid <= hi * (1 + 1e-9))]
        for _ in range(n_rounds):
            if f:
                g_in = float(min(grid, key=lambda g: error(scales, g, g_b)[0]))
            g_b = float(min(grid, key=lambda g: error(scales, g_in, g)[0]))
            scales = fit_scales(g_in, g_b)
    _, m = error(scales, g_in, g_b)
    return Quantisation(scales, g_in, g_b, m)


def qat_epochs_for(qat: TrainConfig, n_train: int, min_steps: int, max_factor: int = 4) -> int:
    """QAT epochs that give at least ``min_steps`` optimizer steps on ``n_train`` sequences.

    Never fewer than ``qat.epochs`` nor more than ``max_factor`` times as many (a tiny data set
    does not get hundreds of epochs); ``min_steps`` 0 or ``qat.epochs`` 0 leaves the epochs alone.
    """
    if min_steps <= 0 or qat.epochs <= 0 or n_train <= 0:
        return qat.epochs
    batches = -(-n_train // qat.batch_size)
    return int(min(max(qat.epochs, -(-min_steps // batches)), max_factor * qat.epochs))


def fan_in_schedule(epoch: int, prune_epochs: int, dense: int, budget: int) -> int:
    """CAM budget of QAT epoch ``epoch`` (0-based) under gradual pruning.

    Cosine from ``dense`` at epoch 0 down to ``budget`` at epoch ``prune_epochs`` and after (as in
    gradual magnitude pruning: the network adapts while its connections go, the last ones
    slowly).  Never below ``budget``.
    """
    if prune_epochs <= 0 or epoch >= prune_epochs or dense <= budget:
        return budget
    frac = 0.5 * (1.0 + np.cos(np.pi * epoch / prune_epochs))
    return max(budget, int(round(budget + (dense - budget) * frac)))


class _STEQuantiser:
    """Weight transform for QAT: forward with projected weights, gradient straight through.

    Scales and source gains are refitted after every epoch (:meth:`refit`) except in the last
    ``cfg.fixed_grid_fraction`` of them, which train on the grid the network is then projected onto
    (:meth:`quantise` with ``final=True`` uses the last scales the fine-tune trained with when
    that is > 0); the multiplicities are re-projected on every forward pass so that pruned
    connections can come back.  With gradual pruning (``cfg.prune_epochs``) the CAM budget of
    epoch ``e`` is :func:`fan_in_schedule`'s; ``final=True`` always uses the chip's.
    """

    def __init__(self, model: RateRNN, cfg: ConstraintConfig, groups: np.ndarray, energy: np.ndarray | None) -> None:
        self.model = model
        self.cfg = cfg
        self.groups = groups
        self.energy = energy
        self.dense_budget = cfg.max_fan_in
        # at least the last epoch trains at the chip's budget, whatever the fine-tune's length
        self.prune_epochs = min(cfg.prune_epochs, max(cfg.qat.epochs - 1, 0))
        if self.prune_epochs > 0:  # the fan-in the quantised network uses with no limit at all
            w = stacked_weights(model)
            unlimited = w.shape[1] * max(-cfg.precision.m_min, cfg.precision.m_max)
            free = quantise(w, groups, cfg.precision, unlimited, energy, source_gains_of(cfg))
            self.dense_budget = int(np.abs(free.multiplicity).sum(1).max())
        self.budget = fan_in_schedule(0, self.prune_epochs, self.dense_budget, cfg.max_fan_in)
        self.fixed = int(np.ceil(cfg.fixed_grid_fraction * cfg.qat.epochs - 1e-9))  # epochs on a fixed grid
        self.fixed_from = cfg.qat.epochs - self.fixed
        self.refit(-1)

    def quantise(self, final: bool = False) -> Quantisation:
        budget = self.cfg.max_fan_in if final else self.budget
        w = stacked_weights(self.model)
        if final and self.fixed > 0:  # the grid the last epochs trained on, not a refit
            cur = self.current
            cost = self.unit**2 if self.energy is None else self.unit**2 * self.energy
            m = project_row_multiplicities(w / self.unit, self.cfg.precision, budget, cost)
            return Quantisation(cur.scale, cur.input_gain, cur.bias_gain, m)
        return quantise(w, self.groups, self.cfg.precision, budget, self.energy, source_gains_of(self.cfg))

    def refit(self, epoch: int = -1) -> None:
        """Refit after QAT epoch ``epoch`` (-1: before the first) for the next epoch's budget."""
        self.budget = fan_in_schedule(epoch + 1, self.prune_epochs, self.dense_budget, self.cfg.max_fan_in)
        if epoch < 0 or epoch + 1 < self.fixed_from:
            self.current = self.quantise()
            self.unit = self.current.copy_weights(self.groups)

    def __call__(self, w_in: torch.Tensor, w_bias: torch.Tensor, w_rec: torch.Tensor):
        f = w_in.shape[1]
        stacked = torch.cat([w_in, w_bias[:, None], w_rec], dim=1)
        q = self.unit
        cost = q**2 if self.energy is None else q**2 * self.energy
        m = project_row_multiplicities(stacked.detach().cpu().numpy() / q, self.cfg.precision, self.budget, cost)
        wq = torch.as_tensor(q * m, dtype=stacked.dtype, device=stacked.device)
        sigma = self.cfg.gain_noise_std
        if sigma > 0 and self.model.training:
            h = wq.shape[0]
            f_exc = torch.exp(sigma * torch.randn(h, 1, device=wq.device) - 0.5 * sigma**2)
            f_inh = torch.exp(sigma * torch.randn(h, 1, device=wq.device) - 0.5 * sigma**2)
            wq = torch.where(wq > 0, wq * f_exc, wq * f_inh)
        ste = stacked + (wq - stacked).detach()
        return ste[:, :f], ste[:, f], ste[:, f + 1 :]


class FanInMask:
    """Weight transform for float training with the chip's fan-in: only connections the CAM budget keeps.

    Train-and-constrain for the connectivity: after every epoch (:meth:`refit`) one copy weight
    for the whole network and the source gains are fitted (:func:`quantise`, one group, plain
    rounding) and every unit keeps the connections whose projected multiplicity is non-zero, at
    their float values.  The
    forward pass uses the masked weights; the gradient reaches every weight (straight through), so a
    pruned connection that grows comes back at the next refit (as in Deep R).  :meth:`bake` writes
    the mask into the model and removes the transform: the float model then needs no pruning.
    """

    def __init__(self, model: RateRNN, precision: WeightPrecision, budget: int,
                 source_gains: tuple[float, float] | None = None) -> None:
        self.model = model
        self.precision = precision
        self.budget = budget
        self.source_gains = source_gains
        self.refit()

    def refit(self, _epoch: int = 0) -> None:
        w = stacked_weights(self.model)
        q = quantise(w, np.zeros(len(w), np.int64), self.precision, self.budget, None, self.source_gains)
        self.mask = q.multiplicity != 0

    def __call__(self, w_in: torch.Tensor, w_bias: torch.Tensor, w_rec: torch.Tensor):
        f = w_in.shape[1]
        stacked = torch.cat([w_in, w_bias[:, None], w_rec], dim=1)
        keep = torch.as_tensor(self.mask, dtype=stacked.dtype, device=stacked.device)
        ste = stacked + (stacked * keep - stacked).detach()
        return ste[:, :f], ste[:, f], ste[:, f + 1 :]

    def bake(self) -> None:
        """Zero the pruned weights of the model and remove the transform."""
        self.refit()
        f = self.model.config.n_inputs
        keep = torch.as_tensor(self.mask)
        with torch.no_grad():
            self.model.w_in.mul_(keep[:, :f].to(self.model.w_in))
            self.model.w_bias.mul_(keep[:, f].to(self.model.w_bias))
            self.model.w_rec.mul_(keep[:, f + 1 :].to(self.model.w_rec))
        self.model.weight_transform = None


def source_gains_of(cfg: ConstraintConfig) -> tuple[float, float] | None:
    """The source-gain range :func:`quantise` searches under ``cfg`` (None: per-group scales off)."""
    return (cfg.min_source_gain, cfg.max_source_gain) if cfg.per_group_scales else None


def to_hardware_dynamics(model: RateRNN, retention: float, steps_per_sample: int, saturation: float | None = None,
                         integrator: str = "heun") -> RateRNN:
    """A leaky copy of ``model`` with the retention and sub-steps of the spiking time mapping.

    A leaky model that already has them is copied unchanged; an Elman model keeps its weights
    and gets the leaky dynamics, which the QAT fine-tune then adapts to (train-and-constrain).
    """
    cfg = model.config
    new_cfg = RNNConfig(cfg.n_inputs, cfg.n_hidden, cfg.n_outputs, "leaky", retention, steps_per_sample, cfg.readout, saturation,
                        integrator)
    out = RateRNN(new_cfg)
    out.load_state_dict(model.state_dict())
    return out


def normalize_activations(model: RateRNN, x: np.ndarray, lengths: np.ndarray | None = None, percentile: float = 99.9,
                          max_samples: int = 4096) -> float:
    """Rescale an Elman model with an *unbounded* ReLU so its activations fit in [0, 1] (in place).

    A ReLU RNN is positively homogeneous: dividing ``w_in`` and ``w_bias`` by ``lam`` and
    multiplying the readout weights by ``lam`` leaves its logits unchanged while every hidden
    activation shrinks by ``lam`` (``w_rec`` is unchanged).  ``lam`` is the ``percentile`` of
    the activations on the *valid* steps of ``x`` (``lengths``; padding is not data) -- a
    percentile, not the maximum, because imported models' activations are heavy-tailed and one
    outlier would squeeze every other unit into a few weight levels (snntoolbox's robust
    normalisation).  At most ``max_samples`` sequences are used.  Returns ``lam``.
    """
    if model.config.kind != "elman":
        raise ValueError("normalize_activations applies to imported Elman models")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must lie in (0, 100], got {percentile}")
    x = np.asarray(x[:max_samples], np.float32)
    lengths = np.full(len(x), x.shape[1]) if lengths is None else np.asarray(lengths[:max_samples])
    with torch.no_grad():
        xt = torch.as_tensor(x)
        h = torch.zeros(len(xt), model.config.n_hidden)
        acts = []
        for t in range(int(lengths.max())):
            h = torch.relu(xt[:, t] @ model.w_in.T + model.w_bias + h @ model.w_rec.T)
            acts.append(h[torch.as_tensor(lengths > t)])
        valid = torch.cat(acts)
        if not bool(torch.isfinite(valid).all()):
            raise NonFiniteWeightsError("the imported model's activations overflow to inf/NaN on the task's data; "
                                        "its weights are too large to rescale")
        lam = float(np.percentile(valid.numpy(), percentile))
        lam = max(lam, 1e-6)
        model.w_in /= lam
        model.w_bias /= lam
        model.readout.weight *= lam
    return lam


def constrain(
    model: RateRNN,
    task: Task,
    config: ConstraintConfig | None = None,
    retention: float | None = None,
    steps_per_sample: int | None = None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    saturation: float | None = None,
) -> ConstrainedNetwork:
    """Prune, quantise and fine-tune ``model`` (left unchanged) for DYNAP-SE1.

    Parameters
    ----------
    retention, steps_per_sample : dynamics of the spiking time mapping (default: the model's own;
        an Elman model gets ``0.8`` and ``4``)
    saturation : activation saturation of the hardware neurons (default: the model's own, or
        ``1.0`` for a model trained with a hard clip)
    """
    cfg = config or ConstraintConfig()
    check_finite_weights(model)
    src = copy.deepcopy(model).cpu()
    if retention is None:
        retention = src.config.retention if src.config.kind == "leaky" else 0.8
    if steps_per_sample is None:
        steps_per_sample = src.config.steps_per_sample if src.config.kind == "leaky" else 4
    if saturation is None:
        saturation = src.config.saturation if src.config.saturation is not None else 1.0
    net = to_hardware_dynamics(src, retention, steps_per_sample, saturation)
    groups = assign_core_groups(stacked_weights(net), cfg.precision, cfg.max_fan_in, cfg.n_core_groups)
    energy = column_energy(net, task.x_train, task.lengths_train) if cfg.error_aware or cfg.choose_rounding else None
    if cfg.choose_rounding:
        energy = choose_rounding(net, groups, cfg, task, energy, progress)
    quantiser = _STEQuantiser(net, cfg, groups, energy)
    net.weight_transform = quantiser
    if progress:
        acc, _ = evaluate(net, task.x_test, task.y_test, task.lengths_test)
        budget = f" (CAM budget {quantiser.budget} of {cfg.max_fan_in}, gradual pruning)" if quantiser.budget > cfg.max_fan_in else ""
        progress(Progress(0.0, f"quantised before fine-tuning{budget}: test accuracy {acc:.3f}"))
    if cfg.qat.epochs > 0:
        # the float model's own logits are the soft targets of distillation (before it was made leaky)
        distill = (Distillation(logits_of(src, task.x_train, task.lengths_train), cfg.distill_weight, cfg.distill_temperature)
                   if cfg.distill_weight > 0 else None)
        net.spikes_per_step = cfg.qat_spikes_per_step
        try:
            train(net, task, cfg.qat, progress=progress, cancel=cancel, after_epoch=quantiser.refit, distill=distill)
        finally:
            net.spikes_per_step = None  # the constrained network is a rate network; the whole spikes were training's
    net.weight_transform = None
    check_finite_weights(net, "the fine-tuned model (QAT diverged)")
    final = quantiser.quantise(final=True)
    _load_stacked(net, final.weights(groups))
    return ConstrainedNetwork(net, final.multiplicity, groups, final.scale, cfg.precision, cfg.max_fan_in,
                              final.input_gain, final.bias_gain, energy is not None)


def choose_rounding(net: RateRNN, groups: np.ndarray, cfg: ConstraintConfig, task: Task, energy: np.ndarray,
                    progress: ProgressSink | None = None, max_samples: int = 1000) -> np.ndarray | None:
    """The column energies of the better rounding for ``net``: ``energy`` (error-aware) or None (plain).

    Each is tried once (:func:`quantise` with the chip's budget, no fine-tuning) and the quantised
    network evaluated on (at most ``max_samples`` of) the *training* set; the test set is not
    looked at.  Ties go to ``cfg.error_aware``.
    """
    w = stacked_weights(net)
    n = min(len(task.x_train), max_samples)
    scores = {}
    for aware, e in ((False, None), (True, energy)):
        trial = copy.deepcopy(net)
        _load_stacked(trial, quantise(w, groups, cfg.precision, cfg.max_fan_in, e, source_gains_of(cfg)).weights(groups))
        scores[aware] = evaluate(trial, task.x_train[:n], task.y_train[:n], task.lengths_train[:n])[0]
    aware = scores[True] > scores[False] or (scores[True] == scores[False] and cfg.error_aware)
    if progress:
        progress(Progress(0.0, f"rounding on the training set before fine-tuning: plain {scores[False]:.3f}, "
                               f"error-aware {scores[True]:.3f} -> {'error-aware' if aware else 'plain'}"))
    return energy if aware else None
