"""Monte-Carlo robustness: one converted network on many emulated chips, before and after a per-chip calibration.

A converted network is designed on one chip, but deployed on chips that each have their own
device mismatch.  :func:`run_robustness` writes the network on ``N`` emulated chips at once
(:func:`neurolab_gui.core.boards.open_batched_emulator`: N serials, each its own mismatch, bit for
bit what one emulated board with that serial would do), streams the same test samples through
all of them and reports the accuracy distribution (:class:`AccuracyDistribution`: mean, std,
percentiles, worst) — first with the design's biases on every chip, then after the calibration
model below, computed and applied on each chip separately.

The calibration model (what "after calibration" means here)
-----------------------------------------------------------
A cheap, host-driven model of the closed-loop network calibration
(:mod:`neurolab_gui.core.calibration.engine`), of its steps 11 (network gain matching) and 10
(the units' transfer functions), measured on each chip's own responses to ``n_calibration``
*training* samples (never test samples):

1. **Network gain matching, one round.**  The chip's decoded features ``f`` on the calibration
   samples are regressed through the origin on the constrained RNN's features ``e`` (what the
   readout was trained on), per core group: ``s = <e, f> / <e, e>``.  That core's two weight
   biases (``PS_WEIGHT_EXC_F_N``, ``PS_WEIGHT_INH_S_N``) are divided by ``s`` (the DPI synapse is
   linear in its weight current), snapped to the bias ladder.  The engine tunes the same factor
   over several rounds on a ladder search; one round is the cheap model.
2. **Per-unit transfer fit.**  With the new biases the calibration samples run again; each
   unit's features are fitted as ``f_u = g_u e_u + o_u`` (least squares) and installed as that
   chip's unit calibration (:meth:`MappedNetwork.set_unit_calibration`), which the host decoder
   inverts.  The engine fits a measured transfer per unit too, but also selects the
   best-matched neurons, tunes synaptic time constants and refractory periods per core and
   fine-tunes the network in the loop; none of that is modelled here.

Every chip's result depends only on its serial, the network and the samples (boards never
interact), so a study split over machines (:func:`run_robustness` with ``ray_address``: shards of
serials as Ray tasks) gives exactly the single-machine result for the same serials.

Mismatch-aware training
-----------------------
:func:`measure_unit_gains` measures each unit's relative gain on each emulated chip (the slope
of step 1 per unit, before any calibration): one sampled mismatch instance per chip.
:class:`SampledMismatch` is a ``RateRNN.weight_transform`` that multiplies every unit's input
weights by the gains of a randomly drawn instance on each forward pass, so
:func:`train_mismatch_aware` trains through the chips' mismatch; :func:`accuracy_under_mismatch`
evaluates a model under given instances.  A unit's gain scales its whole pre-activation, which is
a row scale of ``w_in``, ``w_bias`` and ``w_rec``.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from drivers.dynapse1.bias_table import closest_setting, nominal_current

from .conversion.encoding import chunk_samples
from .conversion.mapping import EXCITATORY, INHIBITORY, WEIGHT_BIAS, MappedNetwork
from .conversion.models import RateRNN, WeightTransform
from .conversion.spiking_run import TAIL_S, configure_board, decode, encode_for, generator_program
from .conversion.tasks import Task
from .conversion.training import TrainConfig, TrainResult, evaluate, readout_features, train
from .jobs import Progress, ProgressSink, check_cancel
from .probing.program import GENERATOR_CAPACITY, run_program

#: Percentiles reported by :class:`AccuracyDistribution`.
PERCENTILES = (5, 25, 50, 75, 95)
#: Feature slopes outside this range are clipped before a weight bias is divided by them (a
#: silent or runaway core gets a bounded correction, not a division by ~0).
SLOPE_RANGE = (0.25, 4.0)
#: Per-unit transfer gains are clipped to this range (the decoder divides by them).
UNIT_GAIN_RANGE = (0.2, 5.0)


def chip_serials(n: int, prefix: str = "MC", first: int = 0) -> list[str]:
    """``n`` serials ``MC00000``, ``MC00001``, ...: the emulated chips of a study."""
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"the number of chips must be an integer >= 1, got {n!r}")
    if isinstance(first, bool) or int(first) != first or first < 0:
        raise ValueError(f"the first serial number must be an integer >= 0, got {first!r}")
    return [f"{prefix}{i:05d}" for i in range(int(first), int(first) + int(n))]


@dataclass(frozen=True)
class AccuracyDistribution:
    """Accuracy over chips: mean, std (population), percentiles, worst and best."""

    n_chips: int
    mean: float
    std: float
    percentiles: dict[int, float]
    worst: float
    best: float

    @classmethod
    def of(cls, accuracies: Sequence[float]) -> AccuracyDistribution:
        a = np.asarray(accuracies, float)
        if a.size == 0:
            raise ValueError("no accuracies to summarise")
        return cls(int(a.size), float(a.mean()), float(a.std()),
                   {p: float(np.percentile(a, p)) for p in PERCENTILES}, float(a.min()), float(a.max()))

    def to_dict(self) -> dict:
        return {"n_chips": self.n_chips, "mean": self.mean, "std": self.std,
                "percentiles": {str(p): v for p, v in self.percentiles.items()}, "worst": self.worst, "best": self.best}


@dataclass
class ChipResult:
    """What one emulated chip measured."""

    serial: str
    accuracy: float  # design biases, no calibration
    calibrated_accuracy: float | None = None
    #: feature slope per core group ("chip/core") before calibration (step 1 of the calibration model)
    core_slope: dict[str, float] = field(default_factory=dict)
    #: relative gain of every unit before calibration (a sampled mismatch instance), [H]
    unit_gain: np.ndarray | None = None

    def to_dict(self) -> dict:
        slopes = {k: (v if np.isfinite(v) else None) for k, v in self.core_slope.items()}  # JSON has no NaN
        return {"serial": self.serial, "accuracy": self.accuracy, "calibrated_accuracy": self.calibrated_accuracy,
                "core_slope": slopes}


@dataclass
class RobustnessInputs:
    """Everything a shard of chips needs (picklable: it travels to Ray workers as it is).

    ``design`` is the network as designed (written unchanged on every chip before calibration);
    ``expected_calibration`` the constrained RNN's features on the calibration samples.
    """

    design: MappedNetwork
    x_test: np.ndarray
    y_test: np.ndarray
    lengths_test: np.ndarray
    x_calibration: np.ndarray
    lengths_calibration: np.ndarray
    expected_calibration: np.ndarray
    seed: int = 0
    emulator_seed: int = 0
    calibrate: bool = True

    def __post_init__(self) -> None:
        n_test, n_cal = len(self.x_test), len(self.x_calibration)
        if n_test < 1:
            raise ValueError("robustness needs at least one test sample")
        if len(self.y_test) != n_test or len(self.lengths_test) != n_test:
            raise ValueError("x_test, y_test and lengths_test must have the same length")
        if self.calibrate and n_cal < 2:
            raise ValueError("the calibration model needs at least 2 calibration samples")
        if len(self.lengths_calibration) != n_cal or self.expected_calibration.shape != (n_cal, self.design.n_hidden):
            raise ValueError("calibration samples, lengths and expected features do not match")


def robustness_inputs(design: MappedNetwork, model: RateRNN, task: Task, n_test: int, n_calibration: int,
                      seed: int = 0, emulator_seed: int = 0, calibrate: bool = True) -> RobustnessInputs:
    """The inputs of a study: the first ``n_test`` test samples, the first ``n_calibration``
    training samples and ``model``'s (the constrained RNN's) features on them."""
    n_test = min(int(n_test), len(task.x_test))
    n_cal = min(int(n_calibration), len(task.x_train)) if calibrate else 0
    x_cal, l_cal = task.x_train[:n_cal], task.lengths_train[:n_cal]
    expected = readout_features(model, x_cal, l_cal) if n_cal else np.zeros((0, design.n_hidden))
    return RobustnessInputs(design, task.x_test[:n_test], task.y_test[:n_test], task.lengths_test[:n_test],
                            x_cal, l_cal, np.asarray(expected, float), seed, emulator_seed, calibrate)


@dataclass
class RobustnessReport:
    """Accuracy distribution across chips, before and after the calibration model."""

    task: str
    n_test: int
    n_calibration: int
    chips: list[ChipResult]
    reference: dict[str, float] = field(default_factory=dict)
    wall_s: float = 0.0
    distributed: str = "local"

    @property
    def before(self) -> AccuracyDistribution:
        return AccuracyDistribution.of([c.accuracy for c in self.chips])

    @property
    def after(self) -> AccuracyDistribution | None:
        values = [c.calibrated_accuracy for c in self.chips]
        return AccuracyDistribution.of(values) if values and all(v is not None for v in values) else None

    def to_dict(self) -> dict:
        after = self.after
        return {"task": self.task, "n_test": self.n_test, "n_calibration": self.n_calibration,
                "n_chips": len(self.chips), "before": self.before.to_dict(),
                "after": after.to_dict() if after else None, "reference": self.reference,
                "calibration_model": "per chip: one round of network gain matching per core (weight biases / feature "
                                     "slope) + per-unit affine transfer fit in the decoder, on training samples",
                "wall_s": self.wall_s, "distributed": self.distributed, "chips": [c.to_dict() for c in self.chips]}

    def table(self) -> str:
        """The distributions as a text table (one row per condition)."""
        rows = [("design biases", self.before)]
        if self.after is not None:
            rows.append(("calibrated", self.after))
        head = f"{'':16s} {'mean':>7s} {'std':>7s} " + " ".join(f"{'p' + str(p):>7s}" for p in PERCENTILES) \
            + f" {'worst':>7s} {'best':>7s}"
        lines = [head]
        for name, d in rows:
            lines.append(f"{name:16s} {d.mean:7.4f} {d.std:7.4f} "
                         + " ".join(f"{d.percentiles[p]:7.4f}" for p in PERCENTILES) + f" {d.worst:7.4f} {d.best:7.4f}")
        return "\n".join(lines)


# --- streaming on a batch ------------------------------------------------------------------------------
@dataclass
class BatchRun:
    """Decoded results of one set of samples on every chip of a batch."""

    features: np.ndarray  # [chips, N, H]
    predictions: np.ndarray  # [chips, N]

    def accuracy(self, labels: np.ndarray) -> np.ndarray:
        return (self.predictions == np.asarray(labels)[None, :]).mean(axis=1)


def stream_batch(board, networks: Sequence[MappedNetwork], x: np.ndarray, lengths: np.ndarray, seed: int,
                 cancel: threading.Event | None = None) -> BatchRun:
    """Play ``x`` through a batch board (``open_batched_emulator``) holding ``networks[0]``'s netlist.

    The same programs, seeds and decoding as :func:`.conversion.spiking_run.stream_samples`, so a
    chip's predictions are those of the single board with its serial; chip ``b`` is decoded with
    ``networks[b]`` (its own unit calibration).  Every network must share the design's netlist,
    inputs and time mapping (calibration changes biases and decoding only).
    """
    design = networks[0]
    x = np.asarray(x, np.float32)
    lengths = np.asarray(lengths, np.int64)
    n, h = len(x), design.n_hidden
    features = np.zeros((len(networks), n, h))
    predictions = np.zeros((len(networks), n), np.int64)
    plan = chunk_samples(encode_for(design, x, lengths, seed), GENERATOR_CAPACITY)
    for c, idx in enumerate(plan):
        check_cancel(cancel)
        stim = encode_for(design, x[idx], lengths[idx], seed + 7919 * (c + 1))
        per_chip = run_program(board, generator_program(design, stim), stim.duration_us / 1e6 + TAIL_S)
        for b, events in enumerate(per_chip):
            f, p, _ = decode(networks[b], events, stim)
            features[b, idx], predictions[b, idx] = f, p
    return BatchRun(features, predictions)


# --- the calibration model -----------------------------------------------------------------------------
def _unit_core_group(design: MappedNetwork) -> np.ndarray:
    index = {core: g for g, core in enumerate(design.group_cores)}
    return np.array([index[(a.chip, a.core)] for a in design.unit_addresses], np.int64)


def _slope(expected: np.ndarray, measured: np.ndarray) -> float:
    denominator = float(np.dot(expected, expected))
    return float(np.dot(expected, measured) / denominator) if denominator > 0 else float("nan")


def core_slopes(design: MappedNetwork, expected: np.ndarray, features: np.ndarray) -> dict[tuple[int, int], float]:
    """Per core group, the slope through the origin of a chip's features on the RNN's (``[N, H]`` each)."""
    group = _unit_core_group(design)
    return {core: _slope(expected[:, group == g].ravel(), features[:, group == g].ravel())
            for g, core in enumerate(design.group_cores)}


def unit_slopes(expected: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Per unit, the slope through the origin of a chip's features on the RNN's: its relative gain."""
    return np.array([_slope(expected[:, u], features[:, u]) for u in range(expected.shape[1])])


