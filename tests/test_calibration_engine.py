"""Calibration engine: compensation on a small network, progress, cancellation, profiles."""

from __future__ import annotations

import asyncio
import copy
import dataclasses
import json
import threading

import numpy as np
import pytest
import torch

from drivers.dynapse1.bias_table import BiasValue
from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.topology import SynapseType
from emulator.config import EmulatorConfig
from emulator.virtual_board import open_emulated_board, virtual_fpga_of
from neurolab_gui.core.calibration.compensation import READOUT_L2_GRID, compensate_multiplicities, relocate_units
from neurolab_gui.core.calibration.engine import CalibrationConfig, calibrate_network
from neurolab_gui.core.calibration.profile import (
    CalibrationProfile,
    NeuronCalibration,
    ProfileError,
    load_profile,
    profile_from_network_calibration,
    save_profile,
)
from neurolab_gui.core.calibration.progress import CalibrationCancelled
from neurolab_gui.core.cancellation import Cancelled
from neurolab_gui.core.conversion.constrain import ConstraintConfig, constrain
from neurolab_gui.core.conversion.mapping import TAU_BIAS, NeuronSettings, TimeMapping, map_network
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.tasks import Task
from neurolab_gui.core.conversion.training import TrainConfig

FAST = CalibrationConfig(exc_levels_hz=(30.0, 75.0, 120.0), inh_levels_hz=(20.0, 60.0, 100.0), level_s=0.2, settle_s=0.05,
                         weight_rounds=2, weight_tolerance=0.03)


def tiny_network(n_hidden: int = 12):
    """A random 12-unit network on one core group, constrained without fine-tuning (fast)."""
    rng = np.random.default_rng(0)
    x = rng.random((40, 6, 4)).astype(np.float32)
    y = rng.integers(0, 3, 40)
    task = Task("tiny", x, y, x[:10], y[:10], 3)
    torch.manual_seed(0)
    model = RateRNN(RNNConfig(4, n_hidden, 3, "leaky", 0.85, 4, "mean", 1.0))
    net = constrain(model, task, ConstraintConfig(max_fan_in=63, n_core_groups=1, qat=TrainConfig(epochs=0)), 0.85, 4, saturation=1.0)
    mapped = map_network(net, TimeMapping(retention=0.85, steps_per_sample=4), NeuronSettings())
    return net, mapped, task


@pytest.fixture(scope="module")
def calibrated():
    net, mapped, _ = tiny_network()
    board = open_emulated_board("NLTEST-ENGINE", EmulatorConfig(seed=5))
    events = []
    clock = virtual_fpga_of(board).simulator
    t0 = clock.time_s
    result = calibrate_network(board, mapped, net, None, FAST, progress=events.append)
    result.emulator_clock_s = clock.time_s - t0  # the emulator's own account of the chip time used
    yield result, events, board, mapped
    board.close()


def test_chip_seconds_are_the_emulators_own_clock(calibrated):
    result, _, _, _ = calibrated
    assert result.chip_seconds_total > 5.0
    assert result.chip_seconds_total == pytest.approx(result.emulator_clock_s, abs=1e-6)
    assert result.summary()["chip_seconds_total"] == result.chip_seconds_total


def test_compensation_reduces_the_gain_spread_measured_again(calibrated):
    result, _, _, mapped = calibrated
    assert result.gain_cv_before > 0.08  # the chip's spread on the nominal neurons
    assert result.gain_cv_after < 0.5 * result.gain_cv_before, (result.gain_cv_before, result.gain_cv_after)
    assert len(set(result.selected)) == mapped.n_hidden
    assert {(a.chip, a.core) for a in result.selected} == {(a.chip, a.core) for a in mapped.unit_addresses}
    assert result.chip_s_measurement < 60.0
    # the deployed network's netlist uses the selected neurons only
    posts = {c.post for c in result.mapped.netlist.connections}
    assert posts == set(result.selected)


