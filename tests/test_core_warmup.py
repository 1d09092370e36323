"""The warm-up (core.warmup): the heavy stacks loaded once, off the caller's thread, collector left on."""

from __future__ import annotations

import gc
import sys

from neurolab_gui.core.warmup import HEAVY_MODULES, warm_up


def test_warm_up_loads_the_heavy_stacks_once_and_leaves_the_collector_on():
    first = warm_up()
    assert warm_up() is first  # once per process, whoever asks
    assert first.result(timeout=300) >= 0
    assert all(name in sys.modules for name in HEAVY_MODULES)
    assert gc.isenabled()
