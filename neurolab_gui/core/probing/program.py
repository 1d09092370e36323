"""Spike-generator programs: spike times → the FPGA spike generator's event list, and one played run.

Every part of NeuroLab that plays spikes through the FPGA spike generator builds its program
here: the calibration's probes (:mod:`.curves`, :mod:`.taus`), the conversion's transfer matching
and test-set streaming, and the session's stimulus controls.

A program is built from *absolute* spike times: they are sorted (stably, so simultaneous spikes
keep the caller's order), rounded to whole µs and turned into the delays the generator stores
(each event's ISI counts from the previous event, the first from the start).  Rounding absolute
times, not delays, keeps a long regular train from drifting.  The driver
(:meth:`drivers.dynapse1.board.DynapseBoard.load_spike_generator`) converts the delays to ISIBase
units and splits gaps longer than the 16-bit ISI with dummy events.

The generator holds :data:`GENERATOR_CAPACITY` events, the driver's limit
(``drivers.dynapse1.spikegen_words.MAX_EVENTS``: 2^15 - 1, the cAER generator script's limit;
``dynapse_protocol.md`` §5).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drivers.dynapse1.board_api import Board, SpikeGenEvent
from drivers.dynapse1.netlist import InputAddress
from drivers.dynapse1.spikegen_words import MAX_EVENTS as GENERATOR_CAPACITY
from drivers.dynapse1.spikes import SpikeEvents

__all__ = ["GENERATOR_CAPACITY", "check_program_size", "regular_train", "run_program", "spike_program", "staggered_trains", "trains_program"]

#: One spike train of a program: the channel (an index into the program's sources and core
#: masks) and its spike times in seconds.
Train = tuple[int, np.ndarray]


def check_program_size(n_events: int) -> None:
    """Refuse a program of ``n_events`` events that the generator cannot hold.

    Callers that know the count before building their spike times (a regular train: rate ×
    duration × sources) call this first, so that a train far too long is refused at once
    instead of after arrays of that length were built.

    Raises
    ------
    ValueError
        when ``n_events`` exceeds :data:`GENERATOR_CAPACITY`.
    """
    if n_events > GENERATOR_CAPACITY:
        raise ValueError(f"the program needs {n_events} spike-generator events; the FPGA holds {GENERATOR_CAPACITY} (shorten it)")


def spike_program(
    times_us: np.ndarray | Sequence[float],
    channels: np.ndarray | Sequence[int],
    sources: Sequence[InputAddress],
    core_masks: Sequence[int],
) -> list[SpikeGenEvent]:
    """The generator program that plays spike ``i`` from ``sources[channels[i]]`` at ``times_us[i]``.

    Parameters
    ----------
    times_us : spike times in µs from the start of playback (any order; rounded to whole µs)
    channels : per spike, an index into ``sources`` and ``core_masks``
    sources : the FPGA source address of each channel
    core_masks : the destination-core mask of each channel

    Raises
    ------
    ValueError
        when the program needs more than :data:`GENERATOR_CAPACITY` events, a time is negative
        or not finite, or the two per-spike arrays differ in length.
    """
    times = np.asarray(times_us, dtype=float).reshape(-1)
    chans = np.asarray(channels, dtype=np.int64).reshape(-1)
    if len(times) != len(chans):
        raise ValueError(f"{len(times)} spike times but {len(chans)} channels")
    check_program_size(len(times))
    if len(times) and not (np.isfinite(times).all() and times.min() >= 0):
        raise ValueError("spike times must be finite and not negative")
    if len(chans) and not 0 <= chans.min() <= chans.max() < min(len(sources), len(core_masks)):
        raise ValueError(f"channel ids must index the {len(sources)} sources and {len(core_masks)} core masks")
    order = np.argsort(times, kind="stable")
    t_us = np.rint(times[order])
    isi = np.diff(np.concatenate([[0.0], t_us]))
    return [SpikeGenEvent(sources[c], int(core_masks[c]), float(d)) for c, d in zip(chans[order].tolist(), isi.tolist(), strict=True)]


def trains_program(trains: Sequence[Train], sources: Sequence[InputAddress], core_masks: Sequence[int]) -> list[SpikeGenEvent]:
    """:func:`spike_program` of several spike trains, each given as ``(channel, times in s)``."""
    times = [np.asarray(t, dtype=float).reshape(-1) for _, t in trains]
    channels = [np.full(len(t), c, np.int64) for (c, _), t in zip(trains, times, strict=True)]
    t_s = np.concatenate(times or [np.zeros(0)])
    # order on the times in seconds: scaling to µs can make close times equal, and their order
    # would then depend on the order of the trains
    order = np.argsort(t_s, kind="stable")
    return spike_program(t_s[order] * 1e6, np.concatenate(channels or [np.zeros(0, np.int64)])[order], sources, core_masks)


def regular_train(rate_hz: float, t0_s: float, t1_s: float, phase: float = 0.0) -> np.ndarray:
    """Spike times [s] of a regular train at ``rate_hz`` in ``[t0_s, t1_s)``, shifted by ``phase`` periods."""
    if rate_hz <= 0:
        return np.zeros(0)
    t = t0_s + (np.arange(int((t1_s - t0_s) * rate_hz)) + phase) / rate_hz
    return t[t < t1_s]


def staggered_trains(n_sources: int, rate_hz: float, t0_s: float, t1_s: float) -> list[np.ndarray]:
    """Regular trains of ``n_sources`` sources at ``rate_hz``, their phases spread evenly (a smooth drive)."""
    return [regular_train(rate_hz, t0_s, t1_s, (j + 0.5) / n_sources) for j in range(n_sources)]


def run_program(board: Board, program: list[SpikeGenEvent], duration_s: float) -> SpikeEvents:
    """Play ``program`` once from a reset board clock and return ``duration_s`` of the board's events.

    The generator is stopped before the upload and again afterwards, also when reading fails.
    """
    board.stop_spike_generator()
    board.reset_timestamps()
    board.load_spike_generator(program)
    board.start_spike_generator()
    try:
        return board.read_events(duration_s)
    finally:
        board.stop_spike_generator()
