"""Resuming a babysat run (caviar/babysit/resume.py): where it goes on from, the refusal of a run whose
checkpoints are all lost while its tables hold rows, the rows a kill kept off the disk written back
once each, and row counts read from part footers."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from caviar.babysit.resume import resume_point, table_rows, write_missing
from caviar.store.checkpoints import CheckpointStore
from caviar.store.folder import open_run
from tests.run_factory import write_table
from tests.support import snapshot


def state(epoch: int) -> dict[str, np.ndarray]:
    return {"weights": np.full(3, float(epoch)), "epoch": np.array(epoch)}


def saved_run(root: Path, name: str = "panda", epochs: int = 3, keep: int = 3) -> Path:
    """A babysat run's folder with a checkpoint of each of `epochs` epochs (the newest `keep` kept)."""
    run = root / name
    store = CheckpointStore(run / "checkpoints", keep=keep, fsync=False)
    for epoch in range(1, epochs + 1):
        store.save(epoch, state(epoch), {"epoch": epoch, "learning_rate": 0.01 / epoch}, best=epoch == 2)
    return run


def epoch_rows(*epochs: int) -> list[dict[str, Any]]:
    return [{"epoch": e, "learning_rate": 0.01, "seconds": 0.5, "val_accuracy": 0.5 + e / 100, "decision": "improved"}
            for e in epochs]


def event(epoch: int, kind: str = "improved", detail: str = "checkpoint saved") -> dict[str, Any]:
    return {"epoch": epoch, "event": kind, "base_learning_rate": 0.01, "score": 0.5, "detail": detail}


def corrupt_every_checkpoint(run: Path) -> None:
    for checkpoint in (run / "checkpoints").iterdir():
        checkpoint.write_bytes(checkpoint.read_bytes()[:20])


# --- resume_point ------------------------------------------------------------------------------------

def test_a_fresh_folder_has_no_resume_point(tmp_path, capsys):
    run = open_run(tmp_path, "fresh", 'name = "fresh"\n', fsync=False).path
    before = snapshot(run, folders=True)
    assert resume_point(run) is None
    assert snapshot(run, folders=True) == before        # nothing written, not even a checkpoints folder
    assert capsys.readouterr() == ("", "")


def test_the_resume_point_is_the_newest_checkpoint(tmp_path, capsys):
    run = saved_run(tmp_path, epochs=4)
    last = resume_point(run)
    assert last.meta["epoch"] == 4 and last.path == run / "checkpoints" / "last.npz"
    np.testing.assert_array_equal(last.state["weights"], state(4)["weights"])
    assert capsys.readouterr().err == ""


def test_a_corrupt_newest_checkpoint_falls_back_to_the_one_before_with_one_warning(tmp_path, capsys):
    run = saved_run(tmp_path, epochs=3)
    last = run / "checkpoints" / "last.npz"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])   # in place: its epoch file is the same file
    found = resume_point(run)
    assert found.meta["epoch"] == 2 and found.path == run / "checkpoints" / "epoch-000002.npz"
    np.testing.assert_array_equal(found.state["weights"], state(2)["weights"])
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1
    assert warning[0].startswith("caviar babysit: warning: corrupt checkpoint ")
    assert warning[0].endswith(f"using {run / 'checkpoints' / 'epoch-000002.npz'}")


def test_every_checkpoint_corrupt_while_the_tables_hold_rows_is_refused(tmp_path):
    run = saved_run(tmp_path, epochs=3)
    write_table(run / "epochs.parquet", pd.DataFrame(epoch_rows(1, 2, 3)))
    corrupt_every_checkpoint(run)
    before = snapshot(run)
    with pytest.raises(ValueError) as refused:
        resume_point(run)
    message = str(refused.value)
    assert message.startswith("--resume: 'panda' cannot go on (every checkpoint is corrupt, "
                              "but its tables hold 3 epochs)")
    assert message.endswith("start it over with --overwrite")
    assert snapshot(run) == before


