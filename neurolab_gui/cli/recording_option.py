"""The ``--salvage`` option of the commands that read a recording (``info``, ``export``), and the one
way they open it."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from neurolab_gui.core.session_file import SessionFile

SALVAGE_HINT = "(pass --salvage to read the intact segments)"


def add_salvage_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--salvage", action="store_true",
                        help=f"read a recording with missing or damaged segments: leave them out (a gap) and {what}")


def open_recording(path: str, salvage: bool) -> SessionFile | None:
    """Open ``path`` (strictly, or in salvage mode); None after printing ``error: ...`` on stderr.

    A file refused only for missing or damaged segments gets the hint that ``--salvage`` reads the
    rest; a damaged index gets none (it is never salvageable).
    """
    from neurolab_gui.core.session_file import DamagedSegmentsError, SessionFile

    try:
        return SessionFile(path, salvage=salvage)
    except DamagedSegmentsError as exc:
        print(f"error: {exc} {SALVAGE_HINT}", file=sys.stderr)
    except (ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
    return None
