"""What a resumed sweep reads back (caviar/sweep/restore.py): the finished trials, their counts and the
best, the sampler told every score, the scheduler shown every milestone again (so ASHA prunes as if
the sweep had never stopped), epochs of trials without a row dropped; and a resume that would shrink
the sweep refused before anything is written."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.compute as pc
import pytest

from caviar.config.job import load_job, parse_job
from caviar.search.samplers import RandomSampler, make_sampler
from caviar.search.schedulers import ASHA
from caviar.store.folder import open_run
from caviar.sweep.plan import build_sampler, build_scheduler
from caviar.sweep.restore import Restored, check_growth, restore
from tests.support import TOY_SWEEP, run_sweep, snapshot, write_job
from tests.toys import ToyTrainer


class TellingSampler(RandomSampler):
    """A random sampler that also keeps what it was told, in order."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.told: list[tuple[int, float]] = []

    def tell(self, trial_id: int, score: float) -> None:
        super().tell(trial_id, score)
        self.told.append((trial_id, score))


def telling_sampler(job: Any) -> TellingSampler:
    return TellingSampler(job.space, n_trials=job.search.trials, seed=job.search.seed, mode=job.search.mode)


def same_scores(told: dict[int, float], expected: dict[int, float]) -> bool:
    return told.keys() == expected.keys() and all(
        (math.isnan(told[k]) and math.isnan(expected[k])) or told[k] == pytest.approx(expected[k]) for k in told)


# --- a run folder written by a real sweep -------------------------------------------------------------

@pytest.fixture(scope="module")
def real_sweep(ray_session, tmp_path_factory) -> Path:
    """A finished six-trial sweep of the toy trainer, run by `caviar parallel` on the session's Ray."""
    folder = tmp_path_factory.mktemp("restore")
    job = write_job(folder, "sweep", TOY_SWEEP, model={"epochs": 3}, search={"trials": 6})
    assert run_sweep(job, folder / "out", ray_session) == 0
    return folder / "out" / "sweep"


def restored_copy(real_sweep: Path, tmp_path: Path) -> Path:
    """A copy of the real sweep's folder that a test may change."""
    import shutil

    return Path(shutil.copytree(real_sweep, tmp_path / "out" / "sweep"))


def test_a_real_sweep_restores_its_finished_trials_counts_and_best(real_sweep, tmp_path):
    folder = restored_copy(real_sweep, tmp_path)
    job = load_job(folder / "job.toml")
    trials = pd.read_parquet(folder / "trials.parquet")
    before = snapshot(folder)
    run = open_run(folder.parent, "sweep", job.to_toml(), resume=True)
    sampler = telling_sampler(job)
    done = restore(run, sampler, build_scheduler(job, ToyTrainer), job.search.metric)

    assert done.finished == set(range(6))
    assert done.counts == {"completed": 6, "pruned": 0, "failed": 0, "diverged": 0}
    best = trials.loc[trials["score"].idxmax()]
    assert done.best[0] == pytest.approx(best["score"]) and done.best[1] == best["trial_id"]
    assert done.best[2] == {"learning_rate": pytest.approx(best["params_learning_rate"])}
    assert same_scores(dict(sampler.told), dict(zip(trials["trial_id"], trials["score"])))
    assert len(sampler.told) == 6            # each trial told once
    assert snapshot(folder) == before        # nothing to repair: nothing changed


def test_epochs_of_a_trial_whose_row_was_lost_are_dropped_from_a_real_sweep(real_sweep, tmp_path):
    folder = restored_copy(real_sweep, tmp_path)
    job = load_job(folder / "job.toml")
    epochs_before = pd.read_parquet(folder / "epochs.parquet")
    run = open_run(folder.parent, "sweep", "", resume=True)
    # A kill between the epochs flush and the trials flush: trial 4's epochs are there, its row is not.
    run.table("trials").compact(keep=lambda table: pc.not_equal(table["trial_id"], 4))
    run = open_run(folder.parent, "sweep", "", resume=True)
    done = restore(run, telling_sampler(job), build_scheduler(job, ToyTrainer), job.search.metric)

    assert done.finished == {0, 1, 2, 3, 5} and done.counts["completed"] == 5
    epochs_after = pd.read_parquet(folder / "epochs.parquet")
    assert 4 not in set(epochs_after["trial_id"])
    kept = epochs_before[epochs_before["trial_id"] != 4].sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(epochs_after.sort_values(["trial_id", "epoch"]).reset_index(drop=True), kept)