def gain_matched_biases(design: MappedNetwork, slopes: dict[tuple[int, int], float]) -> dict:
    """The design's biases with each core's two weight biases divided by its feature slope (ladder-snapped)."""
    biases = dict(design.biases)
    for (chip, core), slope in slopes.items():
        if not np.isfinite(slope) or slope <= 0:
            continue  # a silent core: nothing measured to correct
        factor = 1.0 / float(np.clip(slope, *SLOPE_RANGE))
        for synapse in (EXCITATORY, INHIBITORY):
            key = (chip, core, WEIGHT_BIAS[synapse])
            if key in biases:
                value = biases[key]
                coarse, fine = closest_setting(nominal_current(value.coarse, value.fine) * factor)
                biases[key] = dataclasses.replace(value, coarse=coarse, fine=fine)
    return biases


def fit_unit_calibration(network: MappedNetwork, expected: np.ndarray, features: np.ndarray) -> None:
    """Install ``f_u = g_u e_u + o_u`` (least squares per unit) as ``network``'s unit calibration.

    The decoder computes ``f = (rate - offset) / (gain r_max)``; composing the fit with the
    network's present calibration gives the new ``gain`` and ``offset``.
    """
    g = np.ones(network.n_hidden)
    o = np.zeros(network.n_hidden)
    for u in range(network.n_hidden):
        e, f = expected[:, u], features[:, u]
        if np.ptp(e) > 1e-6:
            g[u], o[u] = np.polyfit(e, f, 1)
        else:  # a unit the samples do not modulate: only its offset can be seen
            o[u] = float(np.mean(f - e))
    g = np.clip(np.nan_to_num(g, nan=1.0), *UNIT_GAIN_RANGE)
    base_gain = network.unit_gain
    network.set_unit_calibration(base_gain * g, network.unit_offset_hz + o * base_gain * network.time.r_max_hz)


