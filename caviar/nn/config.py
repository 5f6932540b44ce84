"""The built-in trainer's hyperparameters: `MLPConfig`, every key with its default, checked once.

`MLPConfig.from_mapping(config)` is where a job's values for the MLP are validated: an unknown key
lists the valid ones, a bad value names its key.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Mapping

import numpy as np

from caviar.nn.optim import SLOTS

_CHOICES = {"activation": ("relu", "tanh"), "optimizer": tuple(SLOTS), "task": ("classification", "regression")}
_UNIT = "a number in [0, 1)"
_FLOAT_CHECKS = {  # field: (condition text, test)
    "learning_rate": ("a number > 0", lambda v: v > 0),
    "beta1": (_UNIT, lambda v: 0 <= v < 1),
    "beta2": (_UNIT, lambda v: 0 <= v < 1),
    "momentum": (_UNIT, lambda v: 0 <= v < 1),
    "epsilon": ("a number > 0", lambda v: v > 0),
    "l2": ("a number >= 0", lambda v: v >= 0),
    "lr_decay": ("a number >= 0", lambda v: v >= 0),
    "bn_momentum": (_UNIT, lambda v: 0 <= v < 1),
}


# A wider layer is a typo (1e6 for 1e3), refused when the job is read rather than failing every
# trial with a MemoryError.
MAX_WIDTH = 65_536
# So is a network of more weights than this: 1 GiB of float32, and the trainer keeps as much again
# for the gradients and for each optimizer moment. Two layers at MAX_WIDTH make 2**32 ([16384,
# 16384] is the widest square pair). A job alone gives the hidden widths, so its check counts the
# weights between hidden layers; `check_size` adds the input and output layers once the data is known.
MAX_WEIGHTS = 2**28


@dataclass(frozen=True)
class MLPConfig:
    """Every hyperparameter of the built-in network, with its default. Build it with
    `MLPConfig.from_mapping(job_model_section)`; values are checked and coerced on construction."""

    hidden_layers: tuple[int, ...] = (64, 64)  # units per hidden layer; () is softmax regression
    batch_norm: bool = True  # normalize before each hidden activation (those layers drop their bias)
    activation: str = "relu"  # relu (He initialization) | tanh (Xavier initialization)
    optimizer: str = "adam"  # sgd | momentum | rmsprop | adam
    learning_rate: float = 1e-3  # before decay
    beta1: float = 0.9  # adam's first-moment average
    beta2: float = 0.999  # adam's and rmsprop's squared-gradient average
    momentum: float = 0.9  # the momentum optimizer's gradient average
    epsilon: float = 1e-8  # keeps rmsprop's and adam's division finite
    batch_size: int = 64  # rows per mini-batch; the last batch of an epoch takes the remainder
    l2: float = 0.0  # loss += l2 / 2 * sum of squared weights (not biases, gamma, beta)
    epochs: int = 20  # read by the drivers, not by the trainer
    lr_decay: float = 0.0  # learning rate in epoch e (from 0): learning_rate / (1 + lr_decay * e)
    bn_momentum: float = 0.9  # running mean/variance: new = bn_momentum * old + (1 - bn_momentum) * batch
    task: str = "classification"  # classification: softmax cross-entropy | regression: one output, squared error

    mutable: ClassVar[tuple[str, ...]] = (
        "learning_rate", "beta1", "beta2", "momentum", "epsilon", "l2", "lr_decay", "batch_size",
    )

    def __post_init__(self) -> None:
        for key, (text, ok) in _FLOAT_CHECKS.items():
            value = _as_float(key, getattr(self, key))
            if not ok(value):
                raise ValueError(f"{key}: expected {text}, got {getattr(self, key)!r}")
            object.__setattr__(self, key, value)
        for key in ("batch_size", "epochs"):
            value = _as_int(key, getattr(self, key))
            if value < 1:
                raise ValueError(f"{key}: expected an integer >= 1, got {value!r}")
            object.__setattr__(self, key, value)
        for key, choices in _CHOICES.items():
            if getattr(self, key) not in choices:
                raise ValueError(f"{key}: expected one of {list(choices)}, got {getattr(self, key)!r}")
        if not isinstance(self.batch_norm, (bool, np.bool_)):
            raise ValueError(f"batch_norm: expected true or false, got {self.batch_norm!r}")
        object.__setattr__(self, "batch_norm", bool(self.batch_norm))
        layers = self.hidden_layers
        problem = f"hidden_layers: expected a list of integer widths from 1 to {MAX_WIDTH:,}, got {layers!r}"
        if not isinstance(layers, (list, tuple)):
            raise ValueError(problem)
        try:
            widths = tuple(_as_int("hidden_layers", w) for w in layers)
        except ValueError:
            raise ValueError(problem) from None
        if any(not 1 <= w <= MAX_WIDTH for w in widths):
            raise ValueError(problem)
        object.__setattr__(self, "hidden_layers", widths)
        self.check_size()

    def check_size(self, n_inputs: int = 0, n_classes: int = 0) -> None:
        """ValueError "hidden_layers: ..." when the network has more than MAX_WEIGHTS weights: those
        between hidden layers, plus, given the data's `n_inputs` and `n_classes`, the input and output
        layers' (a trainer checks this before it allocates anything)."""
        layers = (*([n_inputs] if n_inputs else []), *self.hidden_layers, *([n_classes] if n_classes else []))
        count = sum(a * b for a, b in zip(layers, layers[1:]))
        if count > MAX_WEIGHTS:
            data = f" with {n_inputs:,} inputs and {n_classes:,} classes" if n_inputs or n_classes else ""
            between = "" if data else " between hidden layers"
            raise ValueError(f"hidden_layers: {list(self.hidden_layers)}{data} make {count:,} weights{between}, more "
                             f"than the {MAX_WEIGHTS:,} (2**28) a network may have")

    @classmethod
    def from_mapping(cls, config: Mapping[str, Any]) -> MLPConfig:
        """The config a job gives (defaults for missing keys). The key "trainer", which names the
        trainer class for the drivers, is ignored; any other unknown key is a ValueError."""
        unknown = [key for key in config if key not in MLP_HYPERPARAMETERS and key != "trainer"]
        if unknown:
            raise ValueError(
                f"{unknown[0]}: not a hyperparameter of the mlp trainer; valid keys: {', '.join(MLP_HYPERPARAMETERS)}"
            )
        return cls(**{key: value for key, value in config.items() if key != "trainer"})

    def with_changes(self, changes: Mapping[str, Any]) -> MLPConfig:
        """A copy with some of the `mutable` hyperparameters changed (checked like the rest)."""
        frozen = [key for key in changes if key not in self.mutable]
        if frozen:
            raise ValueError(
                f"{frozen[0]}: cannot be changed during training; changeable keys: {', '.join(self.mutable)}"
            )
        return replace(self, **changes)


MLP_HYPERPARAMETERS: tuple[str, ...] = tuple(f.name for f in fields(MLPConfig))


def _as_float(key: str, value: Any) -> float:
    """A real number (TOML may give 1 for 1.0), never a bool, always finite."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"{key}: expected a finite number, got {value!r}")
    return float(value)


def _as_int(key: str, value: Any) -> int:
    """An integer; an integer-valued float (64.0, as a sampler or TOML may give) counts, a bool doesn't."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{key}: expected an integer, got {value!r}")
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    raise ValueError(f"{key}: expected an integer, got {value!r}")
