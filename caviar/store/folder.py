"""An open run folder: create, refuse, resume or replace `OUT/NAME`, and repair what a crash left.

`open_run` is called by the run lifecycle (`caviar.lifecycle`) once the job is validated; `RunFolder`
hands out one `TableWriter` per table. A new folder appears whole, job.toml inside, in one rename;
an overwritten one is renamed aside before its replacement moves in.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

import pyarrow as pa

from caviar.store.atomic import atomic_write
from caviar.store.layout import (QUARANTINE, compaction_folders, covered_parts, folder_kind, holds_results,
                                 link_refusal, linked_entries, list_parts, read_error, visible_parts)
from caviar.store.vocabulary import CHECKPOINTS, JOB_FILE, TABLES, RunKind, validate_run_name
from caviar.store.writer import TableWriter


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
        """End of run: every table that exists on disk or was written becomes one part (ValueError
        for a table that is a symbolic link)."""
        for name in TABLES:
            table = self.path / f"{name}.parquet"
            if name in self._writers or table.is_dir() or table.is_symlink():
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
    """Undo what a crash can leave in a run folder: temp files (unless their writer still runs), the
    hidden folder of a compaction cut short, and parts a compaction covers; set aside what does not
    read. Raises ValueError (one line, nothing changed) for what a resume must not go on with.

    - A table that is a symbolic link, or holds one a reader would follow: refused.
    - A part that does not read: in a babysat run, refused (its rows cannot be rebuilt); in a sweep,
      moved to `.quarantine/<table>/` with one warning line on stderr, and what it held runs again
      (`caviar.sweep.restore`).
    - A single-file table (`trials.parquet` written by another tool) becomes a folder holding it as
      its first part, so appends can follow without rewriting it.
    """
    run = Path(run)
    for name in TABLES:
        for link in linked_entries(run / f"{name}.parquet")[:1]:
            raise ValueError(f"--resume: {link_refusal(link)}")
    babysat = folder_kind(run) == RunKind.BABYSIT
    if babysat:
        _refuse_unreadable(run)
    _remove_temp_files(run)
    for leftover in compaction_folders(run):   # before its swap the new table, after it the old one
        _remove(leftover)
    for name in TABLES:
        _as_folder(run, name)
    if not babysat:
        _quarantine_unreadable(run)
    for name in TABLES:
        if (run / f"{name}.parquet").is_dir():
            for part in covered_parts(list_parts(run / f"{name}.parquet")):
                part.path.unlink(missing_ok=True)


def _remove_temp_files(run: Path) -> None:
    """Temp files a dead writer left in the run folder, its tables and its checkpoints; never
    through a link out of the folder."""
    for folder in (run, run / CHECKPOINTS, *(run / f"{t}.parquet" for t in TABLES)):
        if folder.is_dir() and (folder == run or not folder.is_symlink()):
            for entry in os.scandir(folder):
                if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file() \
                        and not _writer_alive(entry.name):
                    os.unlink(entry.path)


def _remove(path: Path) -> None:
    """Delete a leftover folder (a link or file of that name too, never what a link points to)."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def _as_folder(run: Path, name: str) -> None:
    """A single-file table becomes a folder holding it as its first part (a crash mid-way finished)."""
    table, staging = run / f"{name}.parquet", run / f".{name}.parquet.convert"
    if table.is_file():
        staging.mkdir(exist_ok=True)
        os.replace(table, staging / "part-000000.parquet")
    if staging.is_dir() and not table.exists():
        os.replace(staging, table)   # the folder appears with its part in one rename


def _refuse_unreadable(run: Path) -> None:
    """ValueError naming the first part of a babysat run that does not read."""
    for name in TABLES:
        for path in visible_parts(run / f"{name}.parquet"):
            why = read_error(path)
            if why is not None:
                raise ValueError(f"--resume: {why}; a babysat run cannot rebuild its rows: "
                                 "start it over with --overwrite")


def _quarantine_unreadable(run: Path) -> None:
    """Move a sweep's parts that do not read to `.quarantine/<table>/` (hidden: no reader opens it),
    one warning line each. Parts a quarantined compacted part covered are read again, so look again."""
    while True:
        found = [(name, path, why) for name in TABLES for path in visible_parts(run / f"{name}.parquet")
                 if (why := read_error(path)) is not None]
        if not found:
            return
        for name, path, why in found:
            aside = run / QUARANTINE / name / path.name
            aside.parent.mkdir(parents=True, exist_ok=True)
            for n in range(1, 1000):
                if not aside.exists():
                    break
                aside = aside.with_name(f"{path.name}.{n}")
            os.replace(path, aside)
            print(f"caviar: warning: {why}; moved to {aside}, and what it held runs again", file=sys.stderr,
                  flush=True)
