"""Search-space dimensions and the search space: each hyperparameter's scale, mapped to the unit interval.

A dimension knows its scale and nothing else: `from_unit(u)` turns u in [0, 1) into a value, `to_unit(v)`
turns it back, so samplers draw in the unit cube and never think about scales: `LogUniform(1e-4, 1e-1)` is
`10 ** uniform(-4, -1)` whatever the sampler, and `OneMinusLogUniform(0.9, 0.999)` gives 0.9 -> 0.99 as
much room as 0.99 -> 0.999. In a job file each dimension is one TOML value (`parse_dimension` reads it):
`{ log_uniform = [1e-4, 1e-1] }`, `{ one_minus_log_uniform = [0.9, 0.999] }`, `{ int_log_uniform =
[16, 512] }` (inclusive), `{ choice = [32, 64, 128] }`, or a plain value (fixed, not searched).
Errors are `ValueError`s that print the bad value, without the field name (job.py adds "space.<name>: ").
"""

from __future__ import annotations

import copy
import difflib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, Mapping, Sequence

import numpy as np

from caviar.config.conditions import WHEN, active_only, check_conditions, topological_order
from caviar.config.messages import show_value
from caviar.config.values import is_number, plain, same_value

# The largest float below 1: `to_unit` answers in [0, 1) like the samplers draw.
_BELOW_ONE = math.nextafter(1.0, 0.0)


class Dimension(ABC):
    """One hyperparameter's scale: a map between its values and the unit interval."""

    kind: ClassVar[str]  # the TOML key: "log_uniform", ...
    log: ClassVar[bool] = False  # plot this dimension on a log axis
    scale: ClassVar[str] = "linear"  # "linear" | "log" | "one_minus_log" (plot 1 - value on a log axis)

    @abstractmethod
    def from_unit(self, u: float) -> Any:
        """The value at u in [0, 1] (u = 1 gives the upper bound); a Python scalar of the right type."""

    @abstractmethod
    def to_unit(self, value: Any) -> float:
        """Where `value` sits in [0, 1); ValueError if the dimension cannot produce it."""

    @abstractmethod
    def grid_units(self, points: int) -> tuple[float, ...]:
        """Unit positions of a `points`-point grid on this dimension's own scale, increasing
        (discrete dimensions: each value at most once)."""

    @abstractmethod
    def spec(self) -> Any:
        """The TOML form, so `parse_dimension(d.spec()) == d`."""


# --- numeric ranges: one transform per scale, so the unit mapping is written once ------------------


@dataclass(frozen=True)
class _Range(Dimension):
    """A numeric range [low, high] drawn uniformly on a transformed scale t = _forward(value)."""

    low: float
    high: float

    integer: ClassVar[bool] = False
    positive: ClassVar[bool] = False  # 0 < low (log scales)
    below_one: ClassVar[bool] = False  # high < 1 (one minus log)

    def __post_init__(self) -> None:
        got = f"got {show_value([self.low, self.high])}"
        if any(isinstance(b, (bool, np.bool_)) for b in (self.low, self.high)):
            raise ValueError(f"{self.kind} bounds must be numbers, not true/false, {got}")
        if not (is_number(self.low) and is_number(self.high)):
            raise ValueError(f"{self.kind} bounds must be numbers, {got}")
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"{self.kind} bounds must be finite, {got}")
        if self.integer and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError(f"{self.kind} bounds must be integers, {got}")
        as_type = int if self.integer else float
        object.__setattr__(self, "low", as_type(self.low))
        object.__setattr__(self, "high", as_type(self.high))
        if not (self.low < self.high and (self.low > 0 or not self.positive) and (self.high < 1 or not self.below_one)):
            order = ("0 < " if self.positive else "") + "low < high" + (" < 1" if self.below_one else "")
            raise ValueError(f"{self.kind} needs {order}, {got}")

    _forward = _inverse = staticmethod(lambda x: x)

    def _ends(self) -> tuple[float, float]:
        """The drawn interval on the transformed scale."""
        return self._forward(self.low), self._forward(self.high)

    def _checked(self, value: Any) -> float:
        if not is_number(value) or not self.low <= value <= self.high:
            raise ValueError(f"{show_value(value)} is outside {self.kind} {show_value([self.low, self.high])}")
        if self.integer and value != int(value):
            raise ValueError(f"{self.kind} takes integers, got {show_value(value)}")
        return float(value)

    def from_unit(self, u: float) -> Any:
        a, b = self._ends()
        # The transform can land an ulp outside the bounds (10 ** log10(x) != x): clip, never leave them.
        return min(max(self._inverse(a + u * (b - a)), self.low), self.high)

    def to_unit(self, value: Any) -> float:
        a, b = self._ends()
        return min(max((self._forward(self._checked(value)) - a) / (b - a), 0.0), _BELOW_ONE)

    def grid_units(self, points: int) -> tuple[float, ...]:
        return (0.5,) if points == 1 else tuple(float(u) for u in np.linspace(0.0, 1.0, points))

    def spec(self) -> dict[str, list[Any]]:
        return {self.kind: [self.low, self.high]}


