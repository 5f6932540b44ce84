"""The job file's [search] vocabulary is exactly what the search code implements: every sampler and
scheduler name it accepts builds one, no other name does, and a bad option reads the same whether the
job file or the sampler/scheduler catches it."""

from __future__ import annotations

import inspect
import math

import pytest

from caviar.config.choices import SAMPLER_CHECKS, SAMPLERS, SCHEDULER_CHECKS, SCHEDULERS
from caviar.config.job import parse_job
from caviar.config.space import Choice, Fixed, IntUniform, LogUniform, SearchSpace
from caviar.search import samplers, schedulers
from caviar.search.samplers import Sampler, make_sampler
from caviar.search.schedulers import Scheduler, make_scheduler

SPACE = SearchSpace({
    "learning_rate": LogUniform(1e-4, 1e-1),
    "activation": Choice(["relu", "tanh"]),
    "units": IntUniform(8, 64),
    "batch_size": Fixed(32),
})


def subclasses(cls: type) -> set[type]:
    found = set()
    for sub in cls.__subclasses__():
        found |= {sub} | subclasses(sub)
    return found


def error(call) -> str:
    with pytest.raises(ValueError) as info:
        call()
    return str(info.value)


# --- samplers -----------------------------------------------------------------------------------------


def test_sampler_names_are_the_seven_the_docs_describe():
    assert SAMPLERS == ("random", "grid", "sobol", "coarse_to_fine", "tpe", "gp", "cmaes")


def test_every_sampler_class_is_named_in_the_job_vocabulary_and_every_name_has_a_class():
    from caviar.search import model_based  # noqa: F401  (Optuna's engines: imported only when used)

    assert {cls.name for cls in subclasses(Sampler) if not inspect.isabstract(cls)} == set(SAMPLERS)


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_name_builds_that_sampler_on_a_small_space(name):
    sampler = make_sampler(name, SPACE, n_trials=4, seed=1, options={"rounds": 2})
    assert isinstance(sampler, Sampler) and sampler.name == name
    assert 1 <= sampler.n_trials <= 4
    config = sampler.ask(0)
    assert set(config) == {"learning_rate", "activation", "units", "batch_size"}
    assert 1e-4 <= config["learning_rate"] <= 1e-1
    assert config["activation"] in ("relu", "tanh") and 8 <= config["units"] <= 64
    assert config["batch_size"] == 32


@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_name_is_accepted_by_the_job_file(name):
    assert parse_job({"search": {"sampler": name}}).search.sampler == name


@pytest.mark.parametrize("name", ["pbt", "Random", "bayes", "", "grid "])
def test_a_name_outside_the_vocabulary_is_refused_alike_by_the_job_file_and_make_sampler(name):
    from_job = error(lambda: parse_job({"search": {"sampler": name}}))
    from_sampler = error(lambda: make_sampler(name, SPACE, n_trials=4, seed=0))
    assert from_job == from_sampler
    assert from_job.startswith("search.sampler: expected one of random, grid, sobol, coarse_to_fine, tpe, gp, cmaes, got ")


def test_a_misspelt_sampler_gets_a_suggestion():
    assert error(lambda: make_sampler("sobel", SPACE, n_trials=4, seed=0)).endswith("(did you mean 'sobol'?)")


def test_the_sampler_options_with_rules_are_the_options_the_samplers_take():
    assert set(SAMPLER_CHECKS) == set(samplers.OPTIONS) == {"grid_points", "rounds", "keep_fraction", "shrink",
                                                                   "lag"}


def test_the_samplers_default_options_pass_their_own_rules():
    for key, default in samplers.OPTIONS.items():
        assert SAMPLER_CHECKS[key](default) == default


BAD_SAMPLER_OPTIONS = [
    ("grid_points", 1, "an integer >= 2"), ("grid_points", 3.0, "an integer >= 2"),
    ("grid_points", True, "an integer >= 2"),
    ("rounds", 0, "a positive integer"), ("rounds", 2.5, "a positive integer"),
    ("keep_fraction", 0, "a fraction in (0, 1]"), ("keep_fraction", 1.5, "a fraction in (0, 1]"),
    ("keep_fraction", math.nan, "a fraction in (0, 1]"),
    ("shrink", 0.0, "a fraction in (0, 1]"), ("shrink", -0.5, "a fraction in (0, 1]"),
    ("shrink", "half", "a fraction in (0, 1]"),
]


@pytest.mark.parametrize("key, value, what", BAD_SAMPLER_OPTIONS)
@pytest.mark.parametrize("name", SAMPLERS)
def test_every_sampler_refuses_a_bad_option_even_one_it_does_not_use(name, key, value, what):
    message = error(lambda: make_sampler(name, SPACE, n_trials=4, seed=0, options={key: value}))
    assert message.startswith(f"search.{key}: expected {what}, got ")


@pytest.mark.parametrize("key, value, what", BAD_SAMPLER_OPTIONS)
def test_a_bad_sampler_option_reads_the_same_in_the_job_file(key, value, what):
    from_job = error(lambda: parse_job({"search": {key: value}}))
    from_sampler = error(lambda: make_sampler("random", SPACE, n_trials=4, seed=0, options={key: value}))
    assert from_job == from_sampler


