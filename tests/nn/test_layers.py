"""Every layer's backward against centred finite differences (float64), and the forward behaviour
a user of the network relies on: batch norm's statistics, evaluation mode, a stable softmax."""

from __future__ import annotations

from typing import Callable

import numpy as np
import pytest

from caviar.nn import layers


def numeric_gradient(f: Callable[[], float], x: np.ndarray, h: float = 1e-6) -> np.ndarray:
    """d f / d x by centred differences, perturbing x in place (float64)."""
    grad = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        up = f()
        x[i] = old - h
        down = f()
        x[i] = old
        grad[i] = (up - down) / (2 * h)
    return grad


def assert_close(analytic: np.ndarray, numeric: np.ndarray) -> None:
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(1234)


def test_affine_backward_matches_finite_differences(rng):
    x, w, b = rng.normal(size=(5, 4)), rng.normal(size=(4, 3)), rng.normal(size=3)
    dout = rng.normal(size=(5, 3))
    out, cache = layers.affine_forward(x, w, b)
    np.testing.assert_allclose(out, x @ w + b)
    dx, dw, db = layers.affine_backward(dout, cache)

    def loss() -> float:
        return float(np.sum(layers.affine_forward(x, w, b)[0] * dout))

    assert_close(dx, numeric_gradient(loss, x))
    assert_close(dw, numeric_gradient(loss, w))
    assert_close(db, numeric_gradient(loss, b))


def test_linear_backward_matches_finite_differences(rng):
    x, w, dout = rng.normal(size=(6, 3)), rng.normal(size=(3, 4)), rng.normal(size=(6, 4))
    dx, dw = layers.linear_backward(dout, layers.linear_forward(x, w)[1])

    def loss() -> float:
        return float(np.sum(layers.linear_forward(x, w)[0] * dout))

    assert_close(dx, numeric_gradient(loss, x))
    assert_close(dw, numeric_gradient(loss, w))


@pytest.mark.parametrize("name", ["relu", "tanh"])
def test_activation_backward_matches_finite_differences(rng, name):
    forward, backward = getattr(layers, f"{name}_forward"), getattr(layers, f"{name}_backward")
    x = rng.normal(size=(4, 5))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink, where the derivative is undefined
    dout = rng.normal(size=x.shape)
    dx = backward(dout, forward(x)[1])
    assert_close(dx, numeric_gradient(lambda: float(np.sum(forward(x)[0] * dout)), x))


