"""The built-in network's regression task: one output, squared error, val_mse / val_r2.

The gradients of the in-place path are checked against centred finite differences of a float64
loss written out here independently; the trainer against what a user notices: it learns a line in
its own units, reports R^2 as scikit-learn computes it, and continues exactly from its state_dict.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import r2_score

from caviar.data import Dataset
from caviar.nn.config import MLPConfig
from caviar.nn.layers import squared_error
from caviar.nn.mlp import MLPTrainer
from caviar.nn.network import BN_EPSILON, Network


def test_squared_error_gradient_matches_finite_differences():
    rng = np.random.default_rng(0)
    predictions, y = rng.normal(size=(5, 1)), rng.normal(size=5)
    loss, grad = squared_error(predictions, y)
    assert loss == pytest.approx(np.mean((predictions[:, 0] - y) ** 2))
    h, numeric = 1e-6, np.zeros_like(predictions)
    for i in range(5):
        up, down = predictions.copy(), predictions.copy()
        up[i, 0] += h
        down[i, 0] -= h
        numeric[i, 0] = (squared_error(up, y)[0] - squared_error(down, y)[0]) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-9)


def loss64(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray) -> float:
    """Mean squared error of a one-hidden-layer relu network with batch norm, in float64."""
    z = x.astype(np.float64) @ params["layer1.W"]
    z = params["layer1.gamma"] * (z - z.mean(axis=0)) / np.sqrt(z.var(axis=0) + BN_EPSILON) + params["layer1.beta"]
    out = np.maximum(z, 0.0) @ params["output.W"] + params["output.b"]
    return float(np.mean((out[:, 0] - y) ** 2))


def test_the_network_gradients_of_squared_error_match_finite_differences():
    net = Network(3, MLPConfig(hidden_layers=(4,), task="regression"), 1, np.random.default_rng(0))
    rng = np.random.default_rng(1)
    net.param["layer1.beta"][...] = rng.normal(scale=0.3, size=4)
    net.param["output.b"][...] = 0.2
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.normal(size=8).astype(np.float32)
    loss_sum, correct = net.train_batch(x, y)
    params = {name: value.astype(np.float64) for name, value in net.param.items()}
    assert correct == 0 and loss_sum == pytest.approx(8 * loss64(params, x, y), rel=1e-5)
    for name, p in params.items():
        numeric = np.zeros_like(p)
        for index in np.ndindex(p.shape):
            old = p[index]
            p[index] = old + 1e-6
            up = loss64(params, x, y)
            p[index] = old - 1e-6
            numeric[index] = (up - loss64(params, x, y)) / 2e-6
            p[index] = old
        np.testing.assert_allclose(net.grad[name], numeric, rtol=2e-4, atol=2e-6, err_msg=name)


def line_data(n: int = 400, seed: int = 0) -> Dataset:
    """y = 30 x0 - 20 x1 + 500: targets far from unit scale, so their standardization matters."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2)).astype(np.float32)
    y = (30 * x[:, 0] - 20 * x[:, 1] + 500 + rng.normal(size=n)).astype(np.float32)
    cut = int(n * 0.8)
    return Dataset(x[:cut], y[:cut], x[cut:], y[cut:], x[:0], y[:0], n_classes=0, name="line")


CONFIG = {"task": "regression", "hidden_layers": [16], "learning_rate": 0.01, "batch_size": 32}


def test_the_trainer_learns_a_line_and_reports_mse_and_r2_in_the_targets_units():
    data = line_data()
    trainer = MLPTrainer(CONFIG, data, seed=0)
    first = trainer.train_epoch()
    for _ in range(30):
        last = trainer.train_epoch()
    assert set(last) == {"train_loss", "train_mse", "train_r2", "val_loss", "val_mse", "val_r2", "learning_rate"}
    assert last["val_r2"] > 0.98 and last["val_mse"] < first["val_mse"]
    predictions = trainer.scores(data.x_valid)[:, 0] * trainer._y_std + trainer._y_mean
    assert last["val_r2"] == pytest.approx(r2_score(data.y_valid, predictions), abs=1e-4)
    assert last["val_mse"] == pytest.approx(np.mean((predictions - data.y_valid) ** 2), rel=1e-3)


def test_state_dict_continues_a_regression_bit_for_bit():
    data = line_data()
    straight = MLPTrainer(CONFIG, data, seed=3)
    for _ in range(2):
        straight.train_epoch()
    resumed = MLPTrainer(CONFIG, data, seed=99)
    resumed.load_state_dict(straight.state_dict())
    assert straight.train_epoch() == resumed.train_epoch()


def test_a_task_that_does_not_fit_the_data_is_refused_naming_task():
    with pytest.raises(ValueError, match=r"^task: 'classification' does not fit the data set, which has numeric"):
        MLPTrainer({}, line_data(), seed=0)
    classes = line_data()
    classes = Dataset(classes.x_train, (classes.y_train > 500).astype(np.int64), classes.x_valid,
                      (classes.y_valid > 500).astype(np.int64), classes.x_test, classes.y_test.astype(np.int64),
                      n_classes=2, name="two")
    with pytest.raises(ValueError, match=r"^task: 'regression' does not fit the data set, which has 2 classes"):
        MLPTrainer({"task": "regression"}, classes, seed=0)


def test_metrics_follow_the_task():
    assert MLPTrainer.metrics_for({"task": "regression"})[:2] == ("val_mse", "val_r2")
    assert "val_accuracy" in MLPTrainer.metrics_for({})
