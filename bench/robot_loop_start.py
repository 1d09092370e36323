"""Benchmark: what starting the robot's closed loop costs on the emulated board, and its clearing share.

The hand-wired phototaxis network used to clear every CAM and SRAM cell of chip 0 before it
wrote its netlist; it now clears only the neurons of its own core (the other cores are given
silent biases, so their connections cannot act).  Which cells that writes depends on what the
driver knows: on a board just opened (or reattached) it knows nothing of the chip, and every cell
of the cleared neurons is written; once it has cleared them, it writes back only the cells its
netlists set since (``DynapseBoard.clear_connections``).  So this script times, on fresh
emulated boards (each opened for the one measurement, the state a loop meets at its first start),

* ``clear_chip_s``: ``clear_connections([0])`` (the old way; 65,536 CAM + 4,096 SRAM + 1,024 route words),
* ``clear_core_s``: ``clear_connections([0], cores=[0])`` (the new way; a quarter of the words),

and on one board, loop after loop,

* ``setup_s``: the first set-up of the loop (biases, clearing, netlist, Poisson sources, one
  warm-up period: ``PhototaxisSession.setup``) on a board just opened,
* ``restart_s``: a set-up after the loop ran and stopped (its clear writes back only its own cells),

``--repeats`` times each, and prints medians; the last line is one JSON object.  The emulator
runs in its own process as in the app (``open_emulator``, 0.5 ms steps).  Timings on a shared
machine are noisy: compare the ratio, not the seconds.

Usage: ``python bench/robot_loop_start.py [--repeats N]``
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import time

from neurolab_gui.core.boards import open_emulator
from neurolab_gui.core.robot_demo import BraitenbergController, PhototaxisConfig, PhototaxisReport


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    chip, core, setup, restart = [], [], [], []

    def timed(work) -> float:
        t = time.perf_counter()
        work()
        return time.perf_counter() - t

    def start_loop(board) -> float:
        controller = BraitenbergController(PhototaxisConfig())

        def set_up() -> None:
            controller.setup(board, PhototaxisReport())
            board.read_events(controller.period_s)  # the warm-up period PhototaxisSession.setup reads

        took = timed(set_up)
        controller.stop(board)
        return took

    for _ in range(args.repeats):
        for times, cores in ((chip, None), (core, [0])):  # alternated, each on a board just opened
            board = open_emulator(seed=0, dt=5e-4)
            try:
                times.append(timed(functools.partial(board.clear_connections, [0], cores=cores)))
            finally:
                board.close()
    board = open_emulator(seed=0, dt=5e-4)
    try:
        for _ in range(args.repeats):
            setup.append(start_loop(board))
            restart.append(start_loop(board))
            board.close()
            board = open_emulator(seed=0, dt=5e-4)
    finally:
        board.close()
    result = {
        "clear_chip_s": statistics.median(chip),
        "clear_core_s": statistics.median(core),
        "clear_ratio": statistics.median(chip) / statistics.median(core),
        "setup_s": statistics.median(setup),
        "restart_s": statistics.median(restart),
        "repeats": args.repeats,
    }
    print(f"clear chip 0: {result['clear_chip_s']:.2f} s; clear core 0 only: {result['clear_core_s']:.2f} s "
          f"({result['clear_ratio']:.1f}x less); loop set-up on a board just opened: {result['setup_s']:.2f} s, "
          f"again after a loop: {result['restart_s']:.2f} s")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
