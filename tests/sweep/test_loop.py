"""The caviar-mode driver loop (caviar/sweep/loop.py `Sweep`) driven directly on the session's Ray:
every trial finishes exactly once with the rows the README documents, a trial that raises or reports
a reserved metric becomes a failed row, and `best` follows the sweep's mode. (The worker's segment
runner is tested without Ray in test_worker.py; whole sweeps through the command in test_command.py.)"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import math
import secrets
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pytest

from caviar.config.job import parse_job
from caviar.data import Dataset
from caviar.search.samplers import RandomSampler, trial_seed
from caviar.sweep.loop import Sweep
from caviar.sweep.plan import build_sampler, build_scheduler, max_epochs
from caviar.trainers import resolve_trainer

TRIAL_COLUMNS = ["trial_id", "status", "params_learning_rate", "score", "epochs", "seconds", "seed", "error", "node",
                 "round", "started_at", "finished_at", "model_trainer", "model_epochs"]


def tiny_data() -> Dataset:
    x = np.zeros((8, 2), np.float32)
    y = np.array([0, 1] * 4)
    return Dataset(x, y, x, y, x[:0], y[:0], 2, "tiny")


def toy_job(trainer: str = "tests.toys:ToyTrainer", *, space: Mapping[str, Any] | None = None,
            model: Mapping[str, Any] | None = None, **search: Any) -> Any:
    return parse_job({
        "name": "loop",
        "data": {"source": "spiral"},
        "model": {"trainer": trainer, "epochs": 3, **(model or {})},
        "space": dict(space if space is not None else {"learning_rate": {"log_uniform": [1e-4, 1e-1]}}),
        "search": {"trials": 8, "scheduler": "fifo", "seed": 11, **search},
    })


class TellingSampler(RandomSampler):
    """A random sampler that also keeps every score it is told."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told: dict[int, float] = {}

    def tell(self, trial_id: int, score: float) -> None:
        super().tell(trial_id, score)
        self.told[trial_id] = score


class Recorded:
    """What the loop handed to write_trial and flush, in order."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []
        self.epochs: dict[int, list[dict[str, Any]]] = {}
        self.flushes: list[bool] = []

    def write_trial(self, row: dict, epoch_rows: list[dict]) -> None:
        self.rows.append(dict(row))
        self.epochs.setdefault(row["trial_id"], []).extend(dict(r) for r in epoch_rows)

    def flush(self, trials: bool = True) -> None:
        self.flushes.append(trials)

    def by_id(self) -> dict[int, dict[str, Any]]:
        return {row["trial_id"]: row for row in self.rows}


def run_loop(job: Any, *, sampler: Any = None, finished: set[int] = frozenset(),
             n_workers: int = 2) -> tuple[Sweep, Recorded]:
    """Run the job's sweep to its end with the loop alone (no folder, no display) on the shared Ray."""
    import ray

    sampler = sampler or build_sampler(job)
    recorded = Recorded()
    sweep = Sweep(sampler=sampler, scheduler=build_scheduler(job, resolve_trainer(job.trainer)),
                  base_config=job.config(), job_seed=job.search.seed, metric=job.search.metric, mode=job.search.mode,
                  max_epochs=max_epochs(job, resolve_trainer(job.trainer)), data_ref=ray.put(tiny_data()),
                  trainer_name=job.trainer, n_workers=n_workers, max_retries=job.search.max_retries,
                  trial_timeout=0.0, write_trial=recorded.write_trial, flush=recorded.flush,
                  on_change=lambda s: None, finished=set(finished))
    try:
        sweep.start_workers()
        sweep.run()
    finally:
        sweep.stop_workers()
    return sweep, recorded


@pytest.fixture
def trainer_module(tmp_path, monkeypatch):
    """Write a trainer module on the driver's sys.path (the loop passes it to the workers); its name."""
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(source: str) -> str:
        name = f"loop_trainer_{secrets.token_hex(4)}"
        (Path(tmp_path) / f"{name}.py").write_text("from tests.toys import ToyTrainer\n\n" + source)
        return name

    return write


