"""`check_job`: does a job fit its trainer? The checks any trainer gets for what it declares.

A trainer that declares its metrics, hyperparameters and check_config (the built-in one, or a
user's class written here to a module on sys.path) has every job checked against them before
anything runs, each mistake one line naming the job field; a trainer that declares nothing takes
any keys and any metric. `full_config` is the config as the trainer will use it.
(tests/config/test_job.py covers the built-in trainer's own messages.)
"""

from __future__ import annotations

import math
import re
import sys
import textwrap

import pytest

from caviar.config.job import parse_job
from caviar.nn.mlp import MLPTrainer
from caviar.trainers import check_job, full_config
from tests.toys import ToyTrainer

MODULE = "my_fit_trainers"
DECLARED = f"{MODULE}:Declared"

# A user's trainer that declares every part check_job reads. Its rules: lr > 0; kind is plain or
# fancy; width is a power of two; depth >= 1; lr_decay <= lr (two keys); a fancy net at most 64
# wide (a rule on two keys whose message names neither).
SOURCE = '''
import numpy as np


class Minimal:
    def __init__(self, config, data, seed):
        self.config = dict(config)

    def train_epoch(self):
        return {"accuracy": 0.5, "loss": 1.0}

    def state_dict(self):
        return {"w": np.zeros(2)}

    def load_state_dict(self, state):
        pass

    def set_hyperparameters(self, **changes):
        self.config.update(changes)


class Declared(Minimal):
    metrics = ("accuracy", "loss")
    hyperparameters = {"lr": float, "lr_decay": float, "width": int, "depth": int, "kind": str}
    mutable = ("lr",)

    @classmethod
    def check_config(cls, config):
        out = {"lr": 0.1, "lr_decay": 0.0, "width": 8, "depth": 2, "kind": "plain", **config}
        if not (isinstance(out["lr"], (int, float)) and out["lr"] > 0):
            raise ValueError(f"lr: expected a number > 0, got {out['lr']!r}")
        if out["kind"] not in ("plain", "fancy"):
            raise ValueError(f"kind: expected plain or fancy, got {out['kind']!r}")
        width = out["width"]
        if not (isinstance(width, int) and width > 0 and width & (width - 1) == 0):
            raise ValueError(f"width: expected a power of two, got {width!r}")
        if not (isinstance(out["depth"], int) and out["depth"] >= 1):
            raise ValueError(f"depth: expected an integer >= 1, got {out['depth']!r}")
        if out["lr_decay"] > out["lr"]:
            raise ValueError(f"lr_decay: must not exceed lr, got {out['lr_decay']} > {out['lr']}")
        if out["kind"] == "fancy" and width > 64:
            raise ValueError("a fancy network is at most 64 wide")
        return out


class Heads(Minimal):
    """Two keys tied together: hidden must be a multiple of heads."""
    metrics = ("accuracy", "loss")
    hyperparameters = {"hidden": int, "heads": int}

    @classmethod
    def check_config(cls, config):
        out = {"hidden": 64, "heads": 4, **config}
        if out["hidden"] % out["heads"]:
            raise ValueError(f"hidden: {out['hidden']} is not a multiple of heads ({out['heads']})")
        return out


class Raising(Minimal):
    """A check_config that fails with something other than ValueError."""
    metrics = ("accuracy", "loss")
    hyperparameters = {"x": int}

    @classmethod
    def check_config(cls, config):
        if config.get("x", 0) > 3:
            return config["learning_rate"]
        return dict(config)


class Readme(Minimal):
    """The README's example: it declares learning_rate and width, not epochs, and takes no other key."""
    metrics = ("accuracy", "loss")
    hyperparameters = {"learning_rate": float, "width": int}

    @classmethod
    def check_config(cls, config):
        unknown = sorted(set(config) - set(cls.hyperparameters))
        if unknown:
            raise ValueError(f"{unknown[0]}: not a hyperparameter")
        return {"learning_rate": 0.1, "width": 8, **config}


class Broken(Minimal):
    state_dict = None


class InstanceCheck(Minimal):
    """check_config written as a plain method, not the classmethod the protocol asks for."""

    def check_config(self, config):
        return dict(config)
'''


