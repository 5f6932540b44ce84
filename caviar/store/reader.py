"""Reading results (read side): `load(path)` one run into pandas, `load_all(dir)` every run's trials.

Also the folder format both sides share: a table is `OUT/NAME/<table>.parquet`, either one file or
a folder of part files `part-<seq>.parquet` (compacted: `part-<first>-<last>.parquet`, which covers
the parts in that range; a covered part still on disk is a leftover of an interrupted compaction and
is never read). Names starting with "." are temp files and are never read either.

Reading never writes: a crashed run is read as it is (`open_run(resume=True)` repairs it).
"""

from __future__ import annotations

import os
import re
import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, NamedTuple

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["Run", "load", "load_all", "read_table", "to_frame"]

TABLES = ("trials", "epochs", "events")
JOB_FILE = "job.toml"
CHECKPOINTS = "checkpoints"

_I, _F, _S = pa.int64(), pa.float64(), pa.string()
# Column types fixed by DESIGN.md, in display order ("params_*" marks where the params go). Columns
# not listed: params_<name> take the type of their first non-null value (int64, float64, bool or
# string); any other column is a metric, float64 when numeric (strings stay strings).
DECLARED: dict[str, dict[str, pa.DataType | None]] = {
    "trials": {"trial_id": _I, "status": _S, "params_*": None, "score": _F, "epochs": _I,
               "seconds": _F, "seed": _I, "error": _S, "node": _S, "round": _I},
    "epochs": {"trial_id": _I, "epoch": _I, "learning_rate": _F, "seconds": _F, "decision": _S},
    "events": {"epoch": _I, "event": _S, "learning_rate": _F, "score": _F, "detail": _S},
}
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
    """`names` in display order: declared columns as DESIGN.md lists them (params after status),
    then the others in the order given."""
    slots = list(DECLARED[table])

    def slot(name: str) -> int:
        if name in DECLARED[table]:
            return slots.index(name)
        return slots.index("params_*") if name.startswith("params_") and "params_*" in slots else len(slots)
    return sorted(names, key=slot)   # stable: the given order within a slot


# ----------------------------------------------------------------------------- reading

def read_table(table_path: Path) -> pa.Table | None:
    """One table of a run as Arrow, parts concatenated in order, schemas unified (a column missing
    from early parts is null there). None when the table has no file yet.

    A part that vanishes while it is read (a running compaction merged it) means the folder changed:
    it is listed again. A part that does not read (damaged after it was written; caviar's own writes
    are atomic) is skipped with a warning rather than losing the whole run.
    """
    for _ in range(5):
        tables, changed = [], False
        for path in visible_parts(table_path):
            try:
                tables.append(pq.ParquetFile(path).read())
            except FileNotFoundError:
                changed = True
                break
            except (OSError, pa.ArrowException) as exc:
                warnings.warn(f"{path}: unreadable part skipped ({exc})", RuntimeWarning, stacklevel=2)
        if not changed:
            break
    if not tables:
        return None
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.concat_tables(tables, promote_options="permissive")  # foreign parts: int + float


def to_frame(table: pa.Table, order: str | None = None) -> pd.DataFrame:
    """Arrow -> pandas keeping types: int64 stays int64 (nullable `Int64` where it has nulls, never
    float), bool stays bool (`boolean` with nulls), strings are pandas strings. `order`: a table
    name whose display order the columns take."""
    if order is not None:
        table = table.select(column_order(order, table.column_names))
    frame = table.to_pandas()
    for name, col in zip(table.column_names, table.columns):
        if col.null_count and pa.types.is_integer(col.type):
            frame[name] = pd.Series(pd.Int64Dtype().__from_arrow__(col.cast(_I)), index=frame.index)
        elif col.null_count and pa.types.is_boolean(col.type):
            frame[name] = pd.Series(pd.BooleanDtype().__from_arrow__(col), index=frame.index)
    return frame


def _empty(table: str, kind: str) -> pa.Table:
    """The declared columns of a table a run has none of (epochs.trial_id is caviar only)."""
    names = [n for n in DECLARED[table] if n != "params_*"]
    if table == "epochs":
        names.remove("decision" if kind == "sweep" else "trial_id")
    return pa.schema([(n, DECLARED[table][n]) for n in names]).empty_table()


@dataclass(frozen=True, eq=False)
class Run:
    """One run folder read into pandas. Tables a run does not have are empty, with their columns."""
    path: Path
    name: str
    kind: str                 # "sweep" (caviar parallel) or "babysit" (panda)
    job: dict[str, Any]       # job.toml as run; {} when it is missing
    trials: pd.DataFrame = field(repr=False)
    epochs: pd.DataFrame = field(repr=False)
    events: pd.DataFrame = field(repr=False)


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


def _kind(path: Path, tables: dict[str, pa.Table | None]) -> str:
    if tables["trials"] is not None:
        return "sweep"
    if tables["epochs"] is not None:
        return "sweep" if "trial_id" in tables["epochs"].column_names else "babysit"
    ckpt = path / CHECKPOINTS
    babysat = tables["events"] is not None or (ckpt.is_dir() and any(ckpt.glob("*.npz")))
    return "babysit" if babysat else "sweep"


def load(path: str | Path) -> Run:
    """Read the run folder `path` (e.g. "results/digits") into a Run.

    Reads what is there: a folder of parts or one file per table, a run still being written or
    killed (temp files are skipped, parts without some columns get nulls there, a compaction cut
    short is read once). Raises ValueError when `path` is missing or not a caviar run.
    """
    path = Path(path)
    if not path.is_dir():
        raise ValueError(f"run: no run folder at {path}")
    if not is_run(path):
        raise ValueError(f"run: {path} is not a caviar run (no {JOB_FILE} and no trials, epochs or "
                         "events table)")
    job: dict[str, Any] = {}
    if (path / JOB_FILE).is_file():
        try:
            job = tomllib.loads((path / JOB_FILE).read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"run: {path / JOB_FILE} is not valid TOML ({exc})") from None
    tables = {t: read_table(path / f"{t}.parquet") for t in TABLES}
    kind = _kind(path, tables)
    frames = {t: to_frame(tables[t] if tables[t] is not None else _empty(t, kind), t) for t in TABLES}
    return Run(path=path, name=path.name, kind=kind, job=job, **frames)


def load_all(results_dir: str | Path = "results") -> pd.DataFrame:
    """The trials of every run under `results_dir`, one DataFrame with an `experiment` column (the
    run's name) first. Folders that are not runs, hidden ones and runs without trials are skipped;
    a column one run lacks is null for its rows."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results: no results folder at {results_dir}")
    tables = []
    for run in sorted(p for p in results_dir.iterdir() if not p.name.startswith(".") and is_run(p)):
        table = read_table(run / "trials.parquet")
        if table is not None:
            table = table.select(column_order("trials", table.column_names))
            tables.append(table.add_column(0, "experiment", pa.array([run.name] * table.num_rows, _S)))
    if not tables:
        return to_frame(_empty("trials", "sweep").add_column(0, "experiment", pa.array([], _S)))
    try:
        return to_frame(pa.concat_tables(tables, promote_options="permissive"))
    except (pa.ArrowTypeError, pa.ArrowInvalid):   # a params column typed differently in two runs
        return pd.concat([to_frame(t) for t in tables], ignore_index=True)