def test_every_trial_finishes_exactly_once_with_the_documented_columns(ray_session):
    job = toy_job(trials=10)
    sampler = TellingSampler(job.space, n_trials=10, seed=job.search.seed)
    began = datetime.now(timezone.utc)
    sweep, recorded = run_loop(job, sampler=sampler)

    assert sorted(row["trial_id"] for row in recorded.rows) == list(range(10))   # each once
    assert sweep.finished == set(range(10)) and sweep.active == {}
    assert sweep.counts == {"completed": 10, "pruned": 0, "failed": 0, "diverged": 0}
    assert recorded.flushes[-1] is True                                             # the last flush writes trials
    for trial_id, row in recorded.by_id().items():
        assert list(row)[:len(TRIAL_COLUMNS)] == TRIAL_COLUMNS
        assert set(row) - set(TRIAL_COLUMNS) == {"val_accuracy", "val_loss", "train_loss"}  # every metric, last value
        epochs = recorded.epochs[trial_id]
        assert [e["epoch"] for e in epochs] == [1, 2, 3]
        assert all(list(e)[:4] == ["trial_id", "epoch", "learning_rate", "seconds"] for e in epochs)
        assert all(e["trial_id"] == trial_id for e in epochs)
        assert all({"val_accuracy", "val_loss", "train_loss"} <= set(e) for e in epochs)
        assert row["status"] == "completed" and row["error"] is None and row["round"] == 0
        assert row["epochs"] == 3 and row["seconds"] > 0 and row["node"] == "127.0.0.2"
        assert row["seed"] == trial_seed(job.search.seed, trial_id)
        assert row["params_learning_rate"] == sampler.ask(trial_id)["learning_rate"]
        # When: the trial's start and end and each epoch's end, in UTC, in that order, around this test.
        # (An epoch's moment is an aware datetime, the rows' ends ISO text: the writer takes both.)
        moments = [datetime.fromisoformat(row["started_at"]), *(e["time"] for e in epochs),
                   datetime.fromisoformat(row["finished_at"])]
        assert all(m.utcoffset() == timedelta(0) for m in moments) and moments == sorted(moments)
        assert began <= moments[0] and moments[-1] <= datetime.now(timezone.utc)
        # The job's fixed values, for comparing runs by them (the searched rate has its params_ column).
        assert (row["model_trainer"], row["model_epochs"]) == (job.trainer, 3)
        # The trainer's reported rate is the epochs' learning_rate column, not a metric of the row.
        assert all(e["learning_rate"] == pytest.approx(row["params_learning_rate"]) for e in epochs)
        assert row["score"] == max(e["val_accuracy"] for e in epochs)
        assert row["val_accuracy"] == epochs[-1]["val_accuracy"]
        assert sampler.told[trial_id] == row["score"]
    assert sorted(sampler.told) == list(range(10))


def test_finished_trials_of_a_resumed_sweep_are_never_run_again(ray_session):
    sweep, recorded = run_loop(toy_job(trials=6), finished={0, 3, 4})
    assert sorted(row["trial_id"] for row in recorded.rows) == [1, 2, 5]
    assert sweep.finished == set(range(6))


def test_a_raising_trial_is_a_failed_row_with_its_error_and_the_rest_complete(ray_session):
    job = toy_job("tests.toys:FlakyTrainer", space={"fail": {"choice": ["none", "raise"]}},
                  model={"epochs": 4}, sampler="grid", trials=2)
    sweep, recorded = run_loop(job)
    rows = {row["params_fail"]: row for row in recorded.rows}
    failed = rows["raise"]
    assert failed["status"] == "failed" and math.isnan(failed["score"])
    assert failed["error"].startswith("RuntimeError: boom at epoch 2 (at ")
    assert failed["epochs"] == 1 and [e["epoch"] for e in recorded.epochs[failed["trial_id"]]] == [1]
    assert rows["none"]["status"] == "completed" and rows["none"]["epochs"] == 4 and rows["none"]["error"] is None
    assert sweep.counts == {"completed": 1, "pruned": 0, "failed": 1, "diverged": 0}
    assert sweep.best[1] == rows["none"]["trial_id"]


