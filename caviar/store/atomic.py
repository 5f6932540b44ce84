"""Atomic file writes: every result, checkpoint, figure and nudge is written whole or not at all.

The bytes go to a hidden temp file in the destination's own folder (so `os.replace` is an atomic
rename, and readers, which skip names starting with ".", never see it), then replace the
destination. A SIGKILL at any moment leaves the old file or the new one, never half of one; with
`fsync`, the data and the rename also survive a power cut. The temp name carries the writer's pid,
so a later repair can tell a dead writer's leftovers from a live writer's work in progress.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import BinaryIO, Callable


def temp_path(final: Path, folder: Path | None = None) -> Path:
    """A hidden, unique temp name for `final`: `.NAME.PID-RANDOM.tmp`, next to it or in `folder`."""
    return Path(folder or final.parent) / f".{final.name}.{os.getpid()}-{secrets.token_hex(3)}.tmp"


def fsync_dir(folder: Path) -> None:
    """Make the folder's entries (a rename, a new file) durable."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(final: str | Path, write: Callable[[BinaryIO], object], *, fsync: bool = True,
                 sync_folder: bool = True, temp_dir: Path | None = None) -> Path:
    """Write `final` through `write(binary_file)` into a temp file, then move it into place.

    fsync: the data and (with `sync_folder`, the default) the rename survive a power cut; a caller
    writing several files into one folder may sync the folder once itself. temp_dir: where the temp
    file is made (default: `final`'s folder); it must be on the same file system, so the move is one
    rename. A table's parts use the run folder, so that no reader listing a table folder ever meets
    a file that is not a part.
    """
    final = Path(final)
    tmp = temp_path(final, temp_dir)
    try:
        # O_EXCL | O_NOFOLLOW: a file or link planted at the temp name is never written through.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        with os.fdopen(fd, "wb") as f:
            write(f)
            if fsync:
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if fsync and sync_folder:
        fsync_dir(final.parent)
    return final


def atomic_write_bytes(final: str | Path, data: bytes, *, fsync: bool = False) -> Path:
    """`atomic_write` of a bytes object."""
    return atomic_write(final, lambda f: f.write(data), fsync=fsync)
