"""The Qt application: QApplication + qasync event loop, exception hook, main window.

``neurolab gui`` calls :func:`run_app`.  The window comes up whatever happens to
the board: if it cannot be opened (unplugged, no permission) the window shows
the disconnected/error state and the connection bar can reconnect later.
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from pathlib import Path

from PyQt6.QtCore import QTimer
from PyQt6.QtWidgets import QApplication

from drivers.dynapse1.event_words import defer_kernel
from neurolab_gui.core.connection import app_target
from neurolab_gui.core.session import Session
from neurolab_gui.core.warmup import wait_before_exit, warm_up

from .main_window import MainWindow


def create_main_window(session: Session | None = None, layout_path: Path | None = None, install_hooks: bool = True) -> MainWindow:
    """Build the window (QApplication must exist).  Installs the exception hooks unless told not to."""
    session = session or Session()
    window = MainWindow(session, layout_path=layout_path)
    if install_hooks:
        window.reporter.install()
    window.restore_layout()
    return window


def launch(board: str = "emulator", seed: int = 0, mismatch: bool = True, layout_path: Path | None = None,
           install_hooks: bool = True) -> tuple[QApplication, Session, MainWindow]:
    """Start opening ``board`` and build and show the window; returns at once (the board opens on a worker).

    The board (an emulator child process, or USB) starts opening before the window is built, so
    the two overlap; the panels read the session's state when they are built and follow its
    events after, so none of them misses the connection.
    """
    # numpy decodes the first events; the compiled decoder (0.5 s of CPU to load) comes with the warm-up
    defer_kernel()
    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("NeuroLab")
    app.setOrganizationName("NeuroLab")
    session = Session()
    session.emulator_in_separate_process = True  # a full emulated board must never stall drawing
    target = app_target(board, seed, mismatch)  # `neurolab gui` started its emulator child already
    # a board that cannot be opened is logged by the connection and shown by the window: not here too
    session.connection.connect_in_background(target)
    window = create_main_window(session, layout_path=layout_path, install_hooks=install_hooks)
    window.connection_bar.select(board, seed, mismatch)
    window.show()
    # Everything built so far lives as long as the app: keep it out of the garbage collector's
    # full passes, which hold the GIL while they walk every tracked object (a stall of the
    # window whoever triggers them).
    gc.freeze()
    _warm_up_after_first_events(session, window)
    return app, session, window


def _warm_up_after_first_events(session: Session, window: MainWindow, quiet_board_s: float = 3.0) -> None:
    """Load torch, the conversion and calibration stacks (:func:`~neurolab_gui.core.warmup.warm_up`)
    once the board's first events are drawn, or when no board opened, or when a connected board
    stayed quiet for ``quiet_board_s``.

    Not before: that import holds the GIL in long calls and would delay the first events; not at
    the user's first conversion or calibration either, where it froze the window 0.1-1 s.
    """
    connected_at: list[float] = []
    timer = QTimer(window)

    def check() -> None:
        state = session.connection.status.state
        if state == "connected" and not connected_at:
            connected_at.append(time.monotonic())
        frame = window.raster_panel.last_frame
        drawn = frame is not None and frame.n_events > 0
        quiet = bool(connected_at) and time.monotonic() - connected_at[0] > quiet_board_s
        if drawn or quiet or state in ("disconnected", "error", "unplugged"):
            timer.stop()
            warm_up()

    timer.timeout.connect(check)
    timer.start(100)


def run_app(board: str = "emulator", seed: int = 0, mismatch: bool = True) -> int:
    """Open the NeuroLab window connected to ``board`` ("emulator" or a serial) and run until it closes.

    Returns the process exit code.
    """
    import qasync  # imported after PyQt6 so qasync picks the PyQt6 binding

    app, session, window = launch(board, seed, mismatch)

    async def main() -> None:
        closed = asyncio.Event()
        app.aboutToQuit.connect(closed.set)
        await closed.wait()

    try:
        qasync.run(main())
    finally:
        session.close()
        window.reporter.uninstall()
        wait_before_exit()  # a window closed in its first seconds: the warm-up may still be importing torch
    return 0
