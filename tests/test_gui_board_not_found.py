"""``neurolab gui --board SERIAL`` for a board that is not plugged in (newcomer report #1).

The app lists the boards on the GUI thread (the connection bar) while a worker opens the board,
so pyusb was imported by two threads at once.  pyusb's modules import each other in a cycle, and
Python broke the resulting import-lock deadlock by handing one thread a half-initialised
``usb.core``: the window said ``partially initialized module 'usb.core' has no attribute
'USBError'`` instead of "no DYNAP-SE1 board found", and said it three times.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

NO_BOARD = "no DYNAP-SE1 board found"
CIRCULAR = "partially initialized module"


def _run(code: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "QT_QPA_PLATFORM": "offscreen"}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=120, env=env)


def test_neurolab_gui_with_a_board_not_found_says_so_once_and_stays_up():
    """Driven as the user meets it: ``neurolab gui --board NOSUCH123``.  The window quits itself
    right after it has shown the failed connection (so every report of that try is out), which
    also shows that it was still up."""
    done = _run("""
        import sys
        from PyQt6.QtCore import QTimer
        from neurolab_gui.qt.main_window import MainWindow

        shown = MainWindow._show_status

        def show_then_quit(self, status):
            shown(self, status)
            if status.state == "error":
                QTimer.singleShot(0, self.close)  # as the user would: the last window closed ends the app

        MainWindow._show_status = show_then_quit
        from neurolab_gui.cli import main

        sys.exit(main(["gui", "--board", "NOSUCH123"]))
    """)
    assert done.returncode == 0, done.stderr
    assert CIRCULAR not in done.stderr, done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    reports = [line for line in done.stderr.splitlines() if NO_BOARD in line]
    assert len(reports) == 1, done.stderr
    assert "could not open DYNAP-SE1 NOSUCH123" in reports[0] and "neurolab devices" in reports[0]
