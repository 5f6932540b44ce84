"""caviar.sources: `[data] source = "package.module:function"`, each kind of return and each mistake.

The bad ones go through the command line too (`parallel --dry-run` loads the data before anything
else), where each is exit status 2 and one line naming data.source, nothing written.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from caviar.config.job import parse_job
from caviar.data import load_dataset
from caviar.sources import friedman
from tests.support import DIGITS, caviar_output, write_job


def data_of(source: str, **data) -> object:
    job = parse_job({"data": {"source": source, **data}})
    return job.load_data()


def test_a_function_returning_arrays_is_split_stratified_and_standardized_with_its_options():
    data = data_of("tests.data_functions:arrays", options={"n": 100}, valid_fraction=0.25)
    assert (len(data.y_train), len(data.y_valid), data.n_classes, data.task) == (75, 25, 2, "classification")
    assert data.x_train.dtype == np.float32 and abs(float(data.x_train.mean())) < 1e-6
    again = data_of("tests.data_functions:arrays", options={"n": 100}, valid_fraction=0.25)
    assert np.array_equal(again.x_valid, data.x_valid)            # the same seed, the same split
    other = data_of("tests.data_functions:arrays", options={"n": 100}, valid_fraction=0.25, seed=1)
    assert not np.array_equal(other.x_valid, data.x_valid)


def test_a_dataframe_gives_its_target_column_as_classes_and_the_rest_as_features():
    data = data_of("tests.data_functions:frame", target="kind")
    assert data.feature_names == ("a", "b", "c") and data.n_classes == 2
    with pytest.raises(ValueError, match=r"^data.target: tests.data_functions:frame: no column 'label'"):
        data_of("tests.data_functions:frame")


def test_a_dataset_is_used_as_it_is():
    data = data_of("tests.data_functions:dataset")
    assert data.name == "by-hand" and len(data.x_train) == 80


def test_a_regression_task_keeps_numeric_targets_in_their_units():
    job = parse_job({"data": {"source": "tests.data_functions:line"}, "model": {"task": "regression"}})
    data = job.load_data()
    assert data.n_classes == 0 and data.task == "regression" and data.y_train.dtype == np.float32
    assert 95 < float(data.y_train.mean()) < 105   # the targets are not standardized


def test_friedman_is_seeded_and_checks_its_arguments():
    x, y = friedman(n_samples=50, n_features=6, seed=3)
    assert x.shape == (50, 6) and y.shape == (50,) and np.array_equal(friedman(50, 6, seed=3)[1], y)
    with pytest.raises(ValueError, match="n_features must be"):
        friedman(n_features=4)


def test_a_file_can_hold_a_regression_target(tmp_path):
    path = tmp_path / "prices.csv"
    pd.DataFrame({"area": np.arange(40.0), "price": np.arange(40.0) * 1.5}).to_csv(path, index=False)
    data = load_dataset(path, target="price", task="regression")
    assert data.n_classes == 0 and np.isin(data.y_valid, np.arange(40.0) * 1.5).all()
    with pytest.raises(ValueError, match=r"^data.source: digits is a classification data set"):
        load_dataset("digits", task="regression")


BAD = {
    "raises": r"tests.data_functions:raises raised RuntimeError: the database is down",
    "wrong_type": r"tests.data_functions:wrong_type returned a list; expected a caviar.Dataset, a tuple \(x, y\)",
    "mismatched": r"array 'y' has shape \(119,\); expected \(120,\) to match 'x'",
    "one_dimensional": r"array 'x' has shape \(120,\); expected \(n_samples, n_features\)",
    "with_nan": r"array 'x' \(column 2\) has nan at row 7",
    "bad_dataset": r"returned a Dataset whose x_valid has 2 features, x_train 3",
    "NOT_A_FUNCTION": r"tests.data_functions:NOT_A_FUNCTION is not a function",
    "missing": r"module 'tests.data_functions' has no function 'missing'",
}


@pytest.mark.parametrize("name", list(BAD))
def test_a_bad_data_function_is_one_line_naming_data_source(name):
    with pytest.raises(ValueError) as error:
        data_of(f"tests.data_functions:{name}")
    assert str(error.value).startswith("data.source: ") and "\n" not in str(error.value)
    assert re.search(BAD[name], str(error.value)), str(error.value)


@pytest.mark.parametrize("name", ["raises", "wrong_type", "mismatched"])
def test_from_the_command_line_a_bad_data_function_is_exit_2_and_one_line_before_any_work(tmp_path, capsys, name):
    job = write_job(tmp_path, "bad", DIGITS, data={"source": f"tests.data_functions:{name}"})
    status, out, err = caviar_output(capsys, "parallel", job, "--out", tmp_path / "results", "--dry-run")
    assert status == 2 and out == "" and err.count("\n") == 1
    assert err.startswith("caviar parallel: error: data.source: tests.data_functions:")
    assert not (tmp_path / "results").exists()


def test_a_job_checks_a_function_source_as_a_name_and_passes_it_options():
    with pytest.raises(ValueError, match=r"^data.source: expected one of .*, or 'package.module:function'"):
        parse_job({"data": {"source": "not a name:"}})
    assert parse_job({"data": {"source": "m.n:f", "options": {"k": 1}}}).data.options == {"k": 1}
    with pytest.raises(ValueError, match=r"^model.task: expected one of classification, regression"):
        parse_job({"model": {"task": "ranking"}})
    with pytest.raises(ValueError, match=r"^space.task: the task cannot be searched"):
        parse_job({"space": {"task": {"choice": ["classification", "regression"]}}})
