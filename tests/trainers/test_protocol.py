"""The Trainer protocol: the trainers caviar ships and tests with fit it, and its parts are the documented ones.

`caviar.trainers.Trainer` is runtime-checkable, so `isinstance(obj, Trainer)` tells a user whether an
object has the methods every driver calls. The required names must be the methods the README's
"Your own model" shows, and the optional ones those it shows after them and `TrainerExtras` documents.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

import caviar
from caviar.data import Dataset
from caviar.nn.mlp import MLPTrainer
from caviar.trainers import Trainer, TrainerExtras, check_trainer
from caviar.trainers.protocol import OPTIONAL_ATTRIBUTES, OPTIONAL_METHODS, REQUIRED
from tests.toys import ToyTrainer

README = Path(__file__).resolve().parents[2] / "README.md"

# What the docs promise, written out here rather than read from the code under test.
DOCUMENTED_OPTIONAL_METHODS = {"check_config", "metrics_for", "evaluate", "reshuffle"}
DOCUMENTED_OPTIONAL_ATTRIBUTES = {"metrics", "hyperparameters", "mutable"}


def tiny_data() -> Dataset:
    """Twelve rows of two classes: enough to build any trainer, nothing to wait for."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(12, 3)).astype(np.float32)
    y = np.arange(12, dtype=np.int64) % 2
    return Dataset(x_train=x[:8], y_train=y[:8], x_valid=x[8:], y_valid=y[8:], x_test=x[:0], y_test=y[:0],
                   n_classes=2, name="tiny")


def readme_trainer_class() -> tuple[list[str], list[str], list[str]]:
    """The class the README's "Your own model" section shows: (required methods in order, optional
    methods, optional attributes); the optional ones follow its "# Optional" comment."""
    section = README.read_text(encoding="utf-8").split("## Your own model", 1)[1].split("\n## ", 1)[0]
    block = section.split("```python", 1)[1].split("```", 1)[0]
    required, _, optional = block.partition("# Optional")
    return (re.findall(r"def (\w+)\(", required), re.findall(r"def (\w+)\(", optional),
            re.findall(r"^\s*(\w+) = ", optional, re.MULTILINE))


def without(name: str) -> type:
    """A class with every required method except `name`."""
    methods = {
        "__init__": lambda self, config, data, seed: None,
        "train_epoch": lambda self: {"val_accuracy": 0.5},
        "state_dict": lambda self: {"w": np.zeros(2)},
        "load_state_dict": lambda self, state: None,
        "set_hyperparameters": lambda self, **changes: None,
    }
    del methods[name]
    return type(f"Without_{name}", (), methods)


# --- the documented names ------------------------------------------------------------------------

def test_the_required_methods_are_the_ones_the_readme_shows():
    required, _, _ = readme_trainer_class()
    assert required[0] == "__init__"
    assert sorted(REQUIRED) == sorted(required[1:])
    assert len(set(REQUIRED)) == len(REQUIRED)


def test_the_optional_parts_are_the_ones_the_readme_shows():
    _, methods, attributes = readme_trainer_class()
    assert set(OPTIONAL_METHODS) == set(methods) == DOCUMENTED_OPTIONAL_METHODS
    assert set(OPTIONAL_ATTRIBUTES) == set(attributes) == DOCUMENTED_OPTIONAL_ATTRIBUTES


def test_the_readme_builds_a_trainer_from_config_data_and_seed():
    section = README.read_text(encoding="utf-8").split("## Your own model", 1)[1]
    assert re.search(r"def __init__\(self, config\b[^,]*, data\b[^,]*, seed\b", section)


def test_no_required_method_is_also_listed_as_optional():
    assert not set(REQUIRED) & (set(OPTIONAL_METHODS) | set(OPTIONAL_ATTRIBUTES))


def test_each_optional_part_is_described_in_the_extras_protocol():
    doc = TrainerExtras.__doc__
    for name in DOCUMENTED_OPTIONAL_METHODS | DOCUMENTED_OPTIONAL_ATTRIBUTES:
        assert re.search(rf"^\s*{name}[:(]", doc, re.MULTILINE), f"TrainerExtras does not document {name}"
    for name in DOCUMENTED_OPTIONAL_METHODS:
        assert callable(getattr(TrainerExtras, name))
    assert DOCUMENTED_OPTIONAL_ATTRIBUTES <= set(TrainerExtras.__annotations__)


def test_the_trainer_protocol_declares_exactly_the_required_methods():
    declared = {name for name, value in vars(Trainer).items() if callable(value) and not name.startswith("_")}
    assert declared == set(REQUIRED)


def test_the_protocol_and_its_check_are_public_names_of_caviar():
    assert caviar.Trainer is Trainer
    assert caviar.check_trainer is check_trainer
    assert caviar.MLPTrainer is MLPTrainer


# --- the trainers that ship and the toy ones fit it -----------------------------------------------

@pytest.mark.parametrize("cls", [MLPTrainer, ToyTrainer], ids=["mlp", "toy"])
def test_a_shipped_or_toy_trainer_is_an_instance_of_the_protocol(cls):
    trainer = cls({}, tiny_data(), 0)
    assert isinstance(trainer, Trainer)
    assert check_trainer(trainer) is trainer  # its state_dict is plain arrays, too


def test_the_built_in_trainer_has_every_optional_part():
    for name in DOCUMENTED_OPTIONAL_METHODS:
        assert callable(getattr(MLPTrainer, name)), name
    assert set(MLPTrainer.metrics) >= {"val_accuracy", "val_loss", "train_accuracy", "train_loss"}
    assert set(MLPTrainer.mutable) <= set(MLPTrainer.hyperparameters)


def test_what_the_built_in_trainer_reports_is_what_it_declares():
    config = {"hidden_layers": [4], "batch_size": 4}
    reported = MLPTrainer(config, tiny_data(), 0).train_epoch()
    assert set(reported) - {"learning_rate"} == set(MLPTrainer.metrics_for(config))
    data = tiny_data()
    numeric = Dataset(data.x_train, data.y_train * 1.5, data.x_valid, data.y_valid * 1.5, data.x_test,
                      data.y_test.astype(np.float32), n_classes=0, name="tiny")
    regression = {**config, "task": "regression"}
    reported_r = MLPTrainer(regression, numeric, 0).train_epoch()
    assert set(reported_r) - {"learning_rate"} == set(MLPTrainer.metrics_for(regression))
    assert set(MLPTrainer.metrics) == (set(reported) | set(reported_r)) - {"learning_rate", "train_loss", "val_loss"} \
        | {"train_loss", "val_loss"}


@pytest.mark.parametrize("missing", list(REQUIRED))
def test_an_object_lacking_a_required_method_is_not_a_trainer(missing):
    complete = without("__init__")
    assert isinstance(complete(), Trainer)  # the control: nothing missing but the constructor's arguments
    assert not isinstance(without(missing)(object(), object(), 0), Trainer)
