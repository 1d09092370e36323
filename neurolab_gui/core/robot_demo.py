"""Closed-loop phototaxis: a PushBot turns toward a blinking LED through the DYNAP-SE1 board.

A Braitenberg vehicle ("turn toward the light") whose wiring runs on the board::

    eDVS events ──count per image half──▶ two input groups (board Poisson sources)
        left half ──excites──▶ RIGHT motor population ─┐
        right half ─excites──▶ LEFT motor population  ─┤ + a forward-bias group into both
                                                        ▼
    host reads both populations' rates from the event stream ──▶ !MVD0= (left) / !MVD1= (right)

An LED in the left half of the image speeds up the right wheel, so the robot turns left and
the LED moves toward the image centre (column ~64); straight ahead both halves are equal and
the forward bias drives the robot on.  Everything goes through public interfaces: the
:class:`~drivers.dynapse1.board_api.Board` protocol (``apply_bias_set``, ``write_netlist``,
``set_poisson_rates``, ``read_events``) and :class:`drivers.robot.PushBot`.  The same code
drives a real robot and a real board; :func:`run_simulated_phototaxis` wires it to the
simulated PushBot (``robot_sim``) and the emulated board.

Timing: the loop runs every ``control_period_s`` (25 ms = 40 Hz by default) of wall clock,
because the robot lives in real time.  Each step reads exactly one period of board time
(``read_events``), so on silicon the step takes one period; an emulator slower than real
time lowers the achieved rate, which the report states.

The biases were tuned on the emulator (``samna_recommended`` plus a synapse gain and
weight, see :data:`PHOTOTAXIS_BIAS_OVERRIDES`); on silicon they are a starting point that
the mismatch of a given chip may require adjusting (the overrides are a parameter).

The loop (:class:`PhototaxisSession`) and the network are separate: the wiring above is the
:class:`BraitenbergController`; any :class:`LoopController` can drive the wheels instead, e.g.
a converted RNN trained to steer (:class:`neurolab_gui.core.robot_network.NetworkController`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from drivers.dynapse1.board_api import BiasValue, Board
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.spikes import SpikeEvents
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS_PER_CORE, SynapseType
from drivers.robot import DvsEvents, PushBot, PushBotState
from drivers.robot.pushbot_protocol import DVS_WIDTH

log = logging.getLogger(__name__)

#: The first Poisson source id the demo uses (id 0 is the cleared CAM entries' tag).
FIRST_INPUT_SOURCE = 1

#: Excitatory fast synapse settings on top of ``samna_recommended`` (libcaer coarse, fine):
#: tuned on the emulator so that 8 bias sources at 20 Hz give ~40 Hz and 8 input sources at
#: 150 Hz ~270 Hz per motor neuron, well below the refractory ceiling (~475 Hz).
PHOTOTAXIS_BIAS_OVERRIDES: dict[str, tuple[int, int]] = {
    "NPDPIE_THR_F_P": (3, 80),
    "PS_WEIGHT_EXC_F_N": (2, 30),
}
IMAGE_CENTRE = (DVS_WIDTH - 1) / 2


@dataclass
class PhototaxisConfig:
    """Network, coding and loop parameters of the phototaxis demo."""

    duration_s: float = 10.0
    control_period_s: float = 0.025  # 40 Hz motor updates (the brief: 20..100 Hz)
    observe_s: float = 0.3  # motors at 0 first: measure where the LED starts
    chip: int = 0
    core: int = 0
    population_size: int = 16  # neurons per motor population
    input_sources_per_side: int = 8  # Poisson sources per image half
    bias_sources: int = 8  # Poisson sources of the forward bias
    bias_rate_hz: float = 20.0
    input_hz_per_event_hz: float = 0.03  # Poisson rate per DVS event rate of the half
    max_input_rate_hz: float = 400.0
    command_per_hz: float = 0.25  # motor command per population rate (Hz): 400 Hz → 100
    rate_smoothing_tau_s: float = 0.075  # low-pass of the population rates read back
    bias_set: str = "samna_recommended"
    bias_overrides: Mapping[str, tuple[int, int]] = field(default_factory=lambda: dict(PHOTOTAXIS_BIAS_OVERRIDES))
    led_column_window_s: float = 0.1  # events used to locate the LED in the image
    success_tolerance_px: float = 10.0
    final_window_s: float = 1.0  # the final LED column is the median over this tail

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first bad setting."""
        if not (math.isfinite(self.duration_s) and self.duration_s > 0):  # NaN would run forever
            raise ValueError(f"duration must be a finite number > 0 s, got {self.duration_s}")
        if not 0.01 <= self.control_period_s <= 0.05:
            raise ValueError(f"control period must be 10..50 ms (20..100 Hz), got {self.control_period_s * 1e3:.1f} ms")
        if not 1 <= 2 * self.population_size <= N_NEURONS_PER_CORE:
            raise ValueError(f"two populations of {self.population_size} neurons do not fit in one core")
        if FIRST_INPUT_SOURCE + 2 * self.input_sources_per_side + self.bias_sources > N_NEURONS_PER_CORE:
            raise ValueError("input and bias sources exceed the 255 usable source ids of virtual core 0 (id 0 is reserved)")
        fan_in = self.input_sources_per_side + self.bias_sources
        if fan_in > 64:
            raise ValueError(f"each motor neuron would need {fan_in} CAM entries (limit 64)")
        if not (0 <= self.chip < N_CHIPS and 0 <= self.core < N_CORES_PER_CHIP):
            raise ValueError(f"chip {self.chip} / core {self.core} out of range")


