"""Hostile, damaged and foreign checkpoints (issue 14 rows, issue 19 layouts).

Every foreign model here is written with plain PyTorch (nn.RNN + nn.Linear), never through the
package, and saved in the layouts people use.  Every bad file must give a CheckpointError that
names the problem -- and exit code 2 with that message from the CLI -- before anything large is
allocated.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from neurolab_gui.core.conversion.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig

F, H, C = 3, 6, 4


class ForeignModel(nn.Module):
    """What a user writes: nn.RNN(relu) + nn.Linear, readout at the last step."""

    def __init__(self, hidden: int = H) -> None:
        super().__init__()
        self.rnn = nn.RNN(F, hidden, nonlinearity="relu", batch_first=True)
        self.fc = nn.Linear(hidden, C)
        with torch.no_grad():  # small weights: activations stay below NeuroLab's clip at 1
            for p in self.rnn.parameters():
                p.mul_(0.3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out, _ = self.rnn(x)
        return self.fc(out[:, -1])


def _assert_same_function(loaded, ref: ForeignModel) -> None:
    x = torch.rand(5, 7, F) * 0.5
    got, _ = loaded.model(x)
    assert torch.allclose(got, ref(x), atol=1e-5)


def _foreign() -> ForeignModel:
    torch.manual_seed(0)
    return ForeignModel()


LAYOUTS = {
    "bare state_dict": lambda m: m.state_dict(),
    "rnn + readout + meta": lambda m: {"rnn": m.rnn.state_dict(), "readout": m.fc.state_dict(),
                                       "meta": {"mean": [0.1, 0.2, 0.3], "epochs": 30, "nonlinearity": "relu"}},
    "{'model': sd}": lambda m: {"model": m.state_dict()},
    "{'state_dict': sd}": lambda m: {"state_dict": m.state_dict(), "epoch": 12},
    "training checkpoint": lambda m: {"model_state_dict": m.state_dict(), "epoch": 3, "loss": 0.1,
                                      "optimizer_state_dict": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.zeros(H, F)}},
                                                                              "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}},
    "DataParallel module. prefix": lambda m: {f"module.{k}": v for k, v in m.state_dict().items()},
    "Lightning model. prefix": lambda m: {"state_dict": {f"model.{k}": v for k, v in m.state_dict().items()},
                                          "hyper_parameters": {"hidden": H}},
    "bare nn.RNN + head": lambda m: {**m.rnn.state_dict(), "head.weight": m.fc.weight, "head.bias": m.fc.bias},
    "mean/std tensors beside the model": lambda m: {"model": m.state_dict(), "norm": {"mean": torch.zeros(F), "std": torch.ones(F)}},
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_common_layouts_import_and_compute_the_same_function(tmp_path, layout):
    ref = _foreign()
    torch.save(LAYOUTS[layout](ref), tmp_path / "m.pt")
    loaded = load_checkpoint(tmp_path / "m.pt")
    assert loaded.source_format == "torch-state-dict"
    assert (loaded.model.config.n_inputs, loaded.model.config.n_hidden, loaded.model.config.n_outputs) == (F, H, C)
    _assert_same_function(loaded, ref)


def test_rnn_readout_meta_layout_keeps_the_files_metadata(tmp_path):
    ref = _foreign()
    torch.save(LAYOUTS["rnn + readout + meta"](ref), tmp_path / "m.pt")
    meta = load_checkpoint(tmp_path / "m.pt").metadata
    assert meta["prefix"] == "rnn." and meta["readout_prefix"] == "readout."
    assert meta["file_metadata"]["meta"]["epochs"] == 30


@pytest.mark.parametrize("obj, message", [
    ({"encoder": {"weight": torch.zeros(5, 3), "bias": torch.zeros(5)}}, r"no recurrent layer.*encoder\.weight \[5, 3\]"),
    ({"rnn": nn.RNN(3, 6, nonlinearity="relu").state_dict()}, r"no nn.Linear readout.*rnn\.weight_hh_l0 \[6, 6\]"),
    ({"a": nn.RNN(3, 6).state_dict(), "b": nn.RNN(3, 6).state_dict()}, r"2 recurrent layers"),
    ({"meta": {"epochs": 3}, "notes": "x"}, r"contains no tensors.*meta\.epochs \(int\)"),
])
def test_nothing_fits_shows_the_keys_found(tmp_path, obj, message):
    torch.save(obj, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "m.pt")


def test_extra_layers_are_refused_not_dropped(tmp_path):
    ref = _foreign()
    sd = {**ref.state_dict(), "encoder.weight": torch.zeros(F, F), "encoder.bias": torch.zeros(F)}
    torch.save(sd, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"would be dropped: encoder\.bias \[3\], encoder\.weight \[3, 3\]"):
        load_checkpoint(tmp_path / "m.pt")


def _with(sd: dict, **changes: torch.Tensor) -> dict:
    out = dict(sd)
    out.update({k.replace("__", "."): v for k, v in changes.items()})
    return out


# ---- issue 14's checkpoint rows ---------------------------------------------------------------

@pytest.mark.parametrize("value, what", [(float("nan"), r"1 NaN and 0 infinite"), (float("inf"), r"0 NaN and 1 infinite")])
def test_non_finite_weights_are_refused_at_load(tmp_path, value, what):
    sd = _foreign().state_dict()
    w = sd["rnn.weight_hh_l0"].clone()
    w[2, 3] = value
    torch.save(_with(sd, rnn__weight_hh_l0=w), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=rf"rnn\.weight_hh_l0 holds {what} values"):
        load_checkpoint(tmp_path / "m.pt")


def _stride0_file(path, hidden: int) -> None:
    zero = torch.zeros(1)
    torch.save({"rnn.weight_ih_l0": zero.expand(hidden, F), "rnn.weight_hh_l0": zero.expand(hidden, hidden),
                "fc.weight": zero.expand(C, hidden)}, path)


def test_stride0_checkpoint_declaring_more_than_the_board_is_refused(tmp_path):
    for hidden in (30_000, 100_000):
        _stride0_file(tmp_path / "big.pt", hidden)
        assert os.path.getsize(tmp_path / "big.pt") < 4096
        with pytest.raises(CheckpointError, match=rf"{hidden} hidden units; a DYNAP-SE1 board has 4096 neurons"):
            load_checkpoint(tmp_path / "big.pt")


def test_stride0_checkpoint_within_the_board_size_is_refused_as_a_view(tmp_path):
    _stride0_file(tmp_path / "view.pt", 4000)
    with pytest.raises(CheckpointError, match=r"tensor (fc\.weight|rnn\.weight_..\_l0) declares shape \[.*4000.*\] \(\d+ values\) but the file stores only 1 value"):
        load_checkpoint(tmp_path / "view.pt")


def test_stride0_checkpoint_stays_small_in_memory(tmp_path):
    """Measured in a fresh process: peak RSS of loading the 100 000-unit file (it used to try 40 GB)."""
    _stride0_file(tmp_path / "big.pt", 100_000)
    code = textwrap.dedent(f"""
        import resource, torch
        base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        from neurolab_gui.core.conversion.checkpoint import CheckpointError, load_checkpoint
        try:
            load_checkpoint({str(tmp_path / 'big.pt')!r})
        except CheckpointError:
            pass
        print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert int(out.stdout.split()[-1]) < 200  # MiB on top of an imported torch


