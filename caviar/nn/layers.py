"""Layers of the built-in network as pure forward/backward pairs (the reference implementation).

Every forward returns `(out, cache)` and its backward takes `(dout, cache)` and returns the gradients
of its inputs, in the order the forward took them. Nothing here mutates an argument: batch norm
returns its new running statistics instead of updating them. The functions work in any float dtype,
so the tests check each backward against centred finite differences in float64.

The trainer (`caviar.nn.mlp`) runs an in-place, preallocated version of the same math for speed;
its tests check that it agrees with these functions.

Shapes: N = batch size, D = input width, M = output width, C = number of classes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

Cache = tuple[Any, ...]


def affine_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Dense layer `out = x @ w + b`.

    x: (N, D), w: (D, M), b: (M,) -> out: (N, M).
    """
    return x @ w + b, (x, w)


def affine_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `affine_forward`: dout (N, M) -> dx (N, D), dw (D, M), db (M,)."""
    x, w = cache
    return dout @ w.T, x.T @ dout, dout.sum(axis=0)


def linear_forward(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, Cache]:
    """Dense layer without bias, `out = x @ w`: the layer that feeds batch norm, whose beta
    already plays the part of the bias.

    x: (N, D), w: (D, M) -> out: (N, M).
    """
    return x @ w, (x, w)


def linear_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of `linear_forward`: dout (N, M) -> dx (N, D), dw (D, M)."""
    x, w = cache
    return dout @ w.T, x.T @ dout


def relu_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """`max(x, 0)`, any shape."""
    return np.maximum(x, 0), (x,)


def relu_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of `relu_forward` (0 at x = 0), same shape as dout."""
    (x,) = cache
    return dout * (x > 0)


def tanh_forward(x: np.ndarray) -> tuple[np.ndarray, Cache]:
    """`tanh(x)`, any shape."""
    out = np.tanh(x)
    return out, (out,)


def tanh_backward(dout: np.ndarray, cache: Cache) -> np.ndarray:
    """Gradient of `tanh_forward`: dout * (1 - tanh(x)^2)."""
    (out,) = cache
    return dout * (1 - out * out)


def batchnorm_forward(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    momentum: float,
    eps: float,
) -> tuple[np.ndarray, Cache, np.ndarray, np.ndarray]:
    """Batch normalization in training mode (normalize with this batch's statistics).

    x: (N, M); gamma, beta, running_mean, running_var: (M,).
    Returns (out (N, M), cache, new_running_mean (M,), new_running_var (M,)), where the running
    statistics are exponentially weighted averages, `new = momentum * old + (1 - momentum) * batch`,
    used in place of the batch statistics at evaluation. The variance is the biased batch variance
    (divided by N), the one the normalization itself uses.
    """
    mu = x.mean(axis=0)
    xc = x - mu
    var = (xc * xc).mean(axis=0)
    inv_std = 1 / np.sqrt(var + eps)
    xhat = xc * inv_std
    out = gamma * xhat + beta
    new_mean = momentum * running_mean + (1 - momentum) * mu
    new_var = momentum * running_var + (1 - momentum) * var
    return out, (xhat, gamma, inv_std), new_mean, new_var


def batchnorm_backward(dout: np.ndarray, cache: Cache) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of `batchnorm_forward`: dout (N, M) -> dx (N, M), dgamma (M,), dbeta (M,).

    The batch mean and variance depend on every row, so dx is the simplified closed form
    dx = gamma / (N sigma) * (N dout - sum(dout) - xhat * sum(dout * xhat)).
    """
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * xhat).sum(axis=0)
    dx = (gamma * inv_std / n) * (n * dout - dbeta - xhat * dgamma)
    return dx, dgamma, dbeta


def batchnorm_eval(
    x: np.ndarray,
    gamma: np.ndarray,
    beta: np.ndarray,
    running_mean: np.ndarray,
    running_var: np.ndarray,
    eps: float,
) -> np.ndarray:
    """Batch normalization in evaluation mode: the running statistics replace the batch ones, so
    each row's output depends on that row alone. x: (N, M) -> out: (N, M)."""
    return gamma * (x - running_mean) / np.sqrt(running_var + eps) + beta


def softmax_cross_entropy(scores: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of a softmax over the scores, computed stably, and its gradient.

    scores: (N, C) unnormalized log-probabilities; y: (N,) int class indices in [0, C).
    Returns (loss, dscores (N, C)) with dscores = (softmax(scores) - onehot(y)) / N.
    Subtracting each row's maximum first keeps exp() from overflowing; log-softmax is taken from
    the shifted scores rather than as log(softmax), so it never takes log(0).
    """
    n = scores.shape[0]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    log_probs = shifted - log_sum
    rows = np.arange(n)
    loss = float(-log_probs[rows, y].mean())
    dscores = np.exp(log_probs)
    dscores[rows, y] -= 1
    dscores /= n
    return loss, dscores


def squared_error(predictions: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean squared error of a regression output and its gradient.

    predictions: (N, 1); y: (N,) targets. Returns (loss, dpredictions (N, 1)) with loss =
    mean((predictions - y)^2) and dpredictions = 2 (predictions - y) / N.
    """
    diff = predictions - y.reshape(-1, 1)
    return float(np.mean(np.square(diff))), 2.0 * diff / predictions.shape[0]


def l2_penalty(weights: list[np.ndarray], l2: float) -> tuple[float, list[np.ndarray]]:
    """L2 regularization `l2 / 2 * sum(||W||^2)` over the weight matrices (not biases, gamma or beta)
    and its gradients `l2 * W`. The course's lambda / (2 m) term is this with l2 = lambda / m."""
    loss = 0.5 * l2 * sum(float(np.sum(w * w)) for w in weights)
    return loss, [l2 * w for w in weights]