def test_a_real_sweep_cannot_shrink_but_can_grow(real_sweep):
    before = snapshot(real_sweep)
    for fewer in (1, 5):
        with pytest.raises(ValueError) as refused:
            check_growth(real_sweep, fewer)
        assert str(refused.value).startswith("search.trials: this run already has trial 5")
        assert f"(got {fewer})" in str(refused.value)
    check_growth(real_sweep, 6)    # the same size
    check_growth(real_sweep, 50)   # grown
    assert snapshot(real_sweep) == before


def test_a_run_without_trials_can_have_any_size(tmp_path):
    run = open_run(tmp_path, "fresh", 'name = "fresh"\n')
    check_growth(run.path, 1)
    check_growth(tmp_path / "never-made", 1)


# --- run folders made row by row -----------------------------------------------------------------------

def sweep_job(*, metric: str = "val_accuracy", mode: str = "max", scheduler: str = "asha", trials: int = 8,
              **search: Any) -> Any:
    return parse_job({
        "name": "made",
        "data": {"source": "spiral"},
        "model": {"trainer": "tests.toys:ToyTrainer", "epochs": 4},
        "space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}},
        "search": {"trials": trials, "scheduler": scheduler, "metric": metric, "mode": mode, "grace_period": 1,
                   "reduction_factor": 3, **search},
    })


def made_run(root: Path, job: Any, curves: dict[int, tuple[str, list[float]]], *, without_rows: tuple[int, ...] = (),
             metric: str = "val_accuracy") -> Any:
    """A sweep's folder with one trial row and its epoch rows per entry of `curves` (trial id ->
    (status, the metric per epoch)), written by the store as a sweep writes it; trials in
    `without_rows` get their epochs but no row (killed between the two flushes)."""
    run = open_run(root, "made", job.to_toml(), fsync=False)
    sign = 1 if job.search.mode == "max" else -1
    for trial_id, (status, curve) in curves.items():
        epochs = [{"trial_id": trial_id, "epoch": e, "learning_rate": 1e-3, "seconds": 0.1, metric: v}
                  for e, v in enumerate(curve, start=1)]
        run.table("epochs").append(epochs)
        if trial_id in without_rows:
            continue
        finite = [v for v in curve if math.isfinite(v)]
        score = sign * max(sign * v for v in finite) if finite and status != "failed" else math.nan
        run.table("trials").append([{
            "trial_id": trial_id, "status": status, "params_learning_rate": 10.0 ** -(1 + trial_id % 3),
            "score": score, "epochs": len(curve), "seconds": 0.4, "seed": trial_id, "round": 0,
            "error": "RuntimeError: boom" if status == "failed" else None, "node": "127.0.0.2",
            metric: curve[-1]}])
    run.flush()
    return open_run(root, "made", job.to_toml(), resume=True, fsync=False)


CURVES = {
    0: ("completed", [0.50, 0.60, 0.70, 0.80]),
    1: ("pruned", [0.30]),
    2: ("completed", [0.45, 0.65, 0.62, 0.66]),
    3: ("failed", [0.20, math.nan]),
    4: ("pruned", [0.55, 0.40, 0.42]),
}


def test_a_made_run_restores_ids_counts_best_and_every_score(tmp_path):
    job = sweep_job()
    run = made_run(tmp_path, job, CURVES)
    sampler = telling_sampler(job)
    done = restore(run, sampler, build_scheduler(job, ToyTrainer), "val_accuracy")
    assert done.finished == {0, 1, 2, 3, 4}
    assert done.counts == {"completed": 2, "pruned": 2, "failed": 1, "diverged": 0}
    assert done.best == (pytest.approx(0.80), 0, {"learning_rate": pytest.approx(0.1)})
    assert same_scores(dict(sampler.told), {0: 0.80, 1: 0.30, 2: 0.66, 3: math.nan, 4: 0.55})


