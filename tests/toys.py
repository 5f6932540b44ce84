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


class BlasThreadsTrainer(ToyTrainer):
    """Reports the BLAS threads its process has (`blas_threads`) and its process id (`pid`) each epoch."""

    def train_epoch(self) -> dict[str, float]:
        from threadpoolctl import threadpool_info

        metrics = super().train_epoch()
        threads = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
        return {**metrics, "blas_threads": float(max(threads, default=1)), "pid": float(os.getpid())}


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


class NoisyQuadraticTrainer:
    """SGD on a noisy quadratic, mean(x**2) over 50 coordinates from x = 100: a good learning rate must
    start high (to get close) and then decay (the noise floor grows with the rate), so a population
    that explores its rate beats every fixed one. Deterministic; its state holds everything.

    Config: learning_rate, sleep (seconds per epoch). Reports val_loss (min) and train_loss.
    """

    metrics = ("val_loss", "train_loss")
    hyperparameters = {"learning_rate": float, "sleep": float, "epochs": int}
    mutable = ("learning_rate",)
    STEPS = 10

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        self.config = dict(config)
        self.x, self.step, self.noise_seed = np.full(50, 100.0), 0, int(seed)

    def train_epoch(self) -> dict[str, float]:
        time.sleep(float(self.config.get("sleep", 0.0)))
        lr = float(self.config["learning_rate"])
        for _ in range(self.STEPS):
            noise = np.random.default_rng([self.noise_seed, self.step]).standard_normal(self.x.shape)
            self.x = self.x - lr * (2 * self.x + noise)
            self.step += 1
        loss = float(np.mean(self.x ** 2))
        return {"val_loss": loss, "train_loss": loss, "learning_rate": lr}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"x": self.x.copy(), "step": np.array(self.step), "noise_seed": np.array(self.noise_seed)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.x, self.step = np.array(state["x"], dtype=float), int(state["step"])
        self.noise_seed = int(state["noise_seed"])

    def set_hyperparameters(self, **changes: Any) -> None:
        self.config.update(changes)

    def reshuffle(self, seed: int) -> None:
        self.noise_seed = int(seed)


class ChecksumQuadraticTrainer(NoisyQuadraticTrainer):
    """The noisy quadratic, also reporting a checksum of its state before the epoch's steps
    (`state_before`) and after them (`state_after`): a member that copies another at the end of
    epoch e starts epoch e + 1 with the source's `state_after` of epoch e, exactly, or did not copy."""

    metrics = ("val_loss", "train_loss", "state_before", "state_after")

    def checksum(self) -> float:
        return float(np.dot(self.x, np.linspace(1.0, 2.0, self.x.size))) + 1e-3 * self.step

    def train_epoch(self) -> dict[str, float]:
        before = self.checksum()
        return {**super().train_epoch(), "state_before": before, "state_after": self.checksum()}


class FragileQuadraticTrainer(ChecksumQuadraticTrainer):
    """The checksummed quadratic, whose `blow_up_at`-th epoch (counted by its state: the epochs its
    model has trained) blows up (train_loss inf) when it trains with learning rate `blow_up_rate`
    exactly: one member of a population diverges at a chosen epoch, and its replacement, with other
    values, goes on. Config: as NoisyQuadraticTrainer, plus blow_up_at (int), blow_up_rate (float)."""

    hyperparameters = {**NoisyQuadraticTrainer.hyperparameters, "blow_up_at": int, "blow_up_rate": float}

    def train_epoch(self) -> dict[str, float]:
        metrics = super().train_epoch()
        fragile = float(self.config["learning_rate"]) == float(self.config.get("blow_up_rate", -1.0))
        if fragile and self.step // self.STEPS == int(self.config.get("blow_up_at", 0)):
            metrics["train_loss"] = math.inf
        return metrics


