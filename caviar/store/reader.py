"""Reading results: `load(path)` reads one run into pandas, `load_all(dir)` every run's trials (a
babysat run as one row: `caviar.store.babysat`).

Reading never writes and never runs code: a crashed run is read as it is (`open_run(resume=True)`
repairs it), and job.toml is read as data. The folder format is `caviar.store.layout`.

Reading never follows a symbolic link out of the run folder. A part file that is a link is skipped
with a warning, as a part that does not read is: the rest of the table is the run's own. A table
that is a link is refused (ValueError): none of it is the run's own, and an empty table in its place
would tell the user the run has no trials. `load_all`, which reads every run of a folder, skips such
a run with a warning rather than refuse the others.
"""

from __future__ import annotations

import tomllib
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from caviar.store.layout import arrow_type, column_order, folder_kind, is_run, link_refusal, linked_entries, visible_parts
from caviar.store.vocabulary import COLUMNS, JOB_FILE, RENAMED, TABLES, RunKind

__all__ = ["Run", "load", "load_all", "read_table", "to_frame"]

_I, _S = pa.int64(), pa.string()


def read_table(table_path: Path, columns: list[str] | None = None) -> pa.Table | None:
    """One table of a run as Arrow, parts concatenated in order, schemas unified (a column missing
    from early parts is null there). None when the table has no file yet.

    A part that vanishes while it is read (a running compaction merged it) means the folder changed:
    it is listed again. A part that does not read (damaged after it was written; caviar's own writes
    are atomic) is skipped with a warning rather than losing the whole run, and so is a part that is
    a symbolic link. Raises ValueError when the table itself is a link.
    """
    for link in linked_entries(table_path):
        if link == Path(table_path):
            raise ValueError(link_refusal(link))
        warnings.warn(f"{link_refusal(link)}; skipped", RuntimeWarning, stacklevel=2)
    for _ in range(5):
        tables, changed = [], False
        for path in visible_parts(table_path):
            try:
                part = pq.ParquetFile(path)
                wanted = None if columns is None else [c for c in columns if c in part.schema_arrow.names]
                tables.append(part.read(columns=wanted))
            except FileNotFoundError:
                changed = True
                break
            except (OSError, pa.ArrowException) as exc:
                warnings.warn(f"{path}: unreadable part skipped ({exc})", RuntimeWarning, stacklevel=2)
        if not changed:
            break
    if not tables:
        return None
    tables = [todays_names(t, table_path) for t in tables]
    try:
        return pa.concat_tables(tables, promote_options="default")
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        return pa.concat_tables(tables, promote_options="permissive")  # foreign parts: int + float


def todays_names(table: pa.Table, table_path: str | Path) -> pa.Table:
    """A part of the table folder `table_path` (".../events.parquet"), written by an older caviar
    perhaps, with its columns under today's names."""
    renamed = RENAMED.get(Path(table_path).name.removesuffix(".parquet"), {})
    names = [renamed.get(n, n) if renamed.get(n, n) not in table.column_names else n for n in table.column_names]
    return table.rename_columns(names) if names != table.column_names else table


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


def _empty(table: str, kind: RunKind) -> pa.Table:
    """The declared columns of a table a run has none of (epochs.trial_id is caviar only)."""
    names = [n for n in COLUMNS[table] if not n.endswith("*")]
    if table == "epochs":
        names.remove("decision" if kind == RunKind.SWEEP else "trial_id")
    return pa.schema([(n, arrow_type(COLUMNS[table][n])) for n in names]).empty_table()


@dataclass(frozen=True, eq=False)
class Run:
    """One run folder read into pandas. Tables a run does not have are empty, with their columns."""
    path: Path
    name: str
    kind: RunKind             # "sweep" (caviar parallel) or "babysit" (panda)
    job: dict[str, Any]       # job.toml as run; {} when it is missing
    trials: pd.DataFrame = field(repr=False)
    epochs: pd.DataFrame = field(repr=False)
    events: pd.DataFrame = field(repr=False)


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
    if (path / JOB_FILE).is_symlink():   # a run's files are its own: a link is never read through
        raise ValueError(f"run: {path / JOB_FILE} is a symbolic link; a run folder's files must be its own")
    if (path / JOB_FILE).is_file():
        try:
            job = tomllib.loads((path / JOB_FILE).read_text())
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ValueError(f"run: {path / JOB_FILE} is not valid TOML ({exc})") from None
    tables = {t: read_table(path / f"{t}.parquet") for t in TABLES}
    kind = folder_kind(path) or RunKind.SWEEP
    frames = {t: to_frame(tables[t] if tables[t] is not None else _empty(t, kind), t) for t in TABLES}
    return Run(path=path, name=path.name, kind=kind, job=job, **frames)


def load_trials(path: str | Path) -> pd.DataFrame:
    """The trials table of the sweep folder `path` alone, as `load(path).trials` gives it (the end of a
    sweep prints its leaderboard from it: `load` reads every table, 10-40 ms at 200,000 epoch rows)."""
    path = Path(path)
    table = _trials(path)
    return to_frame(table if table is not None else _empty("trials", RunKind.SWEEP), "trials")


def load_all(results_dir: str | Path = "results") -> pd.DataFrame:
    """The trials of every run under `results_dir`, one DataFrame with an `experiment` column (the
    run's name) first; a babysat run is one row (`caviar.store.babysat`: its best score, epochs and
    status, its values as params_ and model_ columns, trial_id null). Folders that are not runs,
    hidden ones and runs without rows are skipped; a column one run lacks is null for its rows."""
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        raise ValueError(f"results: no results folder at {results_dir}")
    tables = []
    for run in sorted(p for p in results_dir.iterdir() if not p.name.startswith(".") and is_run(p)):
        try:
            table = _babysat_row(run) if folder_kind(run) == RunKind.BABYSIT else _trials(run)
        except ValueError as exc:   # a table or job.toml that is a link, a job.toml that does not read
            warnings.warn(f"{exc}; run {run.name!r} skipped", RuntimeWarning, stacklevel=2)
            continue
        if table is not None:
            table = table.select(column_order("trials", table.column_names))
            tables.append(table.add_column(0, "experiment", pa.array([run.name] * table.num_rows, _S)))
    if not tables:
        return to_frame(_empty("trials", RunKind.SWEEP).add_column(0, "experiment", pa.array([], _S)))
    try:
        return to_frame(pa.concat_tables(tables, promote_options="permissive"))
    except (pa.ArrowTypeError, pa.ArrowInvalid):   # a params column typed differently in two runs
        return pd.concat([to_frame(t) for t in tables], ignore_index=True)


def _trials(run: Path) -> pa.Table | None:
    if (run / "trials.parquet").is_symlink():
        raise ValueError(link_refusal(run / "trials.parquet"))
    return read_table(run / "trials.parquet")


def _babysat_row(run: Path) -> pa.Table | None:
    """The babysat run folder `run` as one trials row, its declared columns typed as a sweep's."""
    from caviar.store import babysat, lock

    done = load(run)
    values = babysat.row(done.job, done.epochs, done.events, running=lock.holder(run) is not None)
    if values is None:
        return None
    table = pa.Table.from_pylist([values])
    for name in table.column_names:
        if name in COLUMNS["trials"]:
            table = table.set_column(table.schema.get_field_index(name), name,
                                     table.column(name).cast(arrow_type(COLUMNS["trials"][name])))
    return table
