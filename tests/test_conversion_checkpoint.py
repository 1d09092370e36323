"""Checkpoint round trip, plain nn.RNN(relu) state_dict import, and refusal of what cannot be converted."""

import numpy as np
import pytest
import torch
from torch import nn

from neurolab_gui.core.conversion.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig


def test_own_format_round_trip(tmp_path):
    model = RateRNN(RNNConfig(3, 7, 4, kind="leaky", retention=0.8, steps_per_sample=2, saturation=1.0, integrator="heun"))
    path = save_checkpoint(tmp_path / "m.pt", model, {"task": "seq_digits"})
    loaded = load_checkpoint(path)
    assert loaded.metadata["task"] == "seq_digits"
    assert loaded.model.config == model.config
    x = torch.rand(5, 6, 3)
    assert torch.allclose(loaded.model(x)[0], model(x)[0])


class _TorchRNN(nn.Module):
    def __init__(self, prefix_rnn: bool = True) -> None:
        super().__init__()
        self.rnn = nn.RNN(3, 6, nonlinearity="relu", batch_first=True)
        self.fc = nn.Linear(6, 4)


@pytest.mark.parametrize("with_prefix", [True, False])
def test_plain_state_dict_import_matches_torch(tmp_path, with_prefix):
    torch.manual_seed(0)
    ref = _TorchRNN()
    with torch.no_grad():  # small weights so activations stay below our clip at 1
        for p in ref.rnn.parameters():
            p.mul_(0.3)
    sd = ref.state_dict()
    if not with_prefix:
        sd = {k.removeprefix("rnn."): v for k, v in sd.items()}
    torch.save(sd, tmp_path / "plain.pt")
    loaded = load_checkpoint(tmp_path / "plain.pt")
    assert loaded.source_format == "torch-state-dict"
    x = torch.rand(5, 7, 3) * 0.5
    out, _ = ref.rnn(x)
    expected = ref.fc(out[:, -1])
    assert out.max() < 1.0
    got, _ = loaded.model(x)
    assert torch.allclose(got, expected, atol=1e-5)


def test_tanh_rnn_is_refused(tmp_path):
    rnn = nn.RNN(3, 6, nonlinearity="tanh")
    torch.save({"state_dict": rnn.state_dict(), "nonlinearity": "tanh"}, tmp_path / "tanh.pt")
    with pytest.raises(CheckpointError, match="tanh.*supported"):
        load_checkpoint(tmp_path / "tanh.pt")


@pytest.mark.parametrize("cell", [nn.LSTM, nn.GRU])
def test_lstm_and_gru_are_refused(tmp_path, cell):
    torch.save(cell(3, 6).state_dict(), tmp_path / "gated.pt")
    with pytest.raises(CheckpointError, match="(LSTM|GRU).*supported"):
        load_checkpoint(tmp_path / "gated.pt")


def test_multilayer_rnn_is_refused(tmp_path):
    torch.save(nn.RNN(3, 6, num_layers=2, nonlinearity="relu").state_dict(), tmp_path / "deep.pt")
    with pytest.raises(CheckpointError, match="multi-layer"):
        load_checkpoint(tmp_path / "deep.pt")


def test_garbage_and_pickled_modules_are_refused(tmp_path):
    (tmp_path / "junk.pt").write_bytes(np.random.default_rng(0).bytes(256))
    with pytest.raises(CheckpointError, match="not a PyTorch checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")
    torch.save(_TorchRNN(), tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="state_dict"):
        load_checkpoint(tmp_path / "module.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")


def test_convert_cli_refuses_a_bad_file_with_a_message(tmp_path, capsys):
    from neurolab_gui.cli import main

    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    assert main(["convert", str(tmp_path / "junk.pt"), "--task", "seq_digits"]) == 2
    assert "supported checkpoints" in capsys.readouterr().err
    assert main(["convert", str(tmp_path / "junk.pt"), "--stages", "gpu"]) == 2
    assert "unknown stage" in capsys.readouterr().err
