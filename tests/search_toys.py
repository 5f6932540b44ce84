"""Test trainers for the search: a known optimum, and a finish order that changes from run to run.

Jobs name them as `trainer = "tests.search_toys:JitterTrainer"`.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping

import numpy as np

from tests.toys import ToyTrainer

# The optimizer each conditional key belongs to, as the built-in network takes them.
_USED_BY = {"beta2": ("adam", "rmsprop"), "momentum": ("momentum",)}


class JitterTrainer(ToyTrainer):
    """val_accuracy rises towards a ceiling that is best at learning_rate 3e-3 and 1 - beta1 = 1e-2.

    Each epoch sleeps a random time, up to config["jitter"] seconds (default 0.05), drawn from the
    operating system rather than the seed: which trial finishes first changes from run to run, while
    the metrics, drawn from the seed, do not. A key that its optimizer does not use (beta2 without
    adam or rmsprop, momentum without momentum) is refused, as a conditional dimension must never
    reach a trainer where it is inactive. State and hyperparameter changes as ToyTrainer's.
    """

    metrics = ("val_accuracy", "val_loss", "train_loss")

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        self.config = dict(config)
        optimizer = self.config.get("optimizer", "adam")
        for key, users in _USED_BY.items():
            if key in self.config and optimizer not in users:
                raise ValueError(f"{key}: received with optimizer {optimizer!r}, which does not use it")
        self.rng = np.random.default_rng(seed)
        self.jitter = np.random.default_rng(int.from_bytes(os.urandom(8), "little"))
        self.epoch = 0
        distance = (math.log10(float(self.config.get("learning_rate", 1e-3))) + 2.5) ** 2 \
            + (math.log10(1 - float(self.config.get("beta1", 0.9))) + 2) ** 2
        self.ceiling = 0.99 - 0.05 * distance

    def train_epoch(self) -> dict[str, float]:
        time.sleep(float(self.jitter.uniform(0, float(self.config.get("jitter", 0.05)))))
        self.epoch += 1
        acc = self.ceiling * (1 - math.exp(-self.epoch / 2)) + float(self.rng.normal(0, 0.002))
        return {"val_accuracy": acc, "val_loss": 1 - acc, "train_loss": 1.0 / self.epoch}



class PickyTrainer(JitterTrainer):
    """Declares that beta2 belongs to adam and rmsprop alone: its check_config refuses it otherwise."""

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        if "beta2" in config and config.get("optimizer", "adam") not in _USED_BY["beta2"]:
            raise ValueError(f"beta2: only adam and rmsprop take it, got optimizer {config.get('optimizer')!r}")
        return dict(config)
