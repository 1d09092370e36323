"""How an exporter reports that writing its output file failed (disk full, file-size limit, no permission)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class ExportWriteError(OSError):
    """Writing the export file failed; ``strerror`` says why (e.g. "No space left on device").

    A separate type so that the caller can tell a failed *write* of the output, which it reports
    under the output name the user gave, from a recording that cannot be *read*.
    """


@contextmanager
def writing(out: str | Path) -> Iterator[None]:
    """Raise any ``OSError`` of the block (opening, writing, closing ``out``) as :class:`ExportWriteError`."""
    try:
        yield
    except ExportWriteError:
        raise
    except OSError as exc:
        raise ExportWriteError(exc.errno, exc.strerror or str(exc), str(out)) from exc
