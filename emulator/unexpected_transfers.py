"""Transfers libcaer never sends, as the virtual FPGAs of this process saw them.

A module of its own, with nothing but the standard library: a board whose emulator runs in a child
process hands the child's list back when it closes (``emulator.fpga_process``), and importing
``emulator.virtual_fpga`` there would load the simulator's imports into the app's process at
every disconnect.
"""

from __future__ import annotations

from collections import deque

#: How many unexpected transfers are kept for inspection (all are counted).
UNEXPECTED_LOG_LENGTH = 1000
#: Every unexpected transfer seen by any virtual FPGA of this process, ``(serial, what)``; the test
#: suite fails a test that leaves entries here (``tests/conftest.py``).
UNEXPECTED_IN_PROCESS: deque[tuple[str, str]] = deque(maxlen=UNEXPECTED_LOG_LENGTH)
