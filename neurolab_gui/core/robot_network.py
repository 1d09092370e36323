"""A converted network drives the PushBot: DVS strips in through the spike generator, wheels from the readout.

The network is a rate RNN trained with BPTT on the steering task
(:mod:`neurolab_gui.core.conversion.robot_task`, ``neurolab train --task phototaxis``) and put on
the board by the normal conversion pipeline: constrained, mapped and deployed
(:mod:`neurolab_gui.core.conversion.deployment`: the board's calibration profile, or transfer
matching on the board).  :class:`NetworkController` then runs it in the closed loop of
:class:`~neurolab_gui.core.robot_demo.PhototaxisSession`, one network sample per loop step::

    DVS events of the step ──RobotCoding.features──▶ strip values x in [0, 1]
        ──ΣΔ code, r_max x Hz per input (+ the bias channel)──▶ one spike-generator program
        ──board──▶ spikes of every hidden unit ──synaptic filter (tau), carried across steps──▶ h
        ──host readout W h + b──▶ class scores ──RobotCoding.motor_commands──▶ !MVD0 / !MVD1

The input is coded exactly as the conversion codes test samples (:func:`.encoding.sigma_delta_encode`,
:func:`.spiking_run.generator_program`), but without the reset burst between samples: the loop is
one endless sequence.  The readout decodes the units' spikes as the conversion's ``last`` readout
does (spikes low-passed with the synaptic time constant, :func:`.spiking_run.decode`), with the
filter state kept from step to step, so ``h`` is the RNN's state at the end of each step.

For the panel's "neurons driving each motor" the hidden units are split by the sign of their
readout weight on turning (``W[right] - W[left]``): units that push toward a right turn speed up
the left wheel, the others the right wheel.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from drivers.dynapse1.board_api import Board

from .conversion.encoding import sigma_delta_encode
from .conversion.robot_task import CLASS_NAMES, PHOTOTAXIS_TASK, RobotCoding
from .jobs import ProgressSink
from .probing.program import run_program
from .robot_demo import ControlOutput, PhototaxisReport

if TYPE_CHECKING:  # the conversion stack imports torch: loaded when a network is deployed, not with the app
    from .conversion.checkpoint import LoadedModel
    from .conversion.deployment import BoardProfile, Deployment
    from .conversion.mapping import MappedNetwork

#: ``--network`` / the Robot panel's names of the networks that can drive the motors.
WIRED_NETWORK = "phototaxis"  # the hand-wired Braitenberg network of :mod:`.robot_demo`
BUILTIN_STEERING = "steering"  # the shipped converted steering RNN (resources/networks/)
DEPLOYED_NETWORK = "deployed"  # the app's network deployed from the Model panel


def builtin_steering_checkpoint() -> Path:
    """The shipped steering RNN (``neurolab train --task phototaxis``, see resources/networks/README.md)."""
    from drivers.resources import resource_path

    return resource_path("networks", "phototaxis_steering.pt")


def check_robot_network(mapped: MappedNetwork, coding: RobotCoding) -> None:
    """Raise ``ValueError`` naming why ``mapped`` cannot drive the robot with ``coding``."""
    classes = int(mapped.readout_weight.shape[0])
    if mapped.n_inputs != coding.n_bins or classes != len(CLASS_NAMES):
        raise ValueError(
            f"this network has {mapped.n_inputs} inputs and {classes} outputs; a network that drives the robot takes "
            f"{coding.n_bins} DVS strips and gives {len(CLASS_NAMES)} scores ({' / '.join(CLASS_NAMES)}): "
            f"train one with `neurolab train --task {PHOTOTAXIS_TASK}`"
        )
    sample_s = mapped.time.sample_duration_s(1)
    if not math.isclose(sample_s, coding.sample_s, rel_tol=1e-6):
        raise ValueError(f"the network's sample lasts {sample_s * 1e3:.1f} ms; the robot coding needs "
                         f"{coding.sample_s * 1e3:.1f} ms (steps per sample x RNN step)")


class NetworkController:
    """A deployed converted network in the closed loop (see the module docstring).

    Parameters
    ----------
    mapped : the network as written on the board (``Deployment.mapped``)
    coding : how DVS events become its inputs and its scores wheel commands
    label : what the report and the panel call it
    seed : first seed of the ΣΔ phases (one per step)
    write : write biases and netlist at set-up (clearing only the network's cores first), for a
        network deployed earlier that another loop may have overwritten since
    """

    def __init__(self, mapped: MappedNetwork, coding: RobotCoding | None = None, label: str = "converted network",
                 seed: int = 0, write: bool = False) -> None:
        self.coding = coding or RobotCoding()
        check_robot_network(mapped, self.coding)
        self.mapped = mapped
        self.name = label
        self.period_s = mapped.time.sample_duration_s(1)
        self.write = write
        self._seed = seed
        self._step = 0
        unit_of_gid = np.full(4096, -1, np.int64)
        for u, a in enumerate(mapped.unit_addresses):
            unit_of_gid[(a.chip * 4 + a.core) * 256 + a.neuron] = u
        self._unit_of_gid = unit_of_gid
        from .conversion.spiking_run import generator_program  # torch: see the imports above

        self._generator_program = generator_program
        self._trace = np.zeros(mapped.n_hidden)  # filtered rate of every unit (Hz)
        push_right = mapped.readout_weight[2] - mapped.readout_weight[0]
        self._left_wheel_units = np.flatnonzero(push_right > 0)  # a right turn speeds up the left wheel
        self._right_wheel_units = np.flatnonzero(push_right <= 0)
        #: the last step's class scores and turn (-1 left .. 1 right)
        self.scores = np.zeros(len(CLASS_NAMES))
        self.turn = 0.0

    def setup(self, board: Board, report: PhototaxisReport) -> None:
        """Reset the decoder; with ``write``, put the network on the board again (else it is there:
        :func:`deploy_robot_network`)."""
        board.stop_spike_generator()
        m = self.mapped
        if self.write:
            chip = m.chip
            board.clear_connections([chip], cores=sorted({core for c, core in m.group_cores if c == chip}))
            board.apply_bias_set(m.biases)
            report.netlist_warnings = list(board.write_netlist(m.netlist))
        report.netlist_connections = len(m.netlist.connections)
        self._trace[:] = 0.0
        self._step = 0
        cores = ", ".join(f"chip {c} core {k}" for c, k in m.group_cores)
        report.note(f"{self.name}: {m.n_inputs} DVS strips -> {m.n_hidden} units on {cores} -> "
                    f"{' / '.join(CLASS_NAMES)}; {1 / self.period_s:.0f} Hz steps of one {self.period_s * 1e3:.0f} ms sample")

    def step(self, board: Board, histogram: np.ndarray, dt_s: float) -> ControlOutput:
        m, t, coding = self.mapped, self.mapped.time, self.coding
        x = coding.features(histogram)
        stim = sigma_delta_encode(x[None, None, :], np.array([1]), t.r_max_hz, t.dt_step_s, t.steps_per_sample, gap_s=0.0,
                                  seed=self._seed + self._step, lead_s=0.0, input_gain=m.input_rate_gain,
                                  bias_gain=m.bias_rate_gain)
        self._step += 1
        period = self.period_s
        events = run_program(board, self._generator_program(m, stim), period)
        # h: the units' spikes low-passed with the synaptic tau, the filter kept across steps
        unit = self._unit_of_gid[events.global_id] if len(events) else np.zeros(0, np.int64)
        keep = unit >= 0
        age_s = np.clip(period - events.timestamp_us[keep] / 1e6, 0.0, None)
        self._trace *= math.exp(-period / t.tau_s)
        np.add.at(self._trace, unit[keep], np.exp(-age_s / t.tau_s) / t.tau_s)
        h = (self._trace - m.unit_offset_hz) / (m.unit_gain * t.r_max_hz)
        self.scores = h @ m.readout_weight.T + m.readout_bias
        left, right, self.turn = coding.motor_commands(self.scores)
        counts = np.bincount(unit[keep], minlength=m.n_hidden).astype(float)
        half = coding.n_bins // 2
        lw, rw = self._left_wheel_units, self._right_wheel_units
        return ControlOutput(
            events, left, right, float(x[:half].mean() * t.r_max_hz * m.input_rate_gain),
            float(x[half:].mean() * t.r_max_hz * m.input_rate_gain),
            float(self._trace[lw].mean()) if len(lw) else 0.0, float(self._trace[rw].mean()) if len(rw) else 0.0,
            counts[lw] / period, counts[rw] / period,
        )  # fmt: skip

    def stop(self, board: Board) -> None:
        board.stop_spike_generator()


@dataclass
class RobotNetwork:
    """A converted steering network deployed on a board, ready to drive the robot."""

    deployment: Deployment
    coding: RobotCoding
    label: str
    notes: list[str]

    def controller(self, seed: int = 0, write: bool = False) -> NetworkController:
        """Its loop controller; ``write``: write the network on the board again at set-up."""
        return NetworkController(self.deployment.mapped, self.coding, self.label, seed, write=write)


def load_robot_checkpoint(checkpoint: str | Path, coding: RobotCoding | None = None) -> LoadedModel:
    """The checkpoint of a network that drives the robot, read and checked before any board work.

    Raises ``ValueError`` (``CheckpointError`` for an unreadable file) naming the file when its model
    does not take the ``coding``'s DVS strips or does not give one score per steering class.
    """
    from .conversion.checkpoint import load_checkpoint

    coding = coding or RobotCoding()
    loaded = load_checkpoint(checkpoint)
    model_cfg = loaded.model.config
    if model_cfg.n_inputs != coding.n_bins or model_cfg.n_outputs != len(CLASS_NAMES):
        raise ValueError(
            f"{Path(checkpoint).name}: the model has {model_cfg.n_inputs} inputs and {model_cfg.n_outputs} outputs; "
            f"a network that drives the robot takes {coding.n_bins} DVS strips and gives {len(CLASS_NAMES)} scores "
            f"({' / '.join(CLASS_NAMES)}): train one with `neurolab train --task {PHOTOTAXIS_TASK}`"
        )
    return loaded


def deploy_robot_network(
    board: Board,
    checkpoint: str | Path,
    *,
    profile: BoardProfile | None = None,
    coding: RobotCoding | None = None,
    qat_samples: int = 600,
    qat_epochs: int | None = None,
    match_on_board: bool = True,
    seed: int = 0,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> RobotNetwork:
    """Convert a steering checkpoint with the normal pipeline and deploy it on ``board``.

    The checkpoint's float model is constrained (QAT on ``qat_samples`` freshly simulated
    sequences of the steering task, ``qat_epochs`` or the task's) and mapped with the task's
    pipeline settings (:func:`.conversion.pipeline.config_for_task`), then written with
    :func:`.conversion.deployment.deploy_network`: ``profile`` when the board has one, otherwise
    transfer matching on the board (``match_on_board=False``: the nominal weight biases, quicker).  Raises ``ValueError`` (or ``CheckpointError``) for a
    checkpoint that cannot drive the robot, before anything is written.
    """
    import torch

    from .conversion.deployment import deploy_network
    from .conversion.pipeline import config_for_task, convert
    from .conversion.robot_task import phototaxis_task
    from .jobs import check_cancel, span

    coding = coding or RobotCoding()
    loaded = load_robot_checkpoint(checkpoint, coding)
    model_cfg = loaded.model.config
    check_cancel(cancel)
    task = phototaxis_task(n_train=qat_samples, n_test=max(50, qat_samples // 4), seed=seed + 1, coding=coding)
    check_cancel(cancel)
    cfg = config_for_task(PHOTOTAXIS_TASK, model_cfg, stages=(), seed=seed, qat_epochs=qat_epochs)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-unit RNN: extra threads only contend on a busy machine
    try:
        conversion = convert(loaded.model, task, cfg, progress=span(progress, 0.0, 0.4), cancel=cancel)
    finally:
        torch.set_num_threads(threads)
    check_robot_network(conversion.mapped, coding)
    deployment = deploy_network(board, conversion.nominal_mapped or conversion.mapped, profile=profile,
                                scales=conversion.constrained.scale, matching=conversion.matching if match_on_board else None,
                                progress=span(progress, 0.4, 1.0), cancel=cancel)
    stages = {s.name: s.accuracy for s in conversion.report.stages}
    notes = [f"{Path(checkpoint).name}: float accuracy {stages.get('float', math.nan):.3f}, "
             f"constrained {stages.get('constrained', math.nan):.3f} on {len(task.x_test)} simulated sequences",
             *deployment.notes]
    return RobotNetwork(deployment, coding, f"converted network {Path(checkpoint).name}", notes)


def network_of_deployment(deployment: Deployment, coding: RobotCoding | None = None,
                          label: str = "deployed converted network") -> RobotNetwork:
    """A network the app already deployed (``session.deployment``) as a robot network; ``ValueError``
    naming the mismatch when it was not trained to drive the robot."""
    coding = coding or RobotCoding()
    check_robot_network(deployment.mapped, coding)
    return RobotNetwork(deployment, coding, label, list(deployment.notes))


__all__ = ["BUILTIN_STEERING", "DEPLOYED_NETWORK", "WIRED_NETWORK", "NetworkController", "builtin_steering_checkpoint", "RobotNetwork", "check_robot_network", "deploy_robot_network", "network_of_deployment"]
