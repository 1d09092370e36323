"""Checkpoint files: NeuroLab's own format, and imports of plain PyTorch ReLU RNNs.

Reading is safe against hostile and damaged files:

- nothing pickled is executed: ``torch.load(..., weights_only=True)``;
- the file is looked at before torch reads it: empty, truncated (a zip without its directory),
  neither a zip nor a pickle, a plain pickle not written by ``torch.save``, and archives over
  :data:`MAX_FILE_BYTES` unpacked are refused with a message that says so.  In the zip format
  torch itself checks every record's size against the storage size the pickle declares; in the
  legacy (pre-1.6) format torch allocates the declared sizes before reading them, so its header
  is read first with an unpickler that imports and calls nothing (:class:`_HeaderReader`) and the
  declared storage bytes must fit in the file;
- every tensor is checked before a model is allocated: floating point, storing its own values
  (no stride-0 view that declares 30 000 x 30 000 weights in 4 bytes), finite, with shapes that
  fit together and at most :data:`~.torch_import.MAX_HIDDEN` (4096) hidden units.

Every failure is a :class:`CheckpointError` naming the file and the problem.

Own format (written by :func:`save_checkpoint`)::

    {"format": "neurolab-rate-rnn", "version": 1,
     "state_dict": {name: tensor},            # RateRNN parameters
     "metadata_json": "<JSON text>"}         # RNNConfig, task, training history, constraint info

Imports of a model built from ``nn.RNN(input_size, hidden, nonlinearity='relu')`` plus an
``nn.Linear`` readout, in any common layout (a bare ``state_dict``, ``{"model": ...}``,
``{"state_dict": ...}``, ``{"rnn": ..., "readout": ..., "meta": ...}``, ``module.``/``model.``
prefixes): see :mod:`.torch_import`.  An imported model becomes an Elman
:class:`.models.RateRNN` with the two biases summed.  Its ReLU is unbounded while ours clips at
1, so the conversion pipeline rescales the hidden units on data before constraining
(:func:`.constrain.normalize_activations`).

Refused, with a message that says what is supported: LSTM and GRU weights, multi-layer and
bidirectional RNNs, tanh RNNs (declared by the file), extra layers, pickled whole models, and
files that are not checkpoints.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .models import RateRNN, RNNConfig
from .torch_import import (
    MAX_CHANNELS,
    MAX_HIDDEN,
    READOUT_RULES,
    ForeignSource,
    ImportRefused,
    check_weight,
    declared_nonlinearity,
    declared_readout,
    find_relu_rnn,
)

FORMAT_NAME = "neurolab-rate-rnn"
FORMAT_VERSION = 1
#: Largest checkpoint read (unpacked): a 4096-unit network in float64 needs ~0.3 GB.
MAX_FILE_BYTES = 1 << 30
#: Largest ``metadata_json`` text of the own format.
MAX_METADATA_CHARS = 1 << 22

SUPPORTED = (
    "supported checkpoints: NeuroLab's own format (neurolab train), or a state_dict of "
    "nn.RNN(nonlinearity='relu', num_layers=1, bidirectional=False) plus one nn.Linear readout, "
    "bare or nested ({'model': sd}, {'state_dict': sd}, {'rnn': ..., 'readout': ...}, 'module.' prefixes)"
)


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
    obj = read_checkpoint_file(path)
    if isinstance(obj, dict) and obj.get("format") == FORMAT_NAME:
        return _load_own(obj, path)
    try:
        rnn = find_relu_rnn(obj)
        source = ForeignSource(declared_nonlinearity(obj), declared_readout(obj))
    except ImportRefused as exc:
        raise CheckpointError(f"{path} {exc}. {SUPPORTED}") from None
    model = RateRNN(RNNConfig(n_inputs=rnn.w_ih.shape[1], n_hidden=rnn.w_hh.shape[0], n_outputs=rnn.w_out.shape[0],
                              kind="elman", readout=READOUT_RULES[source.readout or "last_valid"]))
    model.foreign = source
    with torch.no_grad():
        model.w_in.copy_(rnn.w_ih)
        model.w_rec.copy_(rnn.w_hh)
        model.w_bias.copy_(rnn.bias)
        model.readout.weight.copy_(rnn.w_out)
        model.readout.bias.copy_(rnn.b_out)
    meta = {"imported_from": str(path), "prefix": rnn.rnn_prefix, "readout_prefix": rnn.readout_prefix,
            "unbounded_relu": True, "ignored_tensors": rnn.ignored, "file_metadata": rnn.meta, **source.to_dict()}
    return LoadedModel(model, meta, "torch-state-dict")


def read_checkpoint_file(path: Path) -> object:
    """What ``torch.load(path, weights_only=True)`` returns, after checking the file; see the module docstring."""
    if not path.exists():
        raise CheckpointError(f"{path} does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise CheckpointError(f"{path} is empty (0 bytes). {SUPPORTED}")
    if size > MAX_FILE_BYTES:
        raise CheckpointError(f"{path} has {size / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES / 2**20:.0f} MiB "
                              f"a network of {MAX_HIDDEN} units needs")
    with path.open("rb") as f:
        head = f.read(4)
    if head.startswith(b"PK"):
        _check_archive(path)
    elif head[:1] == b"\x80":
        _check_legacy_header(path, size)
    else:
        raise CheckpointError(f"{path} is not a PyTorch checkpoint: it starts with {head!r}, a PyTorch file is a zip "
                              f"archive (starts with b'PK'). {SUPPORTED}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch warns about pickle protocols it reads fine
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        blocked = re.search(r"(?:Unsupported global: GLOBAL|Unsupported class|unsupported GLOBAL) ([\w.]+)", str(exc))
        if blocked:
            raise CheckpointError(
                f"{path} holds pickled Python objects ({blocked.group(1)}), which are not loaded because unpickling "
                "could run code; save tensors, numbers and strings only (for a model: model.state_dict(), not the "
                f"model itself; numpy arrays as tensors). {SUPPORTED}"
            ) from None
        reason = re.search(r"WeightsUnpickler error:\s*(.+)", str(exc))
        detail = reason.group(1).strip()[:200] if reason else _first_sentence(exc)
        raise CheckpointError(f"{path} is damaged: its pickled index cannot be read ({detail})") from None
    except RecursionError:
        raise CheckpointError(f"{path} nests its contents too deeply to be a checkpoint") from None
    except Exception as exc:  # noqa: BLE001 - torch raises RuntimeError/EOFError/KeyError/... for damaged archives
        if "TorchScript" in str(exc):  # a whole archive, not a damaged one: torch refuses it with weights_only=True
            raise CheckpointError(f"{path} is a TorchScript archive (torch.jit.save), which holds code, not a checkpoint; "
                                  f"save the model's weights with torch.save(model.state_dict(), ...). {SUPPORTED}") from None
        raise CheckpointError(f"{path} is truncated or damaged ({_first_sentence(exc)})") from None


def _check_archive(path: Path) -> None:
    """A zip that torch can read without unpacking more than :data:`MAX_FILE_BYTES`."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"{path} is truncated or damaged: it starts like a PyTorch (zip) checkpoint but its zip "
                              f"directory cannot be read ({exc}); was the copy or download cut off?") from None
    if not any(e.filename == "data.pkl" or e.filename.endswith("/data.pkl") for e in entries):
        names = ", ".join(e.filename for e in entries[:8])
        raise CheckpointError(f"{path} is a zip archive but not a PyTorch checkpoint (no data.pkl; holds {names}). {SUPPORTED}")
    unpacked = sum(e.file_size for e in entries)
    if unpacked > MAX_FILE_BYTES:
        raise CheckpointError(f"{path} unpacks to {unpacked / 2**20:.0f} MiB, more than the {MAX_FILE_BYTES / 2**20:.0f} MiB "
                              f"a network of {MAX_HIDDEN} units needs")


