"""Deliver core :class:`~neurolab_gui.core.events.Signal` emissions on the GUI thread.

Core signals fire on whatever thread changed the state (acquisition reader,
calibration worker, bias listener).  :func:`relay` connects a core signal to a
Qt slot through a queued connection, so the slot always runs on the thread of
``owner`` (the GUI thread) and never touches widgets from a worker.
"""

from __future__ import annotations

from collections.abc import Callable

from PyQt6.QtCore import QObject, Qt, pyqtSignal

from neurolab_gui.core.events import Signal


class _Relay(QObject):
    fired = pyqtSignal(tuple)


def relay(signal: Signal, slot: Callable[..., object], owner: QObject) -> Callable[..., None]:
    """Call ``slot(*args)`` on ``owner``'s thread whenever ``signal`` emits; returns the core handler.

    The relay is parented to ``owner``; when ``owner`` is destroyed the core handler is
    disconnected so no emit reaches a deleted widget.
    """
    r = _Relay(owner)
    r.fired.connect(lambda args: slot(*args), Qt.ConnectionType.QueuedConnection)

    def handler(*args: object) -> None:
        try:
            r.fired.emit(args)
        except RuntimeError:  # the owner was deleted while the core still emitted
            signal.disconnect(handler)

    signal.connect(handler)
    owner.destroyed.connect(lambda *_: signal.disconnect(handler))
    return handler