# --- one machine's shard -------------------------------------------------------------------------------
def evaluate_chips(inputs: RobustnessInputs, serials: Sequence[str], threads: int = 0,
                   progress: ProgressSink | None = None, cancel: threading.Event | None = None,
                   open_batch: Callable | None = None) -> list[ChipResult]:
    """Run the study on ``serials`` in one batch on this machine (see the module docstring)."""
    if open_batch is None:
        from .boards import open_batched_emulator as open_batch
    design = inputs.design
    n = len(serials)

    def say(fraction: float, text: str) -> None:
        if progress:
            progress(Progress(fraction, f"{n} chips: {text}"))

    # only the chips the network uses are simulated (exactly as on a whole board; see emulator.batched)
    chips = sorted({a.chip for a in design.unit_addresses} | {a.chip for a in design.input_addresses})
    board = open_batch(list(serials), seed=inputs.emulator_seed, threads=threads, chips=chips, record_all_spikes=False)
    board.keep_events_of(design.unit_addresses)  # the decoder reads the units only: hold nothing else
    try:
        configure_board(board, design)
        say(0.0, f"{len(inputs.x_test)} test samples with the design's biases")
        before = stream_batch(board, [design] * n, inputs.x_test, inputs.lengths_test, inputs.seed, cancel)
        results = [ChipResult(s, float(a)) for s, a in zip(serials, before.accuracy(inputs.y_test), strict=True)]
        if not inputs.calibrate:
            return results
        expected = inputs.expected_calibration
        say(0.3, f"calibration model: {len(inputs.x_calibration)} training samples, gain matching")
        cal = stream_batch(board, [design] * n, inputs.x_calibration, inputs.lengths_calibration, inputs.seed + 1, cancel)
        networks = []
        for b, result in enumerate(results):
            slopes = core_slopes(design, expected, cal.features[b])
            result.core_slope = {f"{c}/{k}": s for (c, k), s in slopes.items()}
            result.unit_gain = unit_slopes(expected, cal.features[b])
            # a shallow copy: the netlist and addresses are the design's, biases and unit calibration its own
            network = dataclasses.replace(design, biases=gain_matched_biases(design, slopes))
            board.apply_bias_set(network.biases, instance=b)
            networks.append(network)
        say(0.55, "calibration model: per-unit transfer fit")
        cal = stream_batch(board, networks, inputs.x_calibration, inputs.lengths_calibration, inputs.seed + 2, cancel)
        for b, network in enumerate(networks):
            fit_unit_calibration(network, expected, cal.features[b])
        say(0.75, f"{len(inputs.x_test)} test samples, calibrated")
        after = stream_batch(board, networks, inputs.x_test, inputs.lengths_test, inputs.seed, cancel)
        for result, accuracy in zip(results, after.accuracy(inputs.y_test), strict=True):
            result.calibrated_accuracy = float(accuracy)
        say(1.0, "done")
        return results
    finally:
        board.close()