@dataclass(frozen=True)
class Uniform(_Range):
    """A float, uniform on [low, high]."""

    kind: ClassVar[str] = "uniform"


class _LogScale:
    """The log10 scale, shared by the float and the integer log dimensions (listed first among
    their bases, so these override the linear defaults of `_Range`)."""

    log: ClassVar[bool] = True
    scale: ClassVar[str] = "log"
    positive: ClassVar[bool] = True
    _forward, _inverse = staticmethod(math.log10), staticmethod(lambda t: 10.0**t)


@dataclass(frozen=True)
class LogUniform(_LogScale, _Range):
    """A positive float whose log10 is uniform: `10 ** uniform(log10 low, log10 high)`."""

    kind: ClassVar[str] = "log_uniform"


@dataclass(frozen=True)
class OneMinusLogUniform(_Range):
    """A float in (0, 1) near 1, such as an averaging beta: 1 - value is log-uniform.

    Bounds are on the value itself: `[0.9, 0.999]` draws `1 - 10 ** uniform(-3, -1)`. u grows with the
    value (u = 0 is `low`). A log axis of the value would squash 0.99 .. 0.999: plots use `scale`.
    """

    kind: ClassVar[str] = "one_minus_log_uniform"
    scale: ClassVar[str] = "one_minus_log"
    positive: ClassVar[bool] = True
    below_one: ClassVar[bool] = True
    _forward = staticmethod(lambda x: math.log10(1.0 - x))
    _inverse = staticmethod(lambda t: 1.0 - 10.0**t)


@dataclass(frozen=True)
class IntUniform(_Range):
    """An integer, uniform on low..high inclusive: t is drawn over [low - 1/2, high + 1/2] and rounded,
    so each value, both ends included, owns an equal slice of the unit interval."""

    kind: ClassVar[str] = "int_uniform"
    integer: ClassVar[bool] = True

    def _ends(self) -> tuple[float, float]:
        return self._forward(self.low - 0.5), self._forward(self.high + 0.5)

    def from_unit(self, u: float) -> int:
        a, b = self._ends()
        return min(max(math.floor(self._inverse(a + u * (b - a)) + 0.5), self.low), self.high)

    def to_unit(self, value: Any) -> float:
        v = self._checked(value)
        a, b = self._ends()
        middle = (self._forward(v - 0.5) + self._forward(v + 0.5)) / 2  # the middle of its slice
        return (middle - a) / (b - a)

    def grid_units(self, points: int) -> tuple[float, ...]:
        a, b = self._forward(self.low), self._forward(self.high)
        ts = [(a + b) / 2] if points == 1 else np.linspace(a, b, points)
        values = sorted({min(max(round(self._inverse(t)), self.low), self.high) for t in ts})
        return tuple(self.to_unit(v) for v in values)


@dataclass(frozen=True)
class IntLogUniform(_LogScale, IntUniform):
    """A positive integer on a log scale, low..high inclusive (1 -> 2 weighs like 100 -> 200)."""

    kind: ClassVar[str] = "int_log_uniform"


