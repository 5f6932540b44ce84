"""The in-place `Network` on its own: the gradients `train_batch` leaves in `grads` against centred
finite differences of the training loss, recomputed here from scratch in float64 (tests/nn/test_mlp.py
compares the fast path with the pure layer functions instead), and evaluation mode: deterministic, and
a row's scores independent of the other rows it is evaluated with, across the EVAL_ROWS chunks too."""

from __future__ import annotations

import numpy as np
import pytest

from caviar.nn.config import MLPConfig
from caviar.nn.network import BN_EPSILON, EVAL_ROWS, Network

N_IN, N_CLASSES = 4, 3


def tiny_network(batch_norm: bool, activation: str, hidden: tuple[int, ...] = (4, 3), seed: int = 0) -> Network:
    """A network of a few units whose every parameter (biases, gamma and beta too) is away from its
    initial value, so that no gradient is trivially zero or one."""
    config = MLPConfig(hidden_layers=hidden, batch_norm=batch_norm, activation=activation)
    net = Network(N_IN, config, N_CLASSES, np.random.default_rng(seed))
    rng = np.random.default_rng(seed + 100)
    for name, value in net.param.items():
        if name.endswith(".gamma"):
            value[...] = rng.uniform(0.5, 1.5, value.shape)
        elif not name.endswith(".W"):
            value[...] = rng.normal(scale=0.3, size=value.shape)
    return net


