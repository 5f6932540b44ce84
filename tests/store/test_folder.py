"""Opening and repairing a run folder (caviar.store.folder) promises:

- `open_run` creates `OUT/NAME` whole (job.toml inside), refuses a folder that holds results and
  touches nothing then, resumes one (keeping its job.toml, writing one only when it is missing) or
  overwrites it; a path that is a file is never taken for a run; leftovers of an earlier interrupted
  create or overwrite of the same name are cleared, other runs' are not;
- `repair` (run on resume) removes the temp files a dead writer left, in the run folder, its tables
  and its checkpoints, and spares those of a writer still running; it deletes the parts a
  compaction already merged, turns a single-file table into a folder of parts (finishing a
  conversion a crash cut short), and leaves every other file alone.

tests/store/test_writer.py covers the basic create / refuse / reuse / overwrite / resume cases; this
file covers what it does not.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caviar.store.folder import open_run, repair
from caviar.store.reader import load
from tests.support import snapshot

JOB = 'name = "sweep"\n[search]\ntrials = 8\n'


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def write_part(path: Path, **columns: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def dead_pid() -> int:
    """The pid of a process that has exited (a writer killed mid-write)."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    return int(proc.stdout)


@pytest.fixture
def live_pid():
    """The pid of a real process still running (a writer at work)."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def sweep(tmp_path) -> Path:
    """A sweep's run folder with three trials flushed as three parts and an epochs part."""
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    for i in range(3):
        trials.append([{"trial_id": i, "status": "completed", "score": i / 10}])
        trials.flush()
    run.table("epochs").append([{"trial_id": 0, "epoch": 1, "val_loss": 0.5}])
    run.flush()
    return run.path


# ----------------------------------------------------------------------------- open_run: new, refuse

def test_a_new_run_creates_missing_parent_folders_and_leaves_no_staging_beside_it(tmp_path):
    out = tmp_path / "deep" / "results"
    run = open_run(out, "digits", JOB)
    assert names(out) == ["digits"]                  # no .digits.new-* left in --out
    assert (run.path / "job.toml").read_text() == JOB and not run.resumed


def test_a_new_run_leaves_other_runs_untouched(tmp_path, sweep):
    before = snapshot(tmp_path, mtimes=True)
    open_run(tmp_path, "other", 'name = "other"\n')
    after = snapshot(tmp_path, mtimes=True)
    assert {k: v for k, v in after.items() if not k.startswith("other")} == before


@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_a_file_where_the_run_folder_would_be_is_never_taken_or_replaced(tmp_path, flags):
    (tmp_path / "sweep").write_text("my notes")
    with pytest.raises(FileExistsError, match="exists and is not a run folder"):
        open_run(tmp_path, "sweep", JOB, **flags)
    assert names(tmp_path) == ["sweep"] and (tmp_path / "sweep").read_text() == "my notes"


def test_a_run_holding_only_a_checkpoint_is_refused(tmp_path):
    run = open_run(tmp_path, "panda", 'name = "panda"\n')
    run.checkpoints_dir.mkdir()
    (run.checkpoints_dir / "epoch-0001.npz").write_bytes(b"a checkpoint")
    before = snapshot(tmp_path, mtimes=True)
    with pytest.raises(FileExistsError, match=f"{run.path} already holds results"):
        open_run(tmp_path, "panda", 'name = "again"\n')
    assert snapshot(tmp_path, mtimes=True) == before


def test_a_run_holding_only_temp_files_is_reused(tmp_path):
    run = open_run(tmp_path, "panda", 'name = "panda"\n')   # killed while writing its first part
    (run.path / "epochs.parquet").mkdir()
    (run.path / "epochs.parquet" / f".part-000000.parquet.{dead_pid()}-abcdef.tmp").write_bytes(b"half")
    again = open_run(tmp_path, "panda", 'name = "again"\n')
    assert (again.path / "job.toml").read_text() == 'name = "again"\n'