def _shard(inputs: RobustnessInputs, serials: list[str], threads: int) -> list[ChipResult]:
    """A Ray task's work: one shard of serials (module level, so Ray can pickle it by reference)."""
    return evaluate_chips(inputs, serials, threads)


def run_robustness(inputs: RobustnessInputs, serials: Sequence[str], task_name: str = "", threads: int = 0,
                   ray_address: str | None = None, ray_shards: int | None = None,
                   progress: ProgressSink | None = None, cancel: threading.Event | None = None,
                   reference: dict[str, float] | None = None) -> RobustnessReport:
    """The robustness study on ``serials``, here or on a Ray cluster (``ray_address``).

    With Ray, the serials are cut into ``ray_shards`` contiguous shards (default: the cluster's
    CPU count), each run by :func:`evaluate_chips` as one Ray task; the chips' results are
    gathered in serial order, which gives exactly the single-machine report.  ``ray_address`` is
    what ``ray.init(address=...)`` takes (``"auto"``, ``"ray://host:10001"``, ``"local"`` for a
    private local instance); when Ray is already initialised in this process that instance is used.
    """
    serials = list(serials)
    if not serials:
        raise ValueError("no chips to evaluate")
    t0 = time.perf_counter()
    if ray_address is None:
        chips = evaluate_chips(inputs, serials, threads, progress, cancel)
        where = "local"
    else:
        chips, where = _run_on_ray(inputs, serials, ray_address, ray_shards, progress, cancel)
    return RobustnessReport(task_name, len(inputs.x_test), len(inputs.x_calibration) if inputs.calibrate else 0,
                            chips, dict(reference or {}), time.perf_counter() - t0, where)