def batch(n: int = 8, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = np.ascontiguousarray(rng.normal(loc=0.5, scale=1.5, size=(n, N_IN)).astype(np.float32))
    y = rng.integers(0, N_CLASSES, n)
    return x, y


def training_loss64(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray,
                    net: Network) -> tuple[float, np.ndarray]:
    """The mean cross-entropy of a batch in training mode (batch statistics), in float64, written out
    independently of caviar: (loss, scores)."""
    a = x.astype(np.float64)
    for i in range(1, len(net.widths) + 1):
        z = a @ params[f"layer{i}.W"]
        if net.batch_norm:
            mean, var = z.mean(axis=0), z.var(axis=0)
            z = params[f"layer{i}.gamma"] * (z - mean) / np.sqrt(var + BN_EPSILON) + params[f"layer{i}.beta"]
        else:
            z = z + params[f"layer{i}.b"]
        a = np.maximum(z, 0.0) if net.relu else np.tanh(z)
    scores = a @ params["output.W"] + params["output.b"]
    shifted = scores - scores.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return float(-log_probs[np.arange(len(y)), y].mean()), scores


def numeric_gradients(net: Network, x: np.ndarray, y: np.ndarray, h: float = 1e-6) -> dict[str, np.ndarray]:
    """d loss / d every parameter by centred differences, in float64, at the network's parameters."""
    params = {name: value.astype(np.float64) for name, value in net.param.items()}
    grads = {}
    for name, p in params.items():
        g = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            old = p[index]
            p[index] = old + h
            up = training_loss64(params, x, y, net)[0]
            p[index] = old - h
            down = training_loss64(params, x, y, net)[0]
            p[index] = old
            g[index] = (up - down) / (2 * h)
        grads[name] = g
    return grads


CASES = [(bn, act) for bn in (True, False) for act in ("relu", "tanh")]


# --- gradients ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("batch_norm, activation", CASES)
def test_train_batch_gradients_match_finite_differences_of_the_float64_loss(batch_norm, activation):
    net = tiny_network(batch_norm, activation)
    x, y = batch()
    net.train_batch(x, y)
    numeric = numeric_gradients(net, x, y)
    assert set(numeric) == set(net.grad)
    for name, expected in numeric.items():
        assert net.grad[name].dtype == np.float32
        assert np.abs(expected).max() > 1e-4, name  # every parameter matters to this loss
        np.testing.assert_allclose(net.grad[name], expected, rtol=2e-4, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("batch_norm, activation", CASES)
def test_train_batch_reports_the_summed_loss_and_the_rows_right(batch_norm, activation):
    net = tiny_network(batch_norm, activation)
    x, y = batch(n=12, seed=5)
    params = {name: value.astype(np.float64) for name, value in net.param.items()}
    loss, scores = training_loss64(params, x, y, net)
    loss_sum, correct = net.train_batch(x, y)
    assert loss_sum == pytest.approx(12 * loss, rel=1e-5)
    assert correct == int(np.sum(np.argmax(scores, axis=1) == y))


def test_softmax_regression_gradients_match_finite_differences():
    net = tiny_network(True, "relu", hidden=())
    x, y = batch(n=6, seed=2)
    net.train_batch(x, y)
    for name, expected in numeric_gradients(net, x, y).items():
        np.testing.assert_allclose(net.grad[name], expected, rtol=2e-4, atol=2e-6, err_msg=name)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_gradients_of_a_batch_do_not_depend_on_the_batches_before_it(batch_norm):
    # The buffers are reused between calls: nothing of an earlier batch may leak into the next gradient.
    x, y = batch(n=8, seed=3)
    fresh = tiny_network(batch_norm, "tanh")
    fresh.train_batch(x, y)
    used = tiny_network(batch_norm, "tanh")
    for n, seed in ((8, 10), (5, 11), (8, 12)):
        used.train_batch(*batch(n=n, seed=seed))
    used.train_batch(x, y)
    np.testing.assert_array_equal(used.grads, fresh.grads)


def test_train_batch_moves_the_running_statistics_towards_the_batch_ones():
    net = tiny_network(True, "relu", hidden=(3,))
    x, y = batch(n=16, seed=4)
    z = x.astype(np.float64) @ net.param["layer1.W"].astype(np.float64)
    net.train_batch(x, y)
    m = net.bn_momentum
    np.testing.assert_allclose(net.running["layer1.running_mean"], (1 - m) * z.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(net.running["layer1.running_var"], m + (1 - m) * z.var(axis=0), rtol=1e-5)


# --- evaluation --------------------------------------------------------------------------------------


def trained_network(batch_norm: bool, activation: str) -> Network:
    """A tiny network whose running statistics have moved away from (0, 1)."""
    net = tiny_network(batch_norm, activation, hidden=(6, 5))
    for seed in range(5):
        net.train_batch(*batch(n=32, seed=20 + seed))
    return net


def scores(net: Network, x: np.ndarray) -> np.ndarray:
    out = np.empty((len(x), N_CLASSES), np.float32)
    net.evaluate(x, None, out)
    return out


@pytest.mark.parametrize("batch_norm, activation", CASES)
def test_evaluate_is_deterministic_and_changes_nothing(batch_norm, activation):
    net = trained_network(batch_norm, activation)
    x, y = batch(n=EVAL_ROWS + 88, seed=7)
    params, running = net.params.copy(), {k: v.copy() for k, v in net.running.items()}
    first_scores = np.empty((len(x), N_CLASSES), np.float32)
    first = net.evaluate(x, y, first_scores)
    second_scores = np.empty_like(first_scores)
    second = net.evaluate(x, y, second_scores)
    assert first == second
    np.testing.assert_array_equal(first_scores, second_scores)
    np.testing.assert_array_equal(net.params, params)  # evaluation neither learns ...
    for name, stat in running.items():  # ... nor moves the running statistics
        np.testing.assert_array_equal(net.running[name], stat)


@pytest.mark.parametrize("batch_norm, activation", CASES)
def test_a_row_scores_the_same_whatever_rows_it_is_evaluated_with(batch_norm, activation):
    net = trained_network(batch_norm, activation)
    x, _ = batch(n=EVAL_ROWS + 88, seed=8)
    whole = scores(net, x)
    for i in (0, 1, EVAL_ROWS - 1, EVAL_ROWS, len(x) - 1):  # either side of the chunk boundary
        np.testing.assert_allclose(scores(net, x[i:i + 1])[0], whole[i], rtol=1e-5, atol=1e-6)
    order = np.random.default_rng(0).permutation(len(x))
    np.testing.assert_allclose(scores(net, np.ascontiguousarray(x[order])), whole[order], rtol=1e-5, atol=1e-6)
    odd = np.ascontiguousarray(x[1::2])
    np.testing.assert_allclose(scores(net, odd), whole[1::2], rtol=1e-5, atol=1e-6)
    # Rows far from the others do not shift them: no statistic of the evaluated batch is used.
    with_outliers = np.ascontiguousarray(np.concatenate([x[:10], np.full((5, N_IN), 50.0, np.float32)]))
    np.testing.assert_allclose(scores(net, with_outliers)[:10], whole[:10], rtol=1e-5, atol=1e-6)


def test_evaluation_uses_the_running_statistics_in_float64_terms():
    net = trained_network(True, "tanh")
    x, _ = batch(n=20, seed=9)
    p = {name: value.astype(np.float64) for name, value in net.param.items()}
    a = x.astype(np.float64)
    for i in (1, 2):
        mean, var = (net.running[f"layer{i}.running_{s}"].astype(np.float64) for s in ("mean", "var"))
        z = p[f"layer{i}.gamma"] * (a @ p[f"layer{i}.W"] - mean) / np.sqrt(var + BN_EPSILON) + p[f"layer{i}.beta"]
        a = np.tanh(z)
    np.testing.assert_allclose(scores(net, x), a @ p["output.W"] + p["output.b"], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("batch_norm", [True, False])
def test_evaluate_sums_the_loss_and_the_rows_right_over_every_chunk(batch_norm):
    net = trained_network(batch_norm, "relu")
    x, y = batch(n=EVAL_ROWS + 88, seed=10)
    loss_sum, correct = net.evaluate(x, y)
    whole = scores(net, x).astype(np.float64)
    shifted = whole - whole.max(axis=1, keepdims=True)
    losses = np.log(np.exp(shifted).sum(axis=1)) - shifted[np.arange(len(y)), y]
    assert loss_sum == pytest.approx(losses.sum(), rel=1e-5)
    assert correct == int(np.sum(np.argmax(whole, axis=1) == y))
    head, tail = net.evaluate(x[:EVAL_ROWS], y[:EVAL_ROWS]), net.evaluate(x[EVAL_ROWS:], y[EVAL_ROWS:])
    assert loss_sum == pytest.approx(head[0] + tail[0], rel=1e-6)
    assert correct == head[1] + tail[1]


def test_evaluate_without_labels_only_scores():
    net = trained_network(True, "relu")
    x, _ = batch(n=7, seed=11)
    out = np.full((7, N_CLASSES), np.nan, np.float32)
    assert net.evaluate(x, None, out) == (0.0, 0)
    assert np.all(np.isfinite(out))
