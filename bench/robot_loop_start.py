"""Benchmark: what starting the robot's closed loop costs on the emulated board, and its clearing share.

The hand-wired phototaxis network used to clear every CAM and SRAM cell of chip 0 before it
wrote its netlist; it now clears only the neurons of its own core (the other cores are given
silent biases, so their connections cannot act).  In the same run, on the same board, this
script times

* ``clear_chip_s``: ``clear_connections([0])`` (the old way; 65,536 CAM + 4,096 SRAM + 1,024 route words),
* ``clear_core_s``: ``clear_connections([0], cores=[0])`` (the new way; a quarter of the words),
* ``setup_s``: the whole set-up of the loop as it runs now (biases, clearing, netlist, Poisson
  sources, one warm-up period: ``PhototaxisSession.setup``),

alternating the two clearings ``--repeats`` times, and prints medians; the last line is one JSON
object.  The emulator runs in its own process as in the app (``open_emulator``, 0.5 ms steps).
Timings on a shared machine are noisy: compare the ratio, not the seconds.

Usage: ``python bench/robot_loop_start.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

from neurolab_gui.core.boards import open_emulator
from neurolab_gui.core.robot_demo import BraitenbergController, PhototaxisConfig, PhototaxisReport


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    board = open_emulator(seed=0, dt=5e-4)
    chip, core, setup = [], [], []
    try:
        for _ in range(args.repeats):
            t = time.perf_counter()
            board.clear_connections([0])
            chip.append(time.perf_counter() - t)
            t = time.perf_counter()
            board.clear_connections([0], cores=[0])
            core.append(time.perf_counter() - t)
            controller = BraitenbergController(PhototaxisConfig())
            t = time.perf_counter()
            controller.setup(board, PhototaxisReport())
            board.read_events(controller.period_s)  # the warm-up period PhototaxisSession.setup reads
            setup.append(time.perf_counter() - t)
            controller.stop(board)
    finally:
        board.close()
    result = {
        "clear_chip_s": statistics.median(chip),
        "clear_core_s": statistics.median(core),
        "clear_ratio": statistics.median(chip) / statistics.median(core),
        "setup_s": statistics.median(setup),
        "repeats": args.repeats,
    }
    print(f"clear chip 0: {result['clear_chip_s']:.2f} s; clear core 0 only: {result['clear_core_s']:.2f} s "
          f"({result['clear_ratio']:.1f}x less); loop set-up now: {result['setup_s']:.2f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
