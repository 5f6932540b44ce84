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

import math
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from caviar.serve.tables import rows_since
from caviar.store.layout import Part, covered_parts, part_range, visible_parts
from caviar.store.reader import todays_names

BIG_PART = 100_000  # rows from which a part is read with pyarrow's threads
RECENT = 1.0  # seconds: a folder changed this recently may change again within its clock's tick
MAX_CHUNKS = 64
PARALLEL_FROM = 4  # new parts from which they are read by the pool
_POOL = ThreadPoolExecutor(max_workers=4, thread_name_prefix="caviar-serve-read")  # above this many chunks the rows are combined into one (slicing stays cheap)


@dataclass
class TableCache:
    """The rows of one table (`OUT/NAME/<table>.parquet`) read so far.

    generation: bumped whenever the rows read before cannot be trusted to be the first rows of the
    table any more; rows: how many rows are held; parts: (lo, hi) -> rows of each part read;
    interval: the server's 0.2 s, so a poll's second question about a table costs no listing.
    """

    path: Path
    interval: float = 0.0   # seconds between two looks at the folder (0: look on every call)
    generation: int = 0
    rows: int = 0
    parts: dict[tuple[int, int], int] = field(default_factory=dict)
    chunks: list[pa.Table] = field(default_factory=list)
    _folder: tuple[int, int] | None = None   # (device, inode) of the table folder when last listed
    _top: tuple[int, int] | None = None      # the newest part read: its (lo, hi)
    _newest: tuple[int, int] | None = None   # and its (device, inode)
    _listed: tuple[int, int, int] | None = None  # the folder's `_stamp` when listed, if it was settled
    _looked: float = -math.inf   # time.monotonic() of the last look
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

    def refresh(self, force: bool = False) -> None:
        """Read whatever the table gained since the last call (thread-safe); within `interval`
        seconds of the last look, nothing is looked at (one page's poll asks for a table twice),
        unless `force` (a run whose driver has just let go: its last rows must be seen now)."""
        with self._lock:
            if force:
                self._looked = 0.0
            self._refresh_due()

    def since(self, cursor: tuple[int, int], columns: Sequence[str] | None = None) -> dict[str, Any]:
        """The rows after `cursor`, read on first (`caviar.serve.tables.rows_since`)."""
        with self._lock:
            self._refresh_due()
            return rows_since(self.table, self.generation, cursor, columns)

    def _refresh_due(self) -> None:
        now = time.monotonic()
        if now - self._looked >= self.interval:
            self._refresh()
            self._looked = now

    def _refresh(self) -> None:
        stamp = _stamp(self.path)
        if stamp is not None and stamp == self._listed:
            return     # the folder has not changed since it was listed: no part came or went
        self._listed = None
        folder = _identity(self.path)
        parts, foreign = _scan(self.path) if stamp is not None else ([], False)
        if folder is None:
            if self.rows or self.parts:
                self._reset()
            return
        if stamp is None or foreign:
            self._read_whole(folder)   # one file, or files that are not caviar's parts: read again
            return
        hidden = set(covered_parts(parts))
        live = [p for p in parts if p not in hidden]
        if not self._still_ours(live):
            self._reset()
            return self._refresh()
        settled = stamp if stamp is not None and stamp[2] < (time.time() - RECENT) * 1e9 else None
        known_hi = max((hi for _, hi in self.parts), default=-1)
        todo = [p for p in live if (p.lo, p.hi) not in self.parts]
        fresh = [p for p in todo if p.lo > known_hi]
        # Many new parts (a first look at a running sweep): read them side by side, as pyarrow
        # reads without holding the interpreter.
        ahead = dict(zip((p.path for p in fresh), _POOL.map(_read, [p.path for p in fresh]))) \
            if len(fresh) >= PARALLEL_FROM else {}
        for part in todo:
            key = (part.lo, part.hi)
            inside = [k for k in self.parts if part.lo <= k[0] and k[1] <= part.hi] if part.lo <= known_hi else []
            if not self._take(part, key, inside, ahead.get(part.path)):
                return
        self._listed = settled

    def _still_ours(self, live: list) -> bool:
        """Whether every row read so far is still in the table, in the parts `live`: each read part
        is there or inside a merged one, and the newest read part is the same file."""
        keys = {(p.lo, p.hi): p.path for p in live}
        if not self.parts.keys() <= keys.keys():   # some were merged: each must be inside a live part
            merged = [k for k in keys if k[1] > k[0]]
            if any(not any(m[0] <= k[0] and k[1] <= m[1] for m in merged) for k in self.parts if k not in keys):
                return False
        return self._top not in keys or _identity(keys[self._top]) == self._newest

    def _take(self, part: Any, key: tuple[int, int], inside: list[tuple[int, int]],
              read: pa.Table | None = None) -> bool:
        """Read the part `part` (a new one, or a merge holding the parts `inside` already read
        first; `read`: its rows, when already read): its rows after theirs are appended. False
        when it vanished (merged meanwhile)."""
        if read is not None and not inside:
            return self._take_rows(part, key, read)
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
        return self._take_rows(part, key, None if table is None else table.slice(skip), held=skip)

    def _take_rows(self, part: Any, key: tuple[int, int], rows: pa.Table | None, held: int = 0) -> bool:
        """Keep `rows`, the part's rows after the `held` first ones (already kept; None: no more)."""
        self.parts[key] = held + (0 if rows is None else rows.num_rows)
        if rows is not None and rows.num_rows:
            self.rows += rows.num_rows
            self.chunks.append(rows)
        if self._top is None or key >= self._top:
            self._top, self._newest = key, _identity(part.path)
        return True

    def _reset(self) -> None:
        self.generation += 1
        self.rows, self.parts, self.chunks, self._folder, self._listed = 0, {}, [], None, None
        self._top = self._newest = None

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
            self._top = self._newest = None


def _identity(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the table, None when it is missing or a symbolic link (never followed)."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return None if os.path.islink(path) else (st.st_dev, st.st_ino)


def _stamp(path: Path) -> tuple[int, int, int] | None:
    """(device, inode, modification time in ns) of a table folder: any part added, renamed or
    removed changes it. None for anything but a real folder."""
    try:
        st = os.stat(path, follow_symlinks=False)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns) if stat.S_ISDIR(st.st_mode) else None


def _scan(folder: Path) -> tuple[list[Part], bool]:
    """caviar's parts in a table folder (paths as text: this runs on every poll), and whether it also
    holds a Parquet file that is not one (written by another tool: the table is then read whole).
    Entries that are symbolic links are never listed, as caviar's reader never follows them."""
    parts, foreign = [], False
    for entry in os.scandir(folder):
        if entry.name.startswith((".", "_")) or not entry.is_file(follow_symlinks=False):
            continue
        bounds = part_range(entry.name)
        if bounds is not None:
            parts.append(Part(*bounds, entry.path))
        elif entry.name.endswith(".parquet"):
            foreign = True
    return sorted(parts), foreign


def _read(path: str | Path) -> pa.Table | None:
    """One part's rows under today's column names; None when it vanished (merged meanwhile). A part
    that does not read is left out, as caviar's reader leaves it out."""
    try:
        # One part is small: pyarrow's thread pool costs more than it saves (1 ms against 50 here).
        file = pq.ParquetFile(path)
        table = file.read(use_threads=file.metadata.num_rows > BIG_PART)
    except FileNotFoundError:
        return None
    except (OSError, pa.ArrowException):
        return pa.table({})
    return todays_names(table, Path(path).parent)
