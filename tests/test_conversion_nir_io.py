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

    nir.write(tmp_path / "ok.nir", foreign_graph())
    assert (
        main(["nir-import", str(tmp_path / "ok.nir"), str(tmp_path / "ok.pt"), "--task", "seq_digits", "--dt", "0.005"])
        == 0
    )
    loaded = load_checkpoint(tmp_path / "ok.pt")
    assert loaded.model.config.n_hidden == 6 and loaded.metadata["task"] == "seq_digits"
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
