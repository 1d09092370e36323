"""A folder the test process cannot create files in, without chmod (root, who runs some test
machines, writes anywhere whatever the mode says)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest


def refuse_files_in(monkeypatch: pytest.MonkeyPatch, folder: Path, code: int = errno.EACCES) -> None:
    """Make ``os.open`` fail with ``code`` (EACCES: another user's folder; EROFS: a read-only file
    system) for any file it would create directly in ``folder``, as the kernel would for a normal user."""
    real_open = os.open
    folder = Path(folder).resolve()

    def fake_open(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and Path(path).resolve().parent == folder:
            raise OSError(code, os.strerror(code), str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(os, "open", fake_open)
