"""Per-core bias tuning: find coarse/fine values that bring a core's population response to a target.

The search runs over the driver's *bias ladder* (:data:`drivers.dynapse1.bias_table.LADDER`, the
same axis as the bias panel's sliders: settings ordered by nominal current, each current spelled
on the smallest full scale that reaches it).  Each tuned quantity ``y`` is modelled locally
as a power law of its bias current, ``y ∝ I^p``: from the current setting a secant step in
log-log space proposes a new current, which is snapped to the ladder.  ``p`` starts at the
knob's ``exponent`` (1 for weights, refractory rate and leak: the DPI circuits are linear in
their bias currents) and is re-estimated from the last two measurements (clamped, so noise
cannot send it wild).  Because settings are discrete the search stops when the proposed setting
repeats, when every quantity is within ``tolerance``, or after ``max_rounds``; the best setting
measured (least summed squared log error) is the one kept.  All cores of a call are measured
together in every round (one measurement serves them all), each with its own secant.

The same loop serves the DC-curve targets of :func:`dc_targets_measure` (saturation rate via
``IF_RFR_N``, rheobase via ``IF_TAU1_N``, f-I gain via ``IF_THR_N``), the synaptic time constants
of :func:`synaptic_tau_measure` (``NPDPIE_TAU_F_P``, ``NPDPII_TAU_S_P``: ``tau = C U_T / (kappa I)``,
so their knobs start with exponent -1) and the synaptic gain targets of the network calibration
(weight biases ``PS_WEIGHT_*``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.bias_table import LADDER, BiasValue, nominal_current
from drivers.dynapse1.board_api import Board
from drivers.dynapse1.netlist import NeuronAddress
from drivers.dynapse1.topology import SynapseType

CoreKey = tuple[int, int]  # (chip, core)
#: A measurement of every tuned quantity on every core: ``{(chip, core): {bias name: value}}``.
Measurement = dict[CoreKey, dict[str, float]]


def snap_to_ladder(current_a: float) -> tuple[int, int]:
    """The ladder setting nearest to ``current_a`` in log current (never silent: the search needs a
    current to take the logarithm of)."""
    return LADDER.setting(max(1, LADDER.index_of_current(current_a)))


def ladder_neighbour(setting: tuple[int, int], steps: int) -> tuple[int, int]:
    """The setting ``steps`` rungs above (positive) or below ``setting`` on the ladder (not below rung 1)."""
    index = max(1, LADDER.index_of(*setting))
    return LADDER.setting(min(max(1, index + steps), len(LADDER) - 1))


@dataclass
class TuningKnob:
    """One bias tuned towards one measured quantity.

    ``exponent`` is the initial guess of ``d log(quantity) / d log(bias current)``; its sign says
    in which direction the bias moves the quantity.
    """

    bias: str
    target: float
    exponent: float = 1.0
    tolerance: float = 0.02  # relative

    def __post_init__(self) -> None:
        if not (math.isfinite(self.target) and self.target > 0):  # log(target) must exist
            raise ValueError(f"target for {self.bias} must be a finite number > 0, got {self.target}")
        if self.exponent == 0:
            raise ValueError(f"exponent for {self.bias} must not be 0")


@dataclass
class TuningResult:
    """Outcome per core: the kept settings, the measured quantities there and the history."""

    settings: dict[CoreKey, dict[str, tuple[int, int]]]
    measured: dict[CoreKey, dict[str, float]]
    history: list[Measurement] = field(default_factory=list)
    converged: bool = False
    rounds: int = 0
    #: per core, the round (1-based, an index into ``history`` plus one) whose setting was kept
    best_round: dict[CoreKey, int] = field(default_factory=dict)

    def relative_errors(self, knobs: list[TuningKnob]) -> dict[CoreKey, dict[str, float]]:
        return {core: {k.bias: self.measured[core][k.bias] / k.target - 1.0 for k in knobs} for core in self.measured}


def _log_error(values: dict[str, float], knobs: list[TuningKnob]) -> float:
    total = 0.0
    for k in knobs:
        v = values.get(k.bias, float("nan"))
        total += math.log(v / k.target) ** 2 if v > 0 and math.isfinite(v) else 25.0
    return total


def tune_core_biases(
    board: Board,
    cores: list[CoreKey],
    knobs: list[TuningKnob],
    measure: Callable[[], Measurement],
    max_rounds: int = 8,
    exponent_range: tuple[float, float] = (0.2, 5.0),
    on_round: Callable[[int, Measurement], None] | None = None,
) -> TuningResult:
    """Tune ``knobs`` on every core of ``cores`` from the board's current biases (see module docstring).

    ``measure()`` must return every knob's quantity for every core under the biases now on the
    board.  The best settings found are written back before returning.
    """
    if not knobs:
        raise ValueError("nothing to tune: no knobs")
    names = [k.bias for k in knobs]
    if len(set(names)) != len(names):
        raise ValueError(f"each bias may be tuned towards one quantity only, got {names}")
    start = {core: {k.bias: board.get_bias(*core, k.bias) for k in knobs} for core in cores}  # flags are kept
    current = {core: {bias: (v.coarse, v.fine) for bias, v in start[core].items()} for core in cores}
    exponent = {core: {k.bias: k.exponent for k in knobs} for core in cores}
    last: dict[CoreKey, dict[str, tuple[float, float]]] = {core: {} for core in cores}  # bias -> (log I, log y)
    best: dict[CoreKey, tuple[float, dict[str, tuple[int, int]], dict[str, float], int]] = {}
    visited = {core: {k.bias: {current[core][k.bias]} for k in knobs} for core in cores}
    history: list[Measurement] = []
    converged = False
    rounds = 0
    for rounds in range(1, max_rounds + 1):
        values = measure()
        history.append(values)
        if on_round is not None:
            on_round(rounds, values)
        moved = False
        all_ok = True
        for core in cores:
            v = values[core]
            err = _log_error(v, knobs)
            if core not in best or err < best[core][0]:
                best[core] = (err, dict(current[core]), dict(v), rounds)
            for k in knobs:
                y = v.get(k.bias, float("nan"))
                setting = current[core][k.bias]
                log_i = math.log(max(nominal_current(*setting), 1e-15))
                if not (y > 0 and math.isfinite(y)):
                    # nothing measurable: move one decade towards "more response"
                    new = snap_to_ladder(math.exp(log_i + math.copysign(math.log(3.0), k.exponent)))
                    all_ok = False
                else:
                    if abs(y / k.target - 1.0) > k.tolerance:
                        all_ok = False
                    prev = last[core].get(k.bias)
                    if prev is not None and abs(log_i - prev[0]) > 1e-6 and abs(math.log(y) - prev[1]) > 1e-6:
                        p = (math.log(y) - prev[1]) / (log_i - prev[0])
                        if math.copysign(1, p) == math.copysign(1, k.exponent):
                            exponent[core][k.bias] = math.copysign(np.clip(abs(p), *exponent_range), k.exponent)
                    last[core][k.bias] = (log_i, math.log(y))
                    if abs(y / k.target - 1.0) <= k.tolerance:
                        continue
                    new = snap_to_ladder(math.exp(log_i + math.log(k.target / y) / exponent[core][k.bias]))
                    if new == setting:  # the step is below one rung: try the neighbour in that direction
                        direction = 1 if (k.target > y) == (k.exponent > 0) else -1
                        new = ladder_neighbour(setting, direction)
                    if new in visited[core][k.bias]:
                        continue  # measured there already: the discrete optimum is bracketed
                    visited[core][k.bias].add(new)
                if new != setting:
                    current[core][k.bias] = new
                    board.set_bias(*core, k.bias, start[core][k.bias].with_setting(*new))
                    moved = True
        if all_ok:
            converged = True
            break
        if not moved:
            break
    for core in cores:  # keep the best measured settings
        for bias, (coarse, fine) in best[core][1].items():
            board.set_bias(*core, bias, start[core][bias].with_setting(coarse, fine))
    return TuningResult({c: best[c][1] for c in cores}, {c: best[c][2] for c in cores}, history, converged, rounds,
                        {c: best[c][3] for c in cores})


def dc_targets_measure(board: Board, cores: list[CoreKey], dc_settings: list[tuple[int, int]],
                       level_s: float = 0.3, settle_s: float = 0.05, neurons_per_core: int = 256) -> Callable[[], Measurement]:
    """A ``measure()`` for DC-curve targets, the core population's median of each quantity.

    Quantities: ``IF_RFR_N`` → saturation rate 1/t_ref [Hz]; ``IF_TAU1_N`` → rheobase [A, nominal
    DC current]; ``IF_THR_N`` → f-I gain above rheobase [Hz/A].  The sweep measures every core
    at once.
    """
    from ..fitting.fi import fit_saturation
    from .curves import NeuronAddress, measure_dc_curves

    addresses = [NeuronAddress(c, k, n) for c, k in cores for n in range(3 if k == 0 else 0, neurons_per_core)]

    def measure() -> Measurement:
        curves = measure_dc_curves(board, addresses, dc_settings, level_s, settle_s)
        sat = fit_saturation(curves)
        out: Measurement = {}
        for core in cores:
            rows = [i for i, a in enumerate(addresses) if (a.chip, a.core) == core]
            out[core] = {
                "IF_RFR_N": float(np.nanmedian(sat.saturation_hz[rows])) if np.isfinite(sat.saturation_hz[rows]).any() else float("nan"),
                "IF_TAU1_N": float(np.nanmedian(sat.rheobase_a[rows])) if np.isfinite(sat.rheobase_a[rows]).any() else float("nan"),
                "IF_THR_N": float(np.nanmedian(sat.gain_hz_per_a[rows])) if np.isfinite(sat.gain_hz_per_a[rows]).any() else float("nan"),
            }
        measure.last_curves = curves  # type: ignore[attr-defined]
        return out

    return measure


def bias_values(board: Board, cores: list[CoreKey], names: list[str]) -> dict[tuple[int, int, str], BiasValue]:
    """Snapshot of ``names`` on ``cores`` as the board last wrote them."""
    return {(c, k, n): board.get_bias(c, k, n) for c, k in cores for n in names}


@dataclass
class TauProbeConfig:
    """How :func:`synaptic_tau_measure` probes the synaptic time constants.

    Every probe neuron is driven and stepped between ``low_hz`` and ``high_hz`` (rates with the
    refractory compression undone): an excitatory probe is driven at ``low_hz`` and its step
    raises it to ``high_hz``, an inhibitory probe is driven at ``high_hz`` and its step lowers it
    to ``low_hz``.  The input rates follow the measured rates from round to round (the synaptic
    gain scales with tau, so it changes while tau is tuned).  Chip time per round:
    ``off_s + repeats * (on_s + off_s)`` (0.75 s by default).
    """

    low_hz: float = 150.0
    high_hz: float = 300.0
    multiplicity: int = 4
    on_s: float = 0.15
    off_s: float = 0.15
    repeats: int = 2
    max_source_rate_hz: float = 4000.0  # per source; also kept inside the generator's 32k events per run
    retries: int = 2  # extra runs of a round whose rates were far off (silent neurons cannot be fitted)

    def __post_init__(self) -> None:
        if not 0 < self.low_hz < self.high_hz:
            raise ValueError(f"tau probe needs 0 < low_hz < high_hz, got {self.low_hz}, {self.high_hz}")

    def drive_hz(self, synapse: SynapseType) -> float:
        """The rate an unstepped probe neuron of ``synapse`` is driven at."""
        return self.low_hz if SynapseType(synapse).is_excitatory else self.high_hz


@dataclass
class TauStatistics:
    """One core's population time constant through one synapse type: median and its standard error."""

    median_s: float
    err_s: float
    n_fitted: int

    def to_ms(self) -> list[float]:
        return [round(self.median_s * 1e3, 4), round(self.err_s * 1e3, 4)]