#: ``torch.save``'s legacy (pre-1.6) format starts with this number, pickled.
_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_ELEMENT_BYTES = {"Double": 8, "Float": 4, "Half": 2, "BFloat16": 2, "Long": 8, "Int": 4, "Short": 2, "Char": 1,
                  "Byte": 1, "Bool": 1, "ComplexFloat": 8, "ComplexDouble": 16, "Untyped": 1}


class _Inert:
    """Stands in for every class and function a pickle names: builds nothing, runs nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass

    def __setitem__(self, key: object, value: object) -> None:
        pass

    def append(self, item: object) -> None:
        pass

    def extend(self, items: object) -> None:
        pass


class _HeaderReader(pickle.Unpickler):
    """Reads a legacy checkpoint's pickles without importing or calling anything; records storage declarations."""

    def __init__(self, file) -> None:
        super().__init__(file)
        self.storages: dict[str, tuple[str, object]] = {}  # key -> (storage type name, declared elements)

    def find_class(self, module: str, name: str) -> type:
        return type(name, (_Inert,), {"qualname": f"{module}.{name}"})

    def persistent_load(self, pid: object) -> object:
        if isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage":
            self.storages[str(pid[2])] = (getattr(pid[1], "qualname", "?"), pid[4])
        return _Inert()


