"""How a job's `[model] trainer` becomes a class: a built-in short name, or "package.module:Class".

The built-in names are listed by `caviar.nn` itself (`caviar.nn.TRAINERS`), so nothing outside the
network's package needs to know which class they name.
"""

from __future__ import annotations

import importlib
from typing import Any

from caviar.config.messages import one_line


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
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(f"model.trainer: expected one of {sorted(builtins)} or 'package.module:ClassName', "
                         f"got {name!r}")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing (a SyntaxError, ...)
        raise ValueError(f"model.trainer: cannot import module {module_name!r} ({type(exc).__name__}: "
                         f"{one_line(exc)})") from None
    cls: Any = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"model.trainer: module {module_name!r} has no class {class_name!r}")
    return cls
