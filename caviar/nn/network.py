"""The network's fast path: one flat float32 parameter vector and preallocated per-batch buffers.

The math is that of `caviar.nn.layers` and `caviar.nn.optim`, run in place for speed: every NumPy
call writes into an `out=` buffer and one optimizer call updates the whole network. The tests check
this path against the pure layer functions.
"""

from __future__ import annotations

import math

import numpy as np

from caviar.nn.config import MLPConfig

DTYPE = np.float32
BN_EPSILON = 1e-5  # added to the batch variance before the square root (not a hyperparameter)
EVAL_ROWS = 512  # rows per forward pass at evaluation: bounds the buffers for large sets
_ALIGN = 16  # parameters start on 64-byte boundaries in the flat vector (BLAS likes aligned rows)


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
        # Regression: one output (n_classes 1) scored by squared error instead of softmax cross-entropy.
        self.regression = config.task == "regression"
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
        x: (N, D) float32 C-contiguous, y: (N,) int. Returns (summed cross-entropy, rows right).
        Regression: y (N,) float32 targets; returns (summed squared error, 0)."""
        buf = self._buf(x.shape[0], True)
        a_last = self._forward_train(x, buf)
        np.dot(a_last, self.param["output.W"], out=buf.probs)
        np.add(buf.probs, self.param["output.b"], out=buf.probs)
        loss_sum, correct = self._loss(buf, y, grad=True)
        self._backward(x, buf, a_last)
        return loss_sum, correct

    def _forward_train(self, x: np.ndarray, buf: _Buffers) -> np.ndarray:
        """The hidden layers in training mode (batch statistics); returns the last activation (N, H)."""
        n, p, ones = x.shape[0], self.param, buf.ones  # column sums as ones @ X: BLAS gemv is ~4x faster
        a_prev = x                                         # than add.reduce(axis=0)
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
        return a_prev

    def _backward(self, x: np.ndarray, buf: _Buffers, a_last: np.ndarray) -> None:
        """Gradients of every parameter into `grads`, from the softmax's gradient in `buf.probs`."""
        p, g, ones = self.param, self.grad, buf.ones
        np.dot(a_last.T, buf.probs, out=g["output.W"])
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
                self._batchnorm_backward(i, buf, x.shape[0])
            else:
                np.dot(ones, da, out=g[k + "b"])
            np.dot(buf.a[i - 1].T if i else x.T, da, out=g[k + "W"])
            upstream, w_next = da, p[k + "W"]  # the input's gradient is never needed: not computed

    def _batchnorm_backward(self, i: int, buf: _Buffers, n: int) -> None:
        """layers.batchnorm_backward of hidden layer i, in place on buf.da[i], with x-hat = xc * inv_std,
        in four passes over (N, H): dz = scale * da - xc * (scale * inv_std * dgamma / N) - scale * dbeta / N."""
        k, da, tmp, ones = f"layer{i + 1}.", buf.da[i], buf.tmp[i], buf.ones
        xc, inv_std, scale = buf.z[i], buf.inv_std[i], buf.vec[i]
        dgamma, dbeta = self.grad[k + "gamma"], self.grad[k + "beta"]
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

    def _update_running(self, k: str, mean: np.ndarray, var: np.ndarray) -> None:
        """running = bn_momentum * running + (1 - bn_momentum) * batch; mean and var are spent."""
        for stat, batch in ((self.running[k + "running_mean"], mean), (self.running[k + "running_var"], var)):
            np.multiply(stat, self.bn_momentum, out=stat)
            np.multiply(batch, 1.0 - self.bn_momentum, out=batch)
            np.add(stat, batch, out=stat)

    def _loss(self, buf: _Buffers, y: np.ndarray, grad: bool) -> tuple[float, int]:
        return self._squared_error(buf, y, grad) if self.regression else self._softmax_cross_entropy(buf, y, grad)

    @staticmethod
    def _squared_error(buf: _Buffers, y: np.ndarray, grad: bool) -> tuple[float, int]:
        """layers.squared_error on the predictions in buf.probs (N, 1) against y (N,): returns (summed
        squared error, 0) and, with grad, leaves dscores = 2 (prediction - y) / N in buf.probs."""
        s, diff = buf.probs, buf.exp
        np.subtract(s, y[:, None], out=diff)
        loss_sum = float(np.square(diff, out=s).sum(dtype=np.float64))
        if grad:
            np.multiply(diff, 2.0 / s.shape[0], out=s)
        return loss_sum, 0

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
                chunk_loss, chunk_correct = self._loss(buf, y[lo:lo + EVAL_ROWS], grad=False)
                loss_sum, correct = loss_sum + chunk_loss, correct + chunk_correct
        return loss_sum, correct
