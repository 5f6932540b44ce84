"""The write side of the results store: run folders, append-only part files, compaction, resume, crashes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caviar.store.folder import RunFolder, open_run
from caviar.store.reader import load
from caviar.store.swap import exchange
from caviar.store.writer import TableWriter
from tests.support import snapshot

JOB = 'name = "sweep"\n[search]\ntrials = 8\n'


def trial_row(i: int, *, failed: bool = False) -> dict:
    """A trials row as the parallel driver writes it; a failed trial reports no metrics."""
    row = {"trial_id": i, "status": "failed" if failed else "completed", "params_learning_rate": 10 ** -(1 + i % 3),
           "params_batch_size": [32, 64, 128][i % 3], "params_batch_norm": i % 2 == 0,
           "params_optimizer": ["adam", "sgd"][i % 2], "score": float("nan") if failed else i / 100,
           "epochs": 0 if failed else 5, "seconds": 1.5, "seed": 1000 + i,
           "error": "ValueError: boom" if failed else None, "node": "127.0.0.1", "round": 0}
    if not failed:
        row |= {"val_accuracy": i / 100, "val_loss": 1 - i / 100}
    return row


def parts(run: RunFolder, table: str = "trials") -> list[str]:
    return sorted(p.name for p in (run.path / f"{table}.parquet").iterdir())


def three_parts(tmp_path: Path) -> tuple[RunFolder, TableWriter]:
    """A sweep whose trials table holds trials 0, 1 and 2, one part each."""
    run = open_run(tmp_path, "sweep", JOB)
    for i in range(3):
        run.table("trials").append([trial_row(i)])
        run.table("trials").flush()
    return run, run.table("trials")


# ----------------------------------------------------------------------------- opening a run

def test_new_run_creates_the_folder_and_writes_job_toml(tmp_path):
    run = open_run(tmp_path / "results", "sweep-1.b_2", JOB)
    assert run.path == tmp_path / "results" / "sweep-1.b_2" and run.name == "sweep-1.b_2"
    assert (run.path / "job.toml").read_text() == JOB
    assert run.checkpoints_dir == run.path / "checkpoints"
    assert [p.name for p in run.path.iterdir()] == ["job.toml"]   # no temp file left


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", ".hidden", "", "sp ace", "é"])
def test_bad_run_names_are_refused_before_anything_is_written(tmp_path, name):
    with pytest.raises(ValueError, match="^name: "):
        open_run(tmp_path / "results", name, JOB)
    assert not (tmp_path / "results").exists()


def test_existing_results_are_refused_and_left_byte_identical(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    run.table("trials").append([trial_row(0)])
    run.flush()
    (run.checkpoints_dir).mkdir()
    (run.checkpoints_dir / "best.npz").write_bytes(b"not really")
    before = snapshot(tmp_path, mtimes=True)
    with pytest.raises(FileExistsError, match="--resume.*--overwrite") as info:
        open_run(tmp_path, "sweep", 'name = "other"\n')
    assert "\n" not in str(info.value)
    assert snapshot(tmp_path, mtimes=True) == before


def test_a_folder_without_results_is_reused(tmp_path):
    open_run(tmp_path, "sweep", JOB)   # e.g. killed before its first trial finished
    run = open_run(tmp_path, "sweep", 'name = "again"\n')
    assert (run.path / "job.toml").read_text() == 'name = "again"\n'


def test_overwrite_replaces_the_old_run_and_leaves_nothing_aside(tmp_path):
    old = open_run(tmp_path, "sweep", JOB)
    old.table("trials").append([trial_row(i) for i in range(3)])
    old.table("epochs").append([{"trial_id": 0, "epoch": 1, "val_loss": 0.5}])
    old.flush()
    run = open_run(tmp_path, "sweep", 'name = "new"\n', overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]
    assert [p.name for p in run.path.iterdir()] == ["job.toml"]
    assert (run.path / "job.toml").read_text() == 'name = "new"\n'
    assert run.finished_trial_ids() == set()


def test_resume_and_overwrite_refuse_bad_combinations(tmp_path):
    with pytest.raises(ValueError, match="--resume"):
        open_run(tmp_path, "missing", JOB, resume=True)
    with pytest.raises(ValueError, match="not both"):
        open_run(tmp_path, "x", JOB, resume=True, overwrite=True)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------- appending

def test_each_table_has_the_documented_types(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials, epochs, events = run.table("trials"), run.table("epochs"), run.table("events")
    trials.append([trial_row(0, failed=True)])     # first part: no metric columns at all
    trials.flush()
    trials.append([trial_row(i) for i in range(1, 4)])
    trials.flush()
    epochs.append([{"trial_id": 1, "epoch": e, "learning_rate": 0.01, "seconds": 0.2, "val_loss": np.float32(0.5),
                    "val_accuracy": 1} for e in range(1, 4)])
    events.append([{"epoch": 3, "event": "plateau", "base_learning_rate": 0.005, "score": 0.8, "detail": "lr x0.5"}])
    run.flush()
    r = load(run.path)
    assert r.trials.dtypes.map(str).to_dict() == {
        "trial_id": "int64", "status": "str", "params_learning_rate": "float64", "params_batch_size": "int64",
        "params_batch_norm": "bool", "params_optimizer": "str", "score": "float64", "epochs": "int64",
        "seconds": "float64", "seed": "int64", "error": "str", "node": "str", "round": "int64",
        "val_accuracy": "float64", "val_loss": "float64"}
    assert r.epochs.dtypes.map(str).to_dict() == {"trial_id": "int64", "epoch": "int64", "learning_rate": "float64",
                                                  "seconds": "float64", "val_loss": "float64",
                                                  "val_accuracy": "float64"}   # a metric reported as 1 is float
    assert r.events.dtypes.map(str).to_dict() == {"epoch": "int64", "event": "str", "base_learning_rate": "float64",
                                                  "score": "float64", "detail": "str"}
    failed = r.trials.set_index("trial_id").loc[0]
    assert failed.status == "failed" and np.isnan(failed.score) and np.isnan(failed.val_loss)
    assert r.trials.error.isna().tolist() == [False, True, True, True]


def test_values_that_do_not_fit_their_column_are_refused_whole_batch(tmp_path):
    trials = open_run(tmp_path, "sweep", JOB).table("trials")
    trials.append([trial_row(0)])
    for bad, message in [({"trial_id": 1.5}, "trials.trial_id: .*int64.*1.5"),
                         ({"params_batch_size": "auto"}, "params_batch_size.*'auto'"),
                         ({"status": 3}, "trials.status"),
                         ({"params_batch_norm": 1.0}, "params_batch_norm")]:
        with pytest.raises(ValueError, match=message):
            trials.append([trial_row(1), trial_row(2) | bad])
    assert trials.buffered == 1
    trials.append([trial_row(3) | {"params_batch_size": 64.0}])   # a whole float is still an int
    trials.flush()
    assert load(trials.path.parent).trials.params_batch_size.tolist() == [32, 64]


def test_list_values_are_stored_as_json_text_and_types_can_be_declared(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials", types={"params_units": pa.string()})
    trials.append([{"trial_id": 0, "params_hidden_layers": [64, 64], "params_units": 32},
                   {"trial_id": 1, "params_hidden_layers": (128,), "params_units": "auto"}])
    trials.flush()
    got = load(run.path).trials
    assert got.params_hidden_layers.tolist() == ["[64, 64]", "[128]"]
    assert got.params_units.tolist() == ["32", "auto"]


def test_a_column_first_seen_empty_takes_the_type_of_its_first_value(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    trials.append([{"trial_id": 0, "params_units": None, "error": None}])
    trials.flush()
    trials.append([{"trial_id": 1, "params_units": 64}])
    trials.flush()
    got = load(run.path).trials
    assert got.params_units.dtype == "Int64" and got.params_units.tolist()[1] == 64
    assert got.error.dtype == "str"                 # declared: a string column from the start
    with pytest.raises(ValueError, match="trials.params_when: cannot store"):
        trials.append([{"trial_id": 2, "params_when": object()}])


def test_flush_adds_one_part_and_never_rewrites_the_others(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    assert trials.flush() is None                  # nothing buffered: no empty part
    for i in range(3):
        trials.append([trial_row(2 * i), trial_row(2 * i + 1)])
        assert trials.flush().name == f"part-{i:06d}.parquet"
    before = snapshot(trials.path, mtimes=True)
    inodes = {p.name: p.stat().st_ino for p in trials.path.iterdir()}
    trials.append([trial_row(6, failed=True) | {"new_metric": 1.0}])   # even a new column...
    trials.flush()
    after = snapshot(trials.path, mtimes=True)
    assert {k: after[k] for k in before} == before   # ...leaves the written parts as they were
    assert {p.name: p.stat().st_ino for p in trials.path.iterdir() if p.name in inodes} == inodes
    assert parts(run) == [f"part-{i:06d}.parquet" for i in range(4)]
    # every part carries the columns known when it was written: the last one has them all
    assert "new_metric" in pq.read_schema(trials.path / "part-000003.parquet").names
    assert "val_loss" in pq.read_schema(trials.path / "part-000003.parquet").names


def test_pandas_reads_a_crashed_run_whose_parts_share_columns(tmp_path):
    run, trials = three_parts(tmp_path)
    (trials.path / ".part-000003.parquet.999-abc123.tmp").write_bytes(b"PAR1 half a file")  # the kill
    frame = pd.read_parquet(trials.path)
    assert frame.trial_id.tolist() == [0, 1, 2] and frame.trial_id.dtype == "int64"


# ----------------------------------------------------------------------------- compaction

def test_compaction_keeps_every_row_once_and_pandas_reads_the_folder(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    trials.append([trial_row(0, failed=True)])
    trials.flush()
    for i in range(1, 10, 3):
        trials.append([trial_row(i), trial_row(i + 1), trial_row(i + 2)])
        trials.flush()
    run.table("epochs").append([{"trial_id": 1, "epoch": 1, "val_loss": 0.4}])
    before = load(run.path).trials
    trials.append([trial_row(10)])                 # compact() flushes what is buffered first
    run.compact()
    assert parts(run) == ["part-000000-000004.parquet"]
    assert parts(run, "epochs") == ["part-000000.parquet"]
    after = load(run.path).trials
    pd.testing.assert_frame_equal(after.iloc[:-1], before)
    assert after.trial_id.tolist() == list(range(11))
    plain = pd.read_parquet(trials.path)             # the whole table, every column, no caviar needed
    assert plain.columns.tolist() == after.columns.tolist() and plain.trial_id.tolist() == list(range(11))
    assert plain.val_loss.isna().tolist() == [True] + [False] * 10
    trials.append([trial_row(11)])                 # a compacted table goes on growing after it
    assert trials.flush().name == "part-000005.parquet"


def test_a_compaction_merges_the_parts_its_writer_wrote_without_reading_them_back(tmp_path, monkeypatch):
    """The writer keeps the parts it wrote (up to KEPT_PARTS_BYTES): the merged file holds the same
    rows as a compaction that reads every part; parts of an earlier writer (a resumed run), or
    beyond the budget, are read from their files."""
    import caviar.store.writer as writer_module

    def write_parts(writer: TableWriter, ids: range) -> None:
        for i in ids:
            writer.append([trial_row(i, failed=i == 0)])
            writer.flush()

    kept = open_run(tmp_path, "kept", JOB).table("trials")
    write_parts(kept, range(4))
    earlier = open_run(tmp_path, "earlier", JOB).table("trials")
    write_parts(earlier, range(2))
    resumed = TableWriter(earlier.path.parent, "trials")   # a resume's writer: parts 0 and 1 are not its own
    write_parts(resumed, range(2, 4))
    read = []
    read_part = writer_module._read_part
    monkeypatch.setattr(writer_module, "_read_part", lambda path, columns=None: (read.append(path.name),
                                                                                read_part(path, columns))[1])
    kept.compact()
    assert read == []
    resumed.compact()
    assert read == ["part-000000.parquet", "part-000001.parquet"]
    assert pq.read_table(kept.path).equals(pq.read_table(resumed.path))
    monkeypatch.setattr(writer_module, "KEPT_PARTS_BYTES", 0)
    tight = open_run(tmp_path, "tight", JOB).table("trials")
    write_parts(tight, range(4))
    read.clear()
    tight.compact()
    assert len(read) == 4 and pq.read_table(tight.path).equals(pq.read_table(kept.path))


def test_an_interrupted_compaction_is_read_once_and_repaired_on_resume(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    for i in range(3):
        trials.append([trial_row(2 * i), trial_row(2 * i + 1)])
        trials.flush()
    # the kill came after the merged part was in place and before the parts it covers were deleted
    merged = pa.concat_tables([pq.read_table(trials.path / f"part-{i:06d}.parquet") for i in range(3)])
    pq.write_table(merged, trials.path / "part-000000-000002.parquet")
    (trials.path / "part-000001.parquet").unlink()  # ...or while deleting them
    assert load(run.path).trials.trial_id.tolist() == list(range(6))
    resumed = open_run(tmp_path, "sweep", JOB, resume=True)
    assert parts(resumed) == ["part-000000-000002.parquet"]
    assert resumed.finished_trial_ids() == set(range(6))
    resumed.table("trials").append([trial_row(6)])
    assert resumed.table("trials").flush().name == "part-000003.parquet"
    assert load(run.path).trials.trial_id.tolist() == list(range(7))


def test_exchange_swaps_two_real_folders_in_one_step(tmp_path):
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    (tmp_path / "a" / "x").write_text("in a")
    if not exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this OS or file system cannot swap two folders: compaction merges in place")
    assert (tmp_path / "b" / "x").read_text() == "in a" and list((tmp_path / "a").iterdir()) == []
    with pytest.raises(FileNotFoundError):
        exchange(tmp_path / "a", tmp_path / "missing")


def test_compaction_swaps_in_a_new_folder_or_merges_in_place_and_keeps_every_other_file(tmp_path):
    run, trials = three_parts(tmp_path)
    pq.write_table(pa.table({"trial_id": pa.array([99], pa.int64())}), trials.path / "extra.parquet")  # another tool's
    extra, folder = (trials.path / "extra.parquet").stat().st_ino, trials.path.stat().st_ino
    assert trials.compact().name == "part-000000-000002.parquet" and parts(run)[0] == "extra.parquet"
    assert (trials.path / "extra.parquet").stat().st_ino == extra       # the same file, linked over
    swapped = trials.path.stat().st_ino != folder
    (trials.path / "notes").mkdir()              # a folder cannot be linked over: this one merges in place
    trials.append([trial_row(3)])
    folder = trials.path.stat().st_ino
    assert trials.compact().name == "part-000000-000003.parquet" and trials.path.stat().st_ino == folder
    assert parts(run) == ["extra.parquet", "notes", "part-000000-000003.parquet"]
    assert sorted(p.name for p in run.path.iterdir()) == ["job.toml", "trials.parquet"]   # nothing left aside
    assert load(run.path).trials.trial_id.tolist() == [0, 1, 2, 3, 99]
    trials.append([trial_row(4)])
    assert trials.flush().name == "part-000004.parquet"
    if not swapped:                              # only where the OS or the file system cannot swap folders
        (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
        assert not exchange(tmp_path / "a", tmp_path / "b")


# ----------------------------------------------------------------------------- resume

def test_resume_keeps_everything_repairs_temp_files_and_continues(tmp_path):
    run, trials = three_parts(tmp_path)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()           # the pid of a killed writer
    (trials.path / f".part-000003.parquet.{dead}-0a0b0c.tmp").write_bytes(b"half")
    (run.path / f".job.toml.{dead}-0a0b0c.tmp").write_bytes(b"half")
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as live:
        try:                                      # a writer still at work: its temp file is spared
            (run.path / f".other.{live.pid}-0a0b0c.tmp").write_bytes(b"being written")
            before = snapshot(trials.path, mtimes=True)
            resumed = open_run(tmp_path, "sweep", 'name = "ignored on resume"\n', resume=True)
        finally:
            live.kill()
    assert resumed.resumed
    assert (resumed.path / "job.toml").read_text() == JOB             # the job as first run
    assert sorted(p.name for p in resumed.path.rglob(".*")) == [f".other.{live.pid}-0a0b0c.tmp"]
    assert snapshot(trials.path, mtimes=True) == {k: v for k, v in before.items() if not k.startswith(".")}
    assert resumed.finished_trial_ids() == {0, 1, 2}
    writer = resumed.table("trials")
    writer.append([{"trial_id": 3, "status": "completed", "round": 1}])  # types continue from disk
    assert writer.flush().name == "part-000003.parquet"
    assert writer.schema.field("round").type == pa.int64()
    got = load(resumed.path).trials
    assert got.trial_id.tolist() == [0, 1, 2, 3] and got.trial_id.dtype == "int64"
    assert "val_loss" in pq.read_schema(writer.path / "part-000003.parquet").names


def test_resume_turns_a_single_file_table_into_parts(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    pd.DataFrame([trial_row(0), trial_row(1)]).to_parquet(run.path / "trials.parquet")
    resumed = open_run(tmp_path, "sweep", JOB, resume=True)
    assert resumed.finished_trial_ids() == {0, 1}
    resumed.table("trials").append([trial_row(2)])
    resumed.table("trials").flush()
    assert parts(resumed) == ["part-000000.parquet", "part-000001.parquet"]
    assert load(run.path).trials.trial_id.tolist() == [0, 1, 2]


def test_finished_trial_ids_include_rows_not_yet_flushed(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    run.table("trials").append([trial_row(4)])
    run.flush()
    run.table("trials").append([trial_row(7, failed=True)])
    assert run.finished_trial_ids() == {4, 7}


# ----------------------------------------------------------------------------- a real crash

WRITER = textwrap.dedent("""
    import sys
    from caviar.store.folder import open_run
    out, resume, batch = sys.argv[1], sys.argv[2] == "1", int(sys.argv[3])
    run = open_run(out, "crash", 'name = "crash"\\n', resume=resume)
    trials = run.table("trials")
    while True:
        rows = [{"trial_id": 10 * batch + k, "status": "completed", "params_lr": 0.5 ** k,
                 "score": (10 * batch + k) / 7, "epochs": batch, "error": None}
                | ({"val_loss": batch / 3} if batch % 4 else {})          # some parts lack a column
                for k in range(10)]
        trials.append(rows)
        trials.flush()
        print(batch, flush=True)                 # reported only once its part is on disk
        if batch % 5 == 4:
            trials.compact()                     # so the kill may land inside a compaction too
        batch += 1
