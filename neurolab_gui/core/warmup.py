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
imported modules are never walked by a collection again.  ``neurolab gui`` starts it as soon as
the board's events are drawn (:func:`neurolab_gui.qt.app.launch`); later callers get the same
future.  Nothing here is Qt.
"""

from __future__ import annotations

import gc
import importlib
import logging
import threading
import time
from concurrent.futures import Future

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

_lock = threading.Lock()
_future: Future | None = None


def _load_decoder() -> None:
    """Load the event decoder's compiled kernel (the first decode of a board's stream would, unless
    the app deferred it: ``drivers.dynapse1.event_words.defer_kernel``)."""
    from drivers.dynapse1.event_words import load_kernel

    load_kernel()


def _warm(modules: tuple[str, ...], future: Future) -> None:
    started = time.perf_counter()
    automatic = gc.isenabled()
    gc.disable()  # imports make no cyclic garbage worth a collection; their objects live as long as the app
    try:
        for load in (_load_decoder, *(lambda name=name: importlib.import_module(name) for name in modules)):
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
