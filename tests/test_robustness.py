"""Monte-Carlo robustness over emulated chips, its calibration model, and mismatch-aware training (core, no Qt)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from emulator.config import EmulatorConfig
from emulator.sim_board import SimulatorBoard
from emulator.simulator import BoardSimulator
from neurolab_gui.core import robustness as rb
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.spiking_run import configure_board, stream_samples
from neurolab_gui.core.conversion.tasks import Task
from neurolab_gui.core.conversion.training import TrainConfig
from tests.small_networks import tiny_mapped_network

_tiny = tiny_mapped_network


@pytest.fixture(scope="module")
def study():
    net, mapped, task = _tiny()
    inputs = rb.robustness_inputs(mapped, net.model, task, n_test=8, n_calibration=8, seed=5, emulator_seed=1)
    serials = rb.chip_serials(3, first=7)
    return net, mapped, task, inputs, serials, rb.evaluate_chips(inputs, serials, threads=2)


def test_each_chip_predicts_what_its_single_board_predicts(study):
    _, mapped, _, inputs, serials, chips = study
    assert [c.serial for c in chips] == ["MC00007", "MC00008", "MC00009"]
    for serial, chip in zip(serials[:2], chips[:2], strict=True):
        board = SimulatorBoard(BoardSimulator(serial, EmulatorConfig(seed=1)))
        configure_board(board, mapped)
        single = stream_samples(board, mapped, inputs.x_test, inputs.lengths_test, seed=5)
        assert chip.accuracy == single.accuracy(inputs.y_test)
    batch = rb.stream_batch(_configured_batch(serials[:2], mapped), [mapped] * 2, inputs.x_test, inputs.lengths_test, 5)
    assert np.array_equal(batch.features[0], single_features(serials[0], mapped, inputs))


def _configured_batch(serials, mapped):
    from neurolab_gui.core.boards import open_batched_emulator

    board = open_batched_emulator(serials, seed=1, threads=1)
    configure_board(board, mapped)
    return board


def single_features(serial, mapped, inputs):
    board = SimulatorBoard(BoardSimulator(serial, EmulatorConfig(seed=1)))
    configure_board(board, mapped)
    return stream_samples(board, mapped, inputs.x_test, inputs.lengths_test, seed=5).features


def test_calibration_model_measures_each_chip_and_reports_distributions(study):
    _, mapped, _, inputs, _, chips = study
    for chip in chips:
        assert chip.calibrated_accuracy is not None and 0 <= chip.calibrated_accuracy <= 1
        assert set(chip.core_slope) == {f"{c}/{k}" for c, k in mapped.group_cores}
        assert chip.unit_gain.shape == (mapped.n_hidden,)
    # mismatch: the chips' measured unit gains differ from chip to chip
    gains = rb.measure_unit_gains(chips)
    assert gains.shape == (3, mapped.n_hidden) and np.std(gains, axis=0).mean() > 0.01
    report = rb.RobustnessReport("tiny", 8, 8, chips)
    before = report.before
    assert before.n_chips == 3 and before.worst <= before.percentiles[50] <= before.best
    assert before.mean == pytest.approx(np.mean([c.accuracy for c in chips]))
    assert report.after is not None and "calibrated" in report.table()
    assert report.to_dict()["after"]["n_chips"] == 3


def test_gain_matching_divides_weight_biases_by_the_slope():
    _, mapped, _ = _tiny()
    core = mapped.group_cores[0]
    matched = rb.gain_matched_biases(mapped, {core: 0.5, mapped.group_cores[1]: float("nan")})
    from drivers.dynapse1.bias_table import nominal_current

    key = (*core, "PS_WEIGHT_EXC_F_N")
    ratio = nominal_current(matched[key].coarse, matched[key].fine) / nominal_current(mapped.biases[key].coarse,
                                                                                      mapped.biases[key].fine)
    assert ratio == pytest.approx(2.0, rel=0.04)
    other = (*mapped.group_cores[1], "PS_WEIGHT_EXC_F_N")
    assert matched[other] == mapped.biases[other]  # no measurement, no change


def test_unit_calibration_inverts_an_affine_unit():
    _, mapped, _ = _tiny()
    rng = np.random.default_rng(1)
    expected = rng.random((30, mapped.n_hidden))
    gain, offset = rng.uniform(0.5, 2, mapped.n_hidden), rng.uniform(-0.1, 0.1, mapped.n_hidden)
    features = expected * gain + offset
    rb.fit_unit_calibration(mapped, expected, features)
    rates = features * mapped.time.r_max_hz  # what the decoder sees with the identity calibration
    decoded = (rates - mapped.unit_offset_hz) / (mapped.unit_gain * mapped.time.r_max_hz)
    assert np.allclose(decoded, expected)


def test_bad_study_arguments_are_refused():
    for bad in (0, -3, 2.5, True):
        with pytest.raises(ValueError, match="number of chips"):
            rb.chip_serials(bad)
    net, mapped, task = _tiny()
    with pytest.raises(ValueError, match="calibration"):
        rb.robustness_inputs(mapped, net.model, task, 4, 1)
    with pytest.raises(ValueError, match="no accuracies"):
        rb.AccuracyDistribution.of([])
    with pytest.raises(ValueError, match="positive"):
        rb.SampledMismatch(np.array([[1.0, -1.0]]))


def _channel_task(seed: int) -> Task:
    """Three classes, each a noisy input channel lifted above the others: a small RNN learns it in
    a few epochs, and per-unit gain mismatch costs it accuracy."""
    rng = np.random.default_rng(seed)
    n = 400
    y = rng.integers(0, 3, n)
    x = rng.random((n, 5, 3)).astype(np.float32)
    x[np.arange(n), :, y] += 0.4
    x /= x.max()
    return Task("channels", x[:300], y[:300], x[300:], y[300:], 3)


def test_mismatch_aware_training_makes_the_trained_weights_more_robust():
    from neurolab_gui.core.conversion.training import train

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matrices: a second thread only spins (10x the CPU time on 2 busy cores)
    try:
        _train_plain_and_aware(train)
    finally:
        torch.set_num_threads(threads)


def _train_plain_and_aware(train):
    task = _channel_task(0)
    rng = np.random.default_rng(2)
    sigma, units = 0.7, 10
    train_gains = np.exp(rng.normal(-sigma**2 / 2, sigma, (64, units)))
    test_gains = np.exp(rng.normal(-sigma**2 / 2, sigma, (64, units)))  # held-out chips
    cfg = TrainConfig(epochs=25, noise_std=0.0, seed=3, batch_size=32, lr=1e-2)
    accuracies, weights = {}, {}
    for aware in (False, True):
        torch.manual_seed(4)
        model = RateRNN(RNNConfig(3, units, 3, "leaky", 0.8, 1, "mean", 1.0))
        if aware:
            rb.train_mismatch_aware(model, task, train_gains, cfg)
        else:
            train(model, task, cfg)
        assert model.weight_transform is None  # restored
        accuracies[aware] = rb.accuracy_under_mismatch(model, task, test_gains)
        weights[aware] = model.w_in.detach().clone()
    assert not torch.equal(weights[False], weights[True])
    plain, aware = accuracies[False], accuracies[True]
    print(f"plain mean {plain.mean():.3f} worst {plain.min():.3f} std {plain.std():.3f}; "
          f"aware mean {aware.mean():.3f} worst {aware.min():.3f} std {aware.std():.3f}")
    # measured (1 torch thread): plain mean 0.827 worst 0.520 std 0.089, aware mean 0.842 worst 0.610 std 0.079
    assert aware.mean() > plain.mean() and aware.min() > plain.min() + 0.05 and aware.std() < plain.std()


def test_a_study_on_a_local_ray_instance_with_two_workers_equals_the_single_machine_run(study):
    ray = pytest.importorskip("ray")
    _, _, _, inputs, serials, local = study
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        assert ray.cluster_resources()["CPU"] == 2
        report = rb.run_robustness(inputs, serials, "tiny", ray_address="auto")
    finally:
        ray.shutdown()
    assert report.distributed.startswith("ray") and "2 shards" in report.distributed
    assert [c.serial for c in report.chips] == serials
    for remote, here in zip(report.chips, local, strict=True):
        assert remote.accuracy == here.accuracy and remote.calibrated_accuracy == here.calibrated_accuracy
        assert remote.core_slope == here.core_slope and np.array_equal(remote.unit_gain, here.unit_gain, equal_nan=True)


def test_cli_robustness_prints_the_distributions_and_writes_every_chip(tmp_path, capsys, monkeypatch):
    import importlib.util
    import json

    from neurolab_gui.cli import main
    from neurolab_gui.core.conversion.checkpoint import save_checkpoint

    torch.manual_seed(1)
    ckpt = str(save_checkpoint(tmp_path / "tiny.pt", RateRNN(RNNConfig(8, 8, 10, "leaky", 0.85, 4, "mean", 1.0)),
                               {"task": "seq_digits"}))
    report = tmp_path / "robustness.json"
    assert main(["robustness", ckpt, "--chips", "2", "--first-serial", "40", "--n-test", "4", "--n-calibration", "3",
                 "--qat-epochs", "0", "--json", str(report)]) == 0
    out = capsys.readouterr().out
    assert "on 2 emulated chips (MC00040..MC00041)" in out and "board ideal accuracy: " in out
    assert "design biases" in out and "calibrated" in out and "worst chip before calibration: MC0004" in out
    data = json.loads(report.read_text())
    assert [c["serial"] for c in data["chips"]] == ["MC00040", "MC00041"]
    assert data["before"]["n_chips"] == 2 and data["after"]["n_chips"] == 2 and data["n_test"] == 4
    assert set(data["before"]["percentiles"]) == {"5", "25", "50", "75", "95"}
    for argv, message in ((["--chips", "0"], "--chips"), (["--n-test", "0"], "--n-test"),
                          (["--n-calibration", "1"], "--n-calibration"), (["--ray-shards", "0"], "--ray-shards")):
        assert main(["robustness", ckpt, *argv]) == 2
        assert message in capsys.readouterr().err
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real_find_spec(name, *a))
    assert main(["robustness", ckpt, "--ray", "auto"]) == 2
    assert "pip install 'neurolab[ray]'" in capsys.readouterr().err
