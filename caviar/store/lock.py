"""The run lock: one driver at a time per run, and the answer to "is this run being worked on?".

The lock is `OUT/.NAME.lock`, beside the run folder rather than inside it: `--overwrite` replaces the
folder, and a lock inside it would be replaced with it (two drivers started together would each hold
a lock on a different file). It is taken before the folder is created, reset or resumed, by every
driver alike (`caviar.lifecycle`).

It is an exclusive `flock` held on an open file for the life of the run: the kernel drops it when the
process dies (even by SIGKILL), so a stale file is simply taken over, and of two processes starting
at once exactly one gets it. The file holds {"pid", "start", "kind", "open"} (start: the process's
start time in clock ticks where /proc has it, so a recycled pid is not mistaken for the driver) only
to answer `holder` ("is a babysit of this run alive, and has it opened its folder yet?", asked by
`caviar nudge`). "open" turns true (`mark_open`) once the driver has created, replaced or repaired
the run folder: before that, `--overwrite` is about to replace whatever is in it. A lock file
without it (an older caviar's) reads as not open.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import Iterator, NamedTuple

_HELD: dict[Path, int] = {}  # lock file -> open descriptor, for each run this process holds


class Holder(NamedTuple):
    """The live process holding a run's lock, and which driver it is ("sweep" or "babysit")."""

    pid: int
    kind: str
    open: bool = False  # the driver has opened the run folder (`mark_open`)

    def describe(self) -> str:
        """"caviar parallel (process 123)": the command a user would recognise."""
        command = {"sweep": "parallel"}.get(self.kind, self.kind)
        return f"caviar {command} (process {self.pid})"


def lock_path(run_dir: str | Path) -> Path:
    """Where the lock of the run folder `run_dir` (OUT/NAME) lives: OUT/.NAME.lock (hidden)."""
    run_dir = Path(run_dir)
    return run_dir.parent / f".{run_dir.name}.lock"


def _start_ticks(pid: int) -> int | None:
    """The start time of process `pid` in clock ticks since boot (Linux /proc), or None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) is in parentheses and may hold spaces: split after the last ')'.
    fields = stat[stat.rfind(")") + 2:].split()
    if fields and fields[0] in ("Z", "X"):  # a zombie or dead process is not running any loop
        return -1
    return int(fields[19]) if len(fields) > 19 else None


def _alive(pid: int, start: int | None) -> bool:
    """Does process `pid` exist, and is it the same process that wrote the lock?"""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    ticks = _start_ticks(pid)
    if ticks == -1:
        return False
    return start is None or ticks is None or ticks == start


def holder(run_dir: str | Path) -> Holder | None:
    """The live process holding the run's lock, or None (no lock, unreadable, or left by a dead one)."""
    path = lock_path(run_dir)
    if path.is_symlink():
        return None
    try:
        held = json.loads(path.read_text())
        pid, start, kind = int(held["pid"]), held.get("start"), str(held.get("kind", ""))
        is_open = held.get("open", False) is True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return Holder(pid, kind, is_open) if _alive(pid, None if start is None else int(start)) else None


def acquire(run_dir: str | Path, kind: str) -> Path:
    """Hold the run's lock until `release` (or this process's end); returns the lock file.

    Raises ValueError naming the run and the holder when another process holds it.
    """
    path = lock_path(run_dir)
    if path in _HELD:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(3):
        fd = _open_and_lock(path, run_dir)
        # The holder releases by unlinking the file, then closing it: a file opened just before the
        # unlink is locked by nobody else, but nobody else sees it either. Take the one at the path.
        try:
            ours = os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False))
        except FileNotFoundError:
            ours = False
        if not ours:
            os.close(fd)
            continue
        _write(fd, {"pid": os.getpid(), "start": _start_ticks(os.getpid()), "kind": kind, "open": False})
        _HELD[path] = fd
        return path
    raise ValueError(f"name: could not take the lock {path}")


def _write(fd: int, held: dict) -> None:
    """The lock file's body, in place: replacing the file would leave the lock on the old one.
    "open": false is written as "open": false, "open": true as "open": true plus a space, so that
    `mark_open` rewrites the file at the same length (never truncated under a reader)."""
    body = json.dumps(held).replace('"open": true}', '"open": true }').encode()
    os.pwrite(fd, body, 0)
    os.ftruncate(fd, len(body))


def mark_open(run_dir: str | Path) -> None:
    """Say in the run's lock file, which this process holds, that the run folder is open now (created,
    replaced or repaired): from then on what is sent into it stays (`caviar nudge` waits for this)."""
    fd = _HELD[lock_path(run_dir)]
    held = json.loads(os.pread(fd, os.fstat(fd).st_size, 0))
    _write(fd, {**held, "open": True})


def _open_and_lock(path: Path, run_dir: str | Path) -> int:
    """An open descriptor of `path`, exclusively locked; ValueError naming the holder if it is taken."""
    # O_NOFOLLOW: a link planted at the lock's name is refused (ELOOP), never written through. An
    # OSError goes up as it is, naming the path (the command line tells it as "--out: PATH: problem").
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        who = holder(run_dir)
        what = who.describe() if who else "another caviar process"
        raise ValueError(f"name: {Path(run_dir).name!r} is being run by {what} right now") from None
    except BaseException:
        os.close(fd)
        raise
    return fd


def release(run_dir: str | Path) -> None:
    """Give the run's lock up if this process holds it (the file goes while still locked)."""
    path = lock_path(run_dir)
    fd = _HELD.pop(path, None)
    if fd is None:
        return
    try:
        if os.path.samestat(os.fstat(fd), os.stat(path, follow_symlinks=False)):
            path.unlink()  # while still locked, so nobody takes a file that is about to vanish
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def held(run_dir: str | Path, kind: str) -> Iterator[Path]:
    """The run's lock for the duration of a `with` block."""
    path = acquire(run_dir, kind)
    try:
        yield path
    finally:
        release(run_dir)
