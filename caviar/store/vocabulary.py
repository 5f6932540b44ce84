"""The words every layer shares: directions, statuses, run kinds, table and column names, run names.

A leaf module (it imports nothing of caviar), so the job file's checks, the samplers, both drivers
and the views can all speak it without depending on one another. The README's "Results" section is
the user-facing form of the same vocabulary.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone
from enum import StrEnum
from typing import Any, Iterable, Mapping

# ------------------------------------------------------------------------------ directions


class Mode(StrEnum):
    """Whether a higher score is better ("max", an accuracy) or a lower one ("min", a loss).

    A `StrEnum`: it equals, prints and is stored as its string, so job files and Parquet columns keep
    "max"/"min" while the code asks the mode itself which way is better instead of flipping signs.
    """

    MAX = "max"
    MIN = "min"

    @classmethod
    def of(cls, value: object) -> Mode:
        """`value` as a Mode; ValueError "mode: must be 'max' or 'min', got ..." otherwise."""
        try:
            return cls(value)
        except ValueError:
            raise ValueError(f"mode: must be 'max' or 'min', got {value!r}") from None

    @property
    def sign(self) -> float:
        """+1 for max, -1 for min: `sign * score` is larger the better the score."""
        return 1.0 if self is Mode.MAX else -1.0

    def better(self, score: float, than: float | None) -> bool:
        """Whether `score` beats `than` strictly (None, or a NaN, is beaten by any finite score)."""
        if not math.isfinite(score):
            return False
        return than is None or not math.isfinite(than) or self.sign * score > self.sign * than

    def worse_by(self, score: float, best: float) -> float:
        """How much worse `score` is than `best`, in the metric's units (negative: better)."""
        return self.sign * (best - score)


MODES = tuple(m.value for m in Mode)


class Status(StrEnum):
    """How a trial of a sweep ended: its `status` column."""

    COMPLETED = "completed"   # every epoch it was given
    PRUNED = "pruned"         # stopped early by the scheduler; its score is from the epochs it ran
    FAILED = "failed"         # raised, reported a non-finite value first, or its worker died; no score
    DIVERGED = "diverged"     # reported a non-finite value after finite ones; its score is from the epochs before


STATUSES = tuple(s.value for s in Status)


class RunKind(StrEnum):
    """What wrote a run folder."""

    SWEEP = "sweep"       # `caviar parallel`: a trials table, epochs with a trial_id
    BABYSIT = "babysit"   # `caviar babysit`: epochs with a decision, events, checkpoints


# ------------------------------------------------------------------------------ the run folder

JOB_FILE = "job.toml"
CHECKPOINTS = "checkpoints"
TABLES = ("trials", "epochs", "events")
PARAM_PREFIX = "params_"
MODEL_PREFIX = "model_"
PREFIXES = (PARAM_PREFIX, MODEL_PREFIX)   # columns named after the job's values, typed by their first value
# A moment in UTC, to the microsecond: Arrow's `timestamp[us, tz=UTC]` (pandas `datetime64[us, UTC]`).
# Not an Arrow alias: the store turns it into its type (`caviar.store.layout.arrow_type`).
TIMESTAMP = "timestamp[us, tz=UTC]"

# Column types of each table, in display order, as Arrow type names ("params_*" marks where the
# searched hyperparameters go, "model_*" the job's fixed [model] values). Other columns: params_ and
# model_ columns take their first value's type (a list is stored as its JSON text), metrics are
# float64. The one meaning of each name: epochs.learning_rate is the rate an epoch trained with
# (after any decay the trainer applies); events.base_learning_rate is the babysitter's base rate
# from that event on (a trainer's decay divides it further). Times are when something happened, in
# UTC: a trial's start and end, an epoch's end, an event; runs written before they existed lack them.
COLUMNS: dict[str, dict[str, str | None]] = {
    "trials": {"trial_id": "int64", "status": "string", "params_*": None, "score": "double", "epochs": "int64",
               "seconds": "double", "seed": "int64", "error": "string", "node": "string", "round": "int64",
               "started_at": TIMESTAMP, "finished_at": TIMESTAMP, "model_*": None},
    "epochs": {"trial_id": "int64", "epoch": "int64", "learning_rate": "double", "seconds": "double",
               "time": TIMESTAMP, "decision": "string"},
    "events": {"epoch": "int64", "event": "string", "base_learning_rate": "double", "score": "double",
               "detail": "string", "time": TIMESTAMP},
}
TIME_COLUMNS = frozenset(name for table in COLUMNS.values() for name, kind in table.items() if kind == TIMESTAMP)
# Older runs named events' base rate `learning_rate`: readers rename it.
RENAMED = {"events": {"learning_rate": "base_learning_rate"}}

