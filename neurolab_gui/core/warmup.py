"""Load the heavy stacks once, early, off the GUI thread, and keep them out of the garbage collector.

The first conversion, training or calibration of a session imports torch and the conversion and
calibration packages (~1000 modules), and its first board read loads the event decoder's compiled
kernel (numba).  Both hold the GIL in long single calls (torch's extension module initialises its
bindings in one call; numba links its cached code in one call), and the ~10^5 objects those
imports create make the garbage collector run full passes over them, which hold the GIL too.  On
a worker thread that is still a stall of the window: measured 0.1-1 s gaps of the GUI thread's
timer at the user's first click (``tests/test_gui_user_actions.py``, ``docs/ARCHITECTURE.md``).

:func:`warm_up` does that work once per process, on a thread of its own, with the collector's
automatic passes paused while it imports, and then freezes the heap (``gc.freeze``), so the
imported modules are never walked by a collection again.  Before importing torch it maps torch's
shared libraries with a GIL-free ``dlopen`` call (:func:`preload_shared_libraries`).  ``neurolab gui`` starts it as soon as
the board's events are drawn (:func:`neurolab_gui.qt.app.launch`); later callers get the same
future.  Nothing here is Qt.
"""

from __future__ import annotations

import ctypes
import gc
import importlib
import importlib.util
import logging
import os
import sys
import threading
import time
from concurrent.futures import Future
from pathlib import Path

log = logging.getLogger(__name__)

#: What the first conversion, training, deployment or calibration would import on its worker.
HEAVY_MODULES: tuple[str, ...] = (
    "torch",
    "scipy.linalg",
    "neurolab_gui.core.conversion.pipeline",
    "neurolab_gui.core.conversion.deployment",
    "neurolab_gui.core.calibration.board_calibration",
    "neurolab_gui.core.calibration.engine",
)

#: torch's shared libraries in load order (each needs the ones before it), from its ``lib`` folder.
TORCH_LIBRARIES: tuple[str, ...] = ("libgomp.so.1", "libc10.so", "libtorch_cpu.so", "libtorch.so", "libtorch_python.so")

_lock = threading.Lock()
_future: Future | None = None


def _load_decoder() -> None:
    """Load the event decoder's compiled kernel (the first decode of a board's stream would, unless
    the app deferred it: ``drivers.dynapse1.event_words.defer_kernel``)."""
    from drivers.dynapse1.event_words import load_kernel

    load_kernel()


def preload_shared_libraries(package: str = "torch", names: tuple[str, ...] = TORCH_LIBRARIES) -> list[str]:
    """``dlopen`` a package's shared libraries through a ctypes call, which releases the GIL.

    ``import torch`` maps and relocates libtorch_cpu (~430 MB) and runs its static initialisers
    inside the import machinery's ``dlopen``, with the GIL held: the window's heartbeat stopped for
    0.3-0.6 s once, about a second after the first events (bench/app_start.py
    ``worst_gap_warm_ms``: 283-436 ms at load ~1).  ``ctypes.CDLL`` holds the GIL as well (a
    193 ms gap measured), but a *call* of libc's ``dlopen`` through ctypes releases it.  Loaded
    first with ``RTLD_GLOBAL``, the libraries are already in the process when ``import torch``
    asks for them, and what is left of the import runs Python in small pieces (worst gap beside
    it 32-52 ms in the same probe).  Linux/glibc only; anywhere else, or when a library is
    missing, nothing is loaded and the import does the work as before.

    Returns the names of the libraries loaded (empty when nothing was done).
    """
    if not sys.platform.startswith("linux"):
        return []
    spec = importlib.util.find_spec(package)  # a top-level spec: the package is not imported
    if spec is None or not spec.submodule_search_locations:
        return []
    folder = Path(next(iter(spec.submodule_search_locations))) / "lib"
    paths = [folder / name for name in names if (folder / name).exists()]
    if not paths:
        return []
    libc = ctypes.CDLL(None)
    dlopen = libc.dlopen
    dlopen.restype, dlopen.argtypes = ctypes.c_void_p, [ctypes.c_char_p, ctypes.c_int]
    loaded = []
    for path in paths:
        if not dlopen(os.fsencode(path), os.RTLD_NOW | os.RTLD_GLOBAL):
            log.warning("warm-up: could not preload %s; importing %s loads it instead", path.name, package)
            break
        loaded.append(path.name)
    return loaded


def _preload_for(modules: tuple[str, ...]) -> None:
    if "torch" in modules and "torch" not in sys.modules:
        preload_shared_libraries("torch")


def _warm(modules: tuple[str, ...], future: Future) -> None:
    started = time.perf_counter()
    automatic = gc.isenabled()
    gc.disable()  # imports make no cyclic garbage worth a collection; their objects live as long as the app
    try:
        for load in (_load_decoder, lambda: _preload_for(modules), *(lambda name=name: importlib.import_module(name) for name in modules)):
            try:
                load()
            except Exception as exc:  # noqa: BLE001 - the action that needs it reports it when it runs
                log.warning("warm-up: %s", exc)
    finally:
        gc.freeze()
        if automatic:
            gc.enable()
    future.set_result(time.perf_counter() - started)


def warm_up(modules: tuple[str, ...] = HEAVY_MODULES) -> Future:
    """Start loading ``modules`` (and the decoder kernel) on a daemon thread, once per process.

    Returns a future whose result is the seconds it took; a second call returns the first call's
    future (whatever its modules).
    """
    global _future
    with _lock:
        if _future is None:
            _future = Future()
            _future.set_running_or_notify_cancel()
            threading.Thread(target=_warm, args=(tuple(modules), _future), name="neurolab-warm-up", daemon=True).start()
        return _future


def wait_before_exit(timeout_s: float = 60.0) -> bool:
    """Wait (at most ``timeout_s``) for a warm-up that is still importing; True when none runs now.

    The warm-up is a daemon thread: a window closed in the app's first seconds let the interpreter
    finalise while it was inside torch's import (its modules half torn down under it: a segfault
    in 1 of 3 closes 2.5 s after start).  The window is gone by then, so waiting costs nobody a
    frozen screen, only a process that ends a few seconds later.
    """
    with _lock:
        future = _future
    if future is None or future.done():
        return True
    try:
        future.result(timeout_s)
    except TimeoutError:
        log.warning("warm-up: still importing after %.0f s at exit; exiting anyway", timeout_s)
        return False
    return True