@pytest.mark.parametrize("change, message", [
    (dict(rnn__bias_ih_l0=torch.zeros(H + 1)), r"rnn\.bias_ih_l0 has shape \[7\], expected \[6\]"),
    (dict(fc__bias=torch.zeros(C, 2)), r"fc\.bias has shape \[4, 2\], expected \[4\]"),
    (dict(fc__weight=torch.zeros(C, H + 2)), r"no nn.Linear readout taking the 6 hidden units"),
    (dict(rnn__weight_ih_l0=torch.zeros(H, F, 2)), r"recurrent weights must be matrices"),
    (dict(rnn__weight_hh_l0=torch.zeros(H, H, dtype=torch.int64)), r"dtype torch.int64; weights must be floating point"),
])
def test_foreign_tensors_of_wrong_shape_or_type_are_named(tmp_path, change, message):
    torch.save(_with(_foreign().state_dict(), **change), tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "m.pt")


def test_zero_hidden_units_is_called_what_it_is(tmp_path):
    torch.save({"rnn.weight_ih_l0": torch.zeros(0, F), "rnn.weight_hh_l0": torch.zeros(0, 0),
                "fc.weight": torch.zeros(C, 0)}, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match="zero hidden units") as info:
        load_checkpoint(tmp_path / "m.pt")
    assert "LSTM" not in str(info.value).split(". supported")[0]


