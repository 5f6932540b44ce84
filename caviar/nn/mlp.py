"""The built-in trainer: an L-layer perceptron with batch norm and a softmax output, trained by
mini-batch gradient descent. `MLPConfig` holds its hyperparameters; `MLPTrainer` implements
`caviar.trainers.protocol.Trainer`.

The network itself (the in-place fast path) is `caviar.nn.network`; the hyperparameters and their
validation are `caviar.nn.config`. This module is the trainer around them: data order, epochs,
learning-rate decay, evaluation, and exact save/restore.
"""

from __future__ import annotations

import math
from dataclasses import asdict, fields
from typing import Any, ClassVar, Mapping

import numpy as np

from caviar.data import Dataset
from caviar.nn.optim import SLOTS, OptimHyper, update_inplace
from caviar.nn.config import MLP_HYPERPARAMETERS, MLPConfig
from caviar.nn.network import BN_EPSILON, DTYPE, Network

__all__ = ["BN_EPSILON", "MLP_HYPERPARAMETERS", "MLPConfig", "MLPTrainer", "Network"]


class MLPTrainer:
    """The built-in `caviar.trainers.protocol.Trainer`: `MLPTrainer(config, data, seed)` then `train_epoch()`
    as often as the driver likes. The same seed gives the same weights, the same data order and so
    the same metrics; `state_dict()` / `load_state_dict()` continue bit for bit."""

    # The protocol's optional parts (caviar.trainers.protocol.TrainerExtras): what a job on this
    # trainer can optimize, which keys it takes (and which are whole numbers), what a nudge may change.
    # Regression (task = "regression") reports mean squared errors and R^2 instead of accuracies.
    CLASSIFICATION_METRICS: ClassVar[tuple[str, ...]] = ("val_accuracy", "val_loss", "train_accuracy", "train_loss")
    REGRESSION_METRICS: ClassVar[tuple[str, ...]] = ("val_mse", "val_r2", "val_loss", "train_mse", "train_r2",
                                                     "train_loss")
    metrics: ClassVar[tuple[str, ...]] = CLASSIFICATION_METRICS + REGRESSION_METRICS[:2] + REGRESSION_METRICS[3:5]
    hyperparameters: ClassVar[Mapping[str, type]] = {f.name: type(f.default) for f in fields(MLPConfig)}
    mutable: ClassVar[tuple[str, ...]] = MLPConfig.mutable

    @classmethod
    def check_config(cls, config: Mapping[str, Any]) -> dict[str, Any]:
        """Every hyperparameter with its default filled in; ValueError "key: problem" on a bad one."""
        return asdict(MLPConfig.from_mapping(config))

    @classmethod
    def metrics_for(cls, config: Mapping[str, Any]) -> tuple[str, ...]:
        """The metrics `train_epoch` reports with this config (they depend on its task)."""
        regression = config.get("task") == "regression"
        return cls.REGRESSION_METRICS if regression else cls.CLASSIFICATION_METRICS

    def __init__(self, config: Mapping[str, Any] | MLPConfig, data: Dataset, seed: int) -> None:
        self.config = config if isinstance(config, MLPConfig) else MLPConfig.from_mapping(config)
        self.regression = self.config.task == "regression"
        if self.regression != (data.n_classes == 0):
            raise ValueError(f"task: {self.config.task!r} does not fit the data set, which has "
                             + ("numeric targets (set task = 'regression')" if data.n_classes == 0 else
                                f"{data.n_classes} classes (regression needs numeric targets)"))
        self._n_out = 1 if self.regression else int(data.n_classes)
        # Regression trains on the targets standardized by the training split (the loss is then on a
        # fixed scale whatever the units); mse and r2 are reported in the targets' own units.
        y_train = np.asarray(data.y_train, dtype=np.float64)
        self._y_mean = float(y_train.mean()) if self.regression and y_train.size else 0.0
        self._y_std = float(y_train.std()) if self.regression and y_train.size and y_train.std() > 0 else 1.0
        self._x_train, self._y_train = self._prepared(data.x_train, data.y_train, "x_train")
        self._x_valid, self._y_valid = self._prepared(data.x_valid, data.y_valid, "x_valid")
        # One stream for the initial weights, one for the data order (which `reshuffle` replaces).
        self.config.check_size(self._x_train.shape[1], self._n_out)   # before allocating anything
        self.network = Network(self._x_train.shape[1], self.config, self._n_out, _generator(seed, 0))
        self._order = _generator(seed, 1)
        self._moments = {slot: np.zeros_like(self.network.params) for slot in SLOTS[self.config.optimizer]}
        self._scratch = np.zeros_like(self.network.params)
        self._x_epoch, self._y_epoch = np.empty_like(self._x_train), np.empty_like(self._y_train)
        self._step = 0  # optimizer updates taken (Adam's t)
        self._epoch = 0  # epochs trained

    def learning_rate(self) -> float:
        """The rate the next epoch will use: learning_rate / (1 + lr_decay * epochs trained)."""
        return self.config.learning_rate / (1.0 + self.config.lr_decay * self._epoch)

    def train_epoch(self) -> dict[str, float]:
        """One pass over the training set in a fresh random order, then one over the validation set.

        train_loss / train_accuracy are over the mini-batches as they were trained (before each
        step; without the L2 term); val_* are in evaluation mode. A run that diverges reports inf
        or nan rather than raising: the drivers decide what to do about it.
        """
        cfg, net = self.config, self.network
        lr = self.learning_rate()
        hp = OptimHyper(lr, cfg.beta1, cfg.beta2, cfg.momentum, cfg.epsilon)
        n = self._y_train.shape[0]
        # Shuffle the whole set once into a preallocated buffer: every batch is then a contiguous slice.
        order = self._order.permutation(n)
        # mode="clip" (the indices are valid anyway) because the default "raise" buffers `out`.
        np.take(self._x_train, order, axis=0, out=self._x_epoch, mode="clip")
        np.take(self._y_train, order, out=self._y_epoch, mode="clip")
        loss_sum, correct, seen = 0.0, 0, 0
        with np.errstate(all="ignore"):
            for lo in range(0, n, cfg.batch_size):
                hi = min(lo + cfg.batch_size, n)
                if cfg.batch_norm and hi - lo < 2:
                    break  # one row has no batch variance: skip that last batch
                batch_loss, batch_correct = net.train_batch(self._x_epoch[lo:hi], self._y_epoch[lo:hi])
                if cfg.l2 > 0:
                    net.add_l2(cfg.l2, self._scratch)
                self._step += 1
                update_inplace(cfg.optimizer, net.params, net.grads, self._moments, self._step, hp, self._scratch)
                loss_sum, correct, seen = loss_sum + batch_loss, correct + batch_correct, seen + hi - lo
            self._epoch += 1
            val = self._evaluate(self._x_valid, self._y_valid)
        if self.regression:
            train = loss_sum / seen if seen else math.nan   # on standardized targets: 1 - r2 of the batches
            return {"train_loss": train, "train_mse": train * self._y_std ** 2, "train_r2": 1.0 - train,
                    "val_loss": val["loss"], "val_mse": val["mse"], "val_r2": val["r2"], "learning_rate": lr}
        return {
            "train_loss": loss_sum / seen if seen else math.nan,
            "train_accuracy": correct / seen if seen else math.nan,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "learning_rate": lr,
        }

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean cross-entropy and accuracy on (x (N, D), y (N,)) in evaluation mode (running batch
        statistics, so each row's prediction depends on that row alone). NaN for N = 0.
        Regression: y (N,) targets in their own units; loss (mean squared error of the standardized
        targets, what training minimizes), mse (in the targets' units) and r2 (1 - SSE / SST)."""
        return self._evaluate(*self._prepared(x, y, "x"))

    def _evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """`evaluate` of arrays already `_prepared`."""
        if y.shape[0] == 0:
            return {"loss": math.nan, "mse": math.nan, "r2": math.nan} if self.regression else \
                {"loss": math.nan, "accuracy": math.nan}
        with np.errstate(all="ignore"):
            loss_sum, correct = self.network.evaluate(x, y)
        loss = loss_sum / y.shape[0]
        if not self.regression:
            return {"loss": loss, "accuracy": correct / y.shape[0]}
        sst = float(np.square(y - y.mean(dtype=np.float64)).sum(dtype=np.float64))   # (standardized units)
        return {"loss": loss, "mse": loss * self._y_std ** 2, "r2": 1.0 - loss_sum / sst if sst > 0 else math.nan}

    def _prepared(self, x: np.ndarray, y: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """x as C float32 (N, D) and y as the network takes it: class indices, or standardized targets."""
        if not self.regression:
            return _checked(x, y, self._n_out, name)
        x, y64 = np.ascontiguousarray(x, dtype=DTYPE), np.asarray(y, dtype=np.float64)
        if x.ndim != 2 or y64.shape != (x.shape[0],):
            raise ValueError(f"{name}: expected x (N, D) and y (N,), got {x.shape} and {y64.shape}")
        return x, ((y64 - self._y_mean) / self._y_std).astype(DTYPE)

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Evaluation-mode class scores (pre-softmax) for x (N, D): (N, C) float32 (regression: (N, 1),
        the prediction of the standardized target)."""
        x = np.ascontiguousarray(x, dtype=DTYPE)
        out = np.empty((x.shape[0], self.network.n_classes), DTYPE)
        self.network.evaluate(x, None, scores_out=out)
        return out

    def set_hyperparameters(self, **changes: Any) -> None:
        """Change any of `MLPConfig.mutable` from the next epoch on; learning_rate is the rate
        before decay. Raises ValueError (nothing changed) for other keys or bad values."""
        config = self.config.with_changes(changes)
        if config.batch_size != self.config.batch_size:
            self.network.drop_buffers()  # the old batch size's work arrays are not needed again
        self.config = config

    def reshuffle(self, seed: int) -> None:
        """Re-seed the data-order generator (a fresh data order, e.g. after a rollback)."""
        self._order = _generator(seed, 1)

    def state_dict(self) -> dict[str, np.ndarray]:
        """Copies of everything the next epoch depends on, as plain arrays: parameters ("layer1.W",
        ...), running statistics, optimizer moments ("optim.m.layer1.W", ...) and "optim.step",
        "epoch", the mutable hyperparameters ("hp.learning_rate", ...) and the data-order
        generator's PCG64 state as uint64 words ("rng.data_order")."""
        net = self.network
        state = {name: view.copy() for name, view in net.param.items()}
        state.update({name: stat.copy() for name, stat in net.running.items()})
        for slot, flat in self._moments.items():
            state.update({f"optim.{slot}.{name}": view.copy() for name, view in net.views(flat).items()})
        state["optim.step"] = np.array(self._step, dtype=np.int64)
        state["epoch"] = np.array(self._epoch, dtype=np.int64)
        state.update({f"hp.{key}": np.array(getattr(self.config, key)) for key in MLPConfig.mutable})
        state["rng.data_order"] = _encode_pcg64(self._order)
        return state

    def load_state_dict(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore a `state_dict()` of a trainer built with the same config (the mutable
        hyperparameters come from the state). Raises ValueError, changing nothing, when the keys or
        shapes do not match this trainer."""
        expected = self.state_dict()
        missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
        if missing or extra:
            raise ValueError(f"state: does not fit this trainer's config (missing {missing}, unexpected {extra})")
        for key, ref in expected.items():
            if np.shape(state[key]) != ref.shape:
                raise ValueError(f"state: {key} has shape {np.shape(state[key])}, expected {ref.shape}")
        config = self.config.with_changes({key: np.asarray(state[f"hp.{key}"]).item() for key in MLPConfig.mutable})
        order = _decode_pcg64(state["rng.data_order"])
        net = self.network
        for name, view in net.param.items():
            view[...] = state[name]
        for name, stat in net.running.items():
            stat[...] = state[name]
        for slot, flat in self._moments.items():
            for name, view in net.views(flat).items():
                view[...] = state[f"optim.{slot}.{name}"]
        self._step, self._epoch = int(state["optim.step"]), int(state["epoch"])
        self.config, self._order = config, order


def _checked(x: np.ndarray, y: np.ndarray, n_classes: int, name: str) -> tuple[np.ndarray, np.ndarray]:
    """x as C-contiguous float32 (N, D) and y as int64 (N,) in [0, n_classes), or ValueError."""
    x, y = np.ascontiguousarray(x, dtype=DTYPE), np.ascontiguousarray(y, dtype=np.int64)
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"{name}: expected x (N, D) and y (N,), got {x.shape} and {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name}: labels must lie in [0, {n_classes}), got {y.min()}..{y.max()}")
    return x, y


def _generator(seed: int, stream: int) -> np.random.Generator:
    """Independent streams from one seed (0: initial weights, 1: data order)."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(int(seed), spawn_key=(stream,))))


_WORD = (1 << 64) - 1


def _encode_pcg64(rng: np.random.Generator) -> np.ndarray:
    """PCG64 state as uint64 words: state (high, low), increment (high, low), has_uint32, uinteger."""
    st = rng.bit_generator.state
    s, inc = st["state"]["state"], st["state"]["inc"]
    words = [s >> 64, s & _WORD, inc >> 64, inc & _WORD, st["has_uint32"], st["uinteger"]]
    return np.array(words, dtype=np.uint64)


def _decode_pcg64(words: np.ndarray) -> np.random.Generator:
    w = [int(v) for v in np.asarray(words, dtype=np.uint64)]
    bits = np.random.PCG64()
    bits.state = {
        "bit_generator": "PCG64",
        "state": {"state": (w[0] << 64) | w[1], "inc": (w[2] << 64) | w[3]},
        "has_uint32": w[4],
        "uinteger": w[5],
    }
    return np.random.Generator(bits)
