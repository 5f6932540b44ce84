"""A run's line in the runs list (pure): state, best score by the job's mode, counts, times."""

from __future__ import annotations

import math

import pyarrow as pa

from caviar.serve.summary import best, state, summarize, tally
from caviar.store.vocabulary import Mode, RunKind

JOB = {"search": {"trials": 4, "metric": "val_loss", "mode": "min"}, "babysit": {"epochs": 3, "metric": "val_accuracy",
                                                                                  "mode": "max"}}


def test_the_best_is_by_the_mode_and_a_failed_trial_never_counts():
    trials = pa.table({"trial_id": [0, 1, 2, 3], "status": ["completed", "pruned", "failed", "completed"],
                       "score": [0.5, 0.2, 0.01, math.nan]})
    counted = tally(RunKind.SWEEP, JOB, {"trials": trials})
    status = state(RunKind.SWEEP, running=False, events=None, done=counted["done"], planned=counted["planned"],
                   compacted=False)
    line = summarize("s", RunKind.SWEEP, counted, status=status, started=100.0, ended=130.0, now=500.0)
    assert (line["best"], line["best_at"], line["mode"], line["metric"]) == (0.2, 1, "min", "val_loss")
    assert line["counts"] == {"completed": 2, "pruned": 1, "failed": 1}
    assert (line["status"], line["done"], line["planned"], line["duration"]) == ("finished", 4, 4, 30.0)
    assert best(pa.chunked_array([[1.0, 3.0, 3.0]]), Mode.MAX) == (3.0, 1)
    assert best(pa.chunked_array([[math.nan]]), Mode.MAX) == (None, None)


def test_running_while_locked_finished_when_it_ended_itself_else_interrupted():
    final = pa.table({"event": ["improved", "final"]})
    assert state(RunKind.BABYSIT, running=True, events=final, done=3, planned=3, compacted=True) == "running"
    assert state(RunKind.BABYSIT, running=False, events=final, done=3, planned=3, compacted=True) == "finished"
    assert state(RunKind.BABYSIT, running=False, events=pa.table({"event": ["improved"]}), done=2, planned=3,
                 compacted=False) == "interrupted"
    assert state(RunKind.SWEEP, running=False, events=None, done=4, planned=4, compacted=False) == "finished"
    assert state(RunKind.SWEEP, running=False, events=None, done=2, planned=4, compacted=False) == "interrupted"
    assert state(RunKind.SWEEP, running=False, events=None, done=2, planned=4, compacted=True) == "finished"


def test_a_babysat_run_is_judged_by_its_own_metric_and_a_running_one_lasts_until_now():
    epochs = pa.table({"epoch": [1, 2, 3], "val_accuracy": [0.5, 0.9, 0.8]})
    line = summarize("p", RunKind.BABYSIT, tally(RunKind.BABYSIT, JOB, {"epochs": epochs}), status="running",
                     started=100.0, ended=110.0, now=160.0)
    assert (line["best"], line["best_at"], line["status"], line["duration"]) == (0.9, 2, "running", 60.0)
