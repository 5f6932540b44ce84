"""The shared vocabulary (caviar.store.vocabulary) promises:

- `Mode` says which way is better: "max" or "min", equal to, printed as and stored as that string,
  with `sign`, `better` (strict; a NaN or None is beaten by any finite score, a non-finite score beats
  nothing) and `worse_by` (in the metric's units, negative when better);
- `Status` and `RunKind` are the strings the tables and the readers use;
- `COLUMNS` lists each table's columns in the README's order with their Arrow types;
- a trainer may not report a metric named like a column caviar writes itself, nor a `params_` or
  `model_` one, but it may report `learning_rate`;
- `model_columns` are the fixed values a sweep's trials record; moments are ISO 8601 text in UTC;
- `validate_run_name` accepts a plain folder name and refuses anything that could leave --out, be
  hidden, be too long or not be a string, naming the field in its message.
"""

from __future__ import annotations

import io
import json
import time
import tomllib
from datetime import datetime, timedelta

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tomli_w

from caviar.store.layout import arrow_type
from caviar.store.vocabulary import (COLUMNS, MAX_NAME, MODES, POPULATION_COLUMNS, RESERVED_METRICS, STATUSES, TABLES, TIMESTAMP, Mode,
                                     RunKind, Status, model_columns, reserved_metric, utc_at, utc_now,
                                     validate_run_name)

NAN, INF = float("nan"), float("inf")


# ----------------------------------------------------------------------------- Mode

def test_a_mode_equals_prints_and_parses_as_its_string():
    assert Mode.MAX == "max" and Mode.MIN == "min" and Mode.MAX != "min"
    assert str(Mode.MAX) == "max" and f"{Mode.MIN}" == "min" and "mode: %s" % Mode.MIN == "mode: min"
    assert Mode("max") is Mode.MAX and Mode("min") is Mode.MIN
    assert MODES == ("max", "min")
    assert {"max": 1}[Mode.MAX] == 1          # hashes as its string: a dict keyed by text finds it
    with pytest.raises(ValueError):
        Mode("MAX")                           # exactly the job file's words, no others


def test_a_mode_is_stored_as_plain_text_in_json_toml_and_parquet():
    assert json.dumps({"mode": Mode.MIN}) == '{"mode": "min"}'
    assert tomllib.loads(tomli_w.dumps({"mode": Mode.MAX})) == {"mode": "max"}
    buffer = io.BytesIO()
    pq.write_table(pa.table({"mode": pa.array([Mode.MAX, Mode.MIN])}), buffer)
    buffer.seek(0)
    table = pq.read_table(buffer)
    assert table.schema.field("mode").type == pa.string()
    assert table.column("mode").to_pylist() == ["max", "min"]


def test_sign_makes_a_larger_signed_score_the_better_one():
    assert Mode.MAX.sign == 1.0 and Mode.MIN.sign == -1.0
    # an accuracy of 0.9 beats 0.8; a loss of 0.1 beats 0.2
    assert Mode.MAX.sign * 0.9 > Mode.MAX.sign * 0.8
    assert Mode.MIN.sign * 0.1 > Mode.MIN.sign * 0.2


@pytest.mark.parametrize("mode, better, worse", [(Mode.MAX, 0.9, 0.8), (Mode.MIN, 0.1, 0.2)])
def test_better_is_strict_and_goes_the_modes_way(mode, better, worse):
    assert mode.better(better, worse)
    assert not mode.better(worse, better)
    assert not mode.better(better, better)    # equal is not better: a tie keeps the incumbent


@pytest.mark.parametrize("mode", list(Mode))
def test_any_finite_score_beats_nothing_or_a_nan_and_a_non_finite_score_beats_nothing(mode):
    assert mode.better(0.5, None) and mode.better(0.5, NAN) and mode.better(-1e9, None)
    for bad in (NAN, INF, -INF):
        assert not mode.better(bad, None)
        assert not mode.better(bad, 0.5)
        assert not mode.better(bad, NAN)
    # a diverged run's infinite loss (or accuracy) never becomes the best
    assert mode.better(0.5, INF) and mode.better(0.5, -INF)


def test_worse_by_is_in_the_metrics_units_and_negative_when_better():
    assert Mode.MAX.worse_by(0.8, best=0.9) == pytest.approx(0.1)
    assert Mode.MAX.worse_by(0.95, best=0.9) == pytest.approx(-0.05)
    assert Mode.MIN.worse_by(0.3, best=0.1) == pytest.approx(0.2)
    assert Mode.MIN.worse_by(0.05, best=0.1) == pytest.approx(-0.05)
    assert Mode.MIN.worse_by(0.1, best=0.1) == 0.0


# ----------------------------------------------------------------------------- Status, RunKind

def test_statuses_are_the_words_of_the_status_column():
    assert [s.value for s in Status] == ["completed", "pruned", "failed", "diverged"] == list(STATUSES)
    assert Status.PRUNED == "pruned" and str(Status.FAILED) == "failed"
    assert Status("completed") is Status.COMPLETED
    with pytest.raises(ValueError):
        Status("crashed")


def test_run_kinds_are_sweep_and_babysit():
    assert {k.value for k in RunKind} == {"sweep", "babysit"}
    assert RunKind("sweep") is RunKind.SWEEP and RunKind.BABYSIT == "babysit"


# ----------------------------------------------------------------------------- tables and columns