def test_synaptic_time_constants_are_tuned_first_to_the_conversion_tau(calibrated):
    result, events, board, mapped = calibrated
    tau = result.tau
    assert tau is not None and tau.target_s == pytest.approx(mapped.time.tau_s)
    assert tau.worst_error("after") < 0.025 < tau.worst_error("before")  # seed 5: AMPA ~9 % off with the nominal bias
    params = virtual_fpga_of(board).simulator.parameters()
    for chip, core in mapped.group_cores:
        neurons = np.arange(chip * 1024 + core * 256, chip * 1024 + core * 256 + 256)
        for synapse in (SynapseType.AMPA, SynapseType.GABA_B):
            # the chip's (hidden) population median, not only what the probe reads
            assert np.median(params.tau_syn[int(synapse)][neurons]) == pytest.approx(mapped.time.tau_s, rel=0.03)
            assert result.mapped.biases[(chip, core, TAU_BIAS[synapse])] == board.get_bias(chip, core, TAU_BIAS[synapse])
            median, err = result.tau_after[(chip, core)][synapse.name].median_s, result.tau_after[(chip, core)][synapse.name].err_s
            assert 0 < err < 0.02 * median
    summary = result.summary()
    key = f"{mapped.group_cores[0][0]}/{mapped.group_cores[0][1]}"
    assert set(summary["tau_ms_after"][key]) == {"AMPA", "GABA_B"} and len(summary["tau_ms_before"][key]["AMPA"]) == 2
    json.dumps(summary)  # the profile and the benchmark write it
    steps = [e.step for e in events]
    # tau before the weights: a synapse's mean current (its gain) is rate * tau * jump
    assert steps.index("tune synaptic time constants") < min(i for i, s in enumerate(steps) if s.startswith("tune weight biases"))


def test_refractory_bias_is_tuned_to_the_models_saturation_before_the_weights(calibrated):
    result, events, board, mapped = calibrated
    assert result.refractory and all(abs(f.t_ref_s / f.target_s - 1) < 0.05 for f in result.refractory)
    for f in result.refractory:  # the deployed network and the board carry the kept setting
        value = result.mapped.biases[(f.chip, f.core, "IF_RFR_N")]
        assert (value.coarse, value.fine) == f.setting
    steps = [e.step for e in events]
    assert steps.index("tune refractory period") < steps.index("tune weight biases (population)")
    assert set(result.summary()["t_ref_ms_after"]) == {f"{f.chip}/{f.core}" for f in result.refractory}