@pytest.fixture
def trainers(tmp_path, monkeypatch):
    """The user's module `my_fit_trainers` importable for this test (and forgotten after it)."""
    (tmp_path / f"{MODULE}.py").write_text(textwrap.dedent(SOURCE), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    sys.modules.pop(MODULE, None)
    yield MODULE
    sys.modules.pop(MODULE, None)


def job_text(trainer: str, model: str = "", space: str = "", search: str = "", babysit: str = "") -> str:
    """A job for `trainer` with the given lines in each section; its metric one the trainer reports."""
    if "metric" not in search:
        search += "\nmetric = " + repr("accuracy" if trainer.startswith(MODULE) else "val_accuracy")
    return (f"[model]\ntrainer = {trainer!r}\n{model}\n[space]\n{space}\n"
            f"[search]\n{search}\n[babysit]\n{babysit}\n")


def refusal(text: str, field: str) -> str:
    """The message check_job gives for the job `text`: one line that starts with `field`."""
    with pytest.raises(ValueError) as info:
        check_job(parse_job(text))
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{field}: "), message
    return message


# --- keys ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("trainer", ["mlp", DECLARED])
@pytest.mark.parametrize("section, line", [("model", "colour = 3"), ("space", "colour = { int_uniform = [1, 4] }")])
def test_an_unknown_key_lists_every_hyperparameter_the_trainer_declares(trainers, trainer, section, line):
    cls = MLPTrainer if trainer == "mlp" else __import__(MODULE).Declared
    message = refusal(job_text(trainer, **{section: line}), f"{section}.colour")
    valid = (("trainer",) if section == "model" else ()) + tuple(cls.hyperparameters)
    valid += () if "epochs" in valid else ("epochs",)  # the drivers' key, valid whatever the trainer
    assert message == f"{section}.colour: unknown hyperparameter of the {trainer} trainer (valid: {', '.join(valid)})"


def test_a_misspelt_key_gets_a_did_you_mean_and_the_list(trainers):
    message = refusal(job_text(DECLARED, space="widht = { choice = [8, 16] }"), "space.widht")
    assert "(did you mean 'width'?; valid: lr, lr_decay, width, depth, kind, epochs)" in message


def test_declared_keys_in_model_and_space_pass_and_the_class_comes_back(trainers):
    text = job_text(DECLARED, model="lr = 0.05\nkind = 'fancy'",
                    space="width = { choice = [8, 16, 32] }\nlr_decay = { log_uniform = [1e-4, 1e-2] }")
    cls = check_job(parse_job(text))
    assert cls.__name__ == "Declared" and cls.__module__ == MODULE


# --- metric -------------------------------------------------------------------------------------------

def test_a_metric_the_trainer_does_not_report_is_refused_with_a_did_you_mean(trainers):
    message = refusal(job_text(DECLARED, search="metric = 'acuracy'"), "search.metric")
    assert message == (f"search.metric: the {DECLARED} trainer reports accuracy, loss, got 'acuracy' "
                       "(did you mean 'accuracy'?)")


def test_the_babysit_metric_is_checked_on_its_own(trainers):
    message = refusal(job_text(DECLARED, babysit="metric = 'los'\nmode = 'min'"), "babysit.metric")
    assert "reports accuracy, loss" in message and "(did you mean 'loss'?)" in message


def test_a_metric_with_nothing_close_lists_what_the_trainer_reports(trainers):
    message = refusal(job_text(DECLARED, search="metric = 'f1'"), "search.metric")
    assert message == f"search.metric: the {DECLARED} trainer reports accuracy, loss, got 'f1'"


def test_any_metric_the_trainer_declares_passes(trainers):
    check_job(parse_job(job_text(DECLARED, search="metric = 'loss'\nmode = 'min'")))


# --- whole numbers --------------------------------------------------------------------------------------

@pytest.mark.parametrize("spec, fix", [
    ("{ uniform = [8, 64] }", "(write { int_uniform = [8, 64] })"),
    ("{ log_uniform = [8, 64] }", "(write { int_log_uniform = [8, 64] })"),
    ("{ uniform = [7.5, 64] }", "(write int_uniform or choice)"),
])
def test_a_float_range_for_a_declared_int_is_refused_with_the_int_kind_to_write(trainers, spec, fix):
    message = refusal(job_text(DECLARED, space=f"width = {spec}"), "space.width")
    assert "width takes whole numbers" in message and message.endswith(fix)


def test_an_int_range_for_an_int_and_a_float_range_for_a_float_pass(trainers):
    check_job(parse_job(job_text(DECLARED, space="depth = { int_log_uniform = [1, 8] }\n"
                                                 "lr = { uniform = [0.01, 0.5] }")))


# --- values, through check_config -----------------------------------------------------------------

def test_a_bad_model_value_is_named_by_its_field_in_the_trainers_words(trainers):
    message = refusal(job_text(DECLARED, model="kind = 'huge'"), "model.kind")
    assert message == "model.kind: expected plain or fancy, got 'huge'"


def test_a_bad_value_at_the_end_of_a_space_range_is_named_with_the_range(trainers):
    message = refusal(job_text(DECLARED, space="lr = { uniform = [-0.5, 1.0] }"), "space.lr")
    assert message == "space.lr: expected a number > 0, got -0.5 (a value of { uniform = [-0.5, 1.0] })"


def test_a_bad_value_only_inside_a_space_range_is_found_and_named(trainers):
    """Both ends (8 and 64) are powers of two; a draw in between is not."""
    message = refusal(job_text(DECLARED, space="width = { int_uniform = [8, 64] }"), "space.width")
    found = re.fullmatch(r"space\.width: expected a power of two, got (\d+) "
                         r"\(a value of \{ int_uniform = \[8, 64\] \}\)", message)
    assert found, message
    drawn = int(found.group(1))
    assert 8 < drawn < 64 and not math.log2(drawn).is_integer()


def test_every_choice_is_tried_not_only_the_first_and_last(trainers):
    message = refusal(job_text(DECLARED, space="kind = { choice = ['plain', 'huge', 'fancy'] }"), "space.kind")
    assert message == ("space.kind: expected plain or fancy, got 'huge' "
                       "(a value of { choice = ['plain', 'huge', 'fancy'] })")


def test_a_fixed_list_in_space_that_the_trainer_refuses_suggests_a_choice(trainers):
    message = refusal(job_text(DECLARED, space="kind = ['plain', 'fancy']"), "space.kind")
    assert message.endswith("(to search over values, write { choice = [...] })")


def test_values_fine_alone_but_not_together_are_named_by_the_key_the_trainer_names(trainers):
    message = refusal(job_text(DECLARED, model="lr = 0.01\nlr_decay = 0.05"), "model.lr_decay")
    assert message == "model.lr_decay: must not exceed lr, got 0.05 > 0.01"


def test_values_fine_alone_but_not_together_without_a_key_are_put_on_model(trainers):
    message = refusal(job_text(DECLARED, model="kind = 'fancy'\nwidth = 128"), "model")
    assert message == "model: a fancy network is at most 64 wide"


def test_a_space_key_at_fault_together_with_a_model_key_is_named_in_space(trainers):
    """Found: lr (in [model]) is a prefix of lr_decay (in [space]), so the combined check's message
    "lr_decay: ..." is put on [model] ("model.lr_decay: ..."), a field the job does not have."""
    message = refusal(job_text(DECLARED, model="lr = 0.01", space="lr_decay = { uniform = [0.001, 0.05] }"),
                      "space.lr_decay")
    assert "must not exceed lr" in message


# --- values tied together, a check_config that crashes, the drivers' epochs --------------------------

@pytest.mark.parametrize("model, space", [
    ("heads = 6", "hidden = { choice = [48, 96] }"),
    ("hidden = 48", "heads = { choice = [6, 8, 12] }"),
    ("heads = 6\nhidden = 48", ""),
    ("", "heads = 6\nhidden = { choice = [48, 96] }"),
])
def test_values_tied_together_pass_when_every_draw_is_valid(trainers, model, space):
    """Found: each value was probed alone on the trainer's defaults (hidden 64), so heads = 6 was
    refused ("model.heads: hidden: 64 is not a multiple of heads (6)") though no draw has hidden 64."""
    check_job(parse_job(job_text(f"{MODULE}:Heads", model=model, space=space)))


def test_a_draw_that_breaks_a_tie_is_named_by_the_space_field_it_came_from(trainers):
    message = refusal(job_text(f"{MODULE}:Heads", model="hidden = 48", space="heads = { choice = [6, 8, 9] }"),
                      "space.heads")
    assert message == "space.heads: hidden: 48 is not a multiple of heads (9) (a value of { choice = [6, 8, 9] })"


def test_a_model_value_that_breaks_a_tie_is_named_by_the_key_the_trainer_names(trainers):
    message = refusal(job_text(f"{MODULE}:Heads", model="heads = 5", space="hidden = { choice = [48, 96] }"),
                      "space.hidden")
    assert "is not a multiple of heads (5)" in message


@pytest.mark.parametrize("model, space, field", [
    ("x = 5", "", "model.x"),
    ("", "x = { int_uniform = [1, 9] }", "space.x"),
])
def test_a_check_config_that_raises_anything_else_is_one_line_naming_the_field(trainers, model, space, field):
    """Found: a KeyError (or any non-ValueError) from the user's check_config escaped as a traceback."""
    message = refusal(job_text(f"{MODULE}:Raising", model=model, space=space), field)
    assert message.startswith(f"{field}: check_config raised KeyError: 'learning_rate'"), message


def test_a_check_config_that_raises_anything_else_exits_2_at_the_cli(trainers, tmp_path):
    from caviar.cli import main

    job = tmp_path / "job.toml"
    job.write_text(job_text(f"{MODULE}:Raising", model="x = 5"), encoding="utf-8")
    assert main(["parallel", str(job), "--dry-run", "--out", str(tmp_path / "results")]) == 2


@pytest.mark.parametrize("model, space", [
    ("epochs = 5", ""),
    ("", "epochs = { int_uniform = [2, 6] }"),
    ("", "epochs = 4"),
    ("learning_rate = 0.05\nepochs = 5", "width = { choice = [8, 16] }"),
])
def test_epochs_is_the_drivers_key_whatever_the_trainer_declares(trainers, model, space):
    """Found: the README's own trainer (learning_rate and width) had `[model] epochs = 5` refused as
    an unknown hyperparameter, though the sweep reads epochs from [model]; nor may its check_config
    see a key it does not declare."""
    check_job(parse_job(job_text(f"{MODULE}:Readme", model=model, space=space)))


def test_full_config_keeps_epochs_without_showing_it_to_a_trainer_that_does_not_take_it(trainers):
    cls = __import__(MODULE).Readme
    assert full_config(cls, {"epochs": 5, "width": 16}) == {"learning_rate": 0.1, "width": 16, "epochs": 5}


@pytest.mark.parametrize("model, space, message", [
    ("", "epochs = { uniform = [2, 6] }", "space.epochs: epochs takes whole numbers, but uniform draws fractions, "
                                          "got { uniform = [2.0, 6.0] } (write { int_uniform = [2, 6] })"),
    ("epochs = 2.5", "", "model.epochs: expected a whole number >= 1 (the epochs a trial trains), got 2.5"),
    ("epochs = 0", "", "model.epochs: expected a whole number >= 1 (the epochs a trial trains), got 0"),
    ("", "epochs = { int_uniform = [0, 6] }", "space.epochs: expected a whole number >= 1 (the epochs a trial "
                                              "trains), got 0 (a value of { int_uniform = [0, 6] })"),
])
def test_epochs_must_be_whole_and_positive_whatever_the_trainer_declares(trainers, model, space, message):
    field = message.split(": ")[0]
    assert refusal(job_text(f"{MODULE}:Readme", model=model, space=space), field) == message


def test_a_misspelt_epochs_gets_a_did_you_mean(trainers):
    message = refusal(job_text(f"{MODULE}:Readme", model="epoch = 5"), "model.epoch")
    assert "did you mean 'epochs'?" in message


# --- a trainer that declares nothing, and one that does not fit ------------------------------------

def test_a_trainer_that_declares_nothing_takes_any_keys_and_any_metric():
    for part in ("metrics", "hyperparameters", "mutable", "check_config"):
        assert not hasattr(ToyTrainer, part), part  # the premise: it declares nothing
    text = job_text("tests.toys:ToyTrainer", model="depth = 3\nwidth = 'wide'\nlayers = { a = 1 }",
                    space="width = { uniform = [7.5, 64.5] }\nlearning_rate = { log_uniform = [1e-5, 10] }",
                    search="metric = 'my_score'", babysit="metric = 'whatever'")
    assert check_job(parse_job(text)) is ToyTrainer


def test_a_job_naming_a_class_that_does_not_fit_the_protocol_is_refused_by_its_name(trainers):
    message = refusal(job_text(f"{MODULE}:Broken"), "model.trainer")
    assert message == f"model.trainer: {MODULE}:Broken does not fit the Trainer protocol: lacks state_dict()"


def test_a_job_naming_a_class_that_does_not_exist_is_refused():
    message = refusal(job_text("tests.toys:NoSuchTrainer"), "model.trainer")
    assert "has no class 'NoSuchTrainer'" in message


def test_a_check_config_the_class_cannot_call_is_a_user_error_not_a_crash(trainers):
    """Found: check_trainer accepts check_config written as an instance method; check_job then calls
    it on the class and a TypeError escapes (a traceback instead of a one-line "model.trainer: ...")."""
    with pytest.raises(ValueError, match=r"^model\.trainer: .*check_config"):
        check_job(parse_job(job_text(f"{MODULE}:InstanceCheck", model="lr = 0.1")))


# --- full_config --------------------------------------------------------------------------------------

def test_full_config_fills_the_built_in_defaults_and_keeps_what_is_given():
    config = full_config(MLPTrainer, {"hidden_layers": [8], "batch_size": 16})
    assert config["epochs"] == 20 and config["learning_rate"] == 1e-3
    assert config["hidden_layers"] == (8,) and config["batch_size"] == 16
    assert set(config) == set(MLPTrainer.hyperparameters)


def test_full_config_fills_a_user_trainers_own_defaults(trainers):
    cls = __import__(MODULE).Declared
    assert full_config(cls, {"width": 32}) == {"lr": 0.1, "lr_decay": 0.0, "width": 32, "depth": 2, "kind": "plain"}


def test_full_config_refuses_a_bad_value_in_the_trainers_words():
    with pytest.raises(ValueError, match=r"^learning_rate: "):
        full_config(MLPTrainer, {"learning_rate": -1.0})


def test_full_config_of_a_trainer_without_check_config_is_the_config_as_given():
    config = {"learning_rate": 0.01, "anything": [1, 2], "sleep": 0}
    assert full_config(ToyTrainer, config) == config
    assert full_config(ToyTrainer, {}) == {}


def test_a_conditional_value_is_checked_where_its_parents_make_it_exist():
    """beta2 exists only for adam here: its values are checked with optimizer adam, never with the
    middle of the space (sgd), which the trainer would rightly refuse."""
    space = {"optimizer": {"choice": ["adam", "sgd"]},
             "beta2": {"one_minus_log_uniform": [0.99, 0.999], "when": {"optimizer": ["adam"]}}}
    job = parse_job({"model": {"trainer": "tests.search_toys:PickyTrainer"}, "space": space})
    check_job(job)
    space["beta2"]["when"] = {"optimizer": ["adam", "sgd"]}   # now it can meet sgd: refused, naming it
    with pytest.raises(ValueError, match="^space.beta2: only adam and rmsprop take it"):
        check_job(parse_job({"model": {"trainer": "tests.search_toys:PickyTrainer"}, "space": space}))
