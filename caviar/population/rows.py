"""A population's table rows from what a generation did: pure functions of its reports and values.

- epochs: one row per member per epoch trained (`trial_id` is the member), with the values in force
  that epoch (`params_<name>`, and `learning_rate`, the rate the trainer reports it used): a member's
  values switch after each epoch whose divergence its worker replaced, so the diverged epoch keeps
  the values it diverged with and the next ones carry the replacement's.
- events: one row per decision, `copy_row` for each: the copies at a generation's end (`exploit`,
  `diverged`, `rollback`), and each divergence replaced during it (`replacement_rows`, event
  `diverged`), with the member, its source, `old_<name>` and `new_<name>` for each explored name,
  `base_learning_rate` (the new rate), `score` (the source's) and a one-line `detail`.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

from caviar.population.policy import Copy


def epoch_rows(report: Any, values: Mapping[str, Any], generation: int, default_rate: Any) -> list[dict]:
    """The epochs rows of one member's generation (`report`, a worker's `Report`), which it began with
    `values`; default_rate: the job's learning rate, for a trainer that reports none."""
    rows = []
    for epoch, metrics, seconds in report.epochs:
        in_force = values_at(report, values, epoch)   # after a replaced divergence: its values
        metrics = dict(metrics)
        rate = metrics.pop("learning_rate", in_force.get("learning_rate", default_rate))
        row = {"trial_id": report.member, "epoch": epoch, "learning_rate": math.nan if rate is None else float(rate),
               "seconds": seconds, "generation": generation}
        row.update({f"params_{name}": value for name, value in in_force.items()})
        rows.append({**row, **metrics})
    return rows


def values_at(report: Any, values: Mapping[str, Any], epoch: int) -> Mapping[str, Any]:
    """The values `report`'s member trained epoch `epoch` with, having begun the generation with
    `values`: each replaced divergence's values from the epoch after it on."""
    for replaced in sorted(report.replacements, key=lambda r: r.epoch):
        if replaced.epoch < epoch:
            values = replaced.values
    return values


def copy_row(copy: Copy, names: Sequence[str], epoch: int, generation: int, score: float, detail: str) -> dict:
    """The events row of `copy` at the end of `epoch`: `detail` is its line, `score` its source's."""
    row = {"epoch": epoch, "event": copy.reason, "base_learning_rate": float(copy.new.get("learning_rate", math.nan)),
           "score": score, "detail": detail, "member": copy.member, "source": copy.source, "generation": generation}
    row.update({f"old_{n}": copy.old[n] for n in names})
    row.update({f"new_{n}": copy.new[n] for n in names})
    return row


def changes(copy: Copy, names: Sequence[str]) -> str:
    """ "learning_rate 0.1 -> 0.08, l2 ..." for the explored names."""
    return ", ".join(f"{n} {short(copy.old[n])} -> {short(copy.new[n])}" for n in names)


def replacement_rows(report: Any, values: Mapping[str, Any], names: Sequence[str], generation: int, *,
                     scores: Sequence[float], start: int, fresh: bool) -> list[dict]:
    """One `diverged` event per divergence the member's worker replaced in the generation, at the
    epoch it diverged. values: the member's as the generation began; scores: every member's then
    (the source's is the event's score); start: the epoch the generation began after; fresh: the
    fallback was the member's own initial state (no member had a score yet)."""
    rows = []
    for replaced in report.replacements:
        copy = Copy(report.member, replaced.source, "diverged", old=dict(values), new=dict(replaced.values))
        where = "its own initial state" if fresh else f"member {replaced.source}'s state at epoch {start}"
        detail = (f"member {report.member} diverged ({replaced.why}): replaced at once by {where}; "
                  f"{changes(copy, names)}")
        rows.append(copy_row(copy, names, replaced.epoch, generation, math.nan if fresh else scores[replaced.source],
                             detail))
        values = replaced.values
    return rows


def short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
