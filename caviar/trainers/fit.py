"""Does a job fit its trainer? Checked before anything runs, naming the job field at fault.

`check_job(job)` resolves the job's trainer, checks the class (`check_trainer`), then every value the
trainer will see, as far as the trainer declares what it takes (`caviar.trainers.protocol`):
the metric of [search] and [babysit] among the names it reports; each [model] and [space] key among
its hyperparameters (and `epochs`, the drivers' key, whatever it declares); the job's own config
(the [model] values and [space]'s fixed ones, each searched dimension at its middle) through its
`check_config`, and then, on top of that config, each value a [space] dimension can draw (every
choice; both ends and the middle of a range) in place of its middle one. Anything the user's
check_config raises is a one-line ValueError naming the field. `epochs` reaches check_config only if
the trainer declares it; otherwise caviar checks it is a whole number >= 1. A trainer that declares
nothing is taken at its word, and its first epoch tells the rest.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from caviar.config.conditions import enabling
from caviar.config.messages import did_you_mean, field_path, one_line, reject_unknown, show_value
from caviar.config.space import Choice, Fixed, LogUniform, OneMinusLogUniform, Uniform
from caviar.trainers.check import check_trainer
from caviar.trainers.registry import resolve_trainer


DRIVER_KEYS = ("epochs",)  # read by the drivers from [model] / [space]: how many epochs a trial trains


def check_job(job: Any) -> type:
    """The job's trainer class, once the job is known to fit it; ValueError "field: problem" if not."""
    cls = check_trainer(resolve_trainer(job.trainer), job.trainer)
    metrics, given = _reported(cls, job)
    if metrics:
        for section in ("search", "babysit"):
            metric = getattr(job, section).metric
            if metric not in metrics:
                raise ValueError(f"{section}.metric: the {job.trainer} trainer reports {', '.join(metrics)}{given}, "
                                 f"got {show_value(metric)}{did_you_mean(metric, metrics)}")
    hyper = getattr(cls, "hyperparameters", None)
    if hyper is not None:
        what = f"hyperparameter of the {job.trainer} trainer"
        known = (*hyper, *(k for k in DRIVER_KEYS if k not in hyper))
        reject_unknown(job.model, ("trainer", *known), ("model",), what=what, list_valid=True)
        reject_unknown(job.space.dimensions, known, ("space",), what=what, list_valid=True)
    integers = [k for k, t in (hyper or {}).items() if t is int]
    _check_integers(job, [*integers, *(k for k in DRIVER_KEYS if k not in integers)])
    _probe(job, _checker(cls))
    return cls


def _reported(cls: type, job: Any) -> tuple[tuple[str, ...], str]:
    """The metrics the trainer reports for this job, and what they depend on (for the message): its
    `metrics_for` of the job's config where it has one (a task changes them), else its `metrics`."""
    metrics_for = getattr(cls, "metrics_for", None)
    if not callable(metrics_for):
        return tuple(getattr(cls, "metrics", None) or ()), ""
    config = job.config()
    try:
        names = tuple(metrics_for(config))
    except Exception as exc:  # the user's code: a finding about the job, in one line
        raise ValueError(f"model.trainer: metrics_for raised {type(exc).__name__}: {one_line(exc)}") from exc
    return names, f" for model.task = {show_value(config['task'])}" if "task" in config else " for this [model]"