@dataclass(frozen=True)
class PhototaxisLayout:
    """Where the demo's groups live on the board."""

    left_motor: tuple[NeuronAddress, ...]
    right_motor: tuple[NeuronAddress, ...]
    left_input_sources: tuple[int, ...]  # Poisson source ids fed by the left image half
    right_input_sources: tuple[int, ...]
    bias_sources: tuple[int, ...]

    def population_ids(self, neurons: tuple[NeuronAddress, ...]) -> np.ndarray:
        return np.array([(n.chip * N_CORES_PER_CHIP + n.core) * N_NEURONS_PER_CORE + n.neuron for n in neurons])


def build_phototaxis_network(config: PhototaxisConfig) -> tuple[Netlist, PhototaxisLayout]:
    """The crossed Braitenberg wiring as a :class:`Netlist` (all AMPA, one CAM entry each)."""
    config.validate()
    chip, core, n = config.chip, config.core, config.population_size
    left_motor = tuple(NeuronAddress(chip, core, i) for i in range(n))
    right_motor = tuple(NeuronAddress(chip, core, n + i) for i in range(n))
    k = config.input_sources_per_side
    # Source ids start at 1: id 0 on virtual core 0 is the tag every cleared CAM entry listens
    # to, so spikes from a source 0 would reach all neurons of the core through their unused CAMs.
    first = FIRST_INPUT_SOURCE
    left_in = tuple(range(first, first + k))
    right_in = tuple(range(first + k, first + 2 * k))
    bias = tuple(range(first + 2 * k, first + 2 * k + config.bias_sources))
    net = Netlist()
    for source in left_in:  # left half of the image → right wheel
        for neuron in right_motor:
            net.add(InputAddress(chip, source), neuron, SynapseType.AMPA)
    for source in right_in:  # right half → left wheel
        for neuron in left_motor:
            net.add(InputAddress(chip, source), neuron, SynapseType.AMPA)
    for source in bias:  # forward drive into both
        for neuron in left_motor + right_motor:
            net.add(InputAddress(chip, source), neuron, SynapseType.AMPA)
    net.monitored.update(left_motor + right_motor)
    return net, PhototaxisLayout(left_motor, right_motor, left_in, right_in, bias)


def phototaxis_biases(config: PhototaxisConfig) -> dict[tuple[int, int, str], BiasValue]:
    """Every core of the board silent except the demo core, which gets the tuned set."""
    from drivers.dynapse1.bias_sets import bias_set

    silent = bias_set("silent")
    tuned = bias_set(config.bias_set, dict(config.bias_overrides))
    out: dict[tuple[int, int, str], BiasValue] = {}
    for chip in range(N_CHIPS):
        for core in range(N_CORES_PER_CHIP):
            chosen = tuned if (chip, core) == (config.chip, config.core) else silent
            for name, (coarse, fine, high) in chosen.items():
                out[(chip, core, name)] = BiasValue(coarse, fine, high)
    return out


