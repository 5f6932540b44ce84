"""Caviar mode end to end: real Ray, real Parquet files, real processes killed."""

from __future__ import annotations

import math
import os
import shlex
import signal
import threading
import time

import pandas as pd
import pytest

import caviar
from caviar.cli import main
from tests.support import (ROOT, TOY_SWEEP, caviar_run, driver_with_rows, run_command, run_sweep,
                           snapshot, write_job)


def test_a_sweep_writes_both_tables_with_the_documented_columns(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 3}, search={"trials": 6})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = tmp_path / "out" / "sweep"
    assert (run / "job.toml").is_file()
    trials = pd.read_parquet(run / "trials.parquet")
    epochs = pd.read_parquet(run / "epochs.parquet")
    assert sorted(trials.trial_id) == list(range(6))
    assert set(trials.status) == {"completed"}
    for column, kind in {"trial_id": "int64", "score": "float64", "epochs": "int64", "seconds": "float64",
                         "seed": "int64", "params_learning_rate": "float64", "val_accuracy": "float64",
                         "round": "int64"}.items():
        assert str(trials[column].dtype) == kind, column
    assert trials["error"].isna().all()
    assert (trials["node"] == "127.0.0.2").all()
    assert len(epochs) == 6 * 3
    assert {"trial_id", "epoch", "learning_rate", "seconds", "val_accuracy", "val_loss"}.issubset(epochs.columns)
    assert str(epochs["epoch"].dtype) == "int64"
    best = epochs.groupby("trial_id")["val_accuracy"].max()
    assert trials.set_index("trial_id")["score"].sort_index().tolist() == pytest.approx(best.sort_index().tolist())
    printed = capsys.readouterr().out
    assert "results:" in printed and str(run) in printed


