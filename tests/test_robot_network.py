"""A converted network drives the robot: the steering task, its coding, and the closed loop on the emulator.

The end-to-end test converts the shipped steering RNN with the normal pipeline (QAT, mapping),
deploys it on the emulated board and lets it drive the simulated PushBot; what the robot did is
read from the simulator's ground truth (its pose and the LED's true column), not from the
network's own outputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neurolab_gui.core.conversion.checkpoint import save_checkpoint
from neurolab_gui.core.conversion.models import RateRNN, RNNConfig
from neurolab_gui.core.conversion.robot_task import RobotCoding, phototaxis_task
from neurolab_gui.core.conversion.tasks import load_task
from neurolab_gui.core.robot_demo import IMAGE_CENTRE, PhototaxisConfig, run_simulated_phototaxis
from neurolab_gui.core.robot_network import builtin_steering_checkpoint, deploy_robot_network


def _histogram(columns: dict[int, int], noise: int = 0, seed: int = 0) -> np.ndarray:
    h = np.random.default_rng(seed).poisson(noise, 128) if noise else np.zeros(128, np.int64)
    for column, count in columns.items():
        h[column] += count
    return h


def test_the_coding_maps_the_led_strip_to_one_and_noise_below_it() -> None:
    coding = RobotCoding()
    x = coding.features(_histogram({20: 50, 21: 12}, noise=1))
    assert x.shape == (16,) and int(np.argmax(x)) == 2 and x[2] == 1.0  # columns 16..23
    assert np.all(np.delete(x, 2) < 0.35)
    dim = coding.features(_histogram({100: 8}))  # a faint LED still stands out, below one
    assert int(np.argmax(dim)) == 12 and dim[12] == pytest.approx(0.5)
    assert np.all(coding.features(np.zeros(128)) == 0)
    assert [coding.label(c) for c in (5.0, 57.0, 58.0, 63.5, 69.5, 70.0, 127.0)] == [0, 0, 1, 1, 1, 2, 2]


def test_the_scores_turn_the_robot_toward_the_likely_side() -> None:
    coding = RobotCoding(forward=25, turn_gain=25)
    left, right, turn = coding.motor_commands(np.array([4.0, 0.0, -4.0]))  # sure: the light is left
    assert right > left and turn < -0.9 and (left, right) == (0, 50)
    assert coding.motor_commands(np.array([0.0, 6.0, 0.0]))[:2] == (25, 25)  # ahead: straight on
    left, right, turn = coding.motor_commands(np.array([0.0, 0.0, 1.0]))
    assert left > right and 0 < turn < 1


def test_the_task_is_simulated_dvs_labelled_with_the_side_of_the_light() -> None:
    task = load_task("phototaxis", n_train=60, n_test=20, episode_samples=40)
    assert task.x_train.shape == (60, 8, 16) and task.x_test.shape == (20, 8, 16) and task.n_classes == 3
    assert set(task.y_train) == {0, 1, 2}
    # the label agrees with where the events are: the brightest strip of the last sample
    brightest = task.x_train[:, -1].argmax(1)
    assert np.mean(brightest[task.y_train == 0] < 8) > 0.9
    assert np.mean(brightest[task.y_train == 2] >= 8) > 0.9
    again = phototaxis_task(n_train=60, n_test=20, episode_samples=40)
    assert np.array_equal(again.x_train, task.x_train)  # seeded: the same data every time


def test_a_network_trained_for_something_else_is_refused_before_the_board_is_touched(tmp_path) -> None:
    torch.manual_seed(0)
    path = save_checkpoint(tmp_path / "digits.pt", RateRNN(RNNConfig(8, 16, 10, "leaky", 0.85, 4)), {"task": "seq_digits"})

    class Untouchable:
        def __getattr__(self, name: str):
            raise AssertionError(f"the board was used: {name}")

    with pytest.raises(ValueError, match=r"8 inputs and 10 outputs.*16 DVS strips.*--task phototaxis"):
        deploy_robot_network(Untouchable(), path)


def test_the_converted_network_on_the_emulator_brings_the_led_to_the_centre() -> None:
    def deploy(board):
        # the normal conversion (QAT kept short here) and deployment; nominal weight biases
        # (matching on the board centres better and takes longer: `neurolab robot demo --network steering`)
        network = deploy_robot_network(board, builtin_steering_checkpoint(), qat_samples=200, qat_epochs=1,
                                       match_on_board=False)
        assert any("constrained" in note for note in network.notes)
        return network.controller()

    report = run_simulated_phototaxis(PhototaxisConfig(duration_s=4.0), controller_for=deploy)
    assert report.status == "completed", report.log
    assert report.network.startswith("converted network") and report.netlist_connections > 100
    true_columns = np.array(report.true_led_column, dtype=float)
    assert abs(true_columns[0] - IMAGE_CENTRE) > 35  # the light starts far in the left half
    tail = true_columns[-10:]
    assert not np.isnan(tail).any() and np.max(np.abs(tail - IMAGE_CENTRE)) < 12
    assert report.converged and abs(report.final_led_column - IMAGE_CENTRE) < 10
    headings = [p[2] for p in report.pose]
    assert headings[-1] > headings[0] + 0.2  # it turned left, toward the light
    # while the light was on the left, the readout sped up the right wheel
    early = [i for i, t in enumerate(report.t_s) if t >= 0.3 and true_columns[i] < IMAGE_CENTRE - 20]
    assert early and np.mean([report.command_right[i] - report.command_left[i] for i in early]) > 10
    assert 5 < report.achieved_rate_hz <= 51  # one 20 ms network sample per step


def test_robot_demo_network_option_refuses_what_cannot_drive_the_robot(tmp_path, capsys) -> None:
    from neurolab_gui.cli import main

    assert main(["robot", "demo", "--network", str(tmp_path / "missing.pt")]) == 2
    assert "neither 'phototaxis', 'steering' nor a checkpoint file" in capsys.readouterr().err
    torch.manual_seed(0)
    digits = save_checkpoint(tmp_path / "digits.pt", RateRNN(RNNConfig(8, 16, 10, "leaky", 0.85, 4)), {"task": "seq_digits"})
    assert main(["robot", "demo", "--network", str(digits), "--duration", "1"]) == 2
    assert "train one with `neurolab train --task phototaxis`" in capsys.readouterr().err
