"""The end of a babysat run: the state it ends on, evaluated, recorded, and the tables compacted.

A run ends on its best state, held in memory since it was reached (a fresh run) or read before the
first epoch (a resume: `caviar.babysit.resume.best_point`). When no copy of the best checkpoint read
on resume, and nothing better came since, the run still ends, on its newest readable checkpoint, and
its final event and summary say so: the end never depends on what the checkpoint store holds.
"""

from __future__ import annotations

import math
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caviar.babysit.resume import write_missing


@dataclass
class Summary:
    """What a babysat run came to. best_epoch: the epoch whose state the run ended on (the best, unless
    `lost` says why not); final: test metrics of that state ("test_accuracy", ...) where the data has a
    test split and the trainer can `evaluate`, else its validation metrics. rollbacks: the policy's
    (rollbacks and divergences); asked_rollbacks: those a nudge asked for, which the policy's count,
    and so `max_rollbacks`, leaves out."""

    path: Path
    metric: str
    best_epoch: int
    best_score: float
    epochs: int
    rollbacks: int
    stopped: str
    final: dict[str, float] = field(default_factory=dict)
    lost: str = ""
    asked_rollbacks: int = 0

    def line(self) -> str:  # "best epoch 11  val_accuracy 0.9833  test_accuracy 0.9611  test_loss 0.1204  (..."
        final = "".join(f"  {k} {v:.4f}" for k, v in self.final.items() if k != self.metric)
        head = f"epoch {self.best_epoch} restored ({self.lost})" if self.lost else f"best epoch {self.best_epoch}"
        return (f"{head}  {self.metric} {self.best_score:.4f}{final}  ({self.epochs} "
                f"epochs, {self.rollbacks_said()}; stopped: {self.stopped})  results: {self.path}")

    def rollbacks_said(self) -> str:  # "0 rollbacks", "1 rollback", "3 rollbacks, 1 asked for"
        total = self.rollbacks + self.asked_rollbacks
        said = f"{total} rollback{'' if total == 1 else 's'}"
        return f"{said}, {self.asked_rollbacks} asked for" if self.asked_rollbacks else said


def _newest(sitter: Any) -> tuple[int, dict, dict]:
    """The newest readable checkpoint (warnings on stderr), or the trainer as it is when none reads."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        newest = sitter.store.load_last()
    for warning in caught:
        print(f"caviar babysit: warning: {warning.message}", file=sys.stderr, flush=True)
    if newest is None:
        return sitter._snapshot(sitter.last_metrics)
    return int(newest.meta["epoch"]), newest.state, newest.meta


def finish(sitter: Any) -> Summary:
    """Restore the state `sitter` ends on, evaluate it, record the final event and compact."""
    lost = sitter.best_lost if sitter.best is not None else "no best state was kept"
    epoch, state, meta = _newest(sitter) if lost else sitter.best
    sitter.trainer.load_state_dict(state)
    if lost:
        score = float(meta.get("metrics", {}).get(sitter.metric, math.nan))
        detail = f"{lost}: epoch {epoch} restored instead, the newest readable checkpoint; "
    else:
        score = math.nan if sitter.policy.best_score is None else sitter.policy.best_score
        detail = f"best epoch {epoch} restored; "
    data = sitter.data
    if data.x_test.shape[0] and hasattr(sitter.trainer, "evaluate"):
        final = {f"test_{k}": float(v) for k, v in sitter.trainer.evaluate(data.x_test, data.y_test).items()}
    else:
        final = {k: float(v) for k, v in meta.get("metrics", {}).items() if k.startswith("val_")}
    sitter._event("final", score, detail + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    run = sitter.run
    if run.resumed:  # a resumed run that had already stopped may have written them before
        write_missing(run, sitter.rows)
    else:  # a fresh run persisted every row when it stopped: only these are new
        for name, rows in sitter.rows.items():
            if rows:
                run.table(name).append(rows)
    sitter.rows = {"epochs": [], "events": []}
    run.compact()
    return Summary(run.path, sitter.metric, epoch, score, sitter.epoch, sitter.policy.rollbacks,
                   sitter.stopped or "", final, lost, sitter.asked_rollbacks)