def test_no_checkpoint_at_all_while_the_tables_hold_rows_is_refused(tmp_path):
    run = tmp_path / "panda"
    write_table(run / "events.parquet", pd.DataFrame([event(1)]))
    with pytest.raises(ValueError, match=r"^--resume: 'panda' cannot go on \(there is no checkpoint"):
        resume_point(run)


def test_every_checkpoint_corrupt_with_empty_tables_starts_over(tmp_path, capsys):
    run = saved_run(tmp_path, epochs=2)
    corrupt_every_checkpoint(run)
    assert resume_point(run) is None                     # nothing written yet: nothing to write twice
    assert "no older checkpoint reads" in capsys.readouterr().err


# --- write_missing ------------------------------------------------------------------------------------

def open_panda(root: Path, epochs: list[dict] = (), events: list[dict] = ()) -> Any:
    """A babysat run's folder open for writing, holding `epochs` and `events` rows on disk."""
    run = open_run(root, "panda", 'name = "panda"\n', fsync=False)
    for name, rows in (("epochs", epochs), ("events", events)):
        if rows:
            run.table(name).append(rows)
            run.table(name).flush()
    return open_run(root, "panda", "", resume=True, fsync=False)


def on_disk(run: Any, name: str) -> pd.DataFrame:
    return pd.read_parquet(run.path / f"{name}.parquet")


def test_only_rows_not_yet_on_disk_are_written(tmp_path):
    run = open_panda(tmp_path, epoch_rows(1, 2), [event(1), event(2)])
    write_missing(run, {"epochs": epoch_rows(1, 2, 3, 4), "events": [event(1), event(2), event(3)]})
    assert on_disk(run, "epochs")["epoch"].tolist() == [1, 2, 3, 4]
    assert on_disk(run, "events")["epoch"].tolist() == [1, 2, 3]
    assert on_disk(run, "epochs")["val_accuracy"].tolist() == pytest.approx([0.51, 0.52, 0.53, 0.54])


def test_writing_the_same_rows_again_writes_nothing(tmp_path):
    run = open_panda(tmp_path, epoch_rows(1, 2), [event(1)])
    rows = {"epochs": epoch_rows(1, 2, 3), "events": [event(1), event(3)]}
    write_missing(run, rows)
    after_first = snapshot(run.path)
    write_missing(run, rows)
    assert snapshot(run.path) == after_first


def test_repeated_rows_are_counted(tmp_path):
    # Two equal nudges at one epoch are two rows: one on disk, so one of them is missing.
    nudge = event(2, "nudge", "learning_rate=0.001 (from the command line)")
    run = open_panda(tmp_path, epoch_rows(1, 2), [event(1), nudge])
    write_missing(run, {"events": [event(1), nudge, nudge, event(2, "plateau", "no improvement")]})
    events = on_disk(run, "events")
    assert list(zip(events["epoch"], events["event"])) == [(1, "improved"), (2, "nudge"), (2, "nudge"), (2, "plateau")]
    assert on_disk(run, "epochs")["epoch"].tolist() == [1, 2]   # a table with no rows given is left as it is


def test_events_that_differ_only_in_detail_are_different_rows(tmp_path):
    run = open_panda(tmp_path, [], [event(3, "nudge", "learning_rate=0.001")])
    write_missing(run, {"events": [event(3, "nudge", "learning_rate=0.001"), event(3, "nudge", "patience=5")]})
    assert on_disk(run, "events")["detail"].tolist() == ["learning_rate=0.001", "patience=5"]


def test_every_row_is_written_to_a_table_not_on_disk_yet(tmp_path):
    run = open_panda(tmp_path)
    write_missing(run, {"epochs": epoch_rows(1, 1), "events": [event(1)]})
    assert on_disk(run, "epochs")["epoch"].tolist() == [1, 1]
    assert on_disk(run, "events")["epoch"].tolist() == [1]


