"""A babysat run as one row of `load_all`, beside the sweeps' trials, so runs compare whatever drove them.

A babysat run has no trials table, but its folder says what a sweep's trial row says:

    trial_id     null (it is not a trial of a sweep)
    status       completed (it ended by itself: its "final" event), running (a driver holds its
                 lock) or interrupted (Ctrl-C, a kill, a failing trainer)
    params_<n>   the value it trained with of each name its job's [space] searches: the columns a sweep
                 of the same job has (`babysit --from SWEEP` put that sweep's best values there)
    score        its best finite `[babysit] metric` over the epochs, in `[babysit] mode`
    epochs, seconds, seed    epochs trained (rolled-back ones count), their seconds summed, `[babysit] seed`
    started_at   its first moment on record; finished_at: its "final" event's (null until it ends)
    model_<n>    its fixed values, as a sweep's rows have them (`caviar.store.vocabulary.model_columns`)
    metrics      those of its best epoch: the state it ends on

The values are the job's as it started (job.toml); nudges and the babysitter change the learning rate
later, which its epochs and events tables tell. Pure functions of the job (plain TOML data) and the
run's tables: the store reads [space] as data, by the rule `caviar.config.space.parse_dimension`
follows (a one-kind table is searched, unless its kind is `fixed`; a plain value is fixed).
"""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from caviar.store.vocabulary import COLUMNS, PARAM_PREFIX, POPULATION_COLUMNS, RunKind, judged_by, model_columns

FIXED, WHEN = "fixed", "when"   # the [space] words for a value not searched, and a dimension's condition


def searched_names(space: Mapping[str, Any]) -> list[str]:
    """The names a raw [space] table searches, in order: every one-kind table (conditional or not)
    whose kind is not `fixed`."""
    return [name for name, spec in space.items()
            if isinstance(spec, Mapping) and set(spec) - {WHEN} and set(spec) - {WHEN} != {FIXED}]


def fixed_values(job: Mapping[str, Any]) -> dict[str, Any]:
    """What a sweep of `job` records as its fixed values (before `model_columns` leaves out the
    searched names): the trainer, [model]'s values, and [space]'s unconditional fixed ones over them."""
    model = dict(_table(job, "model"))
    trainer = model.pop("trainer", None)
    space = {name: spec[FIXED] if isinstance(spec, Mapping) else spec for name, spec in _table(job, "space").items()
             if not isinstance(spec, Mapping) or set(spec) == {FIXED}}
    return {**({} if trainer is None else {"trainer": trainer}), **model, **space}


def row(job: Mapping[str, Any], epochs: pd.DataFrame, events: pd.DataFrame, *, running: bool) -> dict[str, Any] | None:
    """The babysat run's row (see the module's docstring), or None when it has no epoch yet.

    job: its job.toml as data; epochs, events: its tables as `caviar.load` reads them; running:
    whether a driver holds its lock."""
    if epochs.empty:
        return None
    metric, mode = judged_by(job, RunKind.BABYSIT)
    values = pd.to_numeric(epochs[metric], errors="coerce").to_numpy(float) if metric in epochs else np.full(len(epochs), np.nan)
    finite = np.isfinite(values)
    at = int(np.argmax(np.where(finite, mode.sign * values, -np.inf))) if finite.any() else None
    final = events[events["event"] == "final"] if "event" in events else events.iloc[:0]
    status = "completed" if len(final) else "running" if running else "interrupted"
    searched = searched_names(_table(job, "space"))
    fixed = fixed_values(job)
    own = set(COLUMNS["epochs"]) | set(POPULATION_COLUMNS)
    metrics = {} if at is None else {name: float(epochs[name].iloc[at]) for name in epochs.columns
                                     if name not in own and pd.api.types.is_numeric_dtype(epochs[name])}
    return {"trial_id": None, "status": status,
            **{PARAM_PREFIX + name: _stored(fixed[name]) for name in searched if name in fixed},
            "score": math.nan if at is None else float(values[at]), "epochs": len(epochs),
            "seconds": float(epochs["seconds"].sum()) if "seconds" in epochs else math.nan,
            "seed": _table(job, "babysit").get("seed"), "started_at": _first_moment(epochs, events),
            "finished_at": final["time"].iloc[-1] if len(final) and "time" in final else None,
            **{name: _stored(value) for name, value in model_columns(fixed, searched).items()}, **metrics}


def _table(job: Mapping[str, Any], name: str) -> Mapping[str, Any]:
    section = job.get(name)
    return section if isinstance(section, Mapping) else {}


def _stored(value: Any) -> Any:
    """A params_/model_ value as the trials table stores it: a list (or table) as its JSON text."""
    return json.dumps(value) if isinstance(value, (list, tuple, dict)) else value


def _first_moment(epochs: pd.DataFrame, events: pd.DataFrame) -> Any:
    """The run's earliest time on record (its "start" event, else its first epoch's end); None if none."""
    times = [frame["time"].min() for frame in (events, epochs) if "time" in frame and frame["time"].notna().any()]
    return min(times) if times else None

