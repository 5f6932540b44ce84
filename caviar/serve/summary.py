"""A run's line in the runs list, from its tables: pure functions of data (no files, no clock).

    state     running (a driver holds the run's lock) | finished | interrupted
    tally     metric and mode, best score, trials (or epochs) done and planned, status counts
    summarize the line itself: name, kind, state, the tally, started and duration (JSON values)
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from caviar.store.vocabulary import Mode, RunKind, Status, judged_by

RUNNING, FINISHED, INTERRUPTED = "running", "finished", "interrupted"


def planned(job: Mapping[str, Any], kind: RunKind) -> int | None:
    """How many trials (a sweep) or epochs (a babysat run) the job asks for; None if it does not say."""
    section = job.get("babysit" if kind == RunKind.BABYSIT else "search")
    value = section.get("epochs" if kind == RunKind.BABYSIT else "trials") if isinstance(section, Mapping) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def state(kind: RunKind, *, running: bool, events: pa.Table | None, done: int, planned: int | None,
          compacted: bool) -> str:
    """running while a driver holds the run's lock; else finished when the run ended by itself (a
    babysat run wrote its "final" event; a sweep has every planned trial, or its tables were merged,
    which a sweep does only at its end), else interrupted (Ctrl-C, a kill, a failing machine)."""
    if running:
        return RUNNING
    if kind == RunKind.BABYSIT:
        ended = events is not None and "event" in events.column_names and \
            pc.any(pc.equal(events.column("event"), "final")).as_py()
        return FINISHED if ended else INTERRUPTED
    return FINISHED if (planned is not None and done >= planned) or (compacted and done) else INTERRUPTED


def best(values: pa.ChunkedArray | None, mode: Mode, usable: np.ndarray | None = None) -> tuple[float | None, int | None]:
    """(best finite value, its row) of `values` (n,) in `mode`, over rows where `usable` (n,) bool;
    (None, None) when there is none. The first of equal values wins (the lower trial id, epoch)."""
    if values is None or len(values) == 0:
        return None, None
    x = values.to_numpy(zero_copy_only=False).astype(np.float64)
    ok = np.isfinite(x) if usable is None else np.isfinite(x) & usable
    if not ok.any():
        return None, None
    key = np.where(ok, mode.sign * x, -np.inf)
    row = int(np.argmax(key))
    return float(x[row]), row


def tally(kind: RunKind, job: Mapping[str, Any], tables: Mapping[str, pa.Table | None]) -> dict[str, Any]:
    """What a run's rows say: metric and mode, the best score and where (trial id, or epoch of a
    babysat run), trials (or epochs) done and planned, and the trials' statuses counted."""
    metric, mode = judged_by(job, kind)
    trials, epochs = tables.get("trials"), tables.get("epochs")
    counts: dict[str, int] = {}
    if kind == RunKind.SWEEP:
        done = 0 if trials is None else trials.num_rows
        status = trials.column("status") if trials is not None and "status" in trials.column_names else None
        scored = None
        if status is not None:
            counts = {str(c["values"]): int(c["counts"]) for c in pc.value_counts(status).to_pylist()}
            scored = pc.fill_null(pc.not_equal(status, Status.FAILED.value), True).to_numpy(zero_copy_only=False)
        column = trials.column("score") if trials is not None and "score" in trials.column_names else None
        score, row = best(column, mode, scored)
        at = None if row is None or "trial_id" not in trials.column_names else trials.column("trial_id")[row].as_py()
    else:
        done = 0 if epochs is None else epochs.num_rows
        column = epochs.column(metric) if epochs is not None and metric in epochs.column_names else None
        score, row = best(column, mode)
        at = None if row is None or "epoch" not in epochs.column_names else epochs.column("epoch")[row].as_py()
    return {"metric": metric, "mode": str(mode), "best": _number(score), "best_at": at, "done": done,
            "planned": planned(job, kind), "counts": counts}


def summarize(name: str, kind: RunKind, counted: Mapping[str, Any], *, status: str, started: float | None,
              ended: float | None, now: float) -> dict[str, Any]:
    """The runs list's row of one run (all JSON values: numbers, text, None). counted: its `tally`;
    status: its `state`; started, ended, now: Unix seconds (when job.toml was written, when a table
    last changed, the time of asking): a running run's duration runs to `now`."""
    end = now if status == RUNNING else ended
    duration = None if started is None or end is None else max(0.0, end - started)
    return {"name": name, "kind": str(kind), "status": status, **counted, "started": started, "duration": duration}


def _number(value: float | None) -> float | None:
    return None if value is None or not math.isfinite(value) else float(value)