def test_the_leaderboard_at_a_sweeps_end_reads_its_trials_table_alone(tmp_path, capsys, monkeypatch):
    """Not every epoch row as well (`load` read all three tables)."""
    import caviar.store.reader as reader_module
    from caviar.config.job import load_job
    from caviar.sweep.command import print_summary

    job = write_job(tmp_path, "board", TOY_SWEEP, search={"trials": 3})
    assert main(["parallel", str(job), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    capsys.readouterr()
    read = []
    read_table = reader_module.read_table
    monkeypatch.setattr(reader_module, "read_table", lambda path, columns=None: (read.append(path.name),
                                                                                read_table(path, columns))[1])
    assert print_summary(tmp_path / "out" / "board", load_job(job)) == 0
    assert read == ["trials.parquet"]
    assert capsys.readouterr().out.count("\n") >= 4   # the table of 3 trials, then where they are


def test_asha_prunes_and_pruned_trials_keep_their_epochs(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 9},
                    search={"trials": 12, "scheduler": "asha", "grace_period": 1, "reduction_factor": 3})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = tmp_path / "out" / "sweep"
    trials = pd.read_parquet(run / "trials.parquet").set_index("trial_id")
    epochs = pd.read_parquet(run / "epochs.parquet")
    pruned = trials[trials.status == "pruned"]
    assert len(pruned) >= 3
    assert (trials.loc[trials.status == "completed", "epochs"] == 9).all()
    assert (pruned["epochs"] < 9).all()
    per_trial = epochs.groupby("trial_id").size()
    assert (per_trial.loc[trials.index] == trials["epochs"]).all()


def test_raising_trials_fail_and_nan_ones_keep_their_best_score_while_the_rest_complete(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", {**TOY_SWEEP, "space": {}},
                    model={"trainer": "tests.toys:FlakyTrainer", "epochs": 4},
                    space='fail = { choice = ["none", "raise", "nan", "nan_first"] }',
                    search={"sampler": "grid", "trials": 4})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = caviar.load(tmp_path / "out" / "sweep")
    trials = run.trials.set_index("params_fail")
    assert trials.loc["none", "status"] == "completed"
    assert trials.loc["raise", "status"] == "failed"
    assert "boom at epoch 2" in trials.loc["raise", "error"]
    assert pd.isna(trials.loc["raise", "score"])
    # NaN at epoch 2 after a finite epoch 1: diverged, scored by epoch 1, the NaN epoch kept in its rows.
    nan = trials.loc["nan"]
    curve = run.epochs[run.epochs["trial_id"] == nan["trial_id"]].sort_values("epoch")
    assert nan["status"] == "diverged" and nan["epochs"] == 2 and curve["epoch"].tolist() == [1, 2]
    assert nan["score"] == curve["val_accuracy"].iloc[0] and math.isfinite(nan["score"])
    assert nan["error"] == "FloatingPointError: non-finite val_loss=nan at epoch 2"
    # NaN from the first epoch: nothing to keep, failed as before.
    assert trials.loc["nan_first", "status"] == "failed" and pd.isna(trials.loc["nan_first", "score"])
    assert "val_loss=nan at epoch 1" in trials.loc["nan_first", "error"]


def test_a_trial_past_its_timeout_fails_with_its_epochs_and_the_sweep_goes_on(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", {**TOY_SWEEP, "space": {}}, model={"epochs": 6},
                    space="sleep = { choice = [0.0, 0.6] }",
                    search={"sampler": "grid", "trials": 2, "trial_timeout": 1.5})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    trials = pd.read_parquet(tmp_path / "out" / "sweep" / "trials.parquet").set_index("params_sleep")
    epochs = pd.read_parquet(tmp_path / "out" / "sweep" / "epochs.parquet")
    assert trials.loc[0.0, "status"] == "completed"
    slow = trials.loc[0.6]
    assert slow["status"] == "failed" and "timed out" in slow["error"]
    # The epochs it reported before the limit are kept, in both tables.
    assert 1 <= slow["epochs"] < 6
    assert (epochs.trial_id == slow["trial_id"]).sum() == slow["epochs"]


def test_a_searched_epoch_count_beyond_the_fixed_one_runs_to_its_own_end(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", {**TOY_SWEEP, "space": {}}, model={"epochs": 1},
                    space="epochs = { choice = [3, 4] }",
                    search={"sampler": "grid", "trials": 2, "scheduler": "asha", "grace_period": 1})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    trials = pd.read_parquet(tmp_path / "out" / "sweep" / "trials.parquet").set_index("params_epochs")
    assert trials.loc[3, "epochs"] == 3 and trials.loc[4, "epochs"] == 4


def test_resume_and_overwrite_together_are_refused(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 2})
    assert run_sweep(job, tmp_path / "out", ray_session, "--resume", "--overwrite") == 2
    assert "--overwrite" in capsys.readouterr().err


def test_a_sweep_never_writes_into_a_babysat_run(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 2})
    run = tmp_path / "out" / "sweep"
    (run / "events.parquet").mkdir(parents=True)
    (run / "job.toml").write_text('name = "sweep"\n')
    for flag in ("--resume", "--overwrite"):
        assert run_sweep(job, tmp_path / "out", ray_session, flag) == 2
        assert "babysat" in capsys.readouterr().err
    assert sorted(p.name for p in run.iterdir()) == ["events.parquet", "job.toml"]


def test_same_job_and_seed_give_identical_params_and_scores(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 2}, search={"trials": 6})
    frames = []
    for out in ("a", "b"):
        assert run_sweep(job, tmp_path / out, ray_session) == 0
        trials = pd.read_parquet(tmp_path / out / "sweep" / "trials.parquet").sort_values("trial_id")
        frames.append(trials[["trial_id", "params_learning_rate", "score", "seed"]].reset_index(drop=True))
    pd.testing.assert_frame_equal(frames[0], frames[1])


def test_an_existing_run_is_refused_without_resume_or_overwrite(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 2})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = tmp_path / "out" / "sweep"
    before = snapshot(run)
    capsys.readouterr()
    assert run_sweep(job, tmp_path / "out", ray_session) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--resume" in err[0]
    assert snapshot(run) == before
    assert run_sweep(job, tmp_path / "out", ray_session, "--overwrite") == 0


