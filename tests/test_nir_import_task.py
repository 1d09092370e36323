"""``neurolab nir-import --task``: the graph is checked against what the task feeds it.

Newcomer report, finding 2: a graph on a data file's 4 raw signed features was imported (exit 0),
then ``convert`` refused it, since NeuroLab feeds those features as 8 ON/OFF rate channels.  A NIR
graph's inputs are spike trains, so they must be the channels; import now says so, writing nothing.
"""

from __future__ import annotations

from pathlib import Path

import nir
import numpy as np
import pytest

from neurolab_gui.cli import main
from tests.cli_output import one_error_line


def _graph(path: Path, n_inputs: int, n_hidden: int = 6, n_classes: int = 3) -> Path:
    """``Input -> Affine -> CubaLIF with a Linear loop -> Affine -> Output``, written with plain nir calls."""
    rng = np.random.default_rng(1)
    h = n_hidden
    nodes = {
        "input": nir.Input(input_type=np.array([n_inputs])),
        "fc_in": nir.Affine(weight=rng.normal(0, 0.5, (h, n_inputs)).astype(np.float32), bias=np.zeros(h, np.float32)),
        "lif": nir.CubaLIF(tau_syn=np.full(h, 0.01), tau_mem=np.full(h, 0.02), r=np.full(h, 1.0), v_leak=np.zeros(h),
                           v_threshold=np.ones(h), w_in=np.ones(h)),
        "rec": nir.Linear(weight=rng.normal(0, 0.1, (h, h)).astype(np.float32)),
        "fc_out": nir.Affine(weight=rng.normal(0, 0.5, (n_classes, h)).astype(np.float32), bias=np.zeros(n_classes, np.float32)),
        "output": nir.Output(output_type=np.array([n_classes])),
    }
    edges = [("input", "fc_in"), ("fc_in", "lif"), ("lif", "rec"), ("rec", "lif"), ("lif", "fc_out"), ("fc_out", "output")]
    nir.write(path, nir.NIRGraph(nodes=nodes, edges=edges))
    return path


@pytest.fixture()
def data(tmp_path) -> Path:
    """4 features, 3 classes, with mean/std: features 0 and 1 take both signs, 2 and 3 never go negative,
    so the default (z-scored) encoding gives 8 channels and ``--normalize fold`` 6."""
    rng = np.random.default_rng(0)
    x = rng.normal(0, 1, (24, 4, 4))
    x[:, :, 2:] = np.abs(x[:, :, 2:])
    path = tmp_path / "mydata.npz"
    np.savez(path, x=x, labels=np.arange(24) % 3, mean=x.mean((0, 1)), std=x.std((0, 1)))
    return path


def test_a_graph_on_the_raw_features_is_refused_naming_the_channels_it_needs(data, tmp_path, capsys):
    graph, out = _graph(tmp_path / "mine.nir", 4), tmp_path / "mine.pt"
    assert main(["nir-import", str(graph), str(out), "--task", str(data)]) == 2
    captured = capsys.readouterr()
    line = one_error_line(captured.err, graph, "the graph takes 4 inputs", "task mydata provides 4 raw signed features",
                          "8 ON/OFF rate channels", "feature i -> channels 2i (ON), 2i+1 (OFF)",
                          "first Affine with 8 inputs", "or 6, converted with --normalize fold")
    assert captured.out == "" and not out.exists(), line


def test_a_graph_on_the_rate_channels_is_imported_and_convert_accepts_it(data, tmp_path, capsys):
    from neurolab_gui.core.conversion.checkpoint import load_checkpoint
    from neurolab_gui.core.conversion.constrain import check_convertible
    from neurolab_gui.core.conversion.tasks import load_task, stored_task

    out = tmp_path / "ok.pt"
    assert main(["nir-import", str(_graph(tmp_path / "ok.nir", 8)), str(out), "--task", str(data)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out.startswith("imported 6 units, 8 inputs, 3 outputs")
    loaded = load_checkpoint(out)  # what `convert ok.pt` reads and checks first
    check_convertible(loaded.model, load_task(stored_task(loaded.metadata, out)), out)


def test_a_graph_on_the_unnormalised_channels_is_imported_with_a_note_to_convert_with_fold(data, tmp_path, capsys):
    out = tmp_path / "fold.pt"
    assert main(["nir-import", str(_graph(tmp_path / "fold.nir", 6)), str(out), "--task", str(data)]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "convert it with --normalize fold" in captured.out and out.exists()


def test_a_graph_with_other_classes_than_the_task_is_refused(data, tmp_path, capsys):
    graph, out = _graph(tmp_path / "c5.nir", 8, n_classes=5), tmp_path / "c5.pt"
    assert main(["nir-import", str(graph), str(out), "--task", str(data)]) == 2
    one_error_line(capsys.readouterr().err, graph, "5 classes", "3 classes")
    assert not out.exists()
