"""`caviar.babysit(...)` from Python: the run `caviar babysit` writes, returned as `caviar.load` reads it."""

from __future__ import annotations

import pytest

import caviar
from caviar.config.job import parse_job
from caviar.store.reader import load
from tests.support import DIGITS, run_babysit, write_job

SMALL = {"babysit": {"epochs": 3}, "data": {"source": "digits"}, "model": {"hidden_layers": [16]}}


def epochs_of(run):
    return run.epochs.drop(columns=["seconds", "time"]).reset_index(drop=True)   # durations, clock times differ


def test_a_babysat_run_from_a_path_a_dict_and_a_job_equals_the_command_lines(tmp_path, capsys):
    job = write_job(tmp_path, "panda", DIGITS, **SMALL)
    out = tmp_path / "results"
    assert run_babysit(job, out) == 0
    cli = load(out / "panda")
    raw = {"name": "panda", **SMALL}
    for name, given in (("by_path", job), ("by_dict", raw), ("by_job", parse_job(raw))):
        run = caviar.babysit(given, name=name, out=out, quiet=True)
        assert run.kind == "babysit" and run.path == out / name
        assert sorted(p.name for p in run.path.iterdir()) == sorted(p.name for p in cli.path.iterdir())
        assert epochs_of(run).equals(epochs_of(cli)) and len(run.epochs) == 3
    capsys.readouterr()
    caviar.babysit(raw, name="quiet", out=out, quiet=True)
    assert capsys.readouterr().out == ""


def test_babysit_takes_a_data_function_and_a_regression_task(tmp_path):
    run = caviar.babysit({"model": {"task": "regression", "hidden_layers": [8]}, "babysit": {"epochs": 2},
                          "search": {"metric": "val_mse", "mode": "min"}},
                         data="tests.data_functions:line", name="line", out=tmp_path, quiet=True)
    assert run.job["data"]["source"] == "tests.data_functions:line"
    assert {"val_mse", "val_r2"} <= set(run.epochs.columns) and len(run.epochs) == 2


def test_bad_input_is_a_value_error_and_writes_nothing(tmp_path):
    with pytest.raises(ValueError, match=r"^babysit.metric: the mlp trainer reports val_mse"):
        caviar.babysit({"model": {"task": "regression"}, "data": {"source": "caviar.sources:friedman"},
                        "search": {"metric": "val_mse"}, "babysit": {"metric": "val_accuracy"}}, out=tmp_path)
    with pytest.raises(ValueError, match=r"^--resume: there is no run 'nothing'"):
        caviar.babysit(None, name="nothing", resume=True, out=tmp_path)
    assert list(tmp_path.iterdir()) == []