def _run_on_ray(inputs: RobustnessInputs, serials: list[str], address: str, shards: int | None,
                progress: ProgressSink | None, cancel: threading.Event | None) -> tuple[list[ChipResult], str]:
    try:
        import ray
    except ImportError as exc:
        raise RuntimeError("--ray needs Ray: pip install 'neurolab[ray]'") from exc
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        n_shards = int(shards) if shards else max(1, int(ray.cluster_resources().get("CPU", 1)))
        parts = [list(p) for p in np.array_split(np.array(serials, dtype=object), min(n_shards, len(serials)))]
        remote = ray.remote(num_cpus=1)(_shard)
        shared = ray.put(inputs)
        pending = {remote.remote(shared, part, 1): i for i, part in enumerate(parts)}
        results: list[list[ChipResult] | None] = [None] * len(parts)
        while pending:
            if cancel is not None and cancel.is_set():
                for ref in pending:
                    ray.cancel(ref, force=True)
                check_cancel(cancel)
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.5)
            for ref in done:
                results[pending.pop(ref)] = ray.get(ref)
                if progress:
                    finished = sum(r is not None for r in results)
                    progress(Progress(finished / len(parts), f"ray: {finished}/{len(parts)} shards done"))
        chips = [chip for part in results for chip in part or []]
        return chips, f"ray {address} ({len(parts)} shards)"
    finally:
        if started_here:
            ray.shutdown()


