"""`caviar babysit` from the command line: what it refuses (and leaves untouched), `--from SWEEP`,
`--resume` and Ctrl-C; real runs on digits, real files, real processes."""

from __future__ import annotations

import shlex
import signal
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caviar.config.job import load_job
from tests.support import (DIGITS, STEADY, caviar_start, parquet_table, run_babysit, run_command, snapshot,
                           wait_for_epoch, write_job)
from tests.toys import SteadyTrainer


def test_an_existing_run_is_refused_without_resume_or_overwrite(tmp_path, capsys):
    job = write_job(tmp_path, "taken", DIGITS, babysit="epochs = 2")
    assert run_babysit(job, tmp_path / "out") == 0
    before = parquet_table(tmp_path / "out" / "taken", "epochs")
    capsys.readouterr()
    assert run_babysit(job, tmp_path / "out") == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--resume" in err and "--overwrite" in err
    pd.testing.assert_frame_equal(parquet_table(tmp_path / "out" / "taken", "epochs"), before)
    assert run_babysit(job, tmp_path / "out", "--overwrite", "--set", "babysit.epochs=3") == 0
    assert len(parquet_table(tmp_path / "out" / "taken", "epochs")) == 3


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
    epochs = parquet_table(run, "epochs")
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
    assert len(parquet_table(tmp_path / "out" / "longer", "epochs")) == 3
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
    (line,) = [line for line in err.splitlines() if ": error: " in line]  # (a resume may first say what it imports)
    assert err.endswith(line) and "every checkpoint is corrupt" in line and "--overwrite" in line
    assert "checkpoints/last.npz" in line and "checkpoints/best.npz" in line   # the files that do not read, named
    assert snapshot(run) == before


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
    assert list(parquet_table(run, "epochs")["epoch"]) == list(range(1, shown + 1))  # every epoch shown is saved

    job.unlink()   # the resume runs the job as saved with the run
    done = run_command(resume, timeout=60)
    assert done.returncode == 0, done.stderr
    epochs = parquet_table(run, "epochs")
    assert list(epochs["epoch"]) == list(range(1, 13))
    assert np.allclose(epochs["val_accuracy"], 1 - 0.5 / epochs["epoch"])  # went on from the state it had


class SlowFinishTrainer(SteadyTrainer):
    """SteadyTrainer that can evaluate: at once on the untrained model, in config["final_sleep"]
    seconds once it has trained (the end of the run tests the state it ends on)."""

    def evaluate(self, x, y):
        if self.epoch > 0:
            time.sleep(float(self.config.get("final_sleep", 0.0)))
        return {"loss": 1.0, "accuracy": 0.5}


def test_ctrl_c_while_the_run_finishes_prints_the_command_that_resumes(tmp_path):
    job = write_job(tmp_path, "ending", STEADY, data="test_fraction = 0.2", babysit="epochs = 3",
                    model={"trainer": "tests.babysit.test_command:SlowFinishTrainer", "learning_rate": 0.01,
                           "final_sleep": 3.0})
    proc = caviar_start("babysit", job, "--out", tmp_path / "out")
    assert wait_for_epoch(proc, 3)
    time.sleep(0.5)  # in the end's evaluation of the best state
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (line,) = err.strip().splitlines()
    assert "epochs up to 3 are saved" in line
    resume = shlex.split(line.partition("Resume with: ")[2])
    assert resume[-5:] == ["--out", str(tmp_path / "out"), "--name", "ending", "--resume"]
    done = run_command(resume, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1].startswith("best epoch 3")
    assert list(parquet_table(tmp_path / "out" / "ending", "epochs")["epoch"]) == [1, 2, 3]
