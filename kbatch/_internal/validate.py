"""Argument checks shared by the public API (plain Python, no Keras).

Every error names the argument, echoes what was received and says what is
expected, in the style of Keras' own messages.
"""

from __future__ import annotations

import math
import numbers


def _is_real(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_number(name, value, *, positive=False, low=None, high=None,
                 low_inclusive=True, high_inclusive=True):
    """Check that `value` is a finite real number in a range; return it as float."""
    if not _is_real(value):
        raise TypeError(
            f"Argument `{name}` must be a number. "
            f"Received: {name}={value!r} (of type {type(value).__name__})"
        )
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"Argument `{name}` must be finite. Received: {name}={value}")
    if positive and value <= 0:
        raise ValueError(
            f"Argument `{name}` must be greater than 0. Received: {name}={value:g}"
        )
    if low is not None and (value < low or (value == low and not low_inclusive)):
        bound = ">=" if low_inclusive else ">"
        raise ValueError(
            f"Argument `{name}` must be {bound} {low:g}. Received: {name}={value:g}"
        )
    if high is not None and (value > high or (value == high and not high_inclusive)):
        bound = "<=" if high_inclusive else "<"
        raise ValueError(
            f"Argument `{name}` must be {bound} {high:g}. Received: {name}={value:g}"
        )
    return value


def check_int(name, value, *, minimum=None, allow_none=False):
    """Check that `value` is an integer (not a bool) >= `minimum`; return it."""
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        if _is_real(value) and float(value).is_integer():
            hint = f" Pass {int(value)} instead of {value!r}."
        else:
            hint = ""
        raise TypeError(
            f"Argument `{name}` must be an integer. "
            f"Received: {name}={value!r} (of type {type(value).__name__}).{hint}"
        )
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(
            f"Argument `{name}` must be an integer >= {minimum}. "
            f"Received: {name}={value}"
        )
    return value


def check_choice(name, value, choices):
    """Check that `value` is one of the strings in `choices`."""
    if value not in choices:
        raise ValueError(
            f"Argument `{name}` must be one of {tuple(choices)}. "
            f"Received: {name}={value!r}"
        )
    return value


def check_verbose(verbose):
    """Normalise Keras-style `verbose` ("auto", 0, 1 or 2) to an int."""
    if verbose == "auto":
        return 1
    if isinstance(verbose, bool) or verbose not in (0, 1, 2):
        raise ValueError(
            "Argument `verbose` must be 'auto', 0, 1 or 2. "
            f"Received: verbose={verbose!r}"
        )
    return int(verbose)
