"""Input generators of the board's FPGA: the spike generator, the Poisson generator, host spikes.

All three produce *input events*: an address arriving at one core of one chip at one time step,
which :mod:`emulator.routing` turns into synaptic events through the CAMs.

FPGA spike generator (``dynapse_protocol.md`` §1, §5)
    A list of events (target chip, neuron id, core mask, ISI in µs).  Event ``i`` fires
    ``sum(isi[:i+1])`` after the start, i.e. each ISI is the delay since the previous event (the
    first one since the start).  The spike arrives on ``target_chip`` at the cores of
    ``core_mask`` as source address (core 0, neuron id): the generator's event word has no core
    field.  Mask 0 events are dummies that only spend time (ctxctl splits long gaps that way).
    In repeat mode the list restarts after the last event, so the period is ``sum(isi)``.
Poisson generator
    1024 sources per chip (address ``source = core*256 + neuron``), each with its own rate; a
    source's events arrive at all four cores of its chip.  Events are drawn per run chunk as
    Poisson counts with uniform times, quantised to the time step (several per step possible).
    The hardware quantises rates to 0.06706 Hz codes; that is the USB layer's business.
Host spikes (``inject_spike``)
    Delivered at the current board time, i.e. in the first step of the next run.

Times are quantised to steps like Brian2 does: ``step = int(t / dt + 1e-3)``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from drivers.dynapse1.spikegen_words import MAX_EVENTS
from drivers.dynapse1.topology import N_CHIPS, N_CORES_PER_CHIP, N_NEURONS_PER_CHIP, N_NEURONS_PER_CORE, check_chip

from .routing import input_key

#: Largest Poisson rate the FPGA can encode: 16-bit code times 0.06706 Hz.
MAX_POISSON_RATE_HZ = 65535 * 0.06706


def time_to_step(t_s: np.ndarray | float, dt: float) -> np.ndarray:
    """Brian2's quantisation of a time to its step index."""
    return np.floor(np.asarray(t_s) / dt + 1e-3).astype(np.int64)