@dataclass(frozen=True)
class Choice(Dimension):
    """One of a list of values (numbers, strings, booleans, or lists such as layer sizes), equally likely.

    Integers mixed with floats become floats, so a results column has one type. `values` is a tuple;
    list values stay lists (so a Choice of lists is not hashable).
    """

    values: tuple[Any, ...]

    kind: ClassVar[str] = "choice"

    def __post_init__(self) -> None:
        if not isinstance(self.values, (list, tuple)):
            raise ValueError(f"choice needs a list of values, got {show_value(self.values)}")
        if len(self.values) == 0:
            raise ValueError("choice needs at least one value, got []")
        values = tuple(plain(v) for v in self.values)
        types = {"list" if isinstance(v, list) else type(v).__name__ for v in values}
        if not types <= {"bool", "int", "float", "str", "list"}:
            raise ValueError("choice values must be numbers, strings, booleans or lists, got "
                             + show_value(self.values))
        if types == {"int", "float"}:
            values = tuple(float(v) for v in values)
        elif len(types) > 1:
            kinds = " and ".join(sorted(types))
            raise ValueError(f"choice values must all be of one type, got {show_value(self.values)} ({kinds})")
        for i, v in enumerate(values):
            if any(same_value(v, w) for w in values[:i]):
                raise ValueError(f"choice has {show_value(v)} twice in {show_value(self.values)}")
        object.__setattr__(self, "values", values)

    def from_unit(self, u: float) -> Any:
        n = len(self.values)
        return copy.deepcopy(self.values[min(max(math.floor(u * n), 0), n - 1)])

    def to_unit(self, value: Any) -> float:
        value = plain(value)
        for i, v in enumerate(self.values):
            if same_value(v, value):
                return (i + 0.5) / len(self.values)
        raise ValueError(f"{show_value(value)} is not one of choice {show_value(self.values)}")

    def grid_units(self, points: int) -> tuple[float, ...]:
        return tuple((i + 0.5) / len(self.values) for i in range(len(self.values)))  # every value, always

    def spec(self) -> dict[str, list[Any]]:
        return {self.kind: copy.deepcopy(list(self.values))}


@dataclass(frozen=True)
class Fixed(Dimension):
    """A value that is not searched: every trial gets it."""

    value: Any

    kind: ClassVar[str] = "fixed"

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", plain(self.value))

    def from_unit(self, u: float) -> Any:
        return copy.deepcopy(self.value)

    def to_unit(self, value: Any) -> float:
        return 0.0

    def grid_units(self, points: int) -> tuple[float, ...]:
        return (0.0,)

    def spec(self) -> Any:
        return {self.kind: self.from_unit(0)} if isinstance(self.value, Mapping) else self.from_unit(0)


KINDS: dict[str, type[Dimension]] = {
    cls.kind: cls for cls in (Uniform, LogUniform, OneMinusLogUniform, IntUniform, IntLogUniform, Choice, Fixed)
}
# Names other libraries use, for the "did you mean" hint only (we accept one spelling).
_ALIASES = {"categorical": "choice", "choices": "choice", "randint": "int_uniform", "int": "int_uniform",
            "log": "log_uniform", "reciprocal": "log_uniform", "lograndint": "int_log_uniform", "constant": "fixed"}


def _suggest(kind: str) -> str | None:
    squashed = kind.lower().replace("_", "").replace("-", "").replace(" ", "")
    for name in KINDS:
        if name.replace("_", "") == squashed:
            return name
    if squashed in _ALIASES:
        return _ALIASES[squashed]
    close = difflib.get_close_matches(kind.lower(), list(KINDS), n=1, cutoff=0.6)
    return close[0] if close else None


def parse_dimension(spec: Any) -> Dimension:
    """The dimension a TOML value describes: a one-key table `{ kind = argument }`, or a plain value
    (fixed). Raises ValueError naming the bad value, without the field name."""
    if not isinstance(spec, Mapping):
        return Fixed(spec)
    kinds = ", ".join(KINDS)
    if len(spec) != 1:
        got = "none" if not spec else " and ".join(str(k) for k in spec)
        raise ValueError(f"a dimension needs exactly one kind ({kinds}), got {got}")
    ((kind, arg),) = spec.items()
    cls = KINDS.get(kind)
    if cls is None:
        hint = _suggest(str(kind))
        did_you_mean = f" (did you mean {hint!r}?)" if hint else ""
        raise ValueError(f"unknown kind {str(kind)!r}{did_you_mean}; valid kinds: {kinds}")
    if not issubclass(cls, _Range):
        return cls(arg)  # type: ignore[call-arg]
    if not isinstance(arg, (list, tuple)) or len(arg) != 2:
        raise ValueError(f"{kind} needs [low, high], got {show_value(arg)}")
    return cls(arg[0], arg[1])


