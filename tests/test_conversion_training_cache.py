"""Trained float models are cached by what they depend on (the bench's and scripts' reuse)."""

import torch

from neurolab_gui.core.conversion.checkpoint import load_checkpoint
from neurolab_gui.core.conversion.pipeline import PipelineConfig, cached_model_path, train_model_cached, training_key
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig


def test_a_cached_model_is_reused_only_for_the_same_data_and_settings(tmp_path):
    torch.set_num_threads(1)
    task = seq_digits().subset(60, 10)
    cfg = PipelineConfig(n_hidden=12, steps_per_sample=1, train=TrainConfig(epochs=1))
    first, cached = train_model_cached(task, cfg, str(tmp_path))
    assert not cached and len(list(tmp_path.glob("seq_digits-*.pt"))) == 1
    meta = load_checkpoint(cached_model_path(task, cfg, str(tmp_path))).metadata
    assert 0.0 <= meta["test_accuracy"] <= 1.0 and 0.0 <= meta["train_accuracy"] <= 1.0
    assert meta["train_cpu_s"] > 0 and meta["train_wall_s"] > 0  # what bench/float_baselines.py reports
    again, cached = train_model_cached(task, cfg, str(tmp_path))
    assert cached
    for a, b in zip(first.state_dict().values(), again.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    key = training_key(task, cfg)
    cfg.train.seed = 1
    assert training_key(task, cfg) != key
    cfg.train.seed = 0
    cfg.train_fan_in = not cfg.train_fan_in
    assert training_key(task, cfg) != key
    cfg.train_fan_in = not cfg.train_fan_in
    assert training_key(task.subset(50, 10), cfg) != key  # other data
    _, cached = train_model_cached(task, cfg, None)
    assert not cached
