"""NIR export/import of the constrained spiking network, checked with NIR's own writer, reader and
type checker, and foreign graphs built with plain ``nir`` calls."""

import math

import nir
import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion.constrain import ConstraintConfig, WeightPrecision, constrain, stacked_weights
from neurolab_gui.core.conversion.mapping import NeuronSettings, TimeMapping
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.nir_io import NIRImportError, import_nir, write_nir
from neurolab_gui.core.conversion.tasks import seq_digits
from neurolab_gui.core.conversion.training import TrainConfig


@pytest.fixture(scope="module")
def constrained():
    task = seq_digits().subset(100, 20)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(8, 24, 10, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))
    cfg = ConstraintConfig(precision=WeightPrecision(16), max_fan_in=20, n_core_groups=2, qat=TrainConfig(epochs=0))
    return constrain(model, task, cfg)


def test_export_write_read_keeps_weights_time_constants_and_a_valid_graph(constrained, tmp_path):
    net = constrained
    time = TimeMapping(retention=0.85, steps_per_sample=2, dt_step_s=0.004, r_max_hz=800.0)
    path = write_nir(net, tmp_path / "net.nir", time, NeuronSettings(tau_mem_s=0.12))
    assert not (tmp_path / "net.nir.part").exists()
    g = nir.read(path)  # NIR's own reader with its type check
    f, h = net.n_inputs, net.n_hidden
    for src, dst in g.edges:
        assert src in g.nodes and dst in g.nodes
    assert ("lif", "w_rec") in g.edges and ("w_rec", "lif") in g.edges
    w = net.weights()  # copy weight (core scale x the column's source gain) x multiplicity
    assert float(g.nodes["lif"].metadata["bias_gain"]) == net.bias_gain
    assert float(g.nodes["lif"].metadata["input_gain"]) == net.input_gain
    np.testing.assert_array_equal(g.nodes["w_in"].weight, w[:, :f])
    np.testing.assert_allclose(g.nodes["w_in"].bias, 800.0 * w[:, f])
    np.testing.assert_array_equal(g.nodes["w_rec"].weight, w[:, f + 1 :])
    lif = g.nodes["lif"]
    assert isinstance(lif, nir.CubaLIF)
    np.testing.assert_allclose(lif.tau_syn, np.full(h, -0.004 / math.log(0.85)))
    np.testing.assert_allclose(lif.tau_mem, np.full(h, 0.12))
    # shapes agree along every edge
    assert g.nodes["input"].output_type["output"].tolist() == [f]
    assert g.nodes["w_in"].weight.shape == (h, f) and g.nodes["w_rec"].weight.shape == (h, h)
    assert g.nodes["readout"].weight.shape == (10, h)
    assert g.nodes["output"].input_type["input"].tolist() == [10]
    # the multiplicities ride along as integers
    np.testing.assert_array_equal(g.nodes["w_rec"].metadata["multiplicity"], net.multiplicity[:, f + 1 :])


def test_round_trip_through_a_file_rebuilds_the_same_constrained_network(constrained, tmp_path):
    net = constrained
    path = write_nir(net, tmp_path / "net.nir")
    back = import_nir(path)
    assert back.constrained is not None
    np.testing.assert_array_equal(back.constrained.multiplicity, net.multiplicity)
    np.testing.assert_array_equal(back.constrained.unit_group, net.unit_group)
    np.testing.assert_allclose(stacked_weights(back.model), stacked_weights(net.model), rtol=1e-6, atol=1e-9)
    assert back.model.config.retention == pytest.approx(0.85)
    assert back.model.config.saturation == pytest.approx(1.0)
    assert back.time.tau_s == pytest.approx(TimeMapping(retention=0.85).tau_s)
    x = torch.rand(3, 5, 8)
    torch.testing.assert_close(back.model(x)[0], net.model(x)[0])


