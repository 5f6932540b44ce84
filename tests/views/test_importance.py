"""Hyperparameter importance: it finds the hyperparameter that drives the score, whatever its scale."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from caviar.views.importance import importance, scored, variance_explained


def synthetic_trials(n: int, seed: int, score_of) -> pd.DataFrame:
    """`n` completed trials over four hyperparameters, scored by `score_of(frame, rng)`."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "trial_id": np.arange(n),
        "status": "completed",
        "params_learning_rate": 10 ** rng.uniform(-4, -1, n),
        "params_beta1": 1 - 10 ** rng.uniform(-3, -1, n),
        "params_batch_size": rng.choice([32, 64, 128, 256], n),
        "params_activation": rng.choice(["relu", "tanh"], n),
    })
    frame["score"] = score_of(frame, rng)
    return frame


def test_the_learning_rate_that_drives_the_score_ranks_first():
    trials = synthetic_trials(60, 1, lambda f, rng: 0.9 - 0.05 * (np.log10(f["params_learning_rate"]) + 2.5) ** 2
                              + rng.normal(0, 0.005, len(f)))

    table = importance(trials, {"learning_rate": "log", "beta1": "one_minus_log", "batch_size": "category"})

    assert table["param"].iloc[0] == "learning_rate"
    assert table["importance"].iloc[0] > 0.6
    assert (table["importance"].iloc[1:] < 0.15).all()
    assert list(table.columns) == ["param", "importance", "eta_squared", "spearman", "groups", "n"]
    assert (table["n"] == 60).all()


def test_a_choice_that_drives_the_score_ranks_first():
    trials = synthetic_trials(40, 2, lambda f, rng: np.where(f["params_activation"] == "relu", 0.9, 0.8)
                              + rng.normal(0, 0.01, len(f)))

    table = importance(trials)

    assert table["param"].iloc[0] == "activation"
    assert table["groups"].iloc[0] == 2
    assert math.isnan(table["spearman"].iloc[0])  # an unordered choice has no direction


def test_a_log_scale_value_and_its_logarithm_are_equally_important():
    # Quantile bins depend only on the order of the values, so the scale a value was searched on
    # does not change the answer.
    trials = synthetic_trials(50, 3, lambda f, rng: np.log10(f["params_learning_rate"]) + rng.normal(0, 0.5, len(f)))
    trials["params_log_lr"] = np.log10(trials["params_learning_rate"])

    table = importance(trials).set_index("param")

    assert table.loc["learning_rate", "importance"] == pytest.approx(table.loc["log_lr", "importance"])
    assert table.loc["learning_rate", "spearman"] > 0.5


def test_hyperparameters_that_do_nothing_score_near_zero():
    trials = synthetic_trials(80, 4, lambda f, rng: rng.normal(0.8, 0.02, len(f)))

    table = importance(trials)

    assert (table["importance"] < 0.1).all()
    # eta squared alone would credit the binned hyperparameters with chance variance.
    assert (table["eta_squared"] >= table["importance"]).all()


def test_eta_squared_agrees_with_scipys_one_way_anova():
    rng = np.random.default_rng(5)
    groups = rng.integers(0, 4, 30)
    score = groups * 0.3 + rng.normal(0, 1, 30)
    f, _ = stats.f_oneway(*(score[groups == g] for g in range(4)))
    k, n = 4, 30

    eta2, eps2 = variance_explained(score, groups)

    assert eta2 == pytest.approx(f * (k - 1) / (f * (k - 1) + n - k))
    assert eps2 == pytest.approx(max(0.0, (f - 1) * (k - 1) / (f * (k - 1) + n - k)))


def test_failed_trials_are_ignored_and_pruned_ones_count_with_their_score():
    trials = synthetic_trials(30, 6, lambda f, rng: np.log10(f["params_learning_rate"]))
    trials.loc[:4, "status"] = "pruned"
    trials.loc[5:6, ["status", "score"]] = ["failed", np.nan]

    assert set(scored(trials)["status"]) == {"completed", "pruned"}
    table = importance(trials)
    assert (table["n"] == 28).all()
    assert table["param"].iloc[0] == "learning_rate"


def test_pruned_trials_can_be_left_out_so_every_score_comes_from_the_same_budget():
    trials = synthetic_trials(30, 6, lambda f, rng: np.log10(f["params_learning_rate"]))
    trials.loc[:4, "status"] = "pruned"
    trials.loc[5:6, ["status", "score"]] = ["failed", np.nan]

    assert set(scored(trials, pruned=False)["status"]) == {"completed"}
    table = importance(trials, pruned=False)
    assert (table["n"] == 23).all()
    assert table["param"].iloc[0] == "learning_rate"


def test_too_few_trials_or_equal_scores_give_nan_not_an_error():
    few = synthetic_trials(7, 7, lambda f, rng: np.log10(f["params_learning_rate"]))
    flat = synthetic_trials(20, 8, lambda f, rng: np.full(len(f), 0.7))

    assert importance(few)["importance"].isna().all()
    assert importance(flat)["importance"].isna().all()
    assert importance(pd.DataFrame({"trial_id": [], "status": [], "score": []})).empty
