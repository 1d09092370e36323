"""The Qt application: main window and dockable panels over ``neurolab_gui.core``.  Panels hold no logic."""


def qt_versions() -> str:
    """Qt and PyQt6 versions, for ``neurolab doctor`` (which must not import Qt itself)."""
    from PyQt6.QtCore import PYQT_VERSION_STR, QT_VERSION_STR

    return f"Qt {QT_VERSION_STR}, PyQt6 {PYQT_VERSION_STR}"
