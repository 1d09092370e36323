"""What `neurolab gui` does before its first events: import only what the window needs, boot the
emulator's child early.  Counted (modules, processes), never timed: speed is measured by
``bench/app_start.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys


def _modules_after(code: str) -> set[str]:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"],
                         capture_output=True, text=True, timeout=120, env=env, check=True)
    return set(json.loads(out.stdout.splitlines()[-1]))


def test_the_app_and_its_emulated_board_do_not_import_what_the_warm_up_loads_later():
    """torch, the conversion/calibration stacks and numba (the event decoder's kernel) are loaded by
    ``core.warmup`` after the first events; importing them with the window or the board delayed
    the first events (about 1 s of CPU for torch, 0.5 s for numba and the kernel).  The emulator's
    simulator lives in the child process."""
    from neurolab_gui.core.warmup import HEAVY_MODULES

    loaded = _modules_after(
        "import neurolab_gui.qt.app\n"
        "from drivers.dynapse1.event_words import defer_kernel\n"
        "from neurolab_gui.core.connection import ConnectionManager, app_target\n"
        "defer_kernel()\n"
        "import threading\n"
        "decoded = threading.Event()\n"
        "manager = ConnectionManager()\n"
        "manager.events.connect(lambda batch: decoded.set())\n"
        "assert manager.connect(app_target('emulator', 13, True))\n"
        "assert decoded.wait(60), 'no events decoded'\n"
        "manager.disconnect()"
    )
    assert {"neurolab_gui.qt.main_window", "emulator.fpga_process"} <= loaded
    unwanted = {*HEAVY_MODULES, "brian2", "numba", "emulator.simulator", "emulator.virtual_fpga"}
    assert not loaded & unwanted, sorted(loaded & unwanted)


def test_the_child_started_early_is_the_one_the_connection_opens():
    import multiprocessing

    from emulator.virtual_board import virtual_fpga_of
    from neurolab_gui.core.connection import ConnectionManager, app_target, start_early

    target = app_target("emulator", 11, True)
    before = {p.pid for p in multiprocessing.active_children()}
    start_early(target)
    start_early(target)  # once per board
    early = [p for p in multiprocessing.active_children() if p.pid not in before]
    assert len(early) == 1 and early[0].name == "neurolab-emulator-EMU00011"
    manager = ConnectionManager()
    try:
        assert manager.connect(target, acquire=False)
        assert virtual_fpga_of(manager.board).pid == early[0].pid  # adopted, not a second spawn
        assert {p.pid for p in multiprocessing.active_children()} - before == {early[0].pid}
    finally:
        manager.disconnect()


def test_neurolab_gui_starts_the_emulator_child_before_it_loads_the_window(monkeypatch):
    import multiprocessing

    import neurolab_gui.qt.app as app_module
    from neurolab_gui.cli import build_parser, gui

    children_at_start: list[list[str]] = []

    def run_app(board, seed, mismatch):
        children_at_start.append([p.name for p in multiprocessing.active_children()])
        return 0

    monkeypatch.setattr(app_module, "run_app", run_app)
    assert gui.run(build_parser().parse_args(["gui", "--seed", "12"])) == 0
    assert "neurolab-emulator-EMU00012" in children_at_start[0]
    from emulator.fpga_process import discard_early

    discard_early()  # no board adopted it here
    assert "neurolab-emulator-EMU00012" not in [p.name for p in multiprocessing.active_children()]


def test_a_failed_early_start_leaves_the_open_to_report_it(monkeypatch, caplog):
    from neurolab_gui.core import connection

    def fail(*args, **kwargs):
        raise OSError("Resource temporarily unavailable")

    monkeypatch.setattr(connection, "start_emulator_process", fail)
    connection.start_early(connection.app_target("emulator", 14, True))  # the window must still come up
    assert "could not start emulator (seed 14" in caplog.text