def mask_to_keys(chip: np.ndarray, address: np.ndarray, core_mask: np.ndarray,
                 step: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand (chip, address, core mask, step) events into one input key per destination core."""
    steps, keys = [], []
    for core in range(N_CORES_PER_CHIP):
        hit = ((core_mask >> core) & 1) == 1
        steps.append(step[hit])
        keys.append(input_key(chip[hit], core, address[hit]))
    return np.concatenate(steps), np.concatenate(keys)


class SpikeGenerator:
    """The FPGA spike generator: a stored event list played once or repeatedly."""

    def __init__(self) -> None:
        self.chip = np.zeros(0, np.int64)
        self.neuron = np.zeros(0, np.int64)
        self.core_mask = np.zeros(0, np.int64)
        self.offset_s = np.zeros(0)  # cumulative ISI of each event [s]
        self.repeat = False
        self.running = False
        self.start_s = 0.0

    @property
    def period_s(self) -> float:
        return float(self.offset_s[-1]) if len(self.offset_s) else 0.0

    def load(self, events: Sequence[tuple[int, int, int, float]], repeat: bool = False) -> None:
        """Store an event list (validated entirely before anything changes); stops playback."""
        arr = np.asarray(list(events), dtype=np.float64).reshape(-1, 4) if len(events) else np.zeros((0, 4))
        if len(arr) > MAX_EVENTS:  # the driver's limit: the emulator refuses what the driver never sends
            raise ValueError(f"spike generator holds at most {MAX_EVENTS} events, got {len(arr)}")
        for column, name, high in ((0, "target chip", N_CHIPS - 1), (1, "neuron id", N_NEURONS_PER_CORE - 1),
                                   (2, "core mask", 15)):
            values = arr[:, column]
            bad = (values < 0) | (values > high) | (values != np.round(values))
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"spike generator event {i}: {name} {events[i][column]!r} out of range 0..{high}")
        isi = arr[:, 3]
        bad = ~np.isfinite(isi) | (isi < 0)
        if bad.any():
            i = int(np.argmax(bad))
            raise ValueError(f"spike generator event {i}: ISI {events[i][3]!r} µs must be finite and >= 0")
        if repeat and len(arr) and isi.sum() <= 0:
            raise ValueError("repeat mode needs a total ISI > 0 (the list would replay infinitely often)")
        self.chip = arr[:, 0].astype(np.int64)
        self.neuron = arr[:, 1].astype(np.int64)
        self.core_mask = arr[:, 2].astype(np.int64)
        self.offset_s = np.cumsum(isi) * 1e-6
        self.repeat = bool(repeat)
        self.running = False

    def start(self, now_s: float) -> None:
        self.running = True
        self.start_s = now_s

    def stop(self) -> None:
        self.running = False

    def event_times(self, t0: float, t1: float) -> tuple[np.ndarray, np.ndarray]:
        """(times in s, event index) of the events in [t0, t1), in time order."""
        if not self.running or not len(self.offset_s):
            return np.zeros(0), np.zeros(0, np.int64)
        rel0, rel1 = t0 - self.start_s, t1 - self.start_s
        if not self.repeat:
            lo, hi = np.searchsorted(self.offset_s, [rel0, rel1], side="left")
            index = np.arange(lo, hi)
            return self.start_s + self.offset_s[index], index
        period = self.period_s
        first_cycle = max(0, int(np.floor((rel0 - self.offset_s[-1]) / period)))
        last_cycle = int(np.floor((rel1 - self.offset_s[0]) / period))
        cycles = np.arange(first_cycle, last_cycle + 1)
        times = (cycles[:, None] * period + self.offset_s[None, :]).ravel()
        index = np.tile(np.arange(len(self.offset_s)), len(cycles))
        keep = (times >= rel0) & (times < rel1)
        return self.start_s + times[keep], index[keep]

    def input_events(self, step0: int, n_steps: int, dt: float) -> tuple[np.ndarray, np.ndarray]:
        """(absolute step, input key) of the events falling in steps [step0, step0 + n_steps)."""
        times, index = self.event_times((step0 - 1e-3) * dt, (step0 + n_steps - 1e-3) * dt)
        if not len(index):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        step = np.clip(time_to_step(times, dt), step0, step0 + n_steps - 1)
        return mask_to_keys(self.chip[index], self.neuron[index], self.core_mask[index], step)


class PoissonGenerator:
    """The FPGA Poisson generator: 1024 independent sources per chip."""

    def __init__(self) -> None:
        self.rates_hz = np.zeros((N_CHIPS, N_NEURONS_PER_CHIP))
        self.running = False

    def set_rate(self, chip: int, source: int, rate_hz: float) -> None:
        chip = check_chip(chip)
        if isinstance(source, bool) or not 0 <= int(source) < N_NEURONS_PER_CHIP or int(source) != source:
            raise ValueError(f"Poisson source {source} out of range 0..{N_NEURONS_PER_CHIP - 1}")
        rate = float(rate_hz)
        if not (np.isfinite(rate) and 0.0 <= rate <= MAX_POISSON_RATE_HZ):
            raise ValueError(f"Poisson rate {rate_hz} Hz out of range 0..{MAX_POISSON_RATE_HZ:.1f}")
        self.rates_hz[chip, int(source)] = rate

    def input_events(self, step0: int, n_steps: int, dt: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(absolute step, input key) of Poisson events in steps [step0, step0 + n_steps)."""
        if not self.running:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        chip, source = np.nonzero(self.rates_hz > 0)
        if not len(chip):
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        counts = rng.poisson(self.rates_hz[chip, source] * n_steps * dt)
        chip = np.repeat(chip, counts)
        source = np.repeat(source, counts)
        step = step0 + rng.integers(0, n_steps, size=len(chip))
        return mask_to_keys(chip, source, np.full(len(chip), 15), step)


class HostSpikeQueue:
    """Spikes the host injected through the chip bus, waiting for the next step."""

    def __init__(self) -> None:
        self._pending: list[tuple[int, int, int]] = []  # (chip, address, core mask)

    def push(self, chip: int, address: int, core_mask: int) -> None:
        self._pending.append((chip, address, core_mask))

    def __len__(self) -> int:
        return len(self._pending)

    def input_events(self, step0: int) -> tuple[np.ndarray, np.ndarray]:
        """All pending spikes, delivered at ``step0``; the queue is emptied."""
        if not self._pending:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        arr = np.asarray(self._pending, dtype=np.int64)
        self._pending.clear()
        return mask_to_keys(arr[:, 0], arr[:, 1], arr[:, 2], np.full(len(arr), step0, np.int64))


def chip_local_address(core: int, neuron: int) -> int:
    """Source address within a chip, core*256 + neuron (the CAM's 10-bit pre address)."""
    return core * N_NEURONS_PER_CORE + neuron