@dataclass
class TauTuningResult:
    """Outcome of :func:`tune_synaptic_taus`: the tuning and the population taus before and after.

    ``before`` is the first round (the biases the tuning started from), ``after`` the round in
    which each core's kept setting was measured (no extra chip time); both per core and synapse
    type name.
    """

    target_s: float
    tuning: TuningResult
    before: dict[CoreKey, dict[str, TauStatistics]]
    after: dict[CoreKey, dict[str, TauStatistics]]

    def worst_error(self, which: str = "after") -> float:
        """Largest ``|median / target - 1|`` over cores and types; ``which`` is "before" or "after"."""
        if which not in ("before", "after"):
            raise ValueError(f"which must be 'before' or 'after', got {which!r}")
        table = self.before if which == "before" else self.after
        errors = [abs(s.median_s / self.target_s - 1.0) for per in table.values() for s in per.values()]
        return max(errors) if errors and all(math.isfinite(e) for e in errors) else float("nan")  # nan: a core had no fit

    def summary(self) -> dict:
        def ms(table: dict[CoreKey, dict[str, TauStatistics]]) -> dict:
            return {f"{c}/{k}": {syn: s.to_ms() for syn, s in per.items()} for (c, k), per in table.items()}

        return {
            "tau_target_ms": self.target_s * 1e3,
            "tau_ms_before": ms(self.before),  # per "chip/core" and synapse type: [median, standard error]
            "tau_ms_after": ms(self.after),
            "tau_rel_error_before": self.worst_error("before"),
            "tau_rel_error_after": self.worst_error("after"),
            "tau_biases": {f"{c}/{k}/{b}": list(v) for (c, k), s in self.tuning.settings.items() for b, v in s.items()},
            "tau_rounds": self.tuning.rounds,
        }


