"""Foreign cases: plain-PyTorch ReLU RNNs trained outside NeuroLab, saved as users save them.

Nothing here imports NeuroLab.  Each case is a data set (:mod:`foreign_data`), a hidden size, a
checkpoint layout and a readout rule, trained the way a user would: inputs z-scored with the
training set's mean/std (over valid steps), ``nn.RNN(nonlinearity='relu')`` + ``nn.Linear``,
Adam, cross-entropy.  What is written for NeuroLab:

- ``<case>.pt``: layout ``nested`` = ``{'rnn': rnn.state_dict(), 'readout': fc.state_dict(),
  'meta': {...}}`` (declares ``nonlinearity`` and ``readout``), layout ``flat`` =
  ``model.state_dict()`` (``rnn.weight_ih_l0``, ``fc.weight``, ...; declares nothing);
- ``<case>.npz``: the *raw* features (signed, zero-padded), ``lengths``, ``labels``, the test
  split, and the ``mean``/``std`` the model was trained with -- the data file format of
  ``neurolab convert --task FILE.npz``.

    python bench/foreign/foreign_cases.py [--cases NAME,...] [--cache DIR]   # prints each case's float test accuracy
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import foreign_data  # noqa: E402  (this folder's module)

DEFAULT_CACHE = Path.home() / ".cache" / "neurolab" / "foreign"


@dataclass(frozen=True)
class Case:
    name: str
    dataset: str  # "japanese_vowels" or "imu_gestures"
    hidden: int
    layout: str  # "nested" or "flat"
    readout: str  # "last_valid" or "mean"
    epochs: int
    lr: float = 3e-3


CASES = {c.name: c for c in (
    Case("jvowels_h64_nested", "japanese_vowels", 64, "nested", "last_valid", epochs=120),
    Case("imu_h128_flat", "imu_gestures", 128, "flat", "mean", epochs=40),
    Case("jvowels_h128_flat", "japanese_vowels", 128, "flat", "mean", epochs=120),
    Case("imu_h64_nested", "imu_gestures", 64, "nested", "last_valid", epochs=40),
)}


class UserRNN(nn.Module):
    """What a user writes: ``nn.RNN(relu)`` over z-scored features and a linear readout."""

    def __init__(self, n_in: int, hidden: int, n_out: int, readout: str) -> None:
        super().__init__()
        self.rnn = nn.RNN(n_in, hidden, nonlinearity="relu", batch_first=True)
        self.fc = nn.Linear(hidden, n_out)
        self.readout = readout

    def forward(self, z: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(z)  # [N, T, H]; padding lies after the valid steps, so it cannot reach them
        if self.readout == "last_valid":
            feat = out[torch.arange(len(z)), lengths - 1]
        else:
            valid = (torch.arange(z.shape[1])[None, :] < lengths[:, None]).float()[:, :, None]
            feat = (out * valid).sum(1) / lengths[:, None].float()
        return self.fc(feat)


def load_data(dataset: str, cache: Path) -> dict[str, np.ndarray]:
    return foreign_data.japanese_vowels(cache) if dataset == "japanese_vowels" else foreign_data.imu_gestures()


def zscore_stats(x: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    valid = np.arange(x.shape[1])[None, :] < lengths[:, None]
    flat = x[valid]
    return flat.mean(0).astype(np.float32), flat.std(0).astype(np.float32)


def normalise(x: np.ndarray, lengths: np.ndarray, mean: np.ndarray, std: np.ndarray) -> torch.Tensor:
    valid = (np.arange(x.shape[1])[None, :] < lengths[:, None])[:, :, None]
    return torch.as_tensor(np.where(valid, (x - mean) / std, 0.0).astype(np.float32))


def accuracy(model: UserRNN, z: torch.Tensor, lengths: torch.Tensor, y: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        return float((model(z, lengths).argmax(1) == y).float().mean())


def build(case: Case, cache: Path = DEFAULT_CACHE, force: bool = False) -> dict:
    """Train ``case`` (or reuse the cached one); returns paths and the float test accuracy."""
    cache.mkdir(parents=True, exist_ok=True)
    ckpt, data_file, info_file = (cache / f"{case.name}{ext}" for ext in (".pt", ".npz", ".json"))
    if not force and ckpt.exists() and data_file.exists() and info_file.exists():
        return json.loads(info_file.read_text())
    torch.manual_seed(0)
    d = load_data(case.dataset, cache)
    mean, std = zscore_stats(d["x"], d["lengths"])
    z, zt = normalise(d["x"], d["lengths"], mean, std), normalise(d["x_test"], d["lengths_test"], mean, std)
    lz, lzt = torch.as_tensor(d["lengths"]), torch.as_tensor(d["lengths_test"])
    y, yt = torch.as_tensor(d["labels"]), torch.as_tensor(d["labels_test"])
    model = UserRNN(z.shape[2], case.hidden, int(y.max()) + 1, case.readout)
    opt = torch.optim.Adam(model.parameters(), lr=case.lr)
    gen = torch.Generator().manual_seed(0)
    for _ in range(case.epochs):
        model.train()
        for idx in torch.randperm(len(z), generator=gen).split(32):
            loss = nn.functional.cross_entropy(model(z[idx], lz[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
    acc = accuracy(model, zt, lzt, yt)
    if case.layout == "nested":
        torch.save({"rnn": model.rnn.state_dict(), "readout": model.fc.state_dict(),
                    "meta": {"nonlinearity": "relu", "readout": case.readout, "dataset": case.dataset}}, ckpt)
    else:
        torch.save(model.state_dict(), ckpt)
    np.savez(data_file, x=d["x"], lengths=d["lengths"], labels=d["labels"], x_test=d["x_test"],
             lengths_test=d["lengths_test"], labels_test=d["labels_test"], mean=mean, std=std)
    with torch.no_grad():  # how heavy-tailed the hidden activations are (what the conversion must scale)
        out, _ = model.rnn(z)
        valid = np.arange(z.shape[1])[None, :] < d["lengths"][:, None]
        acts = out.numpy()[valid]
    info = {"case": case.name, "checkpoint": str(ckpt), "data": str(data_file), "float_accuracy": acc,
            "readout": case.readout, "layout": case.layout, "hidden": case.hidden,
            "train_activation_max": float(acts.max()), "train_activation_p99.9": float(np.percentile(acts, 99.9)),
            "n_train": int(len(z)), "n_test": int(len(zt))}
    info_file.write_text(json.dumps(info))
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--force", action="store_true", help="train again even when cached")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    for name in args.cases.split(","):
        print(json.dumps(build(CASES[name], args.cache, args.force)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
