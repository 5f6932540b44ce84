"""Search-space dimensions: the scales a user asks for are the scales values are drawn on."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from caviar.search.samplers import make_sampler
from caviar.config.space import (
    Choice,
    Fixed,
    IntLogUniform,
    IntUniform,
    LogUniform,
    OneMinusLogUniform,
    SearchSpace,
    Uniform,
    parse_dimension,
)

BELOW_ONE = math.nextafter(1.0, 0.0)


def draws(spec, n=5000, seed=0):
    """n values of one dimension, drawn the way a sweep draws them (random sampler, trial by trial)."""
    space = SearchSpace({"x": parse_dimension(spec)})
    sampler = make_sampler("random", space, n_trials=n, seed=seed)
    return [sampler.ask(k)["x"] for k in range(n)]


# --- distributions ---------------------------------------------------------------------------------


def test_log_uniform_is_uniform_in_log10():
    values = np.array(draws({"log_uniform": [1e-4, 1e-1]}))
    assert values.min() >= 1e-4 and values.max() <= 1e-1
    assert stats.kstest(np.log10(values), "uniform", args=(-4, 3)).pvalue > 0.01
    # and not uniform in the value itself: a linear draw would put ~90% above 1e-2, log puts ~1/3
    assert stats.kstest(values, "uniform", args=(1e-4, 1e-1 - 1e-4)).pvalue < 1e-6
    assert 0.30 < np.mean(values > 1e-2) < 0.37


def test_one_minus_log_uniform_gives_each_decade_of_beta_equal_room():
    values = np.array(draws({"one_minus_log_uniform": [0.9, 0.999]}))
    assert values.min() >= 0.9 and values.max() <= 0.999
    assert stats.kstest(np.log10(1 - values), "uniform", args=(-3, 2)).pvalue > 0.01
    # 0.9 -> 0.99 and 0.99 -> 0.999 each get about half the draws
    assert 0.47 < np.mean(values < 0.99) < 0.53


def test_uniform_is_uniform():
    values = np.array(draws({"uniform": [-2.0, 3.0]}))
    assert stats.kstest(values, "uniform", args=(-2, 5)).pvalue > 0.01


def test_integer_bounds_are_inclusive():
    values = draws({"int_uniform": [1, 5]}, n=2000)
    assert set(values) == {1, 2, 3, 4, 5}
    assert all(type(v) is int for v in values)
    counts = np.bincount(values)[1:]
    assert stats.chisquare(counts).pvalue > 0.01  # equally likely, the ends too

    values = draws({"int_log_uniform": [2, 64]}, n=3000)
    assert min(values) == 2 and max(values) == 64
    assert all(type(v) is int for v in values)
    # log scale: as many draws in 2..8 as in 16..64 (roughly), far more than a linear draw would give
    assert 0.7 < sum(2 <= v <= 8 for v in values) / sum(16 <= v <= 64 for v in values) < 1.4


def test_every_choice_appears_with_its_own_type():
    assert set(draws({"choice": [32, 64, 128, 256]}, n=500)) == {32, 64, 128, 256}
    assert set(draws({"choice": ["relu", "tanh"]}, n=200)) == {"relu", "tanh"}
    flags = draws({"choice": [True, False]}, n=200)
    assert set(flags) == {True, False} and all(type(v) is bool for v in flags)
    layers = draws({"choice": [[64], [64, 64], [128, 128, 128]]}, n=300)
    assert {tuple(v) for v in layers} == {(64,), (64, 64), (128, 128, 128)}
    assert all(type(v) is list for v in layers)


def test_values_are_python_scalars_of_the_right_type():
    space = SearchSpace({
        "u": Uniform(0, 1), "lr": LogUniform(1e-4, 1e-1), "b": OneMinusLogUniform(0.9, 0.999),
        "n": IntUniform(1, 9), "h": IntLogUniform(16, 512), "act": Choice(("relu", "tanh")),
        "bn": Choice((True, False)), "epochs": Fixed(20),
    })
    config = space.from_unit(np.full(len(space), 0.37))
    assert {k: type(v) for k, v in config.items()} == {
        "u": float, "lr": float, "b": float, "n": int, "h": int, "act": str, "bn": bool, "epochs": int}


def test_ints_mixed_with_floats_in_a_choice_become_floats():
    dim = parse_dimension({"choice": [0, 1e-4, 1e-2]})
    assert dim.values == (0.0, 1e-4, 1e-2) and all(type(v) is float for v in dim.values)
    assert dim.to_unit(0) == dim.to_unit(0.0)


def test_a_choice_of_lists_hands_out_fresh_copies():
    dim = Choice(([64], [64, 64]))
    first = dim.from_unit(0.0)
    first.append(999)
    assert dim.from_unit(0.0) == [64]


# --- the unit interval -------------------------------------------------------------------------------

positive = st.floats(1e-12, 1e12)
betas = st.floats(1e-6, 1 - 1e-9)
units = st.floats(0.0, 1.0)


def bounded_pair(values):
    return st.tuples(values, values).filter(lambda p: p[0] < p[1] and p[1] / p[0] > 1 + 1e-9)


@settings(max_examples=200, deadline=None)
@given(bounds=bounded_pair(positive), u=units)
def test_log_uniform_stays_inside_bounds_and_round_trips(bounds, u):
    dim = LogUniform(*bounds)
    value = dim.from_unit(u)
    assert dim.low <= value <= dim.high
    assert 0.0 <= dim.to_unit(value) < 1.0
    assert dim.to_unit(value) == pytest.approx(min(u, BELOW_ONE), abs=1e-6)
    for edge in (0.0, BELOW_ONE, 1.0):  # where float rounding would push 10 ** log10(x) outside
        assert dim.low <= dim.from_unit(edge) <= dim.high


@settings(max_examples=200, deadline=None)
@given(bounds=st.tuples(betas, betas).filter(lambda p: p[0] < p[1] and (1 - p[0]) / (1 - p[1]) > 1 + 1e-6), u=units)
def test_one_minus_log_uniform_stays_inside_bounds_and_round_trips(bounds, u):
    dim = OneMinusLogUniform(*bounds)
    value = dim.from_unit(u)
    assert dim.low <= value <= dim.high
    assert dim.to_unit(value) == pytest.approx(min(u, BELOW_ONE), abs=1e-5)
    for edge in (0.0, BELOW_ONE, 1.0):
        assert dim.low <= dim.from_unit(edge) <= dim.high


@settings(max_examples=200, deadline=None)
@given(bounds=st.tuples(st.floats(-1e6, 1e6), st.floats(-1e6, 1e6)).filter(lambda p: p[1] - p[0] > 1e-3), u=units)
def test_uniform_round_trips(bounds, u):
    dim = Uniform(*bounds)
    value = dim.from_unit(u)
    assert dim.low <= value <= dim.high
    assert dim.to_unit(value) == pytest.approx(min(u, BELOW_ONE), abs=1e-6)


@settings(max_examples=200, deadline=None)
@given(low=st.integers(1, 10**6), span=st.integers(1, 10**6), u=units, log=st.booleans())
def test_integer_dims_round_trip_exactly(low, span, u, log):
    dim = (IntLogUniform if log else IntUniform)(low, low + span)
    value = dim.from_unit(u)
    assert type(value) is int and dim.low <= value <= dim.high
    assert 0.0 <= dim.to_unit(value) < 1.0
    assert dim.from_unit(dim.to_unit(value)) == value
    assert dim.from_unit(0.0) == dim.low and dim.from_unit(BELOW_ONE) == dim.high


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.integers(-100, 100), st.text(max_size=4)), min_size=1, max_size=8, unique=True)
       .filter(lambda vs: len({type(v) for v in vs}) == 1), u=units)
def test_choice_round_trips_exactly(values, u):
    dim = Choice(tuple(values))
    value = dim.from_unit(u)
    assert value in values
    assert dim.from_unit(dim.to_unit(value)) == value


def test_values_outside_a_dimension_are_refused_by_to_unit():
    with pytest.raises(ValueError, match=r"0.5 is outside log_uniform \[0.0001, 0.1\]"):
        LogUniform(1e-4, 1e-1).to_unit(0.5)
    with pytest.raises(ValueError, match="int_uniform takes integers"):
        IntUniform(1, 5).to_unit(2.5)
    with pytest.raises(ValueError, match="'sigmoid' is not one of choice"):
        Choice(("relu", "tanh")).to_unit("sigmoid")
    with pytest.raises(ValueError, match="not one of choice"):
        Choice((1, 2)).to_unit(True)  # True == 1 to Python, not to a user


def test_grid_units_follow_each_scale():
    log = LogUniform(1e-4, 1e-1)
    assert [log.from_unit(u) for u in log.grid_units(4)] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    beta = OneMinusLogUniform(0.9, 0.999)
    assert [beta.from_unit(u) for u in beta.grid_units(3)] == pytest.approx([0.9, 0.99, 0.999])
    assert Uniform(0, 1).grid_units(1) == (0.5,)
    small = IntUniform(1, 3)  # fewer values than grid points: each value once
    assert [small.from_unit(u) for u in small.grid_units(10)] == [1, 2, 3]
    sizes = IntLogUniform(1, 1000)
    assert [sizes.from_unit(u) for u in sizes.grid_units(4)] == [1, 10, 100, 1000]
    assert len(Choice(("a", "b", "c")).grid_units(2)) == 3  # a choice gives all its values


# --- the job-file form ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [
    {"uniform": [-1.0, 1.0]}, {"log_uniform": [1e-4, 0.1]}, {"one_minus_log_uniform": [0.9, 0.999]},
    {"int_uniform": [1, 10]}, {"int_log_uniform": [16, 512]}, {"choice": [32, 64]},
    {"choice": ["relu", "tanh"]}, {"choice": [[64], [64, 64]]}, 20, "adam", [64, 64], True,
    {"fixed": {"a": 1}},
])
def test_spec_round_trips(spec):
    dim = parse_dimension(spec)
    assert dim.spec() == spec
    assert parse_dimension(dim.spec()) == dim


def test_plain_values_are_fixed():
    assert parse_dimension(0.001) == Fixed(0.001)
    assert parse_dimension([64, 64]).from_unit(0.3) == [64, 64]


def test_integral_float_bounds_are_accepted_for_int_dims():
    dim = parse_dimension({"int_log_uniform": [16, 1e3]})
    assert (dim.low, dim.high) == (16, 1000) and type(dim.high) is int


@pytest.mark.parametrize(("spec", "message"), [
    ({"log_uniform": [0, 0.1]}, "log_uniform needs 0 < low < high, got [0, 0.1]"),
    ({"log_uniform": [0.1, 1e-4]}, "log_uniform needs 0 < low < high, got [0.1, 0.0001]"),
    ({"one_minus_log_uniform": [0.9, 1.0]}, "one_minus_log_uniform needs 0 < low < high < 1, got [0.9, 1.0]"),
    ({"one_minus_log_uniform": [0.0, 0.9]}, "one_minus_log_uniform needs 0 < low < high < 1, got [0.0, 0.9]"),
    ({"uniform": [1, 1]}, "uniform needs low < high, got [1, 1]"),
    ({"int_log_uniform": [0, 8]}, "int_log_uniform needs 0 < low < high, got [0, 8]"),
    ({"log_uniform": [1e-4]}, "log_uniform needs [low, high], got [0.0001]"),
    ({"uniform": [0, 1, 2]}, "uniform needs [low, high], got [0, 1, 2]"),
    ({"uniform": 0.5}, "uniform needs [low, high], got 0.5"),
    ({"uniform": ["a", 1]}, "uniform bounds must be numbers, got ['a', 1]"),
    ({"int_uniform": [True, 4]}, "int_uniform bounds must be numbers, not true/false, got [true, 4]"),
    ({"uniform": [0, float("inf")]}, "uniform bounds must be finite, got [0, inf]"),
    ({"int_uniform": [1.5, 4]}, "int_uniform bounds must be integers, got [1.5, 4]"),
    ({"choice": []}, "choice needs at least one value, got []"),
    ({"choice": "relu"}, "choice needs a list of values, got 'relu'"),
    ({"choice": [32, "auto"]}, "choice values must all be of one type, got [32, 'auto'] (int and str)"),
    ({"choice": [32, 64, 32]}, "choice has 32 twice in [32, 64, 32]"),
    ({"choice": [{"a": 1}]}, "choice values must be numbers, strings, booleans or lists"),
    ({}, "a dimension needs exactly one kind"),
    ({"uniform": [0, 1], "log_uniform": [1, 2]}, "got uniform and log_uniform"),
    ({"loguniform": [1e-4, 1e-1]}, "unknown kind 'loguniform' (did you mean 'log_uniform'?)"),
    ({"LogUniform": [1e-4, 1e-1]}, "(did you mean 'log_uniform'?)"),
    ({"int_loguniform": [1, 8]}, "(did you mean 'int_log_uniform'?)"),
    ({"categorical": [1, 2]}, "(did you mean 'choice'?)"),
    ({"chioce": [1, 2]}, "(did you mean 'choice'?)"),
])
def test_bad_specs_say_what_was_wrong(spec, message):
    with pytest.raises(ValueError) as info:
        parse_dimension(spec)
    assert message in str(info.value)


def test_a_value_reads_the_same_in_a_dimension_error_as_in_any_other_job_error():
    """job.py puts "space.<name>: " before these messages: a value must look as it does everywhere else."""
    from caviar.config.job import parse_job

    for value in ("relu", [32, "auto"], np.float64(0.5), np.str_("tanh"), True):
        with pytest.raises(ValueError) as in_space:
            parse_dimension({"uniform": value})
        with pytest.raises(ValueError) as in_search:
            parse_job({"search": {"sampler": value}})
        shown = str(in_search.value).rpartition(", got ")[2]
        assert str(in_space.value).endswith(f", got {shown}"), (str(in_space.value), shown)


def test_unknown_kind_without_a_near_miss_lists_the_kinds():
    with pytest.raises(ValueError, match="unknown kind 'banana'; valid kinds: uniform, log_uniform"):
        parse_dimension({"banana": [1, 2]})


def test_dimensions_validate_when_built_directly():
    with pytest.raises(ValueError, match=r"log_uniform needs 0 < low < high, got \[-1.0, 1.0\]"):
        LogUniform(-1.0, 1.0)
    with pytest.raises(ValueError, match="choice needs at least one value"):
        Choice(())


# --- the search space -----------------------------------------------------------------------------------


def test_search_space_unit_cube_spans_only_searched_dims():
    space = SearchSpace({name: parse_dimension(spec) for name, spec in {
        "learning_rate": {"log_uniform": [1e-4, 1e-1]}, "epochs": 5,
        "beta1": {"one_minus_log_uniform": [0.9, 0.999]}, "optimizer": "adam",
    }.items()})
    assert space.names == ("learning_rate", "beta1") and len(space) == 2
    assert space.fixed == {"epochs": 5, "optimizer": "adam"}
    config = space.from_unit(np.array([0.0, BELOW_ONE]))
    assert list(config) == ["learning_rate", "epochs", "beta1", "optimizer"]  # the order given
    assert config == {"learning_rate": pytest.approx(1e-4), "epochs": 5, "beta1": pytest.approx(0.999),
                      "optimizer": "adam"}
    np.testing.assert_allclose(space.to_unit(config), [0.0, BELOW_ONE])
    assert space.spec()["epochs"] == 5
    assert SearchSpace({n: parse_dimension(s) for n, s in space.spec().items()}) == space


def test_search_space_refuses_wrong_shapes_and_missing_values():
    space = SearchSpace({"lr": LogUniform(1e-4, 1e-1)})
    with pytest.raises(ValueError, match=r"shape \(1,\), got shape \(2,\)"):
        space.from_unit(np.array([0.1, 0.2]))
    with pytest.raises(ValueError, match="lacks searched value"):
        space.to_unit({"epochs": 3})


def test_a_space_of_fixed_values_only_has_no_axes():
    space = SearchSpace({"epochs": Fixed(3)})
    assert len(space) == 0 and space.from_unit(np.zeros(0)) == {"epochs": 3}