def synaptic_tau_measure(
    board: Board,
    cores: list[CoreKey],
    addresses: list[NeuronAddress],
    tau_biases: dict[SynapseType, str],
    initial_step_hz: dict[SynapseType, float],
    initial_drive_hz: dict[SynapseType, float],
    dead_time_s: float | dict[NeuronAddress, float] = 0.0,
    config: TauProbeConfig | None = None,
) -> Callable[[], Measurement]:
    """A ``measure()`` for synaptic time-constant targets: each core's population median tau.

    ``tau_biases`` maps each probed synapse type to the bias that sets its time constant
    (``{AMPA: "NPDPIE_TAU_F_P", GABA_B: "NPDPII_TAU_S_P"}``); the ``addresses`` are dealt to the
    types in turn, so every core has neurons of each type and one run of
    :func:`~.taus.measure_synaptic_taus` serves every core and type.  ``initial_step_hz`` and
    ``initial_drive_hz`` (per source, per type) start the probe; afterwards each round's input
    rates are scaled towards the rates of :class:`TauProbeConfig`, and a round whose rates were
    far off (e.g. silent neurons) is run again, up to ``retries`` times, rather than handed to
    the tuner as unmeasurable.  The returned function keeps, per round,
    ``stats[round][core][type] = TauStatistics`` and ``last`` (the raw measurements).
    """
    from .program import GENERATOR_CAPACITY
    from .taus import measure_synaptic_taus

    cfg = config or TauProbeConfig()
    types = list(tau_biases)
    groups = {syn: [a for i, a in enumerate(addresses) if i % len(types) == k] for k, syn in enumerate(types)}
    # the whole run (every type's step and drive sources) must fit in one generator program
    run_s = cfg.off_s + cfg.repeats * (cfg.on_s + cfg.off_s)
    max_rate = min(cfg.max_source_rate_hz, 0.8 * GENERATOR_CAPACITY / (cfg.multiplicity * run_s * 2 * len(types)))
    dead_values = np.array(list(dead_time_s.values()) if isinstance(dead_time_s, dict) else [dead_time_s], float)
    dead = float(np.nanmedian(dead_values)) if np.isfinite(dead_values).any() else 0.0

    def clamp(rate: float) -> float:
        return float(np.clip(rate, 1.0, max_rate))

    step = {syn: clamp(initial_step_hz[syn]) for syn in types}
    runs = 0  # probe runs so far: the first one writes the probe's connections, later ones reuse them
    drive = {syn: clamp(initial_drive_hz[syn]) for syn in types}

    def undo_refractory(rate_hz: np.ndarray) -> float:
        """Median rate before the refractory compression (the integrator's input rate)."""
        return float(np.median(rate_hz / np.clip(1.0 - rate_hz * dead, 0.1, None)))

    def adapt(result: dict) -> bool:
        """Scale the input rates towards the aimed-at rates; True if they were far off and could move."""
        far, moved = False, False

        def scaled(rate: float, factor: float) -> float:
            nonlocal far, moved
            new = clamp(rate * float(np.clip(factor, 1 / 3, 3.0)))
            far |= not 0.5 < factor < 2.0
            moved |= abs(new / rate - 1.0) > 0.01
            return new

        for syn, m in result.items():
            driven, stepped = undo_refractory(m.rate_off_hz), undo_refractory(m.rate_on_hz)
            change = stepped - driven if syn.is_excitatory else driven - stepped
            drive[syn] = scaled(drive[syn], cfg.drive_hz(syn) / driven if driven > 1.0 else 3.0)
            step[syn] = scaled(step[syn], (cfg.high_hz - cfg.low_hz) / change if change > 1.0 else 3.0)
            far |= np.isfinite(m.tau_s).mean() < 0.5
        return far and moved

    def measure() -> Measurement:
        nonlocal runs
        for _ in range(cfg.retries + 1):
            # between rounds the tuner changes biases only, so the connections are still there
            result = measure_synaptic_taus(board, groups, step, drive, cfg.multiplicity, cfg.on_s, cfg.off_s, cfg.repeats, dead_time_s,
                                           connect=runs == 0)
            runs += 1
            if not adapt(result):
                break
        stats: dict[CoreKey, dict[SynapseType, TauStatistics]] = {}
        out: Measurement = {}
        for core in cores:
            stats[core], out[core] = {}, {}
            for syn, m in result.items():
                members = [a for a in m.addresses if (a.chip, a.core) == core]
                median, err = m.population(members)
                stats[core][syn] = TauStatistics(median, err, int(np.isfinite(m.taus_of(members)).sum()))
                out[core][tau_biases[syn]] = median
        measure.stats.append(stats)  # type: ignore[attr-defined]
        measure.last = result  # type: ignore[attr-defined]
        return out

    measure.stats = []  # type: ignore[attr-defined]
    measure.last = None  # type: ignore[attr-defined]
    return measure


