"""The run folder's format (caviar.store.layout) promises:

- a table is one `.parquet` file or a folder of `part-<seq>.parquet` files; a compacted
  `part-<first>-<last>.parquet` covers the parts in its range, and a covered part still on disk (an
  interrupted compaction) is never read, so every row is read exactly once;
- names starting with "." (temp files) are never read; other `.parquet` files in a table folder are;
- `column_order` puts a table's columns in the README's order, params right after status, others after;
- `is_run` knows a run folder by its job.toml or a table; `holds_results` by a table part or a
  checkpoint, the thing `open_run` refuses to overwrite;
- `folder_kind` tells a sweep from a babysat run from its files alone, and None when nothing tells.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from caviar.store.layout import (Part, aside_folder, aside_folders, column_order, compaction_folders, covered_parts,
                                 folder_kind, holds_results, is_run, linked_entries, list_parts, read_error,
                                 visible_parts)
from caviar.store.vocabulary import RunKind


def write_part(path: Path, ids: list[int], **columns: list) -> Path:
    """A real Parquet file holding rows `ids` (a `trial_id` column) and any other columns."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table({"trial_id": pa.array(ids, pa.int64()), **columns}), path)
    return path


def write_epochs(run: Path, *, trial_id: bool, name: str = "part-000000.parquet") -> Path:
    """An epochs part as a sweep (with trial_id) or a babysat run (without) writes it."""
    columns = {"epoch": pa.array([1, 2], pa.int64()), "learning_rate": [0.1, 0.1], "val_loss": [0.5, 0.4]}
    if trial_id:
        columns = {"trial_id": pa.array([3, 3], pa.int64()), **columns}
    else:
        columns["decision"] = ["improved", "plateau"]
    path = run / "epochs.parquet" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.table(columns), path)
    return path


def read_rows(table: Path) -> list[int]:
    """The trial ids a reader following `visible_parts` sees, in order."""
    return [i for path in visible_parts(table) for i in pq.read_table(path).column("trial_id").to_pylist()]


@pytest.fixture
def interrupted(tmp_path) -> Path:
    """A trials folder whose compaction of parts 0..3 was cut short: the merged part is in place,
    part 2 is already deleted, parts 0, 1 and 3 are still there; parts 4 and 5 came after it; a kill
    left a temp file and a foreign file sits beside them."""
    table = tmp_path / "trials.parquet"
    for seq in (0, 1, 3, 4, 5):
        write_part(table / f"part-{seq:06d}.parquet", [10 * seq, 10 * seq + 1])
    write_part(table / "part-000000-000003.parquet", [0, 1, 10, 11, 20, 21, 30, 31])
    (table / ".part-000006.parquet.4242-a1b2c3.tmp").write_bytes(b"PAR1 half a part")
    write_part(table / ".hidden.parquet", [666])
    write_part(table / "_staging.parquet", [777])
    write_part(table / "extra.parquet", [99])
    (table / "notes.txt").write_text("not a part")
    return table


# ----------------------------------------------------------------------------- parts

def test_list_parts_reads_sequence_ranges_from_names_and_skips_everything_else(interrupted):
    parts = list_parts(interrupted)
    assert [(p.lo, p.hi) for p in parts] == [(0, 0), (0, 3), (1, 1), (3, 3), (4, 4), (5, 5)]
    assert [p.path for p in parts] == [interrupted / n for n in (
        "part-000000.parquet", "part-000000-000003.parquet", "part-000001.parquet", "part-000003.parquet",
        "part-000004.parquet", "part-000005.parquet")]


def test_parts_sort_by_number_not_by_name(tmp_path):
    for seq in (10, 9, 100, 1_000_000):
        write_part(tmp_path / f"part-{seq:06d}.parquet", [seq])
    assert [p.lo for p in list_parts(tmp_path)] == [9, 10, 100, 1_000_000]


def test_covered_parts_are_those_a_wider_compacted_part_holds(interrupted):
    covered = covered_parts(list_parts(interrupted))
    assert [p.path.name for p in covered] == ["part-000000.parquet", "part-000001.parquet", "part-000003.parquet"]


def test_a_compacted_part_inside_a_wider_one_is_covered_too():
    parts = [Part(0, 3, Path("a")), Part(0, 5, Path("b")), Part(4, 5, Path("c")), Part(6, 6, Path("d"))]
    assert covered_parts(parts) == [Part(0, 3, Path("a")), Part(4, 5, Path("c"))]


