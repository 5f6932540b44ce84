"""The built-in trainer: its config, its gradients (against finite differences and against the pure
layer functions), learning, reproducibility, exact resumption and the Trainer protocol."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest

from caviar.data import Dataset, load_dataset
from caviar.nn import layers
from caviar.nn.mlp import BN_EPSILON, MLP_HYPERPARAMETERS, MLPConfig, MLPTrainer
from caviar.trainers import Trainer, resolve_trainer

METRICS = {"train_loss", "train_accuracy", "val_loss", "val_accuracy", "learning_rate"}


def blobs(n_train: int = 240, n_valid: int = 60, d: int = 6, n_classes: int = 3, seed: int = 0) -> Dataset:
    """A small, learnable Dataset built by hand: Gaussian blobs, standardized."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=2.0, size=(n_classes, d))
    y = rng.integers(0, n_classes, n_train + n_valid)
    x = (centres[y] + rng.normal(size=(len(y), d))).astype(np.float32)
    x = (x - x[:n_train].mean(axis=0)) / x[:n_train].std(axis=0)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], x[:0], y[:0], n_classes, "blobs")


@pytest.fixture(scope="module")
def data() -> Dataset:
    return blobs()


# --- the reference network, composed from the pure layer functions ------------------------------


def reference_loss(params: dict, running: dict, x: np.ndarray, y: np.ndarray, cfg: MLPConfig):
    """Training-mode loss (cross-entropy + L2), its gradients, the new running statistics and
    the scores."""
    caches, a, new_running = [], x, {}
    for i in range(1, len(cfg.hidden_layers) + 1):
        k = f"layer{i}."
        if cfg.batch_norm:
            z, lin = layers.linear_forward(a, params[k + "W"])
            z, bn, mean, var = layers.batchnorm_forward(
                z, params[k + "gamma"], params[k + "beta"], running[k + "running_mean"],
                running[k + "running_var"], cfg.bn_momentum, BN_EPSILON)
            new_running[k + "running_mean"], new_running[k + "running_var"] = mean, var
        else:
            (z, lin), bn = layers.affine_forward(a, params[k + "W"], params[k + "b"]), None
        a, act = (layers.relu_forward if cfg.activation == "relu" else layers.tanh_forward)(z)
        caches.append((lin, bn, act))
    scores, out_cache = layers.affine_forward(a, params["output.W"], params["output.b"])
    data_loss, dscores = layers.softmax_cross_entropy(scores, y)
    names = [k for k in params if k.endswith(".W")]
    l2_loss, l2_grads = layers.l2_penalty([params[k] for k in names], cfg.l2)
    grads = {}
    da, grads["output.W"], grads["output.b"] = layers.affine_backward(dscores, out_cache)
    for i in reversed(range(1, len(cfg.hidden_layers) + 1)):
        k, (lin, bn, act) = f"layer{i}.", caches[i - 1]
        dz = (layers.relu_backward if cfg.activation == "relu" else layers.tanh_backward)(da, act)
        if cfg.batch_norm:
            dz, grads[k + "gamma"], grads[k + "beta"] = layers.batchnorm_backward(dz, bn)
            da, grads[k + "W"] = layers.linear_backward(dz, lin)
        else:
            da, grads[k + "W"], grads[k + "b"] = layers.affine_backward(dz, lin)
    for k, g in zip(names, l2_grads):
        grads[k] = grads[k] + g
    return data_loss + l2_loss, grads, new_running, scores


def reference_scores(params: dict, running: dict, x: np.ndarray, cfg: MLPConfig) -> np.ndarray:
    """Evaluation-mode scores from the pure functions."""
    a = x
    for i in range(1, len(cfg.hidden_layers) + 1):
        k = f"layer{i}."
        if cfg.batch_norm:
            z = layers.batchnorm_eval(a @ params[k + "W"], params[k + "gamma"], params[k + "beta"],
                                      running[k + "running_mean"], running[k + "running_var"], BN_EPSILON)
        else:
            z = a @ params[k + "W"] + params[k + "b"]
        a = np.maximum(z, 0) if cfg.activation == "relu" else np.tanh(z)
    return a @ params["output.W"] + params["output.b"]


