"""Reading files a user names: regular files only, and never more bytes than a limit.

A path from a command line or a file dialog can name anything.  ``/dev/zero`` has ``st_size`` 0
and never ends, so a reader that trusts ``stat`` and then reads "the whole file" fills the
memory; a FIFO blocks ``open()`` until some other process writes to it; a directory or a
device is no file at all.  Every reader of user files (bias files, calibration profiles, data
``.npz`` files, session and NIR files) goes through this module:

* :func:`check_regular_file` -- for readers that hand a *path* to a library (h5py, numpy, nir):
  the path must name a regular file (after symlinks).  ``os.stat`` never blocks, not even on a FIFO.
* :func:`open_regular` -- opens without blocking (``O_NONBLOCK``: a FIFO with no writer opens at
  once) and checks the *opened* file with ``fstat``, so what is read is what was checked.
* :func:`read_regular` -- at most ``limit`` bytes of such a file: the size is checked first, and
  the read itself asks for ``limit + 1`` bytes whatever ``stat`` said.
* :func:`write_replacing` -- the writing side: a small file (a report, a layout, a calibration
  profile) written to a uniquely named temporary file beside its path and renamed over it, so a
  failed or killed write leaves the old file (or none), never half of one, two writers at once
  never disturb each other, and a FIFO at the path is replaced instead of blocking the writer.

It sits in ``drivers`` (like :mod:`drivers.resources`) because the lowest layer that reads user
files, the bias files, lives here; everything above may use it.
"""

from __future__ import annotations

import os
import secrets
import stat
from pathlib import Path
from typing import BinaryIO


class UserFileError(ValueError):
    """A user-named path that is not a readable regular file, or is too large; the message names it."""


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a plain file"


def _not_regular(path: Path, mode: int, what: str) -> UserFileError:
    return UserFileError(f"{path} is not a regular file but {_kind(mode)}; {what} must be a plain file")


def check_regular_file(path: str | Path, what: str = "the file") -> Path:
    """``path`` as a :class:`~pathlib.Path` if it names a regular file (symlinks followed).

    Raises
    ------
    FileNotFoundError
        naming the path, when nothing is there
    UserFileError
        naming the path and what it is (a directory, a FIFO, a device ...), or why it cannot be read
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode  # never blocks, not even on a FIFO
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except OSError as exc:
        raise UserFileError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if not stat.S_ISREG(mode):
        raise _not_regular(path, mode, what)
    return path


def open_regular(path: str | Path, what: str = "the file") -> BinaryIO:
    """A binary file object of ``path``, which must be a regular file; raises like :func:`check_regular_file`.

    The check is made on the opened descriptor, and opening never blocks (a FIFO without a
    writer would block a plain ``open()`` for ever).
    """
    path = Path(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise FileNotFoundError(f"{path} does not exist") from None
    except IsADirectoryError:
        raise UserFileError(f"{path} is not a regular file but a directory; {what} must be a plain file") from None
    except OSError as exc:
        raise UserFileError(f"{path} cannot be read ({exc.strerror or exc})") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(path, mode, what)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)  # a regular file ignores the flag; cleared so the object behaves as usual
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, limit: int, what: str = "the file") -> bytes:
    """The bytes of the regular file ``path``: at most ``limit``, else :class:`UserFileError`.

    Raises like :func:`check_regular_file`, and :class:`UserFileError` for a file of more than
    ``limit`` bytes (found from its size, or while reading if it grows).
    """
    path = Path(path)
    with open_regular(path, what) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise UserFileError(f"{path}: {size} bytes; {what} may have at most {limit} bytes")
        try:
            raw = f.read(limit + 1)  # bounded whatever the size said
        except OSError as exc:
            raise UserFileError(f"{path} cannot be read ({exc.strerror or exc})") from None
    if len(raw) > limit:
        raise UserFileError(f"{path}: more than {limit} bytes; {what} may have at most {limit} bytes")
    return raw


def write_replacing(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` through a temporary file beside it and an atomic rename.

    The temporary file has a name of its own (``.<name>.<random>.part``, created exclusively), so two
    processes or threads writing the same path at once never write into, or rename, each other's
    file: each rename puts one complete document at ``path``, and a reader sees the old file or a
    new one, never part of one.  The data is flushed to the disk (``fsync``) before the rename, so a
    crash right after it does not leave an empty file.  Creates the parent directory.  On any error
    the temporary file is removed and the error raised; whatever was at ``path`` is then untouched.
    """
    path = Path(path)
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, part = create_temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(raw)
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, path)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return path


def create_temporary_beside(path: str | Path) -> tuple[int, Path]:
    """A new, exclusively created temporary file beside ``path``: its descriptor and its path.

    Its name (``.<name>.<random>.part``) is its own: two writers of one ``path`` never share a
    temporary, and a user's file is never taken for one.  The caller writes it, renames it onto
    ``path`` when complete and removes it otherwise (as :func:`write_replacing` does for data in memory).

    Not :func:`tempfile.mkstemp`: that creates the file with mode 0600, and a report or layout
    should get the usual permissions (0666 less the umask, which ``os.open`` applies).
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        part = path.with_name(f".{path.name}.{secrets.token_hex(6)}.part")
        try:
            return os.open(part, flags, 0o666), part
        except FileExistsError:  # 48 random bits: only a leftover of the same name, practically never
            continue
    raise FileExistsError(f"cannot create a temporary file beside {path}")


def folder_problem(path: str | Path, *, create_missing: bool = False) -> str | None:
    """Why no file can be created at ``path`` because of its folder (None: the folder allows it).

    The folder is ``path``'s parent; with ``create_missing`` (a writer that creates missing
    folders) the nearest folder above it that exists, or is a (dangling) link.  It must be a
    directory this process can create a file in.

    That is found by doing it: an exclusive temporary (:func:`create_temporary_beside`, the file
    every writer here starts with) is created in the folder and removed at once.  ``os.access``
    alone answers yes for root in any folder, and for ``/proc`` or ``/sys``, and says nothing of
    ACLs or a file system mounted read-only on some paths; a check that says yes there lets a
    long conversion or a calibration run and then fail to write its result.
    """
    folder = Path(path).parent
    if create_missing:
        while not folder.exists() and not folder.is_symlink() and folder != folder.parent:
            folder = folder.parent
    if not folder.is_dir():
        return f"directory {folder} does not exist" if not folder.exists() and not folder.is_symlink() else f"{folder} is not a directory"
    try:
        fd, part = create_temporary_beside(folder / Path(path).name)
    except OSError as exc:
        return f"directory {folder} is not writable ({exc.strerror or exc})"
    os.close(fd)
    try:
        part.unlink()
    except OSError as exc:  # created but not removable (a sticky folder of another user?): nothing works there
        return f"directory {folder} does not let a file be removed ({exc.strerror or exc}); {part} is left there"
    return None