def test_a_killed_worker_is_retried(ray_session, tmp_path):
    pid_dir = tmp_path / "pids"
    pid_dir.mkdir()
    job = write_job(tmp_path, "sweep", TOY_SWEEP,
                    model={"trainer": "tests.toys:PidTrainer", "epochs": 4, "sleep": 0.3, "pid_dir": str(pid_dir)},
                    search={"trials": 3, "concurrency": 1, "max_retries": 2})
    killed: list[int] = []

    def kill_first_worker() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not killed:
            for pid_file in pid_dir.glob("*.pid"):
                time.sleep(0.4)  # mid-trial: after its first epoch
                pid = int(pid_file.read_text())
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
                return
            time.sleep(0.05)

    killer = threading.Thread(target=kill_first_worker)
    killer.start()
    assert run_sweep(job, tmp_path / "out", ray_session, "--concurrency", "1") == 0
    killer.join()
    assert killed
    trials = pd.read_parquet(tmp_path / "out" / "sweep" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "out" / "sweep" / "epochs.parquet")
    assert sorted(trials.trial_id) == [0, 1, 2]
    assert set(trials.status) == {"completed"}
    # The retried trial's lost attempt left no rows behind: exactly one row per epoch.
    assert epochs.groupby("trial_id").size().tolist() == [4, 4, 4]
    assert not epochs.duplicated(["trial_id", "epoch"]).any()


def test_a_driver_killed_mid_sweep_resumes_to_exactly_n_trials(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 3, "sleep": 0.1}, search={"trials": 16})
    out = tmp_path / "out"
    argv = ["parallel", str(job), "--out", str(out), "--address", ray_session]
    trials_dir = out / "sweep" / "trials.parquet"
    driver = driver_with_rows(argv, trials_dir, 3)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    done_before = len(pd.read_parquet(trials_dir))
    assert 3 <= done_before < 16
    resumed = caviar_run(*argv, "--resume", cwd=ROOT, timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    trials = pd.read_parquet(trials_dir)
    assert sorted(trials.trial_id) == list(range(16))
    epochs = pd.read_parquet(out / "sweep" / "epochs.parquet")
    assert not epochs.duplicated(["trial_id", "epoch"]).any()
    assert len(epochs) == 16 * 3


def test_resume_reruns_a_trial_whose_epochs_were_written_but_not_its_row(ray_session, tmp_path):
    """A kill between the epochs flush and the trials flush leaves epochs of an unfinished trial."""
    import pyarrow.compute as pc

    from caviar.store.folder import open_run

    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 2}, search={"trials": 4})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = open_run(tmp_path / "out", "sweep", "", resume=True)
    run.table("trials").compact(keep=lambda table: pc.not_equal(table["trial_id"], 3))
    assert sorted(pd.read_parquet(run.path / "trials.parquet").trial_id) == [0, 1, 2]
    assert run_sweep(job, tmp_path / "out", ray_session, "--resume") == 0
    trials = pd.read_parquet(run.path / "trials.parquet")
    epochs = pd.read_parquet(run.path / "epochs.parquet")
    assert sorted(trials.trial_id) == [0, 1, 2, 3]
    assert len(epochs) == 8 and not epochs.duplicated(["trial_id", "epoch"]).any()


def test_more_concurrency_than_cpus_is_capped_instead_of_waiting_forever(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 4})
    assert main(["parallel", str(job), "--out", str(tmp_path / "out"), "--address", ray_session,
                 "--concurrency", "5"]) == 0
    assert "concurrency 5 is more than the 2 CPUs" in capsys.readouterr().err
    assert len(pd.read_parquet(tmp_path / "out" / "sweep" / "trials.parquet")) == 4


def test_a_resumed_sweep_cannot_shrink(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 4})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    capsys.readouterr()
    saved = (tmp_path / "out" / "sweep" / "job.toml").read_bytes()
    assert run_sweep(job, tmp_path / "out", ray_session, "--resume", "--set", "search.trials=2") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "search.trials" in err[0]
    assert (tmp_path / "out" / "sweep" / "job.toml").read_bytes() == saved   # the refusal changed nothing


