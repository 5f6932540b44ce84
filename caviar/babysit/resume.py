"""Resuming a babysat run: where it goes on from, and the rows a kill kept off the disk.

`resume_point(run_dir)` reads the checkpoint a `--resume` continues from before anything is written,
and refuses what must not be resumed: a sweep's folder (babysit would append its rows to a sweep),
and a run whose tables hold rows but whose checkpoints all fail to read (starting over would write
every epoch twice). `write_missing` writes back the rows a checkpoint holds that a kill kept off
the disk, each once.
"""

from __future__ import annotations

import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from caviar.store.checkpoints import Checkpoint, CheckpointStore
from caviar.store.reader import CHECKPOINTS, visible_parts

_KEYS = {"epochs": ("epoch",), "events": ("epoch", "event", "detail")}  # what tells two rows apart


def table_rows(run_dir: Path, name: str) -> int:
    """How many rows table `name` of a run holds, from the part files' footers (no data is read).
    A part whose footer does not read counts as one row: something is there."""
    rows = 0
    for part in visible_parts(Path(run_dir) / f"{name}.parquet"):
        try:
            rows += pq.read_metadata(part).num_rows
        except (OSError, pa.ArrowException):
            rows += 1
    return rows


def holds_sweep(run_dir: Path) -> bool:
    """Whether `run_dir` holds a sweep: a trials table, or epochs with a trial_id column."""
    run_dir = Path(run_dir)
    if visible_parts(run_dir / "trials.parquet"):
        return True
    for part in visible_parts(run_dir / "epochs.parquet")[:1]:
        try:
            return "trial_id" in pq.read_schema(part).names
        except (OSError, pa.ArrowException):
            pass  # unreadable: the row count of resume_point decides
    return False


def check_babysit_folder(run_dir: Path) -> None:
    """Raise ValueError when `run_dir` holds a sweep (a trials table, or epochs with a trial_id):
    a babysit must never write its rows into a sweep's folder."""
    run_dir = Path(run_dir)
    if holds_sweep(run_dir):
        raise ValueError(f"--resume: {run_dir.name!r} is a sweep (it has trials), not a babysat run; "
                         f"babysit its best trial into a new run with --from {run_dir.name}")


def resume_point(run_dir: Path) -> Checkpoint | None:
    """The newest readable checkpoint of the babysat run in `run_dir`, read without writing anything;
    None when nothing was saved yet (a fresh start loses nothing). A corrupt checkpoint skipped on
    the way is one warning line on stderr.

    Raises ValueError when the folder is a sweep, or when no checkpoint reads but the tables hold
    rows: starting over on top of them would write every epoch twice.
    """
    run_dir = Path(run_dir)
    check_babysit_folder(run_dir)
    store = CheckpointStore(run_dir / CHECKPOINTS)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        last = store.load_last()
    if last is None:
        epochs, events = table_rows(run_dir, "epochs"), table_rows(run_dir, "events")
        if epochs or events:
            why = "every checkpoint is corrupt" if caught else "there is no checkpoint"
            raise ValueError(f"--resume: {run_dir.name!r} cannot go on ({why}, but its tables hold {epochs} "
                             "epochs); start it over with --overwrite")
    for warning in caught:
        print(f"caviar babysit: warning: {warning.message}", file=sys.stderr, flush=True)
    return last


def write_missing(run: Any, rows: Mapping[str, list[dict]], *, upto: int | None = None) -> None:
    """Write those of `rows` that are not on disk yet (by key, counting repeats), so that a step
    redone after a kill never writes a row twice. `upto`: first drop the rows of later epochs (on a
    resume from the checkpoint of epoch `upto`, rows written after a checkpoint that turned out corrupt).

    Reads both tables whole: only a resumed run calls it.
    """
    import pyarrow.compute as pc

    from caviar.store.reader import read_table

    for name, keys in _KEYS.items():
        disk = read_table(run.path / f"{name}.parquet")
        if disk is not None and upto is not None and disk.num_rows and pc.max(disk["epoch"]).as_py() > upto:
            run.table(name).compact(keep=lambda table: pc.less_equal(table["epoch"], upto))
            disk = disk.filter(pc.less_equal(disk["epoch"], upto))
            print(f"caviar babysit: warning: dropped {name} rows after epoch {upto} (checkpoint lost)", file=sys.stderr)
        have = Counter(zip(*(disk[k].to_pylist() for k in keys))) if disk is not None else Counter()
        missing = []
        for row in rows.get(name, []):
            key = tuple(row.get(k) for k in keys)
            if have[key] > 0:
                have[key] -= 1
            else:
                missing.append(row)
        if missing:
            run.table(name).append(missing)
            run.table(name).flush()
