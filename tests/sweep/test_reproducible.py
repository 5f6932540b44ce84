"""A model-based sweep on real Ray proposes the same configurations, and scores them the same, whatever
order its trials finish in, in a resume too; a conditional dimension never reaches the trainer where it
is inactive, and its params_<name> is null there."""

from __future__ import annotations

import tomllib

import pandas as pd

from caviar.cli import main
from tests.support import run_sweep, write_job

SPACE = {
    "learning_rate": {"log_uniform": [1e-5, 1e-1]},
    "beta1": {"one_minus_log_uniform": [0.5, 0.9999]},
    "optimizer": {"choice": ["sgd", "momentum", "rmsprop", "adam"]},
    "beta2": {"one_minus_log_uniform": [0.99, 0.9999], "when": {"optimizer": ["adam", "rmsprop"]}},
    "momentum": {"one_minus_log_uniform": [0.8, 0.99], "when": {"optimizer": "momentum"}},
}
JITTER = {
    "data": {"source": "spiral"},
    "model": {"trainer": "tests.search_toys:JitterTrainer", "epochs": 2, "jitter": 0.08},
    "space": SPACE,
    "search": {"sampler": "tpe", "trials": 18, "scheduler": "fifo", "seed": 4, "concurrency": 2},
}
PARAMS = ["params_learning_rate", "params_beta1", "params_optimizer", "params_beta2", "params_momentum"]


def trials_of(run) -> pd.DataFrame:
    return pd.read_parquet(run / "trials.parquet").sort_values("trial_id").reset_index(drop=True)


def test_the_same_job_gives_the_same_trials_whatever_order_they_finish_in(ray_session, tmp_path):
    # A lag of 2 leaves room in flight (2 workers take 4 trials): trial k is asked as soon as trials
    # below k - 2 are done, while k - 2 and k - 1 finish in either order.
    job = write_job(tmp_path, "jitter", JITTER, search={"lag": 2})
    for name in ("first", "second"):
        assert run_sweep(job, tmp_path / "out", ray_session, "--name", name) == 0
    first, second = trials_of(tmp_path / "out" / "first"), trials_of(tmp_path / "out" / "second")
    assert (first["status"] == "completed").all(), first["error"].dropna().tolist()
    pd.testing.assert_frame_equal(first[["trial_id", *PARAMS, "score", "seed"]],
                                  second[["trial_id", *PARAMS, "score", "seed"]])
    saved = tomllib.loads((tmp_path / "out" / "first" / "job.toml").read_text())
    assert saved["space"]["beta2"]["when"] == {"optimizer": ["adam", "rmsprop"]}


def test_an_inactive_dimension_is_null_and_never_reaches_the_trainer(ray_session, tmp_path):
    job = write_job(tmp_path, "jitter", JITTER, model={"beta2": 0.95, "momentum": 0.5},  # [model] ones too
                    search={"sampler": "random", "trials": 16})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    trials = trials_of(tmp_path / "out" / "jitter")
    assert (trials["status"] == "completed").all(), trials["error"].dropna().tolist()   # the trainer refuses them
    uses_beta2 = trials["params_optimizer"].isin(["adam", "rmsprop"])
    assert trials.loc[uses_beta2, "params_beta2"].between(0.99, 0.9999).all()
    assert trials.loc[~uses_beta2, "params_beta2"].isna().all()
    assert trials.loc[trials["params_optimizer"] != "momentum", "params_momentum"].isna().all()
    assert uses_beta2.any() and (~uses_beta2).any()
    for command in ("show", "report"):   # the views read a run with null params
        assert main([command, "jitter", "--out", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "jitter" / "report.html").is_file()


def test_a_resume_with_other_workers_proposes_what_an_unbroken_run_did(ray_session, tmp_path):
    job = write_job(tmp_path, "jitter", JITTER)
    out = tmp_path / "out"
    assert run_sweep(job, out, ray_session, "--name", "whole") == 0
    assert run_sweep(job, out, ray_session, "--name", "grown", "--set", "search.trials=12") == 0
    assert run_sweep(job, out, ray_session, "--name", "grown", "--resume", "--set", "search.trials=18",
                     "--concurrency", "1") == 0
    # "auto" became twice the 2 workers of the first session, recorded: the resume on 1 kept it
    assert tomllib.loads((out / "grown" / "job.toml").read_text())["search"]["lag"] == 4
    whole, grown = trials_of(out / "whole"), trials_of(out / "grown")
    pd.testing.assert_frame_equal(whole[["trial_id", *PARAMS, "score"]], grown[["trial_id", *PARAMS, "score"]])
