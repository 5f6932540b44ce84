"""The babysitter's pure policy: every decision, from lists of numbers (no trainer, no files)."""

from __future__ import annotations

import math
from dataclasses import dataclass, fields, replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caviar.babysit.policy import (
    Continue,
    Day,
    Diverged,
    Improved,
    Plateau,
    PolicyState,
    Rollback,
    Stop,
    decide,
    manual_rollback,
    replay,
    step,
)


@dataclass(frozen=True)
class Spec:
    """The [babysit] fields the policy reads, with round numbers that make the arithmetic obvious."""

    epochs: int = 100
    patience: int = 3
    min_delta: float = 0.0
    plateau_factor: float = 0.5
    cooldown: int = 0
    tolerance: float = 0.05
    rollback_factor: float = 0.5
    divergence_ratio: float = 3.0
    divergence_factor: float = 0.1
    min_lr: float = 1e-6
    max_rollbacks: int = 10
    target: float | None = None
    mode: str = "max"


SPEC = Spec()


def days(scores, *, loss=1.0, lr=0.01, losses=None, rates=None) -> list[Day]:
    """A history from a list of scores (epochs 1, 2, ...), same loss and learning rate unless given."""
    return [
        Day(epoch=i + 1, score=s, loss=(losses[i] if losses else loss), learning_rate=(rates[i] if rates else lr))
        for i, s in enumerate(scores)
    ]


def kinds(history, spec=SPEC) -> list[str]:
    return [d.kind for d in replay(history, spec)[0]]


# --- improved -------------------------------------------------------------------------------------


def test_the_first_epoch_is_an_improvement_over_nothing():
    decision = decide(days([0.3]), SPEC)
    assert isinstance(decision, Improved) and decision.score == 0.3 and decision.improved


def test_a_higher_score_is_an_improvement_and_becomes_the_best():
    assert kinds(days([0.3, 0.5, 0.7])) == ["improved"] * 3
    assert replay(days([0.3, 0.5, 0.7]), SPEC)[1].best_epoch == 3


def test_an_improvement_must_beat_the_best_by_more_than_min_delta():
    spec = replace(SPEC, min_delta=0.01)
    assert isinstance(decide(days([0.5, 0.505]), spec), Continue)
    assert isinstance(decide(days([0.5, 0.52]), spec), Improved)
    # equal is not better, even with min_delta 0
    assert isinstance(decide(days([0.5, 0.5]), SPEC), Continue)


def test_in_min_mode_a_lower_score_is_better():
    spec = replace(SPEC, mode="min", tolerance=0.2)
    assert kinds(days([1.0, 0.8, 0.9]), spec) == ["improved", "improved", "continue"]
    rollback = decide(days([1.0, 0.8, 1.1]), spec)  # 0.3 worse than 0.8 > tolerance 0.2
    assert isinstance(rollback, Rollback) and rollback.to_epoch == 2


# --- plateau and cooldown -------------------------------------------------------------------------


def test_patience_epochs_without_improvement_cut_the_learning_rate():
    history = days([0.5, 0.49, 0.48, 0.49])  # 3 epochs without improvement, all within tolerance
    assert kinds(history) == ["improved", "continue", "continue", "plateau"]
    plateau = decide(history, SPEC)
    assert isinstance(plateau, Plateau) and plateau.learning_rate == pytest.approx(0.005)


def test_patience_counts_again_after_a_cut():
    history = days([0.5] + [0.49] * 6)
    assert kinds(history) == ["improved", "continue", "continue", "plateau", "continue", "continue", "plateau"]


def test_after_a_cut_cooldown_epochs_pass_before_patience_counts():
    spec = replace(SPEC, cooldown=2, patience=2)
    history = days([0.5] + [0.49] * 7)
    # cut at epoch 3; epochs 4-5 cool down; patience counts 6, 7 -> cut at 7
    assert kinds(history, spec) == ["improved", "continue", "plateau", "continue", "continue", "continue", "plateau",
                                    "continue"]
    assert "cooldown" in replay(history, spec)[0][3].reason


def test_an_improvement_resets_patience():
    assert kinds(days([0.5, 0.49, 0.49, 0.6, 0.59, 0.59])) == ["improved", "continue", "continue", "improved",
                                                               "continue", "continue"]


# --- regression -> rollback ---------------------------------------------------------------------


