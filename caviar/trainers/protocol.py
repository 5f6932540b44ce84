"""The Trainer protocol: the one thing every driver calls, and the optional parts they use when present.

A trainer is any class of this shape; the built-in one is the NumPy network in `caviar.nn`. A job
names it with `[model] trainer = "mlp"` (a built-in, by its short name) or `"package.module:Class"`.
`caviar.check_trainer(MyTrainer)` says, one line per problem, what a class lacks.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Mapping, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from caviar.data import Dataset


@runtime_checkable
class Trainer(Protocol):
    """What caviar needs of a model: train one epoch at a time, save and restore exactly."""

    def __init__(self, config: Mapping[str, Any], data: Dataset, seed: int) -> None: ...

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training data; returns this epoch's metrics by name (the built-in one:
        train_loss, train_accuracy, val_loss, val_accuracy, and learning_rate, the rate it trained
        with). `train_loss` is what the babysitter watches for divergence."""
        ...

    def state_dict(self) -> dict[str, np.ndarray]:
        """Everything needed to continue exactly: weights, optimizer moments, batch-norm running
        statistics, step counters, RNG state. Plain arrays only, so it saves as .npz without pickle."""
        ...

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None: ...

    def set_hyperparameters(self, **changes: Any) -> None:
        """Change hyperparameters between epochs (the learning rate after a rollback, a nudge).
        Raises ValueError, changing nothing, for a key or value it does not take."""
        ...


class TrainerExtras(Protocol):
    """The optional parts. A driver uses each when a trainer has it; `check_trainer` checks its shape.

    metrics: the names `train_epoch` reports (learning_rate aside). Declared, a job's metric and the
        reserved column names are checked against them before any training.
    metrics_for(config): the names it reports with this config, where they depend on it (the built-in
        network's on its task); a job's metric is then checked against these.
    hyperparameters: name -> type (int, float, bool, str, tuple) of every config key it takes.
        Declared, an unknown key in [model] or [space] is refused when the job is read, and a
        fractional range for an int is refused.
    mutable: the hyperparameters `set_hyperparameters` may change (what a nudge may send).
    check_config(config): the config validated, defaults filled in; ValueError "key: problem".
        Every value a [space] can draw is probed through it before a sweep starts.
    evaluate(x, y): {"loss": ..., ...} of the current model on arrays (the untrained model's loss
        is the babysitter's yardstick of divergence; a test split is scored with it at the end).
    reshuffle(seed): a fresh data order (after a rollback, so the same path is not retraced).
    """

    metrics: ClassVar[tuple[str, ...]]
    hyperparameters: ClassVar[Mapping[str, type]]
    mutable: ClassVar[tuple[str, ...]]

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]: ...

    @classmethod
    def metrics_for(cls, config: Mapping[str, Any]) -> tuple[str, ...]: ...

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]: ...

    def reshuffle(self, seed: int) -> None: ...


REQUIRED = ("train_epoch", "state_dict", "load_state_dict", "set_hyperparameters")
OPTIONAL_METHODS = ("check_config", "metrics_for", "evaluate", "reshuffle")
OPTIONAL_ATTRIBUTES = ("metrics", "hyperparameters", "mutable")
