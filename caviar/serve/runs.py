"""The runs under `--out` as the server sees them: which folder a URL's name means, each run's tables
(read on incrementally, `caviar.serve.cache`) and its one-line summary for the runs list.

A name from a URL is a run only if it is a valid run name (`validate_run_name`: no '/', no '..', no
leading '.') of a folder directly under `--out` that is not a symbolic link and holds a run: anything
else is `NotFound` (404), so no URL reaches outside `--out`. job.toml is read as TOML data; nothing
in a run folder is imported or executed.
"""

from __future__ import annotations

import os
import threading
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caviar.serve.cache import TableCache
from caviar.serve.summary import state, summarize, tally
from caviar.store.layout import folder_kind, is_run
from caviar.store.lock import holder
from caviar.store.vocabulary import JOB_FILE, TABLES, RunKind, validate_run_name

LOOK_EVERY = 0.2  # seconds: a page polls every second; its questions within one poll share a look


class NotFound(LookupError):
    """No run of that name under --out (or a name that would leave it): a 404."""


def resolve(out: Path, name: str) -> Path:
    """The run folder `out/name`; NotFound unless `name` is a run name and the folder a run of
    `out`'s own (not a link, directly inside it)."""
    try:
        validate_run_name(name)
    except ValueError:
        raise NotFound(name) from None
    path = Path(out) / name
    if path.is_symlink() or not is_run(path) or path.resolve().parent != Path(out).resolve():
        raise NotFound(name)
    return path


def run_names(out: Path) -> list[str]:
    """The runs directly under `out`, by name (hidden entries, links and other folders left out)."""
    if not Path(out).is_dir():
        return []
    names = []
    for entry in os.scandir(out):
        if entry.name.startswith(".") or entry.is_symlink() or not entry.is_dir():
            continue
        try:
            names.append(Path(resolve(out, entry.name)).name)
        except NotFound:
            continue
    return sorted(names)


@dataclass
class RunCache:
    """One run folder's tables and job, read on as they grow."""

    path: Path
    identity: tuple[int, int]
    tables: dict[str, TableCache] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    _job_stamp: tuple[int, int] | None = None
    _tally: tuple[Any, dict[str, Any]] | None = None
    _kind: RunKind | None = None

    def refresh(self, names: tuple[str, ...] = TABLES, force: bool = False) -> None:
        """Read the job (when it changed) and whatever the tables `names` gained (`force`: now,
        whenever they were last looked at)."""
        self._read_job()
        for name in names:
            self.table(name).refresh(force)

    def table(self, name: str) -> TableCache:
        """The cache of table `name`; it looks at the folder at most every `LOOK_EVERY` seconds."""
        if name not in self.tables:
            self.tables[name] = TableCache(self.path / f"{name}.parquet", interval=LOOK_EVERY)
        return self.tables[name]

    def _read_job(self) -> None:
        path = self.path / JOB_FILE
        try:
            st = os.stat(path, follow_symlinks=False)
        except OSError:
            self.job, self._job_stamp = {}, None
            return
        stamp = (st.st_ino, st.st_mtime_ns)
        if stamp == self._job_stamp or path.is_symlink():
            return
        try:
            self.job = tomllib.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
            self.job = {}
        self._job_stamp = stamp

    @property
    def kind(self) -> RunKind:
        """What wrote the run (a folder without rows yet: a sweep, until its files say otherwise)."""
        if self._kind is None:
            self._kind = folder_kind(self.path)
        return self._kind or RunKind.SWEEP

    def summary(self) -> dict[str, Any]:
        """The run's line in the runs list (refreshes first): see `caviar.serve.summary`. The rows'
        tally is computed again only when a table changed."""
        kind = self.kind
        needed = ("trials",) if kind == RunKind.SWEEP else ("epochs", "events")
        # The lock first, then the rows: a driver writes its last rows before it lets go, so rows read
        # after seeing it gone are all of them (read on a throttled look, a run that had just ended
        # showed as interrupted, its "final" event not yet seen).
        running = holder(self.path) is not None
        self.refresh(needed, force=not running)
        stamp = (kind, tuple((self.table(n).generation, self.table(n).rows) for n in needed), self._job_stamp)
        if self._tally is None or self._tally[0] != stamp:
            self._tally = (stamp, tally(kind, self.job, {n: self.table(n).table for n in needed}))
        counted = self._tally[1]
        status = state(kind, running=running, events=self.table("events").table,
                       done=counted["done"], planned=counted["planned"], compacted=len(self.table("trials").parts) <= 1)
        return summarize(self.path.name, kind, counted, status=status, started=_started(self.path),
                         ended=_ended(self.path), now=time.time())


class Runs:
    """Every run the server has been asked about, by name; a run replaced (`--overwrite`) is read anew."""

    def __init__(self, out: Path) -> None:
        self.out = Path(out)
        self._runs: dict[str, RunCache] = {}
        self._lock = threading.Lock()

    def get(self, name: str) -> RunCache:
        """The run `name` (NotFound: see `resolve`)."""
        path = resolve(self.out, name)
        st = os.stat(path, follow_symlinks=False)
        identity = (st.st_dev, st.st_ino)
        with self._lock:
            run = self._runs.get(name)
            if run is None or run.identity != identity:
                run = self._runs[name] = RunCache(path, identity)
        return run

    def summaries(self) -> list[dict[str, Any]]:
        """One summary per run under --out, newest first."""
        found = []
        for name in run_names(self.out):
            try:
                found.append(self.get(name).summary())
            except NotFound:
                continue   # gone since it was listed
        return sorted(found, key=lambda s: (s["started"] or 0, s["name"]), reverse=True)


def _started(path: Path) -> float | None:
    """When the run began, in Unix seconds: its job.toml, written as the folder is created."""
    try:
        return os.stat(path / JOB_FILE, follow_symlinks=False).st_mtime
    except OSError:
        return None


def _ended(path: Path) -> float | None:
    """When the run last wrote a table (its folder's newest change), in Unix seconds."""
    stamps = []
    for name in TABLES:
        try:
            stamps.append(os.stat(path / f"{name}.parquet", follow_symlinks=False).st_mtime)
        except OSError:
            continue
    return max(stamps, default=None)


__all__ = ["NotFound", "RunCache", "Runs", "resolve", "run_names"]