def _check_legacy_header(path: Path, size: int) -> None:
    """Refuse a legacy-format file whose declared storages exceed what it stores (torch allocates them first)."""
    reader = None
    try:
        # from memory: a file object's read(n) would reserve n bytes for a hostile length field
        with io.BytesIO(path.read_bytes()) as f:
            reader = _HeaderReader(f)
            magic = reader.load()
            if magic != _LEGACY_MAGIC:
                raise CheckpointError(f"{path} is a plain Python pickle, not a file written by torch.save; it is not "
                                      f"loaded (unpickling can run code). {SUPPORTED}")
            for _ in range(3):  # protocol version, system info, the object itself
                reader.load()
    except CheckpointError:
        raise
    except Exception as exc:  # noqa: BLE001 - any framing error of a damaged pickle
        raise CheckpointError(f"{path} is truncated or damaged: its pickled header cannot be read ({_first_sentence(exc)})") from None
    declared = 0
    for key, (kind, numel) in reader.storages.items():
        element = _ELEMENT_BYTES.get(kind.rsplit(".", 1)[-1].removesuffix("Storage"))
        if element is None or not isinstance(numel, int) or isinstance(numel, bool) or numel < 0:
            raise CheckpointError(f"{path}: storage {key} has an unsupported declaration ({kind}, {numel!r} elements)")
        declared += numel * element
    if declared > size:
        raise CheckpointError(f"{path} declares {declared} bytes of tensor storage but the file has {size} bytes: "
                              "truncated, or crafted to make the loader allocate memory")


