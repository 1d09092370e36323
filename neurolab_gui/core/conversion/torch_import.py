"""Find a one-layer ReLU ``nn.RNN`` and its ``nn.Linear`` readout in a checkpoint someone else wrote.

People save models in many layouts; all of these are read (``sd`` = ``state_dict()``)::

    torch.save(model.state_dict(), f)                                   # rnn.weight_ih_l0, fc.weight, ...
    torch.save(rnn.state_dict(), f)                                     # weight_ih_l0 (+ a readout beside it)
    torch.save({"rnn": rnn.state_dict(), "readout": fc.state_dict(), "meta": {...}}, f)
    torch.save({"model": sd}, f), {"state_dict": sd}, {"model_state_dict": sd, "epoch": 3, ...}
    nn.DataParallel / DDP (``module.`` prefix), Lightning (``model.`` prefix), any nesting of the above

The nested dicts are flattened into dotted names (``{"rnn": {"weight_ih_l0": t}}`` becomes
``rnn.weight_ih_l0``); the recurrent layer is the one name ending in ``weight_ih_l0`` (its prefix
is whatever precedes it) and the readout is the one other 2-D ``weight`` whose input size is the
hidden size.  Anything that does not fit this picture -- LSTM/GRU, several RNNs, stacked or
bidirectional layers, extra layers that would be silently dropped, a tanh RNN that says so --
is refused with a :class:`ImportRefused` message that lists the tensors found, so the user can
see what the file holds.  Every tensor is checked before it is used: floating point, its own
values (no stride-0 or overlapping view that declares more values than the file stores), finite,
and sizes within what one board holds.

A bare ``state_dict`` cannot say whether its ``nn.RNN`` was ReLU or tanh (the default): the loaded
model carries a :class:`ForeignSource` and :func:`.pipeline.prepare_model` runs it both ways on the
task's data, refusing one that fits clearly better as tanh.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from drivers.dynapse1.topology import N_NEURONS

#: Hidden units a DYNAP-SE1 board can hold (4 chips x 4 cores x 256 neurons).
MAX_HIDDEN = N_NEURONS
#: Input channels and readout classes accepted.  Inputs become spike-generator sources and the
#: readout runs on the host; both are capped at the board's neuron count to keep every
#: allocation proportional to what a real network needs.
MAX_CHANNELS = N_NEURONS
#: Nested dict levels searched for tensors (``{"ckpt": {"model": {"module": sd}}}`` is 3).
MAX_DEPTH = 8

_RNN_SUFFIXES = ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0")
#: Readout names preferred when several ``nn.Linear`` layers could be the readout.
_READOUT_NAMES = ("fc", "readout", "linear", "out", "output", "classifier", "head", "decoder")
#: Where a declared nonlinearity may sit: the top level or one of these metadata dicts.
_META_KEYS = ("meta", "metadata", "config", "hparams", "hyper_parameters", "args")


#: How an imported model's readout reads the hidden states, and the :class:`~.models.RNNConfig`
#: readout that computes it: the state at each sequence's last valid step, the mean over its valid
#: steps, or the state at the last (padded) step -- the padding is then presented as input too.
READOUT_RULES = {"last_valid": "last", "mean": "mean", "last_step": "last"}


@dataclass
class ForeignSource:
    """What a plain-PyTorch checkpoint said about itself; :func:`.checkpoint.load_checkpoint` attaches
    it to the model it builds as ``model.foreign`` and the pipeline reads it (a model the tool
    trained has none)."""

    #: ``nonlinearity`` the file declares (``"relu"``), or None: ``nn.RNN``'s state_dict does not
    #: store it and its default is tanh, so the pipeline checks which reading fits the data
    nonlinearity: str | None = None
    #: readout rule the file's metadata declares (a key of :data:`READOUT_RULES`), or None
    readout: str | None = None

    def to_dict(self) -> dict:
        return {"nonlinearity_declared": self.nonlinearity, "readout_declared": self.readout}


class ImportRefused(ValueError):
    """The checkpoint holds no ReLU RNN that can be converted; the message says what it holds."""


@dataclass
class ImportedRNN:
    """Weights of a one-layer ReLU RNN with a linear readout, checked and as float32."""

    w_ih: torch.Tensor  # [H, F]
    w_hh: torch.Tensor  # [H, H]
    bias: torch.Tensor  # [H]: bias_ih + bias_hh
    w_out: torch.Tensor  # [C, H]
    b_out: torch.Tensor  # [C]
    rnn_prefix: str
    readout_prefix: str
    ignored: list[str] = field(default_factory=list)  # tensors that are not weights (e.g. a stored mean/std)
    meta: dict = field(default_factory=dict)  # the file's plain metadata (numbers, strings), if any


def flatten_tensors(obj: dict) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Dotted name -> tensor for every tensor in nested dicts, and dotted name -> type of everything else."""
    tensors: dict[str, torch.Tensor] = {}
    others: dict[str, str] = {}
    stack: list[tuple[str, dict, int]] = [("", obj, 0)]
    seen = {id(obj)}  # a pickle can make a dict contain itself
    while stack:  # iterative, every dict once: ends on any input
        prefix, node, depth = stack.pop()
        for key, value in node.items():
            name = f"{prefix}{key}"
            if isinstance(value, torch.Tensor):
                tensors[name] = value
            elif isinstance(value, dict) and depth + 1 < MAX_DEPTH and id(value) not in seen:
                seen.add(id(value))
                stack.append((name + ".", value, depth + 1))
            else:
                others[name] = _kind(value)
    return tensors, others