def test_a_single_file_table_from_another_tool_is_refused_then_overwritten(tmp_path):
    run = tmp_path / "imported"
    run.mkdir()
    pd.DataFrame({"trial_id": [0, 1], "score": [0.1, 0.2]}).to_parquet(run / "trials.parquet")
    with pytest.raises(FileExistsError, match="--overwrite"):
        open_run(tmp_path, "imported", JOB)
    assert (run / "trials.parquet").is_file()
    replaced = open_run(tmp_path, "imported", JOB, overwrite=True)
    assert names(replaced.path) == ["job.toml"] and names(tmp_path) == ["imported"]


def test_overwrite_of_a_run_that_does_not_exist_creates_it(tmp_path):
    run = open_run(tmp_path / "results", "fresh", JOB, overwrite=True)
    assert names(run.path) == ["job.toml"] and not run.resumed


def test_leftovers_of_an_interrupted_create_or_overwrite_of_the_name_are_cleared(tmp_path):
    for leftover in (".sweep.new-0a1b2c3d", ".sweep.old-deadbeef", ".other.old-12345678"):
        (tmp_path / leftover / "trials.parquet").mkdir(parents=True)
        (tmp_path / leftover / "job.toml").write_text(JOB)
    (tmp_path / ".sweep.lock").write_text("{}")      # the run's lock: not a leftover
    open_run(tmp_path, "sweep", JOB)
    assert names(tmp_path) == [".other.old-12345678", ".sweep.lock", "sweep"]


# ----------------------------------------------------------------------------- open_run: resume

def test_resume_writes_the_job_file_only_when_it_is_missing(tmp_path, sweep):
    (sweep / "job.toml").unlink()                    # e.g. deleted by hand
    resumed = open_run(tmp_path, "sweep", 'name = "given on resume"\n', resume=True)
    assert resumed.resumed and (sweep / "job.toml").read_text() == 'name = "given on resume"\n'
    assert resumed.finished_trial_ids() == {0, 1, 2}
    open_run(tmp_path, "sweep", 'name = "third"\n', resume=True)
    assert (sweep / "job.toml").read_text() == 'name = "given on resume"\n'


def test_resume_of_a_run_with_no_results_yet_goes_on_from_nothing(tmp_path):
    open_run(tmp_path, "sweep", JOB)
    resumed = open_run(tmp_path, "sweep", "", resume=True)
    assert resumed.resumed and resumed.finished_trial_ids() == set()
    assert names(resumed.path) == ["job.toml"]


def test_resume_deletes_parts_a_compaction_already_merged_in_every_table(tmp_path):
    run = open_run(tmp_path, "panda", 'name = "panda"\n')
    epochs, events = run.path / "epochs.parquet", run.path / "events.parquet"
    for seq in range(5):
        write_part(epochs / f"part-{seq:06d}.parquet", epoch=[seq + 1], val_loss=[1 / (seq + 1)])
    write_part(epochs / "part-000000-000002.parquet", epoch=[1, 2, 3], val_loss=[1, 1 / 2, 1 / 3])
    for seq in (0, 1):
        write_part(events / f"part-{seq:06d}.parquet", epoch=[seq + 1], event=["improved"])
    write_part(events / "part-000000-000001.parquet", epoch=[1, 2], event=["improved", "improved"])
    resumed = open_run(tmp_path, "panda", "", resume=True)
    assert names(epochs) == ["part-000000-000002.parquet", "part-000003.parquet", "part-000004.parquet"]
    assert names(events) == ["part-000000-000001.parquet"]
    assert load(resumed.path).epochs.epoch.tolist() == [1, 2, 3, 4, 5]
    writer = resumed.table("epochs")
    writer.append([{"epoch": 6, "val_loss": 1 / 6}])
    assert writer.flush().name == "part-000005.parquet"   # numbering goes on after the last part


def test_compact_after_resume_merges_a_table_this_session_never_wrote(tmp_path, sweep):
    resumed = open_run(tmp_path, "sweep", JOB, resume=True)
    resumed.compact()
    assert names(sweep / "trials.parquet") == ["part-000000-000002.parquet"]
    assert names(sweep / "epochs.parquet") == ["part-000000.parquet"]
    assert not (sweep / "events.parquet").exists()   # a table that never existed is not created
    assert load(sweep).trials.trial_id.tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------- repair: temp files

