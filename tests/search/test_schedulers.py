"""The schedulers' decisions, as pure functions."""

from __future__ import annotations

import pytest

from caviar.config.job import parse_job
from caviar.search.schedulers import ASHA, FIFO, SCHEDULERS, make_scheduler


def test_fifo_never_prunes_and_runs_to_the_end():
    fifo = FIFO(max_epochs=10)
    assert fifo.milestones == ()
    assert fifo.next_stop(0) == 10
    assert all(fifo.should_continue(t, 10, -1.0) for t in range(5))


def test_asha_rungs_grow_by_the_reduction_factor():
    asha = ASHA(max_epochs=30, grace_period=2, reduction_factor=3)
    assert asha.milestones == (2, 6, 18)
    assert asha.next_stop(0) == 2
    assert asha.next_stop(2) == 6
    assert asha.next_stop(18) == 30


def test_asha_keeps_the_top_third_at_a_rung():
    asha = ASHA(max_epochs=20, grace_period=1, reduction_factor=3)
    decisions = [asha.should_continue(t, 1, score) for t, score in enumerate([0.5, 0.9, 0.1, 0.95, 0.2, 0.3])]
    # The first trial at a rung always goes on; later ones must be in the top third seen so far.
    assert decisions == [True, True, False, True, False, False]


def test_asha_min_mode_prefers_low_scores():
    asha = ASHA(max_epochs=20, grace_period=1, reduction_factor=2, mode="min")
    assert asha.should_continue(0, 1, 1.0)
    assert asha.should_continue(1, 1, 0.5)
    assert not asha.should_continue(2, 1, 2.0)


def test_asha_prunes_a_nan_score():
    asha = ASHA(max_epochs=20, grace_period=1, reduction_factor=2)
    asha.should_continue(0, 1, 0.5)
    assert not asha.should_continue(1, 1, float("nan"))


def test_asha_ignores_epochs_that_are_not_rungs():
    asha = ASHA(max_epochs=20, grace_period=2, reduction_factor=3)
    assert asha.should_continue(0, 3, -100.0)


@pytest.mark.parametrize("kwargs, field", [
    ({"grace_period": 0}, "grace_period"),
    ({"reduction_factor": 1}, "reduction_factor"),
])
def test_asha_rejects_bad_settings(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ASHA(max_epochs=10, **kwargs)


def test_make_scheduler_names_the_field():
    with pytest.raises(ValueError, match="search.scheduler"):
        make_scheduler("hyperband", max_epochs=5, mode="max")


@pytest.mark.parametrize(("key", "value"), [
    ("scheduler", "hyperband"), ("scheduler", "ash"), ("mode", "maximize"), ("mode", "mx"), ("grace_period", 0),
    ("grace_period", 1.5), ("reduction_factor", 1), ("reduction_factor", "three"), ("reduction_factor", float("inf")),
])
def test_a_bad_setting_reads_the_same_from_make_scheduler_as_from_a_job_file(key, value):
    """One rule and one message per field, whether the job file or a direct caller gets it wrong."""
    with pytest.raises(ValueError) as from_job:
        parse_job({"search": {key: value}})
    arguments = {"name": "asha", "max_epochs": 10, "mode": "max"}
    arguments["name" if key == "scheduler" else key] = value
    with pytest.raises(ValueError) as from_scheduler:
        make_scheduler(arguments.pop("name"), **arguments)
    assert str(from_scheduler.value) == str(from_job.value)


def test_every_scheduler_a_job_accepts_can_be_made():
    for name in SCHEDULERS:
        job = parse_job({"search": {"scheduler": name}})
        make_scheduler(job.search.scheduler, max_epochs=10, mode=job.search.mode,
                       grace_period=job.search.grace_period, reduction_factor=job.search.reduction_factor)


def test_asha_counts_a_trial_that_reaches_a_rung_again_once():
    asha = ASHA(max_epochs=20, grace_period=1, reduction_factor=2)
    assert asha.should_continue(0, 1, 0.9)
    assert asha.should_continue(0, 1, 0.9)   # trial 0 rerun after its worker died
    assert not asha.should_continue(1, 1, 0.5)
    # Counted once, 0.7 is in the top half of {0.9, 0.5, 0.7}; counted twice, the two 0.9s would
    # fill the top half of {0.9, 0.9, 0.5, 0.7} and push it out.
    assert asha.should_continue(2, 1, 0.7)
