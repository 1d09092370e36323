"""User data files with raw signed features, mean/std and variable lengths; imported models on them.

The oracle for the input handling is the user's own model: a plain ``nn.RNN(relu)`` + ``nn.Linear``
run by PyTorch on the z-scored raw features must give the same logits as NeuroLab's float model on
the encoded rate channels with the split input weights.
"""

import numpy as np
import pytest
import torch
from torch import nn

from neurolab_gui.core.conversion import tasks
from neurolab_gui.core.conversion.checkpoint import load_checkpoint
from neurolab_gui.core.conversion.encoding import InputEncoding
from neurolab_gui.core.conversion.pipeline import PipelineConfig, prepare_model
from neurolab_gui.core.conversion.torch_import import elman_logits


def _signed_data(rng, n=60, t=9, f=3):
    x = (rng.normal(0, 2.0, (n, t, f)) + np.array([5.0, -1.0, 0.0])[:f]).astype(np.float32)
    lengths = rng.integers(3, t + 1, n)
    x[np.arange(t)[None, :] >= lengths[:, None]] = 0.0  # zero padding after the valid steps
    return x, lengths, np.arange(n) % 3


class UserModel(nn.Module):
    def __init__(self, f=3, h=16, c=3, nonlinearity="relu"):
        super().__init__()
        self.rnn = nn.RNN(f, h, nonlinearity=nonlinearity, batch_first=True)
        self.fc = nn.Linear(h, c)

    def forward(self, z, lengths, rule="last_valid"):
        out, _ = self.rnn(z)
        if rule == "last_valid":
            feat = out[torch.arange(len(z)), lengths - 1]
        elif rule == "mean":
            valid = (torch.arange(z.shape[1])[None, :] < lengths[:, None]).float()[:, :, None]
            feat = (out * valid).sum(1) / lengths[:, None]
        else:
            feat = out[:, -1]
        return self.fc(feat)


def _zscore(x, lengths, mean, std):
    valid = (np.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None]
    return np.where(valid, (x - mean) / std, 0.0).astype(np.float32)


def test_signed_features_become_on_off_channels_in_unit_range(tmp_path):
    rng = np.random.default_rng(0)
    x, lengths, y = _signed_data(rng)
    x[..., 0] = np.abs(x[..., 0])  # feature 0 never negative: one channel
    path = tmp_path / "signed.npz"
    np.savez(path, x=x, labels=y, lengths=lengths)
    task = tasks.load_npz_task(path)
    enc = task.encoding
    assert enc is not None and enc.n_raw == 3 and enc.normalization == "none"
    assert enc.channels.tolist() == [[0, 1], [1, 1], [1, -1], [2, 1], [2, -1]]
    assert task.n_features == 5 and 0.0 <= task.x_train.min() and task.x_train.max() <= 1.0
    on, off = task.x_train[..., 1], task.x_train[..., 2]
    assert np.all((on == 0) | (off == 0))  # a value is either positive or negative


