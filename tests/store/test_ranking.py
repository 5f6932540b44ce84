"""Which trial is best (caviar.store.ranking) promises one rule everywhere:

- trials are ranked by `score` in the job's mode ("max": higher first, "min": lower first);
- failed trials and trials without a finite score come last, whatever their score says;
- a pruned trial competes with its score (the epochs it ran); on an equal score a completed trial
  comes first, then the lower trial id;
- `ranked` returns the frame's own rows (every column, every row once), reordered;
- `best_trial` is the first of them as a dict, or None when no trial has a finite score;
- a mode other than "max"/"min" is refused with a ValueError naming `mode`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from caviar.store.ranking import best_trial, ranked
from caviar.store.vocabulary import Mode

NAN = float("nan")


def trials(*rows: tuple[int, str, float]) -> pd.DataFrame:
    """A trials table from (trial_id, status, score) rows, with a params and a metric column."""
    return pd.DataFrame({
        "trial_id": [r[0] for r in rows],
        "status": [r[1] for r in rows],
        "params_learning_rate": [10.0 ** -(1 + r[0] % 4) for r in rows],
        "score": [r[2] for r in rows],
        "val_loss": [1 - r[2] if r[1] != "failed" else NAN for r in rows],
    })


def order(frame: pd.DataFrame, mode) -> list[int]:
    return ranked(frame, mode).trial_id.tolist()


# ----------------------------------------------------------------------------- by score

@pytest.mark.parametrize("mode", [Mode.MAX, "max"])
def test_in_max_mode_the_highest_score_comes_first(mode):
    frame = trials((0, "completed", 0.5), (1, "completed", 0.9), (2, "completed", 0.7), (3, "completed", -0.2))
    assert order(frame, mode) == [1, 2, 0, 3]
    assert best_trial(frame, mode)["trial_id"] == 1


@pytest.mark.parametrize("mode", [Mode.MIN, "min"])
def test_in_min_mode_the_lowest_score_comes_first(mode):
    frame = trials((0, "completed", 0.5), (1, "completed", 0.9), (2, "completed", 0.7), (3, "completed", -0.2))
    assert order(frame, mode) == [3, 0, 2, 1]
    assert best_trial(frame, mode)["trial_id"] == 3


def test_ranked_returns_the_frames_own_rows_reordered():
    frame = trials((4, "completed", 0.5), (7, "pruned", 0.8), (9, "failed", NAN))
    frame.index = [10, 20, 30]
    before = frame.copy()
    got = ranked(frame, "max")
    assert got.index.tolist() == [20, 10, 30]       # the rows keep their labels
    pd.testing.assert_frame_equal(got.sort_index(), frame)
    pd.testing.assert_frame_equal(frame, before)     # the caller's frame is left as it was


def test_a_filtered_frame_is_ranked_by_its_own_rows():
    frame = trials(*[(i, "completed", i / 10) for i in range(6)])
    subset = frame[frame.trial_id % 2 == 0]          # labels 0, 2, 4: not a 0..n range
    assert order(subset, "max") == [4, 2, 0]
    assert best_trial(subset, "min")["trial_id"] == 0


def concatenated() -> pd.DataFrame:
    """Two runs' trials in one frame, as `pd.concat` makes it: each keeps its labels, so both have a
    row labelled 0 (run one's failed trial 0, run two's best trial 2) and one labelled 1."""
    return pd.concat([trials((0, "failed", NAN), (1, "completed", 0.5)),
                      trials((2, "completed", 0.9), (3, "completed", 0.7))])


def test_a_concatenation_of_two_runs_trials_is_ranked_row_by_row():
    got = ranked(concatenated(), "max")
    assert got.trial_id.tolist() == [2, 3, 1, 0]     # each row once, failed last


def test_the_best_of_a_concatenation_of_two_runs_trials_is_its_best_scored_trial():
    best = best_trial(concatenated(), "max")
    assert best is not None and best["trial_id"] == 2


def test_best_trial_is_the_whole_row_as_a_dict():
    frame = trials((0, "completed", 0.5), (1, "completed", 0.9))
    best = best_trial(frame, "max")
    assert best == {"trial_id": 1, "status": "completed", "params_learning_rate": 0.01, "score": 0.9,
                    "val_loss": pytest.approx(0.1)}


# ----------------------------------------------------------------------------- failed, NaN, pruned

@pytest.mark.parametrize("mode", ["max", "min"])
def test_failed_and_unscored_trials_come_last_in_either_mode(mode):
    frame = trials((0, "failed", NAN), (1, "completed", NAN), (2, "completed", 0.5), (3, "pruned", 0.1),
                   (4, "completed", np.inf), (5, "completed", -np.inf), (6, "completed", 0.9))
    got = order(frame, mode)
    assert got[:3] == ([6, 2, 3] if mode == "max" else [3, 2, 6])
    assert set(got[3:]) == {0, 1, 4, 5}              # an infinite score is no score either
    assert best_trial(frame, mode)["trial_id"] == got[0]


@pytest.mark.parametrize("mode, score", [("max", 99.0), ("min", -99.0)])
def test_a_failed_trial_never_wins_even_with_a_score(mode, score):
    frame = trials((0, "failed", score), (1, "completed", 0.5), (2, "completed", NAN))
    assert order(frame, mode)[0] == 1
    assert best_trial(frame, mode)["trial_id"] == 1


@pytest.mark.parametrize("mode, pruned, completed", [("max", 0.8, 0.6), ("min", 0.2, 0.4)])
def test_a_pruned_trial_competes_with_its_score(mode, pruned, completed):
    frame = trials((0, "completed", completed), (1, "pruned", pruned))
    assert order(frame, mode) == [1, 0]
    assert best_trial(frame, mode)["status"] == "pruned"


def test_scores_given_as_text_or_objects_are_ranked_as_numbers():
    frame = trials((0, "completed", 0.0), (1, "completed", 0.0), (2, "completed", 0.0))
    frame["score"] = pd.Series(["0.5", "10", "not a number"], dtype=object)
    assert order(frame, "max") == [1, 0, 2]          # 10 > 0.5 as numbers, not as text
    assert best_trial(frame, "min")["trial_id"] == 0


# ----------------------------------------------------------------------------- ties

@pytest.mark.parametrize("mode", ["max", "min"])
def test_on_an_equal_score_a_completed_trial_comes_first_then_the_lower_trial_id(mode):
    frame = trials((5, "pruned", 0.8), (9, "completed", 0.8), (3, "pruned", 0.8), (4, "completed", 0.8))
    assert order(frame, mode) == [4, 9, 3, 5]
    assert best_trial(frame, mode)["trial_id"] == 4


def test_ties_among_failed_trials_go_to_the_lower_trial_id():
    frame = trials((8, "failed", NAN), (2, "failed", NAN), (5, "completed", NAN), (1, "completed", 0.3))
    assert order(frame, "max") == [1, 5, 2, 8]


def test_without_a_status_column_every_trial_counts_as_completed():
    frame = trials((2, "completed", 0.4), (1, "completed", 0.4), (0, "completed", NAN)).drop(columns="status")
    assert order(frame, "max") == [1, 2, 0]
    assert best_trial(frame, "max")["trial_id"] == 1


def test_without_a_trial_id_column_ties_keep_the_frames_order():
    frame = pd.DataFrame({"status": ["completed"] * 3, "score": [0.4, 0.9, 0.4], "tag": ["a", "b", "c"]})
    assert ranked(frame, "max").tag.tolist() == ["b", "a", "c"]


# ----------------------------------------------------------------------------- nothing to rank

def test_an_empty_frame_ranks_to_an_empty_frame_and_has_no_best():
    empty = trials()
    assert ranked(empty, "max").empty and list(ranked(empty, "max").columns) == list(empty.columns)
    assert best_trial(empty, "max") is None
    assert best_trial(pd.DataFrame(), "min") is None


def test_when_every_trial_failed_or_has_no_score_there_is_no_best():
    frame = trials((0, "failed", NAN), (1, "failed", 0.9), (2, "completed", NAN), (3, "pruned", np.inf))
    assert best_trial(frame, "max") is None
    assert best_trial(frame, "min") is None
    assert sorted(order(frame, "max")) == [0, 1, 2, 3]   # still all listed


@pytest.mark.parametrize("bad", ["maximize", "MAX", "", None, 1])
def test_a_bad_mode_is_refused_naming_mode(bad):
    frame = trials((0, "completed", 0.5))
    with pytest.raises(ValueError, match=r"^mode: must be 'max' or 'min', got ") as info:
        ranked(frame, bad)
    assert repr(bad) in str(info.value)
    with pytest.raises(ValueError, match="^mode: "):
        best_trial(frame, bad)
    with pytest.raises(ValueError, match="^mode: "):
        ranked(trials(), bad)                         # even with nothing to rank
