"""The sweep's writer (caviar/sweep/run.py `Writer`): a finished trial's epochs reach the disk before its
row, so a trial row on disk always has its epochs on disk; and at the end each table is one part."""

from __future__ import annotations

import errno

from pathlib import Path

import pandas as pd
import pytest

from caviar.store.folder import open_run
from caviar.sweep.run import Writer


def trial(trial_id: int, epochs: int = 2) -> tuple[dict, list[dict]]:
    """A finished trial as the driver loop hands it over: its row and its epoch rows."""
    row = {"trial_id": trial_id, "status": "completed", "params_learning_rate": 10.0 ** -(trial_id + 1),
           "score": 0.5 + 0.1 * trial_id, "epochs": epochs, "seconds": 0.1, "seed": 100 + trial_id,
           "error": None, "node": "127.0.0.2", "round": 0, "val_accuracy": 0.5 + 0.1 * trial_id}
    epoch_rows = [{"trial_id": trial_id, "epoch": e, "learning_rate": row["params_learning_rate"], "seconds": 0.05,
                   "val_accuracy": 0.4 + 0.1 * trial_id + 0.05 * e} for e in range(1, epochs + 1)]
    return row, epoch_rows


def parts(table: Path) -> list[str]:
    return sorted(p.name for p in table.glob("*.parquet")) if table.is_dir() else []


@pytest.fixture
def run(tmp_path):
    return open_run(tmp_path, "sweep", 'name = "sweep"\n', fsync=False)


def test_write_trial_buffers_until_a_flush(run):
    writer = Writer(run)
    writer.write_trial(*trial(0))
    assert parts(run.path / "trials.parquet") == [] and parts(run.path / "epochs.parquet") == []
    writer.flush()
    writer.settle()   # the flush writes in the background
    assert pd.read_parquet(run.path / "trials.parquet")["trial_id"].tolist() == [0]
    assert pd.read_parquet(run.path / "epochs.parquet")["epoch"].tolist() == [1, 2]


def test_a_flush_without_trials_writes_the_epochs_only(run):
    writer = Writer(run)
    writer.write_trial(*trial(0))
    writer.flush(trials=False)
    writer.settle()
    assert len(pd.read_parquet(run.path / "epochs.parquet")) == 2
    assert parts(run.path / "trials.parquet") == []    # the row waits, its epochs are there already
    writer.flush(trials=True)
    writer.settle()
    assert pd.read_parquet(run.path / "trials.parquet")["trial_id"].tolist() == [0]
    assert len(pd.read_parquet(run.path / "epochs.parquet")) == 2   # nothing written twice


def test_epochs_are_on_disk_before_the_trials_flush_is_attempted(run):
    # The trials flush cannot write (its table's path is taken by a plain file): the epochs, written
    # first, are on disk all the same; written the other way round, neither would be.
    writer = Writer(run)
    writer.write_trial(*trial(0, epochs=3))
    (run.path / "trials.parquet").write_bytes(b"not a folder")
    with pytest.raises(OSError):
        writer.flush()
    assert pd.read_parquet(run.path / "epochs.parquet")["epoch"].tolist() == [1, 2, 3]


def test_every_trial_row_on_disk_has_its_epochs_on_disk_at_every_flush(run):
    writer = Writer(run)
    for trial_id in range(6):
        writer.write_trial(*trial(trial_id, epochs=1 + trial_id % 3))
        writer.flush(trials=trial_id % 2 == 1)
        writer.settle()
        on_disk = pd.read_parquet(run.path / "epochs.parquet") if parts(run.path / "epochs.parquet") else None
        if parts(run.path / "trials.parquet"):
            rows = pd.read_parquet(run.path / "trials.parquet")
            per_trial = on_disk.groupby("trial_id").size()
            for trial_id_on_disk, n_epochs in zip(rows["trial_id"], rows["epochs"]):
                assert per_trial[trial_id_on_disk] == n_epochs


