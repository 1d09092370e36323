"""Hostile bias files and a bias write that fails half-way: what the code in ``sys.path`` does.

Run it against this tree, and against an older checkout to compare::

    python bench/bias_robustness.py
    git worktree add /tmp/old <commit> && cd /tmp/old && PYTHONPATH=/tmp/old python /path/to/bench/bias_robustness.py

Files: each of the bias-file rows of the fault issue is written to a temporary file and read with
``neurolab_gui.core.bias_model.read_bias_file`` (what the GUI's Load button uses), with a 10 s
limit; printed: time and outcome.  Write: all 400 per-core biases of an emulated board are
written with ``Board.apply_bias_set`` while the virtual USB device lets chip 0's acknowledgements
through and then times out once (transient) or for good (persistent); printed: how many biases
the emulated chip holds with the new value and for how many the driver's cache differs from the
chip.  Only the public API that old and new trees share is used.
"""

from __future__ import annotations

import json
import pathlib
import signal
import sys
import tempfile
import time

BOMB = "format: neurolab-biases\na: &a [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n" + "".join(
    f"{b}: &{b} [{','.join([f'*{a}'] * 9)}]\n" for a, b in zip("abcdefgh", "bcdefghi", strict=True)) + "name: *i\n"

FILES: dict[str, str | bytes] = {
    "alias_bomb.yaml": BOMB,
    "deep.json": '{"format": "neurolab-biases", "defaults": ' + "[" * 200_000 + "]" * 200_000 + "}",
    "high_false.json": json.dumps({"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": 1, "fine": 2, "high": "false"}}}),
    "coarse_3_9.json": json.dumps({"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": 3.9, "fine": 2}}}),
    "coarse_true.json": json.dumps({"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": True, "fine": 2}}}),
    "coarse_inf.json": '{"format": "neurolab-biases", "defaults": {"IF_DC_P": {"coarse": Infinity, "fine": 2}}}',
    "cores_list.json": json.dumps({"format": "neurolab-biases", "cores": [{"IF_DC_P": {"coarse": 1, "fine": 2}}]}),
    "latin1.json": b'{"format": "neurolab-biases", "name": "caf\xe9"}',
}


def _give_up(*_: object) -> None:
    raise TimeoutError("gave up after 10 s")


def files() -> None:
    from neurolab_gui.core.bias_model import read_bias_file

    folder = pathlib.Path(tempfile.mkdtemp())
    signal.signal(signal.SIGALRM, _give_up)
    for name, text in FILES.items():
        path = folder / name
        path.write_bytes(text if isinstance(text, bytes) else text.encode())
        start = time.monotonic()
        signal.alarm(10)
        try:
            values = read_bias_file(path)
            outcome = f"accepted, IF_DC_P of 0/0 = {values.get((0, 0, 'IF_DC_P'))}"
        except Exception as exc:  # the point is to see which
            outcome = f"{type(exc).__name__}: {str(exc).replace(str(folder) + '/', '')[:100]}"
        finally:
            signal.alarm(0)
        print(f"{name:18s} {time.monotonic() - start:7.3f} s  {outcome}")


def half_failed_write() -> None:
    from drivers.dynapse1.bias_table import CORE_BIASES
    from drivers.dynapse1.board_api import BiasValue
    from emulator.virtual_board import open_emulated_board, virtual_fpga_of

    keys = [(c, k, n) for c in range(4) for k in range(4) for n in CORE_BIASES]
    for persistent in (False, True):
        board = open_emulated_board("EMUBENCH", clock="fast", prefetch=False)
        fpga = virtual_fpga_of(board)
        original, state = fpga.take_ack, {"good": 2, "bad": 0}  # chip 0's 100 words are 2 batches

        def take_ack(original=original, state=state, fpga=fpga, persistent=persistent) -> bytes:
            if state["good"] > 0:
                state["good"] -= 1
                return original()
            if persistent or state["bad"] < 1:
                state["bad"] += 1
                fpga.ack_fault = "timeout"
                try:
                    return original()
                finally:
                    fpga.ack_fault = None
            return original()

        fpga.take_ack = take_ack
        new = {key: BiasValue(3, 11 + i % 200) for i, key in enumerate(keys)}
        try:
            board.apply_bias_set(new)
            error = "no error"
        except Exception as exc:
            error = type(exc).__name__
        chip = {k: fpga.simulator.get_bias(*k)[:2] for k in keys}
        cache = {k: (board.get_bias(*k).coarse, board.get_bias(*k).fine) for k in keys}
        holds_new = sum(chip[k] == (new[k].coarse, new[k].fine) for k in keys)
        differ = sum(chip[k] != cache[k] for k in keys)
        kind = "persistent" if persistent else "transient"
        print(f"{kind:10s} ack timeout after chip 0: chip holds the new value for {holds_new}/400, "
              f"driver cache differs from the chip for {differ}/400 ({error})")
        board.close()


if __name__ == "__main__":
    import drivers

    print("code from", pathlib.Path(drivers.__file__).parents[1], file=sys.stderr)
    files()
    half_failed_write()
