"""The PyTorch example as a user runs it: jobs/digits_cnn.toml swept and babysat by the command line,
with real Ray, real torch on CPU and real processes killed mid-run."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pandas as pd

import caviar
from tests.support import ROOT, caviar_run, caviar_start, parquet_table, wait_for_epoch

JOB = ROOT / "jobs" / "digits_cnn.toml"


def test_a_sweep_of_eight_cnns_from_the_command_line_completes_and_loads(tmp_path, ray_address):
    done = caviar_run("parallel", JOB, "--out", tmp_path, "--address", ray_address, "--quiet",
                      "--set", "search.trials=8", "--set", "model.epochs=2", "--set", "model.batch_size=256",
                      timeout=280)
    assert done.returncode == 0, done.stderr
    run = caviar.load(tmp_path / "digits_cnn")
    assert run.kind == "sweep" and len(run.trials) == 8
    assert set(run.trials["status"]) <= {"completed", "pruned"}
    assert {"params_learning_rate", "params_weight_decay", "params_beta1", "params_channels"} <= set(run.trials)
    assert run.trials["score"].max() > 0.5   # two epochs of a CNN on digits learn something
    assert set(run.epochs["trial_id"]) == set(range(8)) and run.epochs["val_loss"].notna().all()


def comparable(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A babysat run's epochs and events (without timings, clock times and resume notes), in order."""
    epochs = parquet_table(run, "epochs").drop(columns=["seconds", "time"]).sort_values("epoch").reset_index(drop=True)
    events = parquet_table(run, "events").drop(columns="time")
    return epochs, events[events["event"] != "resume"].reset_index(drop=True)


def test_the_example_babysat_killed_three_times_ends_as_the_uninterrupted_run(tmp_path):
    sets = ["--set", "model.channels=4", "--set", "model.batch_size=128", "--set", "babysit.epochs=10",
            "--set", "model.learning_rate=0.03", "--set", "babysit.patience=1"]
    out = tmp_path / "out"
    reference = caviar_start("babysit", JOB, "--out", out, "--name", "reference", *sets, cwd=ROOT)
    assert reference.wait(timeout=240) == 0, reference.stderr.read()

    kills = 0
    proc = caviar_start("babysit", JOB, "--out", out, *sets, cwd=ROOT)
    for at, pause in ((2, 0.0), (5, 0.05), (7, 0.01)):   # three kills, somewhere in the next epoch
        if wait_for_epoch(proc, at):
            time.sleep(pause)
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait(timeout=60)
        proc = caviar_start("babysit", JOB, "--out", out, *sets, "--resume", cwd=ROOT)
    stdout, stderr = proc.communicate(timeout=240)
    assert proc.returncode == 0, stderr
    assert kills == 3 and "resuming digits_cnn after epoch" in stdout

    epochs, events = comparable(out / "digits_cnn")
    ref_epochs, ref_events = comparable(out / "reference")
    assert list(epochs["epoch"]) == list(range(1, 11))   # no epoch lost, none written twice
    pd.testing.assert_series_equal(epochs["val_loss"], ref_epochs["val_loss"], check_exact=False, rtol=0, atol=1e-9)
    pd.testing.assert_frame_equal(epochs, ref_epochs, check_exact=True)   # on one CPU build: every bit
    pd.testing.assert_frame_equal(events, ref_events, check_exact=True)
