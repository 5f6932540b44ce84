"""`babysit --from SWEEP` (caviar/babysit/from_sweep.py `with_best_trial`): the job's [model] takes the
searched values of the sweep's best completed trial, best by the sweep's own mode; nothing but the
names the sweep searched is taken from a results folder, and a folder with no such trial is one
"--from:" error."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import tomli_w

from caviar.babysit.from_sweep import with_best_trial
from caviar.config.job import parse_job
from tests.run_factory import SPACE, make_babysit, make_sweep, write_table
from tests.support import snapshot

SEARCHED = tuple(SPACE)   # learning_rate, beta1, batch_size, l2


def babysit_job(**model: Any) -> Any:
    """The job a `babysit --from` starts from: the built-in trainer on digits."""
    return parse_job({"name": "panda", "data": {"source": "digits"},
                      "model": {"hidden_layers": [32], "learning_rate": 0.5, **model}, "babysit": {"epochs": 3}})


def picked(job: Any, sweep: Path) -> tuple[Any, list[str]]:
    """`with_best_trial` of `job` from `sweep`: the new job and what it said."""
    said: list[str] = []
    return with_best_trial(job, sweep, echo=said.append), said


def hand_made(root: Path, name: str, trials: dict[str, list], *, space: dict[str, Any] | None = None,
              search: dict[str, Any] | None = None, parts: int = 1) -> Path:
    """A sweep's folder: a job.toml with `space` and `search` sections (left out when None) and a trials table."""
    run = root / name
    run.mkdir(parents=True)
    job: dict[str, Any] = {"name": name}
    if space is not None:
        job["space"] = space
    if search is not None:
        job["search"] = search
    (run / "job.toml").write_text(tomli_w.dumps(job))
    write_table(run / "trials.parquet", pd.DataFrame(trials), parts)
    return run


# --- folders from the run factory -------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_best_completed_trial_by_the_sweeps_own_mode_is_taken(tmp_path, mode):
    sweep = make_sweep(tmp_path, "sweep", mode=mode)
    before = snapshot(sweep)
    trials = pd.read_parquet(sweep / "trials.parquet")
    completed = trials[trials["status"] == "completed"]
    best = completed.loc[completed["score"].idxmax() if mode == "max" else completed["score"].idxmin()]

    job, said = picked(babysit_job(), sweep)
    for name in SEARCHED:
        assert job.model[name] == pytest.approx(best[f"params_{name}"]), name
    assert type(job.model["batch_size"]) is int            # a plain int, as a job file holds it
    assert job.model["hidden_layers"] == [32] and job.model["trainer"] == "mlp"   # the rest is the job's own
    assert job.name == "panda" and job.babysit.epochs == 3
    assert said == [f"from sweep: score {best['score']:.4f} ({mode}) with "
                    f"{ {name: job.model[name] for name in SEARCHED} }"]
    assert snapshot(sweep) == before                         # the sweep is only read


def test_a_pruned_trial_with_a_better_score_is_passed_over(tmp_path):
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0, 1, 2, 3], "status": ["completed", "pruned", "failed", "completed"],
        "params_learning_rate": [0.01, 0.3, 0.4, 0.02], "score": [0.80, 0.99, math.nan, 0.85]},
        space={"learning_rate": {"log_uniform": [1e-4, 1.0]}}, search={"mode": "max"})
    job, _ = picked(babysit_job(), sweep)
    assert job.model["learning_rate"] == 0.02


def test_min_mode_of_a_hand_made_sweep_takes_the_lowest_score_across_parts(tmp_path):
    sweep = hand_made(tmp_path, "losses", {
        "trial_id": [0, 1, 2, 3], "status": ["completed"] * 4,
        "params_learning_rate": [0.001, 0.003, 0.02, 0.05], "score": [0.9, 0.5, 0.1, 0.7]},
        space={"learning_rate": {"log_uniform": [1e-4, 1e-1]}}, search={"metric": "val_loss", "mode": "min"},
        parts=2)
    job, said = picked(babysit_job(), sweep)
    assert job.model["learning_rate"] == 0.02
    assert "(min)" in said[0]


def test_a_sweep_without_a_mode_is_read_as_max(tmp_path):
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0, 1], "status": ["completed"] * 2, "params_learning_rate": [0.001, 0.003], "score": [0.9, 0.5]},
        space={"learning_rate": {"log_uniform": [1e-4, 1e-1]}})
    assert picked(babysit_job(), sweep)[0].model["learning_rate"] == 0.001


# --- only searched names, never code -----------------------------------------------------------------

