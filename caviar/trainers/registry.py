"""How a job's `[model] trainer` becomes a class: a built-in short name, or "package.module:Class".

The built-in names are listed by `caviar.nn` itself (`caviar.nn.TRAINERS`), so nothing outside the
network's package needs to know which class they name.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import sys
from pathlib import Path

from caviar.importing import is_import_name, resolve


def builtin_trainers() -> dict[str, str]:
    """Short name -> "module:Class" of the trainers that ship with caviar."""
    return dict(importlib.import_module("caviar.nn").TRAINERS)


def is_builtin(name: str) -> bool:
    return name in builtin_trainers()


def resolve_trainer(name: str) -> type:
    """The trainer class a job names (importing a user's module: running a job means trusting it).

    Raises ValueError "model.trainer: ..." when the name is malformed or the module or class cannot
    be found; the class's shape is `check_trainer`'s business.
    """
    builtins = builtin_trainers()
    target = builtins.get(name, name)
    if not is_import_name(target):
        raise ValueError(f"model.trainer: expected one of {sorted(builtins)} or 'package.module:ClassName', "
                         f"got {name!r}")
    return resolve(target, "model.trainer", "class")


def module_origin(name: str) -> Path | None:
    """Where a job's trainer module would be imported from, found without importing anything: the
    first entry of sys.path holding its top-level package or module (the rest of the dotted name
    inside it). None for a built-in name, or when no entry holds it (the import will say so)."""
    if is_builtin(name) or ":" not in name:
        return None
    parts = name.partition(":")[0].split(".")
    for entry in sys.path:
        base = Path(entry or os.getcwd())
        top = base / parts[0]
        files = [top.with_name(parts[0] + suffix) for suffix in importlib.machinery.all_suffixes()]
        if top.is_dir() or any(f.is_file() for f in files):
            deeper = base.joinpath(*parts)
            for candidate in (deeper.with_suffix(".py"), deeper / "__init__.py", *files, top):
                if candidate.exists():
                    return candidate.resolve()
    return None


def refuse_code_from(name: str, folder: Path, field: str = "model.trainer") -> Path | None:
    """Refuse (ValueError) a trainer (or a data function: `field` "data.source") whose module would be
    imported from inside `folder` (the results folder: a received run must never choose code).
    Returns where it would come from (None: built-in, not code, or not found)."""
    origin = module_origin(name)
    folder = Path(folder).resolve()
    if origin is not None and (origin == folder or folder in origin.parents):
        raise ValueError(f"{field}: {name!r} would be imported from {origin}, inside --out {folder}; "
                         "caviar never runs code from a results folder (move the module elsewhere)")
    return origin