def test_repair_removes_a_dead_writers_temp_files_everywhere_in_the_run(sweep):
    pid = dead_pid()
    (sweep / "checkpoints").mkdir()
    leftovers = [sweep / f".job.toml.{pid}-0a0b0c.tmp",
                 sweep / "trials.parquet" / f".part-000003.parquet.{pid}-ffffff.tmp",
                 sweep / "epochs.parquet" / f".part-000001-000004.parquet.{pid}-123abc.tmp",
                 sweep / "checkpoints" / f".epoch-0003.npz.{pid}-abcdef.tmp",
                 sweep / "checkpoints" / f".best.npz.{pid}.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a file")
    repair(sweep)
    assert not any(p.exists() for p in leftovers)
    assert load(sweep).trials.trial_id.tolist() == [0, 1, 2]


def test_repair_spares_the_temp_files_of_a_writer_still_running(sweep, live_pid):
    (sweep / "checkpoints").mkdir()
    at_work = [sweep / f".report.html.{live_pid}-0a0b0c.tmp",
               sweep / "trials.parquet" / f".part-000003.parquet.{live_pid}-ffffff.tmp",
               sweep / "checkpoints" / f".epoch-0007.npz.{live_pid}-abcdef.tmp"]
    for path in at_work:
        path.write_bytes(b"being written")
    repair(sweep)
    assert all(p.read_bytes() == b"being written" for p in at_work)


def test_a_temp_file_named_with_the_repairing_process_pid_is_a_leftover(sweep):
    # The repairing driver is not writing it: an earlier process had this pid (pids repeat, e.g.
    # in a container where the driver always starts as the same pid), so it is removed.
    mine = sweep / "trials.parquet" / f".part-000003.parquet.{os.getpid()}-0a0b0c.tmp"
    mine.write_bytes(b"half")
    repair(sweep)
    assert not mine.exists()


def test_a_temp_file_without_a_pid_is_a_leftover(sweep):
    nameless = sweep / "trials.parquet" / ".part-000003.parquet.tmp"
    nameless.write_bytes(b"half")
    repair(sweep)
    assert not nameless.exists()


def test_repair_leaves_every_file_that_is_not_a_temp_file_alone(tmp_path, sweep):
    (sweep / "checkpoints").mkdir()
    (sweep / "checkpoints" / "epoch-0001.npz").write_bytes(b"a checkpoint")
    (sweep / "notes.tmp").write_text("visible: the user's")
    (sweep / ".notes").write_text("hidden, but not a temp file")
    (sweep / ".cache.tmp").mkdir()                    # a folder, not a temp file
    (sweep / "report").mkdir()
    (sweep / "report" / f".plot.png.{dead_pid()}-abcdef.tmp").write_bytes(b"not in a folder repair owns")
    before = snapshot(tmp_path, mtimes=True)
    repair(sweep)
    repair(sweep)                                      # and twice is the same as once
    assert snapshot(tmp_path, mtimes=True) == before
    assert (sweep / ".cache.tmp").is_dir()


# ----------------------------------------------------------------------------- repair: single-file tables

@pytest.mark.parametrize("table", ["trials", "epochs", "events"])
def test_a_single_file_table_becomes_the_first_part_of_a_folder(tmp_path, table):
    run = tmp_path / "run"
    run.mkdir()
    frame = pd.DataFrame({"trial_id": [0, 1, 2], "epoch": [1, 2, 3], "score": [0.1, 0.2, 0.3]})
    frame.to_parquet(run / f"{table}.parquet")
    original = (run / f"{table}.parquet").read_bytes()
    repair(run)
    folder = run / f"{table}.parquet"
    assert folder.is_dir() and names(folder) == ["part-000000.parquet"]
    assert (folder / "part-000000.parquet").read_bytes() == original   # moved, not rewritten
    assert names(run) == [f"{table}.parquet"]        # no staging folder left
    pd.testing.assert_frame_equal(pd.read_parquet(folder), frame)