def tune_synaptic_taus(
    board: Board,
    cores: list[CoreKey],
    addresses: list[NeuronAddress],
    target_s: float,
    tau_biases: dict[SynapseType, str],
    initial_step_hz: dict[SynapseType, float],
    initial_drive_hz: dict[SynapseType, float],
    dead_time_s: float | dict[NeuronAddress, float] = 0.0,
    probe: TauProbeConfig | None = None,
    tolerance: float = 0.02,
    max_rounds: int = 5,
    on_round: Callable[[int, Measurement], None] | None = None,
) -> TauTuningResult:
    """Tune every core's synaptic time-constant biases so the population median tau is ``target_s``.

    :func:`tune_core_biases` with one knob per synapse type (exponent -1: ``tau ∝ 1 / I``) and
    :func:`synaptic_tau_measure` as the measurement; arguments as there.  The kept settings are on
    the board when it returns.
    """
    measure = synaptic_tau_measure(board, cores, addresses, tau_biases, initial_step_hz, initial_drive_hz, dead_time_s, probe)
    knobs = [TuningKnob(name, target_s, -1.0, tolerance) for name in tau_biases.values()]
    tuning = tune_core_biases(board, cores, knobs, measure, max_rounds, on_round=on_round)
    named = [{core: {syn.name: s for syn, s in per.items()} for core, per in round_stats.items()}
             for round_stats in measure.stats]  # type: ignore[attr-defined]
    after = {core: named[tuning.best_round[core] - 1][core] for core in cores}
    return TauTuningResult(target_s, tuning, named[0], after)
