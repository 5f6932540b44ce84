"""Adversarial cases for the run folder (caviar.store, caviar.sweep.restore): what a received or
crashed results folder can hold, tried against the README's promises (issue 15).

- Links: nothing inside a run folder is followed out of it. A part file that is a symbolic link is
  skipped by every caviar reader and writer; a table that is a link is refused (by `caviar.load`, by
  a resume, by a writer), and the link's target is left byte-identical.
- Compaction killed at any moment: a foreign reader (pandas, pyarrow.dataset) reads every row
  exactly once, a resume repairs, `caviar.load` agrees, and appends go on; where two folders cannot
  be swapped too (the table renamed aside, the new one in: a reader may find no table, never a row twice).
- A part file that does not read: a sweep's resume sets it aside in `.quarantine/` with one warning
  line naming it, and reruns what it held; a babysat run's resume is refused at once, naming it.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from caviar.store.folder import open_run
from caviar.store.reader import load, load_all
from caviar.store.writer import TableWriter
from tests.support import STEADY, TOY_SWEEP, run_babysit, run_sweep, snapshot, write_job

JOB = 'name = "sweep"\n[search]\ntrials = 8\n'


def trial_row(i: int, epochs: int = 3) -> dict:
    return {"trial_id": i, "status": "completed", "params_lr": 10.0 ** -(i % 4), "score": i / 100,
            "epochs": epochs, "seconds": 0.5, "seed": i, "error": None, "round": 0, "val_accuracy": i / 100}


def epoch_rows(i: int, epochs=(1, 2, 3)) -> list[dict]:
    return [{"trial_id": i, "epoch": e, "learning_rate": 0.01, "seconds": 0.1, "val_accuracy": i / 100 + e / 1000}
            for e in epochs]


def sweep_folder(out: Path, n: int = 3, name: str = "sweep"):
    """A sweep's run folder as the driver writes it: each trial's epochs, then its row, one flush each."""
    run = open_run(out, name, JOB.replace("sweep", name))
    for i in range(n):
        run.table("epochs").append(epoch_rows(i))
        run.table("trials").append([trial_row(i)])
        run.flush()
    return run


def foreign_file(path: Path, ids: list[int]) -> Path:
    """Someone else's trials rows, outside the run folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame([trial_row(i) for i in ids]).to_parquet(path)
    return path


def ids(frame: pd.DataFrame) -> list[int]:
    return sorted(int(i) for i in frame["trial_id"])


