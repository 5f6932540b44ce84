"""Panda mode end to end: real runs on digits, real files, real processes (SIGKILL, --resume)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caviar import cli

PYTHON = [sys.executable, "-m", "caviar"]

# Small and quick: digits, one hidden layer of 32.
BASE = """
[data]
source = "digits"
[model]
hidden_layers = [32]
"""


def job_file(tmp_path: Path, name: str, model: str = "", babysit: str = "", data: str = "") -> Path:
    """A job file for run `name`: BASE plus extra lines in [model], [babysit] and [data]."""
    text = f'name = "{name}"\n' + BASE.replace("[model]\n", f"[model]\n{model}\n").replace(
        "[data]\n", f"[data]\n{data}\n") + f"[babysit]\n{babysit}\n"
    path = tmp_path / f"{name}.toml"
    path.write_text(text)
    return path


def babysit_inline(tmp_path: Path, job: Path, *argv: str) -> int:
    return cli.main(["babysit", str(job), "--out", str(tmp_path / "out"), *argv])


def babysit_process(tmp_path: Path, job: Path, *argv: str) -> subprocess.Popen:
    return subprocess.Popen(PYTHON + ["babysit", str(job), "--out", str(tmp_path / "out"), *argv],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


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
    assert babysit_inline(tmp_path, job_file(tmp_path, "wild", **DIVERGING)) == 0
    out = capsys.readouterr().out
    run = tmp_path / "out" / "wild"
    epochs, events = table(run, "epochs"), table(run, "events")

    assert list(epochs["epoch"]) == list(range(1, 11))
    assert "diverged" in set(events["event"]) and "diverged" in set(epochs["decision"])
    first = events[events["event"] == "diverged"].iloc[0]
    assert first["learning_rate"] == pytest.approx(1.0)  # 10 x divergence_factor 0.1
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
    job = job_file(tmp_path, "wobbly", model="learning_rate = 0.1",
                   babysit="epochs = 12\ntolerance = 0.005\npatience = 20\nmax_rollbacks = 3")
    assert babysit_inline(tmp_path, job) == 0
    run = tmp_path / "out" / "wobbly"
    epochs, events = table(run, "epochs"), table(run, "events")
    rollbacks = events[events["event"] == "rollback"]
    assert len(rollbacks) >= 1
    # each rollback halves the rate, and the epoch after it trains with the halved rate
    first = rollbacks.iloc[0]
    after = epochs.loc[epochs["epoch"] == first["epoch"] + 1, "learning_rate"].item()
    assert after == pytest.approx(first["learning_rate"]) and after < 0.1


# --- names ------------------------------------------------------------------------------------------


def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    job = job_file(tmp_path, "taken", babysit="epochs = 2")
    assert babysit_inline(tmp_path, job) == 0
    before = table(tmp_path / "out" / "taken", "epochs")
    capsys.readouterr()
    assert babysit_inline(tmp_path, job) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and "--overwrite" in err
    pd.testing.assert_frame_equal(table(tmp_path / "out" / "taken", "epochs"), before)
    assert babysit_inline(tmp_path, job, "--overwrite", "--set", "babysit.epochs=3") == 0
    assert len(table(tmp_path / "out" / "taken", "epochs")) == 3


def test_from_a_sweep_starts_with_its_best_completed_trial(tmp_path):
    sweep = tmp_path / "out" / "sweep"
    sweep.mkdir(parents=True)
    pd.DataFrame({
        "trial_id": [0, 1, 2, 3],
        "status": ["completed", "completed", "failed", "pruned"],
        "params_learning_rate": [0.001, 0.02, 0.5, 0.3],
        "params_batch_size": [64, 32, 16, 128],
        "score": [0.91, 0.95, np.nan, 0.99],  # the pruned trial's score does not count
    }).to_parquet(sweep / "trials.parquet")
    assert babysit_inline(tmp_path, job_file(tmp_path, "best", babysit="epochs = 2"), "--from", "sweep") == 0
    epochs = table(tmp_path / "out" / "best", "epochs")
    assert list(epochs["learning_rate"]) == [0.02, 0.02]
    as_run = (tmp_path / "out" / "best" / "job.toml").read_text()
    assert "learning_rate = 0.02" in as_run and "batch_size = 32" in as_run


# --- crashes --------------------------------------------------------------------------------------

# Rollbacks and plateaus on the way, so a resume must restore the policy's counters, the rate and
# the data order exactly to agree.
EVENTFUL = dict(model="learning_rate = 0.3",
                babysit="epochs = 30\ntolerance = 0.003\npatience = 2\ncooldown = 0\nmax_rollbacks = 20")


def test_sigkill_then_resume_gives_every_epoch_of_an_uninterrupted_run(tmp_path):
    job = job_file(tmp_path, "steady", **EVENTFUL)
    reference = babysit_process(tmp_path, job, "--name", "reference")
    assert reference.wait(timeout=120) == 0, reference.stderr.read()

    kills = 0
    proc = babysit_process(tmp_path, job)
    run = tmp_path / "out" / "steady"
    for at, pause in ((3, 0.0), (11, 0.003), (19, 0.001)):  # three kills, resuming in between
        if wait_for_epoch(proc, at):
            time.sleep(pause)  # somewhere in the next epoch: training, deciding or writing
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        proc = babysit_process(tmp_path, job, "--resume")
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
    job = job_file(tmp_path, "torn", **{**EVENTFUL, "babysit": EVENTFUL["babysit"].replace("30", "8")})
    assert babysit_inline(tmp_path, job) == 0
    run = tmp_path / "out" / "torn"
    before, _ = comparable(run)
    ring = sorted((run / "checkpoints").glob("epoch-*.npz"))
    assert ring[-1].name == "epoch-000008.npz" and len(ring) >= 2  # at least the initial state too
    previous = int(ring[-2].stem.split("-")[1])
    last = run / "checkpoints" / "last.npz"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn write (also its epoch file)
    capsys.readouterr()

    # resume, and give it 4 more epochs: it must go on from the checkpoint before, not from epoch 8
    assert babysit_inline(tmp_path, job, "--resume", "--set", "babysit.epochs=12") == 0
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
    job = job_file(tmp_path, "gap", babysit="epochs = 4")
    assert babysit_inline(tmp_path, job) == 0
    run = tmp_path / "out" / "gap"
    before = comparable(run)
    for name in ("epochs", "events"):
        rows = table(run, name)
        for part in (run / f"{name}.parquet").iterdir():
            part.unlink()
        rows[rows["epoch"] < 4].to_parquet(run / f"{name}.parquet" / "part-000000.parquet")
    assert babysit_inline(tmp_path, job, "--resume") == 0
    after = comparable(run)
    pd.testing.assert_frame_equal(after[0], before[0])
    pd.testing.assert_frame_equal(after[1], before[1])
