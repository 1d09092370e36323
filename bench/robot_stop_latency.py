"""Benchmark: how fast the simulated PushBot's wheels stand still when its host ends, per exit path.

A host process (the app's ``RobotSession`` over the real driver) drives the simulated robot at
60/60 over TCP; this script then signals or kills it and measures, on the simulator's own
clock of the wheels, the time until both stand still.  The peer is the same host without the
protections (no watchdog process, default signal handling), as NeuroLab was before: how far
the robot then drives on in 6 s (the firmware's ``!MVD`` decay, modelled by the simulator, is
all that slows it).

Prints one line per path; the last line is one JSON object::

    {"SIGTERM": {"median_ms": ..., "max_ms": ...}, ..., "unprotected_SIGKILL_m_in_6s": ...}

Usage: ``python bench/robot_stop_latency.py [--trials N]``
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from robot_sim import PushBotSimConfig, SimulatedPushBot

REPO = Path(__file__).resolve().parents[1]

HOST = """
import sys, threading
from drivers.robot import PushBot, PushBotConfig
protected = sys.argv[2] == "protected"
if protected:
    from neurolab_gui.core.robot_session import RobotSession
    robot = RobotSession(None, PushBotConfig(watchdog_timeout_s=0.5))
    assert robot.connect(sys.argv[1]), robot.status
    robot.set_motors(60, 60)
else:
    robot = PushBot(sys.argv[1], PushBotConfig(watchdog_timeout_s=None)).open()
    robot.set_motors(60, 60)
print("driving", flush=True)
threading.Event().wait()
"""


def _host(sim: SimulatedPushBot, protected: bool) -> subprocess.Popen:
    host = subprocess.Popen(
        [sys.executable, "-c", HOST, sim.address, "protected" if protected else "plain"],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    if host.stdout.readline().strip() != "driving":
        raise RuntimeError("host did not start")
    if not sim.wait_until(lambda s: s.wheel_speeds()[0] > 0, 2.0):
        raise RuntimeError("the host never drove")
    return host


def _standstill_ms(sim: SimulatedPushBot, limit_s: float = 3.0) -> float:
    t0 = time.monotonic()
    if not sim.wait_until(lambda s: s.wheel_speeds() == (0.0, 0.0), limit_s):
        return float("inf")
    return (time.monotonic() - t0) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=5)
    args = parser.parse_args()
    results: dict[str, object] = {}
    paths = {"SIGTERM": signal.SIGTERM, "SIGHUP": signal.SIGHUP, "SIGKILL": signal.SIGKILL, "SIGSTOP": signal.SIGSTOP}
    for name, signum in paths.items():
        times = []
        for _ in range(args.trials):
            with SimulatedPushBot(PushBotSimConfig(seed=0, noise_rate_hz=0.0)) as sim:
                sim.serve_tcp()
                host = _host(sim, protected=True)
                os.kill(host.pid, signum)
                times.append(_standstill_ms(sim))
                if signum == signal.SIGSTOP:
                    os.kill(host.pid, signal.SIGKILL)
                    os.kill(host.pid, signal.SIGCONT)
                host.wait(5)
        results[name] = {"median_ms": round(statistics.median(times), 1), "max_ms": round(max(times), 1)}
        print(f"{name:8s} motors 0 after median {results[name]['median_ms']} ms, max {results[name]['max_ms']} ms ({args.trials} trials)")
    with SimulatedPushBot(PushBotSimConfig(seed=0, noise_rate_hz=0.0)) as sim:
        sim.serve_tcp()
        host = _host(sim, protected=False)
        start = sim.pose.x_m
        os.kill(host.pid, signal.SIGKILL)
        host.wait(5)
        time.sleep(6.0)
        coasted = sim.pose.x_m - start
        still = sim.wheel_speeds()[0] > 0
    results["unprotected_SIGKILL_m_in_6s"] = round(coasted, 3)
    print(f"peer: unprotected host, SIGKILL: the robot drove {coasted:.2f} m in 6 s after the kill"
          f" ({'still driving' if still else 'stopped by the !MVD decay'})")  # fmt: skip
    print(json.dumps(results))


if __name__ == "__main__":
    main()
