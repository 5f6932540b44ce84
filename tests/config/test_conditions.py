"""Conditional dimensions in [space]: the `when` syntax, what a bad one says (one line naming the field,
exit status 2 before anything runs), which dimensions a config keeps, and the job as run."""

from __future__ import annotations

import numpy as np
import pytest

from caviar.config.conditions import active_only, topological_order
from caviar.config.job import parse_job
from tests.support import caviar_output, write_job

SPACE = """
[space]
learning_rate = { log_uniform = [1e-4, 1e-1] }
optimizer = { choice = ["sgd", "momentum", "rmsprop", "adam"] }
layers = { int_uniform = [1, 3] }
beta2 = { one_minus_log_uniform = [0.99, 0.9999], when = { optimizer = ["adam", "rmsprop"] } }
momentum = { one_minus_log_uniform = [0.8, 0.99], when = { optimizer = "momentum" } }
width2 = { int_log_uniform = [8, 256], when = { layers = [2, 3] } }
width3 = { int_log_uniform = [8, 256], when = { layers = 3, width2 = [8, 9, 10] } }
"""


def test_a_dimension_exists_only_where_its_parents_take_the_listed_values():
    space = parse_job(SPACE).space
    assert space.conditions["momentum"] == {"optimizer": ("momentum",)}   # one value is a list of one
    configs = [space.from_unit(u) for u in np.random.default_rng(0).random((400, len(space)))]
    for c in configs:
        assert ("beta2" in c) == (c["optimizer"] in ("adam", "rmsprop"))
        assert ("momentum" in c) == (c["optimizer"] == "momentum")
        assert ("width2" in c) == (c["layers"] >= 2)
        assert ("width3" in c) == (c["layers"] == 3 and c.get("width2") in (8, 9, 10))   # every parent, active
    assert any("width3" in c for c in configs)


def test_an_inactive_parent_makes_its_children_inactive_whatever_order_they_are_written_in():
    conditions = {"b": {"a": (1,)}, "c": {"b": (2,)}}
    order = topological_order(["c", "b", "a"], conditions)
    assert order == ("a", "b", "c")
    assert active_only({"c": 5, "b": 2, "a": 0}, order, conditions) == {"a": 0}   # a != 1: b and c gone
    assert active_only({"c": 5, "b": 2, "a": 1}, order, conditions) == {"c": 5, "b": 2, "a": 1}


def test_the_job_as_run_keeps_the_conditions_and_reads_back_equal():
    job = parse_job(SPACE)
    raw = job.to_raw()
    assert raw["space"]["beta2"] == {"one_minus_log_uniform": [0.99, 0.9999], "when": {"optimizer": ["adam", "rmsprop"]}}
    assert parse_job(job.to_toml()) == job
    fixed = parse_job('[space]\na = { choice = [1, 2] }\nb = { fixed = 0.5, when = { a = 2 } }\n')
    assert fixed.space.fixed == {} and parse_job(fixed.to_toml()) == fixed
    assert {fixed.space.from_unit([u]).get("b") for u in (0.1, 0.9)} == {None, 0.5}


def test_a_parent_of_lists_lists_lists():
    job = parse_job('[space]\nhidden = { choice = [[64], [64, 64]] }\n'
                    'width = { int_uniform = [8, 64], when = { hidden = [[64, 64]] } }\n')
    assert [("width" in job.space.from_unit([u, 0.5])) for u in (0.2, 0.8)] == [False, True]


BAD = [
    ('beta2 = { uniform = [0, 1], when = { optimiser = ["adam"] } }',
     "space.beta2.when.optimiser: unknown parent: not a [space] dimension (did you mean 'optimizer'?)"),
    ('beta2 = { uniform = [0, 1], when = { optimizer = ["adamw"] } }',
     "space.beta2.when.optimizer: 'adamw' is not one of choice ['sgd', 'adam']"),
    ('beta2 = { uniform = [0, 1], when = { layers = [4] } }', "space.beta2.when.layers: 4 is outside int_uniform [1, 3]"),
    ('beta2 = { uniform = [0, 1], when = { learning_rate = [0.01] } }',
     "space.beta2.when.learning_rate: a parent must be a choice, an integer range or a fixed value"),
    ('a = { choice = [1, 2], when = { b = [1] } }\nb = { choice = [1, 2], when = { a = [1] } }',
     "space.a.when: a cycle: a -> b -> a"),
    ('beta2 = { uniform = [0, 1], when = { beta2 = [1] } }', "space.beta2.when.beta2: a dimension cannot be its own parent"),
    ('beta2 = { uniform = [0, 1], when = ["adam"] }', "space.beta2.when: expected a table of parent = [values]"),
    ('beta2 = { uniform = [0, 1], when = { optimizer = [] } }', "space.beta2.when.optimizer: expected at least one value"),
]


@pytest.mark.parametrize("line, message", BAD)
def test_a_bad_condition_is_one_line_naming_the_field_and_exit_status_2(tmp_path, capsys, line, message):
    job = write_job(tmp_path, text='[space]\nlearning_rate = { log_uniform = [1e-4, 1e-1] }\n'
                                   'optimizer = { choice = ["sgd", "adam"] }\nlayers = { int_uniform = [1, 3] }\n'
                                   f'{line}\n')
    status, out, err = caviar_output(capsys, "parallel", job, "--dry-run", "--out", tmp_path / "out")
    assert status == 2 and out == ""
    assert err.count("\n") == 1 and err.startswith(f"caviar parallel: error: {message}")
    assert not (tmp_path / "out").exists()


def test_a_dry_run_shows_an_inactive_dimension_as_empty(tmp_path, capsys):
    job = write_job(tmp_path, text='[model]\ntrainer = "tests.search_toys:JitterTrainer"\n' + SPACE
                    + '[search]\nsampler = "random"\ntrials = 12\n')
    status, out, _ = caviar_output(capsys, "parallel", job, "--dry-run")
    assert status == 0 and "sampler random: " in out
    rows = [line.split() for line in out.splitlines() if line.split() and line.split()[0].isdigit()]
    assert len(rows) == 12
    header = next(line.split() for line in out.splitlines() if line.startswith("trial"))
    for row in rows:
        cell = dict(zip(header, row))
        assert (cell["beta2"] == "-") == (cell["optimizer"] not in ("adam", "rmsprop"))
