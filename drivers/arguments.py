"""Checks of the values a Python caller (a script, the CLI, the GUI) passes to the API.

The rule the bias values set (ARCHITECTURE, Biases: "integers only: no bool, no 3.9") holds for
every count and id the API takes: Python and numpy integers are accepted; a bool, a float (even
``3.0``) or a string is refused with a ``ValueError`` that names the argument, never truncated
by ``int()`` (``int(1.9)`` is 1, ``int("3")`` is 3, ``True`` is 1, and ``x[:-1]`` quietly drops
a sample).  Durations and other amounts must be finite real numbers: NaN and inf pass a ``<= 0``
check and fail later, far from the call, with Python-internal messages.

It sits in ``drivers`` (like :mod:`drivers.user_files`) because the lowest layer that checks
such values, the board topology's ids, lives here; everything above uses it.
"""

from __future__ import annotations

import math
import numbers
import operator

import numpy as np


def integer(name: str, value: object, wanted: str = "an integer") -> int:
    """``value`` as an ``int``: Python and numpy integers only.

    Raises
    ------
    ValueError
        for a bool, a float, a string or anything else: ``"<name> must be <wanted>, got 2.7"``.
    """
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be {wanted}, got the boolean {value!r}")
    try:
        return operator.index(value)  # ints and numpy integers; 3.9, 3.0 and "3" raise TypeError
    except TypeError:
        raise ValueError(f"{name} must be {wanted}, got {value!r}") from None


def positive_int(name: str, value: object) -> int:
    """``value`` as an ``int`` >= 1 (see :func:`integer`); else a ``ValueError`` naming ``name``."""
    number = integer(name, value, "a positive integer")
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {number}")
    return number


def positive_int_or_none(name: str, value: object) -> int | None:
    """:func:`positive_int`, with None passed through (where None means "all" or "the default")."""
    return None if value is None else positive_int(name, value)


def non_negative_int(name: str, value: object) -> int:
    """``value`` as an ``int`` >= 0 (see :func:`integer`); else a ``ValueError`` naming ``name``."""
    number = integer(name, value, "an integer >= 0")
    if number < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {number}")
    return number


def finite_number(name: str, value: object, *, minimum: float = 0.0, strict: bool = True) -> float:
    """``value`` as a finite ``float`` > ``minimum`` (``strict``) or >= ``minimum``.

    A bool and a string (``"0.1"``) are refused as well as NaN and inf; the message says what is
    wanted: ``"duration_s must be a finite number > 0, got nan"``.
    """
    wanted = f"a finite number {'>' if strict else '>='} {minimum:g}"
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number < minimum or (strict and number == minimum):
        raise ValueError(f"{name} must be {wanted}, got {value!r}")
    return number


def boolean(name: str, value: object) -> bool:
    """``value`` when it is a real bool (Python or numpy); ``"no"`` or 0 are refused, never read as truthy."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)