def truncate(path: Path) -> Path:
    """Damage a part on disk as a bad disk or a bad copy would: cut it in half."""
    os.truncate(path, path.stat().st_size // 2)
    return path


# ----------------------------------------------------------------------------- symbolic links

def test_a_linked_part_file_is_never_read_nor_merged_into_the_table(tmp_path):
    run = sweep_folder(tmp_path / "out")
    theirs = foreign_file(tmp_path / "elsewhere" / "theirs.parquet", [100, 101])
    before = snapshot(tmp_path / "elsewhere")
    (run.path / "trials.parquet" / "part-000009.parquet").symlink_to(theirs)
    (run.path / "trials.parquet" / "extra.parquet").symlink_to(theirs)
    with pytest.warns(RuntimeWarning, match="part-000009.parquet.*link"):
        assert ids(load(run.path).trials) == [0, 1, 2]
    run.compact()
    merged = [p for p in (run.path / "trials.parquet").iterdir() if not p.is_symlink()]
    assert [p.name for p in merged] == ["part-000000-000002.parquet"]
    assert pq.read_table(merged[0]).column("trial_id").to_pylist() == [0, 1, 2]
    assert snapshot(tmp_path / "elsewhere") == before


@pytest.mark.parametrize("target", ["folder", "file"])
def test_a_table_that_is_a_link_is_refused_and_its_target_never_touched(tmp_path, target):
    elsewhere = tmp_path / "elsewhere" / "trials.parquet"
    theirs = foreign_file(elsewhere / "part-000000.parquet", [100, 101])
    run = sweep_folder(tmp_path / "out", n=0)
    (run.path / "trials.parquet").symlink_to(elsewhere if target == "folder" else theirs)
    before = snapshot(tmp_path / "elsewhere", folders=True, mtimes=True)
    for attempt in (lambda: load(run.path), lambda: open_run(tmp_path / "out", "sweep", JOB, resume=True),
                    lambda: run.table("trials").append([trial_row(0)]) or run.flush(), run.compact):
        with pytest.raises(ValueError, match="trials.parquet.*link") as refused:
            attempt()
        assert "\n" not in str(refused.value) and str(run.path / "trials.parquet") in str(refused.value)
    with pytest.raises(FileExistsError, match="--overwrite"):   # a new run is not written beside it either
        open_run(tmp_path / "out", "sweep", JOB)
    fresh = open_run(tmp_path / "out", "sweep", JOB, overwrite=True)
    assert sorted(p.name for p in fresh.path.iterdir()) == ["job.toml"]
    assert snapshot(tmp_path / "elsewhere", folders=True, mtimes=True) == before


def test_a_resume_refuses_a_linked_part_and_changes_nothing(tmp_path):
    run = sweep_folder(tmp_path / "out")
    theirs = foreign_file(tmp_path / "elsewhere" / "theirs.parquet", [100])
    link = run.path / "epochs.parquet" / "part-000007.parquet"
    link.symlink_to(theirs)
    before = snapshot(run.path, folders=True)
    with pytest.raises(ValueError, match=f"^--resume: {link}.*link") as refused:
        open_run(tmp_path / "out", "sweep", JOB, resume=True)
    assert "\n" not in str(refused.value)
    assert snapshot(run.path, folders=True) == before and link.is_symlink()


def test_load_all_skips_a_run_whose_table_is_a_link_with_a_warning(tmp_path):
    sweep_folder(tmp_path / "out", name="mine")
    other = sweep_folder(tmp_path / "out", n=0, name="received")
    (other.path / "trials.parquet").symlink_to(foreign_file(tmp_path / "elsewhere" / "t" / "p.parquet", [7]).parent)
    with pytest.warns(RuntimeWarning, match="received.*trials.parquet.*link"):
        everything = load_all(tmp_path / "out")
    assert everything["experiment"].tolist() == ["mine"] * 3


def test_repair_never_reaches_through_a_linked_checkpoints_folder(tmp_path):
    run = sweep_folder(tmp_path / "out", n=1)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / ".best.npz.tmp").write_bytes(b"someone else's file")   # named like a dead writer's temp
    (run.path / "checkpoints").symlink_to(elsewhere)
    open_run(tmp_path / "out", "sweep", JOB, resume=True)
    assert (elsewhere / ".best.npz.tmp").read_bytes() == b"someone else's file"


# ----------------------------------------------------------------------------- compaction killed

COMPACTOR = textwrap.dedent("""
    import sys
    from caviar.store.writer import TableWriter
    writer = TableWriter(sys.argv[1], "trials")
    print("ready", flush=True)
    sys.stdin.readline()
    writer.compact()
""")