def foreign_graph(h=6, f=3, dt=1e-4, tau_mem=2e-3, tau_syn=5e-3, w_rec=None, **extra):
    """A recurrent CubaLIF written as snnTorch does (r = tau_mem / dt, w_in = tau_syn / dt)."""
    rng = np.random.default_rng(0)
    w_rec = rng.normal(0, 0.2, (h, h)) if w_rec is None else w_rec
    nodes = {
        "in": nir.Input(input_type={"input": np.array([f])}),
        "fc": nir.Linear(weight=rng.normal(0, 0.5, (h, f))),
        "rsyn": nir.CubaLIF(
            tau_syn=np.full(h, tau_syn),
            tau_mem=np.full(h, tau_mem),
            r=np.full(h, tau_mem / dt),
            v_leak=np.zeros(h),
            v_threshold=np.ones(h),
            v_reset=np.zeros(h),
            w_in=np.full(h, tau_syn / dt),
            **extra,
        ),
        "rec": nir.Linear(weight=w_rec),
        "out": nir.Output(output_type={"output": np.array([h])}),
    }
    edges = [("in", "fc"), ("fc", "rsyn"), ("rsyn", "rec"), ("rec", "rsyn"), ("rsyn", "out")]
    return nir.NIRGraph(nodes=nodes, edges=edges, type_check=False)


def test_foreign_recurrent_cubalif_imports_with_the_rate_gain(tmp_path):
    g = foreign_graph()
    nir.write(tmp_path / "foreign.nir", g)
    back = import_nir(tmp_path / "foreign.nir", dt_step_s=0.005)
    gain = (2e-3 / 1e-4) * (5e-3 / 1e-4) / 2e-3
    np.testing.assert_allclose(back.model.w_in.detach().numpy(), gain * g.nodes["fc"].weight, rtol=1e-6)
    np.testing.assert_allclose(back.model.w_rec.detach().numpy(), gain * g.nodes["rec"].weight, rtol=1e-6)
    assert back.model.config.retention == pytest.approx(math.exp(-0.005 / 5e-3))
    assert back.constrained is None and back.model.config.n_outputs == 6


def test_foreign_graphs_that_do_not_fit_are_refused_by_name():
    dense = np.full((80, 80), 0.01)
    with pytest.raises(
        NIRImportError, match="neuron 0 has 83 non-zero inputs; a DYNAP-SE1 neuron holds 64 CAM entries"
    ):
        import_nir(foreign_graph(h=80, w_rec=dense))
    g = foreign_graph()
    g.nodes["rsyn"].tau_syn = np.linspace(1e-3, 5e-3, 6)
    with pytest.raises(NIRImportError, match="tau_syn differs between neurons"):
        import_nir(g)
    g = foreign_graph()
    g.nodes["thr"] = nir.Threshold(threshold=np.ones(6))
    g.edges.append(("rsyn", "thr"))
    with pytest.raises(NIRImportError, match="node 'thr' is a Threshold"):
        import_nir(g)
    g = foreign_graph()
    g.edges.remove(("rec", "rsyn"))
    with pytest.raises(NIRImportError, match="recurrent"):
        import_nir(g)


def test_unreadable_file_is_refused_by_name(tmp_path):
    bad = tmp_path / "bad.nir"
    bad.write_bytes(b"not hdf5")
    with pytest.raises(NIRImportError, match="not a readable NIR file"):
        import_nir(bad)


def test_convert_cli_writes_a_nir_file_that_nir_reads(tmp_path, capsys):
    from neurolab_gui.cli import main
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = RateRNN(RNNConfig(8, 16, 10, kind="leaky", retention=0.85, steps_per_sample=2, saturation=1.0))
    ckpt = save_checkpoint(tmp_path / "m.pt", model, {"task": "seq_digits"})
    out = tmp_path / "m.nir"
    args = [
        "convert",
        str(ckpt),
        "--stages",
        "",
        "--qat-epochs",
        "0",
        "--json",
        str(tmp_path / "r.json"),
        "--nir",
        str(out),
    ]
    assert main(args) == 0
    assert "NIR graph written to" in capsys.readouterr().out
    g = nir.read(out)
    assert g.nodes["w_rec"].weight.shape == (16, 16) and isinstance(g.nodes["lif"], nir.CubaLIF)
    with pytest.raises(SystemExit) as exc:  # checked before the conversion, not after it
        main([*args[:-1], str(tmp_path / "missing_dir" / "m.nir")])
    assert exc.value.code == 2 and "argument --nir: cannot write" in capsys.readouterr().err


