"""The built-in trainer's hyperparameters (`MLPConfig`): defaults for what a job leaves out, every bad
value refused with its key and its rule, the width cap, and `with_changes`, which changes only the
hyperparameters that may change during training and always makes a new config."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from caviar.nn.config import _FLOAT_CHECKS, MAX_WEIGHTS, MAX_WIDTH, MLP_HYPERPARAMETERS, MLPConfig
from caviar.nn.optim import SLOTS


def error(mapping) -> str:
    with pytest.raises(ValueError) as info:
        MLPConfig.from_mapping(mapping)
    return str(info.value)


# --- defaults ---------------------------------------------------------------------------------------


def test_an_empty_mapping_gives_the_defaults():
    assert MLPConfig.from_mapping({}) == MLPConfig()


def test_a_mapping_changes_only_the_keys_it_gives():
    config = MLPConfig.from_mapping({"learning_rate": 0.01, "hidden_layers": [8]})
    default = MLPConfig()
    assert config.learning_rate == 0.01 and config.hidden_layers == (8,)
    for key in MLP_HYPERPARAMETERS:
        if key not in ("learning_rate", "hidden_layers"):
            assert getattr(config, key) == getattr(default, key), key


def test_the_trainer_key_of_a_job_s_model_table_is_ignored():
    assert MLPConfig.from_mapping({"trainer": "mlp", "epochs": 3}) == MLPConfig(epochs=3)


def test_from_mapping_accepts_any_mapping_and_leaves_it_unchanged():
    from types import MappingProxyType

    given = {"hidden_layers": [8, 4], "batch_size": 32.0}
    config = MLPConfig.from_mapping(MappingProxyType(given))
    assert config.hidden_layers == (8, 4) and config.batch_size == 32
    assert given == {"hidden_layers": [8, 4], "batch_size": 32.0}


def test_a_config_is_frozen():
    config = MLPConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.learning_rate = 0.1  # type: ignore[misc]


def test_the_empty_hidden_layers_is_softmax_regression():
    assert MLPConfig.from_mapping({"hidden_layers": []}).hidden_layers == ()


# --- unknown keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["dropout", "learning-rate", "Epochs", "lr"])
def test_an_unknown_key_is_named_first_and_every_valid_key_is_listed(key):
    message = error({key: 1})
    assert message.startswith(f"{key}: not a hyperparameter of the mlp trainer; valid keys: ")
    assert message.endswith(", ".join(MLP_HYPERPARAMETERS))
    assert "trainer" not in message.split("valid keys: ")[1].split(", ")


def test_an_unknown_key_is_reported_even_beside_good_ones_and_before_bad_values():
    assert error({"learning_rate": -1, "dropout": 0.5}).startswith("dropout: ")


# --- bad values, each named by its key --------------------------------------------------------------


def test_the_float_rules_cover_the_float_hyperparameters():
    floats = {f.name for f in dataclasses.fields(MLPConfig) if f.type in ("float", float)}
    assert set(_FLOAT_CHECKS) == floats


# A value out of range for each rule text of _FLOAT_CHECKS.
OUT_OF_RANGE = {"a number > 0": [0, -1e-3], "a number in [0, 1)": [1, 1.0, -0.1, 2], "a number >= 0": [-1e-9, -1]}
IN_RANGE_EDGES = {"a number > 0": [1e-300, 5], "a number in [0, 1)": [0, 0.999999], "a number >= 0": [0, 0.0, 7]}


@pytest.mark.parametrize("key, text", [(k, text) for k, (text, _) in _FLOAT_CHECKS.items()])
def test_every_float_out_of_its_range_is_refused_with_its_rule(key, text):
    for value in OUT_OF_RANGE[text]:
        assert error({key: value}) == f"{key}: expected {text}, got {value!r}"


@pytest.mark.parametrize("key, text", [(k, text) for k, (text, _) in _FLOAT_CHECKS.items()])
def test_every_float_at_the_edge_of_its_range_is_accepted_as_a_python_float(key, text):
    for value in IN_RANGE_EDGES[text]:
        result = getattr(MLPConfig.from_mapping({key: value}), key)
        assert result == value and type(result) is float


@pytest.mark.parametrize("key", list(_FLOAT_CHECKS))
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, True, np.bool_(False), "0.1", None, [0.1]])
def test_every_float_must_be_a_finite_number(key, value):
    assert error({key: value}) == f"{key}: expected a finite number, got {value!r}"


@pytest.mark.parametrize("key", ["batch_size", "epochs"])
def test_integer_fields_take_integers_and_whole_floats(key):
    assert getattr(MLPConfig.from_mapping({key: 1}), key) == 1
    assert getattr(MLPConfig.from_mapping({key: np.int32(12)}), key) == 12
    result = getattr(MLPConfig.from_mapping({key: 64.0}), key)
    assert result == 64 and type(result) is int


@pytest.mark.parametrize("key", ["batch_size", "epochs"])
@pytest.mark.parametrize("value", [2.5, math.nan, math.inf, True, np.bool_(True), "8", None])
def test_integer_fields_refuse_what_is_not_an_integer(key, value):
    assert error({key: value}) == f"{key}: expected an integer, got {value!r}"


@pytest.mark.parametrize("key", ["batch_size", "epochs"])
@pytest.mark.parametrize("value", [0, -3, 0.0])
def test_integer_fields_must_be_at_least_one(key, value):
    assert error({key: value}) == f"{key}: expected an integer >= 1, got {int(value)!r}"


@pytest.mark.parametrize("key, choices", [("activation", ("relu", "tanh")), ("optimizer", tuple(SLOTS))])
def test_choice_fields_accept_their_choices_and_list_them_on_a_miss(key, choices):
    for choice in choices:
        assert getattr(MLPConfig.from_mapping({key: choice}), key) == choice
    for bad in ("RELU" if key == "activation" else "Adam", "", 1, None):
        assert error({key: bad}) == f"{key}: expected one of {list(choices)}, got {bad!r}"


def test_the_optimizers_are_the_four_the_trainer_implements():
    assert set(SLOTS) == {"sgd", "momentum", "rmsprop", "adam"}


def test_batch_norm_takes_true_or_false_only():
    assert MLPConfig.from_mapping({"batch_norm": False}).batch_norm is False
    assert MLPConfig.from_mapping({"batch_norm": np.bool_(True)}).batch_norm is True
    for bad in (1, 0, "true", None):
        assert error({"batch_norm": bad}) == f"batch_norm: expected true or false, got {bad!r}"


# --- hidden_layers and MAX_WIDTH ---------------------------------------------------------------------


def test_hidden_layers_become_a_tuple_of_python_ints():
    config = MLPConfig.from_mapping({"hidden_layers": (16.0, np.int64(8), 1)})
    assert config.hidden_layers == (16, 8, 1)
    assert all(type(w) is int for w in config.hidden_layers)


def test_a_layer_may_be_as_wide_as_max_width_and_no_wider():
    assert MAX_WIDTH == 65_536
    assert MLPConfig.from_mapping({"hidden_layers": [MAX_WIDTH]}).hidden_layers == (MAX_WIDTH,)
    message = error({"hidden_layers": [64, MAX_WIDTH + 1]})
    assert message == f"hidden_layers: expected a list of integer widths from 1 to 65,536, got [64, {MAX_WIDTH + 1}]"


@pytest.mark.parametrize("value", [64, "64", [64, 0], [-1], [8.5], [True], [None], {"a": 1}, np.array([8]), [1e6]])
def test_bad_hidden_layers_are_refused_naming_the_range_and_the_value(value):
    message = error({"hidden_layers": value})
    assert message.startswith("hidden_layers: expected a list of integer widths from 1 to 65,536, got ")
    assert message.endswith(repr(value))


# --- MAX_WEIGHTS: a network's size, not only its widths ----------------------------------------------


def test_layers_within_the_width_cap_may_still_make_too_many_weights():
    """[65536, 65536] is 2**32 weights (16 GiB of float32 before gradients and moments): refused
    when the job is read, naming the count, rather than a MemoryError in every trial."""
    assert MAX_WEIGHTS == 2**28
    message = error({"hidden_layers": [64, MAX_WIDTH, MAX_WIDTH]})
    assert message == ("hidden_layers: [64, 65536, 65536] make 4,299,161,600 weights between hidden layers, more "
                       "than the 268,435,456 (2**28) a network may have")


def test_the_weights_between_hidden_layers_may_reach_the_cap_and_no_more():
    assert MLPConfig.from_mapping({"hidden_layers": [16384, 16384]}).hidden_layers == (16384, 16384)
    assert MLPConfig.from_mapping({"hidden_layers": [MAX_WIDTH, 4096]}).hidden_layers == (MAX_WIDTH, 4096)
    assert error({"hidden_layers": [16384, 16385]}).startswith("hidden_layers: [16384, 16385] make 268,451,840 ")
    assert MLPConfig.from_mapping({"hidden_layers": [8192, 16384, 8192]}).hidden_layers == (8192, 16384, 8192)
    assert error({"hidden_layers": [8192, 16384, 8193]}).startswith("hidden_layers: [8192, 16384, 8193] make 268,451,840 ")


def test_check_size_counts_the_input_and_output_layers_once_the_data_is_known():
    config = MLPConfig.from_mapping({"hidden_layers": [MAX_WIDTH]})
    config.check_size(n_inputs=64, n_classes=10)   # digits: 4.8 million weights
    config.check_size(n_inputs=4000, n_classes=10)
    with pytest.raises(ValueError) as info:
        config.check_size(n_inputs=4096, n_classes=10)
    assert str(info.value) == ("hidden_layers: [65536] with 4,096 inputs and 10 classes make 269,090,816 weights, "
                               "more than the 268,435,456 (2**28) a network may have")
    MLPConfig.from_mapping({"hidden_layers": []}).check_size(n_inputs=10**6, n_classes=100)   # 10**8 weights


def test_with_changes_keeps_the_size_check():
    assert MLPConfig.from_mapping({"hidden_layers": [16384, 16384]}).with_changes({"learning_rate": 0.1})


# --- with_changes -----------------------------------------------------------------------------------


def test_mutable_keys_are_the_optimizer_and_batch_hyperparameters():
    assert set(MLPConfig.mutable) == {"learning_rate", "beta1", "beta2", "momentum", "epsilon", "l2", "lr_decay",
                                      "batch_size"}


@pytest.mark.parametrize("key, value", [("learning_rate", 0.05), ("beta1", 0.5), ("beta2", 0.9), ("momentum", 0.0),
                                        ("epsilon", 1e-6), ("l2", 1e-4), ("lr_decay", 0.2), ("batch_size", 16)])
def test_with_changes_changes_a_mutable_key_in_a_new_config(key, value):
    original = MLPConfig.from_mapping({"hidden_layers": [8], "optimizer": "momentum"})
    before = dataclasses.asdict(original)
    changed = original.with_changes({key: value})
    assert getattr(changed, key) == value
    assert changed is not original
    assert dataclasses.asdict(original) == before
    assert {k: v for k, v in dataclasses.asdict(changed).items() if k != key} == \
        {k: v for k, v in before.items() if k != key}


def test_with_changes_of_nothing_is_an_equal_config():
    config = MLPConfig(learning_rate=0.02)
    assert config.with_changes({}) == config


@pytest.mark.parametrize("key, value", [("hidden_layers", [8]), ("batch_norm", False), ("activation", "tanh"),
                                        ("optimizer", "sgd"), ("epochs", 5), ("bn_momentum", 0.5),
                                        ("trainer", "mlp"), ("dropout", 0.5)])
def test_with_changes_refuses_keys_that_cannot_change_during_training(key, value):
    original = MLPConfig()
    with pytest.raises(ValueError) as info:
        original.with_changes({"learning_rate": 0.01, key: value})
    changeable = ", ".join(MLPConfig.mutable)
    assert str(info.value) == f"{key}: cannot be changed during training; changeable keys: {changeable}"
    assert original == MLPConfig()


@pytest.mark.parametrize("key, value, rule", [("learning_rate", 0, "a number > 0"),
                                              ("beta2", 1.0, "a number in [0, 1)"),
                                              ("l2", -1, "a number >= 0"), ("batch_size", 0, "an integer >= 1")])
def test_with_changes_checks_the_new_values_and_keeps_the_original(key, value, rule):
    original = MLPConfig(learning_rate=0.02)
    with pytest.raises(ValueError, match=f"^{key}: expected ") as info:
        original.with_changes({key: value})
    assert rule in str(info.value)
    assert original == MLPConfig(learning_rate=0.02)


def test_with_changes_coerces_like_from_mapping():
    changed = MLPConfig().with_changes({"batch_size": 32.0, "learning_rate": 1})
    assert changed.batch_size == 32 and type(changed.batch_size) is int
    assert changed.learning_rate == 1.0 and type(changed.learning_rate) is float