def start_compactor(run: Path) -> subprocess.Popen:
    """A real process that compacts `run`'s trials table once told to, imports done."""
    return subprocess.Popen([sys.executable, "-c", COMPACTOR, str(run)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)


def entries(folder: Path) -> list[str]:
    try:
        return os.listdir(folder)
    except FileNotFoundError:
        return []


def staging(run: Path) -> list[str]:
    return [n for n in entries(run) if n.startswith(".trials.parquet.")]


def merged_in(names: list[str]) -> bool:
    return any(n.startswith("part-") and n.count("-") == 2 for n in names)


TRIGGERS = {                                   # when to kill, from what the folder shows
    "delay": None,
    "staging made": lambda run: bool(staging(run)),
    "merged part written": lambda run: any(merged_in(entries(run / s)) for s in staging(run))
    or merged_in(entries(run / "trials.parquet")),
    "table merged": lambda run: merged_in(entries(run / "trials.parquet")),
}


def kill_compaction(proc: subprocess.Popen, run: Path, trigger: str, delay: float) -> str:
    """Let `proc` compact, SIGKILL it at the trigger; where the kill landed."""
    assert proc.stdout.readline() == "ready\n"
    proc.stdin.write("go\n")
    proc.stdin.flush()
    if TRIGGERS[trigger] is None:
        time.sleep(delay)
    else:
        deadline = time.monotonic() + 60
        while proc.poll() is None and not TRIGGERS[trigger](run) and time.monotonic() < deadline:
            pass
    proc.kill()
    proc.communicate()                          # reaped, its pipes closed
    merged, old = merged_in(entries(run / "trials.parquet")), "part-000000.parquet" in entries(run / "trials.parquet")
    return {(False, True): "building" if staging(run) else "before", (True, False): "swapped" if staging(run) else
            "done"}.get((merged, old), "merged beside the old parts")


def check_read_once_then_resume(out: Path, n: int) -> None:
    table = out / "sweep" / "trials.parquet"
    if table.exists():   # else the kill came between the fallback's two renames: the resume puts it back
        assert sorted(pd.read_parquet(table)["trial_id"]) == list(range(n)), "pandas reads a row twice or not at all"
        assert sorted(ds.dataset(table, format="parquet").to_table()["trial_id"].to_pylist()) == list(range(n))
    run = open_run(out, "sweep", JOB, resume=True)
    assert not [n for n in os.listdir(run.path) if n.startswith(".")], "a resume leaves no compaction behind"
    assert ids(load(run.path).trials) == list(range(n)) and run.finished_trial_ids() == set(range(n))
    run.table("trials").append([trial_row(n)])
    assert run.table("trials").flush() is not None
    assert sorted(pd.read_parquet(table)["trial_id"]) == ids(load(run.path).trials) == list(range(n + 1))


def test_a_compaction_killed_at_any_moment_is_read_once_by_every_reader(tmp_path):
    template = open_run(tmp_path / "template", "sweep", JOB)
    writer = TableWriter(template.path, "trials", fsync=False)
    for part in range(40):                     # many parts: a wide window to land in
        writer.append([trial_row(10 * part + k) for k in range(10)])
        writer.flush()
    outs = [Path(shutil.copytree(template.path, tmp_path / f"k{k}" / "sweep")).parent for k in range(31)]
    calibration = start_compactor(outs[30] / "sweep")
    assert calibration.stdout.readline() == "ready\n"
    started = time.monotonic()
    calibration.communicate("go\n")
    took = time.monotonic() - started           # a whole compaction, from "go" to its end
    rng, seen = random.Random(15), []
    proc = start_compactor(outs[0] / "sweep")
    try:
        for k in range(30):                    # the next compactor starts while this one is judged
            trigger = list(TRIGGERS)[k % len(TRIGGERS)]
            current, proc = proc, start_compactor(outs[k + 1] / "sweep") if k < 29 else None
            seen.append(kill_compaction(current, outs[k] / "sweep", trigger, rng.uniform(0, 1.5 * took)))
            check_read_once_then_resume(outs[k], 400)
    finally:
        if proc is not None:
            proc.kill()
            proc.communicate()
    assert {"building", "swapped"} <= set(seen), seen


def test_a_compaction_cut_short_before_or_after_its_swap_is_cleared_on_resume(tmp_path):
    for when in ("before", "after"):
        run = sweep_folder(tmp_path / when, n=4)
        table = run.path / "trials.parquet"
        aside = run.path / ".trials.parquet.compact-0badc0de"
        aside.mkdir()
        merged = pa.concat_tables([pq.read_table(p) for p in sorted(table.iterdir())])
        pq.write_table(merged, aside / "part-000000-000003.parquet")
        if when == "after":                    # the swap happened: the old parts are aside
            os.rename(table, run.path / "swap")
            os.rename(aside, table)
            os.rename(run.path / "swap", aside)
            (aside / "part-000001.parquet").unlink()   # ...and were being deleted
        assert ids(pd.read_parquet(table)) == [0, 1, 2, 3]
        resumed = open_run(tmp_path / when, "sweep", JOB, resume=True)
        assert not aside.exists() and ids(load(resumed.path).trials) == [0, 1, 2, 3]


def test_temp_files_in_a_table_folder_are_skipped_by_foreign_readers(tmp_path):
    run = sweep_folder(tmp_path, n=3)
    table = run.path / "trials.parquet"
    (table / ".part-000003.parquet.4242-abcdef.tmp").write_bytes(b"PAR1 half a part, the writer was killed")
    (table / "_part-000004.parquet").write_bytes(b"not parquet")
    assert ids(pd.read_parquet(table)) == [0, 1, 2]
    assert sorted(ds.dataset(table, format="parquet").to_table()["trial_id"].to_pylist()) == [0, 1, 2]
    assert pq.read_table(table).num_rows == 3
    # Polars' and DuckDB's globs take a `_` name too (Arrow skips `_` and `.` names): caviar never
    # writes one; its temporary files are `.`-named and end in `.tmp`, which no `*.parquet` matches.
    (table / "_part-000004.parquet").unlink()
    for name, read in (("polars", lambda m: m.read_parquet(table / "*.parquet")),
                       ("duckdb", lambda m: m.sql(f"select * from read_parquet('{table}/*.parquet')").df())):
        try:
            module = __import__(name)
        except ImportError:
            continue                           # not installed here: nothing is installed for a test
        assert sorted(read(module)["trial_id"]) == [0, 1, 2]


# ----------------------------------------------------------------------------- parts that do not read

def test_a_corrupt_trials_part_is_set_aside_and_its_trials_run_again(tmp_path, capfd):
    run = sweep_folder(tmp_path, n=5)
    bad = truncate(run.path / "trials.parquet" / "part-000003.parquet")
    resumed = open_run(tmp_path, "sweep", JOB, resume=True)
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and str(bad) in err and "warning" in err, err
    assert (run.path / ".quarantine" / "trials" / "part-000003.parquet").is_file() and not bad.exists()
    assert resumed.finished_trial_ids() == {0, 1, 2, 4}
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # nothing left that does not read
        assert ids(load(run.path).trials) == [0, 1, 2, 4]


def restore_sweep(out: Path):
    """Resume the sweep folder `out/sweep` as `caviar parallel --resume` does, up to its restore."""
    from caviar.config.job import load_job
    from caviar.sweep.plan import build_sampler, build_scheduler
    from caviar.sweep.restore import restore
    from tests.toys import ToyTrainer

    job = load_job(write_job(out, "sweep", TOY_SWEEP))
    run = open_run(out, "sweep", job.to_toml(), resume=True)
    return restore(run, build_sampler(job), build_scheduler(job, ToyTrainer), job.search.metric)


def test_a_corrupt_epochs_part_reruns_every_trial_whose_epochs_it_held(tmp_path, capfd):
    run = open_run(tmp_path, "sweep", JOB)
    epochs, trials = run.table("epochs"), run.table("trials")
    for together in ([0, 1], [2, 3], [4, 5]):  # part 1 holds trials 2 and 3, part 3 epoch 3 of trial 4
        epochs.append([row for i in together for row in epoch_rows(i, (1, 2) if i == 4 else (1, 2, 3))])
        trials.append([trial_row(i) for i in together if i != 4])
        run.flush()
    epochs.append(epoch_rows(4, (3,)))
    trials.append([trial_row(4)])
    run.flush()
    truncate(run.path / "epochs.parquet" / "part-000001.parquet")
    truncate(run.path / "epochs.parquet" / "part-000003.parquet")
    done = restore_sweep(tmp_path)
    assert capfd.readouterr().err.count("epochs.parquet/part-0000") == 2
    assert done.finished == {0, 1, 5}
    saved = load(run.path)
    assert ids(saved.trials) == [0, 1, 5]
    assert saved.epochs.groupby("trial_id").size().to_dict() == {0: 3, 1: 3, 5: 3}


def test_a_babysat_run_with_a_corrupt_part_is_refused_at_once_naming_it(tmp_path):
    run = open_run(tmp_path, "panda", 'name = "panda"\n')
    for epoch in (1, 2, 3):
        run.table("epochs").append([{"epoch": epoch, "learning_rate": 0.1, "val_accuracy": 0.5,
                                     "decision": "improved"}])
        run.table("events").append([{"epoch": epoch, "event": "improved", "base_learning_rate": 0.1, "score": 0.5}])
        run.flush()
    run.checkpoints_dir.mkdir()
    bad = truncate(run.path / "epochs.parquet" / "part-000001.parquet")
    before = snapshot(tmp_path, folders=True, mtimes=True)
    with pytest.raises(ValueError, match=f"^--resume: {bad}") as refused:
        open_run(tmp_path, "panda", 'name = "panda"\n', resume=True)
    assert "\n" not in str(refused.value)
    assert snapshot(tmp_path, folders=True, mtimes=True) == before


def test_a_compaction_that_meets_a_part_that_does_not_read_names_it(tmp_path):
    run = sweep_folder(tmp_path, n=3)
    bad = truncate(run.path / "trials.parquet" / "part-000001.parquet")
    resumed = TableWriter(run.path, "trials")   # a writer that did not write the parts reads them
    with pytest.raises(ValueError, match=f"^{bad}: ") as refused:
        resumed.compact()
    assert "\n" not in str(refused.value)
    assert sorted(os.listdir(run.path / "trials.parquet")) == [f"part-00000{i}.parquet" for i in range(3)]


def test_a_part_damaged_after_its_writer_wrote_it_is_merged_from_the_rows_it_wrote(tmp_path):
    """The writer keeps what it wrote (`KEPT_PARTS_BYTES`): its compaction puts the rows back whole."""
    run = sweep_folder(tmp_path, n=3)
    truncate(run.path / "trials.parquet" / "part-000001.parquet")
    run.compact()
    assert pd.read_parquet(run.path / "trials.parquet").trial_id.tolist() == [0, 1, 2]


# ----------------------------------------------------------------------------- through the real commands

@pytest.fixture(scope="module")
def real_sweep(ray_session, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("corrupt")
    job = write_job(folder, "sweep", TOY_SWEEP, search={"trials": 6})
    assert run_sweep(job, folder / "out", ray_session) == 0
    return folder


@pytest.mark.parametrize("table", ["trials", "epochs"])
def test_a_real_sweep_resumes_past_a_corrupt_part_and_rebuilds_what_it_held(real_sweep, ray_session, tmp_path,
                                                                            capsys, table):
    folder = Path(shutil.copytree(real_sweep, tmp_path / "copy"))
    want = load(folder / "out" / "sweep")
    (part,) = (folder / "out" / "sweep" / f"{table}.parquet").iterdir()
    truncate(part)
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert run_sweep(folder / "sweep.toml", folder / "out", ray_session, "--resume") == 0
    assert not [w for w in caught if str(part) in str(w.message)], "named once, on one line"
    said = [line for line in capsys.readouterr().err.splitlines() if "warning" in line or "error" in line]
    assert len(said) == 1 and str(part) in said[0] and ".quarantine" in said[0], said
    got = load(folder / "out" / "sweep")
    for name, keys in (("trials", ["trial_id"]), ("epochs", ["trial_id", "epoch"])):
        mine, theirs = (getattr(r, name).sort_values(keys).reset_index(drop=True) for r in (got, want))
        volatile = ["seconds", "node", "started_at", "finished_at", "time"]   # timings, where, when
        pd.testing.assert_frame_equal(mine.drop(columns=volatile, errors="ignore"),
                                      theirs.drop(columns=volatile, errors="ignore"))
    assert run_sweep(folder / "sweep.toml", folder / "out", ray_session, "--resume") == 0
    assert "warning" not in capsys.readouterr().err and len(load(folder / "out" / "sweep").trials) == 6


def test_a_real_babysit_resume_refuses_a_corrupt_part_without_training(tmp_path, capsys):
    job = write_job(tmp_path, "panda", STEADY, model={"learning_rate": 0.01}, babysit={"epochs": 3})
    assert run_babysit(job, tmp_path / "out") == 0
    (part,) = (tmp_path / "out" / "panda" / "events.parquet").iterdir()
    truncate(part)
    before = snapshot(tmp_path / "out" / "panda", folders=True, mtimes=True)
    capsys.readouterr()
    assert run_babysit(job, tmp_path / "out", "--resume") == 2
    said = [line for line in capsys.readouterr().err.splitlines() if "error" in line]
    assert len(said) == 1 and said[0].startswith(f"caviar babysit: error: --resume: {part}"), said
    assert snapshot(tmp_path / "out" / "panda", folders=True, mtimes=True) == before


def test_a_reader_listing_a_table_folder_while_it_grows_only_ever_meets_part_files(tmp_path):
    """Polars, DuckDB and others list a table folder and read what they find: while a run flushes,
    its temporary files are made in the run folder, never inside `trials.parquet/`."""
    import threading

    from caviar.store.folder import open_run

    run = open_run(tmp_path, "watched", 'name = "watched"\n')
    table, seen, done = run.path / "trials.parquet", set(), threading.Event()

    def watch() -> None:
        while not done.is_set():
            if table.is_dir():
                seen.update(entry.name for entry in os.scandir(table))

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        writer = run.table("trials")
        for trial in range(200):
            writer.append([{"trial_id": trial, "status": "completed", "score": 0.5}])
            writer.flush()
    finally:
        done.set()
        watcher.join()
    assert seen and all(name.startswith("part-") and name.endswith(".parquet") for name in seen), \
        sorted(n for n in seen if not n.startswith("part-"))[:5]


# ----------------------------------------------------------------------------- compaction killed, without a swap

NO_SWAP = COMPACTOR.replace("import sys\n", "import sys\nfrom caviar.store import swap\n"
                            "swap._RENAMEAT2 = None      # as on an OS or a file system without renameat2\n", 1)

FALLBACK_TRIGGERS = {
    "delay": None,
    "table aside": lambda run: any(n.startswith(".trials.parquet.aside-") for n in entries(run)),
    "table merged": TRIGGERS["table merged"],
    "staging made": TRIGGERS["staging made"],
}


def test_a_compaction_without_a_swap_killed_at_any_moment_never_shows_a_row_twice(tmp_path):
    """Where two folders cannot be swapped, the table is renamed aside and the new one renamed in: a
    reader may briefly find no table, never a row twice, and a resume gives every row back once."""
    template = open_run(tmp_path / "template", "sweep", JOB)
    writer = TableWriter(template.path, "trials", fsync=False)
    for part in range(150):                    # many parts: deleting them takes a while
        writer.append([trial_row(2 * part + k) for k in range(2)])
        writer.flush()
    kills = 24
    outs = [Path(shutil.copytree(template.path, tmp_path / f"k{k}" / "sweep")).parent for k in range(kills)]
    rng, seen = random.Random(3), []
    for k, out in enumerate(outs):
        run, trigger = out / "sweep", list(FALLBACK_TRIGGERS)[k % len(FALLBACK_TRIGGERS)]
        proc = subprocess.Popen([sys.executable, "-c", NO_SWAP, str(run)], stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, text=True)
        assert proc.stdout.readline() == "ready\n"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        if FALLBACK_TRIGGERS[trigger] is None:
            time.sleep(rng.uniform(0, 0.3))
        else:
            while proc.poll() is None and not FALLBACK_TRIGGERS[trigger](run):
                pass
        proc.kill()
        proc.communicate()
        table = run / "trials.parquet"
        seen.append(sorted(n.split("-")[0] for n in entries(run) if n.startswith(".trials.")) or ["done"])
        if table.exists():                     # no table: the kill came between the two renames
            got = list(pd.read_parquet(table)["trial_id"])
            assert len(got) == len(set(got)), f"pandas reads a row twice (kill at {trigger!r})"
        check_read_once_then_resume(out, 300)
    assert {".trials.parquet.compact", ".trials.parquet.aside"} <= {n for names in seen for n in names}, seen
