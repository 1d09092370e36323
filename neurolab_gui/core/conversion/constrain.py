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
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

import numpy as np
import torch

from drivers.dynapse1.topology import CAM_ENTRIES_PER_NEURON, N_NEURONS_PER_CORE

from ..jobs import Progress, ProgressSink
from .models import RateRNN, RNNConfig
from .tasks import Task
from .training import TrainConfig, evaluate, train


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


def check_convertible(model: RateRNN, task: Task) -> None:
    """Raise ``ValueError`` unless ``model`` has finite weights and the inputs and classes of ``task``."""
    check_finite_weights(model)
    mc = model.config
    if (mc.n_inputs, mc.n_outputs) != (task.n_features, task.n_classes):
        raise ValueError(f"the model takes {mc.n_inputs} inputs / {mc.n_outputs} classes but task {task.name} has "
                         f"{task.n_features} features / {task.n_classes} classes")


@dataclass(frozen=True)
class WeightPrecision:
    """Integer multiplicity grid: ``n_levels`` signed levels including zero."""

    n_levels: int = 16

    def __post_init__(self) -> None:
        if self.n_levels < 3:
            raise ValueError(f"weight precision needs at least 3 levels (ternary), got {self.n_levels}")

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

    def __post_init__(self) -> None:
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
    scale : float ``[n_groups]`` weight of one CAM copy in each group (activation units)
    precision, max_fan_in : the constraints that were applied
    """

    model: RateRNN
    multiplicity: np.ndarray
    unit_group: np.ndarray
    scale: np.ndarray
    precision: WeightPrecision
    max_fan_in: int

    @property
    def n_inputs(self) -> int:
        return self.model.config.n_inputs

    @property
    def n_hidden(self) -> int:
        return self.model.config.n_hidden

    def fan_in(self) -> np.ndarray:
        """CAM entries used by every hidden unit (sum of |multiplicity|)."""
        return np.abs(self.multiplicity).sum(1)

    def weights(self) -> np.ndarray:
        """``scale[group] * multiplicity``: the float weights the constrained model uses."""
        return self.scale[self.unit_group][:, None] * self.multiplicity

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
            "units_per_group": [int((self.unit_group == g).sum()) for g in range(len(self.scale))],
        }


def stacked_weights(model: RateRNN) -> np.ndarray:
    """``[w_in | w_bias | w_rec]`` as one ``[H, F + 1 + H]`` array (float weights, no transform)."""
    with torch.no_grad():
        return torch.cat([model.w_in, model.w_bias[:, None], model.w_rec], dim=1).cpu().numpy().astype(np.float64)


def project_row_multiplicities(v: np.ndarray, precision: WeightPrecision, budget: int) -> np.ndarray:
    """Integer multiplicities close to ``v`` (in copies) on the grid with ``sum |m| <= budget`` per row.

    ``v`` is ``[rows, n]`` and must be finite; see the module docstring for the greedy rule.  Every
    pass takes one copy from every row still over budget, so the loop ends after at most
    ``max(excess)`` passes (never more than ``n * max(|m_min|, m_max)``).
    """
    v = np.atleast_2d(np.asarray(v, dtype=np.float64))
    if not np.isfinite(v).all():  # NaN cast to int64 is INT64_MIN: |m| sums would wrap around
        raise NonFiniteWeightsError(f"cannot quantise non-finite weights ({int(np.isnan(v).sum())} NaN, "
                                    f"{int(np.isinf(v).sum())} infinite of {v.size})")
    m = np.clip(np.rint(v), precision.m_min, precision.m_max).astype(np.int64)
    av = np.abs(v)
    excess = np.abs(m).sum(1) - budget
    rows = np.flatnonzero(excess > 0)
    for _ in range(int(excess.max(initial=0))):
        if not rows.size:
            break
        mag = np.abs(m[rows])
        cost = 2.0 * (av[rows] - mag) + 1.0
        cost[mag == 0] = np.inf
        j = np.argmin(cost, axis=1)
        m[rows, j] -= np.sign(m[rows, j])
        excess[rows] -= 1
        rows = rows[excess[rows] > 0]
    return m


def _best_scale(w: np.ndarray, precision: WeightPrecision, budget: int, n_grid: int = 40) -> float:
    """Scale on a geometric grid minimising the squared error of ``w`` after projection."""
    peak = float(np.max(np.abs(w)))
    if not np.isfinite(peak):
        raise NonFiniteWeightsError("cannot choose a weight scale for non-finite weights")
    if peak == 0.0:
        return 1.0
    top = peak / 0.5  # even a 1-copy weight at this scale rounds most weights to zero
    low = peak / (4.0 * max(precision.m_max, 1))
    best_q, best_err = top, np.inf
    for q in np.geomspace(low, top, n_grid):
        err = float(np.sum((w - q * project_row_multiplicities(w / q, precision, budget)) ** 2))
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


def quantise(w: np.ndarray, groups: np.ndarray, precision: WeightPrecision, budget: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group scales and multiplicities for stacked weights ``w``."""
    n_groups = int(groups.max()) + 1
    scales = np.array([_best_scale(w[groups == g], precision, budget) for g in range(n_groups)])
    m = project_row_multiplicities(w / scales[groups][:, None], precision, budget)
    return scales, m


