"""Trainers for the benchmarks: the cost of an epoch is chosen exactly, so what is measured is caviar."""

from __future__ import annotations

import time
from typing import Any, Mapping

import numpy as np


class SpinTrainer:
    """Busy-waits `spin` seconds of CPU per epoch (0: returns at once) and reports a made-up score."""

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        self.spin = float(config.get("spin", 0.0))
        self.lr = float(config.get("learning_rate", 1e-3))
        self.epoch = 0

    def train_epoch(self) -> dict[str, float]:
        end = time.perf_counter() + self.spin
        while time.perf_counter() < end:
            pass
        self.epoch += 1
        return {"val_accuracy": 1.0 - abs(np.log10(self.lr) + 2.5) / 10, "val_loss": 0.1 * self.epoch}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"epoch": np.array(self.epoch)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.epoch = int(state["epoch"])

    def set_hyperparameters(self, **changes: Any) -> None:
        self.lr = float(changes.get("learning_rate", self.lr))
