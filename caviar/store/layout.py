"""The run folder's format, shared by the writer and the readers.

    OUT/NAME/job.toml                       the job as run
    OUT/NAME/trials.parquet/part-000000.parquet, part-000001.parquet, ...
    OUT/NAME/epochs.parquet/...  events.parquet/...  checkpoints/

A table is `OUT/NAME/<table>.parquet`: one file, or a folder of part files `part-<seq>.parquet`
(compacted: `part-<first>-<last>.parquet`, which covers the parts in that range; a covered part
still on disk is a leftover of an interrupted compaction and is never read). Names starting with "."
are temporary files and are never read either. Nothing here writes.

Nothing inside a run folder is followed out of it: a part file that is a symbolic link is never
listed (`linked_entries` names such links, for the readers' warnings and a resume's refusal), and a
table that is itself a link has no parts here. A compaction builds its table in a hidden sibling
folder `.<table>.parquet.compact-<hex>` and swaps the two (`compaction_folders`), or, where two
folders cannot be swapped, renames the table aside to `.<table>.parquet.aside-<hex>` (`aside_folders`)
before renaming the new one in; a part that does not
read is set aside in `.quarantine/<table>/` by a sweep's resume. Hidden, both are never read.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Iterable, NamedTuple

import pyarrow as pa

from caviar.store.vocabulary import CHECKPOINTS, COLUMNS, JOB_FILE, TABLES, TIMESTAMP, RunKind

_PART = re.compile(r"part-(\d+)(?:-(\d+))?\.parquet")
QUARANTINE = ".quarantine"      # OUT/NAME/.quarantine/<table>/<file>: parts that did not read
POPULATION_COMMIT = "population.npz"   # OUT/NAME/checkpoints/: a population's last committed generation


# ----------------------------------------------------------------------------- the folder format

class Part(NamedTuple):
    """A part file and the range of sequence numbers it holds (lo == hi unless compacted)."""
    lo: int
    hi: int
    path: Path


def part_range(name: str) -> tuple[int, int] | None:
    """(lo, hi) of a part file's name (`part-000003.parquet` -> (3, 3), `part-000000-000009.parquet`
    -> (0, 9)); None for a name that is not one of caviar's parts."""
    match = _PART.fullmatch(name)
    return None if match is None else (int(match[1]), int(match[2] or match[1]))


def list_parts(folder: Path) -> list[Part]:
    """caviar's part files in a table folder (covered ones included), in sequence order."""
    parts = []
    for entry in os.scandir(folder):
        bounds = part_range(entry.name)
        if bounds and entry.is_file(follow_symlinks=False):   # never a link out of the folder
            parts.append(Part(*bounds, Path(entry.path)))
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
    if table_path.is_symlink():
        return []        # a table somewhere else: readers refuse it, see `linked_entries`
    if table_path.is_file():
        return [table_path]
    if not table_path.is_dir():
        return []
    parts = list_parts(table_path)
    hidden = set(covered_parts(parts))
    foreign = sorted(Path(e.path) for e in os.scandir(table_path) if e.name.endswith(".parquet")
                     and not e.name.startswith((".", "_")) and not _PART.fullmatch(e.name)
                     and e.is_file(follow_symlinks=False))
    return [p.path for p in parts if p not in hidden] + foreign


def linked_entries(table_path: Path) -> list[Path]:
    """The symbolic links a reader of the table would follow out of the run folder: `table_path`
    itself when it is one, else the entries of its folder that are links and not hidden (names
    starting with "." or "_", which no reader opens)."""
    table_path = Path(table_path)
    if table_path.is_symlink():
        return [table_path]
    if not table_path.is_dir():
        return []
    return sorted(Path(e.path) for e in os.scandir(table_path)
                  if e.is_symlink() and not e.name.startswith((".", "_")))


def link_refusal(path: Path) -> str:
    """What a refused link is told: one line naming it."""
    return (f"{path} is a symbolic link: caviar follows no link out of a run folder "
            "(put the files themselves there, or remove the link)")


