"""Adversarial cases for panda mode: a received or damaged run folder, a misbehaving trainer, a full disk.

Each case runs the real command line in real processes, on real files: truncated checkpoints, real
symbolic links pointing out of the run folder, a real tmpfs that fills up. The test trainers are
defined here; job files name them as `tests.adversarial.test_babysit:ClassName`.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caviar.babysit import nudges as channel
from caviar.store.checkpoints import load_checkpoint
from caviar.store.lock import holder
from tests.support import (DIGITS, caviar_run, caviar_start, hold_lock, parquet_table, snapshot, wait_for_epoch,
                           write_job)

HERE = "tests.adversarial.test_babysit"


# --- trainers -----------------------------------------------------------------------------------------

class PeakTrainer:
    """A deterministic curve that peaks at epoch `peak` (default 3) and then declines slowly, so the ring
    of checkpoints moves past the best. Config: learning_rate, sleep (seconds per epoch), peak."""

    def __init__(self, config, data, seed):
        self.config, self.epoch = dict(config), 0

    def train_epoch(self):
        time.sleep(float(self.config.get("sleep", 0.0)))
        self.epoch += 1
        score = 0.9 - 0.01 * abs(self.epoch - int(self.config.get("peak", 3)))
        return {"train_loss": 1.0 / self.epoch, "val_accuracy": score,
                "learning_rate": float(self.config["learning_rate"])}

    def state_dict(self):
        return {"epoch": np.array(self.epoch), "weights": np.full(64, float(self.epoch))}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])

    def set_hyperparameters(self, **changes):
        self.config.update(changes)


class BadReportTrainer(PeakTrainer):
    """Returns `bad` ("none": None, "list": a list of pairs) instead of its metrics at epoch `bad_at`."""

    def train_epoch(self):
        metrics = super().train_epoch()
        if self.epoch == int(self.config["bad_at"]):
            return None if self.config["bad"] == "none" else list(metrics.items())
        return metrics


class SlowSecondTrainer(PeakTrainer):
    """Can evaluate (so the run writes a "start" event) and takes `sleep` seconds for its second epoch
    only: a kill then finds the initial state as the only checkpoint."""

    def train_epoch(self):
        if self.epoch == 1:
            time.sleep(float(self.config.get("sleep", 0.0)))
        self.epoch += 1
        return {"train_loss": 1.0 / self.epoch, "val_accuracy": 0.5 + self.epoch / 100,
                "learning_rate": float(self.config["learning_rate"])}

    def evaluate(self, x, y):
        return {"loss": 2.0, "accuracy": 0.1}


class HeavyTrainer:
    """Epochs of `sleep` seconds (so every improvement is checkpointed at once) and 64 KiB of weights
    that each epoch changes: a checkpoint fills a disk fast. The score drops at every 4th epoch while
    the learning rate is above 0.002, so the run rolls back and cuts its rate on the way."""

    def __init__(self, config, data, seed):
        self.config, self.seed, self.epoch = dict(config), seed, 0
        self.weights = np.zeros(8192)

    def train_epoch(self):
        time.sleep(float(self.config.get("sleep", 0.0)))
        lr = float(self.config["learning_rate"])
        self.epoch += 1
        self.weights = self.weights + lr * np.random.default_rng([self.seed, self.epoch]).standard_normal(8192)
        drop = 0.05 if self.epoch % 4 == 0 and lr > 0.002 else 0.0
        return {"train_loss": 1.0 / self.epoch, "val_accuracy": 1.0 - 0.5 / self.epoch - drop,
                "val_loss": float(np.abs(self.weights).mean()), "learning_rate": lr}

    def state_dict(self):
        return {"epoch": np.array(self.epoch), "weights": self.weights.copy()}

    def load_state_dict(self, state):
        self.epoch, self.weights = int(state["epoch"]), state["weights"].copy()

    def set_hyperparameters(self, **changes):
        self.config.update(changes)


def peak_job(folder: Path, name: str, epochs: int, **model) -> Path:
    """A job of PeakTrainer: no rollback (the decline stays within tolerance), plateaus on the way."""
    return write_job(folder, name, {**DIGITS, "model": {"trainer": f"{HERE}:PeakTrainer", "learning_rate": 0.01,
                                                        **model}},
                     babysit={"epochs": epochs, "tolerance": 0.5, "patience": 3, "keep_checkpoints": 1})


def comparable(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A run's epochs and events (without timings, clock times and resume notes), in order."""
    epochs = parquet_table(run, "epochs").drop(columns=["seconds", "time"]).sort_values("epoch").reset_index(drop=True)
    events = parquet_table(run, "events").drop(columns="time")
    return epochs, events[events["event"] != "resume"].reset_index(drop=True)


