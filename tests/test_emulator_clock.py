"""The one real-time mechanism (``emulator.clock.RealTimeClock``) with an injected wall clock."""

from __future__ import annotations

from emulator.clock import RealTimeClock, RealTimePacer


class FakeWall:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_ahead_waits_for_the_wall_clock_behind_reports_the_lag():
    wall = FakeWall()
    rt = RealTimeClock(wall.clock, wall.sleep)
    rt.start(5.0)  # simulated 5 s ↔ wall 100 s
    assert rt.wait_until(5.25) == 0.0 and wall.slept == [0.25]  # ahead: slept until the wall caught up
    wall.now += 1.0
    assert abs(rt.wait_until(5.5) - 0.75) < 1e-12 and len(wall.slept) == 1  # behind: no sleep, lag reported
    rt.restart()
    assert not rt.started and rt.lag_s(0.0) == 0.0 and rt.started  # restarted at the next use


class Counting:
    def __init__(self, cost_s: float, wall: FakeWall) -> None:
        self.cost_s, self.wall, self.spans = cost_s, wall, []

    def run(self, span: float):
        from drivers.dynapse1.spikes import SpikeEvents

        self.spans.append(span)
        self.wall.now += self.cost_s
        return SpikeEvents()


def test_pacer_uses_the_same_clock_fast_simulator_sleeps_slow_one_lags():
    wall = FakeWall()
    pacer = RealTimePacer(Counting(0.002, wall), slice_s=0.01, clock=wall.clock, sleep=wall.sleep)
    pacer.run(0.05)
    assert len(wall.slept) == 5 and pacer.lag.max_s == 0.0
    wall = FakeWall()
    pacer = RealTimePacer(Counting(0.02, wall), slice_s=0.01, clock=wall.clock, sleep=wall.sleep)
    pacer.run(0.05)
    assert wall.slept == [] and abs(pacer.lag.last_s - 0.05) < 1e-9
