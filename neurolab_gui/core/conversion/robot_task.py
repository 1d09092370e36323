"""The robot's steering task: a network that maps the PushBot's DVS to "turn left / ahead / turn right".

A network trained on this task can drive the robot's motors in the closed loop
(:mod:`neurolab_gui.core.robot_demo`, ``neurolab robot demo --network CKPT``, the Robot panel):

* **input** (:class:`RobotCoding`): every sample is ``sample_s`` (20 ms) of DVS events counted
  in ``n_bins`` vertical strips of the 128-column image, divided by the fullest strip's count
  (at least ``min_peak_events``), so a visible LED makes its strip 1 whatever its brightness and
  pure noise stays low; one input channel per strip;
* **target**: the class of the light's bearing at the end of the sequence, from the simulator's
  ground truth: 0 = the LED is left of the image centre by more than ``ahead_px``, 1 = ahead,
  2 = right;
* **motors**: the loop turns the readout into wheel commands with the class probabilities,
  ``turn = p(right) - p(left)``, ``left = forward + turn_gain * turn``,
  ``right = forward - turn_gain * turn`` (:meth:`RobotCoding.motor_commands`).

The data are made offline with the simulated PushBot (``robot_sim``), faster than real time:
episodes with a random LED position in view, driven by an *expert* that steers toward the
light's true bearing plus a slowly varying random turn (so the bearings the loop will meet,
centred or off to the sides, all occur), cut into sequences of ``n_steps`` samples.  The
sequences are what the robot's DVS really delivers in the loop (the same renderer makes the
served robot's event stream), and the label is the supervised target of turning toward the
light.  ``readout="last"`` (the state at the end of the sequence) matches the loop, which
decodes the network's filtered rates continuously.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from .tasks import Task

#: Name of the task (``neurolab train --task phototaxis``; stored in the checkpoint).
PHOTOTAXIS_TASK = "phototaxis"
CLASS_NAMES = ("left", "ahead", "right")
DVS_COLUMNS = 128


@dataclass(frozen=True)
class RobotCoding:
    """How DVS events become the network's input, and its output wheel commands."""

    n_bins: int = 16
    sample_s: float = 0.02  # one input sample: the RNN's steps_per_sample x dt_step (4 x 5 ms)
    min_peak_events: float = 16.0
    ahead_px: float = 6.0  # |LED column - centre| up to this is "ahead"
    forward: float = 25.0  # motor command when the network says "ahead"
    turn_gain: float = 25.0  # added to one wheel and taken from the other at full certainty

    def __post_init__(self) -> None:
        if DVS_COLUMNS % self.n_bins:
            raise ValueError(f"{self.n_bins} strips do not divide the DVS's {DVS_COLUMNS} columns")
        if not self.sample_s > 0 or not self.min_peak_events > 0:
            raise ValueError("sample length and minimum peak must be positive")

    def features(self, column_histogram: np.ndarray) -> np.ndarray:
        """Input vector ``[n_bins]`` in [0, 1] from one sample's per-column event counts ``[128]``."""
        counts = np.asarray(column_histogram, float).reshape(self.n_bins, -1).sum(1)
        return np.clip(counts / max(float(counts.max()), self.min_peak_events), 0.0, 1.0)

    def label(self, led_column: float) -> int:
        """Class of an LED column: 0 left, 1 ahead, 2 right."""
        offset = led_column - (DVS_COLUMNS - 1) / 2
        return 1 if abs(offset) <= self.ahead_px else (0 if offset < 0 else 2)

    def motor_commands(self, scores: np.ndarray) -> tuple[int, int, float]:
        """(left, right, turn) from the readout's class scores (logits) ``[3]``."""
        z = np.asarray(scores, float)
        p = np.exp(z - z.max())
        p /= p.sum()
        turn = float(p[2] - p[0])
        left = int(np.clip(round(self.forward + self.turn_gain * turn), -100, 100))
        right = int(np.clip(round(self.forward - self.turn_gain * turn), -100, 100))
        return left, right, turn

    def to_dict(self) -> dict:
        return asdict(self)


def simulate_episode(coding: RobotCoding, n_samples: int, rng: np.random.Generator,
                     sim_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One expert episode: features ``[n_samples, n_bins]`` and the LED column after each sample (NaN: out of view)."""
    from robot_sim.pushbot import PushBotSimConfig, SimulatedPushBot

    distance = rng.uniform(1.0, 3.0)
    bearing = rng.uniform(-0.45, 0.45)  # inside the 55 deg field of view (±0.48 rad)
    sim = SimulatedPushBot(PushBotSimConfig(led_x_m=distance * math.cos(bearing), led_y_m=distance * math.sin(bearing),
                                            led_frequency_hz=float(rng.choice([150.0, 200.0, 250.0])),
                                            noise_rate_hz=float(rng.uniform(1000.0, 4000.0)), seed=sim_seed))
    features = np.zeros((n_samples, coding.n_bins), np.float32)
    columns = np.full(n_samples, np.nan)
    wander = 0.0
    for i in range(n_samples):
        # the expert: proportional steering toward the true bearing, plus a slow random turn
        wander = 0.9 * wander + rng.normal(0.0, 8.0)
        turn = float(np.clip(60.0 * sim.led_bearing() + wander, -40, 40))  # bearing > 0: LED to the left
        sim.drive(coding.forward - turn, coding.forward + turn)
        x, _, _, _ = sim.step_offline(coding.sample_s)
        features[i] = coding.features(np.bincount(x, minlength=DVS_COLUMNS)[:DVS_COLUMNS])
        column = sim.led_column()
        columns[i] = np.nan if column is None else column
    sim.close()
    return features, columns


def phototaxis_task(n_train: int = 1600, n_test: int = 400, n_steps: int = 8, seed: int = 0,
                    coding: RobotCoding | None = None, episode_samples: int = 100, stride: int = 4) -> Task:
    """The steering task (see the module docstring): sequences of ``n_steps`` samples cut from
    expert episodes every ``stride`` samples; sequences whose last sample has the LED out of
    view are left out.  Train and test sequences come from different episodes."""
    coding = coding or RobotCoding()
    rng = np.random.default_rng(seed)

    def sequences(n: int, first_seed: int) -> tuple[np.ndarray, np.ndarray]:
        xs, ys = [], []
        episode = 0
        while len(xs) < n:
            feats, cols = simulate_episode(coding, episode_samples, rng, first_seed + episode)
            episode += 1
            for end in range(n_steps, episode_samples + 1, stride):
                if not math.isnan(cols[end - 1]):
                    xs.append(feats[end - n_steps:end])
                    ys.append(coding.label(cols[end - 1]))
        order = rng.permutation(len(xs))[:n]
        return np.asarray(xs, np.float32)[order], np.asarray(ys, np.int64)[order]

    x_train, y_train = sequences(n_train, 1_000_000 * (seed + 1))
    x_test, y_test = sequences(n_test, 1_000_000 * (seed + 1) + 500_000)
    return Task(PHOTOTAXIS_TASK, x_train, y_train, x_test, y_test, len(CLASS_NAMES),
                description=f"PushBot steering: {coding.n_bins} DVS strips x {n_steps} samples of "
                            f"{coding.sample_s * 1e3:.0f} ms -> left / ahead / right (simulated expert episodes)")


__all__ = ["CLASS_NAMES", "PHOTOTAXIS_TASK", "RobotCoding", "phototaxis_task", "simulate_episode"]