class DvsHalfCounter:
    """Counts the robot's DVS events per image half and keeps a column histogram (thread safe).

    Fed from the robot's reader thread through :meth:`add`; the control loop takes a
    snapshot per step with :meth:`take`.
    """

    def __init__(self, split_column: int = DVS_WIDTH // 2) -> None:
        self.split_column = split_column
        self._lock = threading.Lock()
        self._left = 0
        self._right = 0
        self._histogram = np.zeros(DVS_WIDTH, np.int64)

    def add(self, events: DvsEvents) -> None:
        histogram = np.bincount(events.x, minlength=DVS_WIDTH)
        with self._lock:
            self._histogram += histogram
            self._left += int(histogram[: self.split_column].sum())
            self._right += int(histogram[self.split_column :].sum())

    def take(self) -> tuple[int, int, np.ndarray]:
        """(left count, right count, column histogram) since the previous call."""
        with self._lock:
            out = (self._left, self._right, self._histogram.copy())
            self._left = self._right = 0
            self._histogram[:] = 0
        return out


def locate_led(histogram: np.ndarray, significance: float = 6.0) -> float:
    """The LED's column from a column histogram of events, or NaN if no column stands out.

    The LED concentrates its events on ~3 columns; noise spreads evenly.  The peak of a 3-px
    box filter must exceed the median level by ``significance`` Poisson standard deviations;
    the column is then the centroid of ±2 px around the peak.
    """
    counts = histogram.astype(float)
    smoothed = np.convolve(counts, np.ones(3), mode="same")
    peak = int(np.argmax(smoothed))
    level = float(np.median(smoothed))
    if smoothed[peak] < level + significance * math.sqrt(level + 1.0) + 3.0:
        return math.nan
    lo, hi = max(0, peak - 2), min(DVS_WIDTH, peak + 3)
    weights = np.clip(counts[lo:hi] - level / 3.0, 0.0, None)
    if weights.sum() <= 0:
        return float(peak)
    return float(np.dot(np.arange(lo, hi), weights) / weights.sum())


@dataclass(frozen=True)
class ControlOutput:
    """What a controller did in one loop step."""

    spikes: SpikeEvents  # every event read from the board in this step
    command_left: int
    command_right: int
    input_left_hz: float  # mean rate of the board inputs fed by the left / right image half
    input_right_hz: float
    motor_left_hz: float  # (low-passed) rate of the neurons that drive each wheel
    motor_right_hz: float
    left_neuron_hz: np.ndarray  # this step's rate of every neuron driving each wheel
    right_neuron_hz: np.ndarray


class LoopController(Protocol):
    """The network between the robot's DVS and its wheels, one implementation per kind of network.

    :class:`PhototaxisSession` owns the loop (timing, DVS counting, motor safety, the report);
    a controller owns the board: it sets the board up, turns one period's DVS column histogram
    into the board's input, reads the board and returns wheel commands.
    """

    name: str
    period_s: float  # one loop step (its own time base: the network's sample length)

    def setup(self, board: Board, report: PhototaxisReport) -> None: ...

    def step(self, board: Board, histogram: np.ndarray, dt_s: float) -> ControlOutput: ...

    def stop(self, board: Board) -> None: ...


class BraitenbergController:
    """The hand-wired crossed network of the module docstring (Poisson inputs, two motor populations)."""

    name = "phototaxis"

    def __init__(self, config: PhototaxisConfig) -> None:
        config.validate()
        self.config = config
        self.period_s = config.control_period_s
        self.layout: PhototaxisLayout | None = None
        self._rates = [0.0, 0.0]
        self._ids: tuple[np.ndarray, np.ndarray] | None = None

    def setup(self, board: Board, report: PhototaxisReport) -> None:
        """Biases, netlist and the constant forward bias on the board."""
        cfg = self.config
        netlist, layout = build_phototaxis_network(cfg)
        board.apply_bias_set(phototaxis_biases(cfg))
        report.note(
            f"biases: {cfg.bias_set} + {dict(cfg.bias_overrides)} on chip {cfg.chip} core {cfg.core}, other cores silent"
        )
        # Only the demo's core: the other cores are silent, so their connections cannot act
        # (a quarter of the words of clearing the chip; docs/ARCHITECTURE.md, "Robot").
        board.clear_connections([cfg.chip], cores=[cfg.core])
        report.netlist_warnings = list(board.write_netlist(netlist))
        report.netlist_connections = len(netlist.connections)
        report.note(
            f"netlist: {len(netlist.connections)} connections, motor populations of {cfg.population_size} neurons, "
            f"crossed wiring, {cfg.bias_sources} forward-bias sources at {cfg.bias_rate_hz} Hz"
        )
        for warning in report.netlist_warnings:
            report.note(f"netlist warning: {warning}")
        board.set_poisson_rates(
            cfg.chip,
            {s: 0.0 for s in layout.left_input_sources + layout.right_input_sources}
            | {s: cfg.bias_rate_hz for s in layout.bias_sources},
        )
        self.layout = layout
        self._ids = (layout.population_ids(layout.left_motor), layout.population_ids(layout.right_motor))
        self._rates = [0.0, 0.0]

    def step(self, board: Board, histogram: np.ndarray, dt_s: float) -> ControlOutput:
        cfg, layout, ids = self.config, self.layout, self._ids
        assert layout is not None and ids is not None, "setup() first"
        split = DVS_WIDTH // 2
        dvs_left, dvs_right = histogram[:split].sum() / dt_s, histogram[split:].sum() / dt_s
        in_left = min(cfg.max_input_rate_hz, cfg.input_hz_per_event_hz * dvs_left)
        in_right = min(cfg.max_input_rate_hz, cfg.input_hz_per_event_hz * dvs_right)
        board.set_poisson_rates(
            cfg.chip, {s: in_left for s in layout.left_input_sources} | {s: in_right for s in layout.right_input_sources}
        )
        period = self.period_s
        spikes = board.read_events(period)
        counts = spikes.counts()
        smoothing = 1.0 - math.exp(-period / cfg.rate_smoothing_tau_s)
        for side in (0, 1):
            self._rates[side] += smoothing * (counts[ids[side]].mean() / period - self._rates[side])
        commands = [int(np.clip(round(cfg.command_per_hz * r), -100, 100)) for r in self._rates]
        return ControlOutput(spikes, commands[0], commands[1], in_left, in_right, self._rates[0], self._rates[1],
                             counts[ids[0]] / period, counts[ids[1]] / period)

    def stop(self, board: Board) -> None:
        layout = self.layout
        if layout is not None:
            sources = layout.left_input_sources + layout.right_input_sources + layout.bias_sources
            board.set_poisson_rates(self.config.chip, dict.fromkeys(sources, 0.0))


@dataclass(frozen=True)
class PhototaxisStep:
    """One step of the loop, as a live view shows it."""

    t_s: float
    led_column: float  # measured from the DVS (NaN: not seen)
    dvs_left_hz: float
    dvs_right_hz: float
    input_left_hz: float
    input_right_hz: float
    motor_left_hz: float  # low-passed population rates
    motor_right_hz: float
    command_left: int
    command_right: int
    left_neuron_hz: np.ndarray  # this step's rate of every neuron of each population
    right_neuron_hz: np.ndarray


MotorSink = Callable[[int, int], object]


@dataclass
class PhototaxisReport:
    """What a phototaxis session did, step by step, and whether it reached the LED."""

    status: str = "not started"  # completed | cancelled | robot disconnected | error: ...
    network: str = ""
    setup_s: float = 0.0  # writing the network onto the board (biases, clearing, netlist)
    wall_time_s: float = 0.0
    board_time_s: float = 0.0
    steps: int = 0
    achieved_rate_hz: float = 0.0
    initial_led_column: float = math.nan
    final_led_column: float = math.nan
    converged: bool = False
    netlist_connections: int = 0
    netlist_warnings: list[str] = field(default_factory=list)
    t_s: list[float] = field(default_factory=list)
    led_column: list[float] = field(default_factory=list)  # measured from the DVS (NaN: not seen)
    true_led_column: list[float] = field(default_factory=list)  # simulator ground truth, if known
    dvs_left_hz: list[float] = field(default_factory=list)
    dvs_right_hz: list[float] = field(default_factory=list)
    input_left_hz: list[float] = field(default_factory=list)
    input_right_hz: list[float] = field(default_factory=list)
    motor_left_hz: list[float] = field(default_factory=list)
    motor_right_hz: list[float] = field(default_factory=list)
    command_left: list[int] = field(default_factory=list)
    command_right: list[int] = field(default_factory=list)
    pose: list[tuple[float, float, float]] = field(default_factory=list)  # simulator (x, y, heading)
    log: list[str] = field(default_factory=list)

    def note(self, message: str) -> None:
        log.info(message)
        self.log.append(message)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        for key, value in data.items():  # JSON has no NaN: write null
            if isinstance(value, float) and math.isnan(value):
                data[key] = None
            elif isinstance(value, list):
                data[key] = [None if isinstance(v, float) and math.isnan(v) else v for v in value]
        return data

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=1))

    def summary(self) -> str:
        return (
            f"{self.status}: {self.steps} steps in {self.wall_time_s:.1f} s ({self.achieved_rate_hz:.0f} Hz), "
            f"LED column {self.initial_led_column:.1f} → {self.final_led_column:.1f} "
            f"(centre {IMAGE_CENTRE:.1f}; {'converged' if self.converged else 'not converged'})"
        )