# Names a trainer may not report as a metric, in either mode: the columns the drivers write
# themselves. `learning_rate` is not among them: a trainer that reports it tells the rate it
# trained with, and that value goes to the epochs table's column of that name.
# A population (caviar.population) also writes `generation` (epochs, events), `member` and `source`
# (events) and `copied_from` (trials) beside a member's metrics.
POPULATION_COLUMNS = ("generation", "member", "source", "copied_from")
RESERVED_METRICS = frozenset([*(name for table in COLUMNS.values() for name in table
                                if not name.endswith("*") and name != "learning_rate"), *POPULATION_COLUMNS])


def judged_by(job: Mapping[str, Any], kind: str) -> tuple[str, Mode]:
    """(metric, mode) a run was judged by, from its job.toml as plain data: the [babysit] section for
    a babysat run, else [search] (val_accuracy and max when neither says; a mode no version wrote:
    max). What `show`, `serve` and `load_all` read a run by."""
    search = job.get("search") if isinstance(job.get("search"), Mapping) else {}
    babysit = job.get("babysit") if isinstance(job.get("babysit"), Mapping) else {}
    section = babysit if str(kind) == RunKind.BABYSIT else search
    metric = section.get("metric") or search.get("metric") or "val_accuracy"
    try:
        return str(metric), Mode.of(section.get("mode") or search.get("mode") or "max")
    except ValueError:
        return str(metric), Mode.MAX


def reserved_metric(name: str) -> bool:
    """Whether a metric name would clash with a column caviar writes (or a params_ or model_ column)."""
    return name in RESERVED_METRICS or name.startswith(PREFIXES)


def model_columns(fixed: Mapping[str, Any], searched: Iterable[str]) -> dict[str, Any]:
    """The trials table's `model_<name>` columns: each fixed value of the job that is not searched.

    fixed: name -> value (the job's [model] values, its trainer among them, and [space]'s plain
    values); searched: the names a sampler draws (they have `params_<name>` columns instead).
    """
    drawn = set(searched)
    return {MODEL_PREFIX + name: value for name, value in fixed.items() if name not in drawn}


def utc_now() -> str:
    """This moment in UTC as ISO 8601 text ("2026-12-02T06:11:35.123456+00:00"): what a driver puts
    in a time column (text, so a babysat run's checkpoint keeps its rows as JSON)."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def utc_at(seconds: float) -> str:
    """`seconds` since the Unix epoch (`time.time()`) as `utc_now` writes a moment."""
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="microseconds")


# ------------------------------------------------------------------------------ run names

_NAME = re.compile(r"[A-Za-z0-9._-]+")
MAX_NAME = 200  # a folder name; file systems stop at 255 bytes


def validate_run_name(name: Any, field_name: str = "name") -> str:
    """A run name: letters, digits, '.', '_' and '-', not starting with '.', so it stays inside --out
    and is never hidden (readers skip hidden entries, and the store uses them for temporary ones).

    Raises ValueError naming `field_name` ("name", "--from", ...) and the value.
    """
    if not isinstance(name, str):
        raise ValueError(f"{field_name}: expected a string, got {name!r}")
    if not _NAME.fullmatch(name) or name.startswith(".") or len(name) > MAX_NAME:
        shown = name if len(name) <= 120 else name[:117] + "..."
        raise ValueError(f"{field_name}: expected letters, digits, '.', '_' and '-' only, not starting with '.' "
                         f"(at most {MAX_NAME} characters): it names a folder under --out, got {shown!r}")
    return name
