"""Which trial is best: one rule for the leaderboard, `show`, `compare`, the report, the sweep's
progress line and `babysit --from` (which applies it to the completed trials: it wants a
configuration that ran all its epochs).

Trials are ranked by `score` in the job's mode; failed or unscored trials come last. A pruned trial
competes with its score from the epochs it ran (the scheduler stopped it for being behind others at
that point, not for being bad), and on an equal score a completed trial comes first. Ties after that
go to the lower trial id.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from caviar.store.vocabulary import STATUSES, Mode, Status


def ranked(trials: pd.DataFrame, mode: Mode | str) -> pd.DataFrame:
    """All trials, best first (see the module's rule); the frame's own rows, reordered."""
    mode = _mode(mode)
    if trials.empty:
        return trials
    score = pd.to_numeric(trials["score"], errors="coerce").astype(float)
    status = trials["status"] if "status" in trials else pd.Series(Status.COMPLETED.value, index=trials.index)
    keys = pd.DataFrame({
        "unscored": status.eq(Status.FAILED.value) | score.isna() | ~np.isfinite(score),
        "key": (-mode.sign * score).fillna(np.inf),
        "status": status.map({s: i for i, s in enumerate(STATUSES)}).fillna(len(STATUSES)),
        "trial": trials["trial_id"] if "trial_id" in trials else pd.Series(range(len(trials)), index=trials.index),
    })
    return trials.loc[keys.sort_values(list(keys.columns), kind="stable").index]


def best_trial(trials: pd.DataFrame, mode: Mode | str) -> dict[str, Any] | None:
    """The best trial's row as a dict (column -> value), or None when no trial has a finite score."""
    order = ranked(trials, mode)
    if order.empty:
        return None
    row = order.iloc[0]
    score = pd.to_numeric(pd.Series([row.get("score")]), errors="coerce").iloc[0]
    if pd.isna(score) or not np.isfinite(score) or row.get("status", Status.COMPLETED.value) == Status.FAILED.value:
        return None
    return row.to_dict()


def _mode(mode: Mode | str) -> Mode:
    try:
        return Mode(mode)
    except ValueError:
        raise ValueError(f"mode: must be 'max' or 'min', got {mode!r}") from None
