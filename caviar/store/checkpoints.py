"""Atomic .npz checkpoints, and the babysitter's store of them (best, last, and a ring of epochs).

A checkpoint is one .npz: the trainer's state (plain arrays) plus `__meta__`, a 0-d unicode array
holding JSON (hyperparameters, epoch, the babysitter's counters). Data only: written with
`allow_pickle=False` and read with `np.load(allow_pickle=False)`, so opening a checkpoint can never
run code. Each file is written to a hidden temp file in its folder, fsynced, then moved into place
with `os.replace`: a crash (or a full disk) leaves the old file or the new one, never half of one.

Nothing is read or written through a symbolic link: a linked checkpoint file reads as corrupt (it
is never opened), and a store whose folder is a link refuses to work (ValueError).
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import warnings
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from caviar.store.atomic import atomic_write, fsync_dir, temp_path

__all__ = ["Checkpoint", "CheckpointStore", "CorruptCheckpoint", "CorruptCheckpointWarning",
           "load_checkpoint", "save_checkpoint"]

META_KEY = "__meta__"
_EPOCH = re.compile(r"epoch-(\d+)\.npz")
_BEST = re.compile(r"best-(\d+)\.npz")


class CorruptCheckpoint(ValueError):
    """A checkpoint file that exists but does not read: truncated, damaged, or not a caviar checkpoint."""


class CorruptCheckpointWarning(UserWarning):
    """A store skipped corrupt checkpoints (`.paths`) and used another one, or found none."""

    def __init__(self, message: str, paths: tuple[Path, ...] = ()) -> None:
        super().__init__(message)
        self.paths = paths


def _arrays(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check a state dict: names -> numeric/bool/string arrays (NumPy scalars become 0-d arrays)."""
    arrays = {}
    for key, value in state.items():
        if not isinstance(key, str) or not key or key == META_KEY:
            raise ValueError(f"checkpoint state: bad key {key!r} (a non-empty string other than {META_KEY!r})")
        if not isinstance(value, (np.ndarray, np.generic)):
            raise ValueError(f"checkpoint state[{key!r}]: expected a numpy array, got {type(value).__name__}")
        value = np.asarray(value)
        if value.dtype.hasobject:
            raise ValueError(f"checkpoint state[{key!r}]: object arrays would need pickle; "
                             "store numbers, booleans or strings")
        arrays[key] = value
    return arrays


def _meta_text(meta: Mapping[str, Any]) -> str:
    def plain(value: Any) -> Any:   # NumPy scalars and arrays as their Python values
        if isinstance(value, (np.generic, np.ndarray)):
            return value.tolist()
        raise TypeError(f"{type(value).__name__} is not JSON-serializable")
    try:
        return json.dumps(dict(meta), default=plain)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"checkpoint meta: {exc}") from None


