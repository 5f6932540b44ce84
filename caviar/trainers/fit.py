"""Does a job fit its trainer? Checked before anything runs, naming the job field at fault.

`check_job(job)` resolves the job's trainer, checks the class (`check_trainer`), then every value the
trainer will see, as far as the trainer declares what it takes (`caviar.trainers.protocol`):
the metric of [search] and [babysit] among the names it reports; each [model] and [space] key among
its hyperparameters; each [model] value, and the values each [space] dimension can draw (every
choice; both ends and the middle of a range), through its `check_config`; and then all of them
together. A trainer that declares nothing is taken at its word, and its first epoch tells the rest.
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from caviar.config.messages import did_you_mean, field_path, one_line, reject_unknown, show_value
from caviar.config.space import Choice, Fixed, LogUniform, OneMinusLogUniform, Uniform
from caviar.trainers.check import check_trainer
from caviar.trainers.registry import resolve_trainer


def check_job(job: Any) -> type:
    """The job's trainer class, once the job is known to fit it; ValueError "field: problem" if not."""
    cls = check_trainer(resolve_trainer(job.trainer), job.trainer)
    metrics = getattr(cls, "metrics", None)
    if metrics:
        for section in ("search", "babysit"):
            metric = getattr(job, section).metric
            if metric not in metrics:
                raise ValueError(f"{section}.metric: the {job.trainer} trainer reports {', '.join(metrics)}, got "
                                 f"{show_value(metric)}{did_you_mean(metric, metrics)}")
    hyper = getattr(cls, "hyperparameters", None)
    if hyper is not None:
        what = f"hyperparameter of the {job.trainer} trainer"
        reject_unknown(job.model, ("trainer", *hyper), ("model",), what=what, list_valid=True)
        reject_unknown(job.space.dimensions, tuple(hyper), ("space",), what=what, list_valid=True)
        _check_integers(job, [k for k, t in hyper.items() if t is int])
    if callable(getattr(cls, "check_config", None)):
        _probe(job, cls.check_config)
    return cls


def full_config(cls: type, config: Mapping[str, Any]) -> dict[str, Any]:
    """A trial's hyperparameters as the trainer will use them: its defaults filled in where it can
    tell them (`check_config`), else `config` as given."""
    check = getattr(cls, "check_config", None)
    return dict(check(config)) if callable(check) else dict(config)


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


def _probes(job: Any) -> list[tuple[tuple[str, str], Any, str]]:
    """(field path, value, hint) of every value to try alone: [model] values, then what [space] draws."""
    probes = [(("model", k), v, "") for k, v in job.model.items() if k != "trainer"]
    for key, dim in job.space.dimensions.items():
        if isinstance(dim, Fixed):
            hint = " (to search over values, write { choice = [...] })" if isinstance(dim.spec(), list) else ""
            probes.append((("space", key), dim.spec(), hint))
            continue
        n = len(dim.values) if isinstance(dim, Choice) else 2
        for u in sorted({0.0, 0.5, 1.0} | {(i + 0.5) / n for i in range(n)}):
            probes.append((("space", key), dim.from_unit(u), f" (a value of {show_value(dim.spec())})"))
    return probes


def _probe(job: Any, check_config: Any) -> None:
    """One value at a time, so the message names the field; then all together (the middle of the
    space), for rules that tie several values together."""
    for path, value, hint in _probes(job):
        try:
            check_config({path[1]: value})
        except ValueError as exc:
            raise ValueError(f"{field_path(path)}: {_without_key(exc, path[1])}{hint}") from None
    middle = job.config(job.space.from_unit(np.full(len(job.space), 0.5)))
    try:
        check_config(middle)
    except ValueError as exc:
        key = next((k for k in middle if one_line(exc).startswith(f"{k}: ")), None)
        where = ("space." if key in job.space.dimensions else "model.") if key else "model: "
        raise ValueError(where + one_line(exc)) from None


def _without_key(exc: Exception, key: str) -> str:
    """The trainer's message without its own "key: " (the job puts the field path there instead)."""
    message = one_line(exc)
    return message[len(key) + 2:] if message.startswith(f"{key}: ") else message
