"""Atomic .npz checkpoints, and the babysitter's store of them (best, last, and a ring of epochs).

A checkpoint is one .npz: the trainer's state (plain arrays) plus `__meta__`, a 0-d unicode array
holding JSON (hyperparameters, epoch, the babysitter's counters). Data only: written with
`allow_pickle=False` and read with `np.load(allow_pickle=False)`, so opening a checkpoint can never
run code. Each file is written to a hidden temp file in its folder, fsynced, then moved into place
with `os.replace`: a crash leaves the old file or the new one, never half of one.
"""

from __future__ import annotations

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


class CorruptCheckpoint(ValueError):
    """A checkpoint file that exists but does not read: truncated, damaged, or not a caviar checkpoint."""


class CorruptCheckpointWarning(UserWarning):
    """A store skipped a corrupt checkpoint and used an older one."""


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


def load_checkpoint(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """`(state, meta)` from a checkpoint, exactly as saved (dtypes, shapes, values).

    Raises FileNotFoundError when there is no file, CorruptCheckpoint when it does not read.
    """
    path = Path(path)
    try:
        with open(path, "rb") as f:
            npz = np.load(f, allow_pickle=False)
            if not isinstance(npz, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with npz:
                arrays = {key: npz[key] for key in npz.files}   # reads (and CRC-checks) every member
    except FileNotFoundError:
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

    `epoch-000012.npz` for each of the last `keep` epochs saved, `last.npz` (the newest) and
    `best.npz` (the newest saved with best=True). best and last are hard links to the epoch file
    when the file system allows (a copy otherwise), so saving writes the state once.
    """

    def __init__(self, folder: str | Path, keep: int = 3, *, fsync: bool = True) -> None:
        if isinstance(keep, bool) or not isinstance(keep, int) or keep < 0:
            raise ValueError(f"keep: must be an integer >= 0, got {keep!r}")
        self.folder = Path(folder)
        self.keep = keep
        self._fsync = fsync

    def path(self, epoch: int) -> Path:
        return self.folder / f"epoch-{epoch:06d}.npz"

    def epochs(self) -> list[int]:
        """The epochs in the ring, oldest first."""
        if not self.folder.is_dir():
            return []
        return sorted(int(m[1]) for e in os.scandir(self.folder) if (m := _EPOCH.fullmatch(e.name)))

    def save(self, epoch: int, state: Mapping[str, np.ndarray], meta: Mapping[str, Any], *,
             best: bool) -> Path:
        """Checkpoint `epoch`: the epoch file, then best.npz (if `best`), then last.npz.

        Epoch files numbered above `epoch` belong to a branch a rollback abandoned and are removed,
        as are all but the newest `keep`.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        path = save_checkpoint(self.path(epoch), state, meta, fsync=self._fsync)
        if best:
            self._link(path, self.folder / "best.npz")
        self._link(path, self.folder / "last.npz")
        if self._fsync:
            fsync_dir(self.folder)
        ring = self.epochs()
        kept = set([e for e in ring if e <= epoch][-self.keep:] if self.keep else [])
        for e in ring:
            if e not in kept:
                self.path(e).unlink(missing_ok=True)
        return path

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
        """The newest checkpoint; when last.npz is missing or corrupt, the newest readable epoch file."""
        ring = [self.path(e) for e in reversed(self.epochs())]
        return self._first_readable(self.folder / "last.npz", ring)

    def load_best(self) -> Checkpoint | None:
        """best.npz; when it is corrupt, the newest readable epoch file older than it. None when no
        best was saved, or when it is corrupt and the ring has moved past its epoch."""
        best = self.folder / "best.npz"
        if not best.exists():
            return None
        ring = [self.path(e) for e in reversed(self.epochs())]
        # best is a hard link to its epoch file while the ring holds it: the shared inode names its
        # epoch (modification times do not: damaging a file in place updates them)
        same = [i for i, p in enumerate(ring) if p.exists() and os.path.samefile(p, best)]
        return self._first_readable(best, ring[same[0]:] if same else [])

    def _first_readable(self, wanted: Path, fallbacks: list[Path]) -> Checkpoint | None:
        """The first of `wanted`, *fallbacks that reads; one warning names every corrupt one skipped."""
        skipped: list[str] = []
        found = None
        for path in [wanted, *fallbacks]:
            try:
                found = Checkpoint(*load_checkpoint(path), path, tuple(Path(s) for s in skipped))
                break
            except FileNotFoundError:
                continue
            except CorruptCheckpoint:
                if str(path) not in skipped:
                    skipped.append(str(path))
        if skipped:
            outcome = f"using {found.path}" if found is not None else "no older checkpoint reads"
            warnings.warn(f"corrupt checkpoint {', '.join(skipped)} (truncated or damaged): {outcome}",
                          CorruptCheckpointWarning, stacklevel=3)
        return found