def float64_state(trainer: MLPTrainer) -> tuple[dict, dict]:
    net = trainer.network
    return ({k: v.astype(np.float64) for k, v in net.param.items()},
            {k: v.astype(np.float64) for k, v in net.running.items()})


NETWORKS = [
    {"hidden_layers": [7, 5], "batch_norm": True, "activation": "relu", "l2": 0.05},
    {"hidden_layers": [6], "batch_norm": False, "activation": "tanh", "l2": 0.1},
    {"hidden_layers": [5, 4], "batch_norm": True, "activation": "tanh", "l2": 0.0},
    {"hidden_layers": [], "batch_norm": True, "activation": "relu", "l2": 0.01},
]


@pytest.mark.parametrize("config", NETWORKS)
def test_whole_network_gradient_matches_finite_differences(data, config):
    trainer = MLPTrainer(config, data, seed=3)
    params, running = float64_state(trainer)
    x, y = data.x_train[:16].astype(np.float64), data.y_train[:16]
    _, grads, _, _ = reference_loss(params, running, x, y, trainer.config)
    rng = np.random.default_rng(0)
    h = 1e-6
    for name, p in params.items():
        for index in [tuple(rng.integers(0, s) for s in p.shape) for _ in range(6)]:
            old = p[index]
            p[index] = old + h
            up = reference_loss(params, running, x, y, trainer.config)[0]
            p[index] = old - h
            down = reference_loss(params, running, x, y, trainer.config)[0]
            p[index] = old
            assert grads[name][index] == pytest.approx((up - down) / (2 * h), rel=1e-4, abs=1e-7), (name, index)


@pytest.mark.parametrize("config", NETWORKS)
def test_fast_training_path_agrees_with_the_pure_layers(data, config):
    trainer = MLPTrainer(config, data, seed=5)
    net = trainer.network
    params, running = float64_state(trainer)
    x, y = data.x_train[:32], data.y_train[:32]
    ref_loss, ref_grads, ref_running, ref_scores = reference_loss(params, running, x.astype(np.float64), y, trainer.config)
    loss_sum, correct = net.train_batch(np.ascontiguousarray(x), y)
    net.add_l2(trainer.config.l2, np.zeros_like(net.params))
    l2_term = 0.5 * trainer.config.l2 * sum(np.sum(params[k] ** 2) for k in params if k.endswith(".W"))
    assert loss_sum / 32 + l2_term == pytest.approx(ref_loss, rel=1e-5)
    assert correct == np.sum(np.argmax(ref_scores, axis=1) == y)
    for name, g in ref_grads.items():
        assert net.grad[name].dtype == np.float32
        np.testing.assert_allclose(net.grad[name], g, rtol=2e-3, atol=2e-6, err_msg=name)
    for name, stat in ref_running.items():
        np.testing.assert_allclose(net.running[name], stat, rtol=1e-5, atol=1e-6, err_msg=name)


@pytest.mark.parametrize("config", NETWORKS)
def test_evaluation_scores_agree_with_the_pure_layers(data, config):
    trainer = MLPTrainer(config, data, seed=5)
    trainer.train_epoch()  # moves the running statistics away from (0, 1)
    params, running = float64_state(trainer)
    expected = reference_scores(params, running, data.x_valid.astype(np.float64), trainer.config)
    np.testing.assert_allclose(trainer.scores(data.x_valid), expected, rtol=1e-4, atol=1e-4)


def test_in_evaluation_one_sample_scores_as_its_row_in_a_batch(data):
    trainer = MLPTrainer({"hidden_layers": [16, 8]}, data, seed=0)
    trainer.train_epoch()
    batch = trainer.scores(data.x_valid)
    for i in (0, 17, len(batch) - 1):
        np.testing.assert_allclose(trainer.scores(data.x_valid[i:i + 1])[0], batch[i], rtol=1e-5, atol=1e-6)
    one = trainer.evaluate(data.x_valid[:1], data.y_valid[:1])
    assert one["accuracy"] == float(np.argmax(batch[0]) == data.y_valid[0])


