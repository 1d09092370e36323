"""Checkpoint files: NeuroLab's own format, and plain PyTorch ``state_dict`` imports.

Every file is read with ``torch.load(..., weights_only=True)``: a checkpoint cannot execute code.

Own format (written by :func:`save_checkpoint`)::

    {"format": "neurolab-rate-rnn", "version": 1,
     "state_dict": {name: tensor},            # RateRNN parameters
     "metadata_json": "<JSON text>"}         # RNNConfig, task, training history, constraint info

Plain ``state_dict`` import (:func:`load_checkpoint` on a file saved as
``torch.save(model.state_dict(), path)``), for a model built from
``nn.RNN(input_size, hidden, nonlinearity='relu', batch_first=...)`` plus an ``nn.Linear``
readout.  Supported key names:

- recurrent layer: ``rnn.weight_ih_l0``, ``rnn.weight_hh_l0``, ``rnn.bias_ih_l0``,
  ``rnn.bias_hh_l0`` — or the same without the ``rnn.`` prefix (a bare ``nn.RNN``);
  the biases are optional (``bias=False``);
- readout: ``fc.weight``/``fc.bias``, ``readout.weight``/``readout.bias``,
  ``linear.weight``/``linear.bias``, ``out.weight``/``out.bias``, ``classifier.weight``/``classifier.bias``;
- a wrapper dict ``{"state_dict": {...}}`` or ``{"model_state_dict": {...}}`` is unwrapped; if it
  carries ``"nonlinearity"`` it must be ``"relu"``.

An imported model becomes an Elman :class:`.models.RateRNN` with the two biases summed.  Its
ReLU is unbounded while ours clips at 1, so the conversion pipeline rescales the hidden units
on data before constraining (:func:`.constrain.normalize_activations`).

Refused, with a message that says what is supported: LSTM and GRU weights (4H or 3H gate rows,
or ``lstm``/``gru`` in key names), multi-layer (``_l1``) and bidirectional (``_reverse``) RNNs,
tanh RNNs (declared by the file), pickled whole models, and files that are not checkpoints.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .models import RateRNN, RNNConfig

FORMAT_NAME = "neurolab-rate-rnn"
FORMAT_VERSION = 1

SUPPORTED = (
    "supported checkpoints: NeuroLab's own format (neurolab train), or a plain state_dict of "
    "nn.RNN(nonlinearity='relu', num_layers=1, bidirectional=False) with keys "
    "[rnn.]weight_ih_l0, [rnn.]weight_hh_l0, [rnn.]bias_ih_l0, [rnn.]bias_hh_l0 plus an nn.Linear "
    "readout fc.|readout.|linear.|out.|classifier. weight/bias"
)

_READOUT_PREFIXES = ("fc.", "readout.", "linear.", "out.", "classifier.")


class CheckpointError(ValueError):
    """The file is not a checkpoint NeuroLab can convert; the message says why and what is supported."""


@dataclass
class LoadedModel:
    """A model read from a file, with where it came from."""

    model: RateRNN
    metadata: dict = field(default_factory=dict)
    source_format: str = FORMAT_NAME  # or "torch-state-dict"


def save_checkpoint(path: str | Path, model: RateRNN, metadata: dict | None = None) -> Path:
    """Write ``model`` (and JSON-able ``metadata``) in NeuroLab's own format."""
    meta = dict(metadata or {})
    meta["config"] = model.config.to_dict()
    meta.setdefault("nonlinearity", "bounded_relu")
    payload = {
        "format": FORMAT_NAME,
        "version": FORMAT_VERSION,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "metadata_json": json.dumps(meta),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(payload, path)
    return path


def load_checkpoint(path: str | Path) -> LoadedModel:
    """Read a NeuroLab checkpoint or a plain ReLU-RNN ``state_dict``; see the module docstring."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        if "global" not in str(exc).lower():  # not a pickled object, just bytes torch cannot read
            raise CheckpointError(f"{path} is not a PyTorch checkpoint ({str(exc).splitlines()[0][:200]}). {SUPPORTED}") from None
        raise CheckpointError(
            f"{path} holds pickled Python objects (for example a whole nn.Module saved with "
            f"torch.save(model)), which are not loaded for safety; save model.state_dict() instead. {SUPPORTED}."
        ) from None
    except Exception as exc:  # zip/pickle framing errors: not a torch file at all
        raise CheckpointError(f"{path} is not a PyTorch checkpoint ({type(exc).__name__}: {exc}). {SUPPORTED}") from None
    if isinstance(obj, dict) and obj.get("format") == FORMAT_NAME:
        return _load_own(obj, path)
    return _load_state_dict(obj, path)


def _load_own(obj: dict, path: Path) -> LoadedModel:
    if obj.get("version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: NeuroLab checkpoint version {obj.get('version')} is not supported (expected {FORMAT_VERSION})")
    try:
        meta = json.loads(obj["metadata_json"])
        config = RNNConfig(**meta["config"])
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}: damaged NeuroLab checkpoint metadata ({exc})") from None
    if meta.get("nonlinearity", "bounded_relu") not in ("bounded_relu", "relu"):
        raise CheckpointError(f"{path}: nonlinearity {meta.get('nonlinearity')!r} cannot be converted; {SUPPORTED}")
    model = RateRNN(config)
    try:
        model.load_state_dict(obj["state_dict"])
    except (KeyError, RuntimeError) as exc:
        raise CheckpointError(f"{path}: tensors do not match the stored configuration ({exc})") from None
    return LoadedModel(model, meta, FORMAT_NAME)


def _load_state_dict(obj: object, path: Path) -> LoadedModel:
    if not isinstance(obj, dict):
        raise CheckpointError(f"{path} holds a {type(obj).__name__}, not a state_dict. {SUPPORTED}")
    nonlinearity = obj.get("nonlinearity")
    for wrapper in ("state_dict", "model_state_dict"):
        if isinstance(obj.get(wrapper), dict):
            obj = obj[wrapper]
            break
    nonlinearity = nonlinearity or obj.get("nonlinearity")
    if nonlinearity is not None and str(nonlinearity).lower() != "relu":
        raise CheckpointError(
            f"{path} declares nonlinearity {nonlinearity!r}: only ReLU RNNs map onto spiking neurons "
            f"(a rate cannot be negative). {SUPPORTED}"
        )
    tensors = {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise CheckpointError(f"{path} contains no tensors. {SUPPORTED}")
    lowered = " ".join(tensors).lower()
    if "lstm" in lowered or "gru" in lowered:
        raise CheckpointError(f"{path} looks like an LSTM/GRU (key names); only Elman ReLU RNNs are supported. {SUPPORTED}")
    if any("_reverse" in k for k in tensors):
        raise CheckpointError(f"{path} holds a bidirectional RNN; it cannot run causally on the chip. {SUPPORTED}")
    if any(k.endswith(("_l1", "_l2", "_l3")) or "_l1" in k for k in tensors):
        raise CheckpointError(f"{path} holds a multi-layer RNN; only num_layers=1 is supported. {SUPPORTED}")
    prefix = "rnn." if "rnn.weight_ih_l0" in tensors else ""
    if prefix + "weight_ih_l0" not in tensors or prefix + "weight_hh_l0" not in tensors:
        raise CheckpointError(f"{path}: no recurrent layer found (keys: {sorted(tensors)[:8]}). {SUPPORTED}")
    w_ih, w_hh = tensors[prefix + "weight_ih_l0"].float(), tensors[prefix + "weight_hh_l0"].float()
    hidden = w_hh.shape[1] if w_hh.ndim == 2 else -1
    if w_hh.ndim != 2 or w_ih.ndim != 2:
        raise CheckpointError(f"{path}: recurrent weights must be matrices, got {tuple(w_ih.shape)} and {tuple(w_hh.shape)}")
    if w_hh.shape[0] == 4 * hidden:
        raise CheckpointError(f"{path} holds an LSTM (weight_hh_l0 has 4 x {hidden} rows); only Elman ReLU RNNs are supported. {SUPPORTED}")
    if w_hh.shape[0] == 3 * hidden:
        raise CheckpointError(f"{path} holds a GRU (weight_hh_l0 has 3 x {hidden} rows); only Elman ReLU RNNs are supported. {SUPPORTED}")
    if w_hh.shape[0] != hidden or w_ih.shape[0] != hidden:
        raise CheckpointError(f"{path}: inconsistent RNN shapes weight_ih {tuple(w_ih.shape)}, weight_hh {tuple(w_hh.shape)}. {SUPPORTED}")
    bias = torch.zeros(hidden)
    for name in ("bias_ih_l0", "bias_hh_l0"):
        if prefix + name in tensors:
            bias = bias + tensors[prefix + name].float()
    readout = next((p for p in _READOUT_PREFIXES if p + "weight" in tensors), None)
    if readout is None:
        raise CheckpointError(f"{path}: no nn.Linear readout found (looked for {', '.join(p + 'weight' for p in _READOUT_PREFIXES)}). {SUPPORTED}")
    w_out = tensors[readout + "weight"].float()
    if w_out.ndim != 2 or w_out.shape[1] != hidden:
        raise CheckpointError(f"{path}: readout weight shape {tuple(w_out.shape)} does not take {hidden} hidden units")
    b_out = tensors.get(readout + "bias", torch.zeros(w_out.shape[0])).float()
    model = RateRNN(RNNConfig(n_inputs=w_ih.shape[1], n_hidden=hidden, n_outputs=w_out.shape[0], kind="elman", readout="last"))
    with torch.no_grad():
        model.w_in.copy_(w_ih)
        model.w_rec.copy_(w_hh)
        model.w_bias.copy_(bias)
        model.readout.weight.copy_(w_out)
        model.readout.bias.copy_(b_out)
    meta = {"imported_from": str(path), "prefix": prefix, "readout_prefix": readout, "unbounded_relu": True}
    return LoadedModel(model, meta, "torch-state-dict")
