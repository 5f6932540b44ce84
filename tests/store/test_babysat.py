"""A babysat run as one row of load_all (`caviar.store.babysat`): pure functions of its job and tables."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest

from caviar.config.job import load_job, parse_job
from caviar.store.babysat import fixed_values, row, searched_names
from caviar.store.vocabulary import model_columns

JOBS = sorted((Path(__file__).resolve().parents[2] / "jobs").glob("*.toml"))
ODD_SPACE = {  # conditional dimensions, a fixed table, a fixed value over [model]'s
    "optimizer": {"choice": ["adam", "momentum"]},
    "beta1": {"one_minus_log_uniform": [0.5, 0.999], "when": {"optimizer": "adam"}},
    "momentum": {"fixed": 0.9, "when": {"optimizer": "momentum"}},
    "schedule": {"fixed": {"kind": "step", "every": 3}},
    "batch_size": 128,
}


@pytest.mark.parametrize("job", [*(load_job(p) for p in JOBS),
                                 parse_job({"name": "odd", "model": {"batch_size": 32, "l2": 0.0}, "space": ODD_SPACE})],
                         ids=[*(p.stem for p in JOBS), "odd"])
def test_the_raw_job_splits_its_values_as_a_sweep_of_it_does(job):
    """job.toml read as data gives the params_/model_ split the sweep's own (parsed) job gives."""
    raw = job.to_raw()
    assert searched_names(raw["space"]) == list(job.space.names)
    assert model_columns(fixed_values(raw), searched_names(raw["space"])) == \
        model_columns({"trainer": job.trainer, **job.config()}, job.space.names)


def epochs_of(scores, **extra):
    n = len(scores)
    return pd.DataFrame({"epoch": range(1, n + 1), "learning_rate": [0.1] * n, "seconds": [0.5] * n,
                         "val_loss": scores, "train_loss": [1.0 / (k + 1) for k in range(n)],
                         "decision": ["continue"] * n, **extra})


JOB = {"model": {"trainer": "mlp", "hidden_layers": [64, 64], "learning_rate": 0.1},
       "space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}}, "babysit": {"metric": "val_loss", "mode": "min",
                                                                          "seed": 7}}


def test_a_row_is_the_best_epoch_in_the_runs_mode_with_its_values():
    events = pd.DataFrame({"epoch": [0, 4], "event": ["start", "final"],
                           "time": pd.to_datetime(["2026-01-05T09:00:00Z", "2026-01-05T09:01:00Z"])})
    got = row(JOB, epochs_of([0.9, 0.4, float("nan"), 0.6]), events, running=False)
    assert got["score"] == 0.4 and got["val_loss"] == 0.4 and got["train_loss"] == 0.5   # epoch 2's
    assert (got["status"], got["epochs"], got["seconds"], got["seed"]) == ("completed", 4, 2.0, 7)
    assert got["params_learning_rate"] == 0.1 and got["model_hidden_layers"] == "[64, 64]"
    assert "model_learning_rate" not in got and got["model_trainer"] == "mlp" and got["trial_id"] is None
    assert (got["started_at"], got["finished_at"]) == tuple(events["time"])
    assert "decision" not in got and "learning_rate" not in got


def test_a_row_without_a_final_event_is_running_or_interrupted_and_none_without_epochs():
    no_events = pd.DataFrame({"epoch": [], "event": []})
    assert row(JOB, epochs_of([0.5]), no_events, running=True)["status"] == "running"
    interrupted = row(JOB, epochs_of([0.5]), no_events, running=False)
    assert interrupted["status"] == "interrupted" and interrupted["finished_at"] is None
    assert math.isnan(row(JOB, epochs_of([float("nan")]), no_events, running=False)["score"])
    assert row(JOB, epochs_of([]), no_events, running=False) is None
