"""How a job's `[model] trainer` becomes a class: the built-in short name, "package.module:Class", and
every way a name can fail, each a one-line ValueError that starts with "model.trainer: "."""

from __future__ import annotations

import sys
import textwrap

import pytest

from caviar.nn.mlp import MLPTrainer
from caviar.trainers import resolve_trainer
from caviar.trainers.registry import builtin_trainers, is_builtin
from tests.toys import FlakyTrainer, ToyTrainer


@pytest.fixture
def user_module(tmp_path, monkeypatch):
    """write(name, source): a module `name` in a folder on sys.path, forgotten by Python after the test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written: list[str] = []

    def write(name: str, source: str) -> str:
        (tmp_path / f"{name}.py").write_text(textwrap.dedent(source), encoding="utf-8")
        written.append(name)
        return name

    yield write
    for name in written:
        sys.modules.pop(name, None)


def refusal(name: str) -> str:
    with pytest.raises(ValueError) as info:
        resolve_trainer(name)
    message = str(info.value)
    assert message.startswith("model.trainer: "), message
    assert "\n" not in message
    return message


# --- names that resolve --------------------------------------------------------------------------

def test_the_short_name_mlp_is_the_built_in_network():
    assert resolve_trainer("mlp") is MLPTrainer


def test_the_built_in_can_also_be_named_by_its_module_and_class():
    assert resolve_trainer("caviar.nn.mlp:MLPTrainer") is MLPTrainer


@pytest.mark.parametrize("name, cls", [("tests.toys:ToyTrainer", ToyTrainer),
                                       ("tests.toys:FlakyTrainer", FlakyTrainer)])
def test_a_module_and_class_name_resolves_to_that_class(name, cls):
    assert resolve_trainer(name) is cls


def test_a_users_module_on_the_path_resolves(user_module):
    user_module("my_trainers_ok", """
        class Net:
            pass
    """)
    cls = resolve_trainer("my_trainers_ok:Net")
    assert cls.__name__ == "Net" and cls.__module__ == "my_trainers_ok"


def test_is_builtin_knows_only_the_short_names():
    assert is_builtin("mlp")
    assert builtin_trainers() == {"mlp": "caviar.nn.mlp:MLPTrainer"}
    for name in ("MLP", "mlp ", "tests.toys:ToyTrainer", "caviar.nn.mlp:MLPTrainer", ""):
        assert not is_builtin(name), name


# --- names that do not -----------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlpp", "", "tests.toys", ":ToyTrainer", "tests.toys:", ":"])
def test_a_malformed_name_lists_the_built_ins_and_the_form_expected(name):
    message = refusal(name)
    assert "'mlp'" in message and "'package.module:ClassName'" in message
    assert message.endswith(f"got {name!r}")


def test_a_missing_module_is_named():
    message = refusal("no_such_caviar_module_xyz:Net")
    assert "cannot import module 'no_such_caviar_module_xyz'" in message
    assert "ModuleNotFoundError" in message


def test_a_missing_submodule_of_a_real_package_is_named():
    message = refusal("tests.no_such_toys:ToyTrainer")
    assert "cannot import module 'tests.no_such_toys'" in message


def test_a_module_that_raises_while_importing_is_named_with_its_error(user_module):
    user_module("my_trainers_raising", """
        import numpy
        raise RuntimeError("the GPU is on fire")
    """)
    message = refusal("my_trainers_raising:Net")
    assert "cannot import module 'my_trainers_raising'" in message
    assert "RuntimeError: the GPU is on fire" in message


def test_a_module_with_a_syntax_error_is_named(user_module):
    user_module("my_trainers_syntax", """
        class Net(:
            pass
    """)
    message = refusal("my_trainers_syntax:Net")
    assert "cannot import module 'my_trainers_syntax'" in message
    assert "SyntaxError" in message


def test_a_module_whose_import_error_spans_lines_is_named_on_one_line(user_module):
    """A broken compiled dependency raises a multi-line ImportError (NumPy's starts with blank lines);
    the command line prints only a message's first line, so the cause must be on it (found: it is not)."""
    user_module("my_trainers_multiline", """
        raise ImportError("\\n\\nIMPORTANT: PLEASE READ THIS FOR ADVICE ON HOW TO SOLVE THIS ISSUE!\\n\\n"
                          "Importing the numpy C-extensions failed.")
    """)
    message = refusal("my_trainers_multiline:Net")  # asserts one line
    assert "Importing the numpy C-extensions failed." in message


@pytest.mark.parametrize("name", ["tests.toys:NoSuchTrainer", "tests.toys:toytrainer"])
def test_a_missing_class_names_the_module_and_the_class(name):
    module, _, cls = name.partition(":")
    assert refusal(name) == f"model.trainer: module {module!r} has no class {cls!r}"
