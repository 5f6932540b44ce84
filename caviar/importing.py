"""User code by name: "package.module:name" to the object, and an object to the name it is imported by.

A job names code as text ("mypackage.trainers:MyTrainer", "mypackage.data:load"), so that the job
file, the run's job.toml and every Ray worker reach the same object by importing it. From Python,
`caviar.sweep(..., trainer=MyTrainer)` passes the object itself: `import_name` gives the name it is
imported by, or says in one line why nothing else could import it (a class defined in `__main__`,
in a notebook, or inside a function).
"""

from __future__ import annotations

import importlib
import re
import sys
import types
from typing import Any

# "package.module:name": a dotted module path, a colon, an attribute name (no dots: a top-level name).
IMPORT_NAME = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")


def is_import_name(text: Any) -> bool:
    """Whether `text` reads as "package.module:name"."""
    return isinstance(text, str) and IMPORT_NAME.fullmatch(text) is not None


def resolve(name: str, field: str, what: str) -> Any:
    """The object "package.module:attr" names (importing the module: running a job means trusting it).

    field: the job field to name in errors ("data.source"); what: the kind of object ("function").
    Raises ValueError "field: ..." when the name is malformed, the module does not import or lacks it.
    """
    if not is_import_name(name):
        raise ValueError(f"{field}: expected 'package.module:{what}', got {name!r}")
    from caviar.config.messages import one_line   # here: `import caviar.sweep` (make_callable) stays light

    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing (a SyntaxError, ...)
        raise ValueError(f"{field}: cannot import module {module_name!r} ({type(exc).__name__}: "
                         f"{one_line(exc)})") from None
    found = getattr(module, attr, None)
    if found is None:
        raise ValueError(f"{field}: module {module_name!r} has no {what} {attr!r}")
    return found


def import_name(obj: Any, field: str, what: str) -> str:
    """"module:qualname" by which another process (a Ray worker, a later resume) imports `obj`.

    Raises ValueError "field: ..." (one line) when nothing but this process could: `obj` is defined
    in `__main__` (a script run directly, a notebook), inside a function, or is not what its module
    holds under its name.
    """
    module, qualname = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    shown = qualname or repr(obj)
    move = "move it into a module (a .py file beside your script or notebook) and import it from there"
    if not isinstance(module, str) or not isinstance(qualname, str):
        given = repr(obj) if len(repr(obj)) <= 60 and "\n" not in repr(obj) else f"a {type(obj).__name__}"
        raise ValueError(f"{field}: expected a {what} (or 'package.module:{what}'), got {given}")
    if module == "__main__":
        raise ValueError(f"{field}: {shown} is defined in __main__ (a script or a notebook), which Ray's workers "
                         f"and a resume cannot import; {move}")
    if "<locals>" in qualname or "." in qualname:
        raise ValueError(f"{field}: {shown} is defined inside {qualname.rpartition('.')[0].replace('.<locals>', '')}"
                         f", so it cannot be imported by name; {move}")
    if getattr(sys.modules.get(module), qualname, None) is not obj:
        raise ValueError(f"{field}: {shown} is not what module {module!r} holds under that name, so it cannot be "
                         f"imported by name; {move}")
    return f"{module}:{qualname}"


def make_callable(package: str, entry: str) -> None:
    """Let the package `package` be called as the function "module:function" `entry`.

    `caviar.sweep(...)` is an entry point and `caviar.sweep` the driver package that holds it: Python
    binds a package to its parent's attribute when it is first imported, so a plain function of the
    same name would be replaced by the package. The package itself answers the call instead (its
    module class gains a `__call__`); `caviar.sweep.loop` and the rest stay as they are.
    """
    module_name, _, function = entry.partition(":")

    class CallablePackage(types.ModuleType):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            return getattr(importlib.import_module(module_name), function)(*args, **kwargs)

    CallablePackage.__call__.__doc__ = f"{package}(...) is {module_name}.{function}(...)."
    sys.modules[package].__class__ = CallablePackage
