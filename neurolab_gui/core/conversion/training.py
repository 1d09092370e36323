"""BPTT training of :class:`.models.RateRNN` with progress reporting and cancellation.

Seeded (torch, numpy) so that a run is repeatable on one machine; CPU by default, CUDA when
present and asked for (``device="auto"``).  Long operations in the conversion package share one
calling convention, the core's job model (:mod:`neurolab_gui.core.jobs`): ``progress`` receives a
:class:`~neurolab_gui.core.jobs.Progress` now and then, and ``cancel`` is a
:class:`~neurolab_gui.core.jobs.CancelToken` (any :class:`threading.Event`); once it is set the
loop stops at the next batch and raises :class:`Cancelled`, leaving the model with the weights
of the last finished step.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from ..jobs import Progress, ProgressSink, check_cancel
from .models import RateRNN
from .tasks import Task


def pick_device(device: str = "cpu") -> torch.device:
    """``"cpu"``, ``"cuda"`` or ``"auto"`` (CUDA when available)."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but torch sees no CUDA GPU; use 'cpu' or 'auto'")
    return torch.device(device)


@dataclass
class TrainConfig:
    """Hyper-parameters of one BPTT run."""

    epochs: int = 30
    lr: float = 3e-3
    batch_size: int = 64
    noise_std: float = 0.05  # pre-activation noise (activation units), for robustness to spike noise
    #: Spike-count noise of the leaky model's synaptic filter (see ``RateRNN.forward``); the
    #: conversion pipeline sets it from its time mapping (``PipelineConfig.spike_fano``).
    count_noise: float = 0.0
    rate_penalty: float = 0.0  # L2 on mean rates: fewer spikes per inference
    weight_decay: float = 0.0
    seed: int = 0
    device: str = "cpu"
    grad_clip: float = 1.0
    #: Data augmentation (float training only; QAT and fine-tuning leave it off): every training
    #: sequence of a batch is moved by a random whole number of steps in ``[-shift[0], shift[0]]``
    #: along time and of channels in ``[-shift[1], shift[1]]`` along the feature axis, zero-filled
    #: (for image rows, a translation of the image).  Meant for fixed-length sequences: the
    #: padded window moves, the lengths stay.
    shift: tuple[int, int] = (0, 0)
    #: Noise warm-up: over the first ``noise_warmup`` fraction of the epochs both noises
    #: (``noise_std`` and ``count_noise``) rise linearly from zero to their set values, so the
    #: network first finds its features and then learns the margins against the noise; the last
    #: epochs always train with the full noise.  0: full noise from the first epoch.
    noise_warmup: float = 0.0
    #: Label smoothing of the cross-entropy (the targets give ``label_smoothing`` of their mass to
    #: all classes evenly): a regulariser against over-confident logits on small training sets.
    label_smoothing: float = 0.0


@dataclass
class Distillation:
    """Soft targets for :func:`train`: a teacher's logits ``[N_train, C]`` on the training set.

    The loss becomes ``(1 - weight) CE + weight T^2 KL(softmax(teacher / T) || softmax(student / T))``
    (Hinton et al. 2015); the QAT fine-tune distils the float model into the constrained one.
    """

    logits: np.ndarray
    weight: float = 0.5
    temperature: float = 2.0

    def __post_init__(self) -> None:
        check_distillation(self.weight, self.temperature)


def check_distillation(weight: float, temperature: float) -> None:
    """Refuse a distillation weight outside [0, 1] or a temperature that is not positive.

    :class:`Distillation` checks its own; :class:`.constrain.ConstraintConfig` checks the settings
    it will build one from, so a bad one is refused before any training starts.
    """
    if not 0.0 <= weight <= 1.0:
        raise ValueError(f"distillation weight must lie in [0, 1], got {weight}")
    if not temperature > 0.0:
        raise ValueError(f"distillation temperature must be > 0, got {temperature}")


#: :meth:`TrainResult.noise_reliance` above which the user is warned: 10 points of training accuracy
#: (the ECG model that needed its noise showed 0.85 with and 0.59 without; the MNIST-1D and sequential-digits
#: models of seed 0 -0.03 and -0.002, better without: docs/decisions.md, "ECG baseline")
NOISE_RELIANCE_WARNING = 0.10