class _STEQuantiser:
    """Weight transform for QAT: forward with projected weights, gradient straight through.

    Scales and groups are refitted after every epoch (:meth:`refit`); the multiplicities are
    re-projected on every forward pass so that pruned connections can come back.
    """

    def __init__(self, model: RateRNN, cfg: ConstraintConfig, groups: np.ndarray) -> None:
        self.model = model
        self.cfg = cfg
        self.groups = groups
        self.scales = np.ones(int(groups.max()) + 1)
        self.refit()

    def refit(self, _epoch: int = 0) -> None:
        self.scales, _ = quantise(stacked_weights(self.model), self.groups, self.cfg.precision, self.cfg.max_fan_in)

    def __call__(self, w_in: torch.Tensor, w_bias: torch.Tensor, w_rec: torch.Tensor):
        f = w_in.shape[1]
        stacked = torch.cat([w_in, w_bias[:, None], w_rec], dim=1)
        q = self.scales[self.groups][:, None]
        m = project_row_multiplicities(stacked.detach().cpu().numpy() / q, self.cfg.precision, self.cfg.max_fan_in)
        wq = torch.as_tensor(q * m, dtype=stacked.dtype, device=stacked.device)
        sigma = self.cfg.gain_noise_std
        if sigma > 0 and self.model.training:
            h = wq.shape[0]
            f_exc = torch.exp(sigma * torch.randn(h, 1, device=wq.device) - 0.5 * sigma**2)
            f_inh = torch.exp(sigma * torch.randn(h, 1, device=wq.device) - 0.5 * sigma**2)
            wq = torch.where(wq > 0, wq * f_exc, wq * f_inh)
        ste = stacked + (wq - stacked).detach()
        return ste[:, :f], ste[:, f], ste[:, f + 1 :]


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


def normalize_activations(model: RateRNN, x: np.ndarray, percentile: float = 99.9) -> float:
    """Rescale an Elman model with an *unbounded* ReLU so its activations fit in [0, 1] (in place).

    A ReLU RNN is positively homogeneous: dividing ``w_in`` and ``w_bias`` by ``lam`` and
    multiplying the readout weights by ``lam`` leaves its logits unchanged while every hidden
    activation shrinks by ``lam`` (``w_rec`` is unchanged).  ``lam`` is the ``percentile`` of
    the activations on ``x`` (snntoolbox's robust normalisation).  Returns ``lam``.
    """
    if model.config.kind != "elman":
        raise ValueError("normalize_activations applies to imported Elman models")
    with torch.no_grad():
        xt = torch.as_tensor(x[:512], dtype=torch.float32)
        h = torch.zeros(len(xt), model.config.n_hidden)
        acts = []
        for t in range(xt.shape[1]):
            h = torch.relu(xt[:, t] @ model.w_in.T + model.w_bias + h @ model.w_rec.T)
            acts.append(h)
        stacked = torch.stack(acts)
        if not bool(torch.isfinite(stacked).all()):
            raise NonFiniteWeightsError("the imported model's activations overflow to inf/NaN on the task's data; "
                                        "its weights are too large to rescale")
        lam = float(np.percentile(stacked.numpy(), percentile))
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
    quantiser = _STEQuantiser(net, cfg, groups)
    net.weight_transform = quantiser
    if progress:
        acc, _ = evaluate(net, task.x_test, task.y_test, task.lengths_test)
        progress(Progress(0.0, f"quantised before fine-tuning: test accuracy {acc:.3f}"))
    if cfg.qat.epochs > 0:
        train(net, task, cfg.qat, progress=progress, cancel=cancel, after_epoch=quantiser.refit)
    net.weight_transform = None
    check_finite_weights(net, "the fine-tuned model (QAT diverged)")
    scales, m = quantise(stacked_weights(net), groups, cfg.precision, cfg.max_fan_in)
    w = scales[groups][:, None] * m
    f = net.config.n_inputs
    with torch.no_grad():
        net.w_in.copy_(torch.as_tensor(w[:, :f]))
        net.w_bias.copy_(torch.as_tensor(w[:, f]))
        net.w_rec.copy_(torch.as_tensor(w[:, f + 1 :]))
    return ConstrainedNetwork(net, m, groups, scales, cfg.precision, cfg.max_fan_in)
