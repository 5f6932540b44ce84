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
from caviar.store.layout import (QUARANTINE, aside_folders, compaction_folders, covered_parts, folder_kind,
                                 holds_results, link_refusal, linked_entries, list_parts, read_error, visible_parts)
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
    # This run's leftovers, or an earlier one's: exactly `.NAME.old-<8 hex>` or `.NAME.new-<8 hex>`
    # (a glob would also match another run's, `.NAME.old-x.old-…` of a run named `NAME.old-x`).
    leftover = re.compile(rf"\.{re.escape(name)}\.(old|new)-[0-9a-f]{{8}}")
    for old in [entry for entry in out.iterdir() if leftover.fullmatch(entry.name)]:
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
    - A compaction killed between renaming the table aside and its new folder in: the table is put
      back; killed after, the old table aside is deleted.
    - A part that cannot be read for the machine's reason (EIO, EACCES, ...): its OSError, raised as
      it is, before any part, temp file or leftover is moved or deleted.
    - A part whose content does not read (bad magic bytes or footer, cut short): in a babysat run,
      refused (its rows cannot be rebuilt); in a sweep, moved to `.quarantine/<table>/` with one
      warning line on stderr, and what it held runs again (`caviar.sweep.restore`).
    - A single-file table (`trials.parquet` written by another tool) becomes a folder holding it as
      its first part, so appends can follow without rewriting it.
    """
    run = Path(run)
    for name in TABLES:
        for link in linked_entries(run / f"{name}.parquet")[:1]:
            raise ValueError(f"--resume: {link_refusal(link)}")
    for name in TABLES:
        _restore_aside(run / f"{name}.parquet")
    babysat = folder_kind(run) == RunKind.BABYSIT
    damaged = _damaged(run)      # every part read before anything moves: the machine's OSError is raised
    if babysat:
        for _, _, why in damaged[:1]:
            raise ValueError(f"--resume: {why}; a babysat run cannot rebuild its rows: "
                             "start it over with --overwrite")
    _remove_temp_files(run)
    for leftover in compaction_folders(run):   # before its swap the new table, after it the old one
        _remove(leftover)
    for name in TABLES:
        _as_folder(run, name)
    if not babysat:
        _quarantine_unreadable(run, damaged)
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


def _restore_aside(table: Path) -> None:
    """Clear what a compaction that renamed the table aside left: with no table, the aside folder is
    the table (put back); beside a table, it is the old one (deleted)."""
    for aside in aside_folders(table):
        if not table.exists() and not table.is_symlink() and aside.is_dir() and not aside.is_symlink():
            os.replace(aside, table)
        else:
            _remove(aside)


def _damaged(run: Path) -> list[tuple[str, Path, str]]:
    """(table, part, why) for each part of the run whose content does not read. A single-file table
    is named as the part it becomes (`_as_folder`)."""
    found = []
    for name in TABLES:
        table = run / f"{name}.parquet"
        for path in visible_parts(table):
            if (why := read_error(path)) is not None:
                found.append((name, table / "part-000000.parquet" if path == table else path, why))
    return found


def _quarantine_unreadable(run: Path, found: list[tuple[str, Path, str]]) -> None:
    """Move a sweep's parts that do not read (`found` first) to `.quarantine/<table>/` (hidden: no
    reader opens it), one warning line each. Parts a quarantined compacted part covered are read
    again, so look again."""
    while found:
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
        found = _damaged(run)
