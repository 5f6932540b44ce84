"""A sweep's plan from its job (caviar/sweep/plan.py): which sampler with which options, how many
epochs a trial lasts, which scheduler, and how many workers to start."""

from __future__ import annotations

from typing import Any, Mapping

import pytest

from caviar.config.job import parse_job
from caviar.search.samplers import CoarseToFineSampler, GridSampler, RandomSampler, SobolSampler
from caviar.search.schedulers import ASHA, FIFO
from caviar.sweep.plan import DEFAULT_EPOCHS, build_sampler, build_scheduler, max_epochs, worker_count
from tests.toys import ToyTrainer

SPACE = {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "batch_size": {"choice": [32, 64]}}


def sweep_job(*, model: Mapping[str, Any] | None = None, space: Mapping[str, Any] | None = None,
              **search: Any) -> Any:
    """A validated job of the toy trainer with `search` keys on top of a small random sweep."""
    return parse_job({
        "name": "plan",
        "data": {"source": "spiral"},
        "model": {"trainer": "tests.toys:ToyTrainer", **(model or {})},
        "space": dict(SPACE if space is None else space),
        "search": {"trials": 12, "seed": 5, **search},
    })


class SevenEpochTrainer(ToyTrainer):
    """A trainer whose own default is 7 epochs, told through check_config."""

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        return {"epochs": 7, "learning_rate": 1e-3, **config}


# --- the sampler ----------------------------------------------------------------------------------

def test_random_and_sobol_samplers_get_the_jobs_trials_seed_and_mode():
    for name, kind in (("random", RandomSampler), ("sobol", SobolSampler)):
        sampler = build_sampler(sweep_job(sampler=name, trials=10, seed=9, metric="val_loss", mode="min"))
        assert type(sampler) is kind
        assert (sampler.n_trials, sampler.seed, sampler.mode) == (10, 9, "min")
        assert sampler.space.names == ("learning_rate", "batch_size")


def test_the_grid_sampler_gets_grid_points():
    # 4 points of the learning rate x 2 batch sizes: a grid of 8, of which all 8 are asked for.
    sampler = build_sampler(sweep_job(sampler="grid", trials=100, grid_points=4))
    assert type(sampler) is GridSampler
    assert sampler.grid_size == 8 and sampler.n_trials == 8
    rates = sorted({sampler.ask(k)["learning_rate"] for k in range(sampler.n_trials)})
    assert rates == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    # The default (3 points) makes another grid: the option did reach the sampler.
    assert build_sampler(sweep_job(sampler="grid", trials=100)).grid_size == 6


def test_the_coarse_to_fine_sampler_gets_rounds_keep_fraction_and_shrink():
    sampler = build_sampler(sweep_job(sampler="coarse_to_fine", trials=12, rounds=4, keep_fraction=0.5,
                                      shrink=0.25, metric="val_loss", mode="min"))
    assert type(sampler) is CoarseToFineSampler
    assert (sampler.rounds, sampler.keep_fraction, sampler.shrink) == (4, 0.5, 0.25)
    assert sampler.round_sizes == (3, 3, 3, 3) and sampler.mode == "min"


def test_options_of_other_samplers_are_not_passed_to_the_one_used():
    # A random sweep keeps its coarse-to-fine options in the job; they change nothing.
    plain = build_sampler(sweep_job(sampler="random"))
    with_options = build_sampler(sweep_job(sampler="random", rounds=2, shrink=0.9, grid_points=7))
    assert [plain.ask(k) for k in range(12)] == [with_options.ask(k) for k in range(12)]


# --- how long a trial lasts -----------------------------------------------------------------------

def test_max_epochs_is_the_jobs_epochs_when_it_sets_them():
    assert max_epochs(sweep_job(model={"epochs": 4}), ToyTrainer) == 4
    # ... even over the trainer's own default
    assert max_epochs(sweep_job(model={"epochs": 4}), SevenEpochTrainer) == 4


def test_a_fixed_epochs_in_the_space_counts_as_the_jobs():
    assert max_epochs(sweep_job(space={**SPACE, "epochs": 6}), SevenEpochTrainer) == 6


def test_max_epochs_is_the_trainers_default_when_the_job_says_nothing():
    assert max_epochs(sweep_job(), SevenEpochTrainer) == 7


def test_max_epochs_is_twenty_for_a_trainer_that_declares_nothing():
    assert not hasattr(ToyTrainer, "check_config")
    assert DEFAULT_EPOCHS == 20
    assert max_epochs(sweep_job(), ToyTrainer) == 20


