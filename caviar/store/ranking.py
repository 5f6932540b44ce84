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
    mode = Mode.of(mode)
    if trials.empty:
        return trials
    score = pd.to_numeric(trials["score"], errors="coerce").astype(float)
    status = trials["status"] if "status" in trials else pd.Series(Status.COMPLETED.value, index=trials.index)
    unscored = (status.eq(Status.FAILED.value) | score.isna() | ~np.isfinite(score)).fillna(True).astype(bool)
    key = (-mode.sign * score).fillna(np.inf).to_numpy()
    rank_of_status = status.map({s: i for i, s in enumerate(STATUSES)}).fillna(len(STATUSES)).to_numpy(float)
    trial = pd.to_numeric(trials["trial_id"], errors="coerce").astype(float).fillna(np.inf).to_numpy() \
        if "trial_id" in trials else np.arange(len(trials), dtype=float)
    # By position, not by label: a frame with repeated labels (two runs' trials concatenated) keeps
    # each of its rows once. np.lexsort is stable and sorts by its last key first (a DataFrame of
    # the keys and its sort_values took 4-6 ms of every leaderboard).
    return trials.iloc[np.lexsort((trial, rank_of_status, key, unscored.to_numpy()))]


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