# --- training ------------------------------------------------------------------------------------


def test_defaults_reach_95_percent_on_digits_within_20_epochs():
    digits = load_dataset("digits")
    trainer = MLPTrainer({}, digits, seed=0)
    history = [trainer.train_epoch() for _ in range(20)]
    assert max(m["val_accuracy"] for m in history) >= 0.95
    assert history[-1]["val_accuracy"] >= 0.95
    assert history[-1]["train_loss"] < history[0]["train_loss"]


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop", "adam"])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_every_optimizer_learns(data, optimizer, batch_norm):
    lr = {"sgd": 0.1, "momentum": 0.1, "rmsprop": 0.003, "adam": 0.003}[optimizer]
    trainer = MLPTrainer({"optimizer": optimizer, "learning_rate": lr, "batch_norm": batch_norm,
                          "batch_size": 32}, data, seed=1)
    first = trainer.evaluate(data.x_valid, data.y_valid)
    for _ in range(5):
        metrics = trainer.train_epoch()
    assert metrics["val_loss"] < 0.7 * first["loss"]
    assert metrics["val_accuracy"] > 0.8


def test_train_epoch_reports_the_metrics_as_floats(data):
    metrics = MLPTrainer({}, data, seed=0).train_epoch()
    assert set(metrics) == METRICS
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert 0.0 <= metrics["train_accuracy"] <= 1.0 and 0.0 <= metrics["val_accuracy"] <= 1.0


def test_learning_rate_decays_as_lr_over_one_plus_decay_times_epoch(data):
    trainer = MLPTrainer({"learning_rate": 0.01, "lr_decay": 0.5}, data, seed=0)
    rates = [trainer.train_epoch()["learning_rate"] for _ in range(3)]
    assert rates == pytest.approx([0.01, 0.01 / 1.5, 0.01 / 2.0])


def test_same_seed_gives_identical_metrics_and_another_seed_does_not(data):
    def run(seed: int) -> list[dict]:
        trainer = MLPTrainer({"hidden_layers": [16]}, data, seed=seed)
        return [trainer.train_epoch() for _ in range(3)]

    assert run(11) == run(11)
    assert run(11) != run(12)


def test_state_dict_holds_plain_arrays_and_resumes_bit_identically(data):
    config = {"hidden_layers": [12, 8], "optimizer": "adam", "l2": 1e-3, "batch_size": 50, "lr_decay": 0.1}
    trainer = MLPTrainer(config, data, seed=4)
    trainer.train_epoch()
    trainer.set_hyperparameters(learning_rate=0.005)
    state = trainer.state_dict()
    assert all(isinstance(v, np.ndarray) for v in state.values())
    buffer = io.BytesIO()  # the way a checkpoint travels: .npz without pickle
    np.savez(buffer, **state)
    buffer.seek(0)
    with np.load(buffer, allow_pickle=False) as npz:
        restored = {k: npz[k] for k in npz.files}
    expected = [trainer.train_epoch() for _ in range(2)]
    expected_params = trainer.network.params.copy()

    fresh = MLPTrainer(config, data, seed=999)  # a different seed: everything must come from the state
    fresh.load_state_dict(restored)
    assert fresh.config.learning_rate == 0.005
    assert [fresh.train_epoch() for _ in range(2)] == expected
    np.testing.assert_array_equal(fresh.network.params, expected_params)


@pytest.mark.parametrize("optimizer", ["sgd", "momentum", "rmsprop"])
def test_resume_is_exact_for_every_optimizer_and_without_batch_norm(data, optimizer):
    config = {"hidden_layers": [10], "optimizer": optimizer, "batch_norm": False, "activation": "tanh"}
    trainer = MLPTrainer(config, data, seed=2)
    trainer.train_epoch()
    state = trainer.state_dict()
    expected = trainer.train_epoch()
    fresh = MLPTrainer(config, data, seed=2)
    fresh.load_state_dict(state)
    assert fresh.train_epoch() == expected


