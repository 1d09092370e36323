"""AEDAT 3.1 export: DYNAP-SE spike packets as cAER writes them.

Format (iniVation, "AEDAT 3.1", docs.inivation.com/software/software-advanced-usage/file-formats/
aedat-3.1.html, and libcaer's ``events/common.h`` and ``events/spike.h``):

* ASCII header lines ending in CRLF: ``#!AER-DAT3.1``, ``#Format: RAW``, ``#Source 1: DYNAPSE``,
  ``#Start-Time: %Y-%m-%d %H:%M:%S (TZ%z)``, ``#!END-HEADER``;
* then typed event packets, little-endian: a 28-byte header of int16 eventType (12 = spike),
  int16 eventSource, int32 eventSize (8), int32 eventTSOffset (4: the timestamp follows the
  data word), int32 eventTSOverflow, int32 eventCapacity, int32 eventNumber, int32 eventValid;
* each spike event is a uint32 data word — bit 0 valid, bits 1–5 source core id, bits 6–11 chip
  id, bits 12–31 neuron id — and an int32 timestamp in µs; the full timestamp is
  ``eventTSOverflow << 31 | timestamp``, so a packet never spans an overflow boundary.

Chip ids are written 0–3: libcaer's latest DYNAP-SE event translator subtracts the routing
shift of 1 (``DYNAPSE_CHIPID_SHIFT``) from the hardware field, as our driver does (older libcaer
versions wrote the raw field); neuron ids are within the core (0–255).  The source line is what
cAER's Dynap-se input module writes, ``#Source <module id>: `` + ``chipIDToName(DYNAPSE_CHIP_DYNAPSE)``
= ``DYNAPSE`` (cAER ``modules/ini/dynapse_utils.h``; older cAER versions wrote ``DYNAPSEFX2``),
with module id 1.  Timestamps are session time in µs (monotonic across reconnects and timestamp
resets), not the board's raw counter.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import numpy as np

from ..session_file import SPIKES, SessionFile, open_session_file
from ._output import writing

SPIKE_EVENT = 12
SOURCE_ID = 1
PACKET_HEADER = np.dtype(
    [("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("ts_offset", "<i4"), ("ts_overflow", "<i4"),
     ("capacity", "<i4"), ("number", "<i4"), ("valid", "<i4")]
)
SPIKE = np.dtype([("data", "<u4"), ("timestamp", "<i4")])
#: Events per packet (cAER sizes packets by time and count; any size is valid).
PACKET_EVENTS = 4096


def header_lines(start_time_iso: str, source: str = "DYNAPSE") -> bytes:
    start = datetime.fromisoformat(start_time_iso)
    lines = [
        "#!AER-DAT3.1",
        "#Format: RAW",
        f"#Source {SOURCE_ID}: {source}",
        f"#Start-Time: {start.strftime('%Y-%m-%d %H:%M:%S')} (TZ{start.strftime('%z') or '+0000'})",
        "#!END-HEADER",
    ]
    return "".join(line + "\r\n" for line in lines).encode("ascii")


def export_aedat(session_path: str | Path | SessionFile, out: str | Path) -> int:
    """Write the recording's spikes as AEDAT 3.1 spike packets; returns the number of events."""
    session = open_session_file(session_path)
    cols = session.read_stream(SPIKES) if SPIKES in session.streams else None
    with writing(out), open(out, "wb") as fh:
        fh.write(header_lines(str(session.attrs["start_time"])))
        if cols is None or not len(cols["t"]):
            return 0
        t_us = np.rint(session.session_time_s(cols["t"], cols["_epoch"]) * 1e6).astype(np.int64)
        order = np.argsort(t_us, kind="stable")
        t_us = t_us[order]
        t_us -= min(0, int(t_us[0]))  # AEDAT timestamps are non-negative; batches that went back can start before 0
        data = (
            1
            | (cols["core"][order].astype(np.uint32) << 1)
            | (cols["chip"][order].astype(np.uint32) << 6)
            | (cols["neuron"][order].astype(np.uint32) << 12)
        )
        overflow = t_us >> 31
        # packet boundaries: every PACKET_EVENTS events and wherever the overflow counter changes
        cuts = np.union1d(np.arange(0, len(t_us), PACKET_EVENTS), np.flatnonzero(np.diff(overflow)) + 1)
        for a, b in zip(cuts, [*cuts[1:], len(t_us)], strict=True):
            n = int(b - a)
            head = np.array([(SPIKE_EVENT, SOURCE_ID, SPIKE.itemsize, 4, int(overflow[a]), n, n, n)], dtype=PACKET_HEADER)
            events = np.empty(n, SPIKE)
            events["data"] = data[a:b]
            events["timestamp"] = (t_us[a:b] & 0x7FFFFFFF).astype(np.int32)
            fh.write(head.tobytes())
            fh.write(events.tobytes())
    return len(t_us)