def read_error(path: Path) -> str | None:
    """Why the part file `path` does not read, in one line naming it; None when every row reads.

    Only a damaged content is an answer (bad magic bytes, a bad footer, a truncated file): the bytes
    are read by Python first, so an error of the machine (EIO, EACCES, ...) is raised as the OSError
    it is, and is never mistaken for a part to set aside (pyarrow tells both as OSError)."""
    import pyarrow.parquet as pq

    data = Path(path).read_bytes()        # OSError: the machine's, raised unchanged
    try:
        pq.ParquetFile(pa.BufferReader(data)).read()
    except (OSError, pa.ArrowException) as exc:   # no I/O left here: the bytes themselves are bad
        return unreadable(path, exc)
    return None


def unreadable(path: Path, exc: BaseException) -> str:
    """One line naming a part file that does not read, and why."""
    why = " ".join(str(exc).split()) or type(exc).__name__
    return f"{path}: the part file does not read ({why[:200]})"


def compaction_folders(run: Path) -> list[Path]:
    """The hidden folders a compaction builds its tables in, beside them: a leftover of a crash
    (before the swap it holds the new merged part, after it the old parts), never read."""
    names = tuple(f".{t}.parquet.compact-" for t in TABLES)
    return sorted(Path(e.path) for e in os.scandir(run) if e.name.startswith(names)) if Path(run).is_dir() else []


def aside_folder(table_path: Path, tag: str) -> Path:
    """Where a compaction that cannot swap two folders puts the live table `table_path` for the moment
    its new folder is renamed in: `.<table>.parquet.aside-<tag>`, beside it (see `aside_folders`)."""
    table_path = Path(table_path)
    return table_path.with_name(f".{table_path.name}.aside-{tag}")


def aside_folders(table_path: Path) -> list[Path]:
    """The live tables a compaction set aside, never read: a leftover of a crash. With no table at
    `table_path` one of them is the table (the crash came before the new one moved in: a resume puts
    it back); beside a table, they are the old one (a resume deletes them)."""
    table_path = Path(table_path)
    prefix = f".{table_path.name}.aside-"
    run = table_path.parent
    return sorted(Path(e.path) for e in os.scandir(run) if e.name.startswith(prefix)) if run.is_dir() else []


def column_order(table: str, names: Iterable[str]) -> list[str]:
    """`names` in display order: declared columns as the README lists them (params after status,
    the fixed model values after the times), then the others in the order given."""
    slots = list(COLUMNS[table])
    prefixes = [slot[:-1] for slot in slots if slot.endswith("*")]

    def slot(name: str) -> int:
        if name in COLUMNS[table]:
            return slots.index(name)
        prefix = next((p for p in prefixes if name.startswith(p)), None)
        return slots.index(prefix + "*") if prefix is not None else len(slots)
    return sorted(names, key=slot)   # stable: the given order within a slot


def arrow_type(name: str) -> pa.DataType:
    """A declared column type (`caviar.store.vocabulary.COLUMNS`) as Arrow's: an Arrow alias
    ("int64", "string", ...), or `TIMESTAMP`, microseconds in UTC."""
    return pa.timestamp("us", tz="UTC") if name == TIMESTAMP else pa.type_for_alias(name)


def is_run(path: Path) -> bool:
    """Whether a folder looks like a caviar run: a job.toml or one of the tables."""
    return path.is_dir() and ((path / JOB_FILE).is_file() or
                              any((path / f"{t}.parquet").exists() for t in TABLES))


def holds_results(run: Path) -> bool:
    """Whether a run folder has anything worth refusing to overwrite: a table part or a checkpoint
    (or a link where a table or a part would be: only --resume, which refuses it, or --overwrite)."""
    for name in TABLES:
        table = run / f"{name}.parquet"
        if table.is_file() or (table.is_dir() and visible_parts(table)) or linked_entries(table):
            return True
        if not table.exists() and any(visible_parts(aside) for aside in aside_folders(table)):
            return True    # a table a compaction set aside when it was killed: a resume puts it back
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
    # A population commits its first generation before writing its first rows: that file marks its folder.
    if (run / CHECKPOINTS / POPULATION_COMMIT).is_file():
        return RunKind.SWEEP
    # Only a babysit writes events and checkpoints: even an empty events table marks its folder.
    if (run / "events.parquet").exists() or (run / CHECKPOINTS).is_dir():
        return RunKind.BABYSIT
    return None
