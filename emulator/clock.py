"""Real-time pacing of a simulator: board time follows the wall clock, and the lag is measured.

:meth:`BoardSimulator.run` is the *fast* clock: it simulates the requested span as fast as the
machine allows.  :class:`RealTimeClock` is the one real-time mechanism: it ties simulated time to
the wall clock, waits when the simulation is ahead and says by how much it trails when it is
behind (the lag).  The virtual FPGA (``emulator.virtual_fpga``, one USB packet at a time) and
:class:`RealTimePacer` (direct users of the simulator: scripts, the benchmark) both use it.
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


class RealTimeClock:
    """Simulated time tied to the wall clock from an origin.

    Parameters
    ----------
    clock : wall-clock source in seconds, ``time.perf_counter`` by default (injectable for tests)
    sleep : sleep function, ``time.sleep`` by default
    """

    def __init__(self, clock: Callable[[], float] = time.perf_counter, sleep: Callable[[float], None] = time.sleep) -> None:
        self._clock = clock
        self._sleep = sleep
        self._wall_origin: float | None = None
        self._sim_origin_s = 0.0

    @property
    def started(self) -> bool:
        return self._wall_origin is not None

    def start(self, sim_s: float = 0.0) -> None:
        """Tie simulated time ``sim_s`` to now."""
        self._wall_origin = self._clock()
        self._sim_origin_s = float(sim_s)

    def restart(self) -> None:
        """Forget the origin (after a timestamp reset); the next :meth:`lag_s` starts it again."""
        self._wall_origin = None

    def lag_s(self, sim_s: float) -> float:
        """Wall time minus simulated time since the origin: > 0 behind, < 0 ahead (starts the clock if needed)."""
        if self._wall_origin is None:
            self.start(sim_s)
        return (self._clock() - self._wall_origin) - (sim_s - self._sim_origin_s)

    def wait_until(self, sim_s: float) -> float:
        """Sleep until the wall clock reaches simulated time ``sim_s``; returns the lag (≥ 0) if already past."""
        lag = self.lag_s(sim_s)
        if lag < 0:
            self._sleep(-lag)
            return 0.0
        return lag


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
        self._wall = RealTimeClock(clock, sleep)
        self.lag = LagStats()

    def run(self, duration_s: float, on_events: Callable[[SpikeEvents], None] | None = None) -> SpikeEvents:
        """Simulate ``duration_s`` of board time in real time; return all host events.

        After each slice the pacer compares the board time reached with the wall time elapsed:
        ahead, it sleeps the difference; behind, it records the difference as lag and goes on
        at once (it never skips board time).
        """
        if duration_s < 0:
            raise ValueError(f"duration must be >= 0 s, got {duration_s}")
        self._wall.start(0.0)
        simulated = 0.0
        batches: list[SpikeEvents] = []
        while simulated < duration_s - 1e-12:
            span = min(self.slice_s, duration_s - simulated)
            events = self.simulator.run(span)
            simulated += span
            batches.append(events)
            if on_events is not None:
                on_events(events)
            self.lag.add(self._wall.wait_until(simulated))
        return SpikeEvents.concatenate(batches)