def test_a_trial_that_turns_nan_keeps_its_best_score_and_the_sampler_is_told_it(ray_session):
    job = toy_job("tests.toys:FlakyTrainer", model={"epochs": 4, "fail": "nan"}, trials=2)
    sampler = TellingSampler(job.space, n_trials=2, seed=job.search.seed)
    sweep, recorded = run_loop(job, sampler=sampler)
    for row in recorded.rows:
        first = recorded.epochs[row["trial_id"]][0]["val_accuracy"]
        assert row["status"] == "diverged" and row["score"] == first and row["epochs"] == 2
        assert sampler.told[row["trial_id"]] == first
    assert sweep.counts == {"completed": 0, "pruned": 0, "failed": 0, "diverged": 2}
    assert sweep.best is not None and sweep.best[0] == max(row["score"] for row in recorded.rows)


def test_a_failed_trial_is_told_to_the_sampler_as_nan(ray_session):
    job = toy_job("tests.toys:FlakyTrainer", model={"epochs": 3, "fail": "raise"}, trials=3)
    sampler = TellingSampler(job.space, n_trials=3, seed=job.search.seed)
    sweep, recorded = run_loop(job, sampler=sampler)
    assert [row["status"] for row in recorded.rows] == ["failed"] * 3
    assert sorted(sampler.told) == [0, 1, 2] and all(math.isnan(s) for s in sampler.told.values())
    assert sweep.best is None


@pytest.mark.parametrize("reserved", ["score", "epoch", "params_depth"])
def test_a_trainer_reporting_a_reserved_metric_name_fails_its_trials(ray_session, trainer_module, reserved):
    module = trainer_module(
        "class Clashing(ToyTrainer):\n"
        "    def train_epoch(self):\n"
        f"        return {{**super().train_epoch(), {reserved!r}: 1.0}}\n")
    sweep, recorded = run_loop(toy_job(f"{module}:Clashing", trials=3))
    assert len(recorded.rows) == 3
    for row in recorded.rows:
        assert row["status"] == "failed" and math.isnan(row["score"])
        assert f"reports a metric named {reserved!r}" in row["error"]
        assert recorded.epochs[row["trial_id"]] == []     # refused before any epoch is recorded
        assert list(row) == TRIAL_COLUMNS                  # no metric column from the refused report
    assert sweep.counts["failed"] == 3


def test_a_trainer_that_never_reports_the_metric_fails_its_trials(ray_session, trainer_module):
    module = trainer_module(
        "class Mute(ToyTrainer):\n"
        "    def train_epoch(self):\n"
        "        return {'train_loss': super().train_epoch()['train_loss']}\n")
    sweep, recorded = run_loop(toy_job(f"{module}:Mute", trials=2))
    assert [row["status"] for row in recorded.rows] == ["failed", "failed"]
    assert all(row["error"] == "the trainer did not report the metric 'val_accuracy'" for row in recorded.rows)
    assert sweep.best is None


@pytest.mark.parametrize("metric, mode, pick", [("val_accuracy", "max", max), ("val_loss", "min", min)])
def test_best_is_the_best_score_in_the_sweeps_mode(ray_session, metric, mode, pick):
    sweep, recorded = run_loop(toy_job(trials=8, metric=metric, mode=mode))
    for row in recorded.rows:
        assert row["score"] == pick(e[metric] for e in recorded.epochs[row["trial_id"]])
    best = pick(recorded.rows, key=lambda row: row["score"])
    score, trial_id, params = sweep.best
    assert (score, trial_id) == (best["score"], best["trial_id"])
    assert params == {"learning_rate": best["params_learning_rate"]}


def test_asha_prunes_at_its_milestones_and_every_trial_still_ends_once(ray_session):
    job = toy_job(trials=12, scheduler="asha", grace_period=1, reduction_factor=3, model={"epochs": 9})
    sweep, recorded = run_loop(job)
    assert sorted(row["trial_id"] for row in recorded.rows) == list(range(12))
    statuses = [row["status"] for row in recorded.rows]
    assert "pruned" in statuses and set(statuses) <= {"completed", "pruned"}
    for row in recorded.rows:
        epochs = [e["epoch"] for e in recorded.epochs[row["trial_id"]]]
        assert epochs == list(range(1, row["epochs"] + 1))
        assert row["epochs"] in ((1, 3) if row["status"] == "pruned" else (9,))
    assert sweep.counts["pruned"] == statuses.count("pruned")