@pytest.mark.parametrize("key, value", [("grid_points", 2), ("rounds", 1), ("keep_fraction", 1), ("shrink", 1.0)])
def test_the_edge_values_of_the_sampler_options_are_accepted(key, value):
    make_sampler("coarse_to_fine", SPACE, n_trials=4, seed=0, options={key: value})
    assert getattr(parse_job({"search": {key: value}}).search, key) == value


def test_an_unknown_sampler_option_lists_the_valid_ones():
    message = error(lambda: make_sampler("grid", SPACE, n_trials=4, seed=0, options={"grid_pts": 3}))
    assert message.startswith("search.grid_pts: unknown sampler option (did you mean 'grid_points'?")
    assert "valid: grid_points, rounds, keep_fraction, shrink, lag" in message


def test_sampler_options_reach_the_sampler_that_uses_them():
    grid = make_sampler("grid", SearchSpace({"x": LogUniform(1e-3, 1.0)}), n_trials=100, seed=0,
                        options={"grid_points": 5})
    assert grid.n_trials == 5
    coarse = make_sampler("coarse_to_fine", SPACE, n_trials=9, seed=0,
                          options={"rounds": 3, "keep_fraction": 0.5, "shrink": 0.25})
    assert (coarse.rounds, coarse.keep_fraction, coarse.shrink) == (3, 0.5, 0.25)


# --- schedulers --------------------------------------------------------------------------------------


def test_scheduler_names_are_fifo_and_asha():
    assert SCHEDULERS == ("fifo", "asha")
    assert {cls.__name__.lower() for cls in subclasses(Scheduler)} == set(SCHEDULERS)


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_name_builds_that_scheduler(name):
    scheduler = make_scheduler(name, max_epochs=9, mode="max")
    assert isinstance(scheduler, Scheduler) and type(scheduler).__name__.lower() == name
    assert scheduler.next_stop(0) <= 9
    assert scheduler.should_continue(0, 1, 0.5) is True  # the first trial at a rung is always kept


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_scheduler_name_is_accepted_by_the_job_file(name):
    assert parse_job({"search": {"scheduler": name}}).search.scheduler == name


def test_fifo_runs_every_trial_to_the_end_and_asha_has_rungs():
    assert make_scheduler("fifo", max_epochs=9, mode="max").milestones == ()
    asha = make_scheduler("asha", max_epochs=20, mode="max", grace_period=2, reduction_factor=3)
    assert asha.milestones == (2, 6, 18)


@pytest.mark.parametrize("name", ["hyperband", "ASHA", "PBT", ""])
def test_a_scheduler_outside_the_vocabulary_is_refused_alike_by_the_job_file_and_make_scheduler(name):
    from_job = error(lambda: parse_job({"search": {"scheduler": name}}))
    from_scheduler = error(lambda: make_scheduler(name, max_epochs=9, mode="max"))
    assert from_job == from_scheduler
    assert from_job.startswith("search.scheduler: expected one of fifo, asha, pbt, got ")


def test_pbt_is_a_job_scheduler_but_no_trial_scheduler():
    assert parse_job({"search": {"scheduler": "pbt"}}).search.scheduler == "pbt"
    # pbt is a driver of its own (caviar.population), which no Scheduler class is.
    assert error(lambda: make_scheduler("pbt", max_epochs=9, mode="max")).startswith("search.scheduler: pbt trains")


def test_a_misspelt_scheduler_gets_a_suggestion():
    assert error(lambda: make_scheduler("ash", max_epochs=9, mode="max")).endswith("(did you mean 'asha'?)")


def test_the_scheduler_options_with_rules_are_asha_s_arguments():
    assert set(SCHEDULER_CHECKS) == {"grace_period", "reduction_factor", "smoothing"}


BAD_SCHEDULER_OPTIONS = [
    ("grace_period", 0, '"auto" or a positive integer'), ("grace_period", 1.5, '"auto" or a positive integer'),
    ("grace_period", True, '"auto" or a positive integer'), ("grace_period", "Auto", '"auto" or a positive integer'),
    ("reduction_factor", 1, '"auto" or a number > 1'), ("reduction_factor", 0.5, '"auto" or a number > 1'),
    ("reduction_factor", math.inf, '"auto" or a number > 1'), ("reduction_factor", "3", '"auto" or a number > 1'),
    ("smoothing", 1, "a number in [0, 1)"), ("smoothing", -0.1, "a number in [0, 1)"),
    ("smoothing", "0.5", "a number in [0, 1)"), ("smoothing", math.nan, "a number in [0, 1)"),
]


@pytest.mark.parametrize("key, value, what", BAD_SCHEDULER_OPTIONS)
def test_asha_refuses_a_bad_option_as_the_job_file_does(key, value, what):
    from_scheduler = error(lambda: make_scheduler("asha", max_epochs=9, mode="max", **{key: value}))
    assert from_scheduler.startswith(f"search.{key}: expected {what}, got ")
    assert error(lambda: parse_job({"search": {key: value}})) == from_scheduler


def test_the_edge_values_of_the_scheduler_options_are_accepted():
    asha = make_scheduler("asha", max_epochs=9, mode="min", grace_period=1, reduction_factor=1.01)
    assert asha.milestones[0] == 1
    assert schedulers.ASHA(9, "max", grace_period=9).milestones == ()  # a first rung at the end: no pruning