# ------------------------------------------------------------------------------------------ search space


class SearchSpace:
    """Named dimensions in order; the searched ones (not Fixed) span the unit cube the samplers draw in.

    `from_unit(u)` with u of shape (len(space),) gives a whole config: searched and fixed values, in the
    order the dimensions were given, without the dimensions its values make inactive (`conditions`:
    name -> {parent: values}, see caviar.config.conditions). An inactive dimension keeps its axis.
    """

    def __init__(self, dimensions: Mapping[str, Dimension], conditions: Mapping[str, Any] | None = None) -> None:
        for name, dim in dimensions.items():
            if not isinstance(name, str) or not name:
                raise ValueError(f"space: a dimension name must be a non-empty string, got {name!r}")
            if not isinstance(dim, Dimension):
                raise ValueError(f"space.{name}: expected a Dimension, got {dim!r}")
        self._dimensions = MappingProxyType(dict(dimensions))
        self._names = tuple(name for name, dim in self._dimensions.items() if not isinstance(dim, Fixed))
        self._conditions = MappingProxyType(check_conditions(conditions or {}, self._dimensions))
        self._order = topological_order(list(self._dimensions), self._conditions)

    @property
    def dimensions(self) -> Mapping[str, Dimension]:
        """Every dimension by name, fixed ones included (read-only)."""
        return self._dimensions

    @property
    def names(self) -> tuple[str, ...]:
        """The searched dimensions, in order: axis i of the unit cube is names[i]."""
        return self._names

    @property
    def conditions(self) -> Mapping[str, Mapping[str, tuple[Any, ...]]]:
        """Conditional dimension -> {parent: the values for which it exists} (read-only)."""
        return self._conditions

    @property
    def order(self) -> tuple[str, ...]:
        """Every dimension's name, each parent before its children: the order to draw them in."""
        return self._order

    def active(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """`config` without the dimensions its own values make inactive."""
        return active_only(config, self._order, self._conditions)

    @property
    def fixed(self) -> dict[str, Any]:
        """The fixed values that hold in every trial, by name (a fresh dict; conditional ones left out)."""
        return {n: d.from_unit(0.0) for n, d in self._dimensions.items()
                if isinstance(d, Fixed) and n not in self._conditions}

    def __len__(self) -> int:
        return len(self._names)

    def from_unit(self, u: Sequence[float] | np.ndarray) -> dict[str, Any]:
        """The config at unit point u (n_dims,), fixed values included."""
        u = np.asarray(u, dtype=float)
        if u.shape != (len(self._names),):
            raise ValueError(f"expected a unit point of shape ({len(self._names)},), got shape {u.shape}")
        position = {name: float(x) for name, x in zip(self._names, u)}
        return self.active({name: dim.from_unit(position.get(name, 0.0)) for name, dim in self._dimensions.items()})

    def to_unit(self, config: Mapping[str, Any]) -> np.ndarray:
        """The unit point (n_dims,) of a config's searched values (other keys are ignored); an inactive
        conditional dimension, absent or None, sits in the middle of its axis."""
        missing = [n for n in self._names if n not in config and n not in self._conditions]
        if missing:
            raise ValueError(f"config lacks searched value(s) {', '.join(missing)}")
        return np.array([0.5 if n in self._conditions and config.get(n) is None
                         else self._dimensions[n].to_unit(config[n]) for n in self._names], dtype=float)

    def spec(self) -> dict[str, Any]:
        """The `[space]` table as TOML values (each `parse_dimension`-able once `split_when` takes off a
        conditional dimension's `when`)."""
        spec = {name: dim.spec() for name, dim in self._dimensions.items()}
        for name, when in self._conditions.items():
            dim = self._dimensions[name]
            own = {Fixed.kind: dim.from_unit(0.0)} if isinstance(dim, Fixed) else spec[name]
            spec[name] = {**own, WHEN: {parent: copy.deepcopy(list(values)) for parent, values in when.items()}}
        return spec

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SearchSpace) and dict(self._dimensions) == dict(other._dimensions) \
            and dict(self._conditions) == dict(other._conditions)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SearchSpace({dict(self._dimensions)!r})"