def test_write_nir_leaves_no_part_file_when_the_final_rename_fails(constrained, tmp_path):
    target = tmp_path / "taken.nir"
    target.mkdir()  # a directory where the file should go: the rename fails after the write
    with pytest.raises(OSError):
        write_nir(constrained, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.nir"]


def test_exported_units_make_a_cubalif_fire_at_r_max_times_its_preactivation(constrained, tmp_path):
    """A foreign backend's view: simulate the file with NIR's own CubaLIF equations (Euler, written
    here from the NIR docs, nothing from this package) and check rate / r_max = relu(u), with u the
    pre-activation the exported weights give for the measured rates (the NIR neuron has no
    refractory period, so no saturation)."""
    g = nir.read(write_nir(constrained, tmp_path / "net.nir"))
    lif, w_in, w_rec = g.nodes["lif"], g.nodes["w_in"], g.nodes["w_rec"]
    r_max = 1.0 / lif.w_in[0]  # our export writes w_in = 1 / r_max
    x = np.random.default_rng(3).uniform(0, 1, w_in.weight.shape[1])
    drive = w_in.weight @ (r_max * x) + w_in.bias  # input spike rates r_max * x, as continuous rates
    h = len(lif.tau_syn)
    dt, t_end, t_count = 2e-5, 0.6, 0.3
    i_syn, v, counts = np.zeros(h), np.zeros(h), np.zeros(h)
    spikes = np.zeros(h)
    for step in range(int(t_end / dt)):
        i_syn += dt * (-i_syn + lif.w_in * drive) / lif.tau_syn + lif.w_in * (w_rec.weight @ spikes) / lif.tau_syn
        v += dt * ((lif.v_leak - v) + lif.r * i_syn) / lif.tau_mem
        spikes = (v > lif.v_threshold).astype(float)
        v = np.where(spikes > 0, lif.v_reset, v)
        if step * dt >= t_end - t_count:
            counts += spikes
    rate = counts / t_count / r_max
    u = (drive / r_max) + w_rec.weight @ rate
    assert rate.max() > 0.05  # the network is active, not trivially silent
    np.testing.assert_allclose(rate, np.maximum(u, 0.0), atol=0.04)


def test_nir_import_cli_writes_a_checkpoint_convert_can_load_and_refuses_misfits(tmp_path, capsys):
    from neurolab_gui.cli import main
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint

    nir.write(tmp_path / "ok.nir", foreign_graph(h=10, f=8))  # seq_digits: 8 rate channels, 10 classes
    assert (
        main(["nir-import", str(tmp_path / "ok.nir"), str(tmp_path / "ok.pt"), "--task", "seq_digits", "--dt", "0.005"])
        == 0
    )
    loaded = load_checkpoint(tmp_path / "ok.pt")
    assert loaded.model.config.n_hidden == 10 and loaded.metadata["task"] == "seq_digits"
    nir.write(tmp_path / "dense.nir", foreign_graph(h=80, w_rec=np.full((80, 80), 0.01)))
    capsys.readouterr()
    assert main(["nir-import", str(tmp_path / "dense.nir"), str(tmp_path / "dense.pt")]) == 2
    assert "holds 64 CAM entries" in capsys.readouterr().err
    assert not (tmp_path / "dense.pt").exists()


def _nested(g, dotted: bool):
    """``g``'s recurrent layer as a subgraph, the way snnTorch exports RSynaptic ({input, lif, w_rec, output})."""
    h = g.nodes["rsyn"].tau_mem.shape[0]
    layer = nir.NIRGraph(nodes={"input": nir.Input(input_type={"input": np.array([h])}), "lif": g.nodes["rsyn"],
                                "w_rec": g.nodes["rec"], "output": nir.Output(output_type={"output": np.array([h])})},
                         edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], type_check=False)
    into, out_of = ("rlif.input", "rlif.output") if dotted else ("rlif", "rlif")
    return nir.NIRGraph(nodes={"in": g.nodes["in"], "fc": g.nodes["fc"], "rlif": layer, "out": g.nodes["out"]},
                        edges=[("in", "fc"), ("fc", into), (out_of, "out")], type_check=False)


