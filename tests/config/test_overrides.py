"""`--set section.key=value`: the value read as TOML or kept as text, the key split into its path,
text-only fields kept as typed, and the raw job table edited as a copy, the last override winning."""

from __future__ import annotations

import copy
import datetime
import math

import pytest

from caviar.config.overrides import TEXT_FIELDS, apply_overrides, parse_override, parse_value, toml_problem

# --- parse_value -------------------------------------------------------------------------------------


@pytest.mark.parametrize("text, value", [
    ("8", 8),
    ("-3", -3),
    ("1e-3", 1e-3),
    ("0.5", 0.5),
    ("true", True),
    ("false", False),
    ("[32, 64]", [32, 64]),
    ("[]", []),
    ("{ log_uniform = [1e-4, 1e-1] }", {"log_uniform": [1e-4, 1e-1]}),
    ('"text"', "text"),
    ("'literal'", "literal"),
    ('"8"', "8"),
    (" 8 ", 8),
    ("8 # a comment", 8),
])
def test_parse_value_reads_a_toml_value(text, value):
    parsed = parse_value(text)
    assert parsed == value
    assert type(parsed) is type(value)


def test_parse_value_reads_toml_special_floats_and_dates():
    assert math.isnan(parse_value("nan"))
    assert parse_value("inf") == math.inf
    assert parse_value("2024-01-31") == datetime.date(2024, 1, 31)


@pytest.mark.parametrize("text", ["spiral", "digits-quick", "tests.toys:ToyTrainer", "results/x.csv", "", "   ",
                                  "x = 1", "[unclosed", "{ a = }", "True", "1.2.3"])
def test_parse_value_keeps_text_that_is_not_a_toml_value_as_typed(text):
    assert parse_value(text) == text


@pytest.mark.parametrize("text", ["first\nsecond", "1\nother = 2", "1\n[table]", "true\n[[rows]]", "8\nvalue2 = 9"])
def test_parse_value_keeps_multi_line_text_as_text_even_when_its_first_line_is_a_value(text):
    assert parse_value(text) == text


def test_parse_value_reads_a_toml_array_written_over_several_lines():
    assert parse_value("[1,\n 2]") == [1, 2]


# --- parse_override ----------------------------------------------------------------------------------


def test_parse_override_splits_the_dotted_key_and_reads_the_value():
    assert parse_override("search.trials=8") == (("search", "trials"), 8)
    assert parse_override("data.options.noise=0.3") == (("data", "options", "noise"), 0.3)
    assert parse_override("space.l2={ log_uniform = [1e-5, 1e-3] }") == (("space", "l2"), {"log_uniform": [1e-5, 1e-3]})
    assert parse_override("data.source=spiral") == (("data", "source"), "spiral")


def test_parse_override_ignores_spaces_around_the_key_parts_and_the_value():
    assert parse_override(" search . trials = 8 ") == (("search", "trials"), 8)


def test_parse_override_splits_at_the_first_equals_sign_only():
    assert parse_override("model.note=a=b") == (("model", "note"), "a=b")
    assert parse_override('model.note="x = 1"') == (("model", "note"), "x = 1")


def test_parse_override_with_an_empty_value_gives_empty_text():
    assert parse_override("model.note=") == (("model", "note"), "")


@pytest.mark.parametrize("text", ["search.trials", "", "trials 8"])
def test_parse_override_without_an_equals_sign_is_an_error_naming_the_flag(text):
    with pytest.raises(ValueError) as info:
        parse_override(text)
    message = str(info.value)
    assert message.startswith("--set: ")
    assert "KEY=VALUE" in message and repr(text) in message


@pytest.mark.parametrize("text", ["=8", "search.=8", ".trials=8", "search..trials=8", " . =1"])
def test_parse_override_with_an_empty_key_part_is_an_error_naming_the_flag(text):
    with pytest.raises(ValueError) as info:
        parse_override(text)
    message = str(info.value)
    assert message.startswith("--set: ")
    assert "\n" not in message and repr(text) in message


@pytest.mark.parametrize("text, value", [
    ("name=2024", "2024"),
    ("name=1e3", "1e3"),
    ("name=true", "true"),
    ("name=nan", "nan"),
    ("name=2024-01-31", "2024-01-31"),
    ("data.source=1e3", "1e3"),
    ("data.target=7", "7"),
    ("model.trainer=1", "1"),
    ("search.sampler=false", "false"),
    ("search.metric=0.5", "0.5"),
    ("babysit.mode=1", "1"),
])
def test_text_fields_keep_the_text_as_typed_even_when_it_reads_as_toml(text, value):
    parts, parsed = parse_override(text)
    assert parts in TEXT_FIELDS
    assert parsed == value and isinstance(parsed, str)


def test_text_fields_take_the_text_without_the_spaces_around_it():
    assert parse_override("name= 2024 ") == (("name",), "2024")


def test_text_fields_read_a_quoted_string_as_its_text():
    assert parse_override('name="digits-quick"') == (("name",), "digits-quick")
    assert parse_override("name=digits-quick") == (("name",), "digits-quick")


def test_fields_that_are_not_text_read_the_same_text_as_a_number():
    assert parse_override("search.seed=2024") == (("search", "seed"), 2024)
    assert parse_override("data.options.name=2024") == (("data", "options", "name"), 2024)


def test_text_fields_are_the_ones_the_job_only_ever_fills_with_text():
    assert TEXT_FIELDS == {
        ("name",), ("data", "source"), ("data", "target"), ("model", "trainer"), ("search", "sampler"),
        ("search", "scheduler"), ("search", "metric"), ("search", "mode"), ("babysit", "metric"),
        ("babysit", "mode"),
    }


# --- a mistyped value: refused with TOML's reason, not taken as text ----------------------------------