@dataclass
class TrainResult:
    """Per-epoch history of a training run."""

    train_loss: list[float] = field(default_factory=list)
    #: per epoch, as trained: with the training noises on
    train_accuracy: list[float] = field(default_factory=list)
    test_accuracy: float = float("nan")
    #: the trained model on its own training set without noise (NaN: not measured)
    clean_train_accuracy: float = float("nan")

    def noise_reliance(self) -> float:
        """How much more the model gets right on its training set with the training noises on than
        without (last epoch; NaN when either is unknown).  A model that needs its noise to work has
        learned from it (e.g. rectified pre-activation noise lifting near-silent units), and neither
        the clean network nor the board has it."""
        if not self.train_accuracy:
            return float("nan")
        return float(self.train_accuracy[-1] - self.clean_train_accuracy)

    def noise_reliance_warning(self, threshold: float = NOISE_RELIANCE_WARNING) -> str | None:
        """A warning for the user when :meth:`noise_reliance` exceeds ``threshold``, else None."""
        gap = self.noise_reliance()
        if not gap > threshold:
            return None
        return (f"the model relies on its training noise: training accuracy {self.train_accuracy[-1]:.3f} with noise, "
                f"{self.clean_train_accuracy:.3f} without; retrain with less pre-activation noise (--noise), "
                "the clean network and the board do not have it")


def seed_everything(seed: int) -> None:
    torch.manual_seed(seed)
    np.random.seed(seed % (2**32))


