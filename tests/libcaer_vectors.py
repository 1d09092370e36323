"""Loading the golden vectors recorded from libcaer (``tests/data/libcaer``, see its PROVENANCE.md)."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from pathlib import Path

VECTORS = Path(__file__).parent / "data" / "libcaer" / "vectors.json.gz"


@functools.cache
def vectors() -> dict:
    with gzip.open(VECTORS, "rt", encoding="utf-8") as f:
        return json.load(f)


def sequence(name: str) -> list[tuple[str, int, int, int, str]]:
    """A recorded control-transfer sequence as ``(direction, bRequest, wValue, wIndex, data hex)``."""
    return [tuple(t) for t in vectors()["sequences"][name]]


def digest(transfers: list[tuple]) -> str:
    """The digest PROVENANCE.md describes for sequences stored only as a hash."""
    blob = "\n".join(json.dumps(list(t), separators=(",", ":")) for t in transfers).encode()
    return hashlib.sha256(blob).hexdigest()


class RecordingDevice:
    """A pyusb ``Device`` stand-in that records every control transfer the way the harness did:
    ``(direction, bRequest, wValue, wIndex, data hex)``, IN data being what it answered."""

    iSerialNumber = 0
    bcdDevice = 3

    def __init__(self, registers: dict[tuple[int, int], int] | None = None) -> None:
        self.registers = dict(registers or {})
        self.transfers: list[tuple[str, int, int, int, str]] = []

    def ctrl_transfer(self, bmRequestType, bRequest, wValue=0, wIndex=0, data_or_wLength=None, timeout=None):
        if bmRequestType & 0x80:
            if bRequest == 0xC6:
                reply = b"\xc6\x00"
            else:
                reply = self.registers.get((wValue, wIndex), 0).to_bytes(4, "big")
            self.transfers.append(("in", bRequest, wValue, wIndex, reply.hex()))
            return reply
        data = bytes(data_or_wLength)
        self.transfers.append(("out", bRequest, wValue, wIndex, data.hex()))
        return len(data)
