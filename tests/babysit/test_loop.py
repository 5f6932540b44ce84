"""Panda mode end to end: real runs on digits, real files, real processes (SIGKILL, --resume)."""

from __future__ import annotations

import functools
import math
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caviar.babysit import loop as babysit_module
from caviar.store import reader as results_io
from caviar.store.checkpoints import CheckpointStore, load_checkpoint
from caviar.config.job import Job, parse_job
from caviar.store.folder import open_run
from tests.support import DIGITS, STEADY, caviar_run, caviar_start, parquet_table, run_babysit, wait_for_epoch, write_job




def comparable(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's epochs and events (without timings, moments or resume notes), in order."""
    epochs = parquet_table(run, "epochs").drop(columns=["seconds", "time"]).sort_values("epoch").reset_index(drop=True)
    events = parquet_table(run, "events").drop(columns="time")
    events = events[events["event"] != "resume"].reset_index(drop=True)
    return epochs, events


# --- a run that diverges recovers -----------------------------------------------------------------

DIVERGING = dict(model='batch_norm = false\noptimizer = "sgd"\nlearning_rate = 10.0',  # 10x too high
                 babysit="epochs = 10", data="test_fraction = 0.2")


def test_a_diverging_run_rolls_back_and_recovers(tmp_path, capsys):
    assert run_babysit(write_job(tmp_path, "wild", DIGITS, **DIVERGING), tmp_path / "out") == 0
    out = capsys.readouterr().out
    run = tmp_path / "out" / "wild"
    epochs, events = parquet_table(run, "epochs"), parquet_table(run, "events")

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
    epochs, events = parquet_table(run, "epochs"), parquet_table(run, "events")
    rollbacks = events[events["event"] == "rollback"]
    assert len(rollbacks) >= 1
    # each rollback halves the rate, and the epoch after it trains with the halved rate
    first = rollbacks.iloc[0]
    after = epochs.loc[epochs["epoch"] == first["epoch"] + 1, "learning_rate"].item()
    assert after == pytest.approx(first["base_learning_rate"]) and after < 0.1


# --- names ------------------------------------------------------------------------------------------


# --- bad input never costs the old run ----------------------------------------------------------




def test_without_evaluate_the_divergence_yardstick_is_named_the_first_epochs_loss(tmp_path):
    job = write_job(tmp_path, "blown", STEADY, model="learning_rate = 0.01\nblow_up_at = 2", babysit="epochs = 3")
    assert run_babysit(job, tmp_path / "out") == 0
    diverged = parquet_table(tmp_path / "out" / "blown", "events").query("event == 'diverged'")
    assert "above 3 × the first epoch's loss 1;" in diverged.iloc[0]["detail"]


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
                      "model": {"trainer": "tests.toys:SteadyTrainer", "learning_rate": 0.01, **model}})


def test_every_improvement_is_on_disk_as_it_happens_when_epochs_are_long(tmp_path, monkeypatch):
    # Epochs of 0.4 s, persists of a few ms: an improvement is checkpointed at once. The time budget
    # is switched off, so that only the improvement rule can write (the last epoch stops: it always does).
    monkeypatch.setattr(babysit_module, "PERSIST_RATIO", math.inf)
    # "Cheap" is a share of an epoch; on a machine loaded by other work an fsync can take a good part
    # of 0.4 s, so here any persist shorter than an epoch counts (persist_due's own tests pin the 3%).
    monkeypatch.setattr(babysit_module, "CHEAP_PERSIST", 1.0)
    job = steady("eager", 2, sleep=0.4)
    run = open_run(tmp_path, "eager", job.to_toml())
    seen = []

    def echo(line: str) -> None:  # after each epoch's step, the disk as a kill would leave it
        if line.startswith("epoch"):
            best = CheckpointStore(run.checkpoints_dir).load_best()
            seen.append((int(line.split()[1]), int(best.meta["epoch"]), len(parquet_table(run.path, "epochs"))))

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
    assert reads == [] and len(parquet_table(tmp_path / "lean", "epochs")) == 3
    # a resumed run does read them: the rows a kill kept off the disk are written back, once
    babysit_counting(steady("lean", 4), open_run(tmp_path, "lean", "", resume=True))
    assert reads and list(parquet_table(tmp_path / "lean", "epochs")["epoch"]) == [1, 2, 3, 4]