@pytest.mark.parametrize("dotted", [False, True])
def test_nested_subgraph_imports_like_the_flat_graph(tmp_path, dotted):
    """A recurrent layer exported as a subgraph (snnTorch RSynaptic) gives the flat graph's network."""
    g = foreign_graph()
    flat = import_nir(g, dt_step_s=0.005)
    path = tmp_path / "nested.nir"
    nir.write(path, _nested(g, dotted))
    nested = import_nir(path, dt_step_s=0.005)
    for name in ("w_in", "w_rec", "w_bias"):
        np.testing.assert_allclose(getattr(nested.model, name).detach().numpy(), getattr(flat.model, name).detach().numpy())
    assert nested.model.config == flat.model.config


def test_nested_subgraph_with_a_dangling_edge_is_refused_by_name():
    g = _nested(foreign_graph(), dotted=True)
    bad = nir.NIRGraph(nodes=g.nodes, edges=[*g.edges, ("rlif.nowhere", "out")], type_check=False)
    with pytest.raises(NIRImportError, match="nowhere"):
        import_nir(bad, dt_step_s=0.005)


# ---- foreign LIF graphs, and graphs the import must refuse -------------------------------------


def lif_graph(h=6, f=3, tau=0.1, v_th=1.5, r_max=400.0, seed=2):
    """A recurrent ``nir.LIF`` layer nested as snnTorch exports RLeaky ({input, lif, w_rec, output}),
    with ``r = v_th * tau`` (rate gain 1) and weights in activation units (bias in input rate units)."""
    rng = np.random.default_rng(seed)
    layer = nir.NIRGraph(
        nodes={
            "input": nir.Input(input_type={"input": np.array([h])}),
            "lif": nir.LIF(tau=np.full(h, tau), r=np.full(h, v_th * tau), v_leak=np.zeros(h), v_threshold=np.full(h, v_th)),
            "w_rec": nir.Linear(weight=rng.normal(0, 0.15, (h, h))),
            "output": nir.Output(output_type={"output": np.array([h])}),
        },
        edges=[("input", "lif"), ("lif", "w_rec"), ("w_rec", "lif"), ("lif", "output")], type_check=False)
    nodes = {"in": nir.Input(input_type={"input": np.array([f])}),
             "fc": nir.Affine(weight=rng.uniform(-0.2, 0.6, (h, f)), bias=np.full(h, 0.1 * r_max)),
             "rleaky": layer, "out": nir.Output(output_type={"output": np.array([h])})}
    return nir.NIRGraph(nodes=nodes, edges=[("in", "fc"), ("fc", "rleaky"), ("rleaky", "out")], type_check=False)