def test_a_conversion_cut_short_after_the_move_is_finished(tmp_path):
    run = tmp_path / "run"
    staging = run / ".trials.parquet.convert"
    write_part(staging / "part-000000.parquet", trial_id=[0, 1], score=[0.5, 0.6])
    repair(run)
    assert names(run) == ["trials.parquet"] and names(run / "trials.parquet") == ["part-000000.parquet"]
    assert pd.read_parquet(run / "trials.parquet").trial_id.tolist() == [0, 1]


def test_a_conversion_cut_short_before_the_move_is_finished(tmp_path):
    run = tmp_path / "run"
    (run / ".epochs.parquet.convert").mkdir(parents=True)   # made, then the kill
    write_part(run / "epochs.parquet", epoch=[1, 2], val_loss=[0.5, 0.4])
    repair(run)
    assert names(run) == ["epochs.parquet"] and names(run / "epochs.parquet") == ["part-000000.parquet"]
    assert pd.read_parquet(run / "epochs.parquet").epoch.tolist() == [1, 2]


def test_a_converted_table_takes_new_rows_as_new_parts_on_resume(tmp_path):
    run = open_run(tmp_path, "panda", 'name = "panda"\n')
    pd.DataFrame({"epoch": [1, 2], "event": ["improved", "plateau"], "base_learning_rate": [0.1, 0.05],
                  "score": [0.5, 0.5], "detail": ["", "x0.5"]}).to_parquet(run.path / "events.parquet")
    resumed = open_run(tmp_path, "panda", "", resume=True)
    events = resumed.table("events")
    events.append([{"epoch": 3, "event": "rollback", "base_learning_rate": 0.05, "score": 0.4, "detail": ""}])
    assert events.flush().name == "part-000001.parquet"
    assert load(resumed.path).events.event.tolist() == ["improved", "plateau", "rollback"]


# ----------------------------------------------------------------------------- repair: parts that do not read

def test_a_corrupt_compacted_part_is_set_aside_and_the_parts_it_covered_are_read_again(tmp_path, capfd):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.path / "trials.parquet"
    for seq in range(3):
        write_part(trials / f"part-{seq:06d}.parquet", trial_id=[seq], status=["completed"])
    merged = trials / "part-000000-000002.parquet"      # a compaction cut short, then the disk damaged it
    merged.write_bytes(b"PAR1 damaged")
    repair(run.path)
    err = capfd.readouterr().err
    assert err.startswith(f"caviar: warning: {merged}: the part file does not read (") and err.count("\n") == 1
    assert names(trials) == [f"part-00000{seq}.parquet" for seq in range(3)]
    assert (run.path / ".quarantine" / "trials" / merged.name).read_bytes() == b"PAR1 damaged"
    assert load(run.path).trials.trial_id.tolist() == [0, 1, 2]


def test_a_part_set_aside_under_a_name_already_set_aside_keeps_both(tmp_path, capfd):
    run = open_run(tmp_path, "sweep", JOB)
    part = run.path / "epochs.parquet" / "part-000000.parquet"
    for damage in (b"PAR1 first", b"PAR1 second"):
        write_part(part, trial_id=[0], epoch=[1]).write_bytes(damage)
        repair(run.path)
    aside = run.path / ".quarantine" / "epochs"
    assert {p.name: p.read_bytes() for p in aside.iterdir()} == {"part-000000.parquet": b"PAR1 first",
                                                                 "part-000000.parquet.1": b"PAR1 second"}
    assert capfd.readouterr().err.count("caviar: warning: ") == 2 and names(run.path / "epochs.parquet") == []


# ----------------------------------------------------------------------------- repair: the machine's errors

@contextlib.contextmanager
def unreadable_by_the_machine(part: Path):
    """Make the regular file `part` fail to open with a real EACCES, even for root: a write-only
    sysfs attribute bind-mounted over it (no mock: the kernel refuses the read). Skips where this
    cannot be set up (not root, no mount, no such attribute)."""
    found = subprocess.run(["find", "/sys", "-maxdepth", "4", "-type", "f", "-perm", "-200", "!", "-perm", "/444"],
                           capture_output=True, text=True).stdout.split()
    if os.geteuid() != 0 or not found or subprocess.run(["mount", "--bind", found[0], str(part)],
                                                        capture_output=True).returncode != 0:
        pytest.skip("cannot make a file the kernel refuses to read here (needs root and a bind mount)")
    try:
        yield
    finally:
        subprocess.run(["umount", str(part)], check=True)