class PhototaxisSession:
    """Runs the closed loop between one robot and one board.

    Parameters
    ----------
    board : an open board (real or emulated); the controller takes over its biases and connections
    robot : an open PushBot
    config : loop parameters (duration, observation, LED location) and the Braitenberg network's
    ground_truth : optional ``() -> (led column or None, (x, y, heading))`` from a simulator,
        recorded beside the measurements (never used for control)
    controller : the network that drives the motors (default: :class:`BraitenbergController`
        of ``config``; :class:`neurolab_gui.core.robot_network.NetworkController` for a
        converted network deployed on the board)
    motor_sink : ``sink(left, right)`` sends each step's motor command; default
        ``robot.set_motors`` (the desktop app passes its stall guard's ``drive``)
    on_spikes : ``on_spikes(SpikeEvents)`` with every batch the loop read from the board
        (the app forwards them to its raster and recorder)
    on_step : ``on_step(PhototaxisStep)`` after every step
    """

    def __init__(
        self,
        board: Board,
        robot: PushBot,
        config: PhototaxisConfig | None = None,
        ground_truth: Callable[[], tuple[float | None, tuple[float, float, float]]] | None = None,
        *,
        controller: LoopController | None = None,
        motor_sink: MotorSink | None = None,
        on_spikes: Callable[[SpikeEvents], object] | None = None,
        on_step: Callable[[PhototaxisStep], object] | None = None,
    ) -> None:
        self.board = board
        self.robot = robot
        self.config = config or PhototaxisConfig()
        self.config.validate()
        self.controller: LoopController = controller or BraitenbergController(self.config)
        self.ground_truth = ground_truth
        self._motor_sink = motor_sink or robot.set_motors
        self._on_spikes = on_spikes
        self._on_step = on_step
        self.report = PhototaxisReport()
        self._cancel = threading.Event()
        self._counter = DvsHalfCounter()

    def cancel(self) -> None:
        """Ask the loop to stop after the current step (thread safe); the robot is then stopped."""
        self._cancel.set()

    @property
    def cancel_event(self) -> threading.Event:
        """Set by :meth:`cancel` (work before the loop, e.g. deploying its network, checks it too)."""
        return self._cancel

    def setup(self) -> None:
        """The controller's network on the board, then one period read to warm the board up."""
        started = time.monotonic()
        self.report.note(f"network: {self.controller.name}")
        self.controller.setup(self.board, self.report)
        # One period before the loop: compiles/warms the emulator so the first step is on time.
        self.board.read_events(self.controller.period_s)
        self.report.setup_s = time.monotonic() - started
        self.report.note(f"set up in {self.report.setup_s:.2f} s")

    def run(self, progress: Callable[[PhototaxisReport], None] | None = None) -> PhototaxisReport:
        """Set up the board, drive the loop for ``duration_s`` (or until cancelled), stop the robot.

        ``progress(report)`` is called after every step (from this thread).
        """
        cfg, report, controller = self.config, self.report, self.controller
        report.status = "running"
        report.network = controller.name
        started = time.monotonic()
        try:
            self.setup()
        except Exception as exc:
            report.status = f"error: {exc}"
            report.note(f"set-up failed: {type(exc).__name__}: {exc}")
            self._stop()
            raise
        self.robot.add_event_callback(self._counter.add)
        period = controller.period_s
        window_steps = max(1, round(cfg.led_column_window_s / period))
        recent_histograms: deque[np.ndarray] = deque(maxlen=window_steps)
        self._counter.take()  # discard events from before the loop
        started = last = time.monotonic()
        next_tick = started + period
        report.note(f"loop: {1 / period:.0f} Hz for {cfg.duration_s} s (first {cfg.observe_s} s with motors at 0)")
        try:
            while not self._cancel.is_set():
                now = time.monotonic()
                elapsed = now - started
                if elapsed >= cfg.duration_s:
                    break
                if self.robot.state is not PushBotState.CONNECTED:
                    report.status = "robot disconnected"
                    report.note(f"robot disconnected: {self.robot.disconnect_reason}")
                    break
                # 1. DVS: events per column since the previous step.
                n_left, n_right, histogram = self._counter.take()
                dt = max(now - last, 1e-3)
                last = now
                # 2. Board: the controller feeds it, reads one period of spikes, picks commands.
                out = controller.step(self.board, histogram, dt)
                if self._on_spikes is not None and len(out.spikes):
                    self._on_spikes(out.spikes)
                # 3. Motors (none while observing the start).
                observing = elapsed < cfg.observe_s
                cmd_left = 0 if observing else out.command_left
                cmd_right = 0 if observing else out.command_right
                if not self._cancel.is_set():  # a stop (e-stop, user) may have zeroed the motors meanwhile
                    self._motor_sink(cmd_left, cmd_right)
                # 4. Record.
                recent_histograms.append(histogram)
                column = locate_led(np.sum(recent_histograms, axis=0))
                step = PhototaxisStep(
                    elapsed, column, n_left / dt, n_right / dt, out.input_left_hz, out.input_right_hz,
                    out.motor_left_hz, out.motor_right_hz, cmd_left, cmd_right, out.left_neuron_hz, out.right_neuron_hz,
                )  # fmt: skip
                self._record(step)
                if self._on_step is not None:
                    self._on_step(step)
                if progress is not None:
                    progress(report)
                # 5. Pace to the wall clock (no catch-up burst after a slow step).
                next_tick += period
                delay = next_tick - time.monotonic()
                if delay > 0:
                    self._cancel.wait(delay)
                elif delay < -period:
                    next_tick = time.monotonic()
            if report.status == "running" and self._cancel.is_set():
                report.status = "cancelled"
                report.note("cancelled by the user")
            elif report.status == "running":
                report.status = "completed"
        except Exception as exc:
            report.status = f"error: {exc}"
            report.note(f"stopped by an error: {type(exc).__name__}: {exc}")
            raise
        finally:
            self._stop()
            report.wall_time_s = time.monotonic() - started
            report.board_time_s = report.steps * period
            report.achieved_rate_hz = report.steps / report.wall_time_s if report.wall_time_s > 0 else 0.0
            self._conclude()
        return report

    def _record(self, step: PhototaxisStep) -> None:
        r = self.report
        r.steps += 1
        r.t_s.append(round(step.t_s, 4))
        r.led_column.append(step.led_column)
        r.dvs_left_hz.append(step.dvs_left_hz)
        r.dvs_right_hz.append(step.dvs_right_hz)
        r.input_left_hz.append(step.input_left_hz)
        r.input_right_hz.append(step.input_right_hz)
        r.motor_left_hz.append(step.motor_left_hz)
        r.motor_right_hz.append(step.motor_right_hz)
        r.command_left.append(step.command_left)
        r.command_right.append(step.command_right)
        if self.ground_truth is not None:
            true_column, pose = self.ground_truth()
            r.true_led_column.append(math.nan if true_column is None else true_column)
            r.pose.append(pose)

    def _stop(self) -> None:
        """Robot to a standstill, the controller's inputs off; errors here are only logged."""
        try:
            self.robot.remove_event_callback(self._counter.add)
        except ValueError:
            pass
        if self.robot.connected:
            try:
                self.robot.stop_motors()
                self.report.note("robot stopped")
            except Exception as exc:
                self.report.note(f"could not stop the robot: {exc}")
        try:
            self.controller.stop(self.board)
        except Exception as exc:
            self.report.note(f"could not stop the board's inputs: {exc}")

    def _conclude(self) -> None:
        r, cfg = self.report, self.config
        t = np.asarray(r.t_s)
        columns = np.asarray(r.led_column, dtype=float)
        seen = ~np.isnan(columns)
        start = columns[(t < cfg.observe_s) & seen] if t.size else columns
        if start.size:
            r.initial_led_column = float(np.median(start))
        elif seen.any():
            r.initial_led_column = float(columns[seen][0])
            r.note(f"LED not located while observing; initial column taken at t = {t[seen][0]:.2f} s")
        tail = columns[(t >= t[-1] - cfg.final_window_s) & ~np.isnan(columns)] if t.size else columns
        if tail.size:
            r.final_led_column = float(np.median(tail))
        r.converged = bool(abs(r.final_led_column - IMAGE_CENTRE) <= cfg.success_tolerance_px)
        r.note(r.summary())


