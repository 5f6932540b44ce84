"""caviar.importing: user code by "module:name", and an object back to the name others import it by."""

from __future__ import annotations

import subprocess
import sys

import pytest

from caviar.importing import import_name, is_import_name, resolve
from tests import data_functions
from tests.toys import ToyTrainer


def test_a_class_or_function_of_a_module_is_named_by_its_module_and_name():
    assert import_name(ToyTrainer, "trainer", "class") == "tests.toys:ToyTrainer"
    assert import_name(data_functions.arrays, "data", "function") == "tests.data_functions:arrays"
    assert resolve(import_name(ToyTrainer, "trainer", "class"), "model.trainer", "class") is ToyTrainer


def test_a_class_defined_inside_a_function_is_refused_in_one_line():
    class Local:
        pass

    with pytest.raises(ValueError) as error:
        import_name(Local, "trainer", "class")
    message = str(error.value)
    assert message.startswith("trainer: ") and "defined inside test_a_class_defined_inside" in message
    assert "\n" not in message


def test_a_lambda_and_a_non_function_are_refused():
    with pytest.raises(ValueError, match=r"^data: .*<lambda>.*defined inside"):
        import_name(lambda: None, "data", "function")
    with pytest.raises(ValueError, match=r"^data: expected a function"):
        import_name(3, "data", "function")
    with pytest.raises(ValueError, match=r"^data: expected a function \(or 'package.module:function'\), got a Dataset$"):
        import_name(data_functions.dataset(), "data", "function")   # its repr would be many lines of arrays


def test_a_class_defined_in_main_is_refused_naming_main():
    code = ("import caviar.importing as i\nclass Mine: pass\n"
            "try:\n    i.import_name(Mine, 'trainer', 'class')\nexcept ValueError as e:\n    print(e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert out.startswith("trainer: Mine is defined in __main__") and out.count("\n") == 1


def test_resolve_names_the_field_for_each_failure():
    with pytest.raises(ValueError, match=r"^data.source: cannot import module 'no_such_mod'"):
        resolve("no_such_mod:f", "data.source", "function")
    with pytest.raises(ValueError, match=r"^data.source: module 'tests.data_functions' has no function 'nope'"):
        resolve("tests.data_functions:nope", "data.source", "function")
    assert is_import_name("a.b:c") and not is_import_name("data.csv") and not is_import_name("x:v2.csv")
