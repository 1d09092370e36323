"""A disk that fills half-way, for the write-failure tests of the commands that write files."""

from __future__ import annotations

import errno
import os


class FullDisk:
    """Wraps an open file: once ``budget`` bytes (characters, for a text file) are written, the disk
    is full.  As on a real disk, the part of a write that still fits is written, then ``OSError``
    ENOSPC is raised; every later write raises at once."""

    def __init__(self, fh, budget: int) -> None:
        self._fh, self._left = fh, budget

    def write(self, data):
        piece = data if isinstance(data, str) else memoryview(data).cast("B")
        if len(piece) > self._left:
            self._fh.write(piece[: self._left])
            self._left = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self._left -= len(piece)
        return self._fh.write(piece)

    def __getattr__(self, name):
        return getattr(self._fh, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
