"""Panda mode end to end: real runs on digits, real files, real processes (SIGKILL, --resume)."""

from __future__ import annotations

import functools
import math
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caviar.babysit import loop as babysit_module
from caviar.store import reader as results_io
from caviar.store.checkpoints import CheckpointStore
from caviar.config.job import Job, load_job, parse_job
from caviar.store.folder import open_run
from tests.support import DIGITS, caviar_start, run_babysit, run_command, snapshot, write_job


def table(run: Path, name: str) -> pd.DataFrame:
    return pd.read_parquet(run / f"{name}.parquet")


def wait_for_epoch(proc: subprocess.Popen, epoch: int) -> bool:
    """Read the live display until the line of `epoch`; False if the run ended first."""
    for line in proc.stdout:
        if line.startswith("epoch") and int(line.split()[1]) >= epoch:
            return True
    return False


def comparable(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's epochs (without timings) and events (without resume notes), in order."""
    epochs = table(run, "epochs").drop(columns="seconds").sort_values("epoch").reset_index(drop=True)
    events = table(run, "events")
    events = events[events["event"] != "resume"].reset_index(drop=True)
    return epochs, events


# --- a run that diverges recovers -----------------------------------------------------------------

DIVERGING = dict(model='batch_norm = false\noptimizer = "sgd"\nlearning_rate = 10.0',  # 10x too high
                 babysit="epochs = 10", data="test_fraction = 0.2")


def test_a_diverging_run_rolls_back_and_recovers(tmp_path, capsys):
    assert run_babysit(write_job(tmp_path, "wild", DIGITS, **DIVERGING), tmp_path / "out") == 0
    out = capsys.readouterr().out
    run = tmp_path / "out" / "wild"
    epochs, events = table(run, "epochs"), table(run, "events")

    assert list(epochs["epoch"]) == list(range(1, 11))
    assert "diverged" in set(events["event"]) and "diverged" in set(epochs["decision"])
    first = events[events["event"] == "diverged"].iloc[0]
    assert first["base_learning_rate"] == pytest.approx(1.0)  # 10 x divergence_factor 0.1
    initial = float(events[events["event"] == "start"].iloc[0]["detail"].split()[-1])
    assert f"above 3 × the initial loss {initial:.4g}" in first["detail"]  # the yardstick it really used
    assert epochs["learning_rate"].iloc[-1] < 10.0
    assert epochs["val_accuracy"].max() > 0.9  # from chance level back to a good score
    # the summary: best epoch restored and tested on the test split
    final = events[events["event"] == "final"].iloc[0]
    assert "test_accuracy" in final["detail"]
    summary = out.strip().splitlines()[-1]
    assert summary.startswith("best epoch") and "test_accuracy" in summary and str(run) in summary
    assert "diverged, back to the initial state" in out  # one plain line per epoch shows the decision
    best_epoch = int(summary.split()[2])
    assert epochs.loc[epochs["epoch"] == best_epoch, "val_accuracy"].item() == epochs["val_accuracy"].max()
    # checkpoints: initial state gone from the ring, best and last kept
    names = {p.name for p in (run / "checkpoints").iterdir()}
    assert {"best.npz", "last.npz", "epoch-000010.npz"} <= names


def test_a_regression_rolls_back_to_the_best_checkpoint(tmp_path):
    # adam at 0.1 with a tight tolerance: the score wobbles, each big drop goes back to the best
    job = write_job(tmp_path, "wobbly", DIGITS, model="learning_rate = 0.1",
                    babysit="epochs = 12\ntolerance = 0.005\npatience = 20\nmax_rollbacks = 3")
    assert run_babysit(job, tmp_path / "out") == 0
    run = tmp_path / "out" / "wobbly"
    epochs, events = table(run, "epochs"), table(run, "events")
    rollbacks = events[events["event"] == "rollback"]
    assert len(rollbacks) >= 1
    # each rollback halves the rate, and the epoch after it trains with the halved rate
    first = rollbacks.iloc[0]
    after = epochs.loc[epochs["epoch"] == first["epoch"] + 1, "learning_rate"].item()
    assert after == pytest.approx(first["base_learning_rate"]) and after < 0.1


# --- names ------------------------------------------------------------------------------------------


def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    job = write_job(tmp_path, "taken", DIGITS, babysit="epochs = 2")
    assert run_babysit(job, tmp_path / "out") == 0
    before = table(tmp_path / "out" / "taken", "epochs")
    capsys.readouterr()
    assert run_babysit(job, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and "--overwrite" in err
    pd.testing.assert_frame_equal(table(tmp_path / "out" / "taken", "epochs"), before)
    assert run_babysit(job, tmp_path / "out", "--overwrite", "--set", "babysit.epochs=3") == 0
    assert len(table(tmp_path / "out" / "taken", "epochs")) == 3


def fake_sweep(out: Path, name: str = "sweep") -> Path:
    """A finished sweep's folder: its job.toml and a trials table of four trials (one file)."""
    sweep = out / name
    sweep.mkdir(parents=True)
    (sweep / "job.toml").write_text(f'name = "{name}"\n')
    pd.DataFrame({
        "trial_id": [0, 1, 2, 3],
        "status": ["completed", "completed", "failed", "pruned"],
        "params_learning_rate": [0.001, 0.02, 0.5, 0.3],
        "params_batch_size": [64, 32, 16, 128],
        "score": [0.91, 0.95, np.nan, 0.99],  # the pruned trial's score does not count
    }).to_parquet(sweep / "trials.parquet")
    return sweep


def test_from_a_sweep_starts_with_its_best_completed_trial_in_a_run_of_its_own(tmp_path):
    sweep = fake_sweep(tmp_path / "out")
    before = snapshot(sweep)
    job = write_job(tmp_path, "best", DIGITS, babysit="epochs = 2")
    assert run_babysit(job, tmp_path / "out", "--from", "sweep") == 0
    run = tmp_path / "out" / "sweep-babysit"  # never the sweep's own folder (nor the job's name)
    epochs = table(run, "epochs")
    assert list(epochs["epoch"]) == [1, 2] and list(epochs["learning_rate"]) == [0.02, 0.02]
    as_run = (run / "job.toml").read_text()
    assert "learning_rate = 0.02" in as_run and "batch_size = 32" in as_run
    assert snapshot(sweep) == before and not (tmp_path / "out" / "best").exists()


@pytest.mark.parametrize("argv, message", [
    (["--name", "sweep"], "--name: 'sweep' is the sweep given to --from"),
    (["--name", "sweep", "--overwrite"], "--name: 'sweep' is the sweep given to --from"),
    (["--resume"], "--from: not with --resume"),
    (["--name", "sweep", "--resume"], "--from: not with --resume"),
])
def test_babysit_from_a_sweep_never_writes_into_the_sweep(tmp_path, capsys, argv, message):
    sweep = fake_sweep(tmp_path / "out")
    before = snapshot(sweep)
    job = write_job(tmp_path, "sweep", DIGITS, babysit="epochs = 1")
    assert run_babysit(job, tmp_path / "out", "--from", "sweep", *argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert snapshot(sweep) == before and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sweep"]


def test_from_takes_the_best_by_the_sweeps_own_mode_from_every_part(tmp_path):
    # A sweep that minimised val_loss, its trials in two parts (the second has a column the first
    # lacks, a list stored as JSON text), and a babysit job that maximises val_accuracy.
    sweep = tmp_path / "out" / "losses"
    (sweep / "trials.parquet").mkdir(parents=True)
    (sweep / "job.toml").write_text('name = "losses"\n[search]\nmetric = "val_loss"\nmode = "min"\n')
    common = {"status": ["completed", "completed"], "seed": [1, 2]}
    pd.DataFrame({"trial_id": [0, 1], **common, "params_learning_rate": [0.001, 0.003],
                  "score": [0.9, 0.5]}).to_parquet(sweep / "trials.parquet" / "part-000000.parquet")
    pd.DataFrame({"trial_id": [2, 3], **common, "params_learning_rate": [0.02, 0.05],
                  "params_hidden_layers": ["[16]", "[8, 8]"],
                  "score": [0.1, 0.7]}).to_parquet(sweep / "trials.parquet" / "part-000001.parquet")
    job = write_job(tmp_path, "b", DIGITS, babysit="epochs = 1")
    assert run_babysit(job, tmp_path / "out", "--from", "losses", "--name", "picked") == 0
    model = load_job(tmp_path / "out" / "picked" / "job.toml").model
    assert model["learning_rate"] == 0.02 and model["hidden_layers"] == [16]  # trial 2: the lowest loss


# --- bad input never costs the old run ----------------------------------------------------------


class SteadyTrainer:
    """A tiny deterministic trainer: val_accuracy = 1 - 0.5 / epoch, so every epoch improves.

    Config: learning_rate (required by babysit), sleep (seconds per epoch), report (extra metrics
    to report), explode (refuse to be built), blow_up_at (the epoch from which the loss blows up).
    It cannot evaluate: its divergence yardstick is the first epoch's loss.
    """

    def __init__(self, config, data, seed):
        if config.get("explode"):
            raise ValueError("model.explode: this trainer refuses to be built")
        self.config, self.epoch = dict(config), 0

    def train_epoch(self):
        time.sleep(float(self.config.get("sleep", 0.0)))
        self.epoch += 1
        blown = self.epoch >= self.config.get("blow_up_at", math.inf)  # loss x 20 from that epoch on
        return {"train_loss": (20.0 if blown else 1.0) / self.epoch, "val_accuracy": 1.0 - 0.5 / self.epoch,
                "learning_rate": float(self.config["learning_rate"]), **self.config.get("report", {})}

    def state_dict(self):
        return {"epoch": np.array(self.epoch)}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])

    def set_hyperparameters(self, **changes):
        self.config.update(changes)


# SteadyTrainer on digits; each test gives it a learning_rate (or leaves it out on purpose).
STEADY = {**DIGITS, "model": {**DIGITS["model"], "trainer": "tests.babysit.test_loop:SteadyTrainer"}}


@pytest.mark.parametrize("model, babysit, message", [
    ("learning_rate = 0.01", 'metric = "val_f1"', "babysit.metric: the trainer reports"),
    ("sleep = 0.0", "", "model.learning_rate"),
    ("learning_rate = 0.01\nexplode = true", "", "model.explode"),
    ("learning_rate = 0.01\nreport = { epoch = 7 }", "", "reports a metric named 'epoch', a column caviar writes itself"),
    ("learning_rate = 0.01\nreport = { decision = 1 }", "", "reports a metric named 'decision'"),
])
def test_a_bad_job_exits_2_and_leaves_the_old_run_byte_identical_even_with_overwrite(
        tmp_path, capsys, model, babysit, message):
    assert run_babysit(write_job(tmp_path, "kept", STEADY, model="learning_rate = 0.01", babysit="epochs = 2"),
                       tmp_path / "out") == 0
    run = tmp_path / "out" / "kept"
    before = snapshot(run)
    capsys.readouterr()
    bad = write_job(tmp_path, "kept", STEADY, model=model, babysit=babysit)
    assert run_babysit(bad, tmp_path / "out", "--overwrite") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err
    assert snapshot(run) == before
    assert run_babysit(bad, tmp_path / "out", "--name", "new") == 2 and not (tmp_path / "out" / "new").exists()


def test_without_evaluate_the_divergence_yardstick_is_named_the_first_epochs_loss(tmp_path):
    job = write_job(tmp_path, "blown", STEADY, model="learning_rate = 0.01\nblow_up_at = 2", babysit="epochs = 3")
    assert run_babysit(job, tmp_path / "out") == 0
    diverged = table(tmp_path / "out" / "blown", "events").query("event == 'diverged'")
    assert "above 3 × the first epoch's loss 1;" in diverged.iloc[0]["detail"]


@pytest.mark.parametrize("argv", [[], ["--overwrite"]])
def test_babysit_refuses_a_sweeps_folder_even_with_overwrite(tmp_path, capsys, argv):
    # `parallel` and `babysit` both default to the name "digits": the sweep must survive the mix-up
    sweep = fake_sweep(tmp_path / "out", "digits")
    before = snapshot(sweep)
    assert run_babysit(write_job(tmp_path, "digits", DIGITS, babysit="epochs = 1"), tmp_path / "out", *argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0
    assert "'digits' holds a sweep" in err and "--from digits (into digits-babysit)" in err and "--name" in err
    assert snapshot(sweep) == before


def test_a_sweeps_epochs_table_alone_marks_it_a_sweep(tmp_path, capsys):
    run = tmp_path / "out" / "trials"
    run.mkdir(parents=True)
    pd.DataFrame({"trial_id": [0], "epoch": [1], "val_accuracy": [0.5]}).to_parquet(run / "epochs.parquet")
    before = snapshot(run)
    job = write_job(tmp_path, "trials", DIGITS, babysit="epochs = 1")
    assert run_babysit(job, tmp_path / "out", "--overwrite") == 2
    assert "'trials' holds a sweep" in capsys.readouterr().err and snapshot(run) == before


def test_resume_with_set_records_the_change_in_job_toml(tmp_path):
    job = write_job(tmp_path, "longer", STEADY, model="learning_rate = 0.01", babysit="epochs = 2")
    assert run_babysit(job, tmp_path / "out") == 0
    as_run = tmp_path / "out" / "longer" / "job.toml"
    assert load_job(as_run).babysit.epochs == 2
    assert run_babysit(job, tmp_path / "out", "--resume", "--set", "babysit.epochs=3") == 0
    assert len(table(tmp_path / "out" / "longer", "epochs")) == 3
    assert load_job(as_run).babysit.epochs == 3  # job.toml: the job as run, every --set applied
    assert not [p for p in as_run.parent.iterdir() if p.name.startswith(".")]  # no temp file left


def test_resume_refuses_a_sweep(tmp_path, capsys):
    sweep = fake_sweep(tmp_path / "out")
    before = snapshot(sweep)
    assert run_babysit(write_job(tmp_path, "sweep", DIGITS, babysit="epochs = 1"), tmp_path / "out", "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'sweep' is a sweep" in err and snapshot(sweep) == before


def test_resume_refuses_a_run_whose_checkpoints_are_all_lost(tmp_path, capsys):
    job = write_job(tmp_path, "lost", STEADY, model="learning_rate = 0.01", babysit="epochs = 3")
    assert run_babysit(job, tmp_path / "out") == 0
    run = tmp_path / "out" / "lost"
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.write_bytes(checkpoint.read_bytes()[:20])  # torn: none of them reads
    before = snapshot(run)
    capsys.readouterr()
    assert run_babysit(job, tmp_path / "out", "--resume", "--set", "babysit.epochs=5") == 2  # no epoch written twice
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "every checkpoint is corrupt" in err and "--overwrite" in err
    assert snapshot(run) == before


# --- when rows and checkpoints reach the disk ----------------------------------------------------


def test_a_persist_is_due_on_every_improvement_only_when_it_is_cheap_against_an_epoch():
    due = functools.partial(babysit_module.persist_due, forced=False, since=0.01)
    assert due(improved=True, cost=0.002, mean_epoch=1.0)  # 0.2% of an epoch: at once
    assert not due(improved=True, cost=0.002, mean_epoch=0.005)  # as long as an epoch: wait for the budget
    assert not due(improved=False, cost=0.002, mean_epoch=1.0)
    assert babysit_module.persist_due(forced=False, improved=False, since=0.2, cost=0.002, mean_epoch=0.005)
    assert babysit_module.persist_due(forced=True, improved=False, since=0.0, cost=1.0, mean_epoch=0.001)


def steady(name: str, epochs: int, **model) -> Job:
    return parse_job({"name": name, "data": {"source": "digits"}, "babysit": {"epochs": epochs},
                      "model": {"trainer": "tests.babysit.test_loop:SteadyTrainer", "learning_rate": 0.01, **model}})


def test_every_improvement_is_on_disk_as_it_happens_when_epochs_are_long(tmp_path, monkeypatch):
    # Epochs of 0.4 s, persists of a few ms: an improvement is checkpointed at once. The time budget
    # is switched off, so that only the improvement rule can write (the last epoch stops: it always does).
    monkeypatch.setattr(babysit_module, "PERSIST_RATIO", math.inf)
    job = steady("eager", 2, sleep=0.4)
    run = open_run(tmp_path, "eager", job.to_toml())
    seen = []

    def echo(line: str) -> None:  # after each epoch's step, the disk as a kill would leave it
        if line.startswith("epoch"):
            best = CheckpointStore(run.checkpoints_dir).load_best()
            seen.append((int(line.split()[1]), int(best.meta["epoch"]), len(table(run.path, "epochs"))))

    babysit_module.babysit(job, run, echo=echo)
    assert seen == [(1, 1, 1), (2, 2, 2)]


def test_a_fresh_run_never_reads_its_tables_back(tmp_path):
    reads = []

    def count_reads(frame, event, arg):
        if event == "call" and frame.f_code is results_io.read_table.__code__:
            reads.append(frame.f_locals.get("table_path"))

    def babysit_counting(job: Job, run) -> None:
        sys.setprofile(count_reads)
        try:
            babysit_module.babysit(job, run, echo=lambda line: None)
        finally:
            sys.setprofile(None)

    babysit_counting(steady("lean", 3), open_run(tmp_path, "lean", steady("lean", 3).to_toml()))
    assert reads == [] and len(table(tmp_path / "lean", "epochs")) == 3
    # a resumed run does read them: the rows a kill kept off the disk are written back, once
    babysit_counting(steady("lean", 4), open_run(tmp_path, "lean", "", resume=True))
    assert reads and list(table(tmp_path / "lean", "epochs")["epoch"]) == [1, 2, 3, 4]


# --- Ctrl-C ---------------------------------------------------------------------------------------


def test_ctrl_c_keeps_every_epoch_shown_and_prints_the_command_that_resumes(tmp_path):
    job = write_job(tmp_path, "paused", STEADY, model="learning_rate = 0.01\nsleep = 0.05", babysit="epochs = 12")
    proc = caviar_start("babysit", job, "--out", tmp_path / "out")
    run = tmp_path / "out" / "paused"
    assert wait_for_epoch(proc, 2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    shown = max([2] + [int(line.split()[1]) for line in out.splitlines() if line.startswith("epoch")])
    (line,) = err.strip().splitlines()
    resume = shlex.split(line.partition("Resume with: ")[2])
    assert resume[-5:] == ["--out", str(tmp_path / "out"), "--name", "paused", "--resume"]
    assert str(job) not in resume
    assert list(table(run, "epochs")["epoch"]) == list(range(1, shown + 1))  # every epoch shown is saved

    job.unlink()   # the resume runs the job as saved with the run
    done = run_command(resume, timeout=60)
    assert done.returncode == 0, done.stderr
    epochs = table(run, "epochs")
    assert list(epochs["epoch"]) == list(range(1, 13))
    assert np.allclose(epochs["val_accuracy"], 1 - 0.5 / epochs["epoch"])  # went on from the state it had


# --- crashes --------------------------------------------------------------------------------------

# Rollbacks and plateaus on the way, so a resume must restore the policy's counters, the rate and
# the data order exactly to agree.
EVENTFUL = dict(model="learning_rate = 0.3",
                babysit="epochs = 30\ntolerance = 0.003\npatience = 2\ncooldown = 0\nmax_rollbacks = 20")


def test_sigkill_then_resume_gives_every_epoch_of_an_uninterrupted_run(tmp_path):
    job = write_job(tmp_path, "steady", DIGITS, **EVENTFUL)
    reference = caviar_start("babysit", job, "--out", tmp_path / "out", "--name", "reference")
    assert reference.wait(timeout=120) == 0, reference.stderr.read()

    kills = 0
    proc = caviar_start("babysit", job, "--out", tmp_path / "out")
    run = tmp_path / "out" / "steady"
    for at, pause in ((3, 0.0), (11, 0.003), (19, 0.001)):  # three kills, resuming in between
        if wait_for_epoch(proc, at):
            time.sleep(pause)  # somewhere in the next epoch: training, deciding or writing
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        proc = caviar_start("babysit", job, "--out", tmp_path / "out", "--resume")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert kills >= 2 and "resuming steady after epoch" in out

    epochs, events = comparable(run)
    ref_epochs, ref_events = comparable(tmp_path / "out" / "reference")
    assert list(epochs["epoch"]) == list(range(1, 31))  # no epoch lost, none written twice
    assert {"rollback", "plateau"} <= set(ref_events["event"])
    pd.testing.assert_frame_equal(epochs, ref_epochs, check_exact=True)
    pd.testing.assert_frame_equal(events, ref_events, check_exact=True)


def test_a_truncated_last_checkpoint_falls_back_to_the_one_before(tmp_path, capsys):
    job = write_job(tmp_path, "torn", DIGITS, **{**EVENTFUL, "babysit": EVENTFUL["babysit"].replace("30", "8")})
    assert run_babysit(job, tmp_path / "out") == 0
    run = tmp_path / "out" / "torn"
    before, _ = comparable(run)
    ring = sorted((run / "checkpoints").glob("epoch-*.npz"))
    assert ring[-1].name == "epoch-000008.npz" and len(ring) >= 2  # at least the initial state too
    previous = int(ring[-2].stem.split("-")[1])
    last = run / "checkpoints" / "last.npz"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn write (also its epoch file)
    capsys.readouterr()

    # resume, and give it 4 more epochs: it must go on from the checkpoint before, not from epoch 8
    assert run_babysit(job, tmp_path / "out", "--resume", "--set", "babysit.epochs=12") == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "corrupt checkpoint" in line]
    assert len(warning) == 1 and warning[0].endswith(f"using {ring[-2]}")
    assert f"resuming torn after epoch {previous}" in captured.out
    after, events = comparable(run)
    assert list(after["epoch"]) == list(range(1, 13))
    # the epochs trained again from the checkpoint before give the same metrics as the first time
    metrics = ["epoch", "learning_rate", "train_loss", "train_accuracy", "val_loss", "val_accuracy"]
    pd.testing.assert_frame_equal(after[metrics].iloc[:8], before[metrics], check_exact=True)
    assert (events["event"] == "final").sum() == 1


def test_rows_a_kill_kept_off_disk_come_back_from_the_checkpoint(tmp_path):
    # A kill after the last checkpoint was written but before its rows were: the checkpoint holds
    # them, and --resume writes them (and only them) back.
    job = write_job(tmp_path, "gap", DIGITS, babysit="epochs = 4")
    assert run_babysit(job, tmp_path / "out") == 0
    run = tmp_path / "out" / "gap"
    before = comparable(run)
    for name in ("epochs", "events"):
        rows = table(run, name)
        for part in (run / f"{name}.parquet").iterdir():
            part.unlink()
        rows[rows["epoch"] < 4].to_parquet(run / f"{name}.parquet" / "part-000000.parquet")
    assert run_babysit(job, tmp_path / "out", "--resume") == 0
    after = comparable(run)
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])
