"""The run folder's format, shared by the writer and the readers.

    OUT/NAME/job.toml                       the job as run
    OUT/NAME/trials.parquet/part-000000.parquet, part-000001.parquet, ...
    OUT/NAME/epochs.parquet/...  events.parquet/...  checkpoints/

A table is `OUT/NAME/<table>.parquet`: one file, or a folder of part files `part-<seq>.parquet`
(compacted: `part-<first>-<last>.parquet`, which covers the parts in that range; a covered part
still on disk is a leftover of an interrupted compaction and is never read). Names starting with "."
are temporary files and are never read either. Nothing here writes.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, NamedTuple

import pyarrow as pa

from caviar.store.vocabulary import CHECKPOINTS, COLUMNS, JOB_FILE, TABLES, RunKind

_PART = re.compile(r"part-(\d+)(?:-(\d+))?\.parquet")


# ----------------------------------------------------------------------------- the folder format

class Part(NamedTuple):
    """A part file and the range of sequence numbers it holds (lo == hi unless compacted)."""
    lo: int
    hi: int
    path: Path


def list_parts(folder: Path) -> list[Part]:
    """caviar's part files in a table folder (covered ones included), in sequence order."""
    parts = []
    for entry in os.scandir(folder):
        match = _PART.fullmatch(entry.name)
        if match:
            lo = int(match[1])
            parts.append(Part(lo, int(match[2] or lo), Path(entry.path)))
    return sorted(parts)


def covered_parts(parts: list[Part]) -> list[Part]:
    """Parts whose rows are also in a wider compacted part: left behind by an interrupted compaction."""
    merged = [p for p in parts if p.hi > p.lo]  # one per compaction: this stays O(parts)
    return [p for p in parts if any(m.lo <= p.lo and p.hi <= m.hi and m.hi - m.lo > p.hi - p.lo
                                    for m in merged)]


def visible_parts(table_path: Path) -> list[Path]:
    """The files that hold a table, each row exactly once: `table_path` itself when it is one file,
    else its uncovered parts in sequence order, then any other .parquet file in it (pandas reads those too)."""
    table_path = Path(table_path)
    if table_path.is_file():
        return [table_path]
    if not table_path.is_dir():
        return []
    parts = list_parts(table_path)
    hidden = set(covered_parts(parts))
    foreign = sorted(Path(e.path) for e in os.scandir(table_path) if e.name.endswith(".parquet")
                     and not e.name.startswith((".", "_")) and not _PART.fullmatch(e.name))
    return [p.path for p in parts if p not in hidden] + foreign


def column_order(table: str, names: Iterable[str]) -> list[str]:
    """`names` in display order: declared columns as the README lists them (params after status),
    then the others in the order given."""
    slots = list(COLUMNS[table])

    def slot(name: str) -> int:
        if name in COLUMNS[table]:
            return slots.index(name)
        return slots.index("params_*") if name.startswith("params_") and "params_*" in slots else len(slots)
    return sorted(names, key=slot)   # stable: the given order within a slot


def is_run(path: Path) -> bool:
    """Whether a folder looks like a caviar run: a job.toml or one of the tables."""
    return path.is_dir() and ((path / JOB_FILE).is_file() or
                              any((path / f"{t}.parquet").exists() for t in TABLES))


def holds_results(run: Path) -> bool:
    """Whether a run folder has anything worth refusing to overwrite: a table part or a checkpoint."""
    for name in TABLES:
        table = run / f"{name}.parquet"
        if table.is_file() or (table.is_dir() and visible_parts(table)):
            return True
    ckpt = run / CHECKPOINTS
    return ckpt.is_dir() and any(e.name.endswith(".npz") and not e.name.startswith(".")
                                 for e in os.scandir(ckpt))


def folder_kind(run: Path) -> RunKind | None:
    """What wrote the run folder `run`, from its files alone (part footers, never data): a sweep has a
    trials table or epochs with a trial_id; a babysat run has epochs without one, an events table or
    a checkpoints folder. None for a folder that holds neither (new, or killed before its first rows)."""
    import pyarrow.parquet as pq

    run = Path(run)
    if visible_parts(run / "trials.parquet"):
        return RunKind.SWEEP
    for part in visible_parts(run / "epochs.parquet")[:1]:
        try:
            return RunKind.SWEEP if "trial_id" in pq.read_schema(part).names else RunKind.BABYSIT
        except (OSError, pa.ArrowException):
            pass  # unreadable: the other files decide
    # Only a babysit writes events and checkpoints: even an empty events table marks its folder.
    if (run / "events.parquet").exists() or (run / CHECKPOINTS).is_dir():
        return RunKind.BABYSIT
    return None
