"""The built-in trainer: an L-layer perceptron with batch norm and a softmax output, trained by
mini-batch gradient descent. `MLPConfig` holds its hyperparameters; `MLPTrainer` implements
`caviar.trainer.Trainer`.

The math is that of `caviar.nn.layers` and `caviar.nn.optim`, run in place for speed: all
parameters live in one flat float32 vector (one optimizer call updates the whole network), the
per-batch arrays are preallocated per batch size, and every NumPy call writes into an `out=` buffer.
The tests check this path against the pure layer functions.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Mapping

import numpy as np

from caviar.data import Dataset
from caviar.nn.optim import SLOTS, OptimHyper, update_inplace

DTYPE = np.float32
BN_EPSILON = 1e-5  # added to the batch variance before the square root (not a hyperparameter)
EVAL_ROWS = 512  # rows per forward pass at evaluation: bounds the buffers for large sets
_ALIGN = 16  # parameters start on 64-byte boundaries in the flat vector (BLAS likes aligned rows)
_CHOICES = {"activation": ("relu", "tanh"), "optimizer": tuple(SLOTS)}
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
        problem = f"hidden_layers: expected a list of integer widths >= 1, got {layers!r}"
        if not isinstance(layers, (list, tuple)):
            raise ValueError(problem)
        try:
            widths = tuple(_as_int("hidden_layers", w) for w in layers)
        except ValueError:
            raise ValueError(problem) from None
        if any(w < 1 for w in widths):
            raise ValueError(problem)
        object.__setattr__(self, "hidden_layers", widths)

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


class _Buffers:
    """Work arrays for n rows. Training: each hidden layer's centred input (batch norm), activation,
    upstream gradient, scratch and relu mask; evaluation needs only the activations."""

    def __init__(self, n: int, widths: tuple[int, ...], n_classes: int, train: bool) -> None:
        def per_layer(dtype: type = DTYPE) -> list[np.ndarray]:
            return [np.empty((n, h), dtype) for h in widths] if train else []

        self.a = [np.empty((n, h), DTYPE) for h in widths]
        self.z, self.da, self.tmp, self.mask = per_layer(), per_layer(), per_layer(), per_layer(np.bool_)
        # Per-unit vectors: batch mean and variance, 1 / sigma, coefficients of the backward.
        self.mean, self.var, self.inv_std, self.vec = ([np.empty(h, DTYPE) for h in widths] for _ in range(4))
        self.probs = np.empty((n, n_classes), DTYPE)  # scores, shifted scores, then dscores
        self.exp = np.empty((n, n_classes), DTYPE)
        self.row, self.row2 = np.empty((n, 1), DTYPE), np.empty((n, 1), DTYPE)
        self.pred, self.hit, self.rows = np.empty(n, np.intp), np.empty(n, np.bool_), np.arange(n)
        self.ones = np.ones(n, DTYPE)


class Network:
    """Parameters, batch-norm running statistics and the in-place forward/backward of the MLP.

    `params` and `grads` are flat float32 vectors; `param[name]` and `grad[name]` are views into
    them shaped like the parameter: "layer1.W" (D, H1), "layer1.gamma" and "layer1.beta" (H1,) under
    batch norm, else "layer1.b" (H1,), ..., "output.W" (H_L, C), "output.b" (C,). `running` holds
    "layer<i>.running_mean" / "layer<i>.running_var" (H_i,) under batch norm.
    """

    def __init__(self, n_in: int, config: MLPConfig, n_classes: int, rng: np.random.Generator) -> None:
        self.widths, self.batch_norm = config.hidden_layers, config.batch_norm
        self.relu, self.bn_momentum, self.n_classes = config.activation == "relu", config.bn_momentum, n_classes
        shapes: dict[str, tuple[int, ...]] = {}
        for i, (d, h) in enumerate(zip((n_in, *self.widths), self.widths), start=1):
            shapes[f"layer{i}.W"] = (d, h)
            shapes.update({f"layer{i}.{k}": (h,) for k in (("gamma", "beta") if self.batch_norm else ("b",))})
        shapes["output.W"], shapes["output.b"] = ((n_in, *self.widths)[-1], n_classes), (n_classes,)
        self.layout: dict[str, tuple[slice, tuple[int, ...]]] = {}
        total = 0
        for name, shape in shapes.items():
            self.layout[name] = (slice(total, total + math.prod(shape)), shape)
            total += -(-math.prod(shape) // _ALIGN) * _ALIGN
        self.params, self.grads = np.zeros(total, DTYPE), np.zeros(total, DTYPE)
        self.param, self.grad = self.views(self.params), self.views(self.grads)
        # He (variance 2 / fan_in) keeps relu activations at scale; Xavier (1 / fan_in) suits tanh.
        # As in the course, every layer, the output one included, follows the hidden activation's rule.
        gain = 2.0 if self.relu else 1.0
        for name, shape in shapes.items():
            if name.endswith(".W"):
                self.param[name][...] = rng.standard_normal(shape, dtype=DTYPE) * math.sqrt(gain / shape[0])
            elif name.endswith(".gamma"):
                self.param[name][...] = 1.0
        self.running = {}
        for i, h in enumerate(self.widths if self.batch_norm else (), start=1):
            self.running[f"layer{i}.running_mean"] = np.zeros(h, DTYPE)
            self.running[f"layer{i}.running_var"] = np.ones(h, DTYPE)
        self._buffers: dict[tuple[int, bool], _Buffers] = {}
        # Evaluation folds batch norm into the weights: W * gamma / sigma and beta - mu * gamma / sigma.
        self._w_eval = [np.empty_like(self.param[f"layer{i}.W"]) for i in range(1, len(self.widths) + 1)]
        self._b_eval = [np.empty(h, DTYPE) for h in self.widths]

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Per-parameter views (by name) of a flat vector laid out like `params`."""
        return {name: flat[s].reshape(shape) for name, (s, shape) in self.layout.items()}

    def drop_buffers(self) -> None:
        """Forget the work arrays (they are made again, for the sizes needed, on first use)."""
        self._buffers.clear()

    def _buf(self, n: int, train: bool) -> _Buffers:
        if (n, train) not in self._buffers:
            self._buffers[(n, train)] = _Buffers(n, self.widths, self.n_classes, train)
        return self._buffers[(n, train)]

    def train_batch(self, x: np.ndarray, y: np.ndarray) -> tuple[float, int]:
        """Forward and backward over one batch in training mode: fills `grads` with the gradient of
        the mean cross-entropy (L2 is `add_l2`) and moves the running statistics.
        x: (N, D) float32 C-contiguous, y: (N,) int. Returns (summed cross-entropy, rows right)."""
        n = x.shape[0]
        buf, p, g = self._buf(n, True), self.param, self.grad
        ones = buf.ones  # column sums as ones @ X: BLAS gemv is ~4x faster than add.reduce(axis=0)
        a_prev = x
        for i in range(len(self.widths)):
            k, z, a = f"layer{i + 1}.", buf.z[i], buf.a[i]
            if self.batch_norm:  # layers.batchnorm_forward
                mean, var, inv_std, scale = buf.mean[i], buf.var[i], buf.inv_std[i], buf.vec[i]
                np.dot(a_prev, p[k + "W"], out=z)
                np.dot(ones, z, out=mean)
                np.multiply(mean, 1.0 / n, out=mean)
                np.subtract(z, mean, out=z)  # z now holds x - mean, which the backward needs
                np.square(z, out=a)
                np.dot(ones, a, out=var)
                np.multiply(var, 1.0 / n, out=var)
                np.add(var, BN_EPSILON, out=inv_std)
                np.sqrt(inv_std, out=inv_std)
                np.divide(1.0, inv_std, out=inv_std)
                self._update_running(k, mean, var)
                np.multiply(p[k + "gamma"], inv_std, out=scale)  # gamma * x-hat == (x - mean) * scale
                np.multiply(z, scale, out=a)
                np.add(a, p[k + "beta"], out=a)
            else:
                np.dot(a_prev, p[k + "W"], out=a)
                np.add(a, p[k + "b"], out=a)
            np.maximum(a, 0.0, out=a) if self.relu else np.tanh(a, out=a)
            a_prev = a
        np.dot(a_prev, p["output.W"], out=buf.probs)
        np.add(buf.probs, p["output.b"], out=buf.probs)
        loss_sum, correct = self._softmax_cross_entropy(buf, y, grad=True)
        np.dot(a_prev.T, buf.probs, out=g["output.W"])
        np.dot(ones, buf.probs, out=g["output.b"])
        upstream, w_next = buf.probs, p["output.W"]
        for i in reversed(range(len(self.widths))):
            k, a, da, tmp = f"layer{i + 1}.", buf.a[i], buf.da[i], buf.tmp[i]
            np.dot(upstream, w_next.T, out=da)
            if self.relu:
                np.greater(a, 0.0, out=buf.mask[i])
                np.multiply(da, buf.mask[i], out=da)
            else:  # tanh' = 1 - tanh^2
                np.square(a, out=tmp)
                np.subtract(1.0, tmp, out=tmp)
                np.multiply(da, tmp, out=da)
            if self.batch_norm:
                # layers.batchnorm_backward with x-hat = xc * inv_std, in four passes over (N, H):
                # dz = scale * da - xc * (scale * inv_std * dgamma / N) - scale * dbeta / N
                xc, inv_std, scale, dgamma, dbeta = buf.z[i], buf.inv_std[i], buf.vec[i], g[k + "gamma"], g[k + "beta"]
                c1, c0 = buf.var[i], buf.mean[i]  # spent since the forward: reused for coefficients
                np.dot(ones, da, out=dbeta)
                np.multiply(da, xc, out=tmp)
                np.dot(ones, tmp, out=dgamma)
                np.multiply(dgamma, inv_std, out=dgamma)  # sum(da * x-hat)
                np.multiply(scale, inv_std, out=c1)
                np.multiply(c1, dgamma, out=c1)
                np.multiply(c1, 1.0 / n, out=c1)
                np.multiply(scale, dbeta, out=c0)
                np.multiply(c0, 1.0 / n, out=c0)
                np.multiply(xc, c1, out=tmp)
                np.multiply(da, scale, out=da)
                np.subtract(da, tmp, out=da)
                np.subtract(da, c0, out=da)
            else:
                np.dot(ones, da, out=g[k + "b"])
            np.dot(buf.a[i - 1].T if i else x.T, da, out=g[k + "W"])
            upstream, w_next = da, p[k + "W"]  # the input's gradient is never needed: not computed
        return loss_sum, correct

    def _update_running(self, k: str, mean: np.ndarray, var: np.ndarray) -> None:
        """running = bn_momentum * running + (1 - bn_momentum) * batch; mean and var are spent."""
        for stat, batch in ((self.running[k + "running_mean"], mean), (self.running[k + "running_var"], var)):
            np.multiply(stat, self.bn_momentum, out=stat)
            np.multiply(batch, 1.0 - self.bn_momentum, out=batch)
            np.add(stat, batch, out=stat)

    def _softmax_cross_entropy(self, buf: _Buffers, y: np.ndarray, grad: bool) -> tuple[float, int]:
        """layers.softmax_cross_entropy on the scores in buf.probs: returns (summed loss, rows
        right) and, with grad, leaves dscores = (softmax - onehot) / N in buf.probs."""
        s, n = buf.probs, buf.probs.shape[0]
        np.argmax(s, axis=1, out=buf.pred)
        correct = int(np.count_nonzero(np.equal(buf.pred, y, out=buf.hit)))
        np.max(s, axis=1, keepdims=True, out=buf.row)
        np.subtract(s, buf.row, out=s)  # shift so that exp cannot overflow
        np.exp(s, out=buf.exp)
        np.add.reduce(buf.exp, axis=1, keepdims=True, out=buf.row)
        np.log(buf.row, out=buf.row2)  # -log softmax[y] = log(sum exp) - shifted[y]
        loss_sum = float(buf.row2.sum(dtype=np.float64)) - float(s[buf.rows, y].sum(dtype=np.float64))
        if grad:
            np.divide(buf.exp, buf.row, out=s)
            s[buf.rows, y] -= 1.0
            np.multiply(s, 1.0 / n, out=s)
        return loss_sum, correct

    def add_l2(self, l2: float, scratch: np.ndarray) -> None:
        """grads of every weight matrix += l2 * W (scratch: a flat vector like `params`)."""
        tmp = self.views(scratch)
        for name in self.layout:
            if name.endswith(".W"):
                np.multiply(self.param[name], l2, out=tmp[name])
                np.add(self.grad[name], tmp[name], out=self.grad[name])

    def _fold_batch_norm(self) -> None:
        for i in range(len(self.widths)):
            k, w, b = f"layer{i + 1}.", self._w_eval[i], self._b_eval[i]
            if self.batch_norm:  # gamma (x - mu) / sigma + beta == x * scale + (beta - mu * scale)
                scale = self.param[k + "gamma"] / np.sqrt(self.running[k + "running_var"] + DTYPE(BN_EPSILON))
                np.multiply(self.param[k + "W"], scale, out=w)
                np.subtract(self.param[k + "beta"], self.running[k + "running_mean"] * scale, out=b)
            else:
                w[...], b[...] = self.param[k + "W"], self.param[k + "b"]

    def evaluate(self, x: np.ndarray, y: np.ndarray | None, scores_out: np.ndarray | None = None) -> tuple[float, int]:
        """Evaluation mode (running statistics), EVAL_ROWS rows at a time. x: (N, D) float32.
        Returns (summed cross-entropy, rows right), both 0 when y is None; scores_out (N, C), if
        given, receives the scores."""
        self._fold_batch_norm()
        loss_sum, correct = 0.0, 0
        for lo in range(0, x.shape[0], EVAL_ROWS):
            chunk = x[lo:lo + EVAL_ROWS]
            buf = self._buf(chunk.shape[0], False)
            a_prev = chunk
            for i, a in enumerate(buf.a):
                np.dot(a_prev, self._w_eval[i], out=a)
                np.add(a, self._b_eval[i], out=a)
                np.maximum(a, 0.0, out=a) if self.relu else np.tanh(a, out=a)
                a_prev = a
            np.dot(a_prev, self.param["output.W"], out=buf.probs)
            np.add(buf.probs, self.param["output.b"], out=buf.probs)
            if scores_out is not None:
                scores_out[lo:lo + EVAL_ROWS] = buf.probs
            if y is not None:
                chunk_loss, chunk_correct = self._softmax_cross_entropy(buf, y[lo:lo + EVAL_ROWS], grad=False)
                loss_sum, correct = loss_sum + chunk_loss, correct + chunk_correct
        return loss_sum, correct


