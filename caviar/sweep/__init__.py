"""Caviar mode (`caviar parallel`, `caviar.sweep(...)`): many configurations trained in parallel on Ray.

    command.py      caviar.sweep() and the command: check, lock, join Ray, open the folder, run
    plan.py         sampler, scheduler, epochs and workers from the job
    ray_session.py  join a cluster or start a local Ray
    run.py          the sweep wired to its run folder and progress view
    loop.py         the driver loop: segments to workers, decisions, results as they arrive
    worker.py       the Ray actor that trains trial after trial
    restore.py      what a resumed sweep already did
"""

import sys
import types
from typing import Any


class _Callable(types.ModuleType):
    """This package, callable: `caviar.sweep(...)` is `caviar.sweep.command.sweep(...)`. The entry point
    and the package share the name `caviar.sweep`, and Python binds a package to its parent's
    attribute when it is first imported, so the package itself is what answers the call."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        from caviar.sweep.command import sweep

        return sweep(*args, **kwargs)


sys.modules[__name__].__class__ = _Callable