# --- mismatch-aware training ---------------------------------------------------------------------------
class SampledMismatch:
    """A ``RateRNN.weight_transform`` that applies a randomly drawn mismatch instance per forward pass.

    ``gains`` is ``[instances, H]``: each instance multiplies unit ``u``'s input weights (its rows
    of ``w_in``, ``w_bias``, ``w_rec``) by ``gains[k, u]``.  ``base`` is a transform applied first
    (quantisation-aware training's).  :attr:`instance` pins one instance (evaluation); None draws.
    """

    def __init__(self, gains: np.ndarray, seed: int = 0, base: WeightTransform | None = None) -> None:
        gains = np.asarray(gains, np.float32)
        if gains.ndim != 2 or gains.shape[0] < 1:
            raise ValueError(f"mismatch gains must be [instances, units], got shape {gains.shape}")
        if not np.all(np.isfinite(gains)) or not np.all(gains > 0):
            raise ValueError("mismatch gains must be finite and positive")
        self.gains = torch.as_tensor(gains)
        self.base = base
        self.instance: int | None = None
        self._generator = torch.Generator().manual_seed(int(seed))

    def __call__(self, w_in: torch.Tensor, w_bias: torch.Tensor, w_rec: torch.Tensor):
        if self.base is not None:
            w_in, w_bias, w_rec = self.base(w_in, w_bias, w_rec)
        if self.gains.shape[1] != w_in.shape[0]:
            raise ValueError(f"mismatch gains have {self.gains.shape[1]} units, the model {w_in.shape[0]}")
        k = self.instance if self.instance is not None else int(torch.randint(len(self.gains), (1,), generator=self._generator))
        g = self.gains[k].to(w_in.device)
        return w_in * g[:, None], w_bias * g, w_rec * g[:, None]


def measure_unit_gains(chips: Sequence[ChipResult]) -> np.ndarray:
    """``[chips, H]`` relative unit gains measured by a robustness run (sampled mismatch instances).

    Units that never fired on a chip (no slope) get gain 1; all gains are clipped to ``UNIT_GAIN_RANGE``."""
    rows = [c.unit_gain for c in chips if c.unit_gain is not None]
    if not rows:
        raise ValueError("the robustness run measured no unit gains (run it with calibration)")
    gains = np.nan_to_num(np.asarray(rows, float), nan=1.0)
    return np.clip(np.where(gains > 0, gains, 1.0), *UNIT_GAIN_RANGE)


def train_mismatch_aware(model: RateRNN, task: Task, gains: np.ndarray, config: TrainConfig | None = None,
                         progress: ProgressSink | None = None, cancel: threading.Event | None = None) -> TrainResult:
    """Train ``model`` (in place) with :class:`SampledMismatch` over ``gains`` installed; the model's
    own weight transform stays underneath and is restored afterwards."""
    cfg = config or TrainConfig()
    original = model.weight_transform
    model.weight_transform = SampledMismatch(gains, seed=cfg.seed, base=original)
    try:
        return train(model, task, cfg, progress, cancel)
    finally:
        model.weight_transform = original


def accuracy_under_mismatch(model: RateRNN, task: Task, gains: np.ndarray) -> np.ndarray:
    """Test accuracy of ``model`` under each mismatch instance of ``gains`` (``[instances]``)."""
    original = model.weight_transform
    transform = SampledMismatch(gains, base=original)
    model.weight_transform = transform
    try:
        out = []
        for k in range(len(transform.gains)):
            transform.instance = k
            out.append(evaluate(model, task.x_test, task.y_test, task.lengths_test)[0])
        return np.asarray(out)
    finally:
        model.weight_transform = original
