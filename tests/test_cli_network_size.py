"""``neurolab train`` and ``convert`` refuse a network the board cannot map before any work
(REPORT hostile4 #1, #2): one rule, :func:`mapping.network_size_problem`."""

from __future__ import annotations

import time

import numpy as np
import pytest

from neurolab_gui.cli import main
from neurolab_gui.core.conversion.checkpoint import save_checkpoint
from neurolab_gui.core.conversion.mapping import (
    MAX_INPUT_CHANNELS,
    dense_mapping_problem,
    largest_dense_network,
    network_size_problem,
)
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from tests.cli_output import one_error_line


def _data(path, n_features: int, n: int = 12) -> str:
    rng = np.random.default_rng(0)
    np.savez(path, x=rng.random((n, 3, n_features)).astype(np.float32), labels=np.arange(n) % 2)
    return str(path)


def test_dense_limit_is_where_the_mapping_starts_to_alias():
    # measured through constrain + map_network (6 channels): 981 units map on 2 chips, 982 alias
    assert largest_dense_network(6) == 981
    assert dense_mapping_problem(981, 6) is None and "neuron id" in dense_mapping_problem(982, 6)
    assert dense_mapping_problem(768, MAX_INPUT_CHANNELS) is None  # one chip: no shared tags
    assert "3 chips" in dense_mapping_problem(3000, 6)  # a unit's SRAM reaches 3 chips
    assert "spike generator" in network_size_problem(8, MAX_INPUT_CHANNELS + 1)


@pytest.mark.parametrize("hidden", ["100000", "5000", "1024"])
def test_train_refuses_hidden_before_reading_data(tmp_path, capsys, hidden):
    out = tmp_path / "m.pt"
    t0 = time.perf_counter()
    rc = main(["train", "--task", str(tmp_path / "absent.npz"), "--hidden", hidden, "--epochs", "1", "--out", str(out)])
    assert time.perf_counter() - t0 < 1.0
    assert rc == 2
    line = one_error_line(capsys.readouterr().err, f"--hidden {hidden}", "at most 981")
    assert "please report" not in line
    assert not out.exists()


def test_train_refuses_a_data_file_with_too_many_channels(tmp_path, capsys):
    data = _data(tmp_path / "wide.npz", MAX_INPUT_CHANNELS + 1)
    out = tmp_path / "m.pt"
    assert main(["train", "--task", data, "--hidden", "8", "--epochs", "1", "--out", str(out)]) == 2
    one_error_line(capsys.readouterr().err, data, f"{MAX_INPUT_CHANNELS + 1} features", f"{MAX_INPUT_CHANNELS}")
    assert not out.exists()


def test_train_counts_on_off_channels(tmp_path, capsys):
    # 200 features that go negative: 400 rate channels, more than the spike generator has
    rng = np.random.default_rng(0)
    data = str(tmp_path / "signed.npz")
    np.savez(data, x=rng.standard_normal((12, 3, 200)).astype(np.float32), labels=np.arange(12) % 2)
    assert main(["train", "--task", data, "--hidden", "8", "--epochs", "1", "--out", str(tmp_path / "m.pt")]) == 2
    one_error_line(capsys.readouterr().err, data, "200 features", "rate channels")


def test_convert_refuses_an_unmappable_dense_model_before_fine_tuning(tmp_path, capsys):
    data = _data(tmp_path / "d.npz", 3)
    ckpt = tmp_path / "h1024.pt"
    save_checkpoint(ckpt, RateRNN(RNNConfig(3, 1024, 2)), {"task": data})
    report = tmp_path / "r.json"
    t0 = time.perf_counter()
    rc = main(["convert", str(ckpt), "--stages", "board_ideal", "--n-test", "2", "--qat-epochs", "0", "--json", str(report)])
    assert time.perf_counter() - t0 < 1.0  # QAT and mapping of 1024 units took 30+ s before failing
    assert rc == 2
    one_error_line(capsys.readouterr().err, "1024 hidden units", "at most 981")
    assert not report.exists()


def test_the_apps_hidden_units_box_stops_at_the_largest_network_that_maps():
    from neurolab_gui.core.conversion.mapping import largest_dense_network
    from neurolab_gui.qt.panels.model_panel import MAX_HIDDEN_UNITS

    assert MAX_HIDDEN_UNITS == largest_dense_network(1)


def test_the_apps_training_refuses_a_network_the_board_cannot_map_before_training(tmp_path):
    # the panel's box allows 981 units, which do not map on the 200 channels of this file
    from neurolab_gui.core import workflows
    from neurolab_gui.core.session import Session

    data = _data(tmp_path / "wide.npz", 200)
    session = Session()
    try:
        cfg = workflows.pipeline_config(data, None, n_hidden=981, epochs=50)
        t0 = time.perf_counter()
        with pytest.raises(ValueError, match="cannot be mapped"):
            workflows.train_network(session, data, cfg)
        assert time.perf_counter() - t0 < 5 and session.model is None
    finally:
        session.close()