def test_the_best_follows_the_jobs_mode(tmp_path):
    job = sweep_job(metric="val_loss", mode="min")
    curves = {0: ("completed", [0.9, 0.5, 0.4]), 1: ("completed", [0.8, 0.3, 0.35]), 2: ("failed", [0.2])}
    done = restore(made_run(tmp_path, job, curves, metric="val_loss"), telling_sampler(job),
                   build_scheduler(job, ToyTrainer), "val_loss")
    assert done.best[:2] == (pytest.approx(0.3), 1)   # the lowest loss; the failed trial's 0.2 does not count


def test_a_run_whose_trials_all_failed_has_no_best(tmp_path):
    job = sweep_job()
    done = restore(made_run(tmp_path, job, {0: ("failed", [0.5]), 1: ("failed", [math.nan])}), telling_sampler(job),
                   build_scheduler(job, ToyTrainer), "val_accuracy")
    assert done.best is None and done.counts["failed"] == 2 and done.finished == {0, 1}


def test_an_empty_run_restores_nothing(tmp_path):
    job = sweep_job()
    run = open_run(tmp_path, "made", job.to_toml(), fsync=False)
    sampler = telling_sampler(job)
    done = restore(run, sampler, build_scheduler(job, ToyTrainer), "val_accuracy")
    assert done == Restored() and sampler.told == []


def test_epochs_of_trials_without_a_row_are_dropped_from_disk(tmp_path):
    job = sweep_job()
    run = made_run(tmp_path, job, {**CURVES, 6: ("completed", [0.9, 0.91]), 7: ("completed", [0.1])},
                   without_rows=(6, 7))
    sampler = telling_sampler(job)
    done = restore(run, sampler, build_scheduler(job, ToyTrainer), "val_accuracy")
    assert done.finished == {0, 1, 2, 3, 4}
    assert {trial_id for trial_id, _ in sampler.told} == {0, 1, 2, 3, 4}
    epochs = pd.read_parquet(run.path / "epochs.parquet")
    assert sorted(set(epochs["trial_id"])) == [0, 1, 2, 3, 4]
    assert len(epochs) == sum(len(curve) for _, curve in CURVES.values())
    # the rows that stay are intact
    first = epochs[epochs["trial_id"] == 0].sort_values("epoch")["val_accuracy"].tolist()
    assert first == pytest.approx(CURVES[0][1])


def test_epochs_written_before_any_trial_row_are_all_dropped(tmp_path):
    job = sweep_job()
    run = made_run(tmp_path, job, {0: ("completed", [0.5, 0.6])}, without_rows=(0,))
    done = restore(run, telling_sampler(job), build_scheduler(job, ToyTrainer), "val_accuracy")
    assert done.finished == set()
    assert len(pd.read_parquet(run.path / "epochs.parquet")) == 0


def test_coarse_to_fine_rounds_fixed_by_the_restored_scores_are_ready(tmp_path):
    job = sweep_job(sampler="coarse_to_fine", trials=6, rounds=2, scheduler="fifo")
    run = made_run(tmp_path, job, {0: ("completed", [0.5]), 1: ("completed", [0.7]), 2: ("failed", [math.nan])})
    sampler = build_sampler(job)
    assert not sampler.ready(3)                  # round 1 waits for round 0's scores
    restore(run, sampler, build_scheduler(job, ToyTrainer), "val_accuracy")
    assert sampler.ready(3) and sampler.kept(0) == [1]   # told: the best of round 0 is trial 1
    with pytest.raises(RuntimeError, match="already told score 0.5"):
        sampler.tell(0, 0.9)


# --- the scheduler sees every milestone again ------------------------------------------------------------

def live_scheduler(job: Any, curves: dict[int, tuple[str, list[float]]], metric: str) -> ASHA:
    """The ASHA a sweep that never stopped would hold: each trial's best-so-far score recorded at every
    milestone it reached, trial after trial."""
    scheduler = build_scheduler(job, ToyTrainer)
    sign = scheduler.mode.sign
    for trial_id, (_, curve) in sorted(curves.items()):
        best = -math.inf
        for epoch, value in enumerate(curve, start=1):
            if math.isfinite(value):
                best = max(best, sign * value)
            if epoch in scheduler.milestones and math.isfinite(best):
                scheduler.should_continue(trial_id, epoch, sign * best)
    return scheduler


