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


PRELOAD_PROBE = r"""
import sys
from neurolab_gui.core import warmup

loaded = warmup.preload_shared_libraries("torch")
maps = open("/proc/self/maps").read()
assert "torch" not in sys.modules, "the preload must not import torch"
assert "libtorch_cpu.so" in loaded and "libtorch_cpu.so" in maps, (loaded, "libtorch_cpu.so" in maps)
import torch  # finds its libraries already loaded
assert float(torch.ones(3).sum()) == 3.0
assert warmup.preload_shared_libraries("no_such_package_here") == []
print("ok", ",".join(loaded))
"""


def test_torch_libraries_are_preloaded_by_a_dlopen_call_then_torch_imports_over_them():
    """The warm-up maps torch's libraries with libc's dlopen called through ctypes (the call releases
    the GIL; ``import torch`` would hold it for the whole load: a 0.3-0.6 s freeze of the window),
    without importing torch; the import afterwards works on the libraries already loaded."""
    import subprocess

    if not sys.platform.startswith("linux"):
        import pytest

        pytest.skip("the preload is Linux-only; elsewhere the import loads the libraries")
    done = subprocess.run([sys.executable, "-c", PRELOAD_PROBE], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("ok") and "libtorch_python.so" in done.stdout


def test_exit_waits_for_a_warm_up_still_importing(monkeypatch):
    """Hostile check: a window closed in the app's first seconds let the interpreter finalise while the
    warm-up thread was inside torch's import (a segfault in 1 of 3 closes); `run_app` now waits for it."""
    import threading
    import time
    from concurrent.futures import Future

    from neurolab_gui.core import warmup

    importing: Future = Future()
    monkeypatch.setattr(warmup, "_future", importing)
    assert warmup.wait_before_exit(timeout_s=0.05) is False  # still importing after the bound: say so, go on
    threading.Timer(0.2, importing.set_result, args=(1.0,)).start()
    started = time.monotonic()
    assert warmup.wait_before_exit() is True and time.monotonic() - started >= 0.15
    monkeypatch.setattr(warmup, "_future", None)  # never started: nothing to wait for
    assert warmup.wait_before_exit() is True
