"""Views of a population (`scheduler = "pbt"`): the best member's discovered schedule, and its figures.

A member's epochs rows hold the values in force each epoch, but a member that copied another at
epoch e carries the other's model from then on: the best model's history is its *lineage*, the
source's epochs up to each copy and its own after. `lineage` follows the copy events back from the
best member; `schedule` is that lineage's epochs (what the population discovered, e.g. a learning
rate that starts high and decays). Reads the tables only.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

import numpy as np
import pandas as pd

from caviar.store.ranking import best_trial

COPY_EVENTS = ("exploit", "diverged", "rollback")


def is_population(job: Mapping[str, Any]) -> bool:
    """Whether a run's job (its job.toml as data) trained a population."""
    search = job.get("search") if isinstance(job, Mapping) else None
    return isinstance(search, Mapping) and search.get("scheduler") == "pbt"


def lineage(events: pd.DataFrame, member: int, last_epoch: int) -> list[tuple[int, int, int]]:
    """(member, first epoch, last epoch) segments of `member`'s model history, oldest first."""
    copies = events[events["event"].isin(COPY_EVENTS)] if "event" in events else events.iloc[0:0]
    segments, current, end = [], int(member), int(last_epoch)
    for _, row in copies.sort_values("epoch", ascending=False, kind="stable").iterrows():
        epoch = int(row["epoch"])
        if int(row["member"]) == current and epoch < end:
            segments.append((current, epoch + 1, end))
            current, end = int(row["source"]), epoch
    segments.append((current, 1, end))
    return [s for s in reversed(segments) if s[1] <= s[2]]


def schedule(run: Any) -> pd.DataFrame:
    """The best member's lineage epoch by epoch: epoch, member, learning_rate, the explored values, metric."""
    trials, epochs, events = run.trials, run.epochs, run.events
    mode = run.job.get("search", {}).get("mode", "max")
    best = best_trial(trials, mode) if not trials.empty else None
    if best is None or epochs.empty:
        return pd.DataFrame()
    parts = []
    for member, first, last in lineage(events, int(best["trial_id"]), int(epochs["epoch"].max())):
        rows = epochs[(epochs["trial_id"] == member) & (epochs["epoch"] >= first) & (epochs["epoch"] <= last)]
        parts.append(rows)
    frame = pd.concat(parts).sort_values("epoch").rename(columns={"trial_id": "member"})
    metric = run.job.get("search", {}).get("metric", "val_accuracy")
    params = [c for c in frame.columns if c.startswith("params_") and frame[c].nunique(dropna=True) > 1]
    keep = ["epoch", "member", "learning_rate", *params, *([metric] if metric in frame else [])]
    return frame[keep].reset_index(drop=True)


def schedule_text(run: Any) -> str:
    """The best member's schedule as lines of runs of equal values: "epochs 1-4  member 3  learning_rate 0.05"."""
    frame = schedule(run)
    if frame.empty:
        return "schedule: no finished population yet"
    values = [c for c in frame.columns if c.startswith("params_")] or ["learning_rate"]
    key = frame[["member", *values]].astype(str).agg("|".join, axis=1)
    lines = [f"schedule of the best member (its lineage: the members whose model it carries), {len(frame)} epochs"]
    for _, group in frame.groupby((key != key.shift()).cumsum(), sort=True):
        first, last = int(group["epoch"].iloc[0]), int(group["epoch"].iloc[-1])
        shown = "  ".join(f"{c.removeprefix('params_')} {_short(group[c].iloc[0])}" for c in values)
        lines.append(f"  epochs {first}-{last}  member {int(group['member'].iloc[0])}  {shown}")
    return "\n".join(lines)


def _short(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, (float, np.floating)) else str(value)


def member_curves(epochs: pd.DataFrame, events: pd.DataFrame, metric: str) -> Any:
    """Every member's `metric` by epoch; a copy drawn as a dashed jump from its source's curve."""
    from matplotlib.figure import Figure

    from caviar.views.plots import SIZE, _finish, _no_data, literal_text

    @literal_text
    def draw() -> Any:
        fig = Figure(figsize=SIZE)
        ax = fig.subplots()
        if epochs.empty or metric not in epochs:
            return _no_data(fig, ax, "no epochs yet")
        for member, rows in epochs.groupby("trial_id"):
            ax.plot(rows["epoch"], rows[metric], lw=1, alpha=0.8, label=f"member {member}" if member < 10 else None)
        copies = events[events["event"].isin(COPY_EVENTS)] if "event" in events else events.iloc[0:0]
        value = epochs.set_index(["trial_id", "epoch"])[metric]
        for _, row in copies.iterrows():
            start, end = (int(row["source"]), int(row["epoch"])), (int(row["member"]), int(row["epoch"]) + 1)
            if start in value.index and end in value.index:
                ax.plot([start[1], end[1]], [value[start], value[end]], ls="--", color="0.3", lw=0.8)
        return _finish(fig, ax, ylabel=metric, title="members (dashed: a copy of a better member)", xlabel="epoch")
    return draw()


def schedule_plot(frame: pd.DataFrame) -> Any:
    """The best member's learning rate by epoch (log axis), coloured by whose model it was."""
    from matplotlib.figure import Figure

    from caviar.views.plots import SIZE, _finish, _no_data, literal_text

    @literal_text
    def draw() -> Any:
        fig = Figure(figsize=SIZE)
        ax = fig.subplots()
        rates = frame["learning_rate"] if "learning_rate" in frame else pd.Series(dtype=float)
        if frame.empty or not np.isfinite(rates.to_numpy(dtype=float)).any():
            return _no_data(fig, ax, "no learning rate recorded")
        ax.step(frame["epoch"], rates, where="post", color="tab:blue", label="learning rate")
        positive = rates[rates > 0]
        if len(positive) and math.isfinite(float(positive.min())):
            ax.set_yscale("log")
        return _finish(fig, ax, ylabel="learning rate", title="the best member's discovered schedule", xlabel="epoch")
    return draw()
