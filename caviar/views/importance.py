"""Which hyperparameters mattered: a binned one-way analysis of variance over a sweep's trials.

The measure, for each searched hyperparameter p:

1. Keep the trials with a score (at least `MIN_TRIALS`, 8, of them, or nothing is measured): the
   completed and the pruned ones; failed trials have none. A pruned trial's score is its best in
   fewer epochs, and lower for it, but the early stopper pruned it for being among the worst at
   that point, so its low score puts it about where the search ranked it: the measure then says
   which hyperparameters decided both how far a trial got and how well it did. With
   `pruned=False` only completed trials count: scores that all come from the same budget (the
   report's choice when there are enough of them).
2. Put the trials into groups by the value of p: a choice (or any hyperparameter with at most
   `max_bins` distinct values) gives one group per value; a continuous one is cut into
   `k = min(max_bins, n // 4)` (at least 2) bins at the quantiles of its values, so each bin holds
   about the same number of trials. Quantile bins depend only on the order of the values, so the
   measure is the same whether p was searched on a linear, log or 1 − β scale.
3. eta² = SS_between / SS_total: the fraction of the score variance explained by the group means.
   With k groups of n trials, eta² averages (k − 1)/(n − 1) even for a hyperparameter that does
   nothing, so the ranking uses the bias-adjusted epsilon² = (SS_between − (k − 1)·MS_within) /
   SS_total (clipped at 0): about 0 for a hyperparameter that does not matter, 1 when its groups
   explain every difference in score.

Each hyperparameter is judged on its own (one-way), so with few trials and several strong
hyperparameters the others' effects count as noise: read it as a ranking, not a decomposition (the
values need not add up to 1). The table also gives Spearman's rank correlation between the value
and the score (NaN for unordered choices), which says in which direction the score moves.
"""

from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from caviar.store.vocabulary import Status

PARAM_PREFIX = "params_"
MAX_BINS = 5
MIN_TRIALS = 8  # below this a few lucky trials "explain" anything
COLUMNS = ("param", "importance", "eta_squared", "spearman", "groups", "n")


def scored(trials: pd.DataFrame, *, pruned: bool = True) -> pd.DataFrame:
    """The rows of `trials` the measure uses: those with a finite score (completed, and pruned ones
    unless `pruned` is False)."""
    score = pd.to_numeric(trials["score"], errors="coerce") if "score" in trials else pd.Series(np.nan, index=trials.index)
    keep = np.isfinite(score.to_numpy(dtype=float))
    if not pruned and "status" in trials:
        keep &= (trials["status"] == Status.COMPLETED).to_numpy(dtype=bool, na_value=False)
    return trials[keep]


def is_ordered(values: pd.Series, scale: str | None = None) -> bool:
    """True when the values have an order that bins and rank correlation may use (numbers, not bools)."""
    if scale == "category":
        return False
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def groups_of(values: pd.Series, *, ordered: bool, max_bins: int = MAX_BINS) -> np.ndarray:
    """Group index (n,) int64 of each value: one group per distinct value, or quantile bins.

    values: (n,) without missing entries. A continuous value gets `min(max_bins, n // 4)` (at
    least 2) quantile bins; tied quantiles merge, so there may be fewer.
    """
    distinct = values.nunique()
    if not ordered or distinct <= max_bins:
        return pd.factorize(values, sort=True)[0].astype(np.int64)
    k = max(2, min(max_bins, len(values) // 4))
    bins = pd.qcut(values.astype(float), q=k, labels=False, duplicates="drop")
    return np.asarray(bins, dtype=np.int64)


def variance_explained(score: np.ndarray, groups: np.ndarray) -> tuple[float, float]:
    """(eta², epsilon²) of a one-way ANOVA of `score` (n,) by `groups` (n,) int.

    NaN when there is nothing to explain or no way to explain it: fewer than 2 groups, no
    within-group degree of freedom, or all scores equal.
    """
    n = len(score)
    labels, counts = np.unique(groups, return_inverse=False, return_counts=True)
    k = len(labels)
    total = float(np.sum((score - score.mean()) ** 2))
    # ptp, not `total`: equal scores leave a round-off total that would divide into nonsense.
    if k < 2 or n - k < 1 or np.ptp(score) == 0.0 or total <= 0.0:
        return float("nan"), float("nan")
    means = np.array([score[groups == g].mean() for g in labels])
    between = float(np.sum(counts * (means - score.mean()) ** 2))
    between = min(between, total)
    within = total - between
    eta2 = between / total
    eps2 = (between - (k - 1) * within / (n - k)) / total
    return eta2, max(eps2, 0.0)


def spearman(values: pd.Series, score: np.ndarray) -> float:
    """Spearman's rank correlation of `values` (n,) with `score` (n,); NaN when either is constant."""
    x = values.astype(float).rank().to_numpy()
    y = pd.Series(score).rank().to_numpy()
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def importance(trials: pd.DataFrame, scales: Mapping[str, str] | None = None, *,
               max_bins: int = MAX_BINS, pruned: bool = True) -> pd.DataFrame:
    """One row per searched hyperparameter (`params_<name>` column), most important first.

    trials: the trials table (needs `score` and `params_*` columns); the rows used are
    `scored(trials, pruned=pruned)` (pruned=False: completed trials only). scales: optional
    name -> "linear" | "log" | "one_minus_log" | "category"; only "category" changes anything (it
    makes a numeric choice unordered). Returns columns `param` (name without the prefix),
    `importance` (epsilon², in [0, 1]), `eta_squared`, `spearman`, `groups` (k) and `n` (trials
    used); importance is NaN where it cannot be measured (fewer than `MIN_TRIALS` scored trials,
    a single value, equal scores).
    """
    scales = dict(scales or {})
    names = [c for c in trials.columns if c.startswith(PARAM_PREFIX)]
    used = scored(trials, pruned=pruned)
    rows = []
    for column in names:
        name = column[len(PARAM_PREFIX):]
        present = used[column].notna()
        values = used.loc[present, column]
        score = pd.to_numeric(used.loc[present, "score"]).to_numpy(dtype=float)
        ordered = is_ordered(values, scales.get(name))
        eta2 = eps2 = rho = float("nan")
        k = 0
        if len(values) >= MIN_TRIALS:
            groups = groups_of(values, ordered=ordered, max_bins=max_bins)
            k = int(len(np.unique(groups)))
            eta2, eps2 = variance_explained(score, groups)
            rho = spearman(values, score) if ordered else float("nan")
        rows.append({"param": name, "importance": eps2, "eta_squared": eta2, "spearman": rho,
                     "groups": k, "n": int(len(values))})
    table = pd.DataFrame(rows, columns=list(COLUMNS))
    # Most important first; unmeasurable (NaN) last, ties in the job's order.
    return table.sort_values("importance", ascending=False, na_position="last", kind="stable").reset_index(drop=True)