class MLPTrainer:
    """The built-in `caviar.trainer.Trainer`: `MLPTrainer(config, data, seed)` then `train_epoch()`
    as often as the driver likes. The same seed gives the same weights, the same data order and so
    the same metrics; `state_dict()` / `load_state_dict()` continue bit for bit."""

    def __init__(self, config: Mapping[str, Any] | MLPConfig, data: Dataset, seed: int) -> None:
        self.config = config if isinstance(config, MLPConfig) else MLPConfig.from_mapping(config)
        self._x_train, self._y_train = _checked(data.x_train, data.y_train, data.n_classes, "x_train")
        self._x_valid, self._y_valid = _checked(data.x_valid, data.y_valid, data.n_classes, "x_valid")
        # One stream for the initial weights, one for the data order (which `reshuffle` replaces).
        self.network = Network(self._x_train.shape[1], self.config, int(data.n_classes), _generator(seed, 0))
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
            val = self.evaluate(self._x_valid, self._y_valid)
        return {
            "train_loss": loss_sum / seen if seen else math.nan,
            "train_accuracy": correct / seen if seen else math.nan,
            "val_loss": val["loss"],
            "val_accuracy": val["accuracy"],
            "learning_rate": lr,
        }

    def evaluate(self, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
        """Mean cross-entropy and accuracy on (x (N, D), y (N,)) in evaluation mode (running batch
        statistics, so each row's prediction depends on that row alone). NaN for N = 0."""
        x, y = _checked(x, y, self.network.n_classes, "x")
        if y.shape[0] == 0:
            return {"loss": math.nan, "accuracy": math.nan}
        with np.errstate(all="ignore"):
            loss_sum, correct = self.network.evaluate(x, y)
        return {"loss": loss_sum / y.shape[0], "accuracy": correct / y.shape[0]}

    def scores(self, x: np.ndarray) -> np.ndarray:
        """Evaluation-mode class scores (pre-softmax) for x (N, D): (N, C) float32."""
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
