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
    qat_epochs_for,
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


def test_qat_length_gives_small_data_sets_enough_optimizer_steps_within_a_cap():
    qat = TrainConfig(epochs=10, batch_size=64)
    assert qat_epochs_for(qat, 270, 200) == 40  # 5 batches per epoch: 40 epochs make 200 steps
    assert qat_epochs_for(qat, 1438, 200) == 10  # 23 batches x 10 epochs are already 230 steps
    assert qat_epochs_for(qat, 20, 200) == 40  # one batch per epoch: capped at 4x the configured epochs
    assert qat_epochs_for(qat, 270, 0) == 10 and qat_epochs_for(TrainConfig(epochs=0), 270, 200) == 0


def _imported_case(tmp_path, n_sequences: int, n_steps: int, seed: int):
    """``(task, model)``: a plain ``nn.RNN(relu)`` saved in a user's nested layout and a data file beside it,
    loaded as ``neurolab convert CKPT --task DATA.npz`` does."""
    from torch import nn

    from neurolab_gui.core.conversion import tasks
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint

    rng = np.random.default_rng(seed)
    x = rng.normal(0, 1.0, (n_sequences, n_steps, 3)).astype(np.float32)
    lengths = np.full(n_sequences, n_steps)
    torch.manual_seed(seed)
    rnn, fc = nn.RNN(3, 8, nonlinearity="relu", batch_first=True), nn.Linear(8, 2)
    torch.save({"rnn": rnn.state_dict(), "readout": fc.state_dict(), "meta": {"nonlinearity": "relu"}}, tmp_path / "m.pt")
    np.savez(tmp_path / "d.npz", x=x, labels=np.arange(n_sequences) % 2, lengths=lengths, x_test=x[:10],
             labels_test=np.arange(10) % 2, lengths_test=lengths[:10])
    return tasks.load_npz_task(tmp_path / "d.npz"), load_checkpoint(tmp_path / "m.pt").model


def test_an_imported_model_on_a_small_data_set_gets_the_longer_fine_tune_unless_epochs_are_given(tmp_path):
    from neurolab_gui.core.conversion.pipeline import config_for_task, prepare_model

    task, model = _imported_case(tmp_path, 70, 6, seed=0)
    prepared = prepare_model(model, task, config_for_task(task.name, model.config))
    assert prepared.cfg.constraint.qat.epochs == 40  # 2 batches per epoch: 100 epochs wanted, 4 x 10 allowed
    assert prepared.cfg.constraint.qat.lr == 5e-3 and prepared.cfg.constraint.choose_rounding  # imported: learns the dynamics too
    assert any("QAT learning rate 0.005 (was 0.002)" in note for note in prepared.notes)
    assert any("QAT fine-tune 40 epochs" in note for note in prepared.notes)
    asked = prepare_model(model, task, config_for_task(task.name, model.config, qat_epochs=3))
    assert asked.cfg.constraint.qat.epochs == 3 and not any("QAT fine-tune" in note for note in asked.notes)


def test_an_imported_model_gets_the_imported_time_mapping_unless_the_user_sets_one(tmp_path):
    """Imported Elman models map onto 2 RNN steps per input step, retention 0.7 and saturation 2
    (docs/decisions.md, "Time mapping of imported models"); a mapping the user gives is kept."""
    from neurolab_gui.core.conversion.mapping import map_network
    from neurolab_gui.core.conversion.pipeline import config_for_task, constrained_network, prepare_model

    task, model = _imported_case(tmp_path, 40, 5, seed=1)
    cfg = config_for_task(task.name, model.config, qat_epochs=1)
    assert (cfg.steps_per_sample, cfg.saturation) == (4, 1.0)  # the built-in tasks' mapping, before preparation
    prepared, net = constrained_network(model, task, cfg)
    assert (prepared.cfg.steps_per_sample, prepared.cfg.retention, prepared.cfg.saturation) == (2, 0.7, 2.0)
    assert net.model.config.steps_per_sample == 2 and net.model.config.saturation == 2.0
    assert any("steps per sample 2 (was 4)" in note and "saturation 2 (was 1.0)" in note for note in prepared.notes)
    mapped = map_network(net, prepared.cfg.time_mapping(), prepared.cfg.settings)  # the mapping agrees with the network
    assert mapped.time.steps_per_sample == 2
    assert mapped.settings.t_ref_s == pytest.approx(1.0 / (2.0 * prepared.cfg.r_max_hz))  # the refractory period of s = 2
    own = prepare_model(model, task, config_for_task(task.name, model.config, qat_epochs=1, steps_per_sample=4,
                                                     retention=0.85, saturation=1.0))
    assert (own.cfg.steps_per_sample, own.cfg.retention, own.cfg.saturation) == (4, 0.85, 1.0)
    assert not any("time mapping of the imported model" in note for note in own.notes)


