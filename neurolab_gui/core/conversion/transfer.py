"""Transfer-curve matching: measure how the neurons in use respond, and scale the weights so rate ≈ activation.

The constrained RNN needs, for every core group ``g``, one CAM copy of weight ``q[g]``: a unit
receiving copies ``m_j`` from sources firing at ``r_j`` should fire at ``q[g] * sum_j m_j r_j``
(activation 1 = ``r_max`` everywhere, so the ratio is the same in Hz).  The nominal circuit model
(:mod:`.mapping`) gives a first weight-bias setting; this module *measures* the result on the
Board and corrects it, because the bias-to-current mapping of silicon is not known well and the
emulator's per-core bias-generator mismatch shifts every core.

Measurement (through the Board only, so it runs the same on silicon):

- every operating point ``(m, r)`` is played to several neurons of the core
  (``ProbeDesign.neurons_per_point``, the units' own neurons first, :func:`probe_neurons`) and
  its rate is their mean; a point counts only when every one of its neurons is above the
  rheobase corner (and, inhibitory, not silenced), so per-neuron mismatch averages out instead of
  steering the fit (with one neuron per point it did: docs/decisions.md, "Transfer probes");
- excitatory: probe neurons receive ``m`` AMPA copies from an FPGA source firing a regular train
  at ``r``; the rates regressed on the drive ``m r`` through the origin, as the model has it
  (``rate = q m r``), give the copy gain ``G_exc`` (Hz/Hz per copy); the mean shortfall from that
  line is reported as the offset;
- inhibitory: probes get a fixed excitatory drive plus ``m`` GABA_B copies at ``r``; the rate
  decrease against the same neurons' drive-only rate (a second run), regressed on ``m r``
  through the origin, gives ``G_inh``.

Both fits first undo the refractory saturation ``rate = f0 / (1 + f0 t_ref)`` with the
nominal ``t_ref`` (the model was trained with exactly that curve).  The weight bias is then
multiplied by ``q / G`` (the DPI synapse is linear in its weight current) and measured again; two rounds leave a residual well under the fine-step resolution
on the emulator.  The fitted curves are returned for the report and for the calibration
developer, who adds per-neuron compensation on top via :meth:`MappedNetwork.set_unit_calibration`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import numpy as np

from drivers.dynapse1.bias_table import closest_setting, nominal_current
from drivers.dynapse1.board_api import BiasValue, Board
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.topology import N_NEURONS_PER_CORE, SynapseType

from ..fitting.fi import fit_saturation
from ..jobs import Progress, ProgressSink, check_cancel
from ..probing.bias_tuning import TuningKnob, tune_core_biases
from ..probing.curves import measure_dc_curves
from ..probing.program import regular_train, run_program, trains_program
from .mapping import EXCITATORY, INHIBITORY, WEIGHT_BIAS, MappedNetwork


@dataclass
class TransferFit:
    """Fitted copy gain of one synapse type on one core.

    With ``x = m r`` the drive in Hz and ``f0 = rate / (1 - rate t_ref)`` (saturation undone):
    excitatory ``f0 = gain x - offset_hz`` (the line through the origin; ``offset_hz`` is the mean
    shortfall from it); inhibitory ``f0 = -offset_hz - gain x``.
    """

    chip: int
    core: int
    synapse: str
    gain: float
    offset_hz: float
    target_gain: float
    weight_bias: tuple[int, int]
    t_ref_s: float = float("nan")  # refractory period assumed when undoing the saturation
    points: list[tuple[float, float]] = field(default_factory=list)  # (drive m*r in Hz, mean rate out)


@dataclass
class ProbeDesign:
    """Operating points of the measurement."""

    multiplicities: tuple[int, ...] = (1, 2, 3, 4, 6, 8)
    rates_hz: tuple[float, ...] = (50.0, 100.0, 150.0)
    duration_s: float = 1.2
    settle_s: float = 0.2  # discarded start (synaptic current builds up with tau)
    min_rate_hz: float = 10.0  # points below are near the rheobase corner and left out of the fit
    #: excitatory drive under the inhibition probes (200 Hz, was 120: with every neuron of a point
    #: required above ``min_rate_hz``, a 120 Hz baseline left too few unclipped points on a core of
    #: large copy weight, U1c0 of the multichip network, and its fit failed)
    inhibitory_drive_rate_out_hz: float = 200.0
    max_probe_rate_hz: float = 200.0  # operating points beyond this are skipped (saturation)
    #: neurons that receive each operating point (the units' own first, :func:`probe_neurons`); the
    #: point's rate is their mean.  One neuron per point let single neurons' mismatch (synaptic
    #: weight CV 20 %) steer a core's fitted gain: matched cores of the 2-chip multichip network
    #: ran 0.5-1.9x the model's rates (docs/decisions.md, "Transfer probes: 8 neurons per point")
    neurons_per_point: int = 8

    def __post_init__(self) -> None:
        if self.neurons_per_point < 1:
            raise ValueError(f"neurons_per_point must be at least 1, got {self.neurons_per_point}")


def probe_neurons(mapped: MappedNetwork, chip: int, core: int) -> list[int]:
    """Neuron ids of a core that transfer probes may use, in order of use: the core's units' own
    neurons first (the gain the network needs is theirs), then the others.  On core 0 only ids
    above the network's sources: FPGA sources reach the CAMs as core-0 neurons, so a probe there
    with a source's id would drive every probe listening to that source."""
    own = [a.neuron for a in mapped.unit_addresses if (a.chip, a.core) == (chip, core)]
    lowest = mapped.n_sources + 1 if core == 0 else 0
    taken = set(own)
    return [n for n in own if n >= lowest] + [n for n in range(lowest, N_NEURONS_PER_CORE) if n not in taken]