# --- Ctrl-C ---------------------------------------------------------------------------------------


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
    # every copy of epoch 8 torn (last.npz and its epoch file are one file; the best's own copy too,
    # when epoch 8 is the best): the newest state left is the ring's one before, or the best's copy
    epochs = {p: int(load_checkpoint(p)[1]["epoch"]) for p in (run / "checkpoints").glob("*.npz")}
    for path in [p for p, epoch in epochs.items() if epoch == 8]:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    previous = max(e for e in epochs.values() if e < 8)
    capsys.readouterr()

    # resume, and give it 4 more epochs: it must go on from that state, not from the torn one
    assert run_babysit(job, tmp_path / "out", "--resume", "--set", "babysit.epochs=12") == 0
    captured = capsys.readouterr()
    warning = [line for line in captured.err.splitlines() if "corrupt checkpoint" in line]
    assert len(warning) == 1
    assert epochs[Path(warning[0].rpartition("using ")[2])] == previous
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
    moments = parquet_table(run, "epochs")["time"]
    for name in ("epochs", "events"):
        rows = parquet_table(run, name)
        for part in (run / f"{name}.parquet").iterdir():
            part.unlink()
        rows[rows["epoch"] < 4].to_parquet(run / f"{name}.parquet" / "part-000000.parquet")
    assert run_babysit(job, tmp_path / "out", "--resume") == 0
    after = comparable(run)
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])
    # The rows written back are the ones the run recorded: each epoch keeps the moment it ended.
    assert parquet_table(run, "epochs").sort_values("epoch")["time"].tolist() == moments.tolist()


def test_a_resume_gives_the_trainer_the_rate_the_run_had(tmp_path):
    # SteadyTrainer keeps its hyperparameters in its config, not in its state: the loop must set the
    # rate (and any nudged value) again on resume, or the resumed epochs train with the job's.
    job = write_job(tmp_path, "nudged", STEADY, model="learning_rate = 0.01", babysit="epochs = 3")
    queue = tmp_path / "out" / "nudged" / "nudges"
    queue.mkdir(parents=True)   # a folder with no results yet: the nudge waits for the first boundary
    (queue / "0001.json").write_text('{"set": {"learning_rate": 0.002}}')
    assert run_babysit(job, tmp_path / "out") == 0
    assert run_babysit(job, tmp_path / "out", "--resume", "--set", "babysit.epochs=5") == 0
    epochs = parquet_table(tmp_path / "out" / "nudged", "epochs")
    assert list(epochs["learning_rate"]) == [0.01, 0.002, 0.002, 0.002, 0.002]



# --- a trainer whose state is its live arrays -----------------------------------------------------


class AliasingTrainer:
    """Its state_dict() hands out its live weight, which each epoch increments in place (as many a
    real trainer does); its load_state_dict() keeps the arrays it is given. The fourth weight scores
    0 at the starting rate, so the policy rolls back to epoch 3 (weight 3) and halves the rate."""

    def __init__(self, config, data, seed):
        self.config, self.w = dict(config), np.zeros(1)

    def train_epoch(self):
        self.w += 1.0  # in place: a snapshot sharing this array would move with it
        weight, rate = float(self.w[0]), float(self.config["learning_rate"])
        score = 0.0 if weight == 4.0 and rate >= 0.01 else weight / 100
        return {"val_accuracy": score, "weight": weight, "learning_rate": rate}

    def state_dict(self):
        return {"w": self.w}

    def load_state_dict(self, state):
        self.w = state["w"]

    def set_hyperparameters(self, **changes):
        self.config.update(changes)


def aliasing(epochs: int) -> Job:
    return parse_job({"name": "alias", "data": {"source": "digits"}, "babysit": {"epochs": epochs},
                      "model": {"trainer": "tests.babysit.test_loop:AliasingTrainer", "learning_rate": 0.01}})


def test_a_rollback_goes_back_even_when_the_trainer_hands_out_its_live_arrays(tmp_path):
    babysit_module.babysit(aliasing(7), open_run(tmp_path, "alias", aliasing(7).to_toml()), echo=lambda line: None)
    epochs = parquet_table(tmp_path / "alias", "epochs")
    assert list(epochs["decision"])[3] == "rollback"
    assert list(epochs["weight"]) == [1, 2, 3, 4, 4, 5, 6]  # after the rollback: from weight 3 again
    # a run stopped at epoch 3 and resumed to 7 trains the same epochs
    babysit_module.babysit(aliasing(3), open_run(tmp_path, "resumed", aliasing(3).to_toml()), echo=lambda line: None)
    babysit_module.babysit(aliasing(7), open_run(tmp_path, "resumed", "", resume=True), echo=lambda line: None)
    resumed = parquet_table(tmp_path / "resumed", "epochs")
    columns = ["epoch", "learning_rate", "val_accuracy", "weight"]
    pd.testing.assert_frame_equal(resumed[columns], epochs[columns], check_exact=True)


