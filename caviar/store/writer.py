"""The run folder and its Parquet tables (write side): append-only, crash-safe, resumable.

Layout (DESIGN.md, "Results layout"):

    OUT/NAME/job.toml                       the job as run
    OUT/NAME/trials.parquet/part-000000.parquet, part-000001.parquet, ...
    OUT/NAME/epochs.parquet/...  events.parquet/...  checkpoints/

Every file is written whole to a hidden temp file in its own folder and moved into place with
`os.replace`, so nobody (reader or SIGKILL) ever sees half a part; readers skip names starting with
"." (pyarrow and pandas do too). `TableWriter.flush()` adds one part and never touches the others,
so its cost does not grow with the run. `compact()` merges the parts into `part-<first>-<last>.parquet`,
named for the range of parts it covers, and only then deletes them: a crash in between leaves parts
the merged one covers, which `visible_parts` ignores and `open_run(resume=True)` deletes.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from caviar.store.atomic import atomic_write
from caviar.store.reader import (CHECKPOINTS, DECLARED, JOB_FILE, TABLES, column_order, covered_parts,
                               holds_results, list_parts, visible_parts)

# Column types by their Arrow names: plain strings hash in nanoseconds, pa.DataType in a microsecond,
# and append looks one up per value.
_I, _F, _B, _S, _N = "int64", "double", "bool", "string", "null"
_ARROW = {kind: pa.type_for_alias(kind) for kind in (_I, _F, _B, _S, _N)}


# ----------------------------------------------------------------------------- files

def validate_run_name(name: str) -> str:
    """A run name is a folder under --out: the job file's rule (caviar.config.job.validate_name)."""
    from caviar.config.job import validate_name

    return validate_name(name)


# ----------------------------------------------------------------------------- typing the columns

# Value types that go into a column as they are (checked with one set lookup per value); any other
# value goes through `_coerce`, which converts it or raises.
_AS_IS: dict[str, frozenset[type]] = {
    _I: frozenset({int, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32}),
    _F: frozenset({float, np.float64, np.float32, np.float16}),
    _B: frozenset({bool, np.bool_}),
    _S: frozenset({str}),
    _N: frozenset(),
}


def _first_type(value: Any, column: str) -> str:
    """The type a column ("table.name") takes from its first non-null value: params keep int/float/
    bool/string; anything else is a metric, float64 when it is a number. Lists are stored as JSON text."""
    param = column.partition(".")[2].startswith("params_")
    if isinstance(value, (bool, np.bool_)):
        return _B if param else _F
    if isinstance(value, (int, np.integer)):
        return _I if param else _F
    if isinstance(value, (float, np.floating)):
        return _F
    if isinstance(value, (str, list, tuple, dict, np.ndarray)):
        return _S
    raise ValueError(f"{column}: cannot store {value!r} ({type(value).__name__}): "
                     "give numbers, booleans, strings or lists")


def _coerce(value: Any, dtype: str, column: str, lenient: bool) -> Any:
    """`value` as `dtype` takes it, or ValueError. Ints never become floats in an int column, nor
    floats ints: 64.0 goes in as 64, 64.5 is refused. A `lenient` string column (params, metrics)
    takes lists and numbers as their JSON text; status, error, ... take strings only."""
    if dtype == _S and isinstance(value, str):
        return str(value)   # a NumPy string
    bad = isinstance(value, (bool, np.bool_)) and dtype != _F
    if dtype == _I and not bad:
        if isinstance(value, (int, np.integer)):
            if -2**63 <= int(value) < 2**63:
                return int(value)
        elif isinstance(value, (float, np.floating)):
            if math.isnan(value):
                return None
            if math.isfinite(value) and float(value).is_integer():
                return int(value)
    elif dtype == _F and isinstance(value, (int, float, np.integer, np.floating, np.bool_)):
        return float(value)
    elif dtype == _S and lenient:
        try:
            return json.dumps(value.tolist() if isinstance(value, (np.ndarray, np.generic)) else value)
        except TypeError:
            pass
    shown = "float64" if dtype == _F else dtype
    raise ValueError(f"{column}: the column holds {shown}, got {value!r} ({type(value).__name__})")


