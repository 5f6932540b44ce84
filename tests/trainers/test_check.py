"""`check_trainer` and `checked_metrics`: what a user's trainer lacks, said in one line.

`check_trainer` is what a user runs on their own class and what both drivers run before anything
trains; `checked_metrics` is the check of each epoch's report. The classes here are written in the
test, each a minimal trainer with one thing wrong.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from caviar.trainers import check_trainer, checked_metrics


class Minimal:
    """Nothing but the required methods."""

    def __init__(self, config, data, seed):
        self.config = dict(config)

    def train_epoch(self):
        return {"val_accuracy": 0.5}

    def state_dict(self):
        return {"w": np.zeros(3), "step": np.array(2), "name": np.array("adam")}

    def load_state_dict(self, state):
        pass

    def set_hyperparameters(self, **changes):
        pass


REQUIRED = ["train_epoch", "state_dict", "load_state_dict", "set_hyperparameters"]
PROTOCOL = " does not fit the Trainer protocol: "


def subclass(**members) -> type:
    """A Minimal with some members replaced (None for a method makes it missing)."""
    return type("Custom", (Minimal,), members)


def without(name: str) -> type:
    """A minimal trainer lacking the required method `name`."""
    members = {k: v for k, v in vars(Minimal).items() if not k.startswith("__") or k == "__init__"}
    del members[name]
    return type(f"Without_{name}", (), members)


def problems(trainer: object, name: str | None = None) -> str:
    """What check_trainer says is wrong with `trainer` (the text after "does not fit the Trainer
    protocol: "), after checking the message is one line that starts with "model.trainer: "."""
    with pytest.raises(ValueError) as info:
        check_trainer(trainer, name)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("model.trainer: ") and PROTOCOL in message, message
    return message.split(PROTOCOL, 1)[1]


def assert_joined(text: str, pieces: list[str]) -> None:
    """`text` is exactly `pieces`, in any order, joined by "; "."""
    rest = text
    for piece in pieces:
        assert piece in rest, (piece, text)
        rest = rest.replace(piece, "", 1)
    assert rest == "; " * (len(pieces) - 1), text


def metrics_refusal(reported: object) -> str:
    """The message of checked_metrics' refusal of `reported`, checked to be one "model.trainer: " line."""
    with pytest.raises(ValueError) as info:
        checked_metrics(reported)
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith("model.trainer: "), message
    return message


# --- classes that fit ------------------------------------------------------------------------------

def test_a_minimal_class_passes_and_comes_back_unchanged():
    assert check_trainer(Minimal) is Minimal
    assert check_trainer(Minimal, "pkg.mod:Minimal") is Minimal


def test_an_instance_with_plain_array_state_passes_and_comes_back_unchanged():
    trainer = Minimal({}, None, 0)
    assert check_trainer(trainer) is trainer


def test_a_class_declaring_every_optional_part_passes():
    class Full(Minimal):
        metrics = ("val_accuracy", "val_loss", "learning_rate")  # learning_rate is the trainer's own to report
        hyperparameters = {"learning_rate": float, "width": int, "layers": tuple, "norm": bool, "act": str}
        mutable = ("learning_rate",)

        @classmethod
        def check_config(cls, config):
            return dict(config)

        def evaluate(self, x, y):
            return {"loss": 0.0}

        def reshuffle(self, seed):
            pass

    assert check_trainer(Full) is Full
    assert check_trainer(Full({}, None, 0)) is not None


@pytest.mark.parametrize("init", [
    lambda self, config, data, seed=0: None,
    lambda self, *args: None,
    lambda self, config, data, seed, *, verbose=False: None,
], ids=["default seed", "star args", "extra keyword"])
def test_any_constructor_that_takes_config_data_and_seed_passes(init):
    cls = subclass(__init__=init)
    assert check_trainer(cls) is cls


# --- classes that do not ---------------------------------------------------------------------------

@pytest.mark.parametrize("missing", REQUIRED)
def test_each_missing_required_method_is_named(missing):
    assert problems(without(missing)) == f"lacks {missing}()"


def test_a_required_name_that_is_not_callable_counts_as_missing():
    assert problems(subclass(train_epoch=None)) == "lacks train_epoch()"


@pytest.mark.parametrize("init", [
    lambda self: None,
    lambda self, config: None,
    lambda self, config, data, seed, device: None,
    lambda self, config, data, *, seed: None,
], ids=["no arguments", "config only", "one argument too many", "keyword-only seed"])
def test_a_constructor_that_cannot_take_config_data_and_seed_is_named(init):
    assert problems(subclass(__init__=init)) == "cannot be built as Trainer(config, data, seed)"


def test_the_message_names_the_class_or_the_name_given():
    message_start = f"model.trainer: {__name__}:test_the_message_names_the_class_or_the_name_given.<locals>.Broken"

    class Broken(Minimal):
        train_epoch = None

    with pytest.raises(ValueError, match=rf"^{re.escape(message_start)}{PROTOCOL}"):
        check_trainer(Broken)
    with pytest.raises(ValueError, match=rf"^model\.trainer: mine:Net{PROTOCOL}"):
        check_trainer(Broken, "mine:Net")


def test_several_problems_come_in_one_line_joined_by_semicolons():
    cls = type("Hopeless", (), {"__init__": lambda self: None, "train_epoch": lambda self: {},
                                "evaluate": 3, "metrics": ("score",), "hyperparameters": {"lr": float},
                                "mutable": ("momentum",)})
    reserved = metrics_refusal({"score": 1.0}).removeprefix("model.trainer: ")
    assert_joined(problems(cls), [
        "lacks state_dict()", "lacks load_state_dict()", "lacks set_hyperparameters()",
        "cannot be built as Trainer(config, data, seed)", "evaluate is not callable", reserved,
        "mutable names ['momentum'], which are not among its hyperparameters",
    ])


@pytest.mark.parametrize("name", ["check_config", "evaluate", "reshuffle"])
def test_an_optional_method_that_is_not_callable_is_named(name):
    assert problems(subclass(**{name: "yes"})) == f"{name} is not callable"


# --- what a class declares -------------------------------------------------------------------------

@pytest.mark.parametrize("reserved", ["score", "trial_id", "epoch", "status", "seconds", "params_x",
                                      "params_learning_rate", "generation", "member", "source", "copied_from"])
def test_a_declared_metric_with_a_reserved_name_is_refused_in_the_words_of_the_epoch_check(reserved):
    declared = problems(subclass(metrics=("val_accuracy", reserved)))
    reported = metrics_refusal({"val_accuracy": 0.5, reserved: 1.0})
    assert declared == reported.removeprefix("model.trainer: ")
    assert f"{reserved!r}" in reported and "rename that metric" in reported


def test_learning_rate_is_a_metric_a_trainer_may_declare_and_report():
    cls = subclass(metrics=("val_loss", "learning_rate"))
    assert check_trainer(cls) is cls
    assert checked_metrics({"val_loss": 0.5, "learning_rate": 0.01}) == {"val_loss": 0.5, "learning_rate": 0.01}


@pytest.mark.parametrize("metrics", ["val_accuracy", ("val_accuracy", ""), ("val_accuracy", 3), None])
def test_metrics_that_are_not_a_tuple_of_names_are_refused(metrics):
    assert problems(subclass(metrics=metrics)) == f"metrics must be a tuple of names, got {metrics!r}"


@pytest.mark.parametrize("hyper", [["lr"], {"lr": "float"}, {"lr": 0.1}, {1: float}])
def test_hyperparameters_that_do_not_map_names_to_types_are_refused(hyper):
    assert problems(subclass(hyperparameters=hyper)) == f"hyperparameters must map names to types, got {hyper!r}"


def test_a_mutable_name_that_is_not_a_hyperparameter_is_refused():
    cls = subclass(hyperparameters={"learning_rate": float, "width": int}, mutable=("learning_rate", "momentum", "l2"))
    assert problems(cls) == "mutable names ['l2', 'momentum'], which are not among its hyperparameters"


def test_mutable_must_be_a_tuple_of_names():
    assert problems(subclass(mutable="learning_rate")) == "mutable must be a tuple of names, got 'learning_rate'"


def test_mutable_hyperparameters_that_are_declared_pass():
    cls = subclass(hyperparameters={"learning_rate": float, "width": int}, mutable=("learning_rate",))
    assert check_trainer(cls) is cls


# --- an instance: its state_dict ---------------------------------------------------------------------

def with_state(state_dict) -> object:
    return subclass(state_dict=state_dict)({}, None, 0)


def test_a_state_dict_holding_an_object_array_is_reported_by_key():
    trainer = with_state(lambda self: {"w": np.zeros(2), "history": np.array([{"lr": 0.1}], dtype=object)})
    assert problems(trainer) == "state_dict()['history'] is ndarray, not a NumPy array of numbers, booleans or text"


@pytest.mark.parametrize("value, kind", [([1.0, 2.0], "list"), (3, "int"), (None, "NoneType"), ("adam", "str")])
def test_a_state_dict_holding_something_other_than_an_array_is_reported_by_key(value, kind):
    found = problems(with_state(lambda self: {"w": np.zeros(2), "extra": value}))
    assert found == f"state_dict()['extra'] is {kind}, not a NumPy array of numbers, booleans or text"


def test_a_state_dict_that_is_not_a_dict_is_reported():
    assert problems(with_state(lambda self: [np.zeros(2)])) == "state_dict() must return a dict of arrays, got list"


def test_a_state_dict_that_raises_is_reported_not_raised():
    def state_dict(self):
        raise RuntimeError("weights not built yet")

    assert problems(with_state(state_dict)) == "state_dict() raised RuntimeError: weights not built yet"


def test_numpy_scalars_and_text_arrays_are_plain_state():
    trainer = with_state(lambda self: {"step": np.int64(3), "lr": np.float32(0.1), "opt": np.array(["adam"]),
                                       "mask": np.ones(2, bool)})
    assert check_trainer(trainer) is trainer


def test_a_class_is_not_asked_for_its_state_only_an_instance_is():
    cls = subclass(state_dict=lambda self: {"history": [0.1, 0.2]})
    assert check_trainer(cls) is cls
    assert problems(cls({}, None, 0)).startswith("state_dict()['history'] is list")


def test_a_state_dict_keyed_by_something_other_than_text_says_so():
    """Found: the key 0 is reported as "state_dict()[0] is ndarray, not a NumPy array ...", which
    contradicts itself and hides the real problem (names must be text to be saved in an .npz)."""
    found = problems(with_state(lambda self: {0: np.zeros(2)}))
    assert found.startswith("state_dict()[0]")
    assert "is ndarray, not a NumPy array" not in found


def test_a_state_dict_error_that_spans_lines_is_reported_on_one_line():
    """Found: the exception's text goes in as it is, so a multi-line error breaks the one-line message
    (and the command line, which prints only the first line, loses the cause)."""
    def state_dict(self):
        raise RuntimeError("weights not built yet:\ncall build() first")

    found = problems(with_state(state_dict))  # asserts one line
    assert "call build() first" in found


# --- each epoch's report: checked_metrics -----------------------------------------------------------

def test_numbers_of_any_kind_come_back_as_python_floats():
    reported = {"val_accuracy": np.float32(0.75), "val_loss": np.float64(0.5), "correct": np.int64(3),
                "train_loss": 1, "nan_loss": float("nan")}
    clean = checked_metrics(reported)
    assert list(clean) == list(reported)
    assert all(type(v) is float for v in clean.values())
    assert clean["val_accuracy"] == 0.75 and clean["correct"] == 3.0 and clean["train_loss"] == 1.0
    assert np.isnan(clean["nan_loss"])  # a diverged epoch is the drivers' business, not a malformed report


def test_an_empty_report_is_an_empty_dict():
    assert checked_metrics({}) == {}


@pytest.mark.parametrize("reported, kind", [([0.5], "list"), (None, "NoneType"), (0.5, "float"),
                                            ((("val_loss", 0.5),), "tuple")])
def test_a_report_that_is_not_a_dict_is_refused(reported, kind):
    assert metrics_refusal(reported) == f"model.trainer: train_epoch() must return a dict of metrics, got {kind}"


@pytest.mark.parametrize("value", ["0.5", None, [0.5], {"mean": 0.5}, np.array([0.5, 0.25]), 1j])
def test_a_value_that_is_not_a_number_is_refused_naming_the_metric(value):
    message = metrics_refusal({"val_accuracy": 0.5, "val_loss": value})
    assert message.startswith("model.trainer: the trainer reports val_loss=")
    assert message.endswith(", not a number")


@pytest.mark.parametrize("reserved", ["score", "trial_id", "params_x", "decision"])
def test_a_reserved_name_is_refused_with_the_list_of_reserved_names(reserved):
    message = metrics_refusal({"val_accuracy": 0.5, reserved: 1.0})
    assert f"metric named {reserved!r}, a column caviar writes itself" in message
    assert "params_*" in message and "trial_id" in message


def test_a_value_whose_text_spans_lines_is_refused_on_one_line():
    """Found: a 2-D array (per-class accuracies, say) is shown by its multi-line repr, so the message
    is several lines and the command line, which prints the first, cuts it mid-value."""
    message = metrics_refusal({"val_loss": np.array([[0.5, 0.25], [0.1, 0.2]])})  # asserts one line
    assert message.endswith(", not a number")


def test_a_metric_name_that_is_not_text_is_not_called_a_reserved_column():
    """Found: the name 1 is refused as "a metric named '1', a column caviar writes itself", which it is not."""
    message = metrics_refusal({1: 0.5})
    assert "1" in message
    assert "a column caviar writes itself" not in message


def test_names_seen_before_skip_only_the_name_checks_of_a_report():
    """The quick path for a report of names already accepted still checks each value, and a name
    refused once is refused every time."""
    import numpy as np

    assert checked_metrics({"val_loss": np.float32(0.5), "steps": 3}) == {"val_loss": 0.5, "steps": 3.0}
    assert checked_metrics({"val_loss": 0.25, "steps": True}) == {"val_loss": 0.25, "steps": 1.0}
    assert "val_loss=" in metrics_refusal({"val_loss": "0.5"})
    assert "val_loss=" in metrics_refusal({"val_loss": None})
    for _ in range(2):
        assert "epoch" in metrics_refusal({"val_loss": 0.5, "epoch": 1.0})
