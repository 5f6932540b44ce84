"""What the API answers beyond a table's rows: a run's scales, its importance ranking, and a nudge
request read from JSON into the command line's words (pure, but for the importance cache)."""

from __future__ import annotations

import json
import math
from typing import Any, Mapping

from caviar.store.reader import to_frame
from caviar.views.importance import importance
from caviar.views.show import scales_of

NUDGE_KEYS = ("set", "rollback", "stop")


def scales(job: Mapping[str, Any]) -> dict[str, str]:
    """name -> "linear" | "log" | "one_minus_log" | "category" of each searched hyperparameter."""
    space = job.get("space")
    try:
        return scales_of(space if isinstance(space, Mapping) else {})
    except (ValueError, TypeError, AttributeError):
        return {}


def importance_rows(run: Any) -> list[dict[str, Any]]:
    """The run's importance ranking (`caviar.views.importance`) as rows, recomputed only when its
    trials changed; [] for a run without trials."""
    cache = run.table("trials")
    cache.refresh()
    stamp = (cache.generation, cache.rows)
    memo = getattr(run, "_importance", None)
    if memo is not None and memo[0] == stamp:
        return memo[1]
    table = cache.table
    rows: list[dict[str, Any]] = []
    if table is not None and "score" in table.column_names:
        frame = importance(to_frame(table), scales(run.job))
        rows = [{k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in row.items()}
                for row in json.loads(frame.to_json(orient="records"))]
    run._importance = (stamp, rows)
    return rows


def nudge_request(body: Any) -> tuple[list[str], bool, bool]:
    """A nudge's JSON body, `{"set": {"learning_rate": "1e-3"}, "rollback": false, "stop": false}`,
    as the command line's words: (["learning_rate=1e-3"], rollback, stop). A value is text (read as
    the command line reads it) or a number. Raises ValueError naming the field at fault."""
    if not isinstance(body, dict):
        raise ValueError("body: expected a JSON object with 'set', 'rollback' and 'stop'")
    unknown = sorted(set(body) - set(NUDGE_KEYS))
    if unknown:
        raise ValueError(f"{unknown[0]}: unknown field; a nudge has {', '.join(NUDGE_KEYS)}")
    changes = body.get("set", {})
    if not isinstance(changes, dict):
        raise ValueError("set: expected an object of hyperparameter -> value")
    texts = []
    for key, value in changes.items():
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ValueError(f"{key}: expected a number or text, got {json.dumps(value)}")
        texts.append(f"{key}={value if isinstance(value, str) else json.dumps(value)}")
    flags = []
    for flag in ("rollback", "stop"):
        value = body.get(flag, False)
        if not isinstance(value, bool):
            raise ValueError(f"{flag}: expected true or false, got {json.dumps(value)}")
        flags.append(value)
    return texts, flags[0], flags[1]
