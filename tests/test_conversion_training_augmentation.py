"""Float-training augmentation: random shifts of the training sequences, and more MNIST-1D samples."""

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion import tasks
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.pipeline import config_for_task, training_key
from neurolab_gui.core.conversion.training import TrainConfig, random_shift, train


def _shifted_by_hand(x: np.ndarray, dt: int, df: int) -> np.ndarray:
    out = np.zeros_like(x)
    t, f = x.shape
    for i in range(t):
        for j in range(f):
            if 0 <= i - dt < t and 0 <= j - df < f:
                out[i, j] = x[i - dt, j - df]
    return out


def test_random_shift_translates_each_sequence_with_zero_fill():
    x = torch.rand(40, 5, 4) + 0.1  # no zeros inside, so the fill is visible
    out = random_shift(x, (2, 1), torch.Generator().manual_seed(3)).numpy()
    seen = set()
    for xi, oi in zip(x.numpy(), out, strict=True):
        matches = [(dt, df) for dt in range(-2, 3) for df in range(-1, 2) if np.array_equal(oi, _shifted_by_hand(xi, dt, df))]
        assert len(matches) == 1, "every sequence is one whole-step, whole-channel translation"
        seen.add(matches[0])
    assert len(seen) > 5  # the shifts vary between sequences
    again = random_shift(x, (2, 1), torch.Generator().manual_seed(3))
    assert torch.equal(again, torch.as_tensor(out)), "the same generator state gives the same shifts"


def test_no_shift_is_the_identity_and_draws_nothing():
    x = torch.rand(3, 4, 2)
    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    assert random_shift(x, (0, 0), gen) is x
    assert torch.equal(gen.get_state(), state), "a run without augmentation keeps its random stream"
    with pytest.raises(ValueError, match="non-negative"):
        random_shift(x, (-1, 0), gen)


def test_training_with_shift_is_seeded_and_differs_from_without():
    torch.set_num_threads(1)
    task = tasks.seq_digits().subset(64, 16)

    def weights(shift):
        torch.manual_seed(0)
        model = RateRNN(RNNConfig(8, 8, 10, steps_per_sample=1))
        train(model, task, TrainConfig(epochs=1, batch_size=32, shift=shift))
        return model.w_rec.detach().clone()

    assert torch.equal(weights((1, 1)), weights((1, 1)))
    assert not torch.equal(weights((1, 1)), weights((0, 0)))


def test_task_defaults_reach_the_float_training_only_and_the_cache_key():
    cfg = config_for_task("seq_digits", batch_size=8, shift=(1, 0))
    assert cfg.train.batch_size == 8 and cfg.train.shift == (1, 0)
    assert cfg.constraint.qat.shift == (0, 0), "QAT trains on the data as they are"
    task = tasks.seq_digits().subset(20, 5)
    assert training_key(task, cfg) != training_key(task, config_for_task("seq_digits", batch_size=8, shift=(0, 0)))


def test_weight_decay_option_reaches_the_float_training_only_and_the_cache_key():
    cfg = config_for_task("seq_digits", weight_decay=2e-4)
    assert cfg.train.weight_decay == 2e-4
    assert cfg.constraint.qat.weight_decay == 0.0, "QAT keeps its own (none)"
    task = tasks.seq_digits().subset(20, 5)
    assert training_key(task, cfg) != training_key(task, config_for_task("seq_digits", weight_decay=0.0))


def test_mnist1d_extra_training_samples_keep_the_standard_test_set():
    base = tasks.mnist1d(num_samples=400, extra_train=0)
    more = tasks.mnist1d(num_samples=400, extra_train=200)
    assert np.array_equal(base.x_test, more.x_test) and np.array_equal(base.y_test, more.y_test)
    assert np.array_equal(base.x_train, more.x_train[: len(base.x_train)])
    assert len(more.x_train) == len(base.x_train) + 200
    extra = more.x_train[len(base.x_train):]
    assert not any(np.array_equal(extra[0], s) for s in base.x_train), "the extra samples are new draws"
    assert np.bincount(more.y_train[len(base.y_train):]).tolist() == [20] * 10
    with pytest.raises(ValueError, match="extra_train"):
        tasks.mnist1d(num_samples=100, extra_train=-1)