def test_a_score_more_than_tolerance_below_the_best_rolls_back_to_the_best():
    decision = decide(days([0.5, 0.9, 0.8]), SPEC)
    assert isinstance(decision, Rollback)
    assert decision.to_epoch == 2 and decision.learning_rate == pytest.approx(0.005)


def test_a_drop_within_tolerance_is_not_a_rollback():
    assert isinstance(decide(days([0.5, 0.9, 0.86]), SPEC), Continue)


def test_a_rollback_uses_the_rate_the_epoch_was_trained_with():
    decision = decide(days([0.9, 0.5], rates=[0.01, 0.004]), SPEC)
    assert isinstance(decision, Rollback) and decision.learning_rate == pytest.approx(0.002)


def test_rollbacks_are_counted_and_reset_patience():
    decisions, state = replay(days([0.9, 0.8, 0.89, 0.89]), SPEC)
    assert [d.kind for d in decisions] == ["improved", "rollback", "continue", "continue"]
    assert state.rollbacks == 1 and state.wait == 2 and state.best_epoch == 1


# --- divergence -----------------------------------------------------------------------------------


@pytest.mark.parametrize("score, loss", [(math.nan, 1.0), (0.5, math.inf), (0.5, math.nan), (-math.inf, 1.0)])
def test_a_non_finite_score_or_loss_diverges(score, loss):
    history = days([0.5]) + [Day(2, score, loss, 0.01)]
    decision = decide(history, SPEC)
    assert isinstance(decision, Diverged) and decision.to_epoch == 1
    assert decision.learning_rate == pytest.approx(0.001)


def test_divergence_before_any_improvement_rolls_back_to_the_initial_state():
    decision = decide([Day(1, math.nan, math.nan, 0.5)], SPEC)
    assert isinstance(decision, Diverged) and decision.to_epoch == 0
    assert decision.learning_rate == pytest.approx(0.05) and "initial state" in decision.reason


def test_a_loss_above_divergence_ratio_times_the_first_epochs_diverges():
    # the score even improves, but the training loss is 4x the first epoch's (ratio 3)
    history = days([0.5, 0.6], losses=[1.0, 4.0])
    assert isinstance(decide(history, SPEC), Diverged)
    assert isinstance(decide(days([0.5, 0.6], losses=[1.0, 2.9]), SPEC), Improved)


def test_the_yardstick_is_the_first_finite_loss():
    history = [Day(1, math.nan, math.nan, 0.5), Day(2, 0.5, 2.0, 0.05), Day(3, 0.6, 5.0, 0.05)]
    decisions, state = replay(history, SPEC)
    assert state.first_loss == 2.0
    assert [d.kind for d in decisions] == ["diverged", "improved", "improved"]  # 5.0 < 3 x 2.0
    assert isinstance(decide(history[:2] + [Day(3, 0.6, 7.0, 0.05)], SPEC), Diverged)  # 7.0 > 3 x 2.0


def test_a_first_epoch_that_blew_up_diverges_against_the_initial_loss():
    # lr far too high: the first epoch's loss is itself huge, so it cannot be the yardstick
    first = [Day(1, 0.11, 2e31, 10.0)]
    assert isinstance(decide(first, SPEC), Improved)  # judged against nothing
    decision = decide(first, SPEC, start=PolicyState(first_loss=2.3))
    assert isinstance(decision, Diverged) and decision.to_epoch == 0
    assert decision.learning_rate == pytest.approx(1.0)
    # a normal first epoch is below the initial loss
    assert isinstance(decide([Day(1, 0.9, 0.6, 0.01)], SPEC, start=PolicyState(first_loss=2.3)), Improved)


def test_divergence_is_never_an_improvement():
    history = days([0.5]) + [Day(2, 0.99, 100.0, 0.01)]
    decisions, state = replay(history, SPEC)
    assert decisions[-1].kind == "diverged" and state.best_score == 0.5


# --- stop -----------------------------------------------------------------------------------------


def test_stop_when_the_epoch_budget_is_spent():
    spec = replace(SPEC, epochs=3)
    decisions = replay(days([0.5, 0.49, 0.48]), spec)[0]
    assert isinstance(decisions[-1], Stop) and decisions[-1].cause == "epochs" and not decisions[-1].improved


def test_a_stop_on_an_improving_epoch_keeps_it_as_the_best():
    spec = replace(SPEC, epochs=2)
    decision, state = step(replay(days([0.5]), spec)[1], Day(2, 0.7, 1.0, 0.01), spec)
    assert isinstance(decision, Stop) and decision.improved and state.best_epoch == 2


