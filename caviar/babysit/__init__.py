"""Panda mode (`caviar babysit`, `caviar.babysit(...)`): one model watched epoch by epoch, rolled back
when it goes wrong.

    command.py     caviar.babysit() and the command: check, lock, train the first epoch, open the folder, loop
    loop.py        Sitter: one step at a time (train, decide, carry out, nudges, persist)
    ending.py      the end of a run: the best state restored (or the newest readable), the summary
    policy.py      the decision after each epoch, a pure function of the history
    resume.py      where a resume goes on from; rows a kill kept off the disk
    nudges.py      a person's changes while it runs (`caviar nudge`)
    from_sweep.py  `--from SWEEP`: the best trial of a sweep as the starting point
"""

import sys
import types
from typing import Any


class _Callable(types.ModuleType):
    """This package, callable: `caviar.babysit(...)` is `caviar.babysit.command.babysit(...)`. The entry point
    and the package share the name `caviar.babysit`, and Python binds a package to its parent's
    attribute when it is first imported, so the package itself is what answers the call."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from caviar.babysit.command import babysit

        return babysit(*args, **kwargs)


sys.modules[__name__].__class__ = _Callable