def test_a_lone_part_covers_nothing_and_nothing_covers_itself():
    parts = [Part(0, 0, Path("a")), Part(1, 4, Path("b")), Part(5, 5, Path("c"))]
    assert covered_parts(parts) == []
    assert covered_parts([]) == []


def test_a_covered_part_is_never_read_and_every_row_is_read_once(interrupted):
    visible = visible_parts(interrupted)
    assert [p.name for p in visible] == ["part-000000-000003.parquet", "part-000004.parquet",
                                         "part-000005.parquet", "extra.parquet"]
    assert read_rows(interrupted) == [0, 1, 10, 11, 20, 21, 30, 31, 40, 41, 50, 51, 99]


def test_temp_and_hidden_files_are_never_read(interrupted):
    names = {p.name for p in visible_parts(interrupted)}
    assert not any(n.startswith((".", "_")) for n in names)
    assert 666 not in read_rows(interrupted) and 777 not in read_rows(interrupted)


def test_pandas_reads_the_same_rows_once_the_covered_parts_are_gone(interrupted):
    for part in covered_parts(list_parts(interrupted)):
        part.path.unlink()
    (interrupted / "notes.txt").unlink()             # not caviar's: pandas would try to read it
    assert sorted(pd.read_parquet(interrupted).trial_id) == sorted(read_rows(interrupted))


def test_a_part_that_is_a_link_is_never_listed_and_linked_entries_names_it(interrupted, tmp_path):
    theirs = write_part(tmp_path / "elsewhere" / "theirs.parquet", [500])
    (interrupted / "part-000009.parquet").symlink_to(theirs)
    (interrupted / "more.parquet").symlink_to(theirs)
    (interrupted / ".hidden-link.parquet").symlink_to(theirs)        # no reader opens it: not named
    (interrupted / "part-000010.parquet").mkdir()                    # a folder is not a part either
    assert 500 not in read_rows(interrupted) and 9 not in [p.lo for p in list_parts(interrupted)]
    assert linked_entries(interrupted) == [interrupted / "more.parquet", interrupted / "part-000009.parquet"]


def test_a_table_that_is_a_link_has_no_parts_and_is_its_own_linked_entry(tmp_path):
    elsewhere = write_part(tmp_path / "elsewhere" / "part-000000.parquet", [1]).parent
    for target in (elsewhere, elsewhere / "part-000000.parquet"):
        link = tmp_path / "run" / "trials.parquet"
        link.parent.mkdir(exist_ok=True)
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        assert visible_parts(link) == [] and linked_entries(link) == [link]
    assert linked_entries(tmp_path / "run" / "epochs.parquet") == []


def test_a_link_where_a_table_or_a_part_would_be_is_held_as_results(tmp_path):
    elsewhere = write_part(tmp_path / "elsewhere" / "part-000000.parquet", [1]).parent
    for link, target in (("trials.parquet", elsewhere), ("epochs.parquet/part-000000.parquet", elsewhere / "x")):
        run = tmp_path / link.replace("/", "-")
        (run / link).parent.mkdir(parents=True, exist_ok=True)
        (run / link).symlink_to(target)        # dangling or not: a --overwrite or --resume decides
        assert holds_results(run)


def test_compaction_folders_are_the_hidden_siblings_a_compaction_builds(tmp_path):
    for name in (".trials.parquet.compact-0a1b", ".epochs.parquet.compact-ff", ".trials.parquet.convert",
                 "trials.parquet", ".other.compact-00"):
        (tmp_path / name).mkdir()
    assert [p.name for p in compaction_folders(tmp_path)] == [".epochs.parquet.compact-ff",
                                                              ".trials.parquet.compact-0a1b"]
    assert compaction_folders(tmp_path / "missing") == []


def test_read_error_names_a_part_that_does_not_read_on_one_line(tmp_path):
    good = write_part(tmp_path / "part-000000.parquet", list(range(100)))
    bad = tmp_path / "part-000001.parquet"
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    assert read_error(good) is None
    assert read_error(bad).startswith(f"{bad}: the part file does not read (") and "\n" not in read_error(bad)