def error_line(stderr: str) -> str:
    """The one error line a refused command printed (other lines, such as the note of which trainer a
    resume imports, may come before it), and no traceback."""
    errors = [line for line in stderr.splitlines() if line.startswith("caviar ") and ": error: " in line]
    assert len(errors) == 1 and "Traceback" not in stderr, stderr
    return errors[0]


def parts(run: Path, table: str) -> list[str]:
    return sorted(p.name for p in (run / f"{table}.parquet").iterdir() if not p.name.startswith("."))


def truncate(path: Path) -> None:
    """Damage a file in place (every hard link to it sees the damage)."""
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def interrupted_run(tmp_path: Path, job: Path, at: int) -> Path:
    """Start `job`, Ctrl-C it once epoch `at` is shown: it stops at an epoch boundary, persisted."""
    proc = caviar_start("babysit", job, "--out", tmp_path / "out")
    assert wait_for_epoch(proc, at)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    return tmp_path / "out" / job.stem


# --- defect 6: the best checkpoint damaged, its epoch gone from the ring --------------------------

def test_a_truncated_best_resumes_from_its_own_copy_and_ends_as_an_uninterrupted_run(tmp_path):
    job = peak_job(tmp_path, "peak", 14, sleep=0.05)
    reference = caviar_run("babysit", job, "--out", tmp_path / "ref", timeout=120)
    assert reference.returncode == 0, reference.stderr
    run = interrupted_run(tmp_path, job, 9)
    checkpoints = run / "checkpoints"
    assert not (checkpoints / "epoch-000003.npz").exists()        # the ring moved past the best
    truncate(checkpoints / "best.npz")

    done = caviar_run("babysit", "--out", tmp_path / "out", "--name", "peak", "--resume", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "corrupt checkpoint" in done.stderr and "best.npz" in done.stderr
    for got, want in zip(comparable(run), comparable(tmp_path / "ref" / "peak")):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
    final = parquet_table(run, "events").query("event == 'final'")
    assert len(final) == 1 and final["detail"].item().startswith("best epoch 3 restored")
    assert len(parts(run, "epochs")) == len(parts(run, "events")) == 1     # compacted
    again = caviar_run("babysit", "--out", tmp_path / "out", "--name", "peak", "--resume", timeout=120)
    assert again.returncode == 0, again.stderr                    # and every later resume too


def test_with_every_copy_of_the_best_lost_the_resume_says_so_before_training_and_still_finishes(tmp_path):
    job = peak_job(tmp_path, "lost", 14, sleep=0.05)
    run = interrupted_run(tmp_path, job, 9)
    stopped_at = int(load_checkpoint(run / "checkpoints" / "last.npz")[1]["epoch"])
    for path in (run / "checkpoints").glob("best*.npz"):
        truncate(path)

    proc = caviar_start("babysit", "--out", tmp_path / "out", "--name", "lost", "--resume",
                        stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    lines = out.splitlines()
    warned = next(i for i, line in enumerate(lines) if "best checkpoint" in line and "epoch 3" in line)
    first_epoch = next(i for i, line in enumerate(lines) if line.startswith("epoch"))
    assert warned < first_epoch                                   # known before the first epoch trains
    assert lines[-1].startswith("epoch 14 restored (the best checkpoint, of epoch 3, does not read)")
    events = parquet_table(run, "events")
    final = events.query("event == 'final'")["detail"].item()
    assert "epoch 3" in final and "does not read" in final and "epoch 14 restored" in final
    assert list(parquet_table(run, "epochs")["epoch"]) == list(range(1, 15))
    assert stopped_at < 14 and len(parts(run, "epochs")) == len(parts(run, "events")) == 1
    again = caviar_run("babysit", "--out", tmp_path / "out", "--name", "lost", "--resume", timeout=120)
    assert again.returncode == 0, again.stderr


# --- a linked nudges folder: never read through, never moved into ----------------------------------

NUDGE = '{"set": {"learning_rate": 0.5}, "rollback": false, "stop": true}'


def finished_peak(tmp_path: Path, name: str, epochs: int = 4) -> Path:
    done = caviar_run("babysit", peak_job(tmp_path, name, epochs), "--out", tmp_path / "out", timeout=120)
    assert done.returncode == 0, done.stderr
    return tmp_path / "out" / name


@pytest.mark.parametrize("link", ["nudges", "nudges/applied", "nudges/refused"])
def test_a_babysit_never_reads_nor_moves_nudges_through_a_linked_folder(tmp_path, link):
    run = finished_peak(tmp_path, "linked")
    outside = tmp_path / "outside"
    outside.mkdir()
    queue = outside if link == "nudges" else run / "nudges"
    queue.mkdir(exist_ok=True)
    (queue / "00000000000000000001-1-abcd.json").write_text(NUDGE)
    (run / link).symlink_to(outside, target_is_directory=True)
    before = snapshot(outside, folders=True)

    done = caviar_run("babysit", "--out", tmp_path / "out", "--name", "linked", "--resume",
                      "--set", "babysit.epochs=6", timeout=120)
    assert done.returncode == 0, done.stderr
    assert snapshot(outside, folders=True) == before               # neither read (and moved) nor written into
    assert (run / link).is_symlink()
    events = parquet_table(run, "events")
    assert not set(events["event"]) & {"nudge", "nudge_refused"}
    assert list(parquet_table(run, "epochs")["epoch"]) == list(range(1, 7))
    assert f"{run / link} is a symbolic link" in done.stderr


def test_a_nudge_file_that_is_a_link_is_refused_unread(tmp_path):
    run = finished_peak(tmp_path, "filelink")
    secret = tmp_path / "outside.json"
    secret.write_text(NUDGE)
    (run / "nudges").mkdir()
    (run / "nudges" / "00000000000000000001-1-abcd.json").symlink_to(secret)

    done = caviar_run("babysit", "--out", tmp_path / "out", "--name", "filelink", "--resume",
                      "--set", "babysit.epochs=6", timeout=120)
    assert done.returncode == 0, done.stderr
    events = parquet_table(run, "events")
    assert "nudge" not in set(events["event"])
    assert "symbolic link" in events.query("event == 'nudge_refused'")["detail"].item()
    assert secret.read_text() == NUDGE
    assert (run / "nudges" / "refused" / "00000000000000000001-1-abcd.json").is_symlink()  # the link, moved
    assert channel.pending(run) == []


@pytest.fixture
def live_panda(tmp_path):
    """A finished babysat run whose lock a live process holds, as a running babysit would."""
    run = finished_peak(tmp_path, "panda", 2)
    proc = hold_lock(run, open_folder=True)  # past its first epoch: its folder open
    yield run
    proc.kill()
    proc.wait()


@pytest.mark.parametrize("link", ["nudges", "nudges/applied", "nudges/refused"])
def test_nudge_refuses_to_send_into_a_linked_folder(tmp_path, live_panda, link):
    outside = tmp_path / "outside"
    outside.mkdir()
    if link != "nudges":
        (live_panda / "nudges").mkdir()
    (live_panda / link).symlink_to(outside, target_is_directory=True)
    assert holder(live_panda) is not None
    done = caviar_run("nudge", "--out", tmp_path / "out", "panda", "learning_rate=0.001", timeout=60)
    assert done.returncode == 2, done.stderr
    line = error_line(done.stderr)
    assert str(live_panda / link) in line and "symbolic link" in line
    assert list(outside.iterdir()) == [] and channel.pending(live_panda) == []


# --- linked checkpoints: refused before anything is read or written ---------------------------------

@pytest.mark.parametrize("what", ["folder", "last", "best", "epoch"])
def test_a_resume_refuses_checkpoints_linked_out_of_the_run(tmp_path, what):
    run = finished_peak(tmp_path, "ckpt")
    checkpoints, outside = run / "checkpoints", tmp_path / "outside"
    if what == "folder":
        shutil.move(checkpoints, outside)
        checkpoints.symlink_to(outside, target_is_directory=True)
        link = checkpoints
    else:
        outside.mkdir()
        link = {"last": checkpoints / "last.npz", "best": checkpoints / "best.npz",
                "epoch": max(checkpoints.glob("epoch-*.npz"))}[what]
        shutil.copy(link, outside / "foreign.npz")
        link.unlink()
        link.symlink_to(outside / "foreign.npz")
    before_run, before_outside = snapshot(run, mtimes=True), snapshot(outside, mtimes=True)

    done = caviar_run("babysit", "--out", tmp_path / "out", "--name", "ckpt", "--resume",
                      "--set", "babysit.epochs=6", timeout=120)
    assert done.returncode == 2, done.stdout
    line = error_line(done.stderr)
    assert str(link) in line and "symbolic link" in line
    assert snapshot(run, mtimes=True) == before_run and snapshot(outside, mtimes=True) == before_outside


def test_a_fresh_run_never_writes_checkpoints_through_a_link(tmp_path):
    run, outside = tmp_path / "out" / "fresh", tmp_path / "outside"
    run.mkdir(parents=True)
    outside.mkdir()
    (run / "checkpoints").symlink_to(outside, target_is_directory=True)   # a folder with no results yet
    done = caviar_run("babysit", peak_job(tmp_path, "fresh", 3), "--out", tmp_path / "out", timeout=120)
    assert done.returncode == 2, done.stdout
    assert str(run / "checkpoints") in error_line(done.stderr)
    assert list(outside.iterdir()) == []


# --- a trainer that reports something other than a dict ----------------------------------------------

@pytest.mark.parametrize("bad", ["none", "list"])
@pytest.mark.parametrize("bad_at", [1, 3, 5])
def test_a_bad_report_is_one_line_exit_2_with_every_epoch_before_it_on_disk(tmp_path, bad, bad_at):
    job = write_job(tmp_path, "bad", {**DIGITS, "model": {"trainer": f"{HERE}:BadReportTrainer", "learning_rate": 0.01,
                                                          "bad": bad, "bad_at": bad_at}}, babysit={"epochs": 8})
    run = tmp_path / "out" / "bad"
    for argv in (["babysit", job, "--out", tmp_path / "out"],
                 ["babysit", "--out", tmp_path / "out", "--name", "bad", "--resume"]):
        done = caviar_run(*argv, timeout=120)
        assert done.returncode == 2, done.stdout
        line = error_line(done.stderr)
        assert "train_epoch() must return a dict of metrics" in line
        assert ("NoneType" if bad == "none" else "list") in line
        if bad_at == 1:
            assert not run.exists()                                  # refused before the folder opened
            return
        assert list(parquet_table(run, "epochs")["epoch"]) == list(range(1, bad_at))


# --- a corrupt only checkpoint is named ------------------------------------------------------------------

def test_a_corrupt_only_checkpoint_is_named_in_the_refusal(tmp_path):
    job = write_job(tmp_path, "early", {**DIGITS, "model": {"trainer": f"{HERE}:SlowSecondTrainer",
                                                            "learning_rate": 0.01, "sleep": 30}}, babysit={"epochs": 4})
    proc = caviar_start("babysit", job, "--out", tmp_path / "out")
    assert wait_for_epoch(proc, 1)
    time.sleep(0.5)                                                  # inside the long second epoch
    proc.kill()
    proc.wait(timeout=60)
    run = tmp_path / "out" / "early"
    assert len(list((run / "checkpoints").glob("epoch-*.npz"))) == 1   # the initial state only
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.write_bytes(checkpoint.read_bytes()[:20])
    done = caviar_run("babysit", "--out", tmp_path / "out", "--name", "early", "--resume", timeout=120)
    assert done.returncode == 2
    line = error_line(done.stderr)
    assert "0 epochs" not in line and "1 event" in line
    assert "checkpoints/epoch-000000.npz" in line and "--overwrite" in line


# --- a full disk ------------------------------------------------------------------------------------------

def heavy_job(folder: Path) -> Path:
    return write_job(folder, "heavy", {**DIGITS, "model": {"trainer": f"{HERE}:HeavyTrainer", "learning_rate": 0.01,
                                                          "sleep": 0.1}}, babysit={"epochs": 20, "tolerance": 0.02})


@pytest.fixture
def small_disk(tmp_path):
    """A real 2 MiB tmpfs, unmounted at the end."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2048k", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.fail(f"this test needs a real small file system: `mount -t tmpfs` failed ({done.stderr.strip()}); "
                    "run it as root (or with CAP_SYS_ADMIN)")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def assert_every_file_reads(run: Path) -> None:
    """Nothing half written: no temp file left, every checkpoint and part file reads whole."""
    import pyarrow.parquet as pq

    assert [p for p in run.rglob(".*") if p.name.endswith(".tmp")] == []
    for path in (run / "checkpoints").glob("*.npz") if (run / "checkpoints").is_dir() else ():
        load_checkpoint(path)
    for table in ("epochs", "events"):
        for part in (run / f"{table}.parquet").glob("part-*.parquet") if (run / f"{table}.parquet").is_dir() else ():
            pq.read_table(part)


@pytest.mark.parametrize("free_kib", [100, 200, 300])
def test_a_full_disk_keeps_what_is_saved_and_a_resume_after_freeing_space_ends_as_uninterrupted(
        tmp_path, small_disk, free_kib):
    # The run needs about 500 KiB at its peak: it fails at its first checkpoint, or partway, or at its end.
    job = heavy_job(tmp_path)
    reference = caviar_run("babysit", job, "--out", tmp_path / "ref", timeout=300)
    assert reference.returncode == 0, reference.stderr
    filler = small_disk / "filler"
    with open(filler, "wb") as f:                                    # leave `free_kib` free
        f.write(b"\0" * (shutil.disk_usage(small_disk).free - free_kib * 1024))

    done = caviar_run("babysit", job, "--out", small_disk, timeout=300)
    assert done.returncode != 0 and "No space left on device" in done.stderr, done.stdout
    assert "Traceback" not in done.stderr
    run = small_disk / "heavy"
    assert_every_file_reads(run)

    filler.unlink()
    resumed = caviar_run("babysit", "--out", small_disk, "--name", "heavy", "--resume", timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    for got, want in zip(comparable(run), comparable(tmp_path / "ref" / "heavy")):
        pd.testing.assert_frame_equal(got, want, check_exact=True)