def test_a_refused_nudge_recorded_before_a_kill_is_archived_as_refused_on_resume(tmp_path, monkeypatch):
    # A kill after the checkpoint recorded a refused nudge but before its file moved: the resume
    # moves the file, and into refused/, as the checkpoint says, not applied/.
    job = write_job(tmp_path, "refusing", STEADY, model="learning_rate = 0.01", babysit="epochs = 1")
    queue = tmp_path / "out" / "refusing" / "nudges"
    queue.mkdir(parents=True)
    (queue / "0001.json").write_text("not a nudge")
    with monkeypatch.context() as killed_before_archiving:
        killed_before_archiving.setattr(babysit_module.channel, "archive", lambda path, refused=False: False)
        assert run_babysit(job, tmp_path / "out") == 0
    assert (queue / "0001.json").is_file()
    assert run_babysit(job, tmp_path / "out", "--resume", "--set", "babysit.epochs=2") == 0
    assert [p.name for p in (queue / "refused").iterdir()] == ["0001.json"] and not (queue / "applied").exists()
    events = parquet_table(tmp_path / "out" / "refusing", "events")
    assert list(events["event"]).count("nudge_refused") == 1 and "nudge" not in set(events["event"])


def test_a_checkpoint_of_an_older_caviar_names_its_handled_nudges_plainly(tmp_path):
    # The older form of the checkpoint's "nudges": plain names, every one applied.
    run = open_run(tmp_path, "old", steady("old", 1).to_toml())
    babysit_module.babysit(steady("old", 1), run, echo=lambda line: None)
    store = CheckpointStore(run.checkpoints_dir)
    last = store.load_last()
    (run.path / "nudges").mkdir()
    (run.path / "nudges" / "0001.json").write_text('{"set": {"learning_rate": 0.002}}')
    store.save(int(last.meta["epoch"]), last.state, {**last.meta, "nudges": ["0001.json"]}, best=True)
    babysit_module.babysit(steady("old", 2), open_run(tmp_path, "old", "", resume=True), echo=lambda line: None)
    assert [p.name for p in (run.path / "nudges" / "applied").iterdir()] == ["0001.json"]


# --- a rollback a person asks for -----------------------------------------------------------------

def nudged_at_four(tmp_path, out):
    """A babysat job whose trainer sends a rollback nudge itself at the end of epoch 4 (run "asked")."""
    return write_job(tmp_path, "asked", DIGITS,
                     model=f'trainer = "tests.toys:NudgingTrainer"\nlearning_rate = 0.01\nnudge_at = 4\n'
                           f'run = "{out / "asked"}"',
                     babysit="epochs = 6\npatience = 100\ntolerance = 1.0")


def test_a_rollback_a_nudge_asks_for_is_recorded_as_a_rollback(tmp_path):
    # The trainer sends the nudge itself at the end of epoch 4, as `caviar nudge --rollback` would;
    # the policy alone would go on (its score falls by less than the tolerance).
    out = tmp_path / "out"
    job = nudged_at_four(tmp_path, out)
    assert run_babysit(job, out) == 0
    epochs, events = parquet_table(out / "asked", "epochs"), parquet_table(out / "asked", "events")
    assert epochs.set_index("epoch")["decision"][4] == "rollback"      # not "continue"
    at_four = events[events["epoch"] == 4]
    assert at_four["event"].tolist() == ["nudge", "rollback"]
    assert at_four["detail"].tolist() == ["rollback", "asked by a nudge: back to epoch 2"]
    from caviar.views.plots import marks

    assert (4.0, "rollback") in marks(events)                          # the timeline draws it as one


def test_a_rollback_a_nudge_asks_for_shows_on_the_terminal_and_counts_at_the_end(tmp_path):
    # The same nudge, through the real command: the line of epoch 4 says rollback (not "continue"),
    # and the final line counts it, as a rollback a person asked for.
    out = tmp_path / "out"
    job = nudged_at_four(tmp_path, out)
    done = caviar_run("babysit", job, "--out", out, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    four = next(line for line in lines if line.startswith("epoch   4"))
    assert "rollback to epoch 2, asked by a nudge" in four and "continue" not in four
    assert "(6 epochs, 1 rollback, 1 asked for; stopped: epochs)" in lines[-1]
    more = caviar_run("babysit", "--name", "asked", "--out", out, "--resume", "--set", "babysit.epochs=8", timeout=120)
    assert more.returncode == 0, more.stderr
    assert "(8 epochs, 1 rollback, 1 asked for; stopped: epochs)" in more.stdout  # the count is in the checkpoint
