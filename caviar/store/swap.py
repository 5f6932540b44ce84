"""Putting a compacted table in place of the live one (`TableWriter.compact`), each row read once.

The compaction has built the new table folder beside the live one, hidden (`staging`). Three ways to
put it in place, the first that works:

1. `renameat2(RENAME_EXCHANGE)` swaps the two folders in one atomic step: a reader sees the old
   parts or the merged one, never both nor neither. A failed renameat2 changes nothing, so any
   errno from it (an old kernel, another OS, overlayfs's EXDEV, a sandbox's EPERM) goes on to 2.
2. The live table is renamed aside (`.<table>.parquet.aside-<hex>`, `caviar.store.layout.aside_folder`),
   then the new folder is renamed in: a reader briefly finds no table (caviar's reader lists again),
   never a row twice. A crash in between leaves no table and the aside folder, which a resume puts
   back (`caviar.store.folder.repair`); after it, the aside folder, which a resume deletes.
3. Where a folder cannot be renamed either (a folder of overlayfs's lower layer: EXDEV) or the
   table holds what a hard link cannot carry (a folder), the merged part is moved into the table
   folder before the parts it covers are deleted: caviar's readers skip the covered parts, and a
   resume deletes them (`caviar.store.layout.covered_parts`).
"""

from __future__ import annotations

import ctypes
import errno
import os
import secrets
import shutil
import sys
from pathlib import Path
from typing import Any

from caviar.store.atomic import fsync_dir
from caviar.store.layout import aside_folder

_AT_FDCWD, _RENAME_EXCHANGE = -100, 2
_CANNOT = {errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EPERM}


def _load_renameat2() -> Any:
    """glibc's `renameat2`, or None where there is none (another OS, a C library without it)."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


_RENAMEAT2 = _load_renameat2()     # None: never swap (a test may set it so, to take the other ways)


def exchange(a: Path, b: Path) -> bool:
    """Swap the entries `a` and `b` (two folders side by side) in one atomic step: a reader finds
    one or the other at each name, never neither nor a mix. False, with nothing changed, where the
    OS, the kernel or the file system cannot; OSError for any other failure (nothing changed either)."""
    if _RENAMEAT2 is None:
        return False
    if _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in _CANNOT:
        return False
    raise OSError(code, os.strerror(code), str(a), None, str(b))


def _carry_over(table: Path, staging: Path, replaced: set[str]) -> bool:
    """Hard-link into `staging` every entry of the folder `table` but the parts the merge replaces
    (another tool's files, a link, a temp file), so that the new folder holds them where they were.
    False when one cannot be carried (a folder; a file system without hard links)."""
    try:
        for entry in os.scandir(table):
            if entry.name in replaced:
                continue
            if entry.is_dir(follow_symlinks=False):
                return False
            os.link(entry.path, staging / entry.name, follow_symlinks=False)
    except (OSError, NotImplementedError):   # os.link raises the latter where links cannot be made
        return False                             # without following them (follow_symlinks=False)
    return True


def put_in_place(table: Path, staging: Path, merged: str, replaced: list[Path], *, fsync: bool) -> None:
    """Make the folder `staging`, which holds the merged part `merged`, the table folder `table` in
    place of the parts `replaced` (see the module's doc). Afterwards `staging` is gone or holds only
    what is to be deleted."""
    if _carry_over(table, staging, {path.name for path in replaced}):
        if fsync:
            fsync_dir(staging)          # the links carried over are on disk before the folder moves in
        try:
            swapped = exchange(staging, table)
        except OSError:
            swapped = False             # a failed renameat2 changed nothing: the next way
        if swapped or _rename_in(table, staging):
            if fsync:
                fsync_dir(table.parent)
            return
    _merge_in_place(table, staging / merged, replaced, fsync=fsync)


def _rename_in(table: Path, staging: Path) -> bool:
    """Rename the live table aside, the new folder in, then delete the old one. False, nothing
    changed, when the table folder cannot be renamed."""
    aside = aside_folder(table, secrets.token_hex(4))
    try:
        os.rename(table, aside)
    except OSError:
        return False
    try:
        os.rename(staging, table)
    except BaseException:
        os.rename(aside, table)         # the live table back where it was
        raise
    shutil.rmtree(aside, ignore_errors=True)   # what is left, a resume deletes
    return True


def _merge_in_place(table: Path, staged: Path, covered: list[Path], *, fsync: bool) -> None:
    """The merged part moves in beside the parts it covers, which are then deleted (a crash in
    between leaves covered parts, which caviar's readers skip and a resume deletes)."""
    merged = table / staged.name
    os.replace(staged, merged)
    if fsync:
        fsync_dir(table)
    for path in covered:
        if path != merged:
            path.unlink(missing_ok=True)
