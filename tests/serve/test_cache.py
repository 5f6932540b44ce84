"""A table read on by its new parts only: rows stay in place across a compaction; a replaced or
shrunk table starts a new generation. Real part files, written by the store's own writer."""

from __future__ import annotations

import os
import shutil

from caviar.serve import cache as cache_module
from caviar.serve.cache import TableCache
from caviar.store.writer import TableWriter


def rows(cache: TableCache) -> list[int]:
    return [] if cache.table is None else cache.table.column("trial_id").to_pylist()


def test_new_parts_are_read_once_and_a_compaction_keeps_rows_and_generation(tmp_path, monkeypatch):
    writer = TableWriter(tmp_path, "trials", fsync=False)
    cache = TableCache(tmp_path / "trials.parquet")
    cache.refresh()
    assert cache.table is None and cache.rows == 0
    for start in (0, 3, 6):
        writer.append([{"trial_id": i, "score": i / 10} for i in range(start, start + 3)])
        writer.flush()
    cache.refresh()
    assert rows(cache) == list(range(9)) and cache.generation == 0

    read = []   # the parts whose rows are read (a footer read is not)
    real = cache_module._read
    monkeypatch.setattr(cache_module, "_read", lambda path: read.append(os.path.basename(path)) or real(path))
    writer.append([{"trial_id": 9, "score": 0.9}])
    writer.flush()
    cache.refresh()
    assert read == ["part-000003.parquet"] and rows(cache) == list(range(10))

    writer.compact()   # four parts merged into one: the same rows, in the same order
    read.clear()
    cache.refresh()
    assert read == [] and rows(cache) == list(range(10)) and cache.generation == 0
    writer.append([{"trial_id": 10, "score": 1.0}])
    writer.flush()
    cache.refresh()
    assert rows(cache) == list(range(11)) and cache.generation == 0


def test_a_table_that_lost_rows_or_was_replaced_starts_a_new_generation(tmp_path):
    writer = TableWriter(tmp_path, "trials", fsync=False)
    for start in (0, 2):
        writer.append([{"trial_id": start}, {"trial_id": start + 1}])
        writer.flush()
    cache = TableCache(tmp_path / "trials.parquet")
    cache.refresh()
    (tmp_path / "trials.parquet" / "part-000000.parquet").unlink()   # set aside by a resume
    cache.refresh()
    assert cache.generation == 1 and rows(cache) == [2, 3]

    shutil.rmtree(tmp_path / "trials.parquet")   # replaced (--overwrite) by a shorter table
    other = TableWriter(tmp_path, "trials", fsync=False)
    other.append([{"trial_id": 7}])
    other.flush()
    cache.refresh()
    assert cache.generation == 2 and rows(cache) == [7]
    shutil.rmtree(tmp_path / "trials.parquet")
    cache.refresh()
    assert cache.generation == 3 and cache.table is None


def test_a_table_or_part_that_is_a_link_is_never_read(tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    writer = TableWriter(elsewhere, "trials", fsync=False)
    writer.append([{"trial_id": 1}])
    writer.flush()
    run = tmp_path / "run"
    run.mkdir()
    (run / "trials.parquet").symlink_to(elsewhere / "trials.parquet")
    cache = TableCache(run / "trials.parquet")
    cache.refresh()
    assert cache.table is None
    (tmp_path / "own").mkdir()
    own = TableWriter(tmp_path / "own", "trials", fsync=False)
    own.append([{"trial_id": 2}])
    own.flush()
    (tmp_path / "own" / "trials.parquet" / "part-000001.parquet").symlink_to(elsewhere / "trials.parquet" / "part-000000.parquet")
    linked = TableCache(tmp_path / "own" / "trials.parquet")
    linked.refresh()
    assert rows(linked) == [2]   # the linked part is skipped, as caviar's reader skips it


def test_a_compaction_that_also_flushes_new_rows_gives_just_those(tmp_path):
    writer = TableWriter(tmp_path, "trials", fsync=False)
    writer.append([{"trial_id": 0}, {"trial_id": 1}])
    writer.flush()
    cache = TableCache(tmp_path / "trials.parquet")
    cache.refresh()
    writer.append([{"trial_id": 2}])   # still in memory: compact() flushes it, then merges
    writer.compact()
    cache.refresh()
    assert rows(cache) == [0, 1, 2] and cache.generation == 0 and cache.rows == 3


def test_a_settled_folder_is_not_listed_again_and_a_new_part_is_still_seen(tmp_path, monkeypatch):
    writer = TableWriter(tmp_path, "trials", fsync=False)
    writer.append([{"trial_id": 0}])
    writer.flush()
    folder = tmp_path / "trials.parquet"
    os.utime(folder, ns=(1_000_000_000, 1_000_000_000))   # last changed long ago
    cache = TableCache(folder)
    cache.refresh()
    listed = []
    real = cache_module._scan
    monkeypatch.setattr(cache_module, "_scan", lambda path: listed.append(path) or real(path))
    cache.refresh()
    assert listed == [] and rows(cache) == [0]
    writer.append([{"trial_id": 1}])
    writer.flush()                   # moving a part in changes the folder's time
    cache.refresh()
    assert len(listed) == 1 and rows(cache) == [0, 1]