def test_read_error_raises_the_machines_oserror_and_answers_only_for_damaged_content(tmp_path):
    """A part the machine cannot read (here: a directory where a file is opened, EISDIR) is not a
    damaged part: its OSError is raised unchanged, with its errno and the path, never told as
    "does not read" (pyarrow tells both as a plain OSError)."""
    folder = tmp_path / "part-000000.parquet"
    folder.mkdir()
    with pytest.raises(IsADirectoryError) as raised:
        read_error(folder)
    assert raised.value.errno is not None and raised.value.filename == str(folder)
    for damage in (b"", b"PAR1 damaged", b"not parquet at all, no magic bytes"):
        bad = tmp_path / "part-000001.parquet"
        bad.write_bytes(damage)
        assert read_error(bad).startswith(f"{bad}: the part file does not read (")


def test_a_table_a_compaction_set_aside_is_named_beside_it_and_held_as_results_without_a_table(tmp_path):
    table = tmp_path / "trials.parquet"
    aside = aside_folder(table, "0badc0de")
    assert aside == tmp_path / ".trials.parquet.aside-0badc0de"
    write_part(aside / "part-000000.parquet", [0])
    (tmp_path / ".epochs.parquet.aside-01").mkdir()
    assert aside_folders(table) == [aside] and visible_parts(table) == []
    assert holds_results(tmp_path)          # killed before the new table moved in: a resume puts it back
    assert aside_folders(tmp_path / "missing" / "trials.parquet") == []


def test_a_single_file_table_is_its_own_only_part_and_a_missing_one_has_none(tmp_path):
    single = write_part(tmp_path / "trials.parquet", [1, 2])
    assert visible_parts(single) == [single]
    assert visible_parts(str(single)) == [single]     # a path given as text works too
    assert visible_parts(tmp_path / "epochs.parquet") == []
    (tmp_path / "events.parquet").mkdir()
    assert visible_parts(tmp_path / "events.parquet") == []


# ----------------------------------------------------------------------------- column order

def test_trials_columns_follow_the_readme_with_params_after_status():
    given = ["val_loss", "params_lr", "score", "trial_id", "params_batch_size", "round", "status", "node",
             "val_accuracy", "seed", "error", "epochs", "seconds"]
    assert column_order("trials", given) == [
        "trial_id", "status", "params_lr", "params_batch_size", "score", "epochs", "seconds", "seed", "error",
        "node", "round", "val_loss", "val_accuracy"]


def test_epochs_and_events_put_their_own_columns_first_and_metrics_after_in_the_given_order():
    assert column_order("epochs", ["val_loss", "decision", "epoch", "params_x", "learning_rate", "trial_id",
                                   "seconds", "train_loss"]) == [
        "trial_id", "epoch", "learning_rate", "seconds", "decision", "val_loss", "params_x", "train_loss"]
    assert column_order("events", ["detail", "extra", "score", "epoch", "base_learning_rate", "event"]) == [
        "epoch", "event", "base_learning_rate", "score", "detail", "extra"]


def test_column_order_keeps_every_name_once_and_accepts_any_iterable():
    names = ("b_metric", "a_metric", "status")
    assert column_order("trials", iter(names)) == ["status", "b_metric", "a_metric"]
    assert column_order("trials", []) == []


# ----------------------------------------------------------------------------- run folders

def test_a_run_folder_is_known_by_its_job_file_or_a_table(tmp_path):
    assert not is_run(tmp_path / "missing")
    (tmp_path / "file").write_text("x")
    assert not is_run(tmp_path / "file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert not is_run(empty)
    (empty / "checkpoints").mkdir()
    assert not is_run(empty)                         # checkpoints alone do not make a run
    (tmp_path / "with_job").mkdir()
    (tmp_path / "with_job" / "job.toml").write_text('name = "x"\n')
    assert is_run(tmp_path / "with_job")
    (tmp_path / "dir_job" / "job.toml").mkdir(parents=True)
    assert not is_run(tmp_path / "dir_job")          # a folder named job.toml is not a job file
    for table in ("trials", "epochs", "events"):
        (tmp_path / table / f"{table}.parquet").mkdir(parents=True)
        assert is_run(tmp_path / table)
    write_part(tmp_path / "single" / "trials.parquet", [0])
    assert is_run(tmp_path / "single")


def test_a_folder_holds_results_once_a_part_or_a_checkpoint_is_in_it(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "job.toml").write_text('name = "run"\n')
    assert not holds_results(run)
    (run / "trials.parquet").mkdir()
    (run / "trials.parquet" / ".part-000000.parquet.123-abc.tmp").write_bytes(b"half")
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / ".best.npz").write_bytes(b"hidden")
    (run / "checkpoints" / ".best.npz.123-abc.tmp").write_bytes(b"half")
    (run / "checkpoints" / "notes.txt").write_text("not a checkpoint")
    assert not holds_results(run)                    # temp files and hidden ones are nothing yet
    write_part(run / "trials.parquet" / "part-000000.parquet", [0])
    assert holds_results(run)


