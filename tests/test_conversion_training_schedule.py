"""Float-training schedule and inputs: the noise warm-up, and MNIST-1D presented in chunks of samples."""

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion import tasks
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.pipeline import config_for_task, training_key
from neurolab_gui.core.conversion.training import TrainConfig, noise_scale_at, train


def test_noise_warmup_ramps_from_zero_to_full_then_stays():
    scales = [noise_scale_at(e, 10, 0.5) for e in range(10)]
    assert scales[:6] == pytest.approx([0.0, 0.2, 0.4, 0.6, 0.8, 1.0])
    assert scales[5:] == [1.0] * 5
    assert [noise_scale_at(e, 10, 0.0) for e in range(10)] == [1.0] * 10
    assert noise_scale_at(0, 1, 0.5) == 1.0, "a one-epoch run trains with the full noise"
    assert [noise_scale_at(e, 2, 0.9) for e in range(2)] == [0.0, 1.0]


def test_training_sees_the_ramped_noises_epoch_by_epoch():
    torch.set_num_threads(1)
    task = tasks.seq_digits().subset(32, 8)
    model = RateRNN(RNNConfig(8, 6, 10, steps_per_sample=1))
    seen: list[float] = []
    forward = model.forward

    def spy(x, lengths=None, noise_std=0.0, count_noise=0.0):
        if model.training:
            seen.extend((noise_std, count_noise))
        return forward(x, lengths, noise_std, count_noise)

    model.forward = spy
    train(model, task, TrainConfig(epochs=4, batch_size=32, noise_std=0.2, count_noise=0.1, noise_warmup=0.5))
    # one batch per epoch: (noise_std, count_noise) of epochs 0..3
    assert seen == pytest.approx([0.0, 0.0, 0.1, 0.05, 0.2, 0.1, 0.2, 0.1])
    with pytest.raises(ValueError, match="noise_warmup"):
        train(model, task, TrainConfig(epochs=1, noise_warmup=1.0))


def test_noise_warmup_reaches_the_float_training_only_and_the_cache_key():
    cfg = config_for_task("seq_digits", noise_warmup=0.25)
    assert cfg.train.noise_warmup == 0.25
    assert cfg.constraint.qat.noise_warmup == 0.0, "QAT fine-tunes with its full noise"
    task = tasks.seq_digits().subset(20, 5)
    assert training_key(task, cfg) != training_key(task, config_for_task("seq_digits", noise_warmup=0.0))


def test_mnist1d_chunks_are_consecutive_samples_of_the_same_signal():
    plain = tasks.mnist1d(num_samples=400, extra_train=0, chunk=1)
    chunked = tasks.mnist1d(num_samples=400, extra_train=0, chunk=4)
    assert chunked.x_train.shape == (320, 10, 8) and chunked.x_test.shape == (80, 10, 8)
    # step 3 holds samples 12..15, each as its (ON, OFF) pair
    assert np.array_equal(chunked.x_test[:, 3], plain.x_test[:, 12:16].reshape(80, 8))
    assert np.array_equal(chunked.y_test, plain.y_test)
    assert "10 steps of 4 sample(s)" in chunked.description
    for bad in (0, 3, 80):
        with pytest.raises(ValueError, match="chunk must divide"):
            tasks.mnist1d(num_samples=100, extra_train=0, chunk=bad)


def test_label_smoothing_is_the_training_loss_and_reaches_the_float_training_only():
    torch.set_num_threads(1)
    task = tasks.seq_digits().subset(32, 8)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 6, 10, steps_per_sample=1))
    with torch.no_grad():
        logits, _ = model(torch.as_tensor(task.x_train))
    expected = torch.nn.functional.cross_entropy(logits, torch.as_tensor(task.y_train), label_smoothing=0.3)
    # lr 0: the weights stay, so the epoch's loss is the smoothed loss of the untrained model
    result = train(model, task, TrainConfig(epochs=1, lr=0.0, batch_size=32, noise_std=0.0, label_smoothing=0.3))
    assert result.train_loss[0] == pytest.approx(float(expected), rel=1e-5)
    assert result.train_loss[0] != pytest.approx(float(torch.nn.functional.cross_entropy(logits, torch.as_tensor(task.y_train))), rel=1e-3)
    cfg = config_for_task("seq_digits", label_smoothing=0.1)
    assert cfg.train.label_smoothing == 0.1 and cfg.constraint.qat.label_smoothing == 0.0


def test_the_builtin_mnist1d_task_is_chunked_with_extra_training_samples():
    t = tasks.load_task("mnist1d")
    assert (tasks.MNIST1D_CHUNK, tasks.MNIST1D_EXTRA_TRAIN) == (4, 4000)
    assert t.x_train.shape == (8000, 10, 8) and t.x_test.shape == (1000, 10, 8)


def test_models_cached_before_the_new_options_keep_their_keys():
    # computed with main bde9bd0, before noise_warmup and label_smoothing existed: a model cached then
    # is found again as long as the options are off (seq_digits' defaults of then: 4 steps per row, no weight
    # decay, 60 epochs)
    old_defaults = config_for_task("seq_digits", steps_per_sample=4, weight_decay=0.0, epochs=60)
    assert training_key(tasks.seq_digits().subset(20, 5), old_defaults) == "0fbe6f399bc51e19"
