"""`check_trainer`: what a trainer class lacks, one line per problem; and the check of each epoch's report.

Both drivers call the same two functions, so a trainer is refused for the same reason with the same
words in caviar mode and in panda mode: `check_trainer` before anything runs, `checked_metrics` on
every epoch a trainer reports (for a trainer that does not declare its metrics up front).
"""

from __future__ import annotations

import inspect
import numbers
from typing import Any, Mapping

import numpy as np

from caviar.config.messages import one_line, show_value
from caviar.store.vocabulary import MODEL_PREFIX, PARAM_PREFIX, RESERVED_METRICS, reserved_metric
from caviar.trainers.protocol import OPTIONAL_METHODS, REQUIRED


def reserved_message(name: str) -> str:
    """The one refusal of a metric that takes a name caviar writes itself."""
    return (f"model.trainer: the trainer reports a metric named {name!r}, a column caviar writes itself "
            f"(reserved: {', '.join(sorted(RESERVED_METRICS))}, {PARAM_PREFIX}* and {MODEL_PREFIX}*), "
            "so rename that metric")


def trainer_problems(trainer: Any) -> list[str]:
    """Every way `trainer` (a class, or an instance of one) misses the protocol; [] when it fits."""
    cls = trainer if isinstance(trainer, type) else type(trainer)
    problems = [f"lacks {name}()" for name in REQUIRED if not callable(getattr(cls, name, None))]
    try:
        inspect.signature(cls).bind(object(), object(), 0)
    except (TypeError, ValueError):
        problems.append("cannot be built as Trainer(config, data, seed)")
    problems += [f"{name} is not callable" for name in OPTIONAL_METHODS
                 if hasattr(cls, name) and not callable(getattr(cls, name))]
    for name, does in (("check_config", "checks a config"), ("metrics_for", "names the metrics")):
        if callable(getattr(cls, name, None)) and \
                not isinstance(inspect.getattr_static(cls, name), (classmethod, staticmethod)):
            problems.append(f"{name} must be a classmethod (it {does} before any trainer is built)")
    problems += _declared_problems(cls)
    if not isinstance(trainer, type) and not problems:
        problems += _state_problems(trainer)
    return problems


def _names(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and all(isinstance(v, str) and v for v in value)


def _declared_problems(cls: type) -> list[str]:
    problems = []
    metrics = getattr(cls, "metrics", ())
    if not _names(metrics):
        problems.append(f"metrics must be a tuple of names, got {metrics!r}")
    else:
        problems += [reserved_message(m).removeprefix("model.trainer: ") for m in metrics if reserved_metric(m)]
    hyper = getattr(cls, "hyperparameters", None)
    if hyper is not None and not (isinstance(hyper, Mapping) and all(isinstance(k, str) and isinstance(t, type)
                                                                      for k, t in hyper.items())):
        problems.append(f"hyperparameters must map names to types, got {hyper!r}")
    mutable = getattr(cls, "mutable", ())
    if not _names(mutable):
        problems.append(f"mutable must be a tuple of names, got {mutable!r}")
    elif isinstance(hyper, Mapping) and set(mutable) - set(hyper):
        problems.append(f"mutable names {sorted(set(mutable) - set(hyper))}, which are not among its hyperparameters")
    return problems


def _state_problems(trainer: Any) -> list[str]:
    """An instance's state_dict must be plain arrays keyed by names (it is saved without pickle)."""
    try:
        state = trainer.state_dict()
    except Exception as exc:  # the user's code: any failure is a finding, not a crash
        return [f"state_dict() raised {type(exc).__name__}: {one_line(exc)}"]
    if not isinstance(state, Mapping):
        return [f"state_dict() must return a dict of arrays, got {type(state).__name__}"]
    problems = [f"state_dict()[{key!r}]: the key is not text (keys name the arrays in the .npz)"
                for key in state if not isinstance(key, str)]
    return problems + [f"state_dict()[{key!r}] is {type(value).__name__}, not a NumPy array of numbers, booleans "
                       "or text" for key, value in state.items() if isinstance(key, str) and
                       (not isinstance(value, (np.ndarray, np.generic)) or np.asarray(value).dtype.hasobject)]


def check_trainer(trainer: Any, name: str | None = None) -> Any:
    """Check a trainer class (or instance) against the protocol; return it unchanged.

    Raises ValueError "model.trainer: NAME: problem; problem; ..." (one line) when anything is
    missing. Users call it on their own class; both drivers call it before anything runs.
    """
    problems = trainer_problems(trainer)
    if problems:
        cls = trainer if isinstance(trainer, type) else type(trainer)
        shown = name or f"{cls.__module__}:{cls.__qualname__}"
        raise ValueError(f"model.trainer: {shown} does not fit the Trainer protocol: " + "; ".join(problems))
    return trainer


# The usual report, a dict of plain metric names to Python or NumPy floats, is checked without
# abstract-class lookups (`isinstance(v, numbers.Real)` is a microsecond a value; this runs at every
# epoch of every trial, on the driver too); the names already seen are not looked at again.
_PLAIN_NUMBERS = frozenset({float, int, np.float64, np.float32})
_NAMES_SEEN: set[str] = set()


def checked_metrics(reported: Any) -> dict[str, float]:
    """One epoch's report as {name: float}, or ValueError: a dict of numbers, none of them reserved."""
    if type(reported) is dict and reported.keys() <= _NAMES_SEEN and \
            all(type(value) in _PLAIN_NUMBERS for value in reported.values()):
        return {k: float(v) for k, v in reported.items()}
    if not isinstance(reported, Mapping):
        raise ValueError(f"model.trainer: train_epoch() must return a dict of metrics, got {type(reported).__name__}")
    unnamed = [k for k in reported if not isinstance(k, str) or not k]
    if unnamed:
        raise ValueError(f"model.trainer: the trainer reports a metric keyed {unnamed[0]!r}; metric names must be "
                         "non-empty text")
    clash = sorted(k for k in reported if reserved_metric(k))
    if clash:
        raise ValueError(reserved_message(clash[0]))
    bad = next((k for k, v in reported.items() if not isinstance(v, (numbers.Real, np.number))), None)
    if bad is not None:
        raise ValueError(f"model.trainer: the trainer reports {bad}={show_value(reported[bad], 60)} "
                         f"({type(reported[bad]).__name__}), not a number")
    if len(_NAMES_SEEN) < 10_000:   # a trainer that names a metric per epoch does not grow it forever
        _NAMES_SEEN.update(reported)
    return {k: float(v) for k, v in reported.items()}