# --- the scheduler --------------------------------------------------------------------------------

def test_fifo_runs_every_trial_for_max_epochs():
    scheduler = build_scheduler(sweep_job(scheduler="fifo", model={"epochs": 5}), ToyTrainer)
    assert type(scheduler) is FIFO
    assert scheduler.max_epochs == 5 and scheduler.milestones == ()


def test_asha_gets_grace_period_reduction_factor_mode_and_the_trainers_epochs():
    scheduler = build_scheduler(sweep_job(scheduler="asha", grace_period=2, reduction_factor=2, metric="val_loss", mode="min"),
                                SevenEpochTrainer)
    assert type(scheduler) is ASHA
    assert scheduler.max_epochs == 7 and scheduler.mode == "min"
    assert scheduler.milestones == (2, 4)   # 2, 4 (8 is past the last epoch)
    assert scheduler.reduction_factor == 2


def test_asha_on_a_trainer_without_defaults_spans_twenty_epochs():
    scheduler = build_scheduler(sweep_job(scheduler="asha", grace_period=1, reduction_factor=3), ToyTrainer)
    assert scheduler.max_epochs == 20 and scheduler.milestones == (1, 3, 9)


# --- how many workers -----------------------------------------------------------------------------

def test_no_request_means_one_worker_per_cpu(capsys):
    assert worker_count(0, cpus=4, trials_left=100, quiet=False) == 4
    assert capsys.readouterr().err == ""


def test_a_request_within_the_cpus_is_kept(capsys):
    assert worker_count(3, cpus=4, trials_left=100, quiet=False) == 3
    assert capsys.readouterr().err == ""


def test_more_workers_than_cpus_are_capped_with_a_note(capsys):
    assert worker_count(6, cpus=2, trials_left=100, quiet=False) == 2
    err = capsys.readouterr().err
    assert err.strip() == "caviar: concurrency 6 is more than the 2 CPUs Ray has; using 2"


def test_quiet_caps_without_the_note(capsys):
    assert worker_count(6, cpus=2, trials_left=100, quiet=True) == 2
    assert capsys.readouterr() == ("", "")


def test_never_more_workers_than_trials_left(capsys):
    assert worker_count(0, cpus=8, trials_left=3, quiet=False) == 3
    assert worker_count(4, cpus=8, trials_left=1, quiet=False) == 1
    assert capsys.readouterr().err == ""


def test_at_least_one_worker_even_with_no_trial_left():
    assert worker_count(0, cpus=2, trials_left=0, quiet=True) == 1


# --- model-based samplers and conditional dimensions ------------------------------------------------


def test_a_model_based_sampler_gets_its_lag_fixed_from_the_workers_and_recorded_in_the_job():
    from caviar.search.model_based import TPESampler
    from caviar.sweep.plan import settle_lag

    job = sweep_job(sampler="tpe")
    sampler = build_sampler(job)
    assert isinstance(sampler, TPESampler) and job.search.lag == "auto" and sampler.lag is None
    settled = settle_lag(job, sampler, n_workers=3)
    assert settled.search.lag == 6 == sampler.lag and parse_job(settled.to_toml()).search.lag == 6
    fixed = sweep_job(sampler="tpe", lag=1)
    assert settle_lag(fixed, build_sampler(fixed), n_workers=3).search.lag == 1
    random = sweep_job()
    assert settle_lag(random, build_sampler(random), n_workers=3) is random


def test_a_conditional_choice_of_text_keeps_its_column_type_when_its_first_rows_are_null(tmp_path):
    import pandas as pd

    from caviar.store.writer import TableWriter
    from caviar.sweep.plan import param_types

    job = sweep_job(space={**SPACE, "optimizer": {"choice": ["sgd", "momentum"]},
                           "kind": {"choice": ["nesterov", "plain"], "when": {"optimizer": "momentum"}},
                           "width": {"int_uniform": [8, 64], "when": {"optimizer": "momentum"}}})
    types = param_types(job.space)
    assert set(types) == {"params_kind", "params_width"}
    writer = TableWriter(tmp_path, "trials", types=types)
    writer.append([{"trial_id": 0, "params_kind": None, "params_width": None}])
    writer.flush()
    writer.append([{"trial_id": 1, "params_kind": "nesterov", "params_width": 16}])
    writer.flush()
    trials = pd.read_parquet(tmp_path / "trials.parquet").sort_values("trial_id")
    assert trials["params_kind"].isna().tolist() == [True, False] and trials["params_kind"].iloc[1] == "nesterov"
    assert trials["params_width"].iloc[1] == 16
