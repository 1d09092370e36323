"""Deployment: a converted network written onto a given board and run there (core, no Qt)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from drivers.dynapse1.netlist import NeuronAddress
from neurolab_gui.core.boards import open_emulator
from neurolab_gui.core.calibration.profile import CalibrationProfile, find_profile, save_profile
from neurolab_gui.core.cancellation import Cancelled
from neurolab_gui.core.conversion import pipeline
from neurolab_gui.core.conversion.deployment import deploy_network, run_deployment
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.jobs import CancelToken
from tests.small_networks import tiny_mapped_network

tiny = tiny_mapped_network


def test_deploy_writes_the_netlist_and_runs_reporting_every_batch():
    _, mapped, task = tiny()
    board = open_emulator("NLTEST-DEPLOY", seed=3)
    try:
        deployment = deploy_network(board, mapped)
        assert not deployment.profile_applied
        # the board holds the network's biases, exactly
        for (chip, core, name), value in mapped.biases.items():
            assert board.get_bias(chip, core, name) == value
        events, seen = [], []
        run = run_deployment(deployment, task.x_test, task.y_test, task.lengths_test, seed=1, batch=8,
                             progress=events.append, on_events=seen.append)
    finally:
        board.close()
    assert len(events) == 3 and [e.payload["done"] for e in events] == [8, 16, 20]
    assert events[-1].payload["accuracy"] == pytest.approx(run.accuracy)
    assert events[-1].payload["confusion"].sum() == 20 and np.array_equal(events[-1].payload["confusion"], run.confusion())
    assert np.array_equal(run.scores.argmax(1), run.predictions)
    # the hidden spikes decoded are the mapped neurons' spikes in the events the board returned
    ids = {a.chip * 1024 + a.core * 256 + a.neuron for a in mapped.unit_addresses}
    spikes = sum(int(np.isin(b.global_id, list(ids)).sum()) for b in seen)
    assert run.spiking.spike_counts.sum() > 0 and spikes >= run.spiking.spike_counts.sum()


def test_same_samples_and_seed_give_the_same_predictions_on_a_fresh_board():
    _, mapped, task = tiny()
    preds = []
    for _ in range(2):
        board = open_emulator("NLTEST-DEPLOY", seed=3)
        try:
            run = run_deployment(deploy_network(board, mapped), task.x_test[:10], task.y_test[:10], task.lengths_test[:10], seed=4)
        finally:
            board.close()
        preds.append((run.predictions.copy(), run.spiking.spike_counts.copy()))
    assert np.array_equal(preds[0][0], preds[1][0]) and np.array_equal(preds[0][1], preds[1][1])


def test_cancel_stops_between_batches():
    _, mapped, task = tiny()
    board = open_emulator("NLTEST-DEPLOY", seed=3)
    cancel = CancelToken()
    try:
        deployment = deploy_network(board, mapped)
        with pytest.raises(Cancelled):
            run_deployment(deployment, task.x_test, task.y_test, task.lengths_test, batch=4,
                           progress=lambda p: cancel.cancel(), cancel=cancel)
    finally:
        board.close()


def test_profile_round_trips_and_is_applied_on_the_next_deploy(tmp_path):
    _, mapped, _ = tiny()
    # a profile as a calibration leaves it: other neurons in the same cores, one tuned weight bias
    selected = [NeuronAddress(a.chip, a.core, 255 - a.neuron) for a in mapped.unit_addresses]
    key = next(k for k in mapped.biases if k[2] == "PS_WEIGHT_EXC_F_N")
    tuned = dict(mapped.biases)
    tuned[key] = dataclasses.replace(mapped.biases[key], fine=(mapped.biases[key].fine + 17) % 256)
    save_profile(CalibrationProfile("NLTEST-PROFILE", tuned, [], selected), tmp_path / "NLTEST-PROFILE.json")
    assert find_profile("NLTEST-OTHER", tmp_path) is None
    profile = find_profile("NLTEST-PROFILE", tmp_path)
    assert profile is not None and profile.selected == selected and profile.biases == tuned
    board = open_emulator("NLTEST-PROFILE", seed=3)
    try:
        deployment = deploy_network(board, mapped, profile=profile)
        assert deployment.profile_applied
        assert board.get_bias(*key) == tuned[key] != mapped.biases[key]
        assert deployment.mapped.unit_addresses == selected
        assert {c.post for c in deployment.mapped.netlist.connections} == set(selected)
    finally:
        board.close()
    other = open_emulator("NLTEST-OTHER", seed=3)
    try:
        with pytest.raises(ValueError, match="NLTEST-PROFILE"):
            deploy_network(other, mapped, profile=profile)  # another board's profile is refused
    finally:
        other.close()


def test_conversion_board_stage_runs_on_the_given_board_and_leaves_it_open():
    net, _, task = tiny()
    cfg = pipeline.PipelineConfig(n_hidden=12, stages=("board",), n_test_spiking=8, transfer_rounds=1, match_saturation=False)
    cfg.constraint.qat.epochs = 0
    cfg.constraint.n_core_groups = 2
    with pytest.raises(ValueError, match="needs a board"):
        pipeline.convert(net.model, task, cfg)
    board = open_emulator("NLTEST-STAGE", seed=2)
    try:
        result = pipeline.convert(net.model, task, cfg, board=board)
        stage = result.report.stage("board")
        assert stage is not None and stage.n_samples == 8 and "NLTEST-STAGE" in stage.note
        assert board.connected
    finally:
        board.close()


def test_one_board_grammar_for_every_command():
    from neurolab_gui.cli import build_parser
    from neurolab_gui.core.boards import BoardSpec, parse_board

    assert parse_board("emulator") == BoardSpec() and parse_board("emulator:7") == BoardSpec(None, 7)
    assert parse_board("ABC-123") == BoardSpec("ABC-123") and str(parse_board("emulator:7")) == "emulator:7"
    for bad in ("emulator:x", "emulator:-1", "", "a b", "emulator:\u00b2"):
        with pytest.raises(ValueError):
            parse_board(bad)
    # the serial `neurolab devices` prints for the emulator names it too (it was looked up on the USB bus)
    assert parse_board("EMU00009") == BoardSpec(None, 9) == parse_board("emu9") and parse_board("EMU00000") == BoardSpec()
    assert parse_board("EMU0000X") == BoardSpec("EMU0000X")  # not an emulator serial: a silicon serial as before
    # every seed the grammar takes has a serial that names the emulator again (a 19-digit seed's did not)
    from neurolab_gui.core.boards import MAX_EMULATOR_SEED, emulator_serial_for

    for seed in (0, 9, MAX_EMULATOR_SEED):
        assert parse_board(emulator_serial_for(seed)) == parse_board(f"emulator:{seed}") == BoardSpec(None, seed)
    with pytest.raises(ValueError, match="from 0 to"):
        parse_board(f"emulator:{MAX_EMULATOR_SEED + 1}")
    parser = build_parser()
    for argv in (["convert", "c.pt"], ["calibrate"], ["robot", "demo"], ["deploy", "c.pt"], ["record", "r.h5", "--seconds", "1"],
                 ["gui"]):
        assert parser.parse_args([*argv, "--board", "emulator:4"]).board == BoardSpec(None, 4)
        assert parser.parse_args([*argv, "--board", "EMU00004"]).board == BoardSpec(None, 4)
        with pytest.raises(SystemExit) as exit_:
            parser.parse_args([*argv, "--board", "emulator:four"])
        assert exit_.value.code == 2


def _tiny_checkpoint(tmp_path):
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint

    torch.manual_seed(1)
    model = RateRNN(RNNConfig(8, 8, 10, "leaky", 0.85, 4, "mean", 1.0))  # seq_digits: 8 features, 10 classes
    return save_checkpoint(tmp_path / "tiny.pt", model, {"task": "seq_digits"})


def test_cli_deploy_and_convert_run_on_the_named_board(tmp_path, capsys, monkeypatch):
    from neurolab_gui.cli import main

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))  # no profile for the emulated board
    ckpt = str(_tiny_checkpoint(tmp_path))
    assert main(["deploy", ckpt, "--board", "emulator:2", "--n-test", "12", "--qat-epochs", "0"]) == 0
    out = capsys.readouterr().out
    assert "no calibration profile" in out and "accuracy on 12 test samples: " in out and "12/12 samples" in out
    assert main(["convert", ckpt, "--stages", "board", "--qat-epochs", "0", "--n-test", "8"]) == 2
    assert "needs --board" in capsys.readouterr().err
    report = tmp_path / "r.json"
    assert main(["convert", ckpt, "--board", "emulator:2", "--stages", "board", "--qat-epochs", "0", "--n-test", "8",
                 "--json", str(report)]) == 0
    import json

    stages = {s["name"]: s for s in json.loads(report.read_text())["stages"]}
    assert stages["board"]["n_samples"] == 8 and "board_mismatch" not in stages
