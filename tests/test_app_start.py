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


def test_the_app_module_does_not_import_the_heavy_stacks_the_warm_up_loads_later():
    """torch and the conversion/calibration stacks are loaded by ``core.warmup`` after the first
    events; importing them with the window delayed the first events by their import (about 1 s of
    CPU for torch alone, ``python -X importtime``)."""
    from neurolab_gui.core.warmup import HEAVY_MODULES

    loaded = _modules_after("import neurolab_gui.qt.app")
    assert "neurolab_gui.qt.main_window" in loaded
    assert not loaded & {*HEAVY_MODULES, "brian2"}, sorted(loaded & {*HEAVY_MODULES, "brian2"})


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
    import argparse
    import multiprocessing

    import neurolab_gui.qt.app as app_module
    from neurolab_gui.cli import gui

    children_at_start: list[list[str]] = []

    def run_app(board, seed, mismatch):
        children_at_start.append([p.name for p in multiprocessing.active_children()])
        return 0

    monkeypatch.setattr(app_module, "run_app", run_app)
    assert gui.run(argparse.Namespace(board="emulator", seed=12, no_mismatch=False)) == 0
    assert "neurolab-emulator-EMU00012" in children_at_start[0]
    from emulator.fpga_process import discard_early

    discard_early()  # no board adopted it here
    assert "neurolab-emulator-EMU00012" not in [p.name for p in multiprocessing.active_children()]
