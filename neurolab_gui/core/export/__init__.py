"""Exports of a session file to formats other tools read: NWB (pynwb), AEDAT 3.1 (cAER), CSV.

Every exporter reads through :class:`~neurolab_gui.core.session_file.SessionFile` and places
events on the recording's one continuous timeline (session time, seconds from the start), so
reconnects and board timestamp resets never make time jump back in an export.
"""

from __future__ import annotations

from ._output import ExportWriteError
from .aedat import export_aedat
from .csv_table import export_csv
from .nwb import export_nwb

__all__ = ["ExportWriteError", "export_aedat", "export_csv", "export_nwb"]
