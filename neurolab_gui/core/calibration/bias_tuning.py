"""Per-core bias tuning: find coarse/fine values that bring a core's population response to a target.

The search runs over the *bias ladder*: every distinct (coarse, fine) pair ordered by nominal
current (libcaer numbering; ranges overlap, so many currents have several spellings and the
ladder keeps the one with the finest resolution).  Each tuned quantity ``y`` is modelled locally
as a power law of its bias current, ``y ∝ I^p``: from the current setting a secant step in
log-log space proposes a new current, which is snapped to the ladder.  ``p`` starts at the
knob's ``exponent`` (1 for weights, refractory rate and leak: the DPI circuits are linear in
their bias currents) and is re-estimated from the last two measurements (clamped, so noise
cannot send it wild).  Because settings are discrete the search stops when the proposed setting
repeats, when every quantity is within ``tolerance``, or after ``max_rounds``; the best setting
measured (least summed squared log error) is the one kept.  All cores of a call are measured
together in every round (one measurement serves them all), each with its own secant.

The same loop serves the DC-curve targets of :func:`dc_targets_measure` (saturation rate via
``IF_RFR_N``, rheobase via ``IF_TAU1_N``, f-I gain via ``IF_THR_N``) and the synaptic gain targets
of the network calibration (weight biases ``PS_WEIGHT_*``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.bias_table import COARSE_MAX_CURRENT_A, N_COARSE, N_FINE, nominal_current
from drivers.dynapse1.board_api import BiasValue, Board

CoreKey = tuple[int, int]  # (chip, core)
#: A measurement of every tuned quantity on every core: ``{(chip, core): {bias name: value}}``.
Measurement = dict[CoreKey, dict[str, float]]


def bias_ladder() -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Nominal currents (ascending) and their (coarse, fine) settings; one setting per current.

    Among settings with (almost) the same current the one on the smallest full scale wins (finest
    resolution around it).
    """
    pairs = []
    for coarse in range(N_COARSE):
        for fine in range(1, N_FINE):
            pairs.append((nominal_current(coarse, fine), COARSE_MAX_CURRENT_A[coarse], coarse, fine))
    pairs.sort(key=lambda p: (p[0], p[1]))
    currents, settings = [], []
    for cur, _, coarse, fine in pairs:
        if currents and cur <= currents[-1] * (1 + 1e-9):
            continue
        currents.append(cur)
        settings.append((coarse, fine))
    return np.array(currents), settings


_LADDER = bias_ladder()


def snap_to_ladder(current_a: float) -> tuple[int, int]:
    """The ladder setting closest to ``current_a`` in log current."""
    currents, settings = _LADDER
    current_a = float(np.clip(current_a, currents[0], currents[-1]))
    i = int(np.searchsorted(currents, current_a))
    cand = [j for j in (i - 1, i) if 0 <= j < len(currents)]
    j = min(cand, key=lambda k: abs(math.log(currents[k] / current_a)))
    return settings[j]


def ladder_neighbour(setting: tuple[int, int], steps: int) -> tuple[int, int]:
    """The setting ``steps`` rungs above (positive) or below ``setting`` on the ladder."""
    currents, settings = _LADDER
    i = int(np.argmin(np.abs(np.log(currents / max(nominal_current(*setting), currents[0])))))
    return settings[int(np.clip(i + steps, 0, len(settings) - 1))]


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
        if not self.target > 0:
            raise ValueError(f"target for {self.bias} must be positive, got {self.target}")
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
    current = {core: {k.bias: (board.get_bias(*core, k.bias).coarse, board.get_bias(*core, k.bias).fine) for k in knobs} for core in cores}
    high = {core: {k.bias: board.get_bias(*core, k.bias).high for k in knobs} for core in cores}
    exponent = {core: {k.bias: k.exponent for k in knobs} for core in cores}
    last: dict[CoreKey, dict[str, tuple[float, float]]] = {core: {} for core in cores}  # bias -> (log I, log y)
    best: dict[CoreKey, tuple[float, dict[str, tuple[int, int]], dict[str, float]]] = {}
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
                best[core] = (err, dict(current[core]), dict(v))
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
                    board.set_bias(*core, k.bias, new[0], new[1], high[core][k.bias])
                    moved = True
        if all_ok:
            converged = True
            break
        if not moved:
            break
    for core in cores:  # keep the best measured settings
        for bias, (coarse, fine) in best[core][1].items():
            board.set_bias(*core, bias, coarse, fine, high[core][bias])
    return TuningResult({c: best[c][1] for c in cores}, {c: best[c][2] for c in cores}, history, converged, rounds)


def dc_targets_measure(board: Board, cores: list[CoreKey], dc_settings: list[tuple[int, int]],
                       level_s: float = 0.3, settle_s: float = 0.05, neurons_per_core: int = 256) -> Callable[[], Measurement]:
    """A ``measure()`` for DC-curve targets, the core population's median of each quantity.

    Quantities: ``IF_RFR_N`` → saturation rate 1/t_ref [Hz]; ``IF_TAU1_N`` → rheobase [A, nominal
    DC current]; ``IF_THR_N`` → f-I gain above rheobase [Hz/A].  The sweep measures every core
    at once.
    """
    from .measure import NeuronAddress, fit_saturation, measure_dc_curves

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