def run_simulated_phototaxis(
    config: PhototaxisConfig | None = None,
    sim_config: Any = None,
    *,
    robot_url: str | None = None,
    board: Board | None = None,
    emulator_dt_s: float = 5e-4,
    progress: Callable[[PhototaxisReport], None] | None = None,
    session_ready: Callable[[PhototaxisSession], None] | None = None,
    controller_for: Callable[[Board], LoopController] | None = None,
) -> PhototaxisReport:
    """Phototaxis with the simulated PushBot (unless ``robot_url`` names a real one) and the
    emulated board (unless ``board`` is given).

    ``controller_for(board)`` builds the network that drives the motors once the board is open
    and before the robot is (e.g. :func:`neurolab_gui.core.robot_network.network_controller`,
    which deploys a converted network); default: the Braitenberg wiring of ``config``.

    The simulated robot is served on a pty (POSIX) or TCP and reached through the serial
    driver like a real one.  The emulated board runs with ``emulator_dt_s`` time steps (0.5 ms,
    a choice: coarser than the emulator's 0.1 ms default so that a 2-core machine keeps up
    with the robot's real time; the motor neurons' 20 ms dynamics are still resolved).
    ``session_ready(session)`` receives the session before the loop starts (to cancel it).
    """
    from robot_sim.pushbot import PushBotSimConfig, SimulatedPushBot

    from .boards import open_emulator

    config = config or PhototaxisConfig()
    config.validate()
    sim = None
    own_board = board is None
    robot = None
    try:
        if robot_url is None:
            sim = SimulatedPushBot(sim_config or PushBotSimConfig(led_x_m=2.0, led_y_m=0.8))
            robot_url = sim.serve_pty() if os.name == "posix" else sim.serve_tcp()
        if board is None:
            board = open_emulator(mismatch=True, dt=emulator_dt_s)
        controller = controller_for(board) if controller_for is not None else None
        robot = PushBot(robot_url).open()

        def ground_truth() -> tuple[float | None, tuple[float, float, float]]:
            assert sim is not None
            pose = sim.pose
            return sim.led_column(), (pose.x_m, pose.y_m, pose.heading_rad)

        session = PhototaxisSession(board, robot, config, ground_truth if sim is not None else None, controller=controller)
        session.report.note(f"robot: {robot_url} ({'simulated' if sim else 'real'}); board: {board.serial}"
                            f" ({'emulated' if board.is_emulated else 'silicon'})")  # fmt: skip
        if session_ready is not None:
            session_ready(session)
        return session.run(progress)
    finally:
        if robot is not None:
            robot.close()
        if own_board and board is not None:
            board.close()
        if sim is not None:
            sim.close()