def _own_payload(**changes) -> dict:
    model = RateRNN(RNNConfig(F, H, C))
    meta = {"config": model.config.to_dict(), "nonlinearity": "bounded_relu"}
    meta["config"].update(changes.pop("config", {}))
    payload = {"format": "neurolab-rate-rnn", "version": 1, "metadata_json": json.dumps(meta),
               "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()}}
    payload.update(changes)
    return payload


@pytest.mark.parametrize("payload, message", [
    (_own_payload(state_dict=[torch.zeros(3)]), r"state_dict is a list of 1, not a dict of named tensors"),
    (_own_payload(config={"n_hidden": "64"}), r"config n_hidden must be an integer, got '64' \(str\)"),
    (_own_payload(config={"n_inputs": 3.0}), r"config n_inputs must be an integer"),
    (_own_payload(config={"n_hidden": True}), r"config n_hidden must be an integer"),
    (_own_payload(config={"n_hidden": 0}), r"n_hidden = 0 is outside 1\.\.4096"),
    (_own_payload(config={"n_hidden": 30000}), r"n_hidden = 30000 is outside 1\.\.4096; a DYNAP-SE1 board has 4096"),
    (_own_payload(config={"retention": float("nan")}), r"retention must be a finite number"),
    (_own_payload(config={"bogus": 1}), r"unknown field\(s\) \['bogus'\]"),
    (_own_payload(metadata_json="{" * 100_000), r"metadata_json is not valid JSON"),
    (_own_payload(metadata_json=5), r"metadata_json must be JSON text"),
    (_own_payload(version="1"), r"version '1' is not supported"),
])
def test_own_format_headers_are_checked_before_allocation(tmp_path, payload, message):
    torch.save(payload, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "m.pt")


def test_own_format_wrong_bias_shape_and_nan_are_named(tmp_path):
    p = _own_payload()
    p["state_dict"]["w_bias"] = torch.zeros(H - 1)
    torch.save(p, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"tensor w_bias has shape \[5\], expected \[6\]"):
        load_checkpoint(tmp_path / "m.pt")
    p = _own_payload()
    p["state_dict"]["w_rec"][0, 0] = float("nan")
    torch.save(p, tmp_path / "m.pt")
    with pytest.raises(CheckpointError, match=r"w_rec holds 1 NaN"):
        load_checkpoint(tmp_path / "m.pt")


def _damaged_files(tmp_path) -> dict[str, tuple[bytes, str]]:
    torch.save(_foreign().state_dict(), tmp_path / "good.pt")
    good = (tmp_path / "good.pt").read_bytes()
    import io
    legacy = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, legacy, _use_new_zipfile_serialization=False)
    return {
        "empty": (b"", r"is empty \(0 bytes\)"),
        "truncated": (good[: len(good) // 2], r"is truncated or damaged: .*zip directory cannot be read"),
        "truncated tail": (good[:-20], r"is truncated or damaged"),
        "garbage": (bytes(range(7, 250)), r"is not a PyTorch checkpoint: it starts with"),
        "text": (b"hello, I am a text file\n", r"is not a PyTorch checkpoint"),
        "legacy format, not an RNN": (legacy.getvalue(), r"has no recurrent layer.*found: w \[2\]"),
        "plain pickle": (pickle.dumps({"w": [1.0, 2.0]}, protocol=4), r"plain Python pickle, not a file written by torch.save"),
        "zip without data.pkl": (_zip_bytes(tmp_path), r"zip archive but not a PyTorch checkpoint"),
    }


def _legacy_storage_bomb(numel: int) -> bytes:
    """A 300-byte legacy-format file whose header declares ``numel`` float32 values for a 4-value tensor."""
    import collections
    import io
    import struct

    marker = object()

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "k1", "cpu", numel, None) if obj is marker else None

    class Tensor:
        def __reduce__(self):
            return (torch._utils._rebuild_tensor_v2, (marker, 0, (4,), (1,), False, collections.OrderedDict()))

    out = io.BytesIO()
    for header in (0x1950A86A20F9469CFC6C, 1001, {"protocol_version": 1001, "little_endian": True,
                                                  "type_sizes": {"short": 2, "int": 4, "long": 4}}):
        pickle.dump(header, out, protocol=2)
    Pickler(out, protocol=2).dump({"w": Tensor()})
    pickle.dump(["k1"], out, protocol=2)
    out.write(struct.pack("<q", numel) + bytes(16))
    return out.getvalue()


def test_legacy_format_is_read_and_its_declared_sizes_are_checked_first(tmp_path):
    ref = _foreign()
    torch.save({"model": ref.state_dict()}, tmp_path / "old.pt", _use_new_zipfile_serialization=False)
    _assert_same_function(load_checkpoint(tmp_path / "old.pt"), ref)
    (tmp_path / "bomb.pt").write_bytes(_legacy_storage_bomb(10_000_000_000))
    assert os.path.getsize(tmp_path / "bomb.pt") < 1024
    with pytest.raises(CheckpointError, match=r"declares 40000000000 bytes of tensor storage but the file has \d+ bytes"):
        load_checkpoint(tmp_path / "bomb.pt")


def _zip_bytes(tmp_path) -> bytes:
    with zipfile.ZipFile(tmp_path / "z.zip", "w") as z:
        z.writestr("readme.txt", "hi")
    return (tmp_path / "z.zip").read_bytes()


def test_truncated_garbage_and_empty_files_get_clear_messages(tmp_path):
    for name, (data, message) in _damaged_files(tmp_path).items():
        (tmp_path / "bad.pt").write_bytes(data)
        with pytest.raises(CheckpointError, match=message) as info:
            load_checkpoint(tmp_path / "bad.pt")
        text = str(info.value)
        assert "weights_only" not in text.split("re-save")[0] and "Errno" not in text and "EOFError: )" not in text, name


def test_pickled_objects_are_named_and_not_executed(tmp_path):
    import numpy as np

    torch.save({"model": _foreign().state_dict(), "meta": {"mean": np.zeros(3)}}, tmp_path / "np.pt")
    with pytest.raises(CheckpointError, match=r"pickled Python objects \(numpy.*_reconstruct\).*not loaded"):
        load_checkpoint(tmp_path / "np.pt")

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    torch.save({"x": Boom()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match=r"pickled Python objects \((posix|os)\.system\)"):
        load_checkpoint(tmp_path / "evil.pt")
    assert not (tmp_path / "pwned").exists()


# ---- property-based: any header is either a valid model or a CheckpointError ------------------

_json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10_000_000), st.floats(allow_nan=True),
                          st.text(max_size=4), st.lists(st.integers(0, 9), max_size=3))