def test_stop_when_the_target_is_reached():
    spec = replace(SPEC, target=0.95)
    assert kinds(days([0.5, 0.9, 0.96, 0.97]), spec)[:3] == ["improved", "improved", "stop"]
    stop = decide(days([0.5, 0.9, 0.96]), spec)
    assert stop.cause == "target" and stop.improved
    assert decide(days([0.2, 0.1]), replace(SPEC, mode="min", target=0.15)).cause == "target"


def test_a_plateau_cut_below_min_lr_stops_instead():
    spec = replace(SPEC, min_lr=0.004)
    decision = decide(days([0.5, 0.49, 0.49, 0.49]), spec)  # 0.01 x 0.5 = 0.005 >= 0.004: a cut
    assert isinstance(decision, Plateau)
    decision = decide(days([0.5, 0.49, 0.49, 0.49], lr=0.006), spec)  # 0.003 < 0.004
    assert isinstance(decision, Stop) and decision.cause == "min_lr"


def test_a_rollback_below_min_lr_stops_instead():
    decision = decide(days([0.9, 0.1], lr=1e-6), replace(SPEC, min_lr=1e-6))
    assert isinstance(decision, Stop) and decision.cause == "min_lr"


def test_a_learning_rate_already_below_min_lr_stops():
    decision = decide(days([0.5, 0.6], lr=1e-7), SPEC)
    assert isinstance(decision, Stop) and decision.cause == "min_lr" and decision.improved


def test_stop_once_max_rollbacks_are_used():
    spec = replace(SPEC, max_rollbacks=2)
    history = days([0.9, 0.5, 0.5, 0.5])
    assert kinds(history, spec) == ["improved", "rollback", "rollback", "stop"]
    assert decide(history, spec).cause == "max_rollbacks"
    nan_history = days([0.9]) + [Day(e, math.nan, math.nan, 0.01) for e in (2, 3, 4)]
    assert kinds(nan_history, spec) == ["improved", "diverged", "diverged", "stop"]


# --- the machinery ------------------------------------------------------------------------------


def test_decide_needs_a_history():
    with pytest.raises(ValueError, match="history"):
        decide([], SPEC)


def test_decide_is_the_fold_of_step():
    history = days([0.5, 0.6, 0.2, 0.55, 0.58, 0.57, 0.59, 0.6], losses=[2, 1, 5, 1, 1, 1, 1, 1])
    state = PolicyState()
    for i, day in enumerate(history):
        decision, state = step(state, day, SPEC)
        assert decision == decide(history[: i + 1], SPEC)


def test_the_counters_survive_a_round_trip_through_plain_values():
    state = replay(days([0.5, 0.9, 0.8, 0.85], losses=[2, 1, 1, 1]), SPEC)[1]
    assert PolicyState.from_dict(state.to_dict()) == state
    assert PolicyState.from_dict(PolicyState().to_dict()) == PolicyState()


def test_a_persons_rollback_restarts_patience_without_using_the_budget():
    state = replace(PolicyState(best_score=0.5, best_epoch=3), wait=2, cooldown=1, rollbacks=1)
    assert manual_rollback(state) == replace(state, wait=0, cooldown=0)


def test_the_job_babysit_spec_has_every_field_the_policy_reads():
    import caviar.config.job as job

    names = {f.name for f in fields(job.BabysitSpec)}
    assert {f.name for f in fields(Spec)} <= names


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.one_of(st.floats(0, 1), st.just(math.nan)), st.floats(0.01, 10)),
        min_size=1, max_size=40,
    ),
    st.integers(1, 4),
    st.integers(0, 3),
)
def test_the_learning_rate_only_goes_down_and_the_budget_holds(points, patience, max_rollbacks):
    spec = replace(SPEC, patience=patience, max_rollbacks=max_rollbacks, cooldown=1)
    history, lr = [], 0.01
    state = PolicyState()
    for epoch, (score, loss) in enumerate(points, start=1):
        day = Day(epoch, score, loss, lr)
        history.append(day)
        decision, state = step(state, day, spec)
        assert decision == decide(history, spec)
        if isinstance(decision, (Plateau, Rollback, Diverged)):
            assert spec.min_lr <= decision.learning_rate < lr
            lr = decision.learning_rate
        if isinstance(decision, (Rollback, Diverged)):
            assert decision.to_epoch == 0 or history[decision.to_epoch - 1].score == state.best_score
        assert state.rollbacks <= max_rollbacks
        if isinstance(decision, Stop):
            break
