"""How a field and a value read in an error message: TOML-style field paths, values shown on one line
as the user wrote them (and cut when very long), and the "did you mean" / "valid: ..." hints."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar.config.messages import did_you_mean, field_path, one_line, reject_unknown, show_value

# --- field_path ----------------------------------------------------------------------------------


def test_field_path_joins_bare_keys_with_dots():
    assert field_path(("search", "trials")) == "search.trials"
    assert field_path(("data", "options", "n_per_class")) == "data.options.n_per_class"
    assert field_path(("space", "lr-2", "Beta1")) == "space.lr-2.Beta1"


def test_field_path_of_a_single_key_and_of_none():
    assert field_path(("name",)) == "name"
    assert field_path(()) == ""


@pytest.mark.parametrize("key, written", [
    ("a b", '"a b"'),
    ("a.b", '"a.b"'),
    ("", '""'),
    ('say "hi"', '"say \\"hi\\""'),
    ("naïve", '"na\\u00efve"'),
])
def test_field_path_quotes_keys_that_are_not_bare_as_toml_does(key, written):
    assert field_path(("space", key)) == f"space.{written}"


def test_field_path_stays_on_one_line_for_a_key_with_a_newline():
    path = field_path(("space", "two\nlines"))
    assert "\n" not in path
    assert path == 'space."two\\nlines"'


# --- show_value ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value, shown", [
    (True, "true"),
    (False, "false"),
    (3, "3"),
    (0.1, "0.1"),
    (-3, "-3"),
    (None, "None"),
])
def test_show_value_writes_scalars_as_in_toml(value, shown):
    assert show_value(value) == shown


def test_show_value_writes_non_finite_floats_as_toml_does():
    assert show_value(math.nan) == "nan"
    assert show_value(math.inf) == "inf"
    assert show_value(-math.inf) == "-inf"


def test_show_value_quotes_strings_so_text_and_numbers_differ():
    assert show_value("pbt") == "'pbt'"
    assert show_value("3") == "'3'"
    assert show_value("") == "''"
    assert show_value("3") != show_value(3)


def test_show_value_keeps_a_multi_line_string_on_one_line():
    shown = show_value("first\nsecond")
    assert "\n" not in shown
    assert "first" in shown and "second" in shown


def test_show_value_writes_lists_and_tuples_as_toml_arrays():
    assert show_value([0, 0.1]) == "[0, 0.1]"
    assert show_value((32, 64)) == "[32, 64]"
    assert show_value([]) == "[]"
    assert show_value([True, "relu", [1, 2]]) == "[true, 'relu', [1, 2]]"


def test_show_value_writes_tables_as_inline_tables():
    assert show_value({"choice": [1, 2]}) == "{ choice = [1, 2] }"
    assert show_value({"log_uniform": [1e-4, 0.1], "extra": True}) == "{ log_uniform = [0.0001, 0.1], extra = true }"
    assert show_value({}) == "{}"


def test_show_value_quotes_non_bare_keys_of_a_table():
    assert show_value({"a b": 1, "c": {"d.e": "x"}}) == "{ \"a b\" = 1, c = { \"d.e\" = 'x' } }"


@pytest.mark.parametrize("value, shown", [
    (np.bool_(True), "true"),
    (np.bool_(False), "false"),
    (np.int64(7), "7"),
    (np.int32(-2), "-2"),
    (np.float64(0.25), "0.25"),
    (np.float32(0.5), "0.5"),
    (np.float64(np.nan), "nan"),
    (np.str_("adam"), "'adam'"),
])
def test_show_value_writes_numpy_scalars_as_the_python_values_they_hold(value, shown):
    assert show_value(value) == shown


def test_show_value_writes_numpy_scalars_inside_containers_plainly():
    assert show_value([np.int64(1), np.bool_(False)]) == "[1, false]"
    assert show_value({"x": np.float64(2.5)}) == "{ x = 2.5 }"


def test_show_value_cuts_a_very_long_value_at_the_limit_with_an_ellipsis():
    shown = show_value("x" * 500)
    assert len(shown) == 120
    assert shown.endswith("...")
    assert shown.startswith("'xxx")

    long_list = list(range(1000))
    cut = show_value(long_list, limit=40)
    assert len(cut) == 40
    assert cut.startswith("[0, 1, 2, ") and cut.endswith("...")


def test_show_value_keeps_a_value_exactly_at_the_limit_whole():
    text = "y" * 118  # shown with its two quotes: exactly 120 characters
    assert show_value(text) == repr(text)
    assert len(show_value(text)) == 120
    assert show_value("y" * 119).endswith("...")


def test_show_value_of_a_long_table_is_one_line_within_the_limit():
    table = {f"key{i}": "value " * 10 for i in range(50)}
    shown = show_value(table, limit=200)
    assert len(shown) == 200 and "\n" not in shown
    assert shown.startswith("{ key0 = 'value value")


def test_show_value_of_another_object_uses_its_text_on_one_line():
    class Thing:
        def __str__(self) -> str:
            return "a\n  multi-line\tthing"

    assert show_value(Thing()) == "a multi-line thing"


# --- one_line -----------------------------------------------------------------------------------


def test_one_line_turns_every_run_of_whitespace_into_one_space():
    assert one_line("search.trials:\n  expected\t\ta number") == "search.trials: expected a number"
    assert one_line("  padded  ") == "padded"
    assert one_line(ValueError("bad\nvalue")) == "bad value"
    assert one_line(42) == "42"


def test_one_line_of_something_with_no_text_names_its_type():
    assert one_line(ValueError()) == "ValueError"
    assert one_line("   ") == "str"


# --- did_you_mean ---------------------------------------------------------------------------------


def test_did_you_mean_suggests_the_closest_option():
    assert did_you_mean("trails", ["trials", "seed", "metric"]) == " (did you mean 'trials'?)"
    assert did_you_mean("sobel", ("random", "grid", "sobol", "coarse_to_fine")) == " (did you mean 'sobol'?)"


def test_did_you_mean_is_empty_when_nothing_is_close():
    assert did_you_mean("zzzz", ["trials", "seed"]) == ""
    assert did_you_mean("trials", []) == ""


# --- reject_unknown --------------------------------------------------------------------------------


def reject_message(table, known, path, **kwargs) -> str:
    with pytest.raises(ValueError) as info:
        reject_unknown(table, known, path, **kwargs)
    return str(info.value)


def test_reject_unknown_accepts_a_table_of_known_keys():
    reject_unknown({"trials": 8, "seed": 0}, ("trials", "seed", "metric"), ("search",))
    reject_unknown({}, (), ("search",))


def test_reject_unknown_names_the_field_and_suggests_a_close_key():
    message = reject_message({"trails": 8}, ("trials", "seed"), ("search",))
    assert message == "search.trails: unknown key (did you mean 'trials'?)"


def test_reject_unknown_lists_the_valid_keys_when_nothing_is_close():
    message = reject_message({"zzz": 1}, ("trials", "seed", "metric"), ("search",))
    assert message == "search.zzz: unknown key (valid: trials, seed, metric)"


def test_reject_unknown_lists_the_valid_keys_and_the_suggestion_when_asked():
    message = reject_message({"grid_pts": 3}, ("grid_points", "rounds"), ("search",), what="sampler option",
                             list_valid=True)
    assert message == ("search.grid_pts: unknown sampler option "
                       "(did you mean 'grid_points'?; valid: grid_points, rounds)")


def test_reject_unknown_says_none_are_valid_for_an_empty_vocabulary():
    assert reject_message({"x": 1}, (), ("data", "options")) == "data.options.x: unknown key (valid: none)"


def test_reject_unknown_reports_the_first_unknown_key_and_quotes_it_when_not_bare():
    message = reject_message({"trials": 1, "a b": 2, "zzz": 3}, ("trials",), ("search",))
    assert message.startswith('search."a b": unknown key')
    assert "\n" not in message