def test_compact_leaves_one_part_per_table_holding_every_row_in_order(run):
    writer = Writer(run)
    for trial_id in range(5):
        writer.write_trial(*trial(trial_id))
        writer.flush()
    writer.settle()
    assert len(parts(run.path / "trials.parquet")) == 5 and len(parts(run.path / "epochs.parquet")) == 5
    before = {name: pd.read_parquet(run.path / f"{name}.parquet") for name in ("trials", "epochs")}
    writer.write_trial(*trial(5))   # buffered rows are flushed by the compaction
    writer.compact()
    assert parts(run.path / "trials.parquet") == ["part-000000-000005.parquet"]
    assert parts(run.path / "epochs.parquet") == ["part-000000-000005.parquet"]
    trials = pd.read_parquet(run.path / "trials.parquet")
    epochs = pd.read_parquet(run.path / "epochs.parquet")
    assert trials["trial_id"].tolist() == list(range(6))
    assert epochs[["trial_id", "epoch"]].values.tolist() == [[t, e] for t in range(6) for e in (1, 2)]
    pd.testing.assert_frame_equal(trials.iloc[:5], before["trials"])
    pd.testing.assert_frame_equal(epochs.iloc[:10], before["epochs"])


def test_compacting_a_resumed_run_merges_old_and_new_parts(run, tmp_path):
    writer = Writer(run)
    for trial_id in range(2):
        writer.write_trial(*trial(trial_id))
        writer.flush()
    writer.close()
    resumed = open_run(tmp_path, "sweep", "", resume=True, fsync=False)
    again = Writer(resumed)
    again.write_trial(*trial(2))
    again.flush()
    again.compact()
    assert len(parts(run.path / "trials.parquet")) == 1 and len(parts(run.path / "epochs.parquet")) == 1
    assert pd.read_parquet(run.path / "trials.parquet")["trial_id"].tolist() == [0, 1, 2]
    assert len(pd.read_parquet(run.path / "epochs.parquet")) == 6


def test_compact_of_a_run_with_no_trial_writes_nothing(run):
    Writer(run).compact()
    assert not (run.path / "trials.parquet").exists() and not (run.path / "epochs.parquet").exists()


def test_a_flush_returns_before_its_part_is_written_and_the_next_one_waits_for_it(run):
    # The write of a flush runs in one background thread: parts keep the order they were taken in,
    # a second flush waits for the first, and close() leaves no thread behind.
    import threading

    writer = Writer(run)
    for trial_id in range(4):
        writer.write_trial(*trial(trial_id))
        writer.flush()
    assert any(t.name.startswith("caviar-writer") for t in threading.enumerate())
    writer.close()
    assert not any(t.name.startswith("caviar-writer") for t in threading.enumerate())
    assert parts(run.path / "trials.parquet") == [f"part-{i:06d}.parquet" for i in range(4)]
    assert pd.read_parquet(run.path / "trials.parquet")["trial_id"].tolist() == [0, 1, 2, 3]


def test_a_failed_background_write_is_raised_by_the_next_flush(tmp_path):
    # A real small file system, full by the time the background thread writes the second part.
    from tests.adversarial.test_inputs import leave_free, tmpfs

    with tmpfs(tmp_path / "small", "512k") as small:
        run = open_run(small, "sweep", 'name = "sweep"\n', fsync=False)
        writer = Writer(run)
        writer.write_trial(*trial(0))
        writer.flush()
        writer.settle()   # the tables' folders exist now
        leave_free(small, 0)
        writer.write_trial(*trial(1, epochs=200))
        writer.flush()    # returns: the write fails in the background
        with pytest.raises(OSError) as failed:
            writer.settle()
        assert failed.value.errno == errno.ENOSPC
        writer.close()
        assert pd.read_parquet(run.path / "trials.parquet")["trial_id"].tolist() == [0]   # the first, whole
