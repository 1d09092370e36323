"""The Qt application: main window and dockable panels over ``neurolab_gui.core``.  Panels hold no logic.

Qt's raster paint engine hands large fills and image draws to a thread pool of half the cores and
waits for it (``QT_THREAD_PARALLEL_FILLS``).  On a 2-core machine that pool is one thread: the
GUI thread gives the whole fill to it and waits, and on a busy machine it waits for that thread
to be scheduled (the GUI thread's samples in ``QLatch::wait`` under ``drawImage``, 23 % of them
while the robot loop ran, py-spy).  The window's images are small (at most the raster's 1024 x
500), so they are drawn on the GUI thread itself; setting the variable before Qt paints anything
is the only switch Qt offers.
"""

import os

os.environ.setdefault("QT_NO_GUI_THREADPOOL", "1")


def qt_versions() -> str:
    """Qt and PyQt6 versions, for ``neurolab doctor`` (which must not import Qt itself)."""
    from PyQt6.QtCore import PYQT_VERSION_STR, QT_VERSION_STR

    return f"Qt {QT_VERSION_STR}, PyQt6 {PYQT_VERSION_STR}"