_config_values = st.fixed_dictionaries({}, optional={
    "n_inputs": st.one_of(st.integers(-2, 5000), _json_scalars), "n_hidden": st.one_of(st.integers(-2, 5000), _json_scalars),
    "n_outputs": st.one_of(st.integers(-2, 5000), _json_scalars), "kind": st.sampled_from(["elman", "leaky", "lstm", 3]),
    "retention": st.one_of(st.floats(-1, 2), _json_scalars), "saturation": st.one_of(st.floats(-1, 5), _json_scalars),
    "readout": st.sampled_from(["mean", "last", "max", None]), "steps_per_sample": st.one_of(st.integers(-1, 2000), _json_scalars),
    "integrator": st.sampled_from(["euler", "heun", ""]),
})
_shapes = st.lists(st.integers(0, 9), min_size=0, max_size=3).map(tuple)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(config=_config_values, shapes=st.dictionaries(st.sampled_from(["w_in", "w_bias", "w_rec", "readout.weight", "readout.bias", "x"]),
                                                      _shapes, max_size=6))
def test_property_own_format_headers(tmp_path, config, shapes):
    payload = _own_payload()
    payload["metadata_json"] = json.dumps({"config": config})
    payload["state_dict"] = {k: torch.zeros(s) for k, s in shapes.items()}
    torch.save(payload, tmp_path / "h.pt")
    try:
        loaded = load_checkpoint(tmp_path / "h.pt")
    except CheckpointError as exc:
        assert str(tmp_path / "h.pt") in str(exc)
        return
    c = loaded.model.config
    assert 1 <= c.n_hidden <= 4096 and shapes["w_rec"] == (c.n_hidden, c.n_hidden) and shapes["w_in"] == (c.n_hidden, c.n_inputs)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(wrappers=st.lists(st.sampled_from(["model", "state_dict", "module", "net", "checkpoint"]), max_size=3),
       flat_prefix=st.sampled_from(["", "module.", "model.", "module.model."]),
       readout=st.sampled_from(["fc", "readout", "classifier", "head", "out"]),
       extras=st.dictionaries(st.sampled_from(["epoch", "lr", "note"]), st.one_of(st.integers(), st.text(max_size=5)), max_size=2))