class PeakingTrainer:
    """val_accuracy peaks after `peak` epochs of training, then falls 0.05 an epoch (over-training):
    0.9 - 0.1 * (log10(learning_rate) + 2)**2 - 0.05 * |epochs trained - peak|. Deterministic; its
    state is the epochs it has trained, so a copy of an earlier state scores as that epoch did.

    Config: learning_rate, peak (default 3).
    """

    metrics = ("val_accuracy", "train_loss")
    hyperparameters = {"learning_rate": float, "peak": int, "epochs": int}
    mutable = ("learning_rate",)

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        self.config, self.trained = dict(config), 0

    def train_epoch(self) -> dict[str, float]:
        self.trained += 1
        lr = float(self.config["learning_rate"])
        acc = 0.9 - 0.1 * (math.log10(lr) + 2) ** 2 - 0.05 * abs(self.trained - int(self.config.get("peak", 3)))
        return {"val_accuracy": acc, "train_loss": 1.0, "learning_rate": lr}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {"trained": np.array(self.trained)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        self.trained = int(state["trained"])

    def set_hyperparameters(self, **changes: Any) -> None:
        self.config.update(changes)


def _mlp() -> type:
    from caviar import MLPTrainer

    return MLPTrainer


class SlowMLPTrainer(_mlp()):
    """The built-in network, `sleep` seconds slower per epoch: a run slow enough to kill mid-way."""

    hyperparameters = {**_mlp().hyperparameters, "sleep": float}

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        config = dict(config)
        sleep = float(config.pop("sleep", 0.0))
        return {**super().check_config(config), "sleep": sleep}

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        config = dict(config)
        self.sleep = float(config.pop("sleep", 0.0))
        super().__init__(config, data, seed)

    def train_epoch(self) -> dict[str, float]:
        time.sleep(self.sleep)
        return super().train_epoch()


class NudgingTrainer(ToyTrainer):
    """Asks its own run for a rollback once, at the end of epoch config["nudge_at"], as a person at
    another terminal would (`caviar nudge --rollback`): a nudge file in config["run"]'s nudges folder,
    which the babysitter applies at that epoch's boundary. val_accuracy is 0.7, 0.9, then falls by
    0.01 an epoch: the best is epoch 2, and a policy with a tolerance over 0.01 would go on."""

    def train_epoch(self) -> dict[str, float]:
        metrics = super().train_epoch()
        metrics["val_accuracy"] = 0.5 + 0.2 * self.epoch if self.epoch <= 2 else 0.9 - 0.01 * (self.epoch - 2)
        if self.epoch == int(self.config.get("nudge_at", 0)) and not getattr(self, "asked", False):
            from caviar.babysit import nudges

            self.asked = True   # not in the state: a rollback to before this epoch does not ask again
            nudges.send(self.config["run"], nudges.Nudge(rollback=True))
        return metrics


class SpikeTrainer(ToyTrainer):
    """A member whose rate of 0.2 scores 0.99 at its first epoch and diverges (train loss inf) at its
    second; any other rate scores 0.5 + 0.01 x the epochs its state has trained (its state: that count)."""

    metrics = ("val_accuracy", "train_loss")
    hyperparameters = {"learning_rate": float, "epochs": int}
    mutable = ("learning_rate",)

    def train_epoch(self) -> dict[str, float]:
        self.epoch += 1
        rate = float(self.config["learning_rate"])
        if rate == 0.2:
            spike = self.epoch == 1
            return {"val_accuracy": 0.99 if spike else 0.1, "train_loss": 1.0 if spike else math.inf,
                    "learning_rate": rate}
        return {"val_accuracy": 0.5 + 0.01 * self.epoch, "train_loss": 1.0, "learning_rate": rate}


class BreakingTrainer(SpikeTrainer):
    """A model that turns NaN at its second epoch when its rate is 0.2 or more, and stays NaN (as a
    real network does); smaller rates: val_loss 1 / (1 + the epochs its state has trained)."""

    metrics = ("val_loss", "train_loss")

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        super().__init__(config, data, seed)
        self.broken = 0

    def train_epoch(self) -> dict[str, float]:
        self.epoch += 1
        self.broken |= int(float(self.config["learning_rate"]) >= 0.2 and self.epoch >= 2)
        loss = math.nan if self.broken else 1.0 / (1 + self.epoch)
        return {"val_loss": loss, "train_loss": loss, "learning_rate": float(self.config["learning_rate"])}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {**super().state_dict(), "broken": np.array(self.broken)}

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        super().load_state_dict(state)
        self.broken = int(state["broken"])
