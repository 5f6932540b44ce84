"""The schedulers' decisions, as pure functions; their settings, refused in one line from the command line."""

from __future__ import annotations

import pytest

from caviar.config.job import parse_job
import math

import numpy as np
import pandas as pd

from caviar.search.schedulers import ASHA, FIFO, SCHEDULERS, asha_defaults, make_scheduler


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


# --- defaults from the epochs, and smoothing -------------------------------------------------------------


@pytest.mark.parametrize(("epochs", "grace", "factor", "rungs"), [
    (1, 1, 2.0, ()), (2, 1, 2.0, (1,)), (6, 2, 2.0, (2, 4)), (9, 1, 3.0, (1, 3)), (15, 2, 3.0, (2, 6)),
    (20, 3, 3.0, (3, 9)), (30, 4, 3.0, (4, 12)), (100, 12, 3.0, (12, 36)),
])
def test_asha_left_auto_takes_its_rungs_from_the_epochs(epochs, grace, factor, rungs):
    """Two rungs, the last near a third of the epochs: the issue's spiral (30 epochs) is first judged
    at epoch 4, not 2, where a batch of 256 has taken only 8 steps."""
    assert asha_defaults(epochs) == (grace, factor)
    asha = make_scheduler("asha", max_epochs=epochs, mode="max")
    assert (asha.grace_period, asha.reduction_factor, asha.milestones) == (grace, factor, rungs)


def test_asha_settings_given_are_kept_and_the_other_one_follows_the_epochs():
    assert asha_defaults(30, 2, 3) == (2, 3.0)
    assert asha_defaults(30, 1, "auto") == (1, 3.0)
    assert asha_defaults(30, "auto", 2) == (8, 2.0)   # ceil(30 / 2**2)
    assert ASHA(30, grace_period=2, reduction_factor=3).milestones == (2, 6, 18)


def _ewm_best(curve, smoothing, mode="max"):
    """The oracle: pandas' exponentially weighted mean (adjust=True is the debiased average), best so far."""
    smoothed = pd.Series(curve, dtype=float).dropna().ewm(alpha=1 - smoothing, adjust=True).mean()
    return float(smoothed.max() if mode == "max" else smoothed.min())


@pytest.mark.parametrize("smoothing", [0.0, 0.3, 0.6, 0.9])
@pytest.mark.parametrize("mode", ["max", "min"])
def test_the_rung_score_is_the_best_of_the_smoothed_curve(smoothing, mode):
    rng = np.random.default_rng(int(smoothing * 10))
    curve = list(0.9 - 0.5 * np.exp(-np.arange(1, 13) / 3) + rng.normal(0, 0.05, 12))
    asha = ASHA(12, mode, smoothing=smoothing)
    for n in range(1, 13):
        assert asha.rung_score(curve[:n]) == pytest.approx(_ewm_best(curve[:n], smoothing, mode), rel=1e-12)
    if smoothing == 0.0:
        assert asha.rung_score(curve) == (max(curve) if mode == "max" else min(curve))


def test_the_rung_score_skips_non_finite_values_and_is_nan_without_any():
    asha = ASHA(10, smoothing=0.5)
    assert asha.rung_score([0.4, math.nan, 0.8]) == pytest.approx(_ewm_best([0.4, 0.8], 0.5))
    assert math.isnan(asha.rung_score([math.nan, None])) and math.isnan(asha.rung_score([]))
    assert FIFO(10).rung_score([0.2, 0.7, 0.5]) == 0.7


def test_smoothing_keeps_a_lucky_epoch_from_carrying_a_noisy_trial_past_a_rung():
    steady, lucky = [0.80, 0.81, 0.82, 0.82], [0.60, 0.62, 0.95, 0.61]   # rung at epoch 4
    raw, smoothed = ASHA(12, grace_period=4, reduction_factor=2), ASHA(12, grace_period=4, reduction_factor=2,
                                                                      smoothing=0.6)
    for asha in (raw, smoothed):
        asha.should_continue(0, 4, asha.rung_score(steady))
    assert raw.should_continue(1, 4, raw.rung_score(lucky))            # best so far: 0.95 beats 0.82
    assert not smoothed.should_continue(1, 4, smoothed.rung_score(lucky))


def test_a_bad_smoothing_is_one_line_naming_the_field():
    with pytest.raises(ValueError) as info:
        make_scheduler("asha", max_epochs=10, mode="max", smoothing=1.0)
    assert str(info.value) == "search.smoothing: expected a number in [0, 1), got 1.0"


@pytest.mark.parametrize(("value", "shown"), [("1", "1"), ("-0.5", "-0.5"), ("nan", "nan"), ("high", "'high'"),
                                             ("auto", "'auto'")])
def test_a_bad_smoothing_on_the_command_line_exits_2_with_one_line(tmp_path, capsys, value, shown):
    from tests.support import caviar_output

    status, out, err = caviar_output(capsys, "parallel", "digits", "--dry-run", "--out", tmp_path,
                                     "--set", f"search.smoothing={value}")
    assert status == 2 and out == ""
    line = f"caviar parallel: error: search.smoothing: expected a number in [0, 1), got {shown}"
    assert err.strip().splitlines() == [line]
    assert not any(tmp_path.iterdir())   # refused before anything was written


def test_auto_settings_on_the_command_line_are_accepted(tmp_path, capsys):
    from tests.support import caviar_output

    status, _, err = caviar_output(capsys, "parallel", "digits", "--dry-run", "--out", tmp_path,
                                   "--set", "search.grace_period=auto", "--set", "search.reduction_factor=2",
                                   "--set", "search.smoothing=0.6")
    assert status == 0, err
