"""Time-constant probes on the chip, through the Board API only (silicon or emulator alike).

* :func:`measure_synaptic_taus` / :func:`measure_synaptic_tau` - steps of input rate through one
  synapse type per group of neurons (excitatory: the rate rises and falls; inhibitory: a driven
  neuron's rate drops and recovers), all groups in one run; every inter-spike interval is one
  equation of an integrate-and-fire model driven by the synaptic current, fitted per neuron for
  the time constant (:func:`~neurolab_gui.core.fitting.tau.fit_interval_tau`).
* :func:`measure_membrane_tau` - a sub-threshold DC step switched off; the decay of the monitored
  neuron's membrane trace.  Silicon has no membrane path over USB (``read_membrane`` is None):
  the function then returns None and says so; measure on the oscilloscope instead.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from drivers.dynapse1.bias_table import SILENT, BiasValue
from drivers.dynapse1.board_api import Board
from drivers.dynapse1.circuit import NOMINAL_CIRCUIT
from drivers.dynapse1.netlist import InputAddress, Netlist, NeuronAddress
from drivers.dynapse1.topology import SynapseType

from ..fitting.tau import DEFAULT_DEAD_TIME_FACTORS, TauMeasurement, fit_interval_tau
from ..fitting.transfer_curves import window_rates
from .program import Train, run_program, staggered_trains, trains_program

#: The time-constant probe's sources start here: ``multiplicity`` per synapse type, then the drive.
TAU_PROBE_FIRST_SOURCE = 3


def tau_probe_source_end(n_types: int, multiplicity: int) -> int:
    """One past the highest FPGA source id :func:`measure_synaptic_taus` uses for ``n_types`` types.

    Core-0 neurons with lower ids hear the probe's sources when routed (sources look like core-0
    neurons to the CAMs), so probes skip them.
    """
    return TAU_PROBE_FIRST_SOURCE + 2 * n_types * multiplicity


def measure_synaptic_taus(
    board: Board,
    groups: Mapping[SynapseType, list[NeuronAddress]],
    step_rates_hz: Mapping[SynapseType, float],
    drive_rates_hz: Mapping[SynapseType, float],
    multiplicity: int = 4,
    on_s: float = 0.15,
    off_s: float = 0.15,
    repeats: int = 2,
    dead_time_s: float | Mapping[NeuronAddress, float] = 0.0,
    dead_time_factors: tuple[float, ...] = DEFAULT_DEAD_TIME_FACTORS,
    connect: bool = True,
) -> dict[SynapseType, TauMeasurement]:
    """Synaptic time constants of several synapse types on disjoint neurons, in one run.

    Every neuron of ``groups[type]`` fires all the time under a constant AMPA drive
    (``multiplicity`` sources at ``drive_rates_hz[type]`` each, one CAM entry per source, phases
    staggered), and ``multiplicity`` more sources step its input through ``type`` at
    ``step_rates_hz[type]`` during the first ``on_s`` of every ``on_s + off_s`` period: an
    excitatory step raises the rate, an inhibitory one pulls it down, and the rate relaxes back
    when the step ends.  The drive starts ``off_s`` before the first step (lead-in) so it has
    settled.  Every inter-spike interval after the lead-in is one equation of
    :func:`fit_interval_tau`.  Driving the excitatory probes too keeps the neuron firing at two
    distinct levels, which pins the dead time the fit also adjusts, and keeps the input above
    the soma's threshold, where the model holds.

    ``dead_time_s`` is the refractory period (one value, or one per neuron, e.g. from
    :func:`fit_saturation`; missing neurons take the median); the fit tries it times each of
    ``dead_time_factors``.  Chip time: ``off_s + repeats * (on_s + off_s)``.  The board's biases
    are used as they are; the chip's connections are replaced by the probe's, unless ``connect``
    is False: the caller then guarantees that an earlier call with the same ``groups`` left them
    on the chip (repeated rounds of a tuning; rewriting 64 CAM words per neuron costs seconds).
    """
    if not groups or not any(groups.values()):
        raise ValueError("no neurons to measure")
    all_addresses = [a for addrs in groups.values() for a in addrs]
    if len(set(all_addresses)) != len(all_addresses):
        raise ValueError("each neuron can probe one synapse type only")
    if not 1 <= multiplicity <= 32:
        raise ValueError(f"multiplicity must be 1..32 (a step and a drive share 64 CAM entries), got {multiplicity}")
    if not (on_s > 0 and off_s > 0 and repeats >= 1):
        raise ValueError(f"need on_s > 0, off_s > 0 and repeats >= 1 (got {on_s}, {off_s}, {repeats})")
    if not dead_time_factors or min(dead_time_factors) < 0:
        raise ValueError(f"dead_time_factors must be non-negative and not empty, got {dead_time_factors}")
    types = [SynapseType(s) for s in groups]
    for syn in types:
        if not step_rates_hz.get(syn, 0.0) > 0:
            raise ValueError(f"no positive step rate for {syn.name}")
        if not drive_rates_hz.get(syn, 0.0) > 0:
            raise ValueError(f"no positive drive rate for {syn.name}: the probe reads a driven neuron's rate")
    # An FPGA source reaches only its own chip: every chip measured gets the same sources and trains.
    chips = sorted({a.chip for a in all_addresses})
    first = TAU_PROBE_FIRST_SOURCE
    step_ids = {syn: [first + (2 * k) * multiplicity + j for j in range(multiplicity)] for k, syn in enumerate(types)}
    drive_ids = {syn: [first + (2 * k + 1) * multiplicity + j for j in range(multiplicity)] for k, syn in enumerate(types)}
    netlist = Netlist(monitored=set(all_addresses))
    masks = {(c, syn): 0 for c in chips for syn in types}
    for syn in types:
        for a in groups[syn]:
            masks[(a.chip, syn)] |= 1 << a.core
            for n in step_ids[syn]:
                netlist.add(InputAddress(a.chip, n), a, syn, 1)
            for n in drive_ids[syn]:
                netlist.add(InputAddress(a.chip, n), a, SynapseType.AMPA, 1)
    if connect:
        board.stop_spike_generator()
        board.clear_connections(chips)
        board.write_netlist(netlist)
    lead_in, period = off_s, on_s + off_s
    total = lead_in + repeats * period
    # program channels: per chip, per type, its step sources then its drive sources
    sources = [InputAddress(c, n) for c in chips for syn in types for n in step_ids[syn] + drive_ids[syn]]
    channel_masks = [masks[(c, syn)] for c in chips for syn in types for _ in range(2 * multiplicity)]
    width = 2 * multiplicity * len(types)
    trains: list[Train] = []
    step_times: dict[SynapseType, np.ndarray] = {}
    for i, syn in enumerate(types):
        first_channel = 2 * multiplicity * i
        steps: list[Train] = []
        for k in range(repeats):
            t0 = lead_in + k * period
            steps += [(first_channel + j, t) for j, t in enumerate(staggered_trains(multiplicity, step_rates_hz[syn], t0, t0 + on_s))]
        step_times[syn] = np.concatenate([t for _, t in steps])
        drive = staggered_trains(multiplicity, drive_rates_hz[syn], 0.0, total)
        per_chip = steps + [(first_channel + multiplicity + j, t) for j, t in enumerate(drive)]
        trains += [(c * width + channel, t) for c in range(len(chips)) for channel, t in per_chip]
    events = run_program(board, trains_program(trains, sources, channel_masks), total)
    # steady rates: the last third of every on and off period
    on_windows = [(round((lead_in + k * period + on_s * 2 / 3) * 1e6), round((lead_in + k * period + on_s) * 1e6)) for k in range(repeats)]
    off_windows = [(round((lead_in + k * period + on_s + off_s * 2 / 3) * 1e6), round((lead_in + (k + 1) * period) * 1e6)) for k in range(repeats)]
    out = {}
    for syn in types:
        addresses = list(groups[syn])
        if not addresses:
            continue
        gid = np.array([a.chip * 1024 + a.core * 256 + a.neuron for a in addresses], np.int64)
        row_of = np.full(4096, -1, np.int64)
        row_of[gid] = np.arange(len(gid))
        rows = row_of[events.global_id] if len(events) else np.zeros(0, np.int64)
        keep = rows >= 0
        if isinstance(dead_time_s, Mapping):
            dead = np.array([float(dead_time_s.get(a, np.nan)) for a in addresses])
            dead = np.where(np.isfinite(dead), dead, np.nanmedian(dead) if np.isfinite(dead).any() else 0.0)
        else:
            dead = np.full(len(addresses), float(dead_time_s))
        tau, err = fit_interval_tau(rows[keep], events.timestamp_us[keep] / 1e6, len(addresses), step_times[syn], total, dead,
                                    lambda start, end: start >= lead_in, syn.is_excitatory, dead_time_factors)
        rate_on = window_rates(events, addresses, on_windows)[0].mean(1)
        rate_off = window_rates(events, addresses, off_windows)[0].mean(1)
        out[syn] = TauMeasurement(f"tau_{syn.name}", addresses, tau, err, total, rate_on, rate_off)
    return out


def measure_synaptic_tau(
    board: Board,
    addresses: list[NeuronAddress],
    synapse: SynapseType,
    input_rate_hz: float,
    multiplicity: int = 4,
    on_s: float = 0.15,
    off_s: float = 0.15,
    repeats: int = 2,
    dead_time_s: float | Mapping[NeuronAddress, float] = 0.0,
    drive_rate_hz: float | None = None,
) -> TauMeasurement:
    """Synaptic time constant of every neuron of ``addresses`` through one synapse type.

    One type of :func:`measure_synaptic_taus` (see there): ``input_rate_hz`` per step source;
    the AMPA drive per source defaults to ``input_rate_hz`` for excitatory types (the step then
    doubles the drive) and twice that for inhibitory ones (the step takes about half away).

    Accuracy (measured on the emulator, 2 repeats of 0.15 s on + 0.15 s off, rates 150-300 Hz):
    with mismatch off the population median is within 1.5 % of the true time constant, both
    with the conversion's biases (weak leak, tau 31 ms) and with samna_recommended (20 ms soma,
    tau 13 ms); with the default mismatch the per-core medians are within ~2 % and each neuron's
    estimate within a few % of its own hidden time constant.  A delay between the spike
    generator and the timestamps biases it (0.5 ms: -2 % at 31 ms).
    """
    syn = SynapseType(synapse)
    drive = drive_rate_hz if drive_rate_hz is not None else input_rate_hz * (1.0 if syn.is_excitatory else 2.0)
    return measure_synaptic_taus(board, {syn: list(addresses)}, {syn: input_rate_hz}, {syn: drive}, multiplicity, on_s, off_s,
                                 repeats, dead_time_s)[syn]


def measure_membrane_tau(board: Board, chip: int, core: int, neuron: int, dc: BiasValue, on_s: float = 0.3, off_s: float = 0.5) -> TauMeasurement | None:
    """Membrane time constant of one neuron per core from the decay after a DC step (analog monitor).

    Returns None on silicon, where the membrane is only on the SMA output (``read_membrane`` is
    None).  ``dc`` should be sub-threshold; ``IF_DC_P`` is restored afterwards.
    """
    previous = board.get_bias(chip, core, "IF_DC_P")
    board.monitor_neuron(chip, core, neuron)
    board.read_membrane(chip, core)  # drop old samples
    try:
        board.set_bias(chip, core, "IF_DC_P", dc)
        board.read_events(on_s)
        board.set_bias(chip, core, "IF_DC_P", SILENT)
        t0_trace = board.read_membrane(chip, core)
        board.read_events(off_s)
        trace = board.read_membrane(chip, core)
    finally:
        board.set_bias(chip, core, "IF_DC_P", previous)
    addr = [NeuronAddress(chip, core, neuron)]
    if trace is None or t0_trace is None or len(trace[0]) < 10:
        return None
    t_us, v = trace
    t = (t_us - t_us[0]) / 1e6
    v = v - v[-1]
    ok = v > 0.05 * v[0] if v[0] > 0 else np.zeros_like(v, bool)
    if ok.sum() < 5:
        return TauMeasurement("tau_mem", addr, np.array([np.nan]), np.array([np.nan]), on_s + off_s)
    # the membrane *voltage* trace of a DPI neuron decays linearly in V (log of the current):
    # V = V0 - (U_T / kappa) t / tau, so tau comes from the slope and U_T/kappa (model constants).
    slope, _ = np.polyfit(t[ok], v[ok], 1)
    ut_over_kappa = NOMINAL_CIRCUIT.ut / NOMINAL_CIRCUIT.kappa
    tau = ut_over_kappa / -slope if slope < 0 else np.nan
    return TauMeasurement("tau_mem", addr, np.array([tau]), np.array([abs(tau) * 0.05]), on_s + off_s)
