"""The Qt application: QApplication + qasync event loop, exception hook, main window.

``neurolab gui`` calls :func:`run_app`.  The window comes up whatever happens to
the board: if it cannot be opened (unplugged, no permission) the window shows
the disconnected/error state and the connection bar can reconnect later.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

from PyQt6.QtWidgets import QApplication

from neurolab_gui.core.session import Session

from .main_window import MainWindow

log = logging.getLogger(__name__)


def create_main_window(session: Session | None = None, layout_path: Path | None = None, install_hooks: bool = True) -> MainWindow:
    """Build the window (QApplication must exist).  Installs the exception hooks unless told not to."""
    session = session or Session()
    window = MainWindow(session, layout_path=layout_path)
    if install_hooks:
        window.reporter.install()
    window.restore_layout()
    return window


def run_app(board: str = "emulator", seed: int = 0, mismatch: bool = True) -> int:
    """Open the NeuroLab window connected to ``board`` ("emulator" or a serial) and run until it closes.

    Returns the process exit code.
    """
    import qasync  # imported after PyQt6 so qasync picks the PyQt6 binding

    app = QApplication.instance() or QApplication(sys.argv)
    app.setApplicationName("NeuroLab")
    app.setOrganizationName("NeuroLab")
    session = Session()
    session.emulator_in_separate_process = True  # a full emulated board must never stall drawing
    window = create_main_window(session)
    window.connection_bar.select(board, seed, mismatch)
    window.show()
    # opened on a worker thread: the window draws and answers while the board (or emulator) starts
    window.connection_bar.connect_selected().add_done_callback(
        lambda done: done.exception() is None and not done.result() and log.warning("%s", session.connection.status.message)
    )

    async def main() -> None:
        closed = asyncio.Event()
        app.aboutToQuit.connect(closed.set)
        await closed.wait()

    try:
        qasync.run(main())
    finally:
        session.close()
        window.reporter.uninstall()
    return 0