def test_state_dict_is_a_copy(data):
    trainer = MLPTrainer({}, data, seed=0)
    state = trainer.state_dict()
    before = state["layer1.W"].copy()
    trainer.train_epoch()
    np.testing.assert_array_equal(state["layer1.W"], before)


def test_load_state_dict_rejects_a_state_from_another_config(data):
    state = MLPTrainer({"hidden_layers": [8]}, data, seed=0).state_dict()
    with pytest.raises(ValueError, match="state"):
        MLPTrainer({"hidden_layers": [9]}, data, seed=0).load_state_dict(state)
    with pytest.raises(ValueError, match="missing"):
        MLPTrainer({"hidden_layers": [8], "optimizer": "momentum"}, data, seed=0).load_state_dict(state)


def test_reshuffle_changes_the_data_order_reproducibly(data):
    def after_reshuffle(seed: int) -> dict:
        trainer = MLPTrainer({}, data, seed=0)
        trainer.train_epoch()
        trainer.reshuffle(seed)
        return trainer.train_epoch()

    assert after_reshuffle(5) == after_reshuffle(5)
    assert after_reshuffle(5) != after_reshuffle(6)


# --- hyperparameters and config -------------------------------------------------------------------


def test_set_hyperparameters_changes_the_learning_rate_and_rejects_unknown_keys(data):
    trainer = MLPTrainer({"learning_rate": 0.01}, data, seed=0)
    assert trainer.train_epoch()["learning_rate"] == 0.01
    assert int(trainer.state_dict()["optim.step"]) == math.ceil(240 / 64)
    trainer.set_hyperparameters(learning_rate=0.002, batch_size=16)
    assert trainer.train_epoch()["learning_rate"] == 0.002
    assert int(trainer.state_dict()["optim.step"]) == math.ceil(240 / 64) + 240 // 16
    with pytest.raises(ValueError, match="learning_rate") as error:
        trainer.set_hyperparameters(learnin_rate=0.1)
    assert "learnin_rate" in str(error.value)
    with pytest.raises(ValueError, match="hidden_layers"):
        trainer.set_hyperparameters(hidden_layers=[3])
    with pytest.raises(ValueError, match="learning_rate.*-1"):
        trainer.set_hyperparameters(learning_rate=-1)
    assert trainer.config.learning_rate == 0.002 and trainer.config.batch_size == 16


def test_config_defaults_and_keys_follow_the_contract():
    config = MLPConfig()
    assert MLP_HYPERPARAMETERS == (
        "hidden_layers", "batch_norm", "activation", "optimizer", "learning_rate", "beta1", "beta2",
        "momentum", "epsilon", "batch_size", "l2", "epochs", "lr_decay", "bn_momentum", "task",
    )
    assert config.task == "classification"
    assert (config.hidden_layers, config.batch_norm, config.activation, config.optimizer) == ((64, 64), True, "relu", "adam")
    assert (config.learning_rate, config.beta1, config.beta2, config.momentum, config.epsilon) == (1e-3, 0.9, 0.999, 0.9, 1e-8)
    assert (config.batch_size, config.l2, config.epochs, config.lr_decay, config.bn_momentum) == (64, 0.0, 20, 0.0, 0.9)
    assert set(MLPConfig.mutable) == {"learning_rate", "beta1", "beta2", "momentum", "epsilon", "l2", "lr_decay", "batch_size"}


def test_unknown_config_key_lists_the_valid_keys(data):
    with pytest.raises(ValueError) as error:
        MLPConfig.from_mapping({"learning_rat": 0.1})
    assert "learning_rat" in str(error.value)
    assert all(key in str(error.value) for key in MLP_HYPERPARAMETERS)
    with pytest.raises(ValueError, match="valid keys"):
        MLPTrainer({"dropout": 0.5}, data, seed=0)