def decisions(make: Any, probes: list[tuple[int, float]]) -> list[bool]:
    """Whether a new trial with each probe's (epoch, score) would go on, each asked of a fresh scheduler."""
    return [make().should_continue(100, epoch, score) for epoch, score in probes]


def test_asha_after_a_restore_prunes_as_the_unbroken_sweep_would(tmp_path):
    job = sweep_job()
    run = made_run(tmp_path, job, CURVES)

    def restored() -> ASHA:
        scheduler = build_scheduler(job, ToyTrainer)
        restore(run, telling_sampler(job), scheduler, "val_accuracy")
        return scheduler

    assert restored().milestones == (1, 3)
    probes = [(1, 0.1), (1, 0.48), (1, 0.56), (3, 0.5), (3, 0.64), (3, 0.71)]
    after_restore = decisions(restored, probes)
    assert after_restore == decisions(lambda: live_scheduler(job, CURVES, "val_accuracy"), probes)
    # At rung 1 (0.50, 0.30, 0.45, 0.20, 0.55 seen) only the top third goes on. At rung 3 the best
    # scores so far of trials 0, 2 and 4 are 0.70, 0.65 and 0.55 (their scores at epoch 3 itself,
    # 0.70, 0.62 and 0.42, would let 0.64 through).
    assert after_restore == [False, False, True, False, False, True]
    # A scheduler that forgot the run would let every one of them go on.
    assert decisions(lambda: build_scheduler(job, ToyTrainer), probes) == [True] * len(probes)


def test_milestones_are_replayed_with_the_best_score_so_far_in_min_mode(tmp_path):
    job = sweep_job(metric="val_loss", mode="min")
    # Trial 1's loss at epoch 3 is poor, but its best so far there is 0.1.
    curves = {0: ("completed", [0.6, 0.5, 0.4, 0.3]), 1: ("completed", [0.9, 0.1, 0.8, 0.7]),
              2: ("completed", [0.7, 0.6, 0.5, 0.45])}
    run = made_run(tmp_path, job, curves, metric="val_loss")

    def restored() -> ASHA:
        scheduler = build_scheduler(job, ToyTrainer)
        restore(run, telling_sampler(job), scheduler, "val_loss")
        return scheduler

    # Rung 3 holds 0.4, 0.1 and 0.5 (the losses at epoch 3, 0.4, 0.8 and 0.5, would let 0.45 through).
    probes = [(1, 0.75), (1, 0.55), (3, 0.45), (3, 0.05)]
    after_restore = decisions(restored, probes)
    assert after_restore == decisions(lambda: live_scheduler(job, curves, "val_loss"), probes)
    assert after_restore == [False, True, False, True]


def test_epochs_of_trials_without_a_row_are_not_replayed(tmp_path):
    job = sweep_job()
    # Trial 5 ran to the first rung with a great score but has no row: it reruns, and must not count.
    run = made_run(tmp_path, job, {0: ("completed", [0.5, 0.5, 0.5, 0.5]), 5: ("completed", [0.99])},
                   without_rows=(5,))
    scheduler = build_scheduler(job, ToyTrainer)
    restore(run, telling_sampler(job), scheduler, "val_accuracy")
    assert scheduler.should_continue(100, 1, 0.6)   # with trial 5's 0.99 recorded it would be pruned


def test_a_fifo_restore_replays_nothing_and_still_restores_the_trials(tmp_path):
    job = sweep_job(scheduler="fifo")
    sampler = make_sampler("random", job.space, n_trials=8, seed=0)
    done = restore(made_run(tmp_path, job, CURVES), sampler, build_scheduler(job, ToyTrainer), "val_accuracy")
    assert done.finished == {0, 1, 2, 3, 4}


# --- a restore against the scheduler of the sweep that wrote the folder ------------------------------------