def _kind(t: pa.DataType, where: str) -> str:
    """A type read from a part (perhaps written by pandas: large_string, int32, category) as the
    writer's own."""
    t = t.value_type if pa.types.is_dictionary(t) else t
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return _S
    kind = _I if pa.types.is_integer(t) else _F if pa.types.is_floating(t) else str(t)
    if kind not in _ARROW:
        raise ValueError(f"{where}: caviar cannot append to a column of type {t}")
    return kind


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns and types: nulls where it lacks a column."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) if f.name in table.column_names
                                 else pa.nulls(table.num_rows, f.type) for f in schema], schema=schema)


# ----------------------------------------------------------------------------- writing a table

class TableWriter:
    """Appends rows to one table of a run as new part files; never rewrites a written part.

    The writer keeps a running schema: the union of the columns seen so far (on resume, those of the
    newest part, which holds the union of all before it), each typed at first sight. Every part is
    written with the whole union known at that moment, nulls where a row lacks a column, so the parts
    only differ when a column appears late.
    """

    def __init__(self, run_path: Path, table: str, *, types: Mapping[str, pa.DataType] | None = None,
                 fsync: bool = True) -> None:
        if table not in TABLES:
            raise ValueError(f"table: {table!r} is not one of {', '.join(TABLES)}")
        self.table = table
        self.path = Path(run_path) / f"{table}.parquet"
        self._fsync = fsync
        self._types = {k: _kind(v, f"{table}.{k}") for k, v in {**DECLARED[table], **(types or {})}.items()
                       if v is not None}     # the driver may declare params types up front
        self._schema: dict[str, str] = {}    # running schema (Arrow type names), first-seen order
        self._rows: list[dict[str, Any]] = []      # appended (checked), not yet flushed
        parts = list_parts(self.path) if self.path.is_dir() else []
        self._next_seq = max((p.hi for p in parts), default=-1) + 1
        for part in sorted(set(parts) - set(covered_parts(parts)), reverse=True):
            try:
                self._schema = {f.name: _kind(f.type, f"{part.path}: {f.name}")
                                for f in pq.read_schema(part.path)}
                break
            except (OSError, pa.ArrowInvalid):
                continue  # an unreadable part: look at the one before

    @property
    def buffered(self) -> int:
        """Rows appended and not yet flushed."""
        return len(self._rows)

    @property
    def schema(self) -> pa.Schema:
        """The running schema, in display order."""
        return pa.schema([(n, _ARROW[self._schema[n]]) for n in column_order(self.table, self._schema)])

    def append(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Buffer `rows` (dicts column -> value; a row may lack columns). O(cells appended): nothing
        on disk is read, each value is checked against its column's type with one set lookup.

        Raises ValueError naming the column when a value does not fit its column's type; then none
        of `rows` is kept and no column type changes.
        """
        schema = dict(self._schema)   # this batch's view; committed only if every row is good
        checked = []
        for row in rows:
            row = dict(row)           # a copy: the caller may reuse its dict
            for name, value in row.items():
                dtype = schema.get(name)
                if dtype is None:     # a new column: declared type, else null until a value types it
                    if not isinstance(name, str) or not name:
                        raise ValueError(f"{self.table}: a column name must be a non-empty string, got {name!r}")
                    dtype = schema[name] = self._types.get(name, _N)
                if value is None:
                    continue
                if dtype == _N:
                    dtype = schema[name] = _first_type(value, f"{self.table}.{name}")
                if type(value) not in _AS_IS[dtype]:
                    lenient = DECLARED[self.table].get(name) != _ARROW[_S]
                    row[name] = _coerce(value, dtype, f"{self.table}.{name}", lenient)
            checked.append(row)
        self._schema = schema
        self._rows += checked

    def flush(self) -> Path | None:
        """Write the buffered rows as one new part, atomically; None when nothing is buffered. Each
        column is converted whole (one Arrow call), with every column of the running schema."""
        if not self._rows:
            return None
        for name, kind in self._schema.items():
            if kind == _N and not name.startswith("params_"):
                # A column with only nulls so far is a metric nobody has reported yet (a failed
                # trial's row): metrics are float64, and a part typed null would not read together
                # with the others in pandas.read_parquet(folder).
                self._schema[name] = _F
        schema = self.schema
        try:
            table = pa.Table.from_arrays(
                [pa.array([row.get(f.name) for row in self._rows], type=f.type, from_pandas=True) for f in schema],
                schema=schema)
        except (pa.ArrowException, OverflowError) as exc:   # e.g. an int beyond int64; rows are kept
            raise ValueError(f"{self.table}: cannot write the buffered rows ({exc})") from exc
        self.path.mkdir(exist_ok=True)
        final = self.path / f"part-{self._next_seq:06d}.parquet"
        atomic_write(final, lambda f: pq.write_table(table, f), fsync=self._fsync)
        self._next_seq += 1
        self._rows = []
        return final

    def compact(self, keep: Callable[[pa.Table], Any] | None = None) -> Path | None:
        """Flush, then merge every part into one `part-<first>-<last>.parquet` with the full schema.

        `keep(table) -> boolean mask` drops the rows it marks False (a repair after a crash: the
        rows of work that is redone); the table is then rewritten even when it is one part.
        The merged part is in place before any covered part is deleted, so a crash at any point
        loses nothing; readers ignore covered parts. Returns the table's one part (None: no rows).
        """
        self.flush()
        if not self.path.is_dir():
            return None
        parts = list_parts(self.path)
        live = [p for p in parts if p not in set(covered_parts(parts))]
        if not live or (len(live) == 1 and keep is None):
            for p in set(parts) - set(live):
                p.path.unlink(missing_ok=True)
            return live[0].path if live else None
        schema = self.schema
        table = pa.concat_tables([_conform(pq.ParquetFile(p.path).read(), schema) for p in live])
        if keep is not None:
            table = table.filter(keep(table))
        lo, hi = min(p.lo for p in live), max(p.hi for p in live)
        if len(live) == 1:
            # Rewriting a lone part (keep=): a range ending at a fresh number strictly covers it,
            # so a crash before the old part is deleted leaves a covered part, not a same-range twin.
            hi = max(hi, self._next_seq)
        merged = self.path / f"part-{lo:06d}-{hi:06d}.parquet"
        atomic_write(merged, lambda f: pq.write_table(table, f), fsync=self._fsync)
        for p in parts:
            if lo <= p.lo and p.hi <= hi and p.path != merged:
                p.path.unlink(missing_ok=True)
        self._next_seq = max(self._next_seq, hi + 1)
        return merged

    def column(self, name: str) -> list[Any]:
        """Every value of column `name`: on disk (each row once) and buffered. Reads only that column."""
        values: list[Any] = []
        for path in visible_parts(self.path):
            pf = pq.ParquetFile(path)
            if name in pf.schema_arrow.names:
                values += pf.read(columns=[name]).column(name).to_pylist()
        return values + [row[name] for row in self._rows if name in row]


# ----------------------------------------------------------------------------- the run folder

@dataclass(eq=False)
class RunFolder:
    """An open run folder `OUT/NAME`: its tables (one writer each) and its checkpoints folder."""
    path: Path
    resumed: bool = False
    fsync: bool = True
    _writers: dict[str, TableWriter] = field(default_factory=dict, repr=False)

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def checkpoints_dir(self) -> Path:
        """Where a babysat run keeps its .npz checkpoints (created by the CheckpointStore)."""
        return self.path / CHECKPOINTS

    def table(self, name: str, *, types: Mapping[str, pa.DataType] | None = None) -> TableWriter:
        """The writer of table `name` ("trials", "epochs" or "events"); the same one on every call.

        `types` optionally fixes column types before any row is seen (e.g. a choice of [32, "auto"]
        as pa.string()); it only applies to the first call.
        """
        if name not in self._writers:
            self._writers[name] = TableWriter(self.path, name, types=types, fsync=self.fsync)
        return self._writers[name]

    def flush(self) -> None:
        """Flush every open table."""
        for writer in self._writers.values():
            writer.flush()

    def compact(self) -> None:
        """End of run: every table that exists on disk or was written becomes one part."""
        for name in TABLES:
            if name in self._writers or (self.path / f"{name}.parquet").is_dir():
                self.table(name).compact()

    def finished_trial_ids(self) -> set[int]:
        """Trial ids with a row in the trials table, whatever their status: what --resume skips."""
        return {int(v) for v in self.table("trials").column("trial_id") if v is not None}


def open_run(out: str | Path, name: str, job_toml: str, *, resume: bool = False, overwrite: bool = False,
             fsync: bool = True) -> RunFolder:
    """Open `out/name` for writing; call it only after the job validated.

    New name: creates the folder and writes job.toml atomically. Existing folder with results:
    raises FileExistsError and touches nothing, unless `resume` (keep everything, keep the job.toml
    written first, repair what a crash left: temp files, parts a compaction already merged) or
    `overwrite` (the old folder is renamed aside, the new one created, then the old one deleted).
    Raises ValueError for a bad name, resume and overwrite together, or resume of a missing run.
    """
    validate_run_name(name)
    if resume and overwrite:
        raise ValueError("--resume and --overwrite: pass one of them, not both")
    out = Path(out)
    run = out / name
    write_job = lambda f: f.write(job_toml.encode())  # noqa: E731
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"{run} exists and is not a run folder")
    if resume:
        if not run.is_dir():
            raise ValueError(f"--resume: there is no run {name!r} in {out} to resume")
        repair(run)
        if not (run / JOB_FILE).is_file():
            atomic_write(run / JOB_FILE, write_job, fsync=fsync)
        return RunFolder(run, resumed=True, fsync=fsync)
    if run.is_dir() and holds_results(run) and not overwrite:
        raise FileExistsError(f"{run} already holds results: pass --resume to continue it "
                              "or --overwrite to replace it")
    if run.is_dir() and not overwrite:   # a folder without results (killed before its first one)
        atomic_write(run / JOB_FILE, write_job, fsync=fsync)
    else:
        # The folder appears whole, job.toml inside, in one rename: a reader never sees it empty.
        out.mkdir(parents=True, exist_ok=True)
        staging = out / f".{name}.new-{secrets.token_hex(4)}"
        staging.mkdir()
        atomic_write(staging / JOB_FILE, write_job, fsync=fsync)
        if run.is_dir():                 # --overwrite: one rename takes the old run out of the way
            os.replace(run, out / f".{name}.old-{secrets.token_hex(4)}")
        os.replace(staging, run)
    for old in [*out.glob(f".{name}.old-*"), *out.glob(f".{name}.new-*")]:  # this or an earlier run's
        shutil.rmtree(old, ignore_errors=True)
    return RunFolder(run, fsync=fsync)


def _writer_alive(tmp_name: str) -> bool:
    """Whether the process named in a temp file (`.<file>.<pid>-<hex>.tmp`) still runs on this host:
    its file is being written, not left by a crash (a reused pid only spares a leftover)."""
    match = re.search(r"\.(\d+)(?:-[0-9a-f]+)?\.tmp$", tmp_name)
    if match is None or int(match[1]) == os.getpid():
        return False
    try:
        os.kill(int(match[1]), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass              # alive, someone else's
    return True


def repair(run: Path) -> None:
    """Undo what a crash can leave in a run folder: temp files (unless their writer still runs) and
    parts a compaction covers.

    A single-file table (`trials.parquet` written by another tool) becomes a folder holding it as
    its first part, so appends can follow without rewriting it.
    """
    for folder in (run, run / CHECKPOINTS, *(run / f"{t}.parquet" for t in TABLES)):
        if folder.is_dir():
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file() \
                        and not _writer_alive(entry.name):
                    os.unlink(entry.path)
    for name in TABLES:
        table, staging = run / f"{name}.parquet", run / f".{name}.parquet.convert"
        if table.is_file():
            staging.mkdir(exist_ok=True)
            os.replace(table, staging / "part-000000.parquet")
        if staging.is_dir() and not table.exists():
            os.replace(staging, table)   # the folder appears with its part in one rename
        if table.is_dir():
            for part in covered_parts(list_parts(table)):
                part.path.unlink(missing_ok=True)
