"""Resuming a babysat run: where it goes on from, and the rows a kill kept off the disk.

`resume_point(run_dir)` reads the checkpoint a `--resume` continues from before anything is written,
and refuses a run whose tables hold rows but whose checkpoints all fail to read (starting over would
write every epoch twice); a sweep's folder is refused before, by the run lifecycle. `write_missing` writes back the rows a checkpoint holds that a kill kept off
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
from caviar.store.layout import visible_parts
from caviar.store.vocabulary import CHECKPOINTS

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


def resume_point(run_dir: Path) -> Checkpoint | None:
    """The newest readable checkpoint of the babysat run in `run_dir`, read without writing anything;
    None when nothing was saved yet (a fresh start loses nothing). A corrupt checkpoint skipped on
    the way is one warning line on stderr.

    Raises ValueError when no checkpoint reads but the tables hold rows: starting over on top of them
    would write every epoch twice.
    """
    run_dir = Path(run_dir)
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