def full_config(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters as the trainer will use them: its defaults filled in where it can
    tell them (`check_config`), else `config` as given. `epochs` (the drivers' key) reaches the
    trainer's check_config only if the trainer declares it, and is kept either way."""
    check = getattr(cls, "check_config", None)
    if not callable(check):
        return dict(config)
    if _own_epochs(cls) and "epochs" in config:
        return {**_call(check, {k: v for k, v in config.items() if k != "epochs"}), "epochs": config["epochs"]}
    return dict(_call(check, config))


def _own_epochs(cls: type) -> bool:
    """Whether caviar checks `epochs` itself: the trainer has no check_config, or declares its
    hyperparameters without epochs (so its check_config may refuse a key it does not take)."""
    hyper = getattr(cls, "hyperparameters", None)
    return not callable(getattr(cls, "check_config", None)) or (hyper is not None and "epochs" not in hyper)


def _check_epochs(value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"epochs: expected a whole number >= 1 (the epochs a trial trains), got {show_value(value)}")


def _call(check_config: Any, config: Mapping[str, Any]) -> Any:
    """The user's check_config of `config`; whatever it raises, a one-line ValueError."""
    try:
        return check_config(config)
    except ValueError:
        raise
    except Exception as exc:  # the user's code: any failure is a finding about the job, not a crash
        detail = one_line(exc)
        raise ValueError(f"check_config raised {type(exc).__name__}" + (f": {detail}" if detail else "")) from exc


def _checker(cls: type) -> Any:
    """check(config): ValueError "key: problem" when the trainer (or caviar, for `epochs`) refuses it."""
    check_config, own_epochs = getattr(cls, "check_config", None), _own_epochs(cls)

    def check(config: Mapping[str, Any]) -> None:
        if own_epochs and "epochs" in config:
            _check_epochs(config["epochs"])
            config = {k: v for k, v in config.items() if k != "epochs"}
        if callable(check_config):
            _call(check_config, config)
    return check


def _check_integers(job: Any, integers: list[str]) -> None:
    """A float range for a whole-number hyperparameter would pass probes at round values, then fail
    trial after trial on a fraction: refused outright."""
    for key, dim in job.space.dimensions.items():
        if key in integers and isinstance(dim, (Uniform, LogUniform, OneMinusLogUniform)):
            whole = [int(b) for b in (dim.low, dim.high) if float(b).is_integer()]
            kind = "int_log_uniform" if dim.log else "int_uniform"
            fix = f"{{ {kind} = {show_value(whole)} }}" if len(whole) == 2 else f"{kind} or choice"
            raise ValueError(f"space.{key}: {key} takes whole numbers, but {dim.kind} draws fractions, got "
                             f"{show_value(dim.spec())} (write {fix})")


def _hint(dim: Any) -> str:
    """What a [space] value's message ends with: the dimension it was drawn from."""
    if isinstance(dim, Fixed):
        return " (to search over values, write { choice = [...] })" if isinstance(dim.spec(), list) else ""
    return f" (a value of {show_value(dim.spec())})"


def _probes(job: Any) -> list[tuple[tuple[str, str], Any, str, dict[str, Any]]]:
    """(field path, value, hint, parents) of every value the middle of the space does not show: a [model]
    value that [space] overrides (the drivers still read [model] alone, e.g. for its epochs), then every
    value a searched [space] dimension can draw (every choice; both ends and the middle of a range),
    with the parent values under which a conditional dimension exists."""
    dims = job.space.dimensions
    probes = [(("model", k), v, "", {}) for k, v in job.model.items() if k != "trainer" and k in dims]
    for key, dim in dims.items():
        if not isinstance(dim, Fixed):
            n = len(dim.values) if isinstance(dim, Choice) else 2
            units = sorted({0.0, 0.5, 1.0} | {(i + 0.5) / n for i in range(n)})
            parents = enabling(key, job.space.conditions)
            probes += [(("space", key), dim.from_unit(u), _hint(dim), parents) for u in units]
    return probes


def _probe(job: Any, check: Any) -> None:
    """The job's own config first (its [model] and fixed values, each searched dimension at its middle),
    for rules that tie several values together; then, on top of it, each other value the job holds or
    can draw in place of the one there, so that the message names the field at fault."""
    middle = job.config(job.space.from_unit(np.full(len(job.space), 0.5)))
    try:
        check(middle)
    except ValueError as exc:
        raise ValueError(_together(job, middle, exc, check)) from None
    for path, value, hint, parents in _probes(job):
        try:
            check({**middle, **parents, path[1]: value})
        except ValueError as exc:
            raise ValueError(f"{field_path(path)}: {_without_key(exc, path[1])}{hint}") from None


def _together(job: Any, config: Mapping[str, Any], exc: Exception, check: Any) -> str:
    """The job's own config refused: named by the key the trainer names, else by the first value it
    refuses on top of its defaults alone, else put on [model]."""
    key = next((k for k in config if one_line(exc).startswith(f"{k}: ")), None)
    if key is None:
        key = next((k for k, v in config.items() if _refuses(check, {k: v})), None)
    if key is None:
        return "model: " + one_line(exc)
    dims = job.space.dimensions
    where = f"space.{key}" if key in dims else field_path(("model", key))
    return f"{where}: {_without_key(exc, key)}{_hint(dims[key]) if key in dims else ''}"


def _refuses(check: Any, config: Mapping[str, Any]) -> bool:
    try:
        check(config)
    except ValueError:
        return True
    return False


def _without_key(exc: Exception, key: str) -> str:
    """The trainer's message without its own "key: " (the job puts the field path there instead)."""
    message = one_line(exc)
    return message[len(key) + 2:] if message.startswith(f"{key}: ") else message
