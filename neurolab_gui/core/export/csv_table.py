"""CSV export: one row per event, spikes and stimulus, in session-time order."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..session_file import INPUT, SPIKES, SessionFile, open_session_file
from ._output import writing

HEADER = "time_s,board_t_us,epoch,kind,chip,core,neuron"
ROWS_PER_WRITE = 1_000_000


def export_csv(session_path: str | Path | SessionFile, out: str | Path) -> int:
    """Write ``time_s,board_t_us,epoch,kind,chip,core,neuron`` rows (kind: spike or input); returns rows written."""
    session = open_session_file(session_path)
    columns = []
    for stream, kind in ((SPIKES, 0), (INPUT, 1)):
        if stream not in session.streams:
            continue
        c = session.read_stream(stream)
        ts = session.session_time_s(c["t"], c["_epoch"]) if len(c["t"]) else np.zeros(0)
        columns.append((ts, c["t"], c["_epoch"], np.full(len(ts), kind, np.int8), c["chip"], c["core"], c["neuron"]))
    merged = [np.concatenate(parts) for parts in zip(*columns, strict=True)] if columns else [np.zeros(0)] * 7
    order = np.argsort(merged[0], kind="stable")
    kinds = np.array(["spike", "input"])
    n = len(order)
    with writing(out), open(out, "w", newline="") as fh:
        fh.write(HEADER + "\n")
        for a in range(0, n, ROWS_PER_WRITE):
            sel = order[a : a + ROWS_PER_WRITE]
            block = np.rec.fromarrays(
                [merged[0][sel], merged[1][sel], merged[2][sel], kinds[merged[3][sel].astype(int)], merged[4][sel], merged[5][sel], merged[6][sel]]
            )
            np.savetxt(fh, block, fmt=["%.6f", "%d", "%d", "%s", "%d", "%d", "%d"], delimiter=",")
    return n