def test_a_resumed_sweep_can_grow_and_records_the_job_as_now_run(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 3})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    assert run_sweep(job, tmp_path / "out", ray_session, "--resume", "--set", "search.trials=5") == 0
    run = tmp_path / "out" / "sweep"
    assert sorted(pd.read_parquet(run / "trials.parquet").trial_id) == [0, 1, 2, 3, 4]
    assert "trials = 5" in (run / "job.toml").read_text()


def test_overwrite_keeps_the_old_run_when_ray_cannot_be_joined(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 1}, search={"trials": 2})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = tmp_path / "out" / "sweep"
    before = snapshot(run)
    result = caviar_run("parallel", job, "--out", tmp_path / "out", "--overwrite", "--address", "127.0.0.9:1",
                        cwd=ROOT, timeout=300)
    assert result.returncode == 2, result.stderr
    assert "--address" in result.stderr.strip().splitlines()[-1]
    assert snapshot(run) == before


def test_a_second_driver_on_a_running_sweep_is_refused(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 3, "sleep": 0.2}, search={"trials": 6})
    out = tmp_path / "out"
    argv = ["parallel", str(job), "--out", str(out), "--address", ray_session]
    trials_dir = out / "sweep" / "trials.parquet"
    first = driver_with_rows(argv, trials_dir, 1)
    assert run_sweep(job, out, ray_session, "--resume") == 2
    assert "is being run by caviar parallel (process" in capsys.readouterr().err
    assert first.wait(timeout=300) == 0
    trials = pd.read_parquet(trials_dir)
    assert sorted(trials.trial_id) == list(range(6))


def test_a_worker_waiting_for_a_cpu_that_other_work_holds_is_reported_and_its_trials_run_once_it_frees(
        ray_session, tmp_path, capsys, monkeypatch):
    import ray

    monkeypatch.setattr("caviar.sweep.loop.START_WARN_SECONDS", 2.0)

    @ray.remote(num_cpus=1)
    class Holder:
        def ping(self) -> bool:
            return True

    holder = Holder.remote()
    ray.get(holder.ping.remote())   # one of the two CPUs is now taken by other work
    release = threading.Timer(8.0, ray.kill, args=(holder,))
    release.start()
    # With a trial timeout too: the trials queued for the waiting worker have not started their clock.
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 2, "sleep": 0.05},
                    search={"trials": 6, "trial_timeout": 2})
    try:
        assert main(["parallel", str(job), "--out", str(tmp_path / "out"), "--address", ray_session,
                     "--concurrency", "2"]) == 0
    finally:
        release.join()
    err = capsys.readouterr().err
    # 1 of 2 (or 2 of 2 if the other worker was slow to boot on a loaded machine)
    assert " of 2 workers have waited over 2 s for a CPU" in err
    trials = pd.read_parquet(tmp_path / "out" / "sweep" / "trials.parquet")
    assert sorted(trials.trial_id) == list(range(6)) and set(trials.status) == {"completed"}


