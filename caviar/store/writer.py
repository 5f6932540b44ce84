"""Writing a run's tables: append-only Parquet parts, crash-safe and resumable.

Every part is written whole to a hidden temp file in its own folder and moved into place with
`os.replace`, so nobody (reader or SIGKILL) ever sees half a part. `TableWriter.flush()` adds one part
and never touches the others, so its cost does not grow with the run.

`compact()` merges the parts into `part-<first>-<last>.parquet`, named for the range of parts it
covers. It builds the new table folder beside the old one, hidden (`.<table>.parquet.compact-<hex>`:
the merged part, and hard links to any other file of the table), then puts it in place of the old
one (`caviar.store.swap`): in one atomic swap (Linux `renameat2(RENAME_EXCHANGE)`), else by renaming
the old folder aside and the new one in. Any reader, caviar's or not (pandas, pyarrow, Polars,
DuckDB), sees the old parts or the merged one, never both; a crash leaves hidden folders that a
resume clears (`caviar.store.folder.repair`). Only where a folder cannot be renamed at all is the
merged part moved in beside the parts it covers, which caviar's readers ignore and a resume deletes.

Nothing is written or read through a symbolic link: a table that is one is refused, a part that is
one is never listed.
"""

from __future__ import annotations

import json
import math
import secrets
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from caviar.store.atomic import atomic_write
from caviar.store.layout import arrow_type, column_order, covered_parts, link_refusal, list_parts, unreadable, visible_parts
from caviar.store.swap import put_in_place
from caviar.store.vocabulary import COLUMNS, PREFIXES, TABLES, TIMESTAMP

# Column types by their Arrow names: plain strings hash in nanoseconds, pa.DataType in a microsecond,
# and append looks one up per value.
_I, _F, _B, _S, _N, _T = "int64", "double", "bool", "string", "null", TIMESTAMP
_ARROW = {kind: arrow_type(kind) for kind in (_I, _F, _B, _S, _N, _T)}


# ----------------------------------------------------------------------------- typing the columns

# Value types that go into a column as they are (checked with one set lookup per value); any other
# value goes through `_coerce`, which converts it or raises.
_AS_IS: dict[str, frozenset[type]] = {
    _I: frozenset({int, np.int64, np.int32, np.int16, np.int8, np.uint8, np.uint16, np.uint32}),
    _F: frozenset({float, np.float64, np.float32, np.float16}),
    _B: frozenset({bool, np.bool_}),
    _S: frozenset({str}),
    _N: frozenset(),
    _T: frozenset(),   # a moment: ISO 8601 text or a datetime, always through `_moment`
}


def _first_type(value: Any, column: str) -> str:
    """The type a column ("table.name") takes from its first non-null value: params and model values
    keep int/float/bool/string; anything else is a metric, float64 when it is a number. Lists are
    stored as JSON text; a datetime is a moment in UTC."""
    param = column.partition(".")[2].startswith(PREFIXES)
    if isinstance(value, datetime):
        return _T
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


def _moment(value: Any, column: str) -> datetime:
    """A time column's value as an aware datetime in UTC: a datetime (naive ones are UTC) or its ISO
    8601 text, which is how the drivers write a moment (`caviar.store.vocabulary.utc_now`)."""
    if type(value) is datetime and value.tzinfo is timezone.utc:
        return value   # as the sweep's driver gives each epoch's moment: nothing to convert
    if isinstance(value, str):
        try:
            value = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(f"{column}: expected a moment as ISO 8601 text, got {value!r}") from None
    if not isinstance(value, datetime):
        raise ValueError(f"{column}: the column holds moments in UTC, got {value!r} ({type(value).__name__})")
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _coerce(value: Any, dtype: str, column: str, lenient: bool) -> Any:
    """`value` as `dtype` takes it, or ValueError. Ints never become floats in an int column, nor
    floats ints: 64.0 goes in as 64, 64.5 is refused. A `lenient` string column (params, metrics)
    takes lists and numbers as their JSON text; status, error, ... take strings only."""
    if dtype == _S and isinstance(value, str):
        return str(value)   # a NumPy string
    if dtype == _T:
        return _moment(value, column)
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
    if pa.types.is_timestamp(t):
        return _T
    kind = _I if pa.types.is_integer(t) else _F if pa.types.is_floating(t) else str(t)
    if kind not in _ARROW:
        raise ValueError(f"{where}: caviar cannot append to a column of type {t}")
    return kind


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """`table` with exactly `schema`'s columns and types: nulls where it lacks a column."""
    return pa.Table.from_arrays([table.column(f.name).cast(f.type) if f.name in table.column_names
                                 else pa.nulls(table.num_rows, f.type) for f in schema], schema=schema)


def _read_part(path: Path, columns: list[str] | None = None) -> pa.Table:
    """A part file's rows, or ValueError naming the file when it does not read."""
    try:
        return pq.ParquetFile(path).read(columns=columns)
    except (OSError, pa.ArrowException) as exc:
        raise ValueError(unreadable(path, exc)) from exc


# ----------------------------------------------------------------------------- writing a table