@pytest.mark.parametrize("text, problem", [
    ("search.trial_timeout=1e", "unexpected 'e' at character 2"),
    ("model.learning_rate=0.1.2", "unexpected '.' at character 4"),
    ("model.l2=-1e-3x", "unexpected 'x' at character 6"),
    ("model.l2=+.5", "invalid value at character 1 ('+')"),
    ("search.trials=8 8", "unexpected '8' at character 3"),
    ("model.hidden_layers=[64,", "invalid value at the end"),
    ("model.hidden_layers=[64, 6x]", "unclosed array at character 7 ('x')"),
    ("space.l2={ log_uniform = [1e-5 1e-3] }", "unclosed array at character 23 ('1')"),
    ("model.note=\"unclosed", "unterminated string at the end"),
    ("model.epochs=8\nother = 2", "more than one value"),
])
def test_a_value_that_starts_like_a_number_list_table_or_string_must_be_valid_toml(text, problem):
    with pytest.raises(ValueError) as info:
        parse_override(text)
    field, _, value = text.partition("=")
    assert str(info.value) == f"{field}: {value!r} is not a valid value (TOML: {problem}; text goes in quotes)"


@pytest.mark.parametrize("text, value", [
    ("model.activation=relu", "relu"),
    ("model.note=./data/x.csv", "./data/x.csv"),
    ("model.note=-", "-"),
    ("model.note=some words", "some words"),
    ("model.note='quoted 1.2.3'", "quoted 1.2.3"),
    ("data.source=1.2.3", "1.2.3"),        # text fields keep any text
    ("name=1e", "1e"),
])
def test_plain_text_and_text_fields_are_taken_as_typed(text, value):
    assert parse_override(text)[1] == value


def test_toml_problem_is_empty_for_one_valid_value():
    assert toml_problem("1e-3") == toml_problem("[1, 2]") == toml_problem("{ a = 1 }") == ""


# --- apply_overrides ---------------------------------------------------------------------------------


def test_apply_overrides_sets_existing_keys_and_keeps_the_others():
    raw = {"name": "digits", "search": {"trials": 24, "seed": 0}, "model": {"epochs": 15}}
    result = apply_overrides(raw, ["search.trials=8", "model.epochs=5"])
    assert result == {"name": "digits", "search": {"trials": 8, "seed": 0}, "model": {"epochs": 5}}


def test_apply_overrides_with_no_override_returns_an_equal_copy():
    raw = {"search": {"trials": 24}}
    result = apply_overrides(raw, [])
    assert result == raw
    assert result is not raw and result["search"] is not raw["search"]


def test_apply_overrides_creates_missing_tables_on_the_way():
    result = apply_overrides({}, ["data.options.noise=0.3", "name=run"])
    assert result == {"data": {"options": {"noise": 0.3}}, "name": "run"}
    assert apply_overrides({"data": {"source": "spiral"}}, ["data.options.noise=0.3"]) == {
        "data": {"source": "spiral", "options": {"noise": 0.3}}}


def test_apply_overrides_refuses_to_enter_a_value_that_is_not_a_table():
    with pytest.raises(ValueError) as info:
        apply_overrides({"search": {"trials": 8}}, ["search.trials.max=3"])
    message = str(info.value)
    assert message.startswith("search.trials: ")
    assert "not a table" in message and "search.trials.max" in message


def test_apply_overrides_names_the_first_non_table_on_a_long_path():
    with pytest.raises(ValueError) as info:
        apply_overrides({"name": "x"}, ["name.a.b=1"])
    assert str(info.value).startswith("name: ")
    assert "name.a.b" in str(info.value)


def test_apply_overrides_quotes_a_non_bare_key_in_its_message():
    with pytest.raises(ValueError) as info:
        apply_overrides({"space": {"a b": 1}}, ["space.a b.x=1"])
    assert str(info.value).startswith('space."a b": ')


def test_a_non_table_created_by_an_earlier_override_cannot_be_entered_by_a_later_one():
    with pytest.raises(ValueError, match="^data.options: .*not a table"):
        apply_overrides({}, ["data.options=3", "data.options.noise=0.3"])


def test_apply_overrides_can_replace_a_whole_table_with_a_value():
    assert apply_overrides({"search": {"trials": 8}}, ["search=3"]) == {"search": 3}


def test_apply_overrides_never_mutates_its_input():
    raw = {"search": {"trials": 24, "options": {"a": [1, 2]}}, "data": {"source": "digits"}}
    before = copy.deepcopy(raw)
    result = apply_overrides(raw, ["search.trials=8", "search.options.a=[3]", "data.options.noise=1",
                                   "model.epochs=2"])
    assert raw == before
    result["search"]["options"]["b"] = 1
    assert raw == before


def test_apply_overrides_leaves_the_input_untouched_when_an_override_fails():
    raw = {"search": {"trials": 24}}
    before = copy.deepcopy(raw)
    with pytest.raises(ValueError):
        apply_overrides(raw, ["data.source=spiral", "search.trials.x=1"])
    with pytest.raises(ValueError, match="^--set: "):
        apply_overrides(raw, ["model.epochs=3", "no equals sign"])
    assert raw == before


def test_apply_overrides_the_last_override_of_a_key_wins():
    raw = {"search": {"trials": 24}}
    assert apply_overrides(raw, ["search.trials=4", "search.trials=9"])["search"]["trials"] == 9
    assert apply_overrides(raw, ["search.trials=9", "search.trials=4"])["search"]["trials"] == 4
    assert apply_overrides(raw, ["search={ trials = 1 }", "search.seed=5"])["search"] == {"trials": 1, "seed": 5}


def test_apply_overrides_keeps_text_fields_as_text():
    assert apply_overrides({"name": "digits"}, ["name=2024"]) == {"name": "2024"}
