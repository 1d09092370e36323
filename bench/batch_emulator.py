"""Throughput of the batched emulator: emulated chip-seconds per wall-second for 1, 16 and 100 full boards.

The network on every board is ``bench/emulator_speed.py``'s: all 4096 neurons, all 64 CAM
entries of every neuron used (random sources on the same chip, all four synapse types), SRAM
cell 0 to the host and cell 1 back to the own chip's four cores, mismatch on, dt = 0.1 ms, the
DC bias tuned on the first board to a mean rate of about 20 Hz.  The boards differ only in their
serial (``BENCH00000``, ``BENCH00001``, ...), i.e. in their mismatch.  One board is a whole
DYNAP-SE1 board (4 chips); "chip-seconds" here counts emulated *boards* x board seconds, as the
issue's ``chip_s_per_wall_s`` names it.

For each N the batch is built, run 0.05 s (kernel load, tables), then ``--seconds`` of board
time is timed; ``chip_s_per_wall_s = N * seconds / wall``.  The single-board emulator
(``BoardSimulator``, its own chip-group threads) is timed on board 0 in the same run as the
reference.  CPU time (all threads) is reported beside wall time: on a shared machine
board-seconds per CPU-second is the steadier figure.  Memory: the process's resident set grows by
``batch_rss_mb`` while a batch is built and run; ``peak_mb`` is the process's maximum resident
set size (numba, numpy and the 100-board batch).

Usage: ``nice -n 10 .venv/bin/python bench/batch_emulator.py [--sizes 1 16 100] [--seconds 0.5]``.
The last printed line is one JSON object.  Timings on a shared 2-core machine are noisy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
from emulator_speed import configure_full_board  # the same network as the single-board bench

from drivers.dynapse1.topology import N_NEURONS
from emulator.batched import BatchedSimulator
from emulator.config import EmulatorConfig
from emulator.simulator import BoardSimulator


def tune_dc(serial: str, target_hz: float = 20.0) -> tuple[int, float]:
    """IF_DC_P fine value (coarse 5, every core) giving ``serial``'s board a mean rate near ``target_hz``."""
    fine, rate = 40, 0.0
    for _ in range(8):
        sim = BoardSimulator(serial)
        configure_full_board(sim, fine)
        sim.run(0.2)
        rate = len(sim.last_spikes) / N_NEURONS / 0.2
        if abs(rate - target_hz) < 0.15 * target_hz:
            break
        fine = int(np.clip(round(fine * (target_hz / max(rate, 1.0)) ** 0.5), 1, 255))
    return fine, rate


def rss_mb() -> float:
    """Resident set size of this process now [MB]."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024


def time_batch(n: int, dc_fine: int, seconds: float, threads: int) -> dict[str, float]:
    rss0 = rss_mb()
    batch = BatchedSimulator([f"BENCH{i:05d}" for i in range(n)], EmulatorConfig(), threads=threads)
    configure_full_board(batch, dc_fine)
    batch.run(0.05)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    batch.run(seconds)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rates = [len(s) / N_NEURONS / seconds for s in batch.last_spikes]
    return {"boards": n, "board_s": n * seconds, "wall_s": wall, "cpu_s": cpu,
            "chip_s_per_wall_s": n * seconds / wall, "chip_s_per_cpu_s": n * seconds / cpu,
            "batch_rss_mb": rss_mb() - rss0, "rate_hz_mean": float(np.mean(rates)),
            "rate_hz_min": float(np.min(rates)), "rate_hz_max": float(np.max(rates))}


def time_single(dc_fine: int, seconds: float, threads: int) -> dict[str, float]:
    sim = BoardSimulator("BENCH00000", EmulatorConfig(kernel_threads=threads))
    configure_full_board(sim, dc_fine)
    sim.run(0.05)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    sim.run(seconds)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    return {"wall_s": wall, "cpu_s": cpu, "chip_s_per_wall_s": seconds / wall, "chip_s_per_cpu_s": seconds / cpu}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 16, 100])
    parser.add_argument("--seconds", type=float, default=0.5, help="board seconds timed per size (default 0.5)")
    parser.add_argument("--threads", type=int, default=0, help="worker threads (default: one per CPU core)")
    args = parser.parse_args()
    threads = args.threads or len(os.sched_getaffinity(0))
    fine, rate = tune_dc("BENCH00000")
    print(f"IF_DC_P (5, {fine}): board BENCH00000 fires at {rate:.1f} Hz", flush=True)
    single = time_single(fine, args.seconds, threads)
    print(f"single board (BoardSimulator, {threads} threads): {single['chip_s_per_wall_s']:.2f} board-s per wall-s, "
          f"{single['chip_s_per_cpu_s']:.2f} per CPU-s", flush=True)
    results = {}
    for n in args.sizes:
        r = time_batch(n, fine, args.seconds, threads)
        results[n] = r
        print(f"N = {n:4d}: {r['board_s']:.1f} board-s in {r['wall_s']:.2f} s wall ({r['cpu_s']:.2f} s CPU): "
              f"{r['chip_s_per_wall_s']:.2f} board-s per wall-s, {r['chip_s_per_cpu_s']:.2f} per CPU-s; "
              f"+{r['batch_rss_mb']:.0f} MB; rates {r['rate_hz_min']:.1f}..{r['rate_hz_max']:.1f} Hz",
              flush=True)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({
        "chip_s_per_wall_s": {str(n): round(r["chip_s_per_wall_s"], 3) for n, r in results.items()},
        "device": f"cpu: {platform.processor() or platform.machine()}, numba, {threads} threads (no CUDA path)",
        "chip_s_per_cpu_s": {str(n): round(r["chip_s_per_cpu_s"], 3) for n, r in results.items()},
        "single_board_chip_s_per_wall_s": round(single["chip_s_per_wall_s"], 3),
        "single_board_chip_s_per_cpu_s": round(single["chip_s_per_cpu_s"], 3),
        "seconds_per_size": args.seconds, "peak_mb": round(peak_mb, 1),
        "runs": {str(n): r for n, r in results.items()},
    }))


if __name__ == "__main__":
    main()