# A writer keeps the parts it wrote, as written, up to this many bytes in all, so that a compaction
# merges them without reading them back (at the end of a short sweep, reading its parts back was
# a third of its compaction's time).
KEPT_PARTS_BYTES = 64 * 2**20


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
        declared = {k: arrow_type(v) for k, v in COLUMNS[table].items() if v is not None}
        self._types = {k: _kind(v, f"{table}.{k}") for k, v in {**declared, **(types or {})}.items()
                       if v is not None}     # the driver may declare params types up front
        self._schema: dict[str, str] = {}    # running schema (Arrow type names), first-seen order
        self._rows: list[dict[str, Any]] = []      # appended (checked), not yet flushed
        self._kept: dict[Path, pa.Table] = {}      # parts this writer wrote -> their rows (KEPT_PARTS_BYTES)
        self._kept_bytes = 0
        self._refuse_link()
        parts = list_parts(self.path) if self.path.is_dir() else []
        self._next_seq = max((p.hi for p in parts), default=-1) + 1
        for part in sorted(set(parts) - set(covered_parts(parts)), reverse=True):
            try:
                self._schema = {f.name: _kind(f.type, f"{part.path}: {f.name}")
                                for f in pq.read_schema(part.path)}
                break
            except (OSError, pa.ArrowInvalid):
                continue  # an unreadable part: look at the one before

    def _refuse_link(self) -> None:
        """ValueError when the table is a symbolic link: nothing is read or written through it."""
        if self.path.is_symlink():
            raise ValueError(link_refusal(self.path))

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
                    lenient = COLUMNS[self.table].get(name) != _S
                    row[name] = _coerce(value, dtype, f"{self.table}.{name}", lenient)
            checked.append(row)
        self._schema = schema
        self._rows += checked

    def flush(self) -> Path | None:
        """Write the buffered rows as one new part, atomically; None when nothing is buffered. Each
        column is converted whole (one Arrow call), with every column of the running schema. On a
        failed write the rows stay buffered."""
        part = self.take(keep_on_failure=True)
        return part() if part is not None else None

    def take(self, keep_on_failure: bool = False) -> Callable[[], Path] | None:
        """The buffered rows as the next part, to be written by calling what this returns (from any
        thread: it touches nothing of this writer but, with `keep_on_failure`, the buffer it puts the
        rows back into on a failed write, and the kept parts it adds the written one to); None when nothing is buffered. The rows leave the buffer
        and the part's number is taken now, so parts are numbered in the order they were taken."""
        if not self._rows:
            return None
        for name, kind in self._schema.items():
            if kind == _N and not name.startswith(PREFIXES):
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
        self._refuse_link()
        self.path.mkdir(exist_ok=True)
        final = self.path / f"part-{self._next_seq:06d}.parquet"
        rows, self._rows = self._rows, []
        self._next_seq += 1
        fsync, temp_dir = self._fsync, self.path.parent

        def write() -> Path:
            try:
                atomic_write(final, lambda f: pq.write_table(table, f), fsync=fsync, temp_dir=temp_dir)
            except BaseException:
                if keep_on_failure:   # the caller's thread: the rows go back, before any appended since
                    self._rows[:0] = rows
                    self._next_seq -= 1
                raise
            if self._kept_bytes + table.nbytes <= KEPT_PARTS_BYTES:   # read only by compact, after
                self._kept[final] = table                              # the write has returned
                self._kept_bytes += table.nbytes
            return final

        return write

    def compact(self, keep: Callable[[pa.Table], Any] | None = None) -> Path | None:
        """Flush, then merge every part into one `part-<first>-<last>.parquet` with the full schema.

        `keep(table) -> boolean mask` drops the rows it marks False (a repair after a crash: the
        rows of work that is redone); the table is then rewritten even when it is one part.
        The new table folder is built aside and swapped in whole (see the module's doc): a crash
        at any point loses nothing, and every reader reads each row once. Returns the table's one
        part (None: no rows). A part that does not read is a ValueError naming it; nothing changes.
        """
        self.flush()
        self._refuse_link()
        if not self.path.is_dir():
            return None
        parts = list_parts(self.path)
        live = [p for p in parts if p not in set(covered_parts(parts))]
        if not live or (len(live) == 1 and keep is None):
            for p in set(parts) - set(live):
                p.path.unlink(missing_ok=True)
            return live[0].path if live else None
        schema = self.schema
        table = pa.concat_tables([_conform(self._part_rows(p.path), schema) for p in live])
        if keep is not None:
            table = table.filter(keep(table))
        lo, hi = min(p.lo for p in live), max(p.hi for p in live)
        if len(live) == 1:
            # Rewriting a lone part (keep=): a range ending at a fresh number strictly covers it,
            # so a crash before the old part is deleted leaves a covered part, not a same-range twin.
            hi = max(hi, self._next_seq)
        merged = self.path / f"part-{lo:06d}-{hi:06d}.parquet"
        staging = self.path.with_name(f".{self.path.name}.compact-{secrets.token_hex(4)}")
        staging.mkdir()
        try:
            atomic_write(staging / merged.name, lambda f: pq.write_table(table, f), fsync=self._fsync)
            replaced = [p.path for p in parts if lo <= p.lo and p.hi <= hi]   # all of them, covered ones too
            put_in_place(self.path, staging, merged.name, replaced, fsync=self._fsync)
        finally:
            shutil.rmtree(staging, ignore_errors=True)   # before the swap the new table, after it the old
        self._next_seq = max(self._next_seq, hi + 1)
        self._kept, self._kept_bytes = {}, 0   # the parts it kept are gone
        return merged

    def _part_rows(self, path: Path) -> pa.Table:
        """A part's rows: as this writer wrote them, else read from its file."""
        kept = self._kept.get(path)
        return kept if kept is not None else _read_part(path)

    def column(self, name: str) -> list[Any]:
        """Every value of column `name`: on disk (each row once) and buffered. Reads only that column."""
        self._refuse_link()
        values: list[Any] = []
        for path in visible_parts(self.path):
            try:
                names = pq.read_schema(path).names
            except (OSError, pa.ArrowException) as exc:
                raise ValueError(unreadable(path, exc)) from exc
            if name in names:
                values += _read_part(path, [name]).column(name).to_pylist()
        return values + [row[name] for row in self._rows if name in row]