def test_ctrl_c_keeps_the_finished_trials_and_prints_a_resume_that_needs_no_job_file(ray_session, tmp_path):
    # ~8 s of work after the first rows
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 10, "sleep": 0.1}, search={"trials": 16})
    out = tmp_path / "out"
    argv = ["parallel", str(job), "--out", str(out), "--address", ray_session]
    # Ctrl-C reaches Python as KeyboardInterrupt only where SIGINT is not ignored, as it may be in a
    # background job: the driver gets the disposition a terminal would give it.
    trials_dir = out / "sweep" / "trials.parquet"
    driver = driver_with_rows(argv, trials_dir, 2, preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    kept = pd.read_parquet(trials_dir)
    assert 2 <= len(kept) < 16 and set(kept.status) == {"completed"}
    (line,) = [line for line in err.splitlines() if "Resume with: " in line]
    resume = shlex.split(line.partition("Resume with: ")[2])
    assert str(job) not in resume and resume[resume.index("--name") + 1] == "sweep"

    job.unlink()   # the resume runs the job as saved with the run
    done = run_command(resume, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    trials = pd.read_parquet(trials_dir)
    assert sorted(trials.trial_id) == list(range(16))
    assert set(kept.trial_id) <= set(trials.trial_id) and len(pd.read_parquet(out / "sweep" / "epochs.parquet")) == 16 * 10


def test_a_sweep_whose_every_trial_failed_exits_1_with_the_first_error(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "doomed", TOY_SWEEP, model={"trainer": "tests.toys:FlakyTrainer", "fail": "raise"},
                    search={"trials": 3})
    assert run_sweep(job, tmp_path / "out", ray_session) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("caviar parallel: error: every trial failed; trial 0: RuntimeError: boom at epoch 2")
    one_good = write_job(tmp_path, "mixed", TOY_SWEEP, model={"trainer": "tests.toys:FlakyTrainer"},
                         search={"trials": 2})
    assert run_sweep(one_good, tmp_path / "out", ray_session) == 0



def test_ctrl_c_between_the_lock_and_the_loop_prints_the_resume_command(ray_session, tmp_path, capsys,
                                                                         monkeypatch):
    """Found in review: Ctrl-C after the run was locked but outside the loop (Ray starting, the folder
    being repaired, a resume reading what was done) said only 'interrupted'. The interrupt is raised
    where a resume reads its finished trials; it must end as any Ctrl-C does."""
    import caviar.sweep.run as sweep_run

    job = write_job(tmp_path, "paused", TOY_SWEEP, search={"trials": 4}, model={"epochs": 1})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    capsys.readouterr()

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(sweep_run, "restore", interrupted)
    status = run_sweep(job, tmp_path / "out", ray_session, "--resume", "--set", "search.trials=6")
    err = capsys.readouterr().err
    assert status == 130 and "Resume with: " in err and "--name paused --resume" in err, err
    assert not (tmp_path / "out" / ".paused.lock").exists()


def test_pandas_reads_the_times_and_fixed_values_of_a_sweep(ray_session, tmp_path):
    job = write_job(tmp_path, "stamped", TOY_SWEEP, model={"epochs": 3, "note": "baseline"}, search={"trials": 4})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    trials = pd.read_parquet(tmp_path / "out" / "stamped" / "trials.parquet")
    epochs = pd.read_parquet(tmp_path / "out" / "stamped" / "epochs.parquet")
    for column in ("started_at", "finished_at"):
        assert str(trials[column].dtype) == "datetime64[us, UTC]", column
    assert str(epochs["time"].dtype) == "datetime64[us, UTC]"
    assert (trials["started_at"] < trials["finished_at"]).all()
    ended = epochs.groupby("trial_id")["time"].max()
    assert (ended <= trials.set_index("trial_id")["finished_at"].sort_index()).all()
    assert trials[["model_trainer", "model_epochs", "model_note"]].drop_duplicates().values.tolist() == \
        [["tests.toys:ToyTrainer", 3, "baseline"]]
    assert "model_learning_rate" not in trials      # searched: params_learning_rate holds it


def test_a_sweep_written_without_times_resumes_and_gains_them_for_its_new_trials(ray_session, tmp_path):
    job = write_job(tmp_path, "old", TOY_SWEEP, search={"trials": 4})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = tmp_path / "out" / "old"
    for table, dropped in (("trials", ["started_at", "finished_at", "model_trainer", "model_epochs"]),
                           ("epochs", ["time"])):   # as caviar 0.1.0 wrote it
        frame = pd.read_parquet(run / f"{table}.parquet").drop(columns=dropped)
        for part in (run / f"{table}.parquet").iterdir():
            part.unlink()
        frame.to_parquet(run / f"{table}.parquet" / "part-000000.parquet", index=False)

    assert run_sweep(job, tmp_path / "out", ray_session, "--resume", "--set", "search.trials=6") == 0

    trials = pd.read_parquet(run / "trials.parquet").set_index("trial_id").sort_index()
    assert trials.index.tolist() == list(range(6))
    assert trials["started_at"].isna().tolist() == [True] * 4 + [False] * 2
    assert trials["model_trainer"].isna().tolist() == [True] * 4 + [False] * 2
    epochs = pd.read_parquet(run / "epochs.parquet")
    assert epochs["time"].isna().sum() == 4 * 3 and epochs["time"].notna().sum() == 2 * 3