def test_nir_lif_graph_imports_through_the_cli_and_fires_as_the_imported_network_predicts(tmp_path, capsys):
    """A genuine nir.LIF graph (was refused: "no tau_mem") imports with its tau as the time constant,
    and the spiking LIF network, simulated with NIR's own LIF equations (Euler, from the NIR docs),
    settles at the rates the imported RateRNN settles at."""
    from neurolab_gui.cli import main
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint

    r_max, tau = 400.0, 0.2  # tau long against the inter-spike intervals: a near-integrating membrane
    g = lif_graph(tau=tau, r_max=r_max)
    nir.write(tmp_path / "rleaky.nir", g)
    out = tmp_path / "rleaky.pt"
    assert main(["nir-import", str(tmp_path / "rleaky.nir"), str(out), "--dt", "0.005", "--r-max", str(r_max)]) == 0
    assert "imported 6 units, 3 inputs, 6 outputs" in capsys.readouterr().out
    model = load_checkpoint(out).model
    assert model.config.kind == "leaky" and model.config.retention == pytest.approx(math.exp(-0.005 / tau))

    x = np.random.default_rng(3).uniform(0, 1, 3)
    with torch.no_grad():
        _, rates = model(torch.as_tensor(x, dtype=torch.float32).expand(1, 400, 3))
    predicted = rates[0, -1].numpy()

    lif, fc, w_rec = g.nodes["rleaky"].nodes["lif"], g.nodes["fc"], g.nodes["rleaky"].nodes["w_rec"]
    drive = fc.weight @ (r_max * x) + fc.bias  # input spike trains as their rates r_max * x
    dt, t_end, t_count = 2e-5, 0.6, 0.4
    v, counts, spikes = np.zeros(6), np.zeros(6), np.zeros(6)
    for step in range(int(t_end / dt)):  # tau dv/dt = (v_leak - v) + R I; a spike is a unit impulse of I
        v += dt * ((lif.v_leak - v) + lif.r * drive) / lif.tau + lif.r * (w_rec.weight @ spikes) / lif.tau
        spikes = (v > lif.v_threshold).astype(float)
        v = np.where(spikes > 0, lif.v_reset, v)
        if step * dt >= t_end - t_count:
            counts += spikes
    measured = counts / t_count / r_max
    assert 0.05 < predicted.max() < 0.9 and measured.max() > 0.05  # active, and below the clip at 1
    # the rate gain neglects the leak (about -1 / (2 tau) = -2.5 Hz, amplified by the recurrence) and
    # counts are whole spikes (2.5 Hz each): measured differences stay below 0.025 = 10 Hz
    np.testing.assert_allclose(measured, predicted, atol=0.04)


def _write(path, graph):
    nir.write(path, graph)
    return path


def _mutated(change):
    g = foreign_graph()
    change(g)
    return g


def _with_readout(rows, chained=False, second=False):
    """foreign_graph with an Affine readout of ``rows`` outputs, plus a chained layer or a second readout."""
    g = foreign_graph()
    g.edges.remove(("rsyn", "out"))
    g.nodes["ro"] = nir.Affine(weight=np.ones((rows, 6)), bias=np.zeros(rows))
    g.edges += [("rsyn", "ro"), ("ro", "out")]
    g.nodes["out"] = nir.Output(output_type={"output": np.array([rows])})
    if chained:  # ro -> ro_b -> out, besides ro -> out
        g.nodes["ro_b"] = nir.Affine(weight=np.ones((2, rows)), bias=np.zeros(2))
        g.edges += [("ro", "ro_b"), ("ro_b", "out")]
    if second:
        g.nodes["ro2"] = nir.Affine(weight=np.ones((2, 6)), bias=np.zeros(2))
        g.nodes["out2"] = nir.Output(output_type={"output": np.array([2])})
        g.edges += [("rsyn", "ro2"), ("ro2", "out2")]
    return g


def _no_edges_hdf5(path):
    """An HDF5 file with a NIR-like node group but no edges (nir.read raised AssertionError)."""
    import h5py

    with h5py.File(path, "w") as fh:
        node = fh.create_group("node")
        node["type"] = "NIRGraph"
        node.create_group("nodes").create_group("lif")["type"] = "Banana"
    return path


def _set(node, **values):
    def change(g):
        for key, value in values.items():
            setattr(g.nodes[node], key, value)
    return change