def test_columns_list_each_table_in_the_readmes_order_with_arrow_types():
    assert TABLES == ("trials", "epochs", "events") and set(COLUMNS) == set(TABLES)
    assert list(COLUMNS["trials"]) == ["trial_id", "status", "params_*", "score", "epochs", "seconds", "seed",
                                       "error", "node", "round", "started_at", "finished_at", "model_*"]
    assert list(COLUMNS["epochs"]) == ["trial_id", "epoch", "learning_rate", "seconds", "time", "decision"]
    assert list(COLUMNS["events"]) == ["epoch", "event", "base_learning_rate", "score", "detail", "time"]
    for table, columns in COLUMNS.items():
        for name, kind in columns.items():
            if name in ("params_*", "model_*"):
                assert kind is None                    # a params or model column takes its first value's type
            elif kind == TIMESTAMP:
                assert arrow_type(kind) == pa.timestamp("us", tz="UTC")
            else:
                assert arrow_type(kind) == pa.type_for_alias(kind)   # every declared type is a real Arrow type
    assert COLUMNS["trials"]["trial_id"] == "int64" and COLUMNS["trials"]["score"] == "double"
    assert COLUMNS["trials"]["status"] == "string" and COLUMNS["epochs"]["learning_rate"] == "double"


@pytest.mark.parametrize("name", ["trial_id", "status", "score", "epochs", "seconds", "seed", "error", "node",
                                  "round", "epoch", "decision", "event", "base_learning_rate", "detail"])
def test_a_trainer_may_not_report_a_metric_named_like_a_column_caviar_writes(name):
    assert name in RESERVED_METRICS and reserved_metric(name)


def test_every_declared_column_but_learning_rate_is_reserved():
    declared = {name for columns in COLUMNS.values() for name in columns} - {"params_*", "model_*"}
    assert RESERVED_METRICS == (declared | set(POPULATION_COLUMNS)) - {"learning_rate"}


def test_learning_rate_is_a_metric_a_trainer_may_report():
    assert "learning_rate" not in RESERVED_METRICS and not reserved_metric("learning_rate")


@pytest.mark.parametrize("name", ["params_learning_rate", "params_", "params_x"])
def test_a_params_name_is_reserved_for_the_searched_hyperparameters(name):
    assert reserved_metric(name)


@pytest.mark.parametrize("name", ["val_accuracy", "val_loss", "train_loss", "scores", "Score", "my_params_x",
                                  "param_x", "epoch_seconds"])
def test_ordinary_metric_names_are_free(name):
    assert not reserved_metric(name)


# ----------------------------------------------------------------------------- run names

@pytest.mark.parametrize("name", ["digits", "sweep-1.b_2", "A", "2024.05.01", "x" * MAX_NAME, "a..b", "run."])
def test_a_plain_folder_name_is_accepted_and_returned_as_it_is(name):
    assert validate_run_name(name) == name


@pytest.mark.parametrize("name", ["..", ".", "../escape", "a/b", "/abs", "a\\b", ".hidden", ".a.lock", "",
                                  "sp ace", "é", "tab\t", "new\nline", "a\x00b", "x" * (MAX_NAME + 1)])
def test_names_that_could_leave_out_be_hidden_or_not_be_a_folder_are_refused(name):
    with pytest.raises(ValueError, match="^name: expected letters, digits") as info:
        validate_run_name(name)
    assert f"at most {MAX_NAME} characters" in str(info.value)


@pytest.mark.parametrize("value", [None, 3, 1.5, b"digits", ["digits"], True])
def test_a_name_that_is_not_a_string_is_refused_with_its_value(value):
    with pytest.raises(ValueError, match=r"^name: expected a string, got ") as info:
        validate_run_name(value)
    assert repr(value) in str(info.value)


def test_the_message_names_the_field_and_the_value():
    with pytest.raises(ValueError, match=r"^--from: .*got '\.\./x'$"):
        validate_run_name("../x", "--from")
    with pytest.raises(ValueError, match=r"^--from: expected a string, got 7$"):
        validate_run_name(7, field_name="--from")


def test_a_very_long_name_is_shortened_in_the_message():
    with pytest.raises(ValueError) as info:
        validate_run_name("y" * 10_000)
    message = str(info.value)
    assert len(message) < 400 and "y" * 117 + "..." in message and "y" * 118 not in message


@pytest.mark.parametrize("name", ["time", "started_at", "finished_at", "model_hidden_layers", "model_"])
def test_the_time_and_model_columns_are_reserved_too(name):
    assert reserved_metric(name)


def test_model_columns_are_the_fixed_values_that_are_not_searched():
    fixed = {"trainer": "mlp", "hidden_layers": [64], "learning_rate": 1e-3, "epochs": 5}
    assert model_columns(fixed, ["learning_rate"]) == {"model_trainer": "mlp", "model_hidden_layers": [64],
                                                       "model_epochs": 5}


def test_moments_are_iso_text_in_utc():
    assert utc_at(0.0) == "1970-01-01T00:00:00.000000+00:00"
    now = datetime.fromisoformat(utc_now())
    assert now.utcoffset() == timedelta(0) and abs(now.timestamp() - time.time()) < 60


def test_a_run_is_judged_by_its_babysit_section_when_babysat_else_by_its_search_section():
    from caviar.store.vocabulary import judged_by

    job = {"search": {"metric": "val_accuracy", "mode": "max"}, "babysit": {"metric": "val_loss", "mode": "min"}}
    assert judged_by(job, RunKind.BABYSIT) == ("val_loss", Mode.MIN)
    assert judged_by(job, RunKind.SWEEP) == ("val_accuracy", Mode.MAX)
    assert judged_by({"search": {"metric": "f1"}}, RunKind.BABYSIT) == ("f1", Mode.MAX)   # falls back to [search]
    assert judged_by({"search": {"mode": "sideways"}, "babysit": 3}, RunKind.SWEEP) == ("val_accuracy", Mode.MAX)
