"""What a resumed sweep already did, read back from its folder so the sweep goes on as if unbroken.

The sampler is told every finished trial's score (coarse-to-fine rounds are fixed by them), the
scheduler sees again what each trial scored at its milestones (an ASHA sweep that resumes prunes as
hard as one that never stopped), and epoch rows of trials without a trial row (a kill between the
two tables' flushes) are dropped: those trials run again.

A part file that does not read was set aside by the resume's repair (`caviar.store.folder.repair`,
into `.quarantine/`): trials whose row it held have none now, and run again. When it held epoch rows,
every trial whose epochs on disk no longer number its `epochs` loses its row too, and runs again,
so that its epochs are regenerated.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from caviar.search.samplers import Sampler
from caviar.search.schedulers import Scheduler
from caviar.store.layout import QUARANTINE
from caviar.store.ranking import best_trial
from caviar.store.vocabulary import PARAM_PREFIX, STATUSES, Status


@dataclass
class Restored:
    """finished: trial ids with a row (never rerun); counts: status -> trials; best: (score, trial_id,
    params) of the best trial so far, for the progress line."""

    finished: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(STATUSES, 0))
    best: tuple[float, int, dict[str, Any]] | None = None


def restore(run: Any, sampler: Sampler, scheduler: Scheduler, metric: str) -> Restored:
    """Read the run folder `run` (a `RunFolder` being resumed) and replay it into sampler and scheduler."""
    from caviar.store.reader import load

    saved = load(run.path)
    trials, epochs = saved.trials, saved.epochs
    incomplete = _incomplete_trials(run.path, trials, epochs)
    if incomplete:
        _drop_trials(run, incomplete)
        trials = trials[~trials["trial_id"].isin(incomplete)]
    done = Restored(finished={int(t) for t in trials["trial_id"]})
    if not epochs.empty:
        unfinished = ~epochs["trial_id"].isin(done.finished)
        if unfinished.any():
            _drop_unfinished_epochs(run, done.finished)
        epochs = epochs[~unfinished]
    _replay_milestones(epochs, scheduler, metric, _failed_at(trials))
    if trials.empty:
        return done
    trials = trials.drop_duplicates("trial_id", keep="last")
    for status, n in trials["status"].value_counts().items():
        done.counts[str(status)] = int(n)
    for trial_id, score in zip(trials["trial_id"], trials["score"]):
        sampler.tell(int(trial_id), float(score) if score is not None and not math.isnan(score) else math.nan)
    best = best_trial(trials, sampler.mode)
    if best is not None:
        params = {c[len(PARAM_PREFIX):]: best[c] for c in trials.columns if c.startswith(PARAM_PREFIX)}
        done.best = (float(best["score"]), int(best["trial_id"]), params)
    return done


def check_growth(run_dir: Path, n_trials: int) -> None:
    """A resumed sweep can grow but not shrink: refused (before anything is written) when the run
    already has a trial id at or beyond `n_trials`. Reads only the trial_id column; a part that does
    not read is skipped quietly here: the resume's repair names it and sets it aside."""
    import warnings

    from caviar.store.reader import read_table

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        table = read_table(Path(run_dir) / "trials.parquet", columns=["trial_id"])
    largest = max((int(t) for t in table.column("trial_id").to_pylist() if t is not None), default=-1) \
        if table is not None and "trial_id" in table.column_names else -1
    if largest >= n_trials:
        raise ValueError(f"search.trials: this run already has trial {largest}; a resumed sweep "
                         f"can grow but not shrink (got {n_trials})")


def _failed_at(trials: Any) -> dict[int, int]:
    """Failed or diverged trial -> the last epoch it reported. Such a trial ends on the epoch it reports
    (a non-finite metric, an error after the row was sent), before the scheduler is asked about it."""
    if trials.empty or "status" not in trials or "epochs" not in trials:
        return {}
    failed = trials[trials["status"].isin([Status.FAILED.value, Status.DIVERGED.value])]
    return {int(t): int(e) for t, e in zip(failed["trial_id"], failed["epochs"]) if e is not None and e == e}


def _replay_milestones(epochs: Any, scheduler: Scheduler, metric: str, failed_at: dict[int, int]) -> None:
    """Record each finished trial's rung score at every milestone the live sweep asked the
    scheduler about: each one it passed, but not the epoch a failed trial failed on."""
    if not scheduler.milestones or epochs.empty or metric not in epochs.columns:
        return
    epochs = epochs.sort_values(["trial_id", "epoch"])
    milestones = set(scheduler.milestones)
    for trial_id, rows in epochs.groupby("trial_id", sort=False):
        curve = [float(v) for v in rows[metric]]
        for i, epoch in enumerate(rows["epoch"]):
            if epoch in milestones and epoch != failed_at.get(trial_id):
                # What the live sweep judged the trial on there (skipped when it had no score yet).
                score = scheduler.rung_score(curve[: i + 1])
                if not math.isnan(score):
                    scheduler.should_continue(int(trial_id), int(epoch), score)


def _drop_unfinished_epochs(run: Any, finished: set[int]) -> None:
    """Remove epoch rows of trials that have no trial row: they run again, and would otherwise have
    their epochs twice."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kept = pa.array(sorted(finished), type=pa.int64())
    run.table("epochs").compact(keep=lambda table: pc.is_in(table["trial_id"], value_set=kept))


def _incomplete_trials(run_dir: Path, trials: Any, epochs: Any) -> set[int]:
    """Trials whose epoch rows on disk do not number their `epochs`, once a part of the epochs table
    was set aside (it did not read); none otherwise."""
    quarantined = Path(run_dir) / QUARANTINE / "epochs"
    if trials.empty or "epochs" not in trials.columns or not quarantined.is_dir() or not any(quarantined.iterdir()):
        return set()
    import pandas as pd

    have = epochs["trial_id"].value_counts().to_dict() if not epochs.empty else {}
    return {int(t) for t, n in zip(trials["trial_id"], trials["epochs"])
            if not pd.isna(n) and int(n) != have.get(t, 0)}


def _drop_trials(run: Any, trial_ids: set[int]) -> None:
    """Remove the rows of `trial_ids` from the trials table: those trials run again."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dropped = pa.array(sorted(trial_ids), type=pa.int64())
    run.table("trials").compact(keep=lambda table: pc.invert(pc.is_in(table["trial_id"], value_set=dropped)))