def save_checkpoint(path: str | Path, state: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
                    fsync: bool = True) -> Path:
    """Write `state` (name -> array) and `meta` (JSON-serializable) to the .npz `path`, atomically.

    Raises ValueError for an object array (it would need pickle) or meta that is not JSON.
    The members are written as `np.savez` writes them (one .npy per key in a zip), directly, so
    that no state key can collide with a keyword of `np.savez`.
    """
    path = Path(path)
    arrays = _arrays(state)
    arrays[META_KEY] = np.array(_meta_text(meta))

    def write(f: Any) -> None:
        with zipfile.ZipFile(f, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            for key, array in arrays.items():
                with zf.open(f"{key}.npy", "w", force_zip64=True) as member:
                    np.lib.format.write_array(member, array, allow_pickle=False)

    atomic_write(path, write, fsync=fsync)
    return path


def _open_unlinked(path: Path) -> Any:
    """`path` open for reading, never through a symbolic link (CorruptCheckpoint: it is one)."""
    try:
        return os.fdopen(os.open(path, os.O_RDONLY | os.O_NOFOLLOW), "rb")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise CorruptCheckpoint(f"checkpoint {path}: a symbolic link (never followed)") from None
        raise


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`(state, meta)` from a checkpoint, exactly as saved (dtypes, shapes, values).

    Raises FileNotFoundError when there is no file, CorruptCheckpoint when it does not read.
    """
    path = Path(path)
    try:
        with _open_unlinked(path) as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with npz:
                arrays = {key: npz[key] for key in npz.files}   # reads (and CRC-checks) every member
    except (FileNotFoundError, CorruptCheckpoint):
        raise
    except (ValueError, OSError, EOFError, KeyError, zipfile.BadZipFile, AttributeError) as exc:
        raise CorruptCheckpoint(f"checkpoint {path}: does not read ({exc})") from exc
    meta = arrays.pop(META_KEY, None)
    if meta is None or meta.ndim != 0 or meta.dtype.kind != "U":
        raise CorruptCheckpoint(f"checkpoint {path}: no {META_KEY} (not a caviar checkpoint)")
    try:
        return arrays, json.loads(str(meta[()]))
    except json.JSONDecodeError as exc:
        raise CorruptCheckpoint(f"checkpoint {path}: {META_KEY} is not JSON ({exc})") from exc


class Checkpoint(tuple):
    """A checkpoint a store loaded. Unpacks as `state, meta = ...`; `.path` is the file it came from
    (an older one when the wanted one was corrupt) and `.skipped` the corrupt files passed over."""

    path: Path
    skipped: tuple[Path, ...]

    def __new__(cls, state: dict[str, np.ndarray], meta: dict[str, Any], path: Path,
                skipped: tuple[Path, ...] = ()) -> Checkpoint:
        self = super().__new__(cls, (state, meta))
        self.path, self.skipped = path, skipped
        return self

    @property
    def state(self) -> dict[str, np.ndarray]:
        return self[0]

    @property
    def meta(self) -> dict[str, Any]:
        return self[1]


class CheckpointStore:
    """The checkpoints of one babysat run, in `folder`:

    - `epoch-000012.npz` for each of the last `keep` epochs saved (the ring);
    - `last.npz`, the newest: a hard link to its epoch file (a copy where links are not allowed);
    - `best.npz`, the newest saved with best=True: a copy of its own, not a link, so that damage to
      one file never takes every copy of the best;
    - `best-000012.npz`, a hard link to the best's epoch file that outlives the ring's pruning: the
      best's other copy, whose name says the best's epoch.

    Saving thus writes the state once, plus one copy of it when it is the best. A corrupt best.npz
    falls back to best-NNNNNN.npz; a corrupt last.npz to the ring and the best's copies, newest first.
    """

    def __init__(self, folder: str | Path, keep: int = 3, *, fsync: bool = True) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep: must be an integer >= 0, got {keep!r}")
        self.folder = Path(folder)
        self.keep = keep
        self._fsync = fsync

    def path(self, epoch: int) -> Path:
        return self.folder / f"epoch-{epoch:06d}.npz"

    def best_path(self, epoch: int) -> Path:
        """The best's own copy, named for its epoch."""
        return self.folder / f"best-{epoch:06d}.npz"

    def epochs(self) -> list[int]:
        """The epochs in the ring, oldest first."""
        return self._numbered(_EPOCH)

    def best_epochs(self) -> list[int]:
        """The epochs of the best's copies, oldest first (one, but for a crash in the middle of a save)."""
        return self._numbered(_BEST)

    def _numbered(self, pattern: re.Pattern) -> list[int]:
        self.check_folder()
        if not self.folder.is_dir():
            return []
        return sorted(int(m[1]) for e in os.scandir(self.folder) if (m := pattern.fullmatch(e.name)))

    def check_folder(self) -> None:
        """Raise ValueError when the folder is a symbolic link: never read or written through one."""
        if self.folder.is_symlink():
            raise ValueError(f"checkpoints: {self.folder} is a symbolic link; a run's checkpoints are never "
                             "read or written through one (remove it)")

    def save(self, epoch: int, state: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
             best: bool) -> Path:
        """Checkpoint `epoch`: the epoch file, then (if `best`) best.npz and best-EPOCH.npz, then last.npz.

        Only then is anything removed: epoch files numbered above `epoch` (a branch a rollback
        abandoned) and all but the newest `keep`, and the copies of an older best. A failure on the way
        (a full disk) leaves every file that was there whole, and the best with both its copies.
        """
        self.check_folder()
        self.folder.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(self.path(epoch), state, meta, fsync=self._fsync)
        if best:
            self._copy(path, self.folder / "best.npz")
            self._link(path, self.best_path(epoch))
        self._link(path, self.folder / "last.npz")
        if self._fsync:
            fsync_dir(self.folder)
        ring = self.epochs()
        kept = set([e for e in ring if e <= epoch][-self.keep:] if self.keep else [])
        for e in ring:
            if e not in kept:
                self.path(e).unlink(missing_ok=True)
        bests = self.best_epochs()
        for e in bests:
            if e != (epoch if best else bests[-1]):
                self.best_path(e).unlink(missing_ok=True)
        return path

    def _copy(self, source: Path, final: Path) -> None:
        """`final` as a file of its own holding `source`'s bytes, atomically (the folder is fsynced
        once, by `save`)."""
        with open(source, "rb") as f:
            atomic_write(final, lambda out: shutil.copyfileobj(f, out), fsync=self._fsync, sync_folder=False)

    def _link(self, source: Path, final: Path) -> None:
        tmp = temp_path(final)
        try:
            try:
                os.link(source, tmp)
            except OSError:       # no hard links here (some network or FAT file systems)
                shutil.copyfile(source, tmp)
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def load_last(self) -> Checkpoint | None:
        """The newest checkpoint; when last.npz is missing or corrupt, the newest readable epoch file or
        copy of the best (an older state is a resume point too: its later epochs are trained again)."""
        ring, bests = self.epochs(), self.best_epochs()[-1:]   # best.npz: the copy of the newest best-*
        if ring and bests and bests[0] > ring[-1]:
            bests = []       # a best from a branch a rollback (or a resume from an older checkpoint) left
        found = [(e, 2, self.path(e)) for e in ring] + [(e, 1, self.folder / "best.npz") for e in bests]
        found += [(e, 0, self.best_path(e)) for e in bests]
        return self._first_readable(self.folder / "last.npz", [path for *_, path in sorted(found, reverse=True)])

    def load_best(self) -> Checkpoint | None:
        """best.npz; when it is missing or corrupt, the best's other copy (best-EPOCH.npz). Never
        another epoch: None when no best was saved or no copy of it reads."""
        pinned = [self.best_path(e) for e in reversed(self.best_epochs())]
        if not os.path.lexists(self.folder / "best.npz") and not pinned:
            return None
        return self._first_readable(self.folder / "best.npz", pinned)

    def load_epoch(self, epoch: int) -> Checkpoint | None:
        """The checkpoint of `epoch`, from the best's copy or the ring; None when neither reads."""
        return self._first_readable(self.best_path(epoch), [self.path(epoch)])

    def _first_readable(self, wanted: Path, fallbacks: list[Path]) -> Checkpoint | None:
        """The first of `wanted`, *fallbacks that reads; one warning names every corrupt one skipped."""
        self.check_folder()
        skipped: list[Path] = []
        found = None
        for path in [wanted, *fallbacks]:
            try:
                found = Checkpoint(*load_checkpoint(path), path, tuple(skipped))
                break
            except FileNotFoundError:
                continue
            except CorruptCheckpoint:
                if path not in skipped:
                    skipped.append(path)
        if skipped:
            outcome = f"using {found.path}" if found is not None else "no older checkpoint reads"
            warnings.warn(CorruptCheckpointWarning(
                f"corrupt checkpoint {', '.join(map(str, skipped))} (truncated or damaged): {outcome}",
                tuple(skipped)), stacklevel=3)
        return found