def describe_keys(tensors: dict[str, torch.Tensor], others: dict[str, str], limit: int = 24) -> str:
    """``name [shape]`` for the tensors and ``name (type)`` for the rest, for error messages."""
    items = [f"{k} {list(v.shape)}" for k, v in sorted(tensors.items())] + [f"{k} ({t})" for k, t in sorted(others.items())]
    if not items:
        return "nothing"
    more = f", ... ({len(items) - limit} more)" if len(items) > limit else ""
    return ", ".join(items[:limit]) + more


def check_weight(name: str, t: torch.Tensor) -> None:
    """A tensor that can be used as weights: floating point, dense, finite, and no more values than the file stores.

    The last rule bounds memory by the file size: copying a tensor allocates ``numel`` values, and a
    stride-0 view declares any number of values over a one-element storage.  Views that share a
    storage (a cuDNN flat weight buffer) declare no more than it holds and pass.
    """
    if t.layout != torch.strided:
        raise ImportRefused(f"tensor {name} is {t.layout}, not a dense tensor")
    if not t.dtype.is_floating_point:
        raise ImportRefused(f"tensor {name} has dtype {t.dtype}; weights must be floating point")
    stored = t.untyped_storage().nbytes() // max(t.element_size(), 1)
    if t.numel() > stored:  # torch.load already checked that every index lies inside the storage
        raise ImportRefused(
            f"tensor {name} declares shape {list(t.shape)} ({t.numel()} values) but the file stores only "
            f"{stored} values for it (a stride-0 or overlapping view, strides {list(t.stride())}); a checkpoint must store its weights"
        )
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        n_nan = int(torch.isnan(t).sum())
        n_inf = int((~finite).sum()) - n_nan
        raise ImportRefused(f"tensor {name} holds {n_nan} NaN and {n_inf} infinite values; weights must be finite")
    if not bool(torch.isfinite(t.float()).all()):  # finite in float64, inf once made float32 as the model holds it
        raise ImportRefused(f"tensor {name} holds values beyond float32's range (|w| up to {float(t.abs().max()):.3g}); "
                            "the model's weights are float32: rescale them or save the model in float32")


def declared_nonlinearity(obj: dict) -> str | None:
    """``nonlinearity`` as stored at the top level or in a metadata dict (``meta``, ``config``, ...)."""
    places = [obj, *(obj[k] for k in _META_KEYS if isinstance(obj.get(k), dict))]
    for place in places:
        value = place.get("nonlinearity")
        if value is not None:
            return str(value)
    return None


def declared_readout(obj: dict) -> str | None:
    """A readout rule (:data:`READOUT_RULES`) stored as ``readout`` at the top level or in a metadata dict."""
    places = [obj, *(obj[k] for k in _META_KEYS if isinstance(obj.get(k), dict))]
    for place in places:
        value = place.get("readout")
        if isinstance(value, str):
            if value not in READOUT_RULES:
                raise ImportRefused(f"declares readout {value!r}; known rules: {', '.join(READOUT_RULES)}")
            return value
    return None