def test_relu_and_tanh_values():
    x = np.array([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(layers.relu_forward(x)[0], [[0.0, 0.0, 3.0]])
    np.testing.assert_allclose(layers.tanh_forward(x)[0], np.tanh(x))


def test_batchnorm_backward_matches_finite_differences(rng):
    x = rng.normal(loc=3.0, scale=2.0, size=(7, 4))
    gamma, beta = rng.normal(size=4), rng.normal(size=4)
    mean, var = np.zeros(4), np.ones(4)
    dout = rng.normal(size=x.shape)

    def loss() -> float:
        out = layers.batchnorm_forward(x, gamma, beta, mean, var, 0.9, 1e-5)[0]
        return float(np.sum(out * dout))

    cache = layers.batchnorm_forward(x, gamma, beta, mean, var, 0.9, 1e-5)[1]
    dx, dgamma, dbeta = layers.batchnorm_backward(dout, cache)
    assert_close(dx, numeric_gradient(loss, x))
    assert_close(dgamma, numeric_gradient(loss, gamma))
    assert_close(dbeta, numeric_gradient(loss, beta))


def test_batchnorm_normalizes_and_returns_new_running_stats_without_mutating(rng):
    x = rng.normal(loc=5.0, scale=3.0, size=(200, 3))
    gamma, beta = np.array([1.0, 2.0, 0.5]), np.array([0.0, -1.0, 4.0])
    mean, var = np.full(3, 1.0), np.full(3, 2.0)
    mean_before, var_before = mean.copy(), var.copy()
    out, _, new_mean, new_var = layers.batchnorm_forward(x, gamma, beta, mean, var, 0.9, 1e-5)
    np.testing.assert_allclose(out.mean(axis=0), beta, atol=1e-9)
    np.testing.assert_allclose(out.std(axis=0), gamma, rtol=1e-4)
    np.testing.assert_array_equal(mean, mean_before)  # the arguments are untouched
    np.testing.assert_array_equal(var, var_before)
    np.testing.assert_allclose(new_mean, 0.9 * mean_before + 0.1 * x.mean(axis=0))
    np.testing.assert_allclose(new_var, 0.9 * var_before + 0.1 * x.var(axis=0))


def test_batchnorm_eval_uses_running_stats_so_one_row_equals_its_row_in_a_batch(rng):
    x = rng.normal(size=(6, 4))
    gamma, beta, mean, var = rng.normal(size=4), rng.normal(size=4), rng.normal(size=4), rng.uniform(0.5, 2, 4)
    batch = layers.batchnorm_eval(x, gamma, beta, mean, var, 1e-5)
    for i in range(len(x)):
        np.testing.assert_array_equal(layers.batchnorm_eval(x[i:i + 1], gamma, beta, mean, var, 1e-5)[0], batch[i])
    np.testing.assert_allclose(batch, gamma * (x - mean) / np.sqrt(var + 1e-5) + beta)


def test_softmax_cross_entropy_gradient_matches_finite_differences(rng):
    scores, y = rng.normal(size=(5, 4)), np.array([0, 3, 1, 1, 2])
    loss, dscores = layers.softmax_cross_entropy(scores, y)
    assert_close(dscores, numeric_gradient(lambda: layers.softmax_cross_entropy(scores, y)[0], scores))
    probs = np.exp(scores) / np.exp(scores).sum(axis=1, keepdims=True)
    assert loss == pytest.approx(-np.mean(np.log(probs[np.arange(5), y])))
    onehot = np.eye(4)[y]
    np.testing.assert_allclose(dscores, (probs - onehot) / 5)  # dZ = (y_hat - y) / batch size


def test_softmax_cross_entropy_is_stable_for_huge_scores():
    scores = np.array([[1e4, 0.0, -1e4], [1000.0, 1000.0, 1000.0]])
    loss, dscores = layers.softmax_cross_entropy(scores, np.array([1, 2]))
    assert np.isfinite(loss) and np.all(np.isfinite(dscores))
    assert loss == pytest.approx((1e4 + np.log(3)) / 2)


def test_softmax_cross_entropy_of_uniform_scores_is_log_classes():
    loss, _ = layers.softmax_cross_entropy(np.zeros((3, 10), dtype=np.float32), np.array([0, 4, 9]))
    assert loss == pytest.approx(np.log(10), rel=1e-6)


def test_l2_penalty_gradient_matches_finite_differences(rng):
    weights = [rng.normal(size=(3, 2)), rng.normal(size=(2, 4))]
    loss, grads = layers.l2_penalty(weights, 0.3)
    assert loss == pytest.approx(0.15 * sum(np.sum(w * w) for w in weights))
    for w, g in zip(weights, grads):
        assert_close(g, numeric_gradient(lambda: layers.l2_penalty(weights, 0.3)[0], w))


def test_layers_keep_float32():
    x = np.ones((2, 3), np.float32)
    w, b = np.ones((3, 2), np.float32), np.zeros(2, np.float32)
    out, cache = layers.affine_forward(x, w, b)
    assert out.dtype == np.float32
    assert all(g.dtype == np.float32 for g in layers.affine_backward(out, cache))
    bn = layers.batchnorm_forward(out, np.ones(2, np.float32), b, b, np.ones(2, np.float32), 0.9, 1e-5)
    assert bn[0].dtype == np.float32 and bn[2].dtype == np.float32
    _, dscores = layers.softmax_cross_entropy(out, np.array([0, 1]))
    assert dscores.dtype == np.float32
