"""What a command printed, as the tests of its error paths read it."""

from __future__ import annotations


def one_error_line(text: str, *names: object) -> str:
    """The single ``error: ...`` line of a command's stderr ``text``; it names every one of ``names``.

    Fails on a Python traceback, and on "Exception ignored" (an error inside a destructor, e.g.
    h5py's on a full disk), anywhere in ``text``: the user must get the one line and nothing else
    alarming.
    """
    assert "Traceback" not in text and "Exception ignored" not in text, text
    lines = [line for line in text.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, text
    for name in names:
        assert str(name) in lines[0], lines[0]
    return lines[0]