@pytest.mark.parametrize("key, value", [
    ("learning_rate", "fast"), ("learning_rate", 0.0), ("learning_rate", math.nan), ("learning_rate", True),
    ("batch_size", True), ("batch_size", 64.5), ("batch_size", 0), ("batch_size", "64"),
    ("hidden_layers", "64"), ("hidden_layers", 64), ("hidden_layers", [64, 0]), ("hidden_layers", [True]),
    ("hidden_layers", [64, 1_000_000]),
    ("beta1", 1.0), ("beta2", -0.1), ("momentum", 1), ("epsilon", 0), ("l2", -1e-4), ("lr_decay", -1),
    ("bn_momentum", 1.5), ("epochs", 0), ("batch_norm", "yes"), ("batch_norm", 1), ("activation", "sigmoid"),
    ("optimizer", "adagrad"),
])
def test_ill_typed_or_out_of_range_values_name_the_key_and_value(key, value):
    with pytest.raises(ValueError, match=key) as error:
        MLPConfig.from_mapping({key: value})
    assert repr(value) in str(error.value) or str(value) in str(error.value)


def test_numbers_are_coerced_sensibly():
    config = MLPConfig.from_mapping({
        "learning_rate": 1, "batch_size": 64.0, "hidden_layers": [32.0, np.int64(16)], "epochs": np.int64(5),
        "l2": 0, "beta1": np.float32(0.5), "trainer": "mlp",  # "trainer" names the class: ignored here
    })
    assert config.learning_rate == 1.0 and type(config.learning_rate) is float
    assert config.batch_size == 64 and type(config.batch_size) is int
    assert config.hidden_layers == (32, 16) and all(type(w) is int for w in config.hidden_layers)
    assert type(config.epochs) is int and type(config.l2) is float and type(config.beta1) is float


def test_mlp_trainer_implements_the_trainer_protocol(data):
    assert resolve_trainer("mlp") is MLPTrainer
    assert isinstance(MLPTrainer({}, data, seed=0), Trainer)


def test_float32_throughout(data):
    trainer = MLPTrainer({}, data, seed=0)
    trainer.train_epoch()
    state = trainer.state_dict()
    assert all(v.dtype == np.float32 for k, v in state.items() if not k.startswith(("hp.", "optim.step", "epoch", "rng.")))
    assert trainer.scores(data.x_valid).dtype == np.float32


def test_a_diverging_run_reports_non_finite_metrics_instead_of_raising(data):
    trainer = MLPTrainer({"optimizer": "sgd", "learning_rate": 1e30, "batch_norm": False}, data, seed=0)
    metrics = [trainer.train_epoch() for _ in range(2)][-1]
    assert set(metrics) == METRICS
    assert not math.isfinite(metrics["train_loss"]) or metrics["val_accuracy"] < 0.9


def test_a_last_batch_of_one_row_is_skipped_under_batch_norm_only():
    data = blobs(n_train=129)  # batches of 64, 64 and 1
    with_bn = MLPTrainer({"batch_size": 64}, data, seed=0)
    metrics = with_bn.train_epoch()
    assert int(with_bn.state_dict()["optim.step"]) == 2  # one row has no batch variance
    assert all(math.isfinite(v) for v in metrics.values())
    assert np.all(with_bn.state_dict()["layer1.running_var"] > 0)
    without_bn = MLPTrainer({"batch_size": 64, "batch_norm": False}, data, seed=0)
    without_bn.train_epoch()
    assert int(without_bn.state_dict()["optim.step"]) == 3


def test_evaluate_an_empty_split_gives_nan(data):
    result = MLPTrainer({}, data, seed=0).evaluate(data.x_test, data.y_test)
    assert math.isnan(result["loss"]) and math.isnan(result["accuracy"])


def test_a_network_too_large_for_its_data_is_refused_before_anything_is_allocated():
    """The job's widths alone can pass (the inputs are known only with the data); the trainer counts
    the whole network before it builds one."""
    import caviar.nn.config as nn_config

    wide = np.zeros((4, 20_000), dtype=np.float32)
    labels = np.array([0, 1, 0, 1])
    data = Dataset(wide, labels, wide[:2], labels[:2], wide[:0], labels[:0], 2, "wide")
    width = nn_config.MAX_WEIGHTS // 20_000 + 1
    with pytest.raises(ValueError, match="hidden_layers: .* with 20,000 inputs and 2 classes make"):
        MLPTrainer({"hidden_layers": [width]}, data, seed=0)