""")


def kill_at_random(out: Path, rng: np.random.Generator, *, resume: bool, first_batch: int) -> list[int]:
    """Run the writer, SIGKILL it at a random moment; the batches it reported as flushed."""
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(out), "1" if resume else "0", str(first_batch)],
                            stdout=subprocess.PIPE, text=True)
    reported = [int(proc.stdout.readline())]
    for _ in range(int(rng.integers(0, 25))):
        reported.append(int(proc.stdout.readline()))
    os.kill(proc.pid, signal.SIGKILL)
    reported += [int(line) for line in proc.stdout.read().split()]
    proc.wait()
    proc.stdout.close()
    return reported


def check_every_flushed_row_once(out: Path, reported: list[int]) -> pd.DataFrame:
    trials = load(out / "crash").trials
    ids = trials.trial_id.tolist()
    assert len(ids) == len(set(ids)), "a row is there twice"
    batches = trials.groupby("epochs").trial_id.count()
    assert (batches == 10).all(), "a part is half there"
    assert set(reported) <= set(batches.index), "a flushed row is missing"
    expected = trials.trial_id / 7
    np.testing.assert_allclose(trials.score, expected)
    assert (trials.params_lr == 0.5 ** (trials.trial_id % 10)).all() and (trials.status == "completed").all()
    return trials


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sigkill_at_any_moment_loses_no_flushed_row_and_resume_goes_on(tmp_path, seed):
    rng = np.random.default_rng(seed)
    reported = kill_at_random(tmp_path, rng, resume=False, first_batch=0)
    trials = check_every_flushed_row_once(tmp_path, reported)
    run = open_run(tmp_path, "crash", "", resume=True)
    done = run.finished_trial_ids()
    assert done == set(trials.trial_id)
    next_batch = max(done) // 10 + 1
    reported += kill_at_random(tmp_path, rng, resume=True, first_batch=next_batch)
    trials = check_every_flushed_row_once(tmp_path, reported)
    final = open_run(tmp_path, "crash", "", resume=True)
    final.compact()
    assert len(parts(final)) == 1 and parts(final)[0].startswith("part-000000-")
    check_every_flushed_row_once(tmp_path, reported)
    plain = pd.read_parquet(final.path / "trials.parquet")
    assert sorted(plain.trial_id) == sorted(trials.trial_id)


def test_rewriting_a_lone_part_without_some_rows_leaves_one_part_that_covers_it(tmp_path):
    import pyarrow.compute as pc

    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    trials.append([trial_row(0), trial_row(1), trial_row(2)])
    old = trials.flush()
    merged = trials.compact(keep=lambda table: pc.not_equal(table["trial_id"], 1))
    assert merged != old and not old.exists()
    assert parts(run) == [merged.name]
    # Even had the old part survived a crash, the merged one covers it: each row is read once.
    assert pd.read_parquet(trials.path).trial_id.tolist() == [0, 2]


def test_a_metric_column_still_all_null_is_written_as_float_so_the_folder_reads_whole(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    trials = run.table("trials")
    trials.append([{**trial_row(0, failed=True), "val_accuracy": None}])   # failed before reporting
    trials.flush()
    trials.append([{**trial_row(1), "val_accuracy": 0.9}])
    trials.flush()
    frame = pd.read_parquet(trials.path)
    assert frame.val_accuracy.dtype == "float64" and frame.val_accuracy.tolist()[1] == 0.9


# ----------------------------------------------------------------------------- where folders cannot be swapped

@pytest.fixture
def overlay(tmp_path):
    """A real overlayfs mount (as Docker's): what `lower` holds is in its read-only lower layer, where
    renameat2 and the rename of a folder fail with EXDEV. Skips where it cannot be mounted."""
    lower, upper, work, merged = (tmp_path / n for n in ("lower", "upper", "work", "merged"))
    for folder in (lower, upper, work, merged):
        folder.mkdir()

    def mount() -> Path:
        done = subprocess.run(["mount", "-t", "overlay", "overlay", "-o",
                               f"lowerdir={lower},upperdir={upper},workdir={work}", str(merged)], capture_output=True)
        if done.returncode != 0:
            pytest.skip(f"cannot mount an overlay here: {done.stderr.decode().strip()}")
        return merged
    try:
        yield lower, mount
    finally:
        if os.path.ismount(merged):
            subprocess.run(["umount", str(merged)], check=True)


def test_compaction_on_overlayfs_merges_every_row_once(overlay):
    lower, mount = overlay
    run, trials = three_parts(lower)
    trials.append([trial_row(3)])
    trials.flush()
    out = mount()
    writer = TableWriter(out / "sweep", "trials")
    assert writer.compact().name == "part-000000-000003.parquet"
    assert parts(RunFolder(out / "sweep")) == ["part-000000-000003.parquet"]
    assert sorted(pd.read_parquet(out / "sweep" / "trials.parquet").trial_id) == [0, 1, 2, 3]
    assert not [n for n in os.listdir(out / "sweep") if n.startswith(".")]
    resumed = open_run(out, "sweep", JOB, resume=True)   # a sweep's end, then its resume, on the same mount
    resumed.table("trials").append([trial_row(4)])
    resumed.compact()
    assert load(resumed.path).trials.trial_id.tolist() == [0, 1, 2, 3, 4]


# ----------------------------------------------------------------------------- moments and model values

def test_time_columns_hold_moments_in_utc_from_iso_text_or_datetimes(tmp_path):
    from datetime import datetime, timezone

    run = open_run(tmp_path, "sweep", JOB)
    run.table("epochs").append([
        {"trial_id": 0, "epoch": 1, "time": "2026-12-02T06:11:35.123456+00:00"},
        {"trial_id": 0, "epoch": 2, "time": "2026-12-02T07:11:35+01:00"},          # another offset: same moment
        {"trial_id": 0, "epoch": 3, "time": datetime(2026, 12, 2, 6, 11, 36)},     # naive: taken as UTC
        {"trial_id": 0, "epoch": 4, "time": None}])
    run.table("epochs").flush()
    times = pq.read_table(run.path / "epochs.parquet").column("time")
    assert times.type == pa.timestamp("us", tz="UTC")
    assert times.to_pylist()[:3] == [datetime(2026, 12, 2, 6, 11, 35, 123456, tzinfo=timezone.utc),
                                     datetime(2026, 12, 2, 6, 11, 35, tzinfo=timezone.utc),
                                     datetime(2026, 12, 2, 6, 11, 36, tzinfo=timezone.utc)]
    assert times.to_pylist()[3] is None
    assert str(load(run.path).epochs["time"].dtype) == "datetime64[us, UTC]"


@pytest.mark.parametrize("bad", ["yesterday", 1.5])
def test_a_time_that_is_not_a_moment_is_refused_naming_the_column(tmp_path, bad):
    run = open_run(tmp_path, "sweep", JOB)
    with pytest.raises(ValueError, match=r"^events\.time: "):
        run.table("events").append([{"epoch": 1, "event": "nudge", "time": bad}])
    assert run.table("events").buffered == 0


def test_model_columns_keep_their_types_as_params_do(tmp_path):
    run = open_run(tmp_path, "sweep", JOB)
    fixed = {"model_trainer": "mlp", "model_epochs": 5, "model_batch_norm": True, "model_hidden_layers": [64, 32]}
    run.table("trials").append([{**trial_row(0), **fixed}, {**trial_row(1), **fixed}])
    run.table("trials").flush()
    trials = load(run.path).trials
    assert trials["model_epochs"].dtype == "int64" and trials["model_batch_norm"].dtype == "bool"
    assert trials["model_hidden_layers"].tolist() == ["[64, 32]", "[64, 32]"]   # a list as its JSON text
    columns = trials.columns.tolist()
    assert columns.index("round") < columns.index("model_trainer") < columns.index("val_accuracy")