def elman_logits(w_in: torch.Tensor, bias: torch.Tensor, w_rec: torch.Tensor, readout: torch.nn.Linear, x: torch.Tensor,
                 lengths: torch.Tensor, nonlinearity: str = "relu", rule: str = "last_valid") -> torch.Tensor:
    """Logits of an Elman ``nn.RNN`` + readout as PyTorch computes them (unbounded ReLU, or tanh).

    ``h_t = f(W_in x_t + b + W_rec h_{t-1})`` from ``h = 0``; ``rule`` picks the readout's input
    (:data:`READOUT_RULES`).  The float reference of an imported model, and the test of which
    nonlinearity a bare state_dict was trained with.
    """
    f = torch.relu if nonlinearity == "relu" else torch.tanh
    n, t_max, _ = x.shape
    drive = x @ w_in.T + bias
    h = x.new_zeros(n, w_rec.shape[0])
    total, last = torch.zeros_like(h), torch.zeros_like(h)
    for t in range(t_max):
        h = f(drive[:, t] + h @ w_rec.T)
        valid = (t < lengths).to(h.dtype)[:, None]
        total = total + valid * h
        last = torch.where((lengths == t + 1)[:, None], h, last)
    features = {"last_valid": last, "mean": total / lengths[:, None].to(h.dtype), "last_step": h}[rule]
    return readout(features)