def _first_sentence(exc: BaseException) -> str:
    """``Type: first sentence`` of an exception's message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).strip()
    first = re.split(r"(?<=[.!?])\s|\n", text, maxsplit=1)[0][:200] if text else "no details"
    return f"{type(exc).__name__}: {first}"


#: Most RNN steps per input sample a checkpoint may declare (1000 steps of 5 ms: 5 s per sample);
#: the NIR import holds graphs to it too, so what it writes loads again.
MAX_STEPS_PER_SAMPLE = 1000
_CONFIG_INTS = ("n_inputs", "n_hidden", "n_outputs", "steps_per_sample")
_CONFIG_LIMITS = {"n_inputs": MAX_CHANNELS, "n_hidden": MAX_HIDDEN, "n_outputs": MAX_CHANNELS,
                  "steps_per_sample": MAX_STEPS_PER_SAMPLE}


def _load_own(obj: dict, path: Path) -> LoadedModel:
    def bad(message: str) -> CheckpointError:
        return CheckpointError(f"{path}: NeuroLab checkpoint {message}")

    version = obj.get("version")
    if version != FORMAT_VERSION or isinstance(version, bool):
        raise bad(f"version {version!r} is not supported (expected {FORMAT_VERSION})")
    text = obj.get("metadata_json")
    if not isinstance(text, str) or len(text) > MAX_METADATA_CHARS:
        raise bad(f"metadata_json must be JSON text of at most {MAX_METADATA_CHARS} characters, got {_describe(text)}")
    try:
        meta = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise bad(f"metadata_json is not valid JSON ({_first_sentence(exc)})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("config"), dict):
        raise bad("metadata_json has no 'config' object")
    config = _checked_config(meta["config"], bad)
    if meta.get("nonlinearity", "bounded_relu") not in ("bounded_relu", "relu"):
        raise bad(f"declares nonlinearity {meta.get('nonlinearity')!r}, which cannot be converted; {SUPPORTED}")
    state = obj.get("state_dict")
    if not isinstance(state, dict):
        raise bad(f"state_dict is {_describe(state)}, not a dict of named tensors")
    h, f, c = config.n_hidden, config.n_inputs, config.n_outputs
    expected = {"w_in": (h, f), "w_bias": (h,), "w_rec": (h, h), "readout.weight": (c, h), "readout.bias": (c,)}
    if set(state) != set(expected):
        missing, extra = sorted(set(expected) - set(state)), sorted(map(str, set(state) - set(expected)))
        raise bad(f"state_dict does not match a RateRNN (missing {missing or 'nothing'}, unexpected {extra or 'nothing'})")
    for name, shape in expected.items():
        t = state[name]
        if not isinstance(t, torch.Tensor):
            raise bad(f"state_dict[{name!r}] is {_describe(t)}, not a tensor")
        if tuple(t.shape) != shape:
            raise bad(f"tensor {name} has shape {list(t.shape)}, expected {list(shape)} for the stored configuration "
                      f"({f} inputs, {h} hidden units, {c} outputs)")
        try:
            check_weight(name, t)
        except ImportRefused as exc:
            raise bad(str(exc)) from None
    model = RateRNN(config)  # sizes are now known to be what the file really stores
    model.load_state_dict({k: v.float() for k, v in state.items()})
    return LoadedModel(model, meta, FORMAT_NAME)


def _checked_config(raw: dict, bad) -> RNNConfig:
    """An :class:`RNNConfig` from stored JSON, with types and sizes checked before anything is allocated."""
    known = set(RNNConfig.__dataclass_fields__)
    unknown = sorted(set(raw) - known)
    if unknown:
        raise bad(f"config has unknown field(s) {unknown}")
    for name in _CONFIG_INTS:
        value = raw.get(name)
        if name in ("n_inputs", "n_hidden", "n_outputs") and value is None:
            raise bad(f"config lacks {name}")
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            raise bad(f"config {name} must be an integer, got {value!r} ({type(value).__name__})")
        if not 1 <= value <= _CONFIG_LIMITS[name]:
            what = f"; a DYNAP-SE1 board has {MAX_HIDDEN} neurons" if name == "n_hidden" else ""
            raise bad(f"config {name} = {value} is outside 1..{_CONFIG_LIMITS[name]}{what}")
    for name in ("retention", "saturation"):
        value = raw.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise bad(f"config {name} must be a finite number, got {value!r}")
    for name in ("kind", "readout", "integrator"):
        if name in raw and not isinstance(raw[name], str):
            raise bad(f"config {name} must be a string, got {raw[name]!r}")
    try:
        return RNNConfig(**raw)
    except (TypeError, ValueError) as exc:
        raise bad(f"config is invalid ({exc})") from None


def _describe(value: object) -> str:
    if isinstance(value, (list, tuple, dict, str)):
        return f"a {type(value).__name__} of {len(value)}"
    return f"a {type(value).__name__}"
