"""Tables as columnar JSON and cursors (pure): what travels, and what a stale cursor gets."""

from __future__ import annotations

import json
import math

import pyarrow as pa
import pytest

from caviar.serve.tables import dumps, encode_column, encode_table, parse_cursor, rows_since


def sent(body):
    """What a client reads of `body`: the JSON the server writes, parsed by the standard library."""
    return json.loads(dumps(body))


def test_non_finite_numbers_and_nulls_travel_as_null_and_the_rest_unchanged():
    table = pa.table({"score": [0.5, math.nan, math.inf, None], "trial_id": [0, 1, 2, 3],
                      "status": ["completed", "failed", None, "<b>x</b>"], "epochs": pa.array([1, None, 3, 4])})
    got = sent(encode_table(table))
    assert got["data"] == {"score": [0.5, None, None, None], "trial_id": [0, 1, 2, 3],
                           "status": ["completed", "failed", None, "<b>x</b>"], "epochs": [1, None, 3, 4]}
    assert b"NaN" not in dumps(encode_table(table)) and b"Infinity" not in dumps(encode_table(table))
    assert sent(encode_column(pa.chunked_array([[1.0], [2.5]]))) == [1.0, 2.5]


def test_columns_keep_the_order_asked_and_leave_out_those_not_there_yet():
    table = pa.table({"a": [1], "b": [2.0], "c": ["x"]})
    assert sent(encode_table(table, ["c", "missing", "a"])) == {"columns": ["c", "a"], "data": {"c": ["x"], "a": [1]}}
    assert encode_table(None) == {"columns": [], "data": {}}


@pytest.mark.parametrize("text", ["3", "a.1", "1.b", "-1.2", "1.2.3", "9" * 50 + ".1"])
def test_a_malformed_cursor_is_one_line_naming_since(text):
    with pytest.raises(ValueError, match=r"^since: expected a cursor"):
        parse_cursor(text)


def test_rows_after_a_cursor_and_a_reset_for_a_stale_one():
    table = pa.table({"x": list(range(5))})
    first = sent(rows_since(table, 2, parse_cursor(None)))
    assert first["reset"] and first["data"]["x"] == [0, 1, 2, 3, 4] and first["cursor"] == "2.5"
    later = sent(rows_since(table, 2, parse_cursor("2.3")))
    assert not later["reset"] and later["start"] == 3 and later["data"]["x"] == [3, 4]
    assert rows_since(table, 2, parse_cursor("2.5"))["rows"] == 0
    for stale in ("1.3", "2.9"):   # another generation, or more rows than the table holds: start again
        again = sent(rows_since(table, 2, parse_cursor(stale)))
        assert again["reset"] and again["start"] == 0 and again["rows"] == 5