def tree(folder: Path) -> list[tuple[str, int]]:
    """Every path under `folder` with its inode, read without opening a file."""
    return sorted((str(Path(d, n).relative_to(folder)), os.lstat(Path(d, n)).st_ino)
                  for d, dirs, files in os.walk(folder) for n in dirs + files)


@pytest.mark.parametrize("kind", ["sweep", "babysit"])
def test_a_part_the_machine_cannot_read_raises_its_oserror_and_nothing_moves(tmp_path, sweep, capfd, kind):
    """EACCES, EIO...: not a damaged part. The resume stops with the OSError as it came (the CLI tells
    it in one line), and no part is set aside, no finished trial run again."""
    if kind == "babysit":
        (sweep / "checkpoints").mkdir()
        shutil.rmtree(sweep / "trials.parquet")
        shutil.rmtree(sweep / "epochs.parquet")
        write_part(sweep / "events.parquet" / "part-000000.parquet", epoch=[1], event=["improved"])
    part = sorted((sweep / ("trials.parquet" if kind == "sweep" else "events.parquet")).iterdir())[-1]
    (sweep / ".trials.parquet.compact-0badc0de").mkdir()      # a leftover a resume would otherwise clear
    with unreadable_by_the_machine(part):
        before = tree(sweep)
        with pytest.raises(PermissionError) as raised:
            open_run(sweep.parent, "sweep", JOB, resume=True)
        assert raised.value.errno == errno.EACCES and raised.value.filename == str(part)
        assert tree(sweep) == before and not (sweep / ".quarantine").exists()
    assert "warning" not in capfd.readouterr().err


def test_a_compaction_killed_with_its_table_aside_gets_it_back_or_the_old_one_deleted(tmp_path, sweep):
    table = sweep / "trials.parquet"
    aside = sweep / ".trials.parquet.aside-0badc0de"
    os.rename(table, aside)                     # killed between the two renames: no table
    (sweep / ".trials.parquet.compact-01").mkdir()
    write_part(sweep / ".trials.parquet.compact-01" / "part-000000-000002.parquet",
               trial_id=[0, 1, 2], status=["completed"] * 3, score=[0.0, 0.1, 0.2])
    with pytest.raises(FileExistsError, match="--resume"):
        open_run(tmp_path, "sweep", JOB)         # the run still holds results
    resumed = open_run(tmp_path, "sweep", JOB, resume=True)
    assert names(table) == [f"part-00000{i}.parquet" for i in range(3)] and not aside.exists()
    assert resumed.finished_trial_ids() == {0, 1, 2} and sorted(pd.read_parquet(table).trial_id) == [0, 1, 2]
    resumed.compact()
    shutil.copytree(table, aside)               # killed after the new table moved in: the old one aside
    repair(sweep)
    assert not aside.exists() and sorted(pd.read_parquet(table).trial_id) == [0, 1, 2]
    assert not [n for n in os.listdir(sweep) if n.startswith(".")]


def test_opening_a_run_clears_only_its_own_leftovers_not_those_of_a_run_whose_name_extends_it(tmp_path):
    """Found in review: the cleanup glob `.a.old-*` also matched the folders another run, named
    `a.old-x`, sets aside while it is being overwritten."""
    from caviar.store.folder import open_run

    own = tmp_path / ".a.old-1234abcd"
    theirs = [tmp_path / ".a.old-x.old-1234abcd", tmp_path / ".a.old-x.new-5678abcd"]
    for folder in (own, *theirs):
        folder.mkdir(parents=True)
    open_run(tmp_path, "a", 'name = "a"\n')
    assert not own.exists() and all(folder.is_dir() for folder in theirs)