def test_rate_files_stay_as_they_are(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "rates.npz"
    np.savez(path, x=rng.random((30, 5, 2)), labels=np.arange(30) % 2)
    task = tasks.load_npz_task(path)
    assert task.encoding is None and task.n_features == 2


@pytest.mark.parametrize("normalization", ["encode", "fold"])
@pytest.mark.parametrize("rule", ["last_valid", "mean", "last_step"])
def test_imported_model_on_raw_features_matches_pytorch(tmp_path, normalization, rule):
    """Split input weights on the encoded channels reproduce the user's model on z-scored raw features."""
    rng = np.random.default_rng(2)
    x, lengths, y = _signed_data(rng)
    x_test, lengths_test, y_test = x[:40], lengths[:40], y[:40]  # within the training range: nothing clipped
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    mean, std = x[valid].mean(0), x[valid].std(0)
    torch.manual_seed(0)
    user = UserModel()
    torch.save({"model": user.state_dict(), "meta": {"nonlinearity": "relu", "readout": rule}}, tmp_path / "user.pt")
    np.savez(tmp_path / "data.npz", x=x, labels=y, lengths=lengths, x_test=x_test, labels_test=y_test,
             lengths_test=lengths_test, mean=mean, std=std)
    task = tasks.load_npz_task(tmp_path / "data.npz", normalization=normalization, clip_percentile=100.0)
    loaded = load_checkpoint(tmp_path / "user.pt")
    if rule == "last_step" and normalization == "fold":  # padding is zero after normalisation only
        with pytest.raises(ValueError, match="--normalize encode"):
            prepare_model(loaded.model, task, PipelineConfig())
        return
    prepared = prepare_model(loaded.model, task, PipelineConfig())
    assert prepared.settings["readout_rule"] == rule and prepared.settings["readout_rule_from"] == "file"
    assert prepared.model.config.n_inputs == task.n_features == 6
    with torch.no_grad():
        ref = user(torch.as_tensor(_zscore(x_test, lengths_test, mean, std)), torch.as_tensor(lengths_test), rule)
        m = prepared.model
        lt = torch.as_tensor(prepared.task.lengths_test)
        mine = elman_logits(m.w_in, m.w_bias, m.w_rec, m.readout, torch.as_tensor(prepared.task.x_test), lt, "relu", rule)
    # the rescaled model has the same logits (ReLU is positively homogeneous)
    assert torch.allclose(mine, ref, atol=1e-3, rtol=1e-3)
    assert prepared.float_accuracy == pytest.approx(float((ref.argmax(1).numpy() == y_test).mean()))


def test_activation_scale_is_a_percentile_of_valid_steps_only():
    """Padding steps (driven by the bias alone) must not set the scale; one outlier must not either."""
    from neurolab_gui.core.conversion.constrain import normalize_activations
    from neurolab_gui.core.conversion.models import RateRNN, RNNConfig

    model = RateRNN(RNNConfig(1, 2, 2, kind="elman", readout="last"))
    with torch.no_grad():
        model.w_in.copy_(torch.tensor([[1.0], [0.0]]))
        model.w_bias.copy_(torch.tensor([0.0, 50.0]))  # unit 1 rises on padded steps only if they are counted
        model.w_rec.zero_()
    x = np.zeros((1000, 10, 1), np.float32)
    x[:, :2, 0] = 2.0
    x[0, :2, 0] = 1000.0  # one outlier sample
    lengths = np.full(1000, 2)
    model.w_bias.data[1] = 0.0
    lam = normalize_activations(model, x, lengths, percentile=99.0)
    assert lam == pytest.approx(2.0)  # not 1000 (the maximum), and padding steps not counted


def test_undeclared_tanh_checkpoint_is_refused_with_the_evidence(tmp_path):
    """A bare nn.RNN state_dict does not store its nonlinearity; a tanh model must not convert as ReLU."""
    rng = np.random.default_rng(3)
    n, t = 400, 6
    x = rng.normal(0, 1, (n, t, 1)).astype(np.float32)
    y = (x[:, :, 0].sum(1) < 0).astype(int)  # "negative sum": easy with tanh's negative states
    torch.manual_seed(0)
    user = UserModel(f=1, h=8, c=2, nonlinearity="tanh")
    opt = torch.optim.Adam(user.parameters(), lr=3e-2)
    lengths = torch.full((n,), t)
    for _ in range(150):
        loss = nn.functional.cross_entropy(user(torch.as_tensor(x), lengths), torch.as_tensor(y))
        opt.zero_grad()
        loss.backward()
        opt.step()
    torch.save(user.state_dict(), tmp_path / "bare.pt")  # rnn.weight_ih_l0, fc.weight: no nonlinearity stored
    np.savez(tmp_path / "d.npz", x=x, labels=y)
    task = tasks.load_npz_task(tmp_path / "d.npz", normalization="none")
    loaded = load_checkpoint(tmp_path / "bare.pt")
    assert loaded.metadata["nonlinearity_declared"] is None
    with pytest.raises(ValueError, match="tanh RNN") as info:
        prepare_model(loaded.model, task, PipelineConfig())
    assert "nonlinearity='relu'" in str(info.value)


def test_encoding_fit_refuses_bad_options():
    x = np.zeros((2, 3, 1))
    with pytest.raises(ValueError, match="normalization"):
        InputEncoding.fit(x, np.array([3, 3]), normalization="zscore")
    with pytest.raises(ValueError, match="both"):
        InputEncoding.fit(x, np.array([3, 3]), mean=np.zeros(1))


def test_model_and_data_that_do_not_fit_are_named_in_the_file_s_terms(tmp_path):
    """The message counts the file's raw features (not the rate channels they became) and says how a
    data file whose labels lack some of the model's classes is accepted (``n_classes``)."""
    from neurolab_gui.core.conversion.constrain import check_convertible

    rng = np.random.default_rng(3)
    x, lengths, y = _signed_data(rng)
    torch.save({"model": UserModel().state_dict(), "meta": {"nonlinearity": "relu"}}, tmp_path / "user.pt")
    model = load_checkpoint(tmp_path / "user.pt").model
    np.savez(tmp_path / "two.npz", x=x[..., :2], labels=y, lengths=lengths)
    with pytest.raises(ValueError, match=r"takes 3 inputs / 3 classes but task two has 2 raw features \(4 rate channels\)"):
        check_convertible(model, tasks.load_npz_task(tmp_path / "two.npz"))
    np.savez(tmp_path / "few.npz", x=x, labels=np.minimum(y, 1), lengths=lengths)
    with pytest.raises(ValueError, match="give the data file n_classes=3"):
        check_convertible(model, tasks.load_npz_task(tmp_path / "few.npz"))
    np.savez(tmp_path / "declared.npz", x=x, labels=np.minimum(y, 1), lengths=lengths, n_classes=3)
    check_convertible(model, tasks.load_npz_task(tmp_path / "declared.npz"))  # the hint works


def _offset_data(rng, n=60, t=8):
    """Feature 0: mean 50, std 10; feature 1: mean -20, std 0.5; feature 2: mean 0, std 1 (the hostile tester's file)."""
    x = rng.normal([50.0, -20.0, 0.0], [10.0, 0.5, 1.0], (n, t, 3)).astype(np.float32)
    lengths = np.full(n, t)
    return x, lengths, np.arange(n) % 3


def test_folding_a_large_mean_is_reported_with_the_features_it_starves():
    rng = np.random.default_rng(5)
    x, lengths, _ = _offset_data(rng)
    mean, std = np.array([50.0, -20.0, 0.0]), np.array([10.0, 0.5, 1.0])
    folded = InputEncoding.fit(x, lengths, mean, std, normalization="fold")
    [note] = [n for n in folded.notes if n.startswith("normalisation fold")]
    assert "features [0, 1]" in note and "--normalize encode" in note
    assert not [n for n in InputEncoding.fit(x, lengths, mean, std, normalization="encode").notes
                if "normalisation fold" in n]
    centred = InputEncoding.fit(x[:, :, 2:], lengths, mean[2:], std[2:], normalization="fold")
    assert not [n for n in centred.notes if "normalisation fold" in n]  # a zero-mean feature loses no range


def test_the_encoding_s_notes_reach_the_conversion_report(tmp_path):
    rng = np.random.default_rng(6)
    x, lengths, y = _offset_data(rng)
    x[:, :, 2] = 0.0  # a feature that never moves: noted too
    torch.manual_seed(0)
    torch.save({"model": UserModel().state_dict(), "meta": {"nonlinearity": "relu"}}, tmp_path / "user.pt")
    np.savez(tmp_path / "data.npz", x=x, labels=y, lengths=lengths, x_test=x[:30], labels_test=y[:30],
             lengths_test=lengths[:30], mean=np.array([50.0, -20.0, 0.0]), std=np.array([10.0, 0.5, 1.0]))
    task = tasks.load_npz_task(tmp_path / "data.npz", normalization="fold")
    prepared = prepare_model(load_checkpoint(tmp_path / "user.pt").model, task, PipelineConfig())
    assert any(n.startswith("normalisation fold: features [0, 1]") for n in prepared.notes)
    assert any("features [2] are 0 on every valid training step" in n for n in prepared.notes)
