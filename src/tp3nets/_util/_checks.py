"""Argument checks shared by the public functions: one family, one message.

Every check names who asks, the argument and what it takes, in one template::

    <who> expects <name> to be <what>, got <value!r>

A value out of range raises ``ValueError``. A value of the wrong type raises what the
callers raised before the checks were one family: ``ValueError`` for the numbers (ints,
probabilities, positive numbers: ``"3"`` or ``2.0`` for an int is a bad value, as it always
was), ``TypeError`` for seeds and bools; ``wrong_type=`` says otherwise where a caller
always raised ``TypeError`` (a sample digit's label). A check of a composite argument (an
int or a pair, a count or a fraction) builds its exception with :func:`type_error` or
:func:`value_error`, so that its message has the same shape.
"""

from __future__ import annotations

import math
import numbers
import operator
from typing import Any

__all__ = [
    "check_bool",
    "check_int",
    "check_positive",
    "check_probability",
    "check_real",
    "check_seed",
    "type_error",
    "value_error",
]

#: What a check raises for a value of the wrong type.
WrongType = type[TypeError] | type[ValueError]


def _message(who: str, name: str, what: str, value: object) -> str:
    return f"{who} expects {name} to be {what}, got {value!r}"


def type_error(who: str, name: str, what: str, value: object) -> TypeError:
    """The family's ``TypeError``, for a caller that refuses a type as such.

    Example:
        >>> type_error("digit", "label", "an int from 0 to 9", 7.0)
        TypeError('digit expects label to be an int from 0 to 9, got 7.0')
    """
    return TypeError(_message(who, name, what, value))


def value_error(who: str, name: str, what: str, value: object) -> ValueError:
    """The family's ``ValueError``, for a value out of range (or of a wrong type, where
    the caller has always said ``ValueError`` for it).

    Example:
        >>> value_error("predict", "batch_size", "a positive int", 0)
        ValueError('predict expects batch_size to be a positive int, got 0')
    """
    return ValueError(_message(who, name, what, value))


def _wrong_type(kind: WrongType, who: str, name: str, what: str, value: object) -> Exception:
    return kind(_message(who, name, what, value))


def _int_words(minimum: int | None, maximum: int | None) -> str:
    if maximum is not None:
        low = "" if minimum is None else f"{minimum}"
        return f"an int in [{low}, {maximum}]" if low else f"an int <= {maximum}"
    return {None: "an int", 0: "a non-negative int", 1: "a positive int"}.get(
        minimum, f"an int >= {minimum}"
    )


def check_int(
    value: Any,
    name: str,
    *,
    who: str,
    minimum: int | None = 1,
    maximum: int | None = None,
    what: str | None = None,
    wrong_type: WrongType = ValueError,
) -> int:
    """``value`` as an int in ``[minimum, maximum]`` (``None``: no bound).

    Python and NumPy integers (anything with ``__index__``) are accepted; ``bool``,
    floats and strings are not.

    Args:
        value: what the user passed.
        name: the argument's name, as the user typed it.
        who: the public function or class that takes it.
        minimum: the smallest value accepted.
        maximum: the largest value accepted.
        what: the words for what is accepted, where the default ("a positive int", "an
            int in [1, 10]" ...) says too little.
        wrong_type: what a value that is not an integer raises.

    Raises:
        ValueError: ``value`` is out of range (or not an integer).
        TypeError: ``value`` is not an integer, with ``wrong_type=TypeError``.

    Example:
        >>> check_int(3, "epochs", who="fit")
        3
        >>> check_int(0, "epochs", who="fit")
        Traceback (most recent call last):
        ...
        ValueError: fit expects epochs to be a positive int, got 0
    """
    words = what if what is not None else _int_words(minimum, maximum)
    try:
        if isinstance(value, bool):
            raise TypeError
        number = operator.index(value)
    except TypeError:
        raise _wrong_type(wrong_type, who, name, words, value) from None
    if (minimum is not None and number < minimum) or (maximum is not None and number > maximum):
        raise value_error(who, name, words, value)
    return number


