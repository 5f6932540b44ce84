"""Raw values from a job file or a caller: what counts as a number, their plain Python form, and the
checks that validate one and name its field in the error.

A check is a function value -> normalized value that raises `Expected(what)`; `checked(path, value,
check)` turns that into the one line every part of caviar prints for a bad value:

    search.trials: expected a positive integer, got -3

job.py validates a whole job file with these checks. The samplers and schedulers guard their own
arguments with the very same ones (`samplers.SAMPLER_CHECKS`, `schedulers.SCHEDULER_CHECKS`, which
job.py reuses), so a rule is written once and a bad value reads the same wherever it is caught.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from caviar.config.messages import did_you_mean, show_value

Check = Callable[[Any], Any]  # value -> normalized value; raises Expected


def is_number(value: Any) -> bool:
    """A real number that is not a bool (True is an int to Python, never a number to a user);
    NumPy scalars count."""
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def plain(value: Any) -> Any:
    """NumPy scalars as Python ones, tuples and arrays as lists, mappings as dicts with string keys,
    recursively: the types TOML (and tomli_w) knows."""
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()   # a 0-d array is a scalar in a box
    if isinstance(value, (list, tuple, np.ndarray)):
        return [plain(v) for v in value]
    return value.item() if isinstance(value, np.generic) else value


def same_value(a: Any, b: Any) -> bool:
    """Equal and of the same kind (True == 1 to Python, not to a user); lists compare as lists."""
    if isinstance(a, list) or isinstance(b, list):
        return isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(map(same_value, a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    return a == b and isinstance(a, str) == isinstance(b, str)


class Expected(ValueError):
    """A value of the wrong kind; `checked` adds the field path and the value."""

    def __init__(self, what: str, hint: str = "") -> None:
        super().__init__(what)
        self.what, self.hint = what, hint


def checked(path: str, value: Any, check: Check) -> Any:
    """check(value), or ValueError("<path>: expected <what>, got <value><hint>")."""
    try:
        return check(value)
    except Expected as exc:
        raise ValueError(f"{path}: expected {exc.what}, got {show_value(value)}{exc.hint}") from None


def number(what: str, ok: Callable[[float], bool], *, integer: bool = False) -> Check:
    """A finite real number (an integer counts, a bool does not) for which `ok` holds, as a float;
    with `integer`, an integer only (not 3.0), as an int."""
    def check(value: Any) -> float | int:
        try:  # math.isfinite(10**400) overflows: such a number is as wrong as nan
            good = is_number(value) and (isinstance(value, numbers.Integral) if integer else math.isfinite(value)) \
                and ok(value)
        except OverflowError:
            good = False
        if not good:
            raise Expected(what)
        return int(value) if integer else float(value)

    return check


def integer(minimum: int) -> Check:
    """An integer in [minimum, 2**63) (the int64 columns of the results)."""
    what = {0: "a non-negative integer", 1: "a positive integer"}.get(minimum, f"an integer >= {minimum}")
    return number(what, lambda v: minimum <= v < 2**63, integer=True)


def string(what: str, ok: Callable[[str], Any] = str.strip, suggest: Sequence[str] = ()) -> Check:
    """A string for which `ok` holds; a miss gets "(did you mean ...?)" from `suggest`."""
    def check(value: Any) -> str:
        if not isinstance(value, str) or not ok(value):
            raise Expected(what, did_you_mean(value, suggest) if isinstance(value, str) else "")
        return value

    return check


def one_of(options: Sequence[str]) -> Check:
    """One of `options`, exactly: "expected one of fifo, asha, got 'pbt'"."""
    return string("one of " + ", ".join(options), lambda v: v in options, options)


non_negative, positive = integer(0), integer(1)
fraction_closed = number("a fraction in (0, 1]", lambda v: 0 < v <= 1)
above_one = number("a number > 1", lambda v: v > 1)