def test_progress_events_carry_fraction_step_eta_and_curves(calibrated):
    _, events, _, _ = calibrated
    fractions = [e.fraction for e in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert any("curves" in e.payload for e in events)
    assert any(np.isfinite(e.eta_s) for e in events)
    assert {e.step for e in events} >= {"measure transfer curves", "select neurons", "done"}


def test_cancel_leaves_the_board_in_its_starting_state():
    net, mapped, _ = tiny_network()
    board = open_emulated_board("NLTEST-CANCEL", EmulatorConfig(seed=6))
    try:
        core = mapped.group_cores[0][1]
        board.apply_bias_set(mapped.biases)  # the user's state: no DC on the network's core ...
        board.set_bias(0, core, "PS_WEIGHT_EXC_F_N", BiasValue(2, 17))  # ... and a weight of their own
        start = {k: board.get_bias(*k) for k in mapped.biases}
        cancel = threading.Event()

        def progress(event):
            if event.step.startswith("tune weight biases"):
                cancel.set()

        with pytest.raises(CalibrationCancelled):
            calibrate_network(board, mapped, net, None, FAST, progress=progress, cancel=cancel)
        assert {k: board.get_bias(*k) for k in mapped.biases} == start
        board.read_events(0.3)  # synaptic currents left from the probe decay (tau ~ 30 ms)
        events = board.read_events(0.1)
        assert not np.any((events.chip == 0) & (events.core == core))  # generator stopped, connections cleared, no DC: silence
    finally:
        board.close()


def test_job_streams_events_asynchronously_and_cancels():
    from neurolab_gui.core.jobs import Job, ProgressReporter

    def slow(progress, cancel):
        report = ProgressReporter(progress, cancel)
        for k in range(1000):
            report(k / 1000, "step", f"{k}")
            threading.Event().wait(0.001)
        return "finished"

    job = Job("slow", slow)

    async def consume():
        seen = []
        events = job.events()
        job.start()
        async for event in events:
            seen.append(event)
            if len(seen) == 5:
                job.cancel()
        return seen

    seen = asyncio.run(consume())
    assert 5 <= len(seen) < 1000
    with pytest.raises(Cancelled):
        job.result()


def test_multiplicity_compensation_divides_by_the_relative_gain():
    net, mapped, _ = tiny_network()
    h = net.n_hidden
    same = compensate_multiplicities(net, np.ones(h), np.ones(h))
    assert np.array_equal(same, net.multiplicity)
    weak = compensate_multiplicities(net, np.full(h, 0.5), np.ones(h))
    pos = net.multiplicity > 0
    assert np.all(weak[pos] >= net.multiplicity[pos]) and np.abs(weak).sum(1).max() <= net.max_fan_in
    slack = np.abs(weak).sum(1) < net.max_fan_in  # rows the CAM budget did not force to prune
    neg = (net.multiplicity < 0) & slack[:, None]
    assert slack.any() and np.array_equal(weak[neg], net.multiplicity[neg])
    with pytest.raises(ValueError):
        compensate_multiplicities(net, np.zeros(h), np.ones(h))
    with pytest.raises(ValueError, match="within its core"):
        relocate_units(mapped, [NeuronAddress(0, 3, i) if i == 0 else a for i, a in enumerate(mapped.unit_addresses)])


def test_profile_round_trip_and_validation(calibrated, tmp_path):
    result, _, board, _ = calibrated
    profile = profile_from_network_calibration(board.serial, result, emulated=True)
    path = save_profile(profile, tmp_path)
    assert path.name == f"{board.serial}.json"
    loaded = load_profile(path, expected_serial=board.serial)
    assert loaded.biases == profile.biases and loaded.selected == profile.selected
    assert loaded.network is not None and loaded.network.fingerprint == result.network_fingerprint
    assert np.array_equal(loaded.network.multiplicity, result.mapped.multiplicity)
    assert len(loaded.neurons) == len(profile.neurons) > 0 and loaded.chip_s == pytest.approx(profile.chip_s)

    data = json.loads(path.read_text())
    for mutate, message in [
        (lambda d: d.update(schema=99), "schema"),
        (lambda d: d.update(serial="bad serial!"), "serial"),
        (lambda d: d["biases"][0].update(name="NOPE"), "unknown bias"),
        (lambda d: d["biases"][0].update(fine=300), r"biases\[0\].fine: 300 is outside 0..255"),
        (lambda d: d["neurons"][0].update(neuron=999), r"neurons\[0\].neuron: 999 is outside"),
        (lambda d: d.update(selected=[[0, 1, 2], [0, 1, 2]]), "distinct"),
        (lambda d: d.update(chip_s=-1), "chip_s"),
        (lambda d: d["network"].update(fingerprint="not-a-hash"), r"network.fingerprint: must be 64"),
        (lambda d: d["network"]["connections"][0].__setitem__(2, 65), r"network.connections\[0\]\[2\]: 65 is outside -64..64"),
        (lambda d: d["network"]["connections"].append(list(d["network"]["connections"][0])), "repeated"),
        (lambda d: d["network"]["connections"][0].__setitem__(0, 999), r"network.connections\[0\]\[0\]: 999 is outside"),
        (lambda d: d["network"].update(readout_bias=[]), "network.readout_bias"),
        (lambda d: d["network"]["readout_weight"][0].pop(), r"network.readout_weight\[0\]: must be an array of 12"),
    ]:
        bad = json.loads(json.dumps(data))
        mutate(bad)
        with pytest.raises(ProfileError, match=message):
            CalibrationProfile.from_dict(bad)
    with pytest.raises(ProfileError, match="not 'OTHER'"):
        load_profile(path, expected_serial="OTHER")
    with pytest.raises(ProfileError, match="no calibration profile"):
        load_profile(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{")
    with pytest.raises(ProfileError, match="not valid JSON"):
        load_profile(tmp_path / "broken.json")
    # default location follows XDG_DATA_HOME
    p = CalibrationProfile("SER1", {}, [NeuronCalibration(0, 1, 2, 0.3, 0.2, 1.0)])
    assert save_profile(p, tmp_path / "x.json").name == "x.json"


def test_readout_refit_learns_from_board_features():
    from neurolab_gui.core.calibration.compensation import refit_readout

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 300)
    features = rng.normal(0, 0.3, (300, 5)) + np.eye(3, 5)[labels] * 1.5  # class k lights feature k
    w0 = np.roll(np.eye(3, 5), 1, axis=0)  # a readout that is wrong for these features
    b0 = np.zeros(3)
    w, b = refit_readout(features, labels, w0, b0)
    before = np.mean((features @ w0.T + b0).argmax(1) == labels)
    after = np.mean((features @ w.T + b).argmax(1) == labels)
    assert before < 0.5 < 0.9 < after
    with pytest.raises(ValueError, match="do not match"):
        refit_readout(features[:, :4], labels, w0, b0)


def test_calibrate_cli_reports_a_bad_task_without_touching_files(tmp_path):
    from neurolab_gui.cli import main

    target = tmp_path / "p.json"
    assert main(["calibrate", "--task", "no_such_task", "--profile", str(target)]) == 2
    assert not target.exists()
    assert main(["calibrate", "--tau-ms", "900", "--profile", str(target)]) == 2  # outside what the probe resolves
    assert not target.exists()


def test_readout_refit_cross_validates_its_pull_towards_the_float_readout():
    from neurolab_gui.core.calibration.compensation import refit_readout_cv

    rng = np.random.default_rng(2)
    labels = rng.integers(0, 3, 200)
    features = rng.normal(0, 0.3, (200, 5)) + np.eye(3, 5)[labels] * 1.5
    wrong = np.roll(np.eye(3, 5), 1, axis=0)
    w, b, l2, scores = refit_readout_cv(features, labels, wrong, np.zeros(3))
    assert np.isfinite(l2) and scores[l2] > 0.9 > scores[float("inf")]  # a wrong readout is refitted
    assert np.mean((features @ w.T + b).argmax(1) == labels) > 0.9
    # a right readout and few samples with 40 % wrong labels: refitting cannot beat keeping it
    noisy = np.where(rng.random(200) < 0.4, rng.integers(0, 3, 200), labels)[:40]
    right = np.eye(3, 5) * 3
    w, b, l2, scores = refit_readout_cv(features[:40], noisy, right, np.zeros(3))
    clean = np.mean((features @ w.T + b).argmax(1) == labels)
    assert clean >= np.mean((features @ right.T).argmax(1) == labels) - 0.02
    with pytest.raises(ValueError, match="cross-validation"):
        refit_readout_cv(features[:6], labels[:6], right, np.zeros(3))


def test_readout_rule_keeps_the_float_readout_unless_a_refit_wins_by_more_than_one_standard_error():
    from neurolab_gui.core.calibration.compensation import choose_readout_l2, refit_readout_cv

    inf = float("inf")
    # sequential digits, emulator seed 1: the weakest pull won by 1 of 170 samples
    scores = {1e-4: 156 / 170, 1e-3: 154 / 170, 1e-2: 155 / 170, 1e-1: 155 / 170, 1.0: 155 / 170, inf: 155 / 170}
    assert choose_readout_l2(scores, 170, "best") == 1e-4
    assert choose_readout_l2(scores, 170) == inf
    # a refit clearly better (well beyond one standard error of ~2.3 points) is taken: the strongest such pull
    scores = {1e-4: 0.95, 1e-3: 0.94, 1e-2: 0.90, 1e-1: 0.85, 1.0: 0.80, inf: 0.80}
    assert choose_readout_l2(scores, 170) == 1e-3
    assert choose_readout_l2(scores, 170, "best") == 1e-4
    with pytest.raises(ValueError, match="rule"):
        refit_readout_cv(np.zeros((20, 2)), np.arange(20) % 2, np.eye(2), np.zeros(2), rule="median")


def test_unit_affine_readout_undoes_each_units_scale_and_offset_on_the_board():
    from neurolab_gui.core.calibration.compensation import unit_affine_readout
    from neurolab_gui.core.calibration.engine import CalibrationConfig, calibrate_network

    rng = np.random.default_rng(3)
    model = rng.random((60, 3))
    board = model * np.array([1.4, 0.7, 1.2]) + np.array([0.1, -0.05, 0.2])
    w0, b0 = rng.normal(size=(3, 3)), rng.normal(size=3)
    w, b = unit_affine_readout(board, model, w0, b0)
    assert np.allclose(board @ w.T + b, model @ w0.T + b0)  # the board read out as the model would be
    w, _ = unit_affine_readout(model * 5.0, model, w0, b0)
    assert np.allclose(w, w0 / 2.0)  # slopes clipped to 0.5-2
    flat = model.copy()
    flat[:, 0] = 0.1
    w, _ = unit_affine_readout(flat + 0.2, flat, w0, b0)
    assert np.allclose(w, w0)  # a unit that does not vary keeps slope 1 (its offset is still undone)
    with pytest.raises(ValueError, match="same samples"):
        unit_affine_readout(board[:, :2], model, w0, b0)
    with pytest.raises(ValueError, match="readout correction"):  # refused before the board is touched
        calibrate_network(None, None, None, config=CalibrationConfig(readout_correction="median"))
    with pytest.raises(ValueError, match="selection rule"):
        calibrate_network(None, None, None, config=CalibrationConfig(readout_rule="median"))


def test_pooling_relative_gains_averages_out_measurement_noise_across_bias_settings():
    from drivers.dynapse1.netlist import NeuronAddress
    from neurolab_gui.core.calibration.engine import pool_relative_gains
    from neurolab_gui.core.fitting.fi import GainFit

    rng = np.random.default_rng(3)
    addresses = [NeuronAddress(0, core, n) for core in (1, 2) for n in range(200)]
    true_rel = rng.lognormal(0.0, 0.2, len(addresses))
    fits = []
    for core_scale in ((1.0, 2.0), (1.3, 1.7), (0.9, 2.2), (1.1, 1.9)):  # each round: other core biases
        scale = np.where(np.array([a.core for a in addresses]) == 1, *core_scale)
        gain = true_rel * scale * rng.lognormal(0.0, 0.05, len(addresses))  # 5 % measurement noise
        fits.append(GainFit(addresses, gain, np.full(len(addresses), 0.05), np.zeros(len(addresses)), np.ones(len(addresses), bool)))
    fits[0].valid[7] = False
    pooled = pool_relative_gains(fits)
    on_last = fits[-1].gain / pooled.gain
    assert np.allclose(np.median(on_last[:200]), 1.0, atol=0.02) and np.allclose(np.median(on_last[200:]), 1.0, atol=0.02)

    def error(g: np.ndarray) -> float:
        rel = np.concatenate([g[:200] / np.median(g[:200]), g[200:] / np.median(g[200:])])
        truth = np.concatenate([true_rel[:200] / np.median(true_rel[:200]), true_rel[200:] / np.median(true_rel[200:])])
        return float(np.std(np.log(rel / truth)))

    assert error(pooled.gain) < 0.7 * error(fits[-1].gain)  # four measurements: about half the noise
    assert not pooled.valid[7] and pooled.valid[8]
    with pytest.raises(ValueError, match="different neurons"):
        pool_relative_gains([fits[0], GainFit(addresses[:5], *(np.ones(5),) * 3, np.ones(5, bool))])


def test_final_selection_centres_on_the_target_and_keeps_the_excitatory_budget():
    from neurolab_gui.core.calibration.compensation import INHIBITORY_WEIGHTS, select_within_budget
    from neurolab_gui.core.fitting.fi import GainFit

    _, mapped, _ = tiny_network()
    (chip, core), = set(mapped.group_cores)
    addresses = [NeuronAddress(chip, core, n) for n in range(40, 256)]
    rng = np.random.default_rng(1)
    exc = rng.lognormal(0.0, 0.25, len(addresses))
    inh = rng.lognormal(0.0, 0.25, len(addresses))  # independent of the excitatory gain, as on the chip
    ones, valid = np.ones(len(addresses)), np.ones(len(addresses), bool)
    fit_e, fit_i = GainFit(addresses, exc, 0.01 * ones, 0 * ones, valid), GainFit(addresses, inh, 0.01 * ones, 0 * ones, valid)
    centre = {(chip, core): (1.2, 1.0)}  # the target, off the population's median (1.0)

    def exc_cv(sel):
        g = fit_e.gains_of(sel) / 1.2
        return np.std(g) / np.mean(g), np.mean(g)

    loose, w_loose = select_within_budget(mapped, fit_e, fit_i, centre, exc_cv_budget=1.0)
    tight, w_tight = select_within_budget(mapped, fit_e, fit_i, centre, exc_cv_budget=0.0)
    assert w_loose == INHIBITORY_WEIGHTS[0] and w_tight == INHIBITORY_WEIGHTS[-1] == 0.0
    cv_tight, mean_tight = exc_cv(tight)
    assert cv_tight < exc_cv(loose)[0] and abs(mean_tight - 1.0) < 0.01  # centred on the target, not the median
    inh_spread = [np.std(np.log(fit_i.gains_of(s))) for s in (loose, tight)]
    assert inh_spread[0] < inh_spread[1]  # the weight buys inhibitory match
    middle, w_middle = select_within_budget(mapped, fit_e, fit_i, centre, exc_cv_budget=0.5 * (cv_tight + exc_cv(loose)[0]))
    assert exc_cv(middle)[0] <= 0.5 * (cv_tight + exc_cv(loose)[0]) and 0.0 <= w_middle < w_loose


def test_network_gain_matching_brings_the_board_features_onto_the_model(calibrated):
    import copy

    from neurolab_gui.core.calibration.engine import _BoardSamples, _match_network_gains, board_sample_s
    from neurolab_gui.core.calibration.progress import metered
    from neurolab_gui.core.conversion.mapping import WEIGHT_BIAS
    from neurolab_gui.core.jobs import ProgressReporter

    result, _, board, _ = calibrated
    result = copy.deepcopy(result)
    result.network_gain_match = []
    work = copy.deepcopy(result.mapped)
    (chip, core), = set(work.group_cores)
    for syn in (SynapseType.AMPA, SynapseType.GABA_B):  # both weight biases ~30 % too strong
        v = work.biases[(chip, core, WEIGHT_BIAS[syn])]
        work.biases[(chip, core, WEIGHT_BIAS[syn])] = type(v)(v.coarse, min(255, round(v.fine * 1.3)), v.high)
    _, _, task = tiny_network()
    cfg = CalibrationConfig(gain_match_rounds=4, gain_match_tolerance=0.03)
    mboard = metered(board)
    seen = _BoardSamples()
    _match_network_gains(mboard, result, work, result.constrained, task.x_train[:40], task.y_train[:40], task.lengths_train[:40],
                         10, cfg, ProgressReporter(None, None, mboard), 0.0, 1.0, seen)
    slopes = [r[f"{chip}/{core}"] for r in result.network_gain_match]
    assert slopes[0] > 1.1, slopes  # the stronger weights show as features above the model's
    assert min(abs(np.log(s)) for s in slopes[1:]) < 0.5 * abs(np.log(slopes[0])), slopes
    kept = work.biases[(chip, core, WEIGHT_BIAS[SynapseType.AMPA])]
    on_board = board.get_bias(chip, core, WEIGHT_BIAS[SynapseType.AMPA])
    assert (on_board.coarse, on_board.fine) == (kept.coarse, kept.fine)  # the kept setting is the one left on the board
    # every round ran new samples, each recorded with the biases it ran under
    assert len(seen.features) == len(slopes) and all(len(f) == 10 for f in seen.features)
    assert len({tuple(sorted((k, (v.coarse, v.fine)) for k, v in st.items())) for st in seen.settings}) == len(slopes)
    assert mboard.chip_s == pytest.approx(10 * len(slopes) * board_sample_s(work, task.lengths_train[:40]), rel=0.05)


@pytest.fixture(scope="module")
def looped(calibrated):
    """The chip-in-the-loop stage run on the calibrated fixture, within a chip-time budget."""
    import copy

    from neurolab_gui.core.calibration.engine import _in_the_loop, board_sample_s
    from neurolab_gui.core.calibration.progress import metered
    from neurolab_gui.core.jobs import ProgressReporter

    result, _, board, mapped = calibrated
    result = copy.deepcopy(result)
    result.network_gain_match, result.loop_history = [], []
    _, _, task = tiny_network()
    per_sample = board_sample_s(mapped, task.lengths_train)
    budget = result.chip_s_measurement + 24 * per_sample  # room for 24 of the 30 samples the board may use
    cfg = dataclasses.replace(FAST, chip_budget_s=budget, n_gain_match=8, gain_match_rounds=2, n_model_validation=10,
                              fine_tune=TrainConfig(epochs=1, lr=3e-3))
    mboard = metered(board)
    mboard.chip_s = result.chip_s_measurement  # as in calibrate_network: the measurement's chip time is spent
    clock = virtual_fpga_of(board).simulator
    t0 = clock.time_s
    _in_the_loop(mboard, result, copy.deepcopy(result.mapped), result.constrained, task, cfg, ProgressReporter(None, None, mboard))
    return result, board, mapped, task, budget, mboard.chip_s, clock.time_s - t0


def test_in_the_loop_stage_plans_its_board_samples_within_the_chip_budget(looped):
    result, _, _, _, budget, chip_s, clock_s = looped
    history = {e["stage"]: e for e in result.loop_history}
    assert set(history) == {"compensate", "fine-tune", "readout"}
    assert chip_s <= budget + 0.1, (chip_s, budget)  # the budget holds, on the emulator's own clock too
    assert chip_s - result.chip_s_measurement == pytest.approx(clock_s, abs=1e-6)
    # the readout is re-fitted on board samples, those the gain matching ran at the final biases reused
    readout = history["readout"]
    assert readout["n_board_samples"] >= 20 and readout["readout_l2"] in READOUT_L2_GRID
    # the refit's samples are kept with the hardware model's features of the same samples (readout corrections)
    fit = result.readout_fit
    assert fit.features.shape == fit.model_features.shape == (readout["n_board_samples"], result.constrained.n_hidden)
    assert np.all(np.isfinite(fit.model_features)) and len(fit.labels) == len(fit.features)
    assert 1 <= len(result.network_gain_match) <= 2
    # the fine-tune ran at least CalibrationConfig.fine_tune_min_steps optimizer steps, capped at 4x its configured
    # epoch: the tiny task's 30 fit sequences are one batch per epoch
    assert CalibrationConfig().fine_tune_min_steps > 4 and history["fine-tune"]["epochs"] == 4
    # the fine-tuned network is kept only when it validated better on the held-out samples (host only)
    if not history["fine-tune"]["kept"]:
        assert history["fine-tune"]["model_val_accuracy"] <= history["compensate"]["model_val_accuracy"]
    assert {c.post for c in result.mapped.netlist.connections} <= set(result.selected)  # deployed on the selected neurons


def test_profile_restores_the_compensated_connections_and_readout_on_the_next_deploy(looped, tmp_path):
    from neurolab_gui.core.conversion.deployment import deploy_network, network_fingerprint, run_deployment

    result, board, mapped, task, _, _, _ = looped
    result.network_fingerprint = network_fingerprint(mapped)  # what calibrate_network records
    compensated = result.mapped
    assert not np.array_equal(compensated.multiplicity, mapped.multiplicity) or not np.allclose(
        compensated.readout_weight, mapped.readout_weight)  # the calibration changed the network itself
    profile = load_profile(save_profile(profile_from_network_calibration(board.serial, result, emulated=True), tmp_path))
    x, y, lengths = task.x_test, task.y_test, task.lengths_test
    again = deploy_network(board, mapped, profile=profile)  # the nominal network, as the next deploy starts from
    assert np.array_equal(again.mapped.multiplicity, compensated.multiplicity)
    assert np.array_equal(again.mapped.readout_weight, compensated.readout_weight)
    assert set(again.mapped.netlist.connections) == set(compensated.netlist.connections)
    assert again.mapped.biases == compensated.biases and again.mapped.unit_addresses == compensated.unit_addresses
    restored = run_deployment(again, x, y, lengths, seed=3)
    calibrated_run = run_deployment(deploy_network(board, compensated), x, y, lengths, seed=3)
    assert np.array_equal(restored.predictions, calibrated_run.predictions)
    assert restored.accuracy == calibrated_run.accuracy
    # another network of the same shape gets the biases and neurons, not these connections
    other = copy.deepcopy(mapped)
    other.readout_bias = other.readout_bias + 0.5
    elsewhere = deploy_network(board, other, profile=profile)
    assert np.array_equal(elsewhere.mapped.multiplicity, mapped.multiplicity)
    assert any("another network" in note for note in elsewhere.notes)


def test_fine_tuning_keeps_its_best_epoch_on_the_held_out_samples():
    from neurolab_gui.core.calibration.compensation import UnitTransfer, fine_tune, hardware_model
    from neurolab_gui.core.conversion.training import evaluate

    net, _, task = tiny_network()
    h = net.model.config.n_hidden
    transfer = UnitTransfer(np.full(h, 1.1), np.full(h, 0.9), np.zeros(h))
    # held-out samples labelled by the starting model itself: it scores 1.0 there, no epoch can do better
    x_held = np.random.default_rng(7).random((30, 6, 4)).astype(np.float32)
    _, labels = evaluate(hardware_model(net, transfer), x_held, np.zeros(30))
    held = (x_held, labels, None)
    wrecking = TrainConfig(epochs=3, lr=5.0, batch_size=8)  # moves the weights far every epoch
    moved = fine_tune(net, transfer, task, wrecking)
    kept = fine_tune(net, transfer, task, wrecking, validation=held)
    assert not np.array_equal(moved.multiplicity, net.multiplicity)
    assert np.array_equal(kept.multiplicity, net.multiplicity)  # the starting state, restored after training
    assert evaluate(hardware_model(kept, transfer), *held)[0] == 1.0


def test_hardware_model_emits_whole_spikes_and_the_tuned_network_keeps_rates(calibrated):
    from neurolab_gui.core.calibration.compensation import UnitTransfer, fine_tune, hardware_model
    from neurolab_gui.core.conversion.training import mean_rates

    result, _, _, mapped = calibrated
    t = mapped.time
    # the calibration's measured transfer says the board's units hand on whole spikes of r_max dt_step each
    assert result.transfer.spikes_per_step == pytest.approx(t.r_max_hz * t.dt_step_s)
    assert result.transfer.count_correction == mapped.count_correction
    assert result.transfer.to_dict()["spikes_per_step"] == pytest.approx(t.r_max_hz * t.dt_step_s)
    net, _, task = tiny_network()
    h = net.model.config.n_hidden
    sps = t.r_max_hz * t.dt_step_s
    spiking = hardware_model(net, UnitTransfer(np.ones(h), np.ones(h), np.zeros(h), sps))
    counts = mean_rates(spiking, task.x_train[:8]) * sps
    assert np.allclose(counts, np.round(counts), atol=1e-4) and counts.max() >= 1  # whole spikes, some fired
    rates = mean_rates(hardware_model(net, UnitTransfer(np.ones(h), np.ones(h), np.zeros(h))), task.x_train[:8]) * sps
    assert not np.allclose(rates, np.round(rates), atol=1e-4)  # without it: rates
    tuned = fine_tune(net, UnitTransfer(np.ones(h), np.ones(h), np.zeros(h), sps), task, TrainConfig(epochs=1, lr=3e-3))
    assert tuned.model.spikes_per_step is None  # the network's own model stays a rate model (the hardware model adds spikes)
    assert hardware_model(tuned, result.transfer).spikes_per_step == pytest.approx(sps)


def test_network_gain_matching_steps_with_a_fixed_exponent(calibrated, monkeypatch):
    """Each round of the gain matching runs other samples, so the slope's change between rounds is mostly theirs:
    the step exponent is CalibrationConfig.gain_match_exponent, never one estimated from the rounds."""
    from neurolab_gui.core.calibration import engine
    from neurolab_gui.core.calibration.progress import metered
    from neurolab_gui.core.jobs import ProgressReporter

    result, _, board, _ = calibrated
    result = copy.deepcopy(result)
    seen = {}
    real = engine.tune_core_biases

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(engine, "tune_core_biases", spy)
    _, _, task = tiny_network()
    cfg = CalibrationConfig(gain_match_rounds=1, gain_match_exponent=1.5)
    mboard = metered(board)
    engine._match_network_gains(mboard, result, copy.deepcopy(result.mapped), result.constrained, task.x_train[:8], task.y_train[:8],
                                task.lengths_train[:8], 8, cfg, ProgressReporter(None, None, mboard), 0.0, 1.0)
    assert seen["exponent_range"] == (1.5, 1.5)
    assert CalibrationConfig().gain_match_exponent == 1.0
    net, mapped, _ = tiny_network()
    with pytest.raises(ValueError, match="gain_match_exponent"):
        calibrate_network(board, mapped, net, None, CalibrationConfig(gain_match_exponent=0.0))


def test_progress_fraction_follows_the_planned_work_so_the_eta_is_not_far_too_low(calibrated):
    """Round 7, F4: planning claimed 9 % of the run in 10 ms and the probe runs too small a share, so the
    ETA extrapolated from the fraction was 3-300x too low in the first half.  The steps now report where
    their expected cost (chip time and runs, plan_network_calibration) puts them: a calibration's probe runs
    are alike, so the fraction grows with the chip time used."""
    from neurolab_gui.core.calibration.engine import plan_network_calibration

    result, events, _, mapped = calibrated
    plan = plan_network_calibration(mapped, None, FAST)
    assert plan.costs["tune_weights_to_population"] == plan.costs["tune_weights_to_selection"] == 2 * plan.costs["measure_after_compensation"] > 0
    chip_total = result.chip_seconds_total
    before_any_run = [e.fraction for e in events if e.chip_s == 0.0]
    assert max(before_any_run) < 0.01, before_any_run  # nothing measured yet: no share of the run, no ETA
    off = [(e.step, round(e.fraction, 3), round(e.chip_s / chip_total, 3)) for e in events
           if e.step != "done" and abs(e.fraction - e.chip_s / chip_total) > 0.1]
    assert not off, off
