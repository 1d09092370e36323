"""Run ``neurolab`` (the CLI's main entry) with the emulator's own bias table dumped at open and at close.

Used by tests as a subprocess: ``python tests/cli_board_dump.py DUMP_DIR [--fast-calibration] -- ARGS...``.
The table is read from the simulator (coarse, fine and flags of every per-core bias), not from the
driver's cache, so it shows what the board really holds.  ``--fast-calibration`` runs the real
network calibration with short measurements and without the chip-in-the-loop stage, so a test of what
happens around it takes seconds, not minutes.
"""

from __future__ import annotations

import json
import os
import sys


def main(argv: list[str]) -> int:
    import emulator.virtual_board as vb
    from drivers.dynapse1.bias_table import CORE_BIASES

    dump_dir, rest = argv[0], argv[1:]
    split = rest.index("--")
    options, cli_args = rest[:split], rest[split + 1:]
    opened = vb.open_emulated_board

    def dump(board, tag: str) -> None:
        sim = vb.virtual_fpga_of(board).simulator
        table = {f"{chip}/{core}/{name}": [repr(v) for v in sim.get_bias(chip, core, name)]
                 for chip in range(4) for core in range(4) for name in CORE_BIASES}
        with open(os.path.join(dump_dir, f"{tag}.json"), "w") as f:
            json.dump(table, f)

    def open_and_dump(*args, **kwargs):
        board = opened(*args, **kwargs)
        dump(board, "open")
        close = board.close

        def dump_and_close() -> None:
            dump(board, "close")
            close()

        board.close = dump_and_close
        return board

    vb.open_emulated_board = open_and_dump
    if "--fast-calibration" in options:
        from neurolab_gui.core.calibration import engine

        real = engine.calibrate_network
        fast = engine.CalibrationConfig(exc_levels_hz=(30.0, 75.0, 120.0), inh_levels_hz=(20.0, 60.0, 100.0), level_s=0.2,
                                        settle_s=0.05, weight_rounds=2, weight_tolerance=0.03, tau_rounds=1)

        def calibrate_fast(board, mapped, net, task=None, config=None, **kwargs):
            return real(board, mapped, net, None, fast, **kwargs)

        engine.calibrate_network = calibrate_fast
    from neurolab_gui.cli import main as cli_main

    return cli_main(cli_args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