def test_rows_after_upto_are_dropped_from_disk_first(tmp_path, capsys):
    # Resumed from the checkpoint of epoch 3 (a later one turned out corrupt): the rows of epochs 4
    # and 5 on disk belong to work that is redone.
    run = open_panda(tmp_path, epoch_rows(1, 2, 3, 4, 5), [event(e) for e in (1, 3, 4, 5)])
    write_missing(run, {"epochs": epoch_rows(1, 2, 3), "events": [event(1), event(3)]}, upto=3)
    assert on_disk(run, "epochs")["epoch"].tolist() == [1, 2, 3]
    assert on_disk(run, "events")["epoch"].tolist() == [1, 3]
    err = capsys.readouterr().err
    assert "dropped epochs rows after epoch 3 (checkpoint lost)" in err
    assert "dropped events rows after epoch 3 (checkpoint lost)" in err


def test_rows_dropped_after_upto_are_written_again_from_the_checkpoint(tmp_path):
    run = open_panda(tmp_path, epoch_rows(1, 2, 3, 4), [])
    write_missing(run, {"epochs": epoch_rows(1, 2, 3)}, upto=2)
    assert on_disk(run, "epochs")["epoch"].tolist() == [1, 2, 3]   # 3 and 4 dropped, 3 written back once


def test_upto_at_or_beyond_the_last_epoch_on_disk_drops_nothing(tmp_path, capsys):
    run = open_panda(tmp_path, epoch_rows(1, 2, 3), [event(3)])
    before = snapshot(run.path)
    write_missing(run, {"epochs": epoch_rows(1, 2, 3), "events": [event(3)]}, upto=3)
    write_missing(run, {"epochs": epoch_rows(1, 2, 3)}, upto=7)
    assert snapshot(run.path) == before
    assert capsys.readouterr().err == ""


def test_without_upto_later_rows_on_disk_stay(tmp_path):
    run = open_panda(tmp_path, epoch_rows(1, 2, 3, 4), [])
    write_missing(run, {"epochs": epoch_rows(1, 2)})
    assert on_disk(run, "epochs")["epoch"].tolist() == [1, 2, 3, 4]


# --- table_rows ---------------------------------------------------------------------------------------

def test_table_rows_adds_up_the_parts(tmp_path):
    run = tmp_path / "panda"
    write_table(run / "epochs.parquet", pd.DataFrame(epoch_rows(*range(1, 8))), parts=3)
    write_table(run / "events.parquet", pd.DataFrame([event(1), event(2)]))
    assert table_rows(run, "epochs") == 7
    assert table_rows(run, "events") == 2
    assert table_rows(run, "trials") == 0            # a table that is not there
    assert table_rows(tmp_path / "nowhere", "epochs") == 0


def test_table_rows_counts_an_unreadable_part_as_one_and_skips_hidden_and_covered_ones(tmp_path):
    table = tmp_path / "panda" / "epochs.parquet"
    write_table(table, pd.DataFrame(epoch_rows(1, 2, 3, 4)), parts=2)   # part-000000, part-000001: 2 + 2
    # An interrupted compaction: the merged part is in place, the parts it covers not yet deleted.
    shutil.copy(table / "part-000000.parquet", table / "part-000000-000001.parquet")
    (table / ".part-000002.parquet.123-abc.tmp").write_bytes(b"half a part")   # a temp file: never read
    assert table_rows(tmp_path / "panda", "epochs") == 2     # only the merged part (here holding two rows)
    (table / "part-000005.parquet").write_bytes(b"garbage, not parquet")
    assert table_rows(tmp_path / "panda", "epochs") == 3     # something is there


def test_table_rows_of_a_single_file_table(tmp_path):
    run = tmp_path / "panda"
    run.mkdir()
    pd.DataFrame(epoch_rows(1, 2, 3)).to_parquet(run / "epochs.parquet")
    assert table_rows(run, "epochs") == 3