def test_property_foreign_layouts(tmp_path, wrappers, flat_prefix, readout, extras):
    ref = _foreign()
    sd = {f"{flat_prefix}rnn.{k}": v for k, v in ref.rnn.state_dict().items()}
    sd.update({f"{flat_prefix}{readout}.{k}": v for k, v in ref.fc.state_dict().items()})
    obj: dict = sd
    for w in reversed(wrappers):
        obj = {w: obj, **extras}
    torch.save(obj, tmp_path / "f.pt")
    _assert_same_function(load_checkpoint(tmp_path / "f.pt"), ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=600), keep=st.floats(0.0, 1.0))
def test_property_damaged_bytes_never_escape_as_other_errors(tmp_path, data, keep):
    torch.save(_foreign().state_dict(), tmp_path / "g.pt")
    good = (tmp_path / "g.pt").read_bytes()
    cut = good[: int(len(good) * keep)]
    for blob in (data, cut, cut + data, b"PK\x03\x04" + data):
        (tmp_path / "d.pt").write_bytes(blob)
        try:
            load_checkpoint(tmp_path / "d.pt")
        except CheckpointError:
            pass


# ---- the CLI: exit 2 and the message, before any board is opened ------------------------------

def test_cli_convert_and_calibrate_exit_2_with_the_message(tmp_path, capsys, monkeypatch):
    from neurolab_gui.cli import calibrate as calibrate_cli
    from neurolab_gui.cli import main

    def no_board(_args):
        raise AssertionError("the board must not be opened for a bad checkpoint")

    monkeypatch.setattr(calibrate_cli, "_open", no_board)
    sd = _foreign().state_dict()
    bad = {"nan": _with(sd, rnn__weight_ih_l0=torch.full((H, F), float("nan"))),
           "list": [sd["fc.weight"]], "bias": _with(sd, rnn__bias_hh_l0=torch.zeros(2))}
    files = {k: tmp_path / f"{k}.pt" for k in bad}
    for k, obj in bad.items():
        torch.save(obj, files[k])
    (tmp_path / "empty.pt").write_bytes(b"")
    files["empty"] = tmp_path / "empty.pt"
    for name, path in files.items():
        for argv in (["convert", str(path), "--task", "seq_digits"], ["calibrate", "--task", "seq_digits", "--checkpoint", str(path)]):
            assert main(argv) == 2, (name, argv[0])
            out = capsys.readouterr().err
            assert out.startswith("error: ") and str(path) in out and "Traceback" not in out, (name, out)


