"""`babysit --from SWEEP`: start panda mode from the best trial of a finished sweep.

Only the sweep's searched hyperparameters are taken (its `params_<name>` columns whose name its own
job.toml searched), never a value that chooses code: a received results folder cannot name the
trainer (a `params_trainer` column is ignored) nor slip in a key its sweep never searched.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caviar.store.ranking import best_trial
from caviar.store.vocabulary import MODES, PARAM_PREFIX, RunKind, Status, validate_run_name

_NEVER = frozenset({"trainer"})  # names that choose code, whatever a results folder says


def with_best_trial(job: Any, sweep: Path, echo: Any = print) -> Any:
    """`job` with [model] overridden by the searched values of the sweep's best completed trial, best
    by the sweep's own `search.mode` (its job.toml; "max" when it has none)."""
    from caviar.config.job import parse_job
    from caviar.store.reader import load

    validate_run_name(sweep.name, "--from")
    if not sweep.is_dir():
        raise ValueError(f"--from: there is no run {sweep.name!r} in {sweep.parent}")
    run = load(sweep)
    trials = run.trials
    if run.kind != RunKind.SWEEP or trials.empty:
        raise ValueError(f"--from: {sweep.name!r} has no trials: is it a finished sweep?")
    search = run.job.get("search", {})
    mode = search.get("mode", "max") if isinstance(search, dict) else "max"
    if mode not in MODES:
        raise ValueError(f"--from: the sweep's search.mode must be 'max' or 'min', got {mode!r}")
    completed = trials[trials["status"] == Status.COMPLETED.value] if "status" in trials else trials
    best = best_trial(completed, mode)
    if best is None:
        raise ValueError(f"--from: the sweep {sweep.name!r} has no completed trial with a score")
    searched = _searched(run.job, trials)
    params = {name: _plain(best[column]) for column in trials.columns
              if column.startswith(PARAM_PREFIX) and (name := column[len(PARAM_PREFIX):]) in searched
              and not _missing(best[column])}
    raw = job.to_raw()
    raw["model"].update(params)
    echo(f"from {sweep.name}: score {float(best['score']):.4f} ({mode}) with {params}")
    return parse_job(raw)


def _searched(saved_job: dict[str, Any], trials: pd.DataFrame) -> set[str]:
    """The names the sweep searched: its job.toml's [space] (all params columns when it has none)."""
    space = saved_job.get("space")
    names = set(space) if isinstance(space, dict) else {c[len(PARAM_PREFIX):] for c in trials.columns
                                                         if c.startswith(PARAM_PREFIX)}
    return names - _NEVER


def _missing(value: Any) -> bool:
    return value is None or (not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value)))


def _plain(value: Any) -> Any:
    """A pandas cell as the plain value a job file holds; a list (e.g. hidden_layers from a choice)
    is stored as its JSON text in a string column."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value
