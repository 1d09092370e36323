"""Qt-free application core.  Never imports PyQt6, pyqtgraph or qasync (import-linter enforces it)."""