def test_save_then_load_round_trip_still_works(tmp_path):
    model = RateRNN(RNNConfig(F, H, C, kind="leaky", saturation=1.0, integrator="heun"))
    loaded = load_checkpoint(save_checkpoint(tmp_path / "own.pt", model, {"task": "seq_digits"}))
    assert loaded.model.config == model.config and loaded.metadata["task"] == "seq_digits"



def test_views_of_one_shared_buffer_are_accepted(tmp_path):
    """Weights saved as views into one flat buffer (cuDNN's flatten_parameters layout) store all their values."""
    ref = _foreign()
    sd = ref.state_dict()
    flat = torch.cat([v.reshape(-1) for v in sd.values()])
    views, start = {}, 0
    for k, v in sd.items():
        views[k] = flat[start : start + v.numel()].view(v.shape)
        start += v.numel()
    views["rnn.weight_hh_l0"] = views["rnn.weight_hh_l0"].t().contiguous().t()  # a transposed layout, too
    torch.save(views, tmp_path / "flat.pt")
    _assert_same_function(load_checkpoint(tmp_path / "flat.pt"), ref)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(stored=st.integers(1, 40), stride=st.tuples(st.integers(0, 7), st.integers(0, 7)), offset=st.integers(0, 5))
def test_property_declared_sizes_against_stored_values(tmp_path, stored, stride, offset):
    """Any strided view as weight_hh: refused when it declares more values than the file stores, else read exactly."""
    ref = _foreign()
    sd = ref.state_dict()
    extent = offset + stride[0] * (H - 1) + stride[1] * (H - 1) + 1
    storage = torch.randn(max(stored, extent)) * 0.1
    view = storage.as_strided((H, H), stride, offset)
    sd["rnn.weight_hh_l0"] = view
    torch.save(sd, tmp_path / "v.pt")
    try:
        loaded = load_checkpoint(tmp_path / "v.pt")
    except CheckpointError as exc:
        assert view.numel() > len(storage) and "declares shape [6, 6] (36 values)" in str(exc)
        return
    assert view.numel() <= len(storage) and torch.equal(loaded.model.w_rec.detach(), view)


_names = st.sampled_from(["weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0", "weight_ih_l1", "weight", "bias",
                          "weight_hh_l0_reverse", "mean", "lstm.weight_ih_l0"])
_leaf_tensors = st.builds(lambda shape, dtype: torch.zeros(shape, dtype=dtype),
                          st.lists(st.sampled_from([0, 1, 3, 6, 12, 18, 24]), max_size=3).map(tuple),
                          st.sampled_from([torch.float32, torch.float64, torch.int64, torch.bool, torch.float16]))
_trees = st.recursive(st.one_of(_leaf_tensors, st.integers(), st.text(max_size=3)),
                      lambda inner: st.dictionaries(st.one_of(_names, st.sampled_from(["rnn", "fc", "model", "module", "meta"])), inner, max_size=5),
                      max_leaves=12)


@settings(max_examples=100, deadline=None)
@given(tree=st.dictionaries(st.one_of(_names, st.sampled_from(["rnn", "fc", "model", "nonlinearity"])), _trees, max_size=6))
def test_property_any_dict_of_tensors_is_imported_or_refused_by_name(tree):
    """find_relu_rnn on arbitrary nested dicts: an ImportRefused or a consistent set of weights, nothing else."""
    from neurolab_gui.core.conversion.torch_import import ImportRefused, find_relu_rnn

    try:
        rnn = find_relu_rnn(tree)
    except ImportRefused:
        return
    h = rnn.w_hh.shape[0]
    assert rnn.w_hh.shape == (h, h) and rnn.w_ih.shape[0] == h and rnn.bias.shape == (h,)
    assert rnn.w_out.shape[1] == h and rnn.b_out.shape == (rnn.w_out.shape[0],) and 1 <= h <= 4096