BLOWS_UP = """from tests.toys import ToyTrainer


class BlowsUpAtTwo(ToyTrainer):
    \"\"\"With config fail = "inf": at epoch 2 a high val_accuracy but an infinite train_loss (it fails there).\"\"\"

    def train_epoch(self):
        metrics = super().train_epoch()
        if self.config.get("fail") == "inf" and self.epoch == 2:
            metrics.update(val_accuracy=0.99, train_loss=float("inf"))
        return metrics
"""


def test_a_restored_asha_decides_as_the_live_one_when_trials_failed_at_a_milestone(ray_session, tmp_path,
                                                                                   monkeypatch):
    """The driver loop writes a real folder through the sweep's Writer; the scheduler it held at the end
    and one restored from that folder must then prune alike. Half the trials fail at the milestone
    epoch itself (a non-finite train_loss at epoch 2, with a high val_accuracy): the live scheduler
    was never asked about them there, so the restored one must not count them either."""
    import copy
    import secrets

    import numpy as np
    import ray

    from caviar.data import Dataset
    from caviar.sweep.loop import Sweep
    from caviar.sweep.plan import max_epochs
    from caviar.sweep.run import Writer
    from caviar.trainers import resolve_trainer

    module = f"restore_trainer_{secrets.token_hex(4)}"
    (tmp_path / f"{module}.py").write_text(BLOWS_UP)
    monkeypatch.syspath_prepend(str(tmp_path))   # the loop hands the driver's sys.path to its workers
    job = parse_job({
        "name": "flaky", "data": {"source": "spiral"},
        "model": {"trainer": f"{module}:BlowsUpAtTwo", "epochs": 4},
        "space": {"fail": {"choice": ["none", "inf"]}, "learning_rate": {"choice": [1e-3, 3e-3, 1e-2]}},
        "search": {"sampler": "grid", "trials": 6, "scheduler": "asha", "grace_period": 2, "reduction_factor": 3},
    })
    trainer = resolve_trainer(job.trainer)
    run = open_run(tmp_path / "out", "flaky", job.to_toml(), fsync=False)
    writer = Writer(run)
    x, y = np.zeros((8, 2), np.float32), np.array([0, 1] * 4)
    live = build_scheduler(job, trainer)
    assert live.milestones == (2,)
    sweep = Sweep(sampler=build_sampler(job), scheduler=live, base_config=job.config(), job_seed=job.search.seed,
                  metric="val_accuracy", mode="max", max_epochs=max_epochs(job, trainer),
                  data_ref=ray.put(Dataset(x, y, x, y, x[:0], y[:0], 2, "tiny")), trainer_name=job.trainer,
                  n_workers=2, max_retries=0, trial_timeout=0.0, write_trial=writer.write_trial, flush=writer.flush,
                  on_change=lambda s: None, finished=set())
    try:
        sweep.start_workers()
        sweep.run()
    finally:
        sweep.stop_workers()
    writer.compact()
    trials = pd.read_parquet(run.path / "trials.parquet")
    statuses = trials.groupby("params_fail")["status"].agg(set)
    assert statuses["inf"] == {"diverged"} and "diverged" not in statuses["none"]   # finite at epoch 1
    epochs = pd.read_parquet(run.path / "epochs.parquet")
    failed_ids = trials.loc[trials["params_fail"] == "inf", "trial_id"]
    assert (trials.loc[failed_ids.index, "score"] < 0.99).all()   # the epoch that blew up does not count
    assert (epochs[epochs["trial_id"].isin(failed_ids)].groupby("trial_id")["epoch"].max() == 2).all()

    restored = build_scheduler(job, trainer)
    resumed = open_run(tmp_path / "out", "flaky", job.to_toml(), resume=True, fsync=False)
    restore(resumed, telling_sampler(job), restored, "val_accuracy")
    probes = [round(float(p), 3) for p in np.linspace(0.0, 1.0, 201)]
    differ = [p for p in probes
              if copy.deepcopy(restored).should_continue(100, 2, p) != copy.deepcopy(live).should_continue(100, 2, p)]
    assert differ == [], ("a new trial scoring these at epoch 2 would be pruned after a resume but not in the "
                          "sweep that never stopped (the trials that failed at epoch 2 were replayed there)")
