"""What the server has read of each run's tables, kept in memory and read on by new part files only.

A table is append-only: the drivers add part files (`part-<seq>.parquet`) and, at the end of a run,
merge them into one (`part-<lo>-<hi>.parquet`) holding the same rows in the same order. So the rows a
reader has seen stay the first rows of the table, and a row's position is a cursor that outlives a
compaction. `TableCache.refresh` lists the table folder (one `scandir`), reads only the parts it has
not seen; a merged part that holds only rows already read is known from its footer (no data read),
and one that also holds new rows (a compaction flushes the last ones) gives just those. Anything else — a part gone without a merge covering it (a resume
set it aside), a table replaced by `--overwrite`, a file that is not caviar's part — starts the
table over under a new `generation`, and a client holding a cursor of the old one is sent every row
again.

Nothing is followed through a symbolic link and nothing is executed: parts are Parquet data read by
pyarrow, through `caviar.store.layout` (the same listing every caviar reader uses).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from caviar.serve.tables import rows_since
from caviar.store.layout import covered_parts, linked_entries, list_parts, visible_parts
from caviar.store.reader import _renamed
from caviar.store.vocabulary import RENAMED

MAX_CHUNKS = 64  # above this many chunks the rows are combined into one (slicing stays cheap)


@dataclass
class TableCache:
    """The rows of one table (`OUT/NAME/<table>.parquet`) read so far.

    generation: bumped whenever the rows read before cannot be trusted to be the first rows of the
    table any more; rows: how many rows are held; parts: (lo, hi) -> rows of each part read.
    """

    path: Path
    generation: int = 0
    rows: int = 0
    parts: dict[tuple[int, int], int] = field(default_factory=dict)
    chunks: list[pa.Table] = field(default_factory=list)
    _folder: tuple[int, int] | None = None   # (device, inode) of the table folder when last listed
    _newest: tuple[int, int] | None = None   # (device, inode) of the newest part read
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def table(self) -> pa.Table | None:
        """Every row read so far, in table order (None: none yet)."""
        if not self.chunks:
            return None
        if len(self.chunks) > 1:
            self.chunks = [pa.concat_tables(self.chunks, promote_options="permissive")]
            if self.chunks[0].column(0).num_chunks > MAX_CHUNKS:
                self.chunks = [self.chunks[0].combine_chunks()]
        return self.chunks[0]

    def refresh(self) -> None:
        """Read whatever the table gained since the last call (thread-safe)."""
        with self._lock:
            self._refresh()

    def since(self, cursor: tuple[int, int], columns: Sequence[str] | None = None) -> dict[str, Any]:
        """The rows after `cursor`, read on first (`caviar.serve.tables.rows_since`)."""
        with self._lock:
            self._refresh()
            return rows_since(self.table, self.generation, cursor, columns)

    def _refresh(self) -> None:
        folder = _identity(self.path)
        if folder is None or linked_entries(self.path):
            if self.rows or self.parts:
                self._reset()
            return
        if not self.path.is_dir() or _foreign(self.path):
            self._read_whole(folder)   # one file, or files that are not caviar's parts: read again
            return
        parts = list_parts(self.path)
        hidden = set(covered_parts(parts))
        live = [p for p in parts if p not in hidden]
        if not self._still_ours(live):
            self._reset()
            return self._refresh()
        known_hi = max((hi for _, hi in self.parts), default=-1)
        for part in live:
            key = (part.lo, part.hi)
            if key in self.parts:
                continue
            inside = [k for k in self.parts if part.lo <= k[0] and k[1] <= part.hi] if part.lo <= known_hi else []
            if not self._take(part, key, inside):
                return

    def _still_ours(self, live: list) -> bool:
        """Whether every row read so far is still in the table, in the parts `live`: each read part
        is there or inside a merged one, and the newest read part is the same file."""
        covered = set()
        for part in live:
            covered |= {k for k in self.parts if part.lo <= k[0] and k[1] <= part.hi}
        if covered != set(self.parts):
            return False
        newest = max(self.parts, default=None)
        path = next((p.path for p in live if (p.lo, p.hi) == newest), None)
        return path is None or _identity(path) == self._newest

    def _take(self, part: Any, key: tuple[int, int], inside: list[tuple[int, int]]) -> bool:
        """Read the part `part` (a new one, or a merge holding the parts `inside` already read
        first): its rows after theirs are appended. False when it vanished (merged meanwhile)."""
        skip = sum(self.parts[k] for k in inside)
        try:
            rows = pq.read_metadata(part.path).num_rows if inside else None
        except FileNotFoundError:
            return False
        except (OSError, pa.ArrowException):
            rows = None
        if rows == skip:   # a merge of what was read: nothing new, nothing to read
            table = None
        else:
            table = _read(part.path)
            if table is None:
                return False
            if table.num_rows < skip:
                self._reset()
                self._refresh()
                return False
        for k in inside:
            del self.parts[k]
        self.parts[key] = skip if table is None else table.num_rows
        if table is not None and table.num_rows > skip:
            self.rows += table.num_rows - skip
            self.chunks.append(table.slice(skip))
        self._newest = _identity(part.path) if key == max(self.parts) else self._newest
        return True

    def _reset(self) -> None:
        self.generation += 1
        self.rows, self.parts, self.chunks, self._folder, self._newest = 0, {}, [], None, None

    def _read_whole(self, folder: tuple[int, int]) -> None:
        tables = [t for t in (_read(p) for p in visible_parts(self.path)) if t is not None]
        total = sum(t.num_rows for t in tables)
        if folder == self._folder and total == self.rows:
            return
        if total < self.rows or folder != self._folder:
            self._reset()
        self._folder = folder
        if tables:
            whole = pa.concat_tables(tables, promote_options="permissive")
            self.chunks, self.rows, self.parts = [whole], whole.num_rows, {(-1, -1): whole.num_rows}
            self._newest = None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the table, None when it is missing or a symbolic link (never followed)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return None if os.path.islink(path) else (st.st_dev, st.st_ino)


def _foreign(folder: Path) -> bool:
    """Whether a table folder holds a Parquet file that is not one of caviar's parts."""
    names = {p.path.name for p in list_parts(folder)}
    return any(p.name not in names for p in visible_parts(folder))


def _read(path: Path) -> pa.Table | None:
    """One part's rows under today's column names; None when it vanished (merged meanwhile). A part
    that does not read is left out, as caviar's reader leaves it out."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException):
        return pa.table({})
    return _renamed(table, RENAMED.get(path.parent.name.removesuffix(".parquet"), {}))
