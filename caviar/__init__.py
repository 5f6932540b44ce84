"""caviar: hyperparameter tuning on your own machine or Ray cluster.

Two ways to tune from one job file: `caviar parallel` (many models at once on Ray, early stopping,
coarse to fine) and `caviar babysit` (one model, checkpointed, rolled back when it goes wrong), or
from Python: `caviar.sweep(job)` and `caviar.babysit(job)`. Results are Parquet; `caviar.load(path)`
reads a run into pandas.

The public names are imported on first use, so `import caviar` (and the command line) stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Dataset", "MLPTrainer", "Mode", "Status", "Trainer", "babysit", "check_trainer", "importance", "load",
           "load_all", "load_dataset", "sweep"]
__version__ = "0.1.0"

_HOMES = {
    "Dataset": "caviar.data",
    "load_dataset": "caviar.data",
    "MLPTrainer": "caviar.nn.mlp",
    "Mode": "caviar.store.vocabulary",
    "Status": "caviar.store.vocabulary",
    "Trainer": "caviar.trainers.protocol",
    "check_trainer": "caviar.trainers.check",
    "importance": "caviar.views.importance",
    "load": "caviar.store.reader",
    "load_all": "caviar.store.reader",
}


# The entry points share their names with the driver packages, which are callable (see caviar.sweep).
_CALLABLE_PACKAGES = {"sweep": "caviar.sweep", "babysit": "caviar.babysit"}


def __getattr__(name: str) -> Any:
    if name in _CALLABLE_PACKAGES:
        return importlib.import_module(_CALLABLE_PACKAGES[name])
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'caviar' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)