def random_shift(x: torch.Tensor, max_shift: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """``x [N, T, F]`` with each sequence moved by its own random ``(dt, df)``, zero-filled (see ``TrainConfig.shift``)."""
    max_t, max_f = (int(v) for v in max_shift)
    if max_t < 0 or max_f < 0:
        raise ValueError(f"shift must be non-negative step and channel counts, got {max_shift}")
    if max_t == 0 and max_f == 0:
        return x
    n, t, f = x.shape
    dt = torch.randint(-max_t, max_t + 1, (n,), generator=generator)
    df = torch.randint(-max_f, max_f + 1, (n,), generator=generator)
    # source index of every output position; out-of-range sources read the zero pad at index -1
    src_t = torch.arange(t)[None, :] - dt[:, None]  # [N, T]
    src_f = torch.arange(f)[None, :] - df[:, None]  # [N, F]
    padded = torch.nn.functional.pad(x, (0, 1, 0, 1))  # [N, T+1, F+1]; the last row/column is zero
    src_t = torch.where((src_t >= 0) & (src_t < t), src_t, t).to(x.device)
    src_f = torch.where((src_f >= 0) & (src_f < f), src_f, f).to(x.device)
    rows = padded[torch.arange(n, device=x.device)[:, None], src_t]  # [N, T, F+1]
    return torch.gather(rows, 2, src_f[:, None, :].expand(n, t, f))


def noise_scale_at(epoch: int, epochs: int, warmup: float) -> float:
    """The factor on the training noises in ``epoch`` (0-based) of ``epochs`` (see ``TrainConfig.noise_warmup``)."""
    ramp_epochs = min(warmup * epochs, epochs - 1)  # the last epoch trains with the full noise, however short the run
    if ramp_epochs <= 0.0:
        return 1.0
    return min(1.0, epoch / ramp_epochs)


def _batches(model: RateRNN, x: np.ndarray, lengths: np.ndarray | None, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """``(logits, rates, lengths)`` of ``model`` on ``x``, batch by batch (eval mode, no noise, no gradient)."""
    device = next(model.parameters()).device
    model.eval()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            xb = torch.as_tensor(x[i : i + batch_size], device=device)
            lb = (torch.full((len(xb),), xb.shape[1], dtype=torch.long, device=device) if lengths is None
                  else torch.as_tensor(lengths[i : i + batch_size], device=device))
            logits, rates = model(xb, lb)
            yield logits, rates, lb


def evaluate(model: RateRNN, x: np.ndarray, y: np.ndarray, lengths: np.ndarray | None = None, batch_size: int = 512) -> tuple[float, np.ndarray]:
    """Test accuracy and the predicted labels of ``model`` (no noise, no gradient)."""
    pred = np.concatenate([logits.argmax(1).cpu().numpy() for logits, _, _ in _batches(model, x, lengths, batch_size)])
    return float(np.mean(pred == y)), pred


def mean_rates(model: RateRNN, x: np.ndarray, lengths: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
    """Activations ``r_t`` ``[N, T*k, H]`` of ``model`` on ``x`` (no noise)."""
    return np.concatenate([rates.cpu().numpy() for _, rates, _ in _batches(model, x, lengths, batch_size)])


def logits_of(model: RateRNN, x: np.ndarray, lengths: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
    """Logits ``[N, C]`` of ``model`` on ``x`` (no noise, no gradient): a teacher's soft targets."""
    return np.concatenate([logits.cpu().numpy() for logits, _, _ in _batches(model, x, lengths, batch_size)])


def readout_features(model: RateRNN, x: np.ndarray, lengths: np.ndarray | None = None, batch_size: int = 512) -> np.ndarray:
    """What the readout of ``model`` sees on ``x``, ``[N, H]`` (no noise): the RNN's side of a board's decoded features."""
    return np.concatenate([model.readout_features(rates, lb).cpu().numpy() for _, rates, lb in _batches(model, x, lengths, batch_size)])


def train(
    model: RateRNN,
    task: Task,
    config: TrainConfig | None = None,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
    after_epoch: Callable[[int], None] | None = None,
    distill: Distillation | None = None,
) -> TrainResult:
    """Train ``model`` on ``task`` with Adam and cross-entropy (BPTT through the whole sequence).

    ``after_epoch(epoch)`` runs after every epoch (quantisation-aware training uses it to refit
    scales and masks).  ``distill``: a teacher's logits on the training set as soft targets
    (:class:`Distillation`).  Progress is reported once per epoch.
    """
    cfg = config or TrainConfig()
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    model.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, cfg.epochs))
    loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
    x_all = torch.as_tensor(task.x_train, device=device)
    y_all = torch.as_tensor(task.y_train, device=device)
    l_all = torch.as_tensor(task.lengths_train, device=device)
    teacher = None
    if distill is not None and distill.weight > 0:
        alpha, temp = float(distill.weight), float(distill.temperature)
        if distill.logits.shape != (len(x_all), model.config.n_outputs):
            raise ValueError(f"distillation logits must be [{len(x_all)}, {model.config.n_outputs}], "
                             f"got {list(distill.logits.shape)}")
        teacher = torch.log_softmax(torch.as_tensor(distill.logits, dtype=torch.float32, device=device) / temp, dim=1)
    gen = torch.Generator().manual_seed(cfg.seed)
    result = TrainResult()
    n = len(x_all)
    n_batches = max(1, (n + cfg.batch_size - 1) // cfg.batch_size)
    if not 0.0 <= cfg.noise_warmup < 1.0:
        raise ValueError(f"noise_warmup must lie in [0, 1), got {cfg.noise_warmup}")
    for epoch in range(cfg.epochs):
        model.train()
        noise_scale = noise_scale_at(epoch, cfg.epochs, cfg.noise_warmup)
        order = torch.randperm(n, generator=gen).to(device)
        total_loss, correct = 0.0, 0
        for b in range(n_batches):
            check_cancel(cancel)
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            xb = random_shift(x_all[idx], cfg.shift, gen)
            logits, rates = model(xb, l_all[idx], noise_std=noise_scale * cfg.noise_std,
                                  count_noise=noise_scale * cfg.count_noise)
            loss = loss_fn(logits, y_all[idx])
            if teacher is not None:
                kd = nn.functional.kl_div(torch.log_softmax(logits / temp, dim=1), teacher[idx], log_target=True,
                                          reduction="batchmean")
                loss = (1.0 - alpha) * loss + alpha * temp**2 * kd
            if cfg.rate_penalty > 0:
                loss = loss + cfg.rate_penalty * (rates.mean(dim=(0, 1)) ** 2).sum()
            opt.zero_grad()
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == y_all[idx]).sum())
        sched.step()
        if after_epoch is not None:
            after_epoch(epoch)
        result.train_loss.append(total_loss / n)
        result.train_accuracy.append(correct / n)
        if progress is not None:
            progress(Progress((epoch + 1) / cfg.epochs,
                              f"epoch {epoch + 1}/{cfg.epochs}: loss {total_loss / n:.3f}, train accuracy {correct / n:.3f}"))
    result.test_accuracy, _ = evaluate(model, task.x_test, task.y_test, task.lengths_test)
    return result
