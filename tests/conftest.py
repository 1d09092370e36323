"""Test configuration shared by the whole suite.

Qt runs offscreen here, set by the configuration rather than by the person
running the tests; no test needs hardware, a display or the network.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("MPLBACKEND", "Agg")