def _probe_netlist(mapped: MappedNetwork, synapse: SynapseType, design: ProbeDesign, scales: np.ndarray,
                   sources: list[InputAddress]) -> tuple[Netlist, list[list[tuple[list[NeuronAddress], float]]]]:
    """Probe neurons on every group's core for one synapse type; returns the netlist and, per group,
    the operating points as ``(probe neurons, drive)``.

    Every operating point is played to ``design.neurons_per_point`` neurons (fewer where the core
    has not that many free), so that a point's rate is a mean over neurons: with one neuron per
    point the fit confounded each neuron's own mismatch with its drive.  ``sources`` name the
    source ids; each probe hears the copies on its own chip.
    """
    rates = list(design.rates_hz)
    n_rate = len(rates)
    netlist = Netlist()
    per_group: list[list[tuple[list[NeuronAddress], float]]] = []
    for g, (chip, core) in enumerate(mapped.group_cores):
        q = float(scales[g])
        m_drive = 0
        if synapse == INHIBITORY:  # enough excitation that the inhibited rate stays measurable
            m_drive = int(np.clip(np.ceil(design.inhibitory_drive_rate_out_hz / (q * max(rates))), 1, 60))
        operating = [(m, k, m * r) for m in design.multiplicities for k, r in enumerate(rates)
                     if not (synapse == EXCITATORY and q * m * r > design.max_probe_rate_hz)
                     and not (synapse == INHIBITORY and m + m_drive > 64)]
        free = probe_neurons(mapped, chip, core)
        per_point = min(design.neurons_per_point, len(free) // max(1, len(operating)))
        if per_point == 0:  # fewer free neurons than operating points: one each while they last
            operating, per_point = operating[: len(free)], 1
        points = []
        for i, (m, k, drive) in enumerate(operating):
            posts = [NeuronAddress(chip, core, n) for n in free[i * per_point:(i + 1) * per_point]]
            for post in posts:
                netlist.add(InputAddress(chip, sources[k].neuron), post, synapse, m)
                if m_drive:
                    netlist.add(InputAddress(chip, sources[n_rate].neuron), post, EXCITATORY, m_drive)
            points.append((posts, drive))
        per_group.append(points)
    netlist.monitored = {p for points in per_group for posts, _ in points for p in posts}
    return netlist, per_group


def _measure(board: Board, mapped: MappedNetwork, synapse: SynapseType, design: ProbeDesign, scales: np.ndarray) -> list[TransferFit]:
    """One run measuring ``synapse`` on every core group at once; one fit per group."""
    chips = mapped.chips
    rates = list(design.rates_hz)
    width = len(rates) + 1
    sources = [InputAddress(c, 1 + k) for c in chips for k in range(width)]  # per chip; last: excitatory drive
    netlist, per_group = _probe_netlist(mapped, synapse, design, scales, sources[:width])
    board.stop_spike_generator()
    board.apply_bias_set(mapped.biases)
    board.write_netlist(netlist)
    masks = [sum({1 << core for chip, core in mapped.group_cores if chip == c}) for c in chips for _ in range(width)]
    all_rates = rates + ([max(rates)] if synapse == INHIBITORY else [])
    window = design.duration_s - design.settle_s

    def play(active_rates: list[float]) -> np.ndarray:
        # one regular train per source, phases offset so that the sources do not fire together
        # (played on every chip of the network: an FPGA source reaches only its own chip)
        trains = [(i * width + k, regular_train(r, 0.0, design.duration_s, 0.5 + 0.37 * k / max(1, len(active_rates))))
                  for i in range(len(chips)) for k, r in enumerate(active_rates)]
        events = run_program(board, trains_program(trains, sources, masks), design.duration_s)
        return events.select(events.timestamp_us >= design.settle_s * 1e6).counts() / window

    rate_of = play(all_rates)
    # Inhibition is measured against each probe's own drive-only rate (a second run with the
    # inhibitory sources silent): under mismatch every neuron's baseline differs.
    base_of = play([0.0] * len(rates) + [max(rates)]) if synapse == INHIBITORY else None
    fits = []
    t_ref = float(mapped.settings.t_ref_s)

    def unsaturate(rate: np.ndarray) -> np.ndarray:
        # undo the refractory compression rate = f0 / (1 + f0 t_ref) with the nominal t_ref (the model
        # was trained with that curve; fitting t_ref too proved too noisy at these spike counts)
        return rate / np.clip(1.0 - rate * t_ref, 1e-3, None)

    def gids(posts: list[NeuronAddress]) -> np.ndarray:
        return np.array([p.chip * 1024 + p.core * 256 + p.neuron for p in posts], np.int64)

    for g, points in enumerate(per_group):
        c_chip, core = mapped.group_cores[g]
        x = np.array([d for _, d in points], float)
        # per operating point, the mean over its neurons of the unsaturated rate; a point is used only
        # when every one of its neurons is above the rheobase corner (and, inhibitory, not clipped at
        # zero), so no point keeps just the neurons whose own mismatch happened to lift them above it
        point_rates = [rate_of[gids(posts)] for posts, _ in points]  # each point's neurons
        y = np.array([r.mean() for r in point_rates])
        f0 = np.array([unsaturate(r).mean() for r in point_rates])
        if synapse == EXCITATORY:
            ok = np.array([r.min() > design.min_rate_hz for r in point_rates], bool)
            # through the origin, as the model has it (rate = q x): a free intercept let the noise of a
            # few points trade slope for offset (fitted offsets of -100 to +20 Hz under mismatch, against
            # 1-3 Hz on the ideal board); the offset reported is the mean shortfall from the line
            gain = float(np.sum(f0[ok] * x[ok]) / np.sum(x[ok] ** 2)) if ok.sum() >= 2 else float("nan")
            offset = float(np.mean(gain * x[ok] - f0[ok])) if ok.sum() >= 2 else float("nan")
        else:
            bases = [base_of[gids(posts)] for posts, _ in points]  # the same neurons without the inhibition
            ok = np.array([min(r.min(), b.min()) > design.min_rate_hz for r, b in zip(point_rates, bases, strict=True)], bool)
            base = np.array([unsaturate(b).mean() for b in bases])
            drop = base - f0
            gain = float(np.sum(drop[ok] * x[ok]) / np.sum(x[ok] ** 2)) if ok.sum() >= 2 else float("nan")
            offset = float(-np.mean(base[ok])) if ok.any() else float("nan")
        value = mapped.biases[(c_chip, core, WEIGHT_BIAS[synapse])]
        fits.append(TransferFit(c_chip, core, synapse.name, gain, offset, float(scales[g]), (value.coarse, value.fine),
                                t_ref, list(zip(x.tolist(), y.tolist(), strict=True))))
    return fits


def match_transfer(
    board: Board,
    mapped: MappedNetwork,
    scales: np.ndarray,
    design: ProbeDesign | None = None,
    rounds: int = 2,
    progress: ProgressSink | None = None,
    cancel: threading.Event | None = None,
) -> list[TransferFit]:
    """Measure and correct the weight bias of every core group and synapse type (in place).

    ``scales[g]`` is the copy weight ``q`` the constrained network expects on group ``g``.  Each
    run measures one synapse type on all core groups at once.  Returns the fits of the last
    measurement round (taken after the last correction).  Leaves the board holding the probe
    netlist: write the network afterwards.
    """
    design = design or ProbeDesign()
    fits: list[TransferFit] = []
    board.stop_spike_generator()
    board.clear_connections(mapped.chips)
    total = 2 * (rounds + 1)
    step = 0
    for syn in (EXCITATORY, INHIBITORY):
        for r in range(rounds + 1):
            check_cancel(cancel)
            round_fits = _measure(board, mapped, syn, design, scales)
            step += 1
            if progress:
                progress(Progress(step / total, f"transfer {syn.name} round {r + 1}: gain/target "
                                  + ", ".join(f"{core_label(f, round_fits)} {f.gain / f.target_gain:.3f}" for f in round_fits)))
            if r == rounds:
                break
            for g, fit in enumerate(round_fits):
                if np.isfinite(fit.gain) and fit.gain > 0:
                    value = mapped.biases[(fit.chip, fit.core, WEIGHT_BIAS[syn])]
                    current = nominal_current(value.coarse, value.fine) * fit.target_gain / fit.gain
                    mapped.set_weight_bias(g, syn, *closest_setting(current))
        fits.extend(round_fits)
    return fits


def core_label(fit, fits) -> str:
    """``c<core>``, or ``U<chip>c<core>`` when ``fits`` (transfer or refractory fits) span several chips."""
    return f"U{fit.chip}c{fit.core}" if len({f.chip for f in fits}) > 1 else f"c{fit.core}"


def weight_bias_value(mapped: MappedNetwork, group: int, synapse: SynapseType) -> BiasValue:
    chip, core = mapped.group_cores[group]
    return mapped.biases[(chip, core, WEIGHT_BIAS[synapse])]


#: DC currents of the refractory probe: from near the rheobase to ~0.6 of the saturation rate of
#: the converted network's neurons (measured on the emulator: 10 to 560 Hz at r_max 900 Hz).
REFRACTORY_PROBE_CURRENTS_A: tuple[float, ...] = tuple(float(c) for c in np.geomspace(2e-10, 2e-8, 10))


@dataclass
class RefractoryFit:
    """Effective refractory period of a core's units, fitted on their DC f-I curves."""

    chip: int
    core: int
    t_ref_s: float  # median over the core's units of ``1/rate = 1/f0 + t_ref``
    target_s: float
    setting: tuple[int, int]  # IF_RFR_N (coarse, fine) it was measured with
    n_neurons: int


def match_refractory(
    board: Board,
    mapped: MappedNetwork,
    max_rounds: int = 4,
    tolerance: float = 0.02,
    currents_a: tuple[float, ...] = REFRACTORY_PROBE_CURRENTS_A,
    level_s: float = 0.4,
    settle_s: float = 0.1,
    cancel: threading.Event | None = None,
) -> list[RefractoryFit]:
    """Tune each core's ``IF_RFR_N`` until its units saturate as the model's activation does (in place).

    The model's rate curve is ``f0 / (1 + f0 t_ref)`` with ``t_ref = mapped.settings.t_ref_s``, and
    the nominal refractory bias misses it on silicon and under the emulator's mismatch (measured,
    default mismatch: the cores' median effective ``t_ref`` 23-40 % long).  Each round steps every
    core's ``IF_DC_P`` together through ``currents_a`` (connections cleared), fits ``t_ref`` per unit
    on its DC f-I curve (:func:`~neurolab_gui.core.fitting.fi.fit_saturation`) and moves
    each core's bias with the calibration's secant search on the coarse/fine ladder
    (:func:`~neurolab_gui.core.probing.bias_tuning.tune_core_biases`, ``t_ref ∝ 1/I``).
    Returns the fits at the kept settings.  Leaves the chip's connections cleared.
    """
    target = float(mapped.settings.t_ref_s)
    cores = sorted({(a.chip, a.core) for a in mapped.unit_addresses})
    settings = [closest_setting(c) for c in currents_a]
    units_of = {core: [i for i, a in enumerate(mapped.unit_addresses) if (a.chip, a.core) == core] for core in cores}
    counts: dict[tuple[int, int], int] = {}
    board.stop_spike_generator()
    board.apply_bias_set(mapped.biases)

    def measure() -> dict[tuple[int, int], dict[str, float]]:
        check_cancel(cancel)
        t_ref = fit_saturation(measure_dc_curves(board, list(mapped.unit_addresses), settings, level_s, settle_s)).t_ref_s
        out = {}
        for core, rows in units_of.items():
            ok = [i for i in rows if np.isfinite(t_ref[i]) and t_ref[i] > 0]
            counts[core] = len(ok)
            out[core] = {"IF_RFR_N": float(np.median(t_ref[ok])) if ok else float("nan")}
        return out

    result = tune_core_biases(board, cores, [TuningKnob("IF_RFR_N", target, -1.0, tolerance)], measure, max_rounds)
    fits = []
    for chip, core in cores:
        coarse, fine = result.settings[(chip, core)]["IF_RFR_N"]
        mapped.biases[(chip, core, "IF_RFR_N")] = BiasValue(coarse, fine)
        fits.append(RefractoryFit(chip, core, result.measured[(chip, core)]["IF_RFR_N"], target, (coarse, fine), counts.get((chip, core), 0)))
    return fits
