"""Resuming a babysat run: where it goes on from, the best it goes back to, and the rows a kill kept
off the disk.

All of it is read before anything is written or trained. `refuse_links(run_dir)` refuses checkpoints
that are symbolic links (the run's state would come from, and go to, outside its folder).
`resume_point(run_dir)` reads the checkpoint a `--resume` continues from, and refuses a run whose
tables hold rows but whose checkpoints all fail to read (starting over would write every epoch
twice), naming the files; a sweep's folder is refused before, by the run lifecycle. `best_point`
finds the best state that checkpoint goes back to, or says that none reads. `write_missing` writes
back the rows a checkpoint holds that a kill kept off the disk, each once.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Mapping

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


def refuse_links(run_dir: Path) -> None:
    """Raise ValueError naming the first symbolic link among the run's checkpoints (the folder or a
    file in it): a run's state is never read from, nor written to, outside its folder. Reads only."""
    folder = Path(run_dir) / CHECKPOINTS
    links = [folder] if folder.is_symlink() else sorted(
        Path(e.path) for e in os.scandir(folder) if e.is_symlink()) if folder.is_dir() else []
    if links:
        raise ValueError(f"checkpoints: {links[0]} is a symbolic link; caviar never reads or writes a run's "
                         "checkpoints through one: remove it, or start the run over with --overwrite")


def _warned(load: Callable[[], Any]) -> tuple[Any, list[Any]]:
    """`load()`, and the corrupt-checkpoint warnings it gave (not yet shown)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = load()
    return found, [w.message for w in caught]


def _show(caught: list[Any]) -> None:
    for message in caught:
        print(f"caviar babysit: warning: {message}", file=sys.stderr, flush=True)


def _counted(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


def resume_point(run_dir: Path) -> Checkpoint | None:
    """The newest readable checkpoint of the babysat run in `run_dir`, read without writing anything;
    None when nothing was saved yet (a fresh start loses nothing). A corrupt checkpoint skipped on
    the way is one warning line on stderr.

    Raises ValueError when no checkpoint reads but the tables hold rows (starting over on top of
    them would write every epoch twice), naming the checkpoint files that do not read.
    """
    run_dir = Path(run_dir)
    last, caught = _warned(CheckpointStore(run_dir / CHECKPOINTS).load_last)
    if last is None:
        epochs, events = table_rows(run_dir, "epochs"), table_rows(run_dir, "events")
        if epochs or events:
            held = " and ".join(_counted(n, what) for n, what in ((epochs, "epoch"), (events, "event")) if n)
            corrupt = [p for w in caught for p in getattr(w, "paths", ())]
            why = "every checkpoint is corrupt" if caught else "there is no checkpoint"
            named = ", ".join(str(p.relative_to(run_dir)) for p in corrupt)
            which = f": {named} {'does' if len(corrupt) == 1 else 'do'} not read" if corrupt else ""
            raise ValueError(f"--resume: {run_dir.name!r} cannot go on ({why}, but its tables hold {held}){which}; "
                             "start it over with --overwrite")
    _show(caught)
    return last


def best_point(run_dir: Path, last: Checkpoint) -> tuple[Checkpoint, str]:
    """The best state a resume from `last` goes back to (on a rollback, and at the end), read before
    anything trains: the checkpoint of the best epoch `last` knows of, from best.npz or either other
    copy. When none reads, `last` stands in for it and the second value says what was lost (else "");
    both are said on stderr at once.
    """
    epoch = int(last.meta.get("policy", {}).get("best_epoch", 0))
    if epoch == int(last.meta["epoch"]):
        return last, ""
    store = CheckpointStore(Path(run_dir) / CHECKPOINTS)
    best, caught = _warned(store.load_best)
    if best is None or best.meta.get("epoch") != epoch:  # none, or a best a kill's lost branch saved
        best, more = _warned(lambda: store.load_epoch(epoch))
        caught += more
    _show(caught)
    if best is not None:
        return best, ""
    lost = f"the best checkpoint, of epoch {epoch}, does not read"
    print(f"caviar babysit: warning: {lost}; until a new best, rollbacks go back to epoch {last.meta['epoch']} "
          "and the run ends on its newest readable checkpoint", file=sys.stderr, flush=True)
    return last, lost


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
