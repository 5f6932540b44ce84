"""The one protocol both drivers use, and how a job names its trainer.

A trainer is any class with this shape; the built-in one is `caviar.nn.mlp.MLPTrainer`. A job picks
it with `[model] trainer = "mlp"` or `"package.module:ClassName"` for the user's own.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any, Mapping, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from caviar.data import Dataset

BUILTIN_TRAINERS = {"mlp": "caviar.nn.mlp:MLPTrainer"}


@runtime_checkable
class Trainer(Protocol):
    """What caviar needs of a model: train one epoch at a time, save and restore exactly."""

    def __init__(self, config: Mapping[str, Any], data: Dataset, seed: int) -> None: ...

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training data; returns this epoch's metrics
        (the built-in one: train_loss, train_accuracy, val_loss, val_accuracy)."""
        ...

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly: weights, optimizer moments, batch-norm running
        statistics, step counters, RNG state. Plain arrays only, so it saves as .npz without pickle."""
        ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None: ...

    def set_hyperparameters(self, **changes: Any) -> None:
        """Change hyperparameters between epochs (learning rate after a rollback, a person's nudge)."""
        ...


def resolve_trainer(name: str) -> type:
    """The trainer class a job names: a built-in short name or "package.module:ClassName".

    Raises ValueError naming the problem when the module or class cannot be found.
    """
    target = BUILTIN_TRAINERS.get(name, name)
    module_name, sep, class_name = target.partition(":")
    if not sep or not module_name or not class_name:
        raise ValueError(
            f"model.trainer: expected one of {sorted(BUILTIN_TRAINERS)} or 'package.module:ClassName', got {name!r}"
        )
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or the module itself failing (a SyntaxError, ...)
        raise ValueError(f"model.trainer: cannot import module {module_name!r} ({type(exc).__name__}: {exc})") from None
    cls = getattr(module, class_name, None)
    if cls is None:
        raise ValueError(f"model.trainer: module {module_name!r} has no class {class_name!r}")
    missing = [m for m in ("train_epoch", "state_dict", "load_state_dict", "set_hyperparameters") if not hasattr(cls, m)]
    if missing:
        raise ValueError(f"model.trainer: {name!r} does not implement the Trainer protocol (missing {', '.join(missing)})")
    return cls
