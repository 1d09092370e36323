"""A disk that fills half-way, for the write-failure tests of the commands that write files."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import threading
from pathlib import Path


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


def run_under_file_size_limit(expression: str, limit_bytes: int, timeout: float = 120) -> subprocess.CompletedProcess:
    """Print ``json.dumps(EXPRESSION)`` from a fresh Python process whose files may not grow beyond
    ``limit_bytes`` (RLIMIT_FSIZE: a disk that fills, with no privileges needed); ``main`` is the CLI's
    entry there.  The process's exit status tells a crash at interpreter exit (a segfault: -11)."""
    script = (
        "import json, resource\n"
        f"resource.setrlimit(resource.RLIMIT_FSIZE, ({int(limit_bytes)}, resource.RLIM_INFINITY))\n"
        "from neurolab_gui.cli import main\n"
        f"print(json.dumps({expression}))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=timeout)


def fill_disk_from(monkeypatch, first_failing: str, every_later_write: bool = True) -> threading.Event:
    """Writes into a session-file segment whose path matches ``first_failing`` (a name, or a tail
    such as ``rec.h5.segments/seg-000001.h5``, as ``Path.match`` takes it) fail with ENOSPC, and with
    ``every_later_write`` every write after the first failure too.  Without it the disk has room
    again for the small final index once the writer deleted the failed segment, as a real disk does.
    The returned event is set at the first failure."""
    from neurolab_gui.core import session_file

    paths: dict[int, Path] = {}
    full = threading.Event()
    real_init, real_pwrite = session_file._Sink.__init__, os.pwrite

    def init(self, path):
        real_init(self, path)
        paths[self.fd] = Path(path)

    def pwrite(fd, data, offset):
        path = paths.get(fd)
        if (every_later_write and full.is_set()) or (path is not None and path.match(first_failing)):
            full.set()
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_pwrite(fd, data, offset)

    monkeypatch.setattr(session_file._Sink, "__init__", init)
    monkeypatch.setattr(session_file.os, "pwrite", pwrite)
    return full