def test_with_a_fixed_grid_the_last_epochs_train_on_exactly_the_weights_the_chip_gets():
    from neurolab_gui.core.conversion.constrain import _STEQuantiser, assign_core_groups

    task = seq_digits().subset(120, 40)

    def trained_and_final(fixed: float):
        net = _small_leaky()
        cfg = ConstraintConfig(max_fan_in=12, n_core_groups=2, fixed_grid_fraction=fixed, qat=TrainConfig(epochs=4, lr=5e-2))
        groups = assign_core_groups(stacked_weights(net), cfg.precision, cfg.max_fan_in, cfg.n_core_groups)
        quantiser = _STEQuantiser(net, cfg, groups, None)
        net.weight_transform = quantiser
        scales = []
        train(net, task, cfg.qat, after_epoch=lambda e: (quantiser.refit(e), scales.append(quantiser.current.scale.copy())))
        with torch.no_grad():  # the weights the last epoch's forward passes used (no gain noise in eval mode)
            net.eval()
            w_in, w_bias, w_rec = net.effective_weights()
            used = torch.cat([w_in, w_bias[:, None], w_rec], dim=1).numpy()
        return used, quantiser.quantise(final=True).weights(groups), scales

    used, final, scales = trained_and_final(0.5)  # the last 2 of 4 epochs
    assert np.allclose(used, final, atol=1e-6)  # the network delivered is the one trained last
    assert np.array_equal(scales[-1], scales[-2])  # and the last two epochs shared one grid
    used0, final0, scales0 = trained_and_final(0)
    assert not np.allclose(used0, final0, atol=1e-6)  # refitted once more: a grid the fine-tune never trained on
    with pytest.raises(ValueError, match="fixed_grid_fraction"):
        ConstraintConfig(fixed_grid_fraction=1.5)


@pytest.mark.parametrize("settings, word", [({"distill_weight": 1.5}, "weight"), ({"distill_weight": float("nan")}, "weight"),
                                            ({"distill_temperature": 0.0}, "temperature"),
                                            ({"distill_temperature": float("nan")}, "temperature")])
def test_bad_distillation_settings_are_refused_before_any_training(settings, word):
    from neurolab_gui.core.conversion.constrain import ConstraintConfig
    from neurolab_gui.core.conversion.training import Distillation

    with pytest.raises(ValueError, match=f"distillation {word}"):
        ConstraintConfig(**settings)
    with pytest.raises(ValueError, match=f"distillation {word}"):
        Distillation(np.zeros((2, 3)), settings.get("distill_weight", 0.5), settings.get("distill_temperature", 2.0))


@pytest.mark.parametrize("spikes_per_step", [None, 4.5])
def test_qat_in_whole_spikes_trains_on_the_spikes_and_hands_back_a_rate_network(spikes_per_step, monkeypatch):
    """ConstraintConfig.qat_spikes_per_step: every training forward of the fine-tune carries whole
    spikes (rates in multiples of 1/spikes_per_step); off, it carries rates; either way the
    constrained network that comes out runs in rates."""
    task = seq_digits().subset(60, 20)
    seen = []  # per training forward: were the hidden rates whole spikes?
    forward = RateRNN.forward

    def watched(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        if self.training:
            counts = out[1].detach() * (spikes_per_step or 4.5)
            seen.append(bool(torch.allclose(counts, counts.round(), atol=1e-4)))
        return out

    monkeypatch.setattr(RateRNN, "forward", watched)
    cfg = ConstraintConfig(precision=WeightPrecision(16), max_fan_in=12, n_core_groups=2, qat_spikes_per_step=spikes_per_step,
                           qat=TrainConfig(epochs=2, lr=2e-3))
    net = constrain(_small_leaky(), task, cfg, 0.85, 2, saturation=1.0)
    assert len(seen) >= 2 and all(seen) == any(seen) == (spikes_per_step is not None)
    assert net.model.spikes_per_step is None
    with pytest.raises(ValueError, match="qat_spikes_per_step"):
        ConstraintConfig(qat_spikes_per_step=float("nan"))