def test_a_params_trainer_column_never_chooses_the_trainer(tmp_path):
    # Not even when the folder's job.toml claims to have searched it.
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0], "status": ["completed"], "params_learning_rate": [0.003],
        "params_trainer": ["evil.module:Payload"], "score": [0.9]},
        space={"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "trainer": {"choice": ["evil.module:Payload"]}})
    job, said = picked(babysit_job(), sweep)
    assert job.model["trainer"] == "mlp" and job.model["learning_rate"] == 0.003
    assert "evil" not in said[0]


def test_a_params_column_the_sweep_did_not_search_is_ignored(tmp_path):
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0], "status": ["completed"], "params_learning_rate": [0.003],
        "params_hidden_layers": ["[512, 512, 512]"], "params_optimizer": ["sgd"], "score": [0.9]},
        space={"learning_rate": {"log_uniform": [1e-4, 1e-1]}})
    job, _ = picked(babysit_job(), sweep)
    assert job.model["learning_rate"] == 0.003
    assert job.model["hidden_layers"] == [32] and "optimizer" not in job.model


def test_without_a_space_in_its_job_every_params_column_but_the_trainer_counts(tmp_path):
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0], "status": ["completed"], "params_learning_rate": [0.003], "params_optimizer": ["momentum"],
        "params_trainer": ["evil.module:Payload"], "score": [0.9]})
    job, _ = picked(babysit_job(), sweep)
    assert job.model["learning_rate"] == 0.003 and job.model["optimizer"] == "momentum"
    assert job.model["trainer"] == "mlp"


def test_list_values_stored_as_json_text_come_back_as_lists(tmp_path):
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0, 1], "status": ["completed"] * 2, "params_hidden_layers": ["[16, 8]", "[64]"],
        "params_learning_rate": [0.003, 0.001], "score": [0.95, 0.90]},
        space={"hidden_layers": {"choice": [[16, 8], [64]]}, "learning_rate": {"log_uniform": [1e-4, 1e-1]}})
    job, _ = picked(babysit_job(), sweep)
    assert job.model["hidden_layers"] == [16, 8]


def test_a_value_the_best_trial_lacks_keeps_the_jobs_own(tmp_path):
    # A column added by a later part is null in the earlier rows: the job's value stays.
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0, 1], "status": ["completed"] * 2, "params_learning_rate": [0.003, 0.001],
        "params_l2": [None, 1e-4], "score": [0.95, 0.90]},
        space={"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "l2": {"log_uniform": [1e-6, 1e-2]}})
    job, _ = picked(babysit_job(l2=1e-5), sweep)
    assert job.model["learning_rate"] == 0.003 and job.model["l2"] == 1e-5


# --- no trial to start from ----------------------------------------------------------------------------

def test_a_sweep_with_no_completed_trial_is_refused(tmp_path):
    sweep = hand_made(tmp_path, "sweep", {
        "trial_id": [0, 1], "status": ["failed", "pruned"], "params_learning_rate": [0.3, 0.01],
        "score": [math.nan, 0.9]}, space={"learning_rate": {"log_uniform": [1e-4, 1.0]}})
    with pytest.raises(ValueError, match=r"^--from: the sweep 'sweep' has no completed trial with a score"):
        picked(babysit_job(), sweep)


def test_a_sweep_of_only_failed_trials_from_the_factory_is_refused(tmp_path):
    sweep = make_sweep(tmp_path, "broken", n_trials=3, failed=3)
    with pytest.raises(ValueError, match=r"^--from: "):
        picked(babysit_job(), sweep)


def test_a_babysat_run_is_refused(tmp_path):
    panda = make_babysit(tmp_path, "panda")
    before = snapshot(panda)
    with pytest.raises(ValueError, match=r"^--from: 'panda' has no trials"):
        picked(babysit_job(), panda)
    assert snapshot(panda) == before


def test_a_missing_run_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^--from: there is no run 'nowhere' in "):
        picked(babysit_job(), tmp_path / "nowhere")
    assert list(tmp_path.iterdir()) == []


def test_a_name_that_is_no_run_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"^--from: expected letters"):
        picked(babysit_job(), tmp_path / ".hidden")


def test_a_sweep_whose_trials_table_is_empty_is_refused(tmp_path):
    sweep = tmp_path / "empty"
    sweep.mkdir()
    (sweep / "job.toml").write_text('name = "empty"\n')
    with pytest.raises(ValueError, match=r"^--from: 'empty' has no trials"):
        picked(babysit_job(), sweep)