@pytest.mark.parametrize("make", ["single_file", "epochs_part", "events_part", "foreign_part", "checkpoint"])
def test_any_table_or_a_checkpoint_is_a_result(tmp_path, make):
    run = tmp_path / "run"
    run.mkdir()
    if make == "single_file":
        write_part(run / "trials.parquet", [0])
    elif make == "epochs_part":
        write_epochs(run, trial_id=False)
    elif make == "events_part":
        write_part(run / "events.parquet" / "part-000003.parquet", [0])
    elif make == "foreign_part":
        write_part(run / "epochs.parquet" / "written-by-spark.parquet", [0])
    else:
        (run / "checkpoints").mkdir()
        (run / "checkpoints" / "epoch-0003.npz").write_bytes(b"npz")
    assert holds_results(run)


# ----------------------------------------------------------------------------- which kind of run

def test_an_empty_or_job_only_folder_is_of_no_kind_yet(tmp_path):
    assert folder_kind(tmp_path) is None
    (tmp_path / "job.toml").write_text('name = "x"\n')
    (tmp_path / "trials.parquet").mkdir()            # a writer made its folder and was killed
    (tmp_path / "trials.parquet" / ".part-000000.parquet.1-ab.tmp").write_bytes(b"half")
    assert folder_kind(tmp_path) is None


def test_a_trials_table_makes_a_sweep(tmp_path):
    write_part(tmp_path / "trials.parquet" / "part-000000.parquet", [0])
    assert folder_kind(tmp_path) is RunKind.SWEEP
    write_epochs(tmp_path, trial_id=False)           # the trials table decides first
    assert folder_kind(tmp_path) is RunKind.SWEEP


def test_epochs_with_a_trial_id_make_a_sweep_and_without_one_a_babysat_run(tmp_path):
    sweep, babysit = tmp_path / "sweep", tmp_path / "babysit"
    write_epochs(sweep, trial_id=True)
    write_epochs(babysit, trial_id=False)
    assert folder_kind(sweep) is RunKind.SWEEP       # killed before its first trial finished
    assert folder_kind(babysit) is RunKind.BABYSIT
    assert folder_kind(babysit) == "babysit"


def test_the_kind_comes_from_the_part_that_is_read_not_a_covered_one(tmp_path):
    write_epochs(tmp_path, trial_id=True, name="part-000000.parquet")   # covered: never read
    write_epochs(tmp_path, trial_id=False, name="part-000000-000001.parquet")
    assert folder_kind(tmp_path) is RunKind.BABYSIT


def test_an_events_table_marks_a_babysat_run_even_when_empty(tmp_path):
    (tmp_path / "events.parquet").mkdir()
    assert folder_kind(tmp_path) is RunKind.BABYSIT
    other = tmp_path / "other"
    other.mkdir()
    write_part(other / "events.parquet", [0])
    assert folder_kind(other) is RunKind.BABYSIT


def test_a_checkpoints_folder_marks_a_babysat_run(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    assert folder_kind(tmp_path) is RunKind.BABYSIT


@pytest.mark.parametrize("garbage", [b"", b"PAR1 not really a parquet file PAR1"])
def test_an_unreadable_first_epochs_part_leaves_the_decision_to_the_other_files(tmp_path, garbage):
    (tmp_path / "epochs.parquet").mkdir()
    (tmp_path / "epochs.parquet" / "part-000000.parquet").write_bytes(garbage)
    assert folder_kind(tmp_path) is None             # no error: nothing else tells
    (tmp_path / "checkpoints").mkdir()
    assert folder_kind(tmp_path) is RunKind.BABYSIT
    write_part(tmp_path / "trials.parquet" / "part-000000.parquet", [0])
    assert folder_kind(tmp_path) is RunKind.SWEEP