REFUSED = {
    # finding 3: sizes that contradict each other
    "lif_size": (lambda: _mutated(lambda g: g.nodes.update({"rsyn": foreign_graph(h=4).nodes["rsyn"]})),
                 "neuron node 'rsyn': tau_mem has 4 values but the weights that feed it have 6 rows"),
    "input_size": (lambda: _mutated(lambda g: g.nodes.update({"in": nir.Input(input_type={"input": np.array([5])})})),
                   "Input node 'in' declares 5 values but 'fc' takes 3 inputs"),
    "output_size": (lambda: _mutated(lambda g: g.nodes.update({"out": nir.Output(output_type={"output": np.array([2])})})),
                    "Output node 'out' declares 2 values but neuron node 'rsyn' gives 6"),
    "readout_size": (lambda: _readout_size_mismatch(), "Output node 'out' declares 3 values but 'ro' gives 5"),
    # finding 3: structure that used to be dropped
    "second_readout": (lambda: _with_readout(3, second=True), "must feed exactly one readout"),
    "chained_readout": (lambda: _with_readout(3, chained=True), "layers chained after the readout are not supported"),
    "stray_node": (lambda: _mutated(lambda g: g.nodes.update({"in2": nir.Input(input_type={"input": np.array([3])})})),
                   "node 'in2' is not on the one supported path"),
    # finding 3: neurons the rate model cannot represent
    "v_leak": (lambda: _mutated(_set("rsyn", v_leak=np.full(6, 5.0))), "v_leak = 5; the importer supports only neurons that rest and reset at 0"),
    "v_reset": (lambda: _mutated(_set("rsyn", v_reset=np.full(6, -1.0))), "v_reset = -1; the importer supports only"),
    # finding 4: finite in float64, infinite in the float32 model
    "huge_weight": (lambda: _mutated(_set("rec", weight=np.full((6, 6), 1e300))), "node 'rec': the weights, times the neuron gain"),
    "tiny_tau": (lambda: _mutated(_set("rsyn", r=np.ones(6), tau_mem=np.full(6, 1e-40))), "are not finite in the model's float32"),
    "huge_readout": (lambda: _readout_size_mismatch(rows=3, scale=1e300), "readout 'ro': the weights are not finite in the model's float32"),
    # finding 4/5: metadata type and range
    "steps_huge": (lambda: foreign_graph(metadata={"steps_per_sample": 10**12}), "metadata steps_per_sample must be an integer of at most 1000"),
    "steps_float": (lambda: foreign_graph(metadata={"steps_per_sample": 2.7}), "metadata steps_per_sample must be an integer, got 2.7"),
    "steps_string": (lambda: foreign_graph(metadata={"steps_per_sample": "abc"}), "metadata steps_per_sample must be a single number, got 'abc'"),
    "r_max_array": (lambda: foreign_graph(metadata={"r_max_hz": np.array([1.0, 2.0])}), "metadata r_max_hz must be a single number"),
    "r_max_negative": (lambda: foreign_graph(metadata={"r_max_hz": -3.0}), "metadata r_max_hz must be a finite number > 0"),
    "saturation_string": (lambda: foreign_graph(metadata={"saturation": "x"}), "metadata saturation must be a single number, got 'x'"),
    "integrator_unknown": (lambda: foreign_graph(metadata={"integrator": "rk4"}), "metadata integrator must be one of euler, heun"),
}


def _readout_size_mismatch(rows=5, scale=1.0):
    g = _with_readout(3)
    g.nodes["ro"] = nir.Affine(weight=np.full((rows, 6), scale), bias=np.zeros(rows))
    return g


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_nir_import_cli_refuses_contradictions_unsupported_structure_and_bad_metadata(case, tmp_path, capsys):
    """Each was imported with a part dropped, a value ignored or truncated, inf weights, or a traceback;
    now: one ``error: FILE: <what>`` line naming the node or field, exit 2, nothing written."""
    from neurolab_gui.cli import main

    make, expected = REFUSED[case]
    path = _write(tmp_path / f"{case}.nir", make())
    assert main(["nir-import", str(path), str(tmp_path / "o.pt")]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith(f"error: {path}: ") and expected in captured.err, captured.err
    assert captured.err.count("\n") == 1 and "Traceback" not in captured.err and not captured.out
    assert sorted(p.name for p in tmp_path.iterdir()) == [path.name]


def test_nir_import_cli_refuses_an_hdf5_node_group_without_edges_without_a_traceback(tmp_path):
    """nir.read raised AssertionError, which escaped as a 25-line traceback with exit code 1."""
    import subprocess
    import sys

    path = _no_edges_hdf5(tmp_path / "garbage.nir")
    done = subprocess.run([sys.executable, "-m", "neurolab_gui", "nir-import", str(path), str(tmp_path / "o.pt")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr == f"error: {path}: not a readable NIR file (AssertionError: The incoming dictionary must hade a 'edges' entry)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["garbage.nir"]
