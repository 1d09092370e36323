"""Rounding chosen per network: plain or error-aware, whichever quantises it better on the training set."""

import numpy as np
import torch

from neurolab_gui.core.conversion.constrain import ConstraintConfig, constrain
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig, evaluate, train


def _trained_small_model(task):
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 24, 10, kind="leaky", retention=0.8, steps_per_sample=2, saturation=1.0))
    train(model, task, TrainConfig(epochs=4, lr=1e-2, batch_size=32))
    with torch.no_grad():  # small biases and inputs next to the recurrent weights: the two roundings differ
        model.w_bias.mul_(0.05)
        model.w_in.mul_(0.2)
        model.w_rec.mul_(3.0)
    return model


def test_the_chosen_rounding_is_the_one_more_accurate_on_the_training_set_and_is_reported():
    task = seq_digits().subset(200, 40)
    model = _trained_small_model(task)

    def run(**kw):
        return constrain(model, task, ConstraintConfig(max_fan_in=20, n_core_groups=1, qat=TrainConfig(epochs=0), **kw))

    plain, aware = run(error_aware=False), run(error_aware=True)
    assert not plain.error_aware and aware.error_aware
    assert not np.array_equal(plain.multiplicity, aware.multiplicity)  # the two roundings really differ here
    train_acc = {net.error_aware: evaluate(net.model, task.x_train, task.y_train, task.lengths_train)[0] for net in (plain, aware)}
    assert train_acc[True] != train_acc[False]
    messages = []
    chosen = run(choose_rounding=True, error_aware=False)
    better = max(train_acc, key=train_acc.get)
    assert chosen.error_aware == better and chosen.summary()["rounding"] == ("error-aware" if better else "plain")
    assert np.array_equal(chosen.multiplicity, (aware if better else plain).multiplicity)
    constrain(model, task, ConstraintConfig(max_fan_in=20, n_core_groups=1, qat=TrainConfig(epochs=0), choose_rounding=True),
              progress=lambda p: messages.append(p.message))
    assert any(f"plain {train_acc[False]:.3f}, error-aware {train_acc[True]:.3f}" in m for m in messages)
