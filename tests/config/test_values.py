"""The checks of single values: what counts as a number (never a bool), the number and integer rules
at their edges (inf, nan, integers too large for a float), the one-line message `checked` gives, the
"did you mean" of `one_of`, and `plain`, which turns NumPy and tuples into the types TOML knows."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from caviar.config.values import (Expected, above_one, checked, fraction_closed, integer, is_number, non_negative,
                                  number, one_of, plain, positive, string)


def message(path, value, check) -> str:
    with pytest.raises(ValueError) as info:
        checked(path, value, check)
    return str(info.value)


# --- is_number ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [0, 1, -7, 0.5, math.inf, math.nan, 10**400, np.int64(3), np.int8(-1),
                                   np.float32(0.5), np.float64(2.0), np.uint16(4), Fraction(1, 3)])
def test_is_number_accepts_real_numbers_including_numpy_scalars(value):
    assert is_number(value)


@pytest.mark.parametrize("value", [True, False, np.bool_(True), np.bool_(False), "3", None, [1], 1 + 2j,
                                   np.array([1.0])])
def test_is_number_rejects_bools_text_and_containers(value):
    assert not is_number(value)


# --- number ---------------------------------------------------------------------------------------------

ANY = number("a number", lambda v: True)
ANY_INTEGER = number("an integer", lambda v: True, integer=True)


@pytest.mark.parametrize("value", [0, 3, -2.5, np.float32(0.25), np.int64(9), 1e308])
def test_number_gives_a_python_float(value):
    result = ANY(value)
    assert type(result) is float and result == float(value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, np.float64(np.inf), np.float32(np.nan), 10**400,
                                   -(10**400), True, np.bool_(False), "1", None])
def test_number_refuses_non_finite_huge_and_non_numbers(value):
    with pytest.raises(Expected) as info:
        ANY(value)
    assert info.value.what == "a number"


def test_number_applies_its_condition():
    above_two = number("a number > 2", lambda v: v > 2)
    assert above_two(3) == 3.0
    with pytest.raises(Expected):
        above_two(2)


@pytest.mark.parametrize("value", [0, -5, 7, 2**62, np.int64(3), np.uint8(200), 10**400])
def test_number_with_integer_gives_a_python_int_for_integers(value):
    result = ANY_INTEGER(value)
    assert type(result) is int and result == int(value)


@pytest.mark.parametrize("value", [3.0, 3.5, math.inf, math.nan, np.float64(4.0), True, np.bool_(True), "3"])
def test_number_with_integer_refuses_floats_even_whole_ones_and_bools(value):
    with pytest.raises(Expected):
        ANY_INTEGER(value)


# --- integer --------------------------------------------------------------------------------------------


def test_integer_bounds_are_minimum_up_to_int64():
    assert positive(1) == 1 and non_negative(0) == 0
    assert positive(2**63 - 1) == 2**63 - 1
    assert integer(2)(2) == 2
    for check, value in ((positive, 0), (non_negative, -1), (positive, 2**63), (integer(2), 1)):
        with pytest.raises(Expected):
            check(value)


@pytest.mark.parametrize("value", [10**400, -(10**400), 2**64])
def test_huge_integers_are_refused_without_overflow(value):
    text = message("search.seed", value, non_negative)
    assert text.startswith("search.seed: expected a non-negative integer, got " + str(value)[:20])
    with pytest.raises(Expected):
        fraction_closed(value)  # the float rules too: math.isfinite(10**400) would overflow


def test_integer_names_its_range_in_words():
    assert message("search.trials", -3, positive) == "search.trials: expected a positive integer, got -3"
    assert message("search.seed", -1, non_negative) == "search.seed: expected a non-negative integer, got -1"
    assert message("search.grid_points", 1, integer(2)) == "search.grid_points: expected an integer >= 2, got 1"
    assert message("x", -9, integer(-4)) == "x: expected an integer >= -4, got -9"


# --- checked --------------------------------------------------------------------------------------------


def test_checked_returns_the_normalized_value():
    assert checked("search.trials", np.int64(8), positive) == 8
    assert type(checked("search.trials", np.int64(8), positive)) is int
    assert checked("search.shrink", 1, fraction_closed) == 1.0


@pytest.mark.parametrize("value, shown", [
    (True, "true"),
    (8.0, "8.0"),
    ("8", "'8'"),
    (math.nan, "nan"),
    ([8], "[8]"),
    ({"choice": [1, 2]}, "{ choice = [1, 2] }"),
    (np.float64(2.5), "2.5"),
])
def test_checked_message_is_path_expected_what_got_the_value_as_written(value, shown):
    assert message("search.trials", value, positive) == f"search.trials: expected a positive integer, got {shown}"


def test_checked_message_is_one_line_and_not_chained():
    with pytest.raises(ValueError) as info:
        checked("model.note", "two\nlines", positive)
    assert "\n" not in str(info.value)
    assert info.value.__cause__ is None and info.value.__suppress_context__


def test_checked_raises_a_plain_value_error_not_the_internal_expected():
    with pytest.raises(ValueError) as info:
        checked("search.trials", 0, positive)
    assert type(info.value) is ValueError


def test_checked_lets_other_errors_of_a_check_through():
    def broken(value):
        raise KeyError("not a check failure")

    with pytest.raises(KeyError):
        checked("x", 1, broken)


def test_checked_cuts_a_very_long_value():
    text = message("name", "x" * 1000, positive)
    assert text.startswith("name: expected a positive integer, got 'xxx")
    assert text.endswith("...")
    assert len(text) == len("name: expected a positive integer, got ") + 120


# --- the shared rules ----------------------------------------------------------------------------------


def test_fraction_closed_is_zero_excluded_one_included():
    assert fraction_closed(1) == 1.0 and fraction_closed(0.25) == 0.25
    assert message("search.keep_fraction", 0, fraction_closed) == \
        "search.keep_fraction: expected a fraction in (0, 1], got 0"
    assert message("search.shrink", 1.5, fraction_closed) == "search.shrink: expected a fraction in (0, 1], got 1.5"
    assert message("search.shrink", True, fraction_closed) == "search.shrink: expected a fraction in (0, 1], got true"


def test_above_one_is_strictly_above_one_and_finite():
    assert above_one(3) == 3.0 and above_one(1.5) == 1.5
    for value in (1, 0.5, math.inf, math.nan):
        with pytest.raises(Expected):
            above_one(value)


# --- string and one_of ---------------------------------------------------------------------------------


def test_string_refuses_blank_text_and_non_strings_by_default():
    text = string("a metric name")
    assert text("val_loss") == "val_loss"
    assert message("search.metric", "  ", text) == "search.metric: expected a metric name, got '  '"
    assert message("search.metric", 3, text) == "search.metric: expected a metric name, got 3"


def test_one_of_accepts_exactly_its_options():
    check = one_of(("fifo", "asha"))
    assert check("fifo") == "fifo" and check("asha") == "asha"
    for value in ("FIFO", " asha", "pbt", 1, None, ["fifo"]):
        with pytest.raises(Expected):
            check(value)


def test_one_of_lists_the_options_and_suggests_the_closest():
    check = one_of(("fifo", "asha"))
    assert message("search.scheduler", "ash", check) == \
        "search.scheduler: expected one of fifo, asha, got 'ash' (did you mean 'asha'?)"
    assert message("search.scheduler", "pbt", check) == "search.scheduler: expected one of fifo, asha, got 'pbt'"
    assert message("search.scheduler", 3, check) == "search.scheduler: expected one of fifo, asha, got 3"


# --- plain ----------------------------------------------------------------------------------------------


def test_plain_turns_numpy_scalars_into_python_ones():
    for value, expected, kind in ((np.float32(0.5), 0.5, float), (np.int64(3), 3, int), (np.bool_(True), True, bool),
                                  (np.str_("relu"), "relu", str)):
        result = plain(value)
        assert result == expected and type(result) is kind


def test_plain_turns_tuples_and_arrays_into_lists_recursively():
    result = plain((1, (np.int64(2), np.array([[1.5, 2.5]], dtype=np.float32))))
    assert result == [1, [2, [[1.5, 2.5]]]]
    assert type(result[1][0]) is int and type(result[1][1][0][0]) is float


def test_plain_turns_mappings_into_dicts_with_string_keys():
    from types import MappingProxyType

    result = plain(MappingProxyType({1: {"x": (np.float64(1.0),)}, "y": True}))
    assert result == {"1": {"x": [1.0]}, "y": True}
    assert type(result) is dict and type(result["1"]) is dict


def test_plain_leaves_python_values_alone():
    assert plain("text") == "text" and plain(None) is None and plain(2) == 2
    assert plain([]) == [] and plain({}) == {}


def test_plain_does_not_mutate_its_argument():
    value = {"a": [np.int64(1)], "b": (2,)}
    plain(value)
    assert type(value["a"][0]) is np.int64 and value["b"] == (2,)


def test_plain_turns_a_zero_dimensional_array_into_its_scalar():
    # np.asarray(0.5), or a scalar loaded from an .npz, is an array with no axes: it holds one number,
    # which TOML can store; plain must not fail iterating over it.
    result = plain(np.array(0.5))
    assert result == 0.5 and type(result) is float
    assert plain({"lr": np.asarray(3)}) == {"lr": 3}