def find_relu_rnn(obj: object) -> ImportedRNN:
    """The ReLU RNN and readout in ``obj`` (what ``torch.load`` returned); see the module docstring."""
    if not isinstance(obj, dict):
        raise ImportRefused(f"holds a {_kind(obj)}, not a state_dict (a dict of named tensors)")
    for key in ("meta", "metadata"):  # kept only to say things about the model: not a dict is a mistake, not silence
        if key in obj and not isinstance(obj[key], dict):
            raise ImportRefused(f"has {key!r} = {obj[key]!r:.60} ({type(obj[key]).__name__}); {key!r} must be a dict such as "
                                "{'nonlinearity': 'relu', 'readout': 'last_valid'}")
    declared = declared_nonlinearity(obj)
    if declared is not None and declared.lower() != "relu":
        raise ImportRefused(f"declares nonlinearity {declared!r}: only ReLU RNNs map onto spiking neurons (a rate cannot be negative)")
    tensors, others = flatten_tensors(obj)
    found = f"found: {describe_keys(tensors, others)}"
    if not tensors:
        raise ImportRefused(f"contains no tensors ({found})")
    lowered = " ".join(tensors).lower()
    if "lstm" in lowered or "gru" in lowered:
        raise ImportRefused(f"looks like an LSTM/GRU (key names); only Elman ReLU RNNs are supported ({found})")
    if any("_reverse" in k for k in tensors):
        raise ImportRefused(f"holds a bidirectional RNN; it cannot run causally on the chip ({found})")
    if any(k.rsplit("_l", 1)[-1].isdigit() and not k.endswith("_l0") for k in tensors if "_ih_l" in k or "_hh_l" in k):
        raise ImportRefused(f"holds a multi-layer RNN; only num_layers=1 is supported ({found})")
    ih = sorted(k for k in tensors if k.endswith("weight_ih_l0"))
    if not ih:
        raise ImportRefused(f"has no recurrent layer (no tensor named ...weight_ih_l0 as nn.RNN saves it; {found})")
    if len(ih) > 1:
        raise ImportRefused(f"holds {len(ih)} recurrent layers ({', '.join(ih)}); only one nn.RNN is supported")
    prefix = ih[0][: -len("weight_ih_l0")]
    if prefix + "weight_hh_l0" not in tensors:
        raise ImportRefused(f"has {ih[0]} but no {prefix}weight_hh_l0 ({found})")
    w_ih, w_hh = tensors[prefix + "weight_ih_l0"], tensors[prefix + "weight_hh_l0"]
    if w_hh.ndim != 2 or w_ih.ndim != 2:
        raise ImportRefused(f"recurrent weights must be matrices, got {prefix}weight_ih_l0 {list(w_ih.shape)} and "
                            f"{prefix}weight_hh_l0 {list(w_hh.shape)}")
    hidden = w_hh.shape[1]
    if hidden == 0:
        raise ImportRefused(f"the recurrent layer has zero hidden units ({prefix}weight_hh_l0 {list(w_hh.shape)})")
    if w_hh.shape[0] in (3 * hidden, 4 * hidden) and w_ih.shape[0] == w_hh.shape[0]:
        cell = "an LSTM" if w_hh.shape[0] == 4 * hidden else "a GRU"
        raise ImportRefused(f"holds {cell} ({prefix}weight_hh_l0 has {w_hh.shape[0] // hidden} x {hidden} gate rows); "
                            "only Elman ReLU RNNs are supported")
    if prefix + "weight_hr_l0" in tensors:  # nn.LSTM(proj_size=P): weight_hh is [4H, P], no multiple of P
        raise ImportRefused(f"holds an LSTM with proj_size ({prefix}weight_hr_l0 {list(tensors[prefix + 'weight_hr_l0'].shape)}); "
                            "only Elman ReLU RNNs are supported")
    if w_hh.shape[0] != hidden or w_ih.shape[0] != hidden:
        raise ImportRefused(f"inconsistent RNN shapes: {prefix}weight_ih_l0 {list(w_ih.shape)}, {prefix}weight_hh_l0 "
                            f"{list(w_hh.shape)} (expected [H, inputs] and [H, H])")
    if hidden > MAX_HIDDEN:
        raise ImportRefused(f"has {hidden} hidden units; a DYNAP-SE1 board has {MAX_HIDDEN} neurons")
    if not 1 <= w_ih.shape[1] <= MAX_CHANNELS:
        raise ImportRefused(f"has {w_ih.shape[1]} inputs ({prefix}weight_ih_l0 {list(w_ih.shape)}); 1..{MAX_CHANNELS} are supported")
    used = {prefix + s for s in _RNN_SUFFIXES}
    readout = _find_readout(tensors, used, hidden, found)
    w_out = tensors[readout + "weight"]
    if not 1 <= w_out.shape[0] <= MAX_CHANNELS:
        raise ImportRefused(f"readout {readout}weight has {w_out.shape[0]} outputs; 1..{MAX_CHANNELS} are supported")
    used |= {readout + "weight", readout + "bias"}
    extra = sorted(k for k in tensors if k not in used and k.rsplit(".", 1)[-1].startswith(("weight", "bias")))
    if extra:
        raise ImportRefused(
            f"holds layers besides the nn.RNN ({prefix or '<top level>'}) and the readout ({readout}) that the chip "
            f"cannot run and that would be dropped: {describe_keys({k: tensors[k] for k in extra}, {})}"
        )
    shapes = {
        prefix + "bias_ih_l0": (hidden,), prefix + "bias_hh_l0": (hidden,), readout + "bias": (w_out.shape[0],),
    }
    for name, shape in shapes.items():
        if name in tensors and tuple(tensors[name].shape) != shape:
            raise ImportRefused(f"tensor {name} has shape {list(tensors[name].shape)}, expected {list(shape)}")
    for name in sorted(used & tensors.keys()):
        check_weight(name, tensors[name])
    bias = torch.zeros(hidden)
    for name in (prefix + "bias_ih_l0", prefix + "bias_hh_l0"):
        if name in tensors:
            bias = bias + tensors[name].float()
    b_out = tensors[readout + "bias"].float() if readout + "bias" in tensors else torch.zeros(w_out.shape[0])
    ignored = sorted(set(tensors) - used)
    meta = {k: v for k, v in obj.items() if isinstance(v, (str, int, float, bool)) and k != "nonlinearity"}
    for key in _META_KEYS:
        if isinstance(obj.get(key), dict):
            meta[key] = {k: v for k, v in obj[key].items() if isinstance(v, (str, int, float, bool))}
    return ImportedRNN(w_ih.float(), w_hh.float(), bias, w_out.float(), b_out, prefix, readout, ignored, meta)


def _find_readout(tensors: dict[str, torch.Tensor], used: set[str], hidden: int, found: str) -> str:
    """Prefix of the one ``nn.Linear`` that reads the hidden units."""
    candidates = [k[: -len("weight")] for k, t in tensors.items()
                  if k not in used and (k == "weight" or k.endswith(".weight")) and t.ndim == 2]
    matching = sorted(c for c in candidates if tensors[c + "weight"].shape[1] == hidden)
    if len(matching) > 1:
        named = [c for c in matching if c.rstrip(".").rsplit(".", 1)[-1] in _READOUT_NAMES]
        if len(named) == 1:
            return named[0]
        raise ImportRefused(f"has {len(matching)} linear layers that could be the readout "
                            f"({', '.join(c + 'weight' for c in matching)}); keep one readout in the file")
    if not matching:
        raise ImportRefused(f"has no nn.Linear readout taking the {hidden} hidden units (a 2-D ...weight of shape "
                            f"[classes, {hidden}]; {found})")
    return matching[0]


def _kind(value: object) -> str:
    if isinstance(value, (list, tuple)):
        return f"{type(value).__name__} of {len(value)}"
    if isinstance(value, dict):
        return f"dict of {len(value)}"
    return type(value).__name__
