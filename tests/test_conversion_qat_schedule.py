"""The QAT fine-tune's schedule: gradual pruning of the CAM budget and distillation from the float model.

Gradual pruning trains with a larger CAM budget first; these tests fail when the budget does not
start dense, does not shrink to the chip's, or when the network that comes out uses more than the
chip's 63 entries.  Distillation must actually teach the student the teacher's answers.
"""

import dataclasses

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion.constrain import (
    ConstraintConfig,
    WeightPrecision,
    constrain,
    fan_in_schedule,
    stacked_weights,
)
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import Distillation, TrainConfig, evaluate, train


def test_the_budget_schedule_starts_dense_shrinks_monotonically_and_ends_at_the_chips():
    budgets = [fan_in_schedule(e, 6, 300, 63) for e in range(10)]
    assert budgets[0] == 300
    assert all(a >= b for a, b in zip(budgets, budgets[1:], strict=False))
    assert budgets[6:] == [63] * 4 and min(budgets) == 63
    assert 63 < budgets[3] < 300  # halfway through the cosine, between the two
    assert [fan_in_schedule(e, 0, 300, 63) for e in range(3)] == [63] * 3  # off: the chip's budget throughout
    assert fan_in_schedule(0, 6, 40, 63) == 63  # a network that needs less than the chip's budget is never over it
    with pytest.raises(ValueError, match="prune_epochs"):
        ConstraintConfig(prune_epochs=-1)


def _small_leaky(h: int = 24, seed: int = 0) -> RateRNN:
    torch.manual_seed(seed)
    return RateRNN(RNNConfig(8, h, 10, kind="leaky", retention=0.85, steps_per_sample=1, saturation=1.0))


def test_gradual_pruning_fine_tunes_with_a_larger_budget_and_delivers_the_chips():
    task = seq_digits().subset(120, 40)
    model = _small_leaky()
    messages = []
    cfg = ConstraintConfig(precision=WeightPrecision(16), max_fan_in=12, n_core_groups=2, prune_epochs=2,
                           qat=TrainConfig(epochs=3, lr=2e-3))
    net = constrain(model, task, cfg, 0.85, 1, progress=lambda p: messages.append(p.message), saturation=1.0)
    first = messages[0]
    assert "gradual pruning" in first
    start_budget = int(first.split("CAM budget ")[1].split(" ")[0])
    assert start_budget > 12
    assert net.fan_in().max() <= 12  # the chip's budget, whatever the fine-tune trained with
    assert np.allclose(stacked_weights(net.model), net.weights(), atol=1e-6)
    plain = constrain(model, task, dataclasses.replace(cfg, prune_epochs=0), 0.85, 1, progress=messages.append,
                      saturation=1.0)
    assert plain.fan_in().max() <= 12


def test_distillation_teaches_the_teachers_answers_not_the_labels():
    task = seq_digits().subset(200, 100)
    rng = np.random.default_rng(0)
    teacher = 8.0 * np.eye(10, dtype=np.float32)[task.y_train]  # a confident teacher that knows the true classes
    task.y_train = rng.permutation(task.y_train)  # the labels the student is given are shuffled: no signal
    accs = {}
    for weight in (0.0, 1.0):
        model = _small_leaky(32, seed=1)
        train(model, task, TrainConfig(epochs=30, lr=2e-2, noise_std=0.0, batch_size=16),
              distill=Distillation(teacher, weight, 2.0))
        accs[weight] = evaluate(model, task.x_test, task.y_test, task.lengths_test)[0]
    assert accs[1.0] > 0.35 and accs[1.0] > accs[0.0] + 0.25  # measured: 0.50 vs 0.02 (chance 0.10)
    with pytest.raises(ValueError, match="distillation logits"):
        train(_small_leaky(), task, TrainConfig(epochs=1), distill=Distillation(teacher[:5], 0.5))
    with pytest.raises(ValueError, match="weight"):
        Distillation(teacher, 1.5)
