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
