"""Argument checks shared by the public functions."""

from __future__ import annotations

import numbers
import operator
from typing import Any


def int_seed(seed: object) -> int:
    """``seed`` as an int (NumPy integers too), or a ``TypeError`` that names it."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an int, got {seed!r}")
    return int(seed)


def int_at_least(value: Any, name: str, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum``, or a ``ValueError`` that names it.

    Python and NumPy integers are accepted; ``bool``, floats and strings are not.

    Example:
        >>> int_at_least(3, "epochs")
        3
        >>> int_at_least(0, "epochs")
        Traceback (most recent call last):
        ...
        ValueError: epochs must be a positive int, got 0
    """
    kind = {0: "a non-negative int", 1: "a positive int"}.get(minimum, f"an int >= {minimum}")
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise ValueError(f"{name} must be {kind}, got {value!r}") from None
    if number < minimum:
        raise ValueError(f"{name} must be {kind}, got {value!r}")
    return number