def check_seed(value: Any, *, who: str, name: str = "seed") -> int:
    """``value`` as an int seed (NumPy integers too; any sign).

    Raises:
        TypeError: ``value`` is not an integer.

    Example:
        >>> check_seed(0.5, who="seed_everything")
        Traceback (most recent call last):
        ...
        TypeError: seed_everything expects seed to be an int, got 0.5
    """
    return check_int(value, name, who=who, minimum=None, wrong_type=TypeError)


def _interval(low: float | None, high: float | None, low_open: bool, high_open: bool) -> str:
    if low is not None and high is not None:
        return f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
    if low is not None:
        return f"{'>' if low_open else '>='} {low:g}"
    if high is not None:
        return f"{'<' if high_open else '<='} {high:g}"
    return ""


def check_real(
    value: Any,
    name: str,
    *,
    who: str,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    finite: bool = True,
    what: str | None = None,
) -> float:
    """``value`` as a float in the interval from ``low`` to ``high`` (``None``: unbounded;
    ``*_open``: that end excluded).

    Python and NumPy numbers are accepted; ``bool``, strings and tensors are not. NaN is
    always refused; infinity unless ``finite=False``.

    Raises:
        ValueError: ``value`` is not a real number, or is NaN, infinite or out of range.

    Example:
        >>> check_real(0.999, "decay", who="EMA", low=0, high=1, low_open=True, high_open=True)
        0.999
        >>> check_real(2, "decay", who="EMA", low=0, high=1, low_open=True, high_open=True)
        Traceback (most recent call last):
        ...
        ValueError: EMA expects decay to be a finite number in (0, 1), got 2
    """
    if what is None:
        bounds = _interval(low, high, low_open, high_open)
        what = ("a finite number" if finite else "a number") + (
            f" in {bounds}" if low is not None and high is not None else
            f" {bounds}" if bounds else ""
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise value_error(who, name, what, value)
    number = float(value)
    if math.isnan(number) or (finite and math.isinf(number)):
        raise value_error(who, name, what, value)
    if low is not None and (number < low or (low_open and number == low)):
        raise value_error(who, name, what, value)
    if high is not None and (number > high or (high_open and number == high)):
        raise value_error(who, name, what, value)
    return number


def check_probability(
    value: Any,
    name: str,
    *,
    who: str,
    low_open: bool = False,
    high_open: bool = False,
    what: str | None = None,
) -> float:
    """``value`` as a probability in ``[0, 1]`` (an open end where asked: ``[0, 1)`` for
    a dropout rate, ``(0, 1]`` for a threshold that must let something through).

    Raises:
        ValueError: ``value`` is not a real number, or is outside the interval.

    Example:
        >>> check_probability(1.5, "p", who="BatchRandomContrast")
        Traceback (most recent call last):
        ...
        ValueError: BatchRandomContrast expects p to be a probability in [0, 1], got 1.5
    """
    words = what if what is not None else (
        f"a probability in {_interval(0, 1, low_open, high_open)}"
    )
    return check_real(value, name, who=who, low=0.0, high=1.0, low_open=low_open,
                      high_open=high_open, what=words)


def check_positive(
    value: Any,
    name: str,
    *,
    who: str,
    allow_zero: bool = False,
    finite: bool = True,
    what: str | None = None,
) -> float:
    """``value`` as a float ``> 0`` (``>= 0`` with ``allow_zero``).

    Raises:
        ValueError: ``value`` is not a real number, not positive, or NaN (or infinite,
            with ``finite``).

    Example:
        >>> check_positive(0.0, "temperature", who="fold_temperature")
        Traceback (most recent call last):
        ...
        ValueError: fold_temperature expects temperature to be a finite number > 0, got 0.0
    """
    return check_real(value, name, who=who, low=0.0, low_open=not allow_zero, finite=finite,
                      what=what)


def check_bool(value: Any, name: str, *, who: str) -> bool:
    """``value`` if it is ``True`` or ``False`` (a ``bool``, not a 0/1 or a string).

    Raises:
        TypeError: anything else.

    Example:
        >>> check_bool(1, "quantized", who="list_models")
        Traceback (most recent call last):
        ...
        TypeError: list_models expects quantized to be a bool, got 1
    """
    if not isinstance(value, bool):
        raise type_error(who, name, "a bool", value)
    return value
