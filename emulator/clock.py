"""Real-time pacing of a simulator: board time follows the wall clock, and the lag is measured.

:meth:`BoardSimulator.run` is the *fast* clock: it simulates the requested span as fast as the
machine allows.  :class:`RealTimePacer` is the *real-time* clock for live use: it advances the
board in slices, sleeps when the simulation is ahead of the wall clock, and records by how much
the simulation trails the wall clock when it is behind (the lag).  The virtual USB device has its
own packet-driven pacing (``emulator.virtual_usb``); this class serves direct users of the
simulator (scripts, the benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from drivers.dynapse1.spikes import SpikeEvents


@dataclass
class LagStats:
    """Lag of simulated time behind the wall clock, over the slices run so far [s]."""

    slices: int = 0
    last_s: float = 0.0
    max_s: float = 0.0
    total_s: float = 0.0

    @property
    def mean_s(self) -> float:
        return self.total_s / self.slices if self.slices else 0.0

    def add(self, lag_s: float) -> None:
        self.slices += 1
        self.last_s = lag_s
        self.max_s = max(self.max_s, lag_s)
        self.total_s += lag_s


class RealTimePacer:
    """Run a simulator paced to wall-clock time.

    Parameters
    ----------
    simulator : anything with ``run(duration_s) -> SpikeEvents`` (a ``BoardSimulator``)
    slice_s : board time simulated per slice (the latency of the events delivered)
    clock : wall-clock source, ``time.perf_counter`` by default (injectable for tests)
    sleep : sleep function, ``time.sleep`` by default
    """

    def __init__(self, simulator, slice_s: float = 0.01, clock: Callable[[], float] = time.perf_counter,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if slice_s <= 0:
            raise ValueError(f"slice_s must be > 0, got {slice_s}")
        self.simulator = simulator
        self.slice_s = float(slice_s)
        self._clock = clock
        self._sleep = sleep
        self.lag = LagStats()

    def run(self, duration_s: float, on_events: Callable[[SpikeEvents], None] | None = None) -> SpikeEvents:
        """Simulate ``duration_s`` of board time in real time; return all host events.

        After each slice the pacer compares the board time reached with the wall time elapsed:
        ahead, it sleeps the difference; behind, it records the difference as lag and goes on
        at once (it never skips board time).
        """
        if duration_s < 0:
            raise ValueError(f"duration must be >= 0 s, got {duration_s}")
        start = self._clock()
        simulated = 0.0
        batches: list[SpikeEvents] = []
        while simulated < duration_s - 1e-12:
            span = min(self.slice_s, duration_s - simulated)
            events = self.simulator.run(span)
            simulated += span
            batches.append(events)
            if on_events is not None:
                on_events(events)
            ahead = simulated - (self._clock() - start)
            if ahead > 0:
                self._sleep(ahead)
                self.lag.add(0.0)
            else:
                self.lag.add(-ahead)
        return SpikeEvents.concatenate(batches)
