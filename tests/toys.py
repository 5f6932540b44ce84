"""Small trainers for tests of the drivers: fast, deterministic, and some built to misbehave.

They implement the Trainer protocol with a made-up learning curve, so a sweep of dozens of trials
takes a second. Jobs name them as `trainer = "tests.toys:ToyTrainer"`.
"""

from __future__ import annotations

import math
import os
import time
from typing import Any, Mapping

import numpy as np


class ToyTrainer:
    """val_accuracy rises towards a ceiling set by how close log10(learning_rate) is to -2.5.

    Config: learning_rate (float), sleep (seconds per epoch, default 0), plus anything else.
    """

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        self.config = dict(config)
        self.rng = np.random.default_rng(seed)
        self.epoch = 0
        lr = float(self.config.get("learning_rate", 1e-3))
        self.ceiling = 0.98 - 0.1 * (math.log10(lr) + 2.5) ** 2
        self.n_train = len(data.y_train)

    def train_epoch(self) -> dict[str, float]:
        time.sleep(float(self.config.get("sleep", 0.0)))
        self.epoch += 1
        noise = float(self.rng.normal(0, 0.005))
        acc = self.ceiling * (1 - math.exp(-self.epoch / 3)) + noise
        return {"train_loss": 1.0 / self.epoch, "val_accuracy": acc, "val_loss": 1 - acc,
                "learning_rate": float(self.config.get("learning_rate", 1e-3))}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"epoch": np.array(self.epoch)}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.epoch = int(state["epoch"])

    def set_hyperparameters(self, **changes: Any) -> None:
        self.config.update(changes)


class FlakyTrainer(ToyTrainer):
    """Raises at epoch 2 when config["fail"] is "raise"; reports NaN at epoch 2 when it is "nan" (after
    a good first epoch), at epoch 1 when it is "nan_first"."""

    def train_epoch(self) -> dict[str, float]:
        metrics = super().train_epoch()
        mode = self.config.get("fail", "none")
        if self.epoch == 2 and mode == "raise":
            raise RuntimeError("boom at epoch 2")
        if (self.epoch == 2 and mode == "nan") or (self.epoch == 1 and mode == "nan_first"):
            metrics["val_loss"] = float("nan")
        return metrics


class PidTrainer(ToyTrainer):
    """Writes its process id to config["pid_dir"]/<trial>-<pid> so a test can kill the worker mid-trial."""

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        super().__init__(config, data, seed)
        folder = self.config["pid_dir"]
        with open(os.path.join(folder, f"{seed}-{os.getpid()}.pid"), "w") as f:
            f.write(str(os.getpid()))


class ScoreReportingTrainer(ToyTrainer):
    """Reports a metric named `score`, a column caviar writes itself, without declaring it."""

    def train_epoch(self) -> dict[str, float]:
        return {**super().train_epoch(), "score": 1.0}


class DeclaredScoreTrainer(ScoreReportingTrainer):
    """Declares the reserved name among its metrics: refused before anything trains."""

    metrics = ("val_accuracy", "val_loss", "train_loss", "score")


class NoLossTrainer(ToyTrainer):
    """Reports no train_loss: the babysitter must say it cannot watch the loss, not invent one."""

    def train_epoch(self) -> dict[str, float]:
        metrics = super().train_epoch()
        del metrics["train_loss"]
        return metrics


class SteadyTrainer:
    """A tiny deterministic trainer: val_accuracy = 1 - 0.5 / epoch, so every epoch improves.

    Config: learning_rate (required by babysit), sleep (seconds per epoch), report (extra metrics
    to report), explode (refuse to be built), blow_up_at (the epoch from which the loss blows up).
    It cannot evaluate: its divergence yardstick is the first epoch's loss.
    """

    def __init__(self, config, data, seed):
        if config.get("explode"):
            raise ValueError("model.explode: this trainer refuses to be built")
        self.config, self.epoch = dict(config), 0

    def train_epoch(self):
        time.sleep(float(self.config.get("sleep", 0.0)))
        self.epoch += 1
        blown = self.epoch >= self.config.get("blow_up_at", math.inf)  # loss x 20 from that epoch on
        return {"train_loss": (20.0 if blown else 1.0) / self.epoch, "val_accuracy": 1.0 - 0.5 / self.epoch,
                "learning_rate": float(self.config["learning_rate"]), **self.config.get("report", {})}

    def state_dict(self):
        return {"epoch": np.array(self.epoch)}

    def load_state_dict(self, state):
        self.epoch = int(state["epoch"])

    def set_hyperparameters(self, **changes):
        self.config.update(changes)
