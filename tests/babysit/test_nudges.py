"""Nudges: the control channel (files of plain data), the lock, and `caviar nudge` against real processes."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path

import pandas as pd
import pytest

from caviar.babysit import nudges as nudge
from caviar.config.job import parse_job
from caviar.store.lock import holder
from tests.support import DIGITS, caviar_run, caviar_start, hold_lock, write_job
from tests.toys import SteadyTrainer


def run_folder(tmp_path: Path, name: str = "panda") -> Path:
    """A run folder as `caviar babysit` leaves it: the job as run in job.toml."""
    folder = tmp_path / name
    folder.mkdir(parents=True)
    job = parse_job({"name": name, "model": {"hidden_layers": [32], "learning_rate": 0.01}})
    (folder / "job.toml").write_text(job.to_toml())
    return folder




@pytest.fixture
def live_run(tmp_path):
    folder = run_folder(tmp_path)
    proc = hold_lock(folder, open_folder=True)
    yield folder
    proc.kill()
    proc.wait()


# --- values --------------------------------------------------------------------------------------


def test_values_are_read_as_toml_values():
    changes = nudge.parse_changes(["learning_rate=5e-4", "batch_size=32", "l2 = 0", "name=plain text"])
    assert changes == {"learning_rate": 0.0005, "batch_size": 32, "l2": 0, "name": "plain text"}
    assert isinstance(changes["batch_size"], int)


@pytest.mark.parametrize("text", ["learning_rate", "=3", "learning_rate=nan", "when=1979-05-27"])
def test_malformed_or_non_data_values_are_refused(text):
    with pytest.raises(ValueError):
        nudge.parse_changes([text])


def test_only_mutable_keys_with_valid_values_pass_for_the_builtin_trainer():
    model = {"trainer": "mlp", "hidden_layers": [32], "learning_rate": 0.01}
    nudge.validate_changes({"learning_rate": 0.001, "l2": 1e-4, "batch_size": 128}, model)
    with pytest.raises(ValueError, match="hidden_layers: cannot be changed"):
        nudge.validate_changes({"hidden_layers": [64]}, model)
    with pytest.raises(ValueError, match="learning_rate"):
        nudge.validate_changes({"learning_rate": -1.0}, model)
    with pytest.raises(ValueError, match="lerning_rate"):
        nudge.validate_changes({"lerning_rate": 0.1}, model)
    nudge.validate_changes({"anything": 1}, {"trainer": "my.pkg:Trainer"})  # checked by the trainer itself


# --- the channel ---------------------------------------------------------------------------------


def test_nudges_arrive_whole_in_the_order_they_were_sent(tmp_path):
    sent = [nudge.send(tmp_path, nudge.Nudge({"learning_rate": 0.1 / (i + 1)})) for i in range(5)]
    sent.append(nudge.send(tmp_path, nudge.Nudge(rollback=True, stop=True)))
    (tmp_path / "nudges" / ".half-written.json.tmp").write_text("{")  # a sender killed mid-write
    assert nudge.pending(tmp_path) == sent
    got = [nudge.read(p) for p in nudge.pending(tmp_path)]
    assert [g.changes.get("learning_rate") for g in got[:5]] == [0.1 / (i + 1) for i in range(5)]
    assert got[-1].rollback and got[-1].stop and got[-1].describe() == "rollback stop"


def test_handled_nudges_move_out_of_the_queue(tmp_path):
    first, second = (nudge.send(tmp_path, nudge.Nudge({"l2": 0.0})) for _ in range(2))
    nudge.archive(first)
    nudge.archive(second, refused=True)
    nudge.archive(second)  # a second call (a resumed loop) is harmless
    assert nudge.pending(tmp_path) == []
    assert (tmp_path / "nudges" / "applied" / first.name).is_file()
    assert (tmp_path / "nudges" / "refused" / second.name).is_file()


@pytest.mark.parametrize("body", ["not json", '["a list"]', '{"set": {"x": {"__class__": "os.system"}}}',
                                  '{"set": {}, "stop": "yes"}', '{"set": "learning_rate=1"}'])
def test_anything_but_plain_data_in_a_nudge_file_is_refused(tmp_path, body):
    path = tmp_path / "nudges" / "0001.json"
    path.parent.mkdir()
    path.write_text(body)
    with pytest.raises(ValueError, match="0001.json|x:"):
        nudge.read(path)


@pytest.mark.parametrize("link", ["nudges", "nudges/applied", "nudges/refused"])
def test_a_linked_nudges_folder_blocks_the_channel(tmp_path, link):
    run, outside = tmp_path / "run", tmp_path / "outside"
    waiting = nudge.send(run, nudge.Nudge({"l2": 0.0}))
    outside.mkdir()
    if link == "nudges":
        waiting.rename(outside / waiting.name)
        (run / "nudges").rmdir()
    (run / link).symlink_to(outside, target_is_directory=True)
    assert nudge.blocked(run) == run / link
    assert nudge.pending(run) == []                                  # nothing is read through it
    with pytest.raises(ValueError, match=f"{run / link} is a symbolic link"):
        nudge.send(run, nudge.Nudge({"l2": 0.0}))
    before = sorted(p.name for p in outside.rglob("*"))
    assert not nudge.archive(run / "nudges" / waiting.name, refused=link.endswith("refused"))
    assert sorted(p.name for p in outside.rglob("*")) == before      # nothing moved into it


def test_a_nudge_file_that_is_a_link_is_listed_but_never_read(tmp_path):
    target = tmp_path / "elsewhere.json"
    target.write_text('{"set": {"l2": 0.5}}')
    (tmp_path / "nudges").mkdir()
    link = tmp_path / "nudges" / "0001.json"
    link.symlink_to(target)
    assert nudge.pending(tmp_path) == [link]
    with pytest.raises(ValueError, match="0001.json: a symbolic link, not read"):
        nudge.read(link)
    assert nudge.archive(link, refused=True)
    assert (tmp_path / "nudges" / "refused" / "0001.json").is_symlink() and target.read_text() == '{"set": {"l2": 0.5}}'


# --- the command ----------------------------------------------------------------------------------


def test_nudging_a_run_nobody_is_babysitting_is_exit_2(tmp_path):
    run_folder(tmp_path)
    done = caviar_run("nudge", "--out", tmp_path, "panda", "learning_rate=0.001", timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "not being babysat" in done.stderr
    assert nudge.pending(tmp_path / "panda") == []
    missing = caviar_run("nudge", "--out", tmp_path, "nobody", "learning_rate=0.001", timeout=60)
    assert missing.returncode == 2 and "no run 'nobody'" in missing.stderr


@pytest.mark.parametrize("argv, message", [
    (["hidden_layers=[64]"], "hidden_layers: cannot be changed"),
    (["learning_rate=-0.1"], "learning_rate"),
    (["learning_rate=fast"], "learning_rate"),
    (["lerning_rate=0.1"], "lerning_rate"),
    ([], "nothing to send"),
])
def test_a_bad_nudge_is_one_line_exit_2_and_never_sent(tmp_path, live_run, argv, message):
    done = caviar_run("nudge", "--out", tmp_path, "panda", *argv, timeout=60)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and message in done.stderr
    assert done.stdout == "" and nudge.pending(live_run) == []


def test_a_good_nudge_is_queued_as_data(tmp_path, live_run):
    done = caviar_run("nudge", "--out", tmp_path, "panda", "learning_rate=5e-4", "l2=1e-4", "--rollback", timeout=60)
    assert done.returncode == 0, done.stderr
    (path,) = nudge.pending(live_run)
    body = json.loads(path.read_text())
    assert body["set"] == {"learning_rate": 0.0005, "l2": 0.0001} and body["rollback"] and not body["stop"]


# --- a live babysit ---------------------------------------------------------------------------------


def read_until(proc: subprocess.Popen, text: str) -> str:
    """Read the live display of a babysit until a line containing `text` (which it returns)."""
    for line in proc.stdout:
        if text in line:
            return line
    raise AssertionError(f"the babysit ended without printing {text!r}: {proc.communicate()}")


def test_a_nudge_changes_the_learning_rate_of_a_running_babysit(tmp_path):
    # A run that would go on for a long time, and never cuts the rate itself: only nudges change it.
    job = write_job(tmp_path, "live", DIGITS, model="learning_rate = 0.01",
                    babysit="epochs = 100000\npatience = 100000\ntolerance = 1.0\ndivergence_ratio = 1e6")
    proc = caviar_start("babysit", job, "--out", tmp_path)
    run = tmp_path / "live"
    try:
        read_until(proc, "epoch   3")
        assert holder(run).pid == proc.pid

        refused = caviar_run("nudge", "--out", tmp_path, "live", "hidden_layers=[64]", timeout=60)
        assert refused.returncode == 2 and refused.stderr.strip().count("\n") == 0

        sent = caviar_run("nudge", "--out", tmp_path, "live", "learning_rate=0.0005", timeout=60)
        assert sent.returncode == 0, sent.stderr
        line = read_until(proc, "nudge: learning_rate=0.0005")  # shown on the line of the epoch it follows
        nudged_after = int(line.split()[1])
        read_until(proc, f"epoch {nudged_after + 2:>3}")
        stop = caviar_run("nudge", "--out", tmp_path, "live", "--stop", timeout=60)
        assert stop.returncode == 0, stop.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert out.strip().splitlines()[-1].startswith("best epoch")

    epochs = pd.read_parquet(run / "epochs.parquet")
    assert list(epochs["epoch"]) == list(range(1, len(epochs) + 1))
    assert (epochs.loc[epochs["epoch"] <= nudged_after, "learning_rate"] == 0.01).all()
    assert (epochs.loc[epochs["epoch"] > nudged_after, "learning_rate"] == 0.0005).all()
    events = pd.read_parquet(run / "events.parquet")
    nudges = events[events["event"] == "nudge"]
    assert list(nudges["detail"]) == ["learning_rate=0.0005", "stop"]
    assert nudges["base_learning_rate"].iloc[0] == 0.0005 and nudges["epoch"].iloc[0] == nudged_after
    assert "nudge_refused" not in set(events["event"])  # the refused one never reached the run
    assert events[events["event"] == "stop"]["detail"].item() == "stopped by a nudge"
    assert nudge.pending(run) == [] and len(list((run / "nudges" / "applied").iterdir())) == 2
    assert holder(run) is None  # the lock went with the run
    done = caviar_run("nudge", "--out", tmp_path, "live", "learning_rate=0.1", timeout=60)
    assert done.returncode == 2 and "not being babysat" in done.stderr


class SlowStartTrainer(SteadyTrainer):
    """SteadyTrainer whose first epoch takes config["first_sleep"] seconds (the rest: "sleep")."""

    def train_epoch(self):
        if self.epoch == 0:
            time.sleep(float(self.config.get("first_sleep", 0.0)))
        return super().train_epoch()


def test_a_nudge_to_a_babysit_still_training_its_first_epoch_is_refused_not_lost(tmp_path):
    # --overwrite replaces the old folder only once the first epoch has trained: a nudge sent before
    # that would go into the folder about to be replaced. It is refused; once the epoch shows, it is taken.
    job = write_job(tmp_path, "slow", DIGITS, model={"trainer": "tests.babysit.test_nudges:SlowStartTrainer",
                                                     "learning_rate": 0.01, "first_sleep": 3.0, "sleep": 0.3},
                    babysit={"epochs": 6})
    old = caviar_run("babysit", job, "--out", tmp_path, "--set", "model.first_sleep=0", "--set", "babysit.epochs=1",
                     timeout=60)
    assert old.returncode == 0, old.stderr
    proc = caviar_start("babysit", job, "--out", tmp_path, "--overwrite")
    try:
        read_until(proc, "babysitting slow")  # the lock is held, the first epoch training
        early = caviar_run("nudge", "--out", tmp_path, "slow", "learning_rate=0.005", timeout=60)
        assert early.returncode == 2, early.stderr
        assert early.stderr.strip() == ("caviar nudge: error: run: 'slow' is starting (training its first epoch); "
                                        "nudge it once its first epoch is shown")
        read_until(proc, "epoch   1")
        sent = caviar_run("nudge", "--out", tmp_path, "slow", "learning_rate=0.002", timeout=60)
        assert sent.returncode == 0, sent.stderr
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    nudges = pd.read_parquet(tmp_path / "slow" / "events.parquet").query("event == 'nudge'")
    assert list(nudges["detail"]) == ["learning_rate=0.002"]
