"""The report's figures, one function per figure, each returning a matplotlib `Figure`.

Figures are built with the object API (`matplotlib.figure.Figure`), never pyplot, so nothing global
is kept between reports and nothing is shown on a screen; `png_bytes(fig)` renders one with Agg.
Inputs are the run's DataFrames (the README's "Results" columns) and, per hyperparameter, its scale:
"linear" | "log" | "one_minus_log" | "category" (`caviar.views.show.scales_of`).

Names and values come from a results folder, possibly someone else's, so they are text, never
markup: every figure is built and rendered with matplotlib's mathtext and LaTeX off
(`literal_text`), so a hyperparameter called `lr$\\frac{a}{$` is drawn as it is spelled. That
is a context around our own figures only; the caller's rcParams are left as they were.
"""

from __future__ import annotations

import functools
import io
import math
import sys
from typing import Any, Callable, Mapping, TypeVar

import matplotlib

if "matplotlib.pyplot" not in sys.modules:  # headless rendering; a notebook's own backend stays untouched
    matplotlib.use("Agg")

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogFormatter, MaxNLocator, NullFormatter

from caviar.store.ranking import ranked
from caviar.store.vocabulary import Mode, Status

PARAM_PREFIX = "params_"
SIZE = (6.4, 4.0)  # inches; at 100 dpi a 640 x 400 PNG
DPI = 100
FAILED = "tab:red"
PRUNED = "0.55"
# How each babysit event is marked on the timeline: (colour, line style).
EVENT_STYLES: Mapping[str, tuple[str, str]] = {
    "rollback": ("tab:red", "-"),
    "diverged": ("black", ":"),
    "plateau": ("tab:orange", "--"),
    "nudge": ("tab:purple", "-."),
    "stop": ("0.4", "-"),
    "resume": ("0.6", ":"),
}
# Text as it is spelled: no `$...$` mathtext, no LaTeX (see the module's docstring).
LITERAL_TEXT: Mapping[str, Any] = {"text.parse_math": False, "text.usetex": False}

Drawn = TypeVar("Drawn", bound=Callable[..., Any])


def literal_text(draw: Drawn) -> Drawn:
    """`draw` run with `LITERAL_TEXT`: every text it makes (titles, labels, ticks, legends) is literal."""
    @functools.wraps(draw)
    def literally(*args: Any, **kwargs: Any) -> Any:
        with matplotlib.rc_context(LITERAL_TEXT):
            return draw(*args, **kwargs)
    return literally  # type: ignore[return-value]


@literal_text
def png_bytes(fig: Figure) -> bytes:
    """`fig` rendered as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def _scored(trials: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials with a finite score, failed or unscored trials)."""
    score = pd.to_numeric(trials["score"], errors="coerce").astype(float)
    ok = np.isfinite(score.to_numpy()) & trials["status"].ne(Status.FAILED).to_numpy()
    return trials[ok], trials[~ok]


def _rounds(trials: pd.DataFrame) -> pd.Series | None:
    """Each trial's coarse-to-fine round, or None when the sweep had one round (nothing to colour)."""
    if "round" not in trials or trials["round"].nunique(dropna=True) < 2:
        return None
    return trials["round"]


def _pruned_label(pruned: pd.DataFrame) -> str:
    """What a pruned trial's score is, for the legend: its best within the few epochs it ran."""
    epochs = pd.to_numeric(pruned["epochs"], errors="coerce") if "epochs" in pruned else pd.Series(dtype=float)
    within = f" within {int(epochs.max())} epochs or fewer" if epochs.notna().any() else ""
    return f"pruned ({len(pruned)}, hollow): best score{within}, stopped early"


def _scatter_scored(ax: Any, good: pd.DataFrame, rounds: pd.Series | None,
                    position: Callable[[pd.DataFrame], np.ndarray]) -> None:
    """Trials with a score: completed ones filled, pruned ones hollow (their score comes from fewer
    epochs, and the legend says so); coloured by coarse-to-fine round when there are several."""
    done, pruned = good[good["status"] == Status.COMPLETED], good[good["status"] != Status.COMPLETED]
    colours = matplotlib.colormaps["tab10"]
    groups = [(None, "tab:blue")] if rounds is None else \
        [(r, colours(i % 10)) for i, r in enumerate(sorted(rounds.loc[good.index].unique()))]
    for round_, colour in groups:
        d = done if round_ is None else done[rounds.loc[done.index] == round_]
        p = pruned if round_ is None else pruned[rounds.loc[pruned.index] == round_]
        label = f"completed ({len(d)})" if round_ is None else f"round {round_} ({len(d) + len(p)})"
        if len(d):
            ax.scatter(position(d), d["score"], s=24, color=colour, alpha=0.8, label=label)
        if len(p):
            ax.scatter(position(p), p["score"], s=24, facecolor="none", alpha=0.8,
                       edgecolor=PRUNED if round_ is None else colour, label=None if len(d) or round_ is None else label)
    if len(pruned):
        ax.scatter([], [], s=24, facecolor="none", edgecolor=PRUNED, label=_pruned_label(pruned))


def _failed_along_bottom(ax: Any, x: np.ndarray, *, scored: int) -> None:
    """Failed trials (no score) as red crosses at positions `x` along the bottom edge, each one in
    view: the x axis takes them into its limits (a blended transform would not), and with no scored
    trial at all the empty y axis says why."""
    if not len(x):
        return
    ax.scatter(x, np.zeros(len(x)), marker="x", color=FAILED, clip_on=False,
               transform=ax.get_xaxis_transform(), label=f"failed ({len(x)})")
    ax.update_datalim(np.column_stack([x, np.zeros(len(x))]), updatex=True, updatey=False)
    ax.autoscale_view(scaley=False)
    if not scored:
        ax.set_yticks([])
        ax.text(0.5, 0.5, f"every trial failed ({len(x)}): no score to draw", ha="center", va="center",
                transform=ax.transAxes, color="0.4")


def _best_index(values: pd.Series, mode: str):
    """Where the best of `values` is: which value is best is the mode's call."""
    return values.idxmax() if Mode(mode) is Mode.MAX else values.idxmin()


def _finish(fig: Figure, ax: Any, *, ylabel: str, title: str, xlabel: str | None = None) -> Figure:
    """The common last touches of a one-axes figure; an xlabel means integer ticks (epochs, trial ids)."""
    if xlabel is not None:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def _no_data(fig: Figure, ax, text: str) -> Figure:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])
    return fig


def _plain_log(axis: Any) -> None:
    """Tick labels of a log `axis` as plain text ("1e-03"): matplotlib's default ones are mathtext,
    which `LITERAL_TEXT` would print as its source ("$\\mathdefault{10^{-3}}$")."""
    axis.set_major_formatter(LogFormatter())
    axis.set_minor_formatter(LogFormatter(labelOnlyBase=False, minor_thresholds=(1, 0.4)))


def _one_minus_label(x: float, _pos: int) -> str:
    """Tick label of a 1 - beta axis position x: the beta, to the digits x shows (1e-3 -> 0.999)."""
    if not 0 < x < 1:
        return ""
    return f"{1 - x:.{max(1, round(-math.log10(x)))}f}"


@literal_text
def score_vs_param(trials: pd.DataFrame, name: str, scale: str, metric: str, mode: str) -> Figure:
    """Score of every trial against one hyperparameter `name` (column `params_<name>`).

    log: log x-axis; one_minus_log: 1 - value on a log x-axis (so 0.9, 0.99, 0.999 are evenly
    spaced); category: one column of points per value, spread a little sideways. Pruned trials are
    hollow (their score is from fewer epochs: the legend says so), failed trials red crosses along
    the bottom edge, the best trial a star; a coarse-to-fine sweep's trials coloured by round.
    """
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    column = PARAM_PREFIX + name
    good, bad = _scored(trials)
    good, bad = good[good[column].notna()], bad[bad[column].notna()]
    if scale == "category" or not pd.api.types.is_numeric_dtype(trials[column]) \
            or pd.api.types.is_bool_dtype(trials[column]):
        categories = sorted(trials[column].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
        where = {v: i for i, v in enumerate(categories)}
        # A fixed, seeded jitter: the same run draws the same picture.
        rng = np.random.default_rng(0)
        position = lambda frame: frame[column].map(where).to_numpy(dtype=float) + rng.uniform(-0.15, 0.15, len(frame))
        ax.set_xticks(range(len(categories)), [str(v) for v in categories])
        ax.set_xlabel(name)
    else:
        def position(frame: pd.DataFrame) -> np.ndarray:
            values = frame[column].to_numpy(dtype=float)
            return 1.0 - values if scale == "one_minus_log" else values
        if scale in ("log", "one_minus_log"):
            ax.set_xscale("log")
            _plain_log(ax.xaxis)
        if scale == "one_minus_log":
            # The axis is 1 - value on a log scale; its ticks read as the values (0.9, 0.99, 0.999).
            ax.xaxis.set_major_formatter(FuncFormatter(_one_minus_label))
            ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel(f"{name} (log scale of 1 - {name})" if scale == "one_minus_log"
                      else f"{name} (log scale)" if scale == "log" else name)
    _scatter_scored(ax, good, _rounds(trials), position)
    if len(good):
        best = ranked(good, mode).head(1)   # the leaderboard's best, ties and all
        ax.scatter(position(best), best["score"], marker="*", s=180, color="gold", edgecolor="black",
                   zorder=3, label=f"best (trial {int(best['trial_id'].iloc[0])})")
    _failed_along_bottom(ax, position(bad) if len(bad) else np.empty(0), scored=len(good))
    if not len(good) and not len(bad):
        return _no_data(fig, ax, f"no trials with {name}")
    return _finish(fig, ax, ylabel=metric, title=f"{metric} against {name}")


@literal_text
def learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str, top: int = 5) -> Figure:
    """`metric` per epoch of every trial: the `top` best completed trials in colour (pruned ones
    compete only when none completed: a pruned score is the best of fewer epochs), other completed
    ones light blue, pruned and failed ones faded grey, each coloured trial's best epoch marked; the
    legend names only what is drawn, and says how many lines lie off the axis. The y axis fits the
    coloured trials' later epochs (`_fit_to_best`), where they are compared, rather than everything
    down to the worst trial's first epoch."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    if epochs.empty or metric not in epochs or "trial_id" not in epochs:
        return _no_data(fig, ax, f"no {metric} per epoch recorded")

    good, _ = _scored(trials)
    completed = good[good["status"] == Status.COMPLETED]
    order = ranked(completed if len(completed) else good, mode)
    best_ids = order["trial_id"].head(top).tolist()
    status = dict(zip(trials["trial_id"], trials["status"]))
    faint: dict[str, list[pd.DataFrame]] = {"other completed": [], "pruned or failed (stopped early)": []}
    for trial_id, rows in epochs.groupby("trial_id", sort=True):
        if trial_id in best_ids:
            continue
        faded = status.get(trial_id) != Status.COMPLETED
        ax.plot(rows["epoch"], rows[metric], color=PRUNED if faded else "tab:blue",
                alpha=0.3 if faded else 0.25, linewidth=0.8, zorder=1)
        faint["pruned or failed (stopped early)" if faded else "other completed"].append(rows)
    colours = matplotlib.colormaps["tab10"]
    for rank, trial_id in enumerate(best_ids):
        rows = epochs[epochs["trial_id"] == trial_id]
        if rows.empty:
            continue
        score = float(order.loc[order["trial_id"] == trial_id, "score"].iloc[0])
        colour = colours((rank + 1) % 10)
        pruned = "" if status.get(trial_id) == Status.COMPLETED else ", pruned"
        ax.plot(rows["epoch"], rows[metric], color=colour, linewidth=2, zorder=2,
                label=f"trial {int(trial_id)} ({score:.4g}{pruned})")
        at = _best_index(rows[metric].astype(float), mode)
        ax.scatter([rows.at[at, "epoch"]], [rows.at[at, metric]], color=colour, edgecolor="black", zorder=3)
    fitted = _fit_to_best(ax, epochs[epochs["trial_id"].isin(best_ids)], metric)
    for (label, lines), colour in zip(faint.items(), ("tab:blue", PRUNED)):
        if lines:   # a legend entry only for lines that are there, saying how many the axis leaves out
            off = sum(not _in_view(rows[metric], *ax.get_ylim()) for rows in lines)
            ax.plot([], [], color=colour, alpha=0.5, label=f"{label} ({len(lines)}" + (f", {off} off the axis)" if off else ")"))
    which = "completed " if len(completed) else ""
    named = f"the best {which}trial" if len(best_ids) == 1 else f"the {len(best_ids)} best {which}trials"
    title = f"learning curves: {named}" + (" (axis fitted to them)" if fitted else "")
    return _finish(fig, ax, ylabel=metric, title=title, xlabel="epoch")


def _in_view(values: pd.Series, low: float, high: float) -> bool:
    """Whether any of a line's `values` lies within the y axis' [low, high]."""
    v = pd.to_numeric(values, errors="coerce").to_numpy(float)
    return bool(((v >= low) & (v <= high)).any())


FIT_MARGIN = 0.15  # of the fitted span, added above and below


def _fit_to_best(ax: Any, best_rows: pd.DataFrame, metric: str) -> bool:
    """Narrow the y axis to the best trials' second halves (epochs from half their last one on),
    with a margin; True when that narrowed it. Early epochs and worse trials run off the edge: a
    practitioner compares the best trials where they end, which a 0-1 span squashes into a band."""
    if best_rows.empty:
        return False
    last = best_rows.groupby("trial_id")["epoch"].transform("max")
    values = pd.to_numeric(best_rows.loc[best_rows["epoch"] >= last / 2, metric], errors="coerce").to_numpy(float)
    values = values[np.isfinite(values)]
    if not values.size:
        return False
    lo, hi = float(values.min()), float(values.max())
    pad = FIT_MARGIN * (hi - lo) or 0.05 * abs(hi) or 0.05
    low, high = ax.get_ylim()
    if lo - pad <= low and hi + pad >= high:
        return False
    ax.set_ylim(max(lo - pad, low), min(hi + pad, high))
    return True


@literal_text
def score_by_trial(trials: pd.DataFrame, metric: str, mode: str) -> Figure:
    """Score against trial id, coloured by round when there are several (coarse-to-fine rounds show
    as bands), pruned trials hollow (the legend says their score is from fewer epochs), failed ones
    red crosses along the bottom, and the best score so far as a line."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    if trials.empty:
        return _no_data(fig, ax, "no trials")
    good, bad = _scored(trials)
    _scatter_scored(ax, good, _rounds(trials), lambda frame: frame["trial_id"].to_numpy(dtype=float))
    if len(good):
        ordered = good.sort_values("trial_id")
        running = ordered["score"].astype(float)
        running = running.cummax() if Mode(mode) is Mode.MAX else running.cummin()
        ax.step(ordered["trial_id"], running, where="post", color="black", linewidth=1, label="best so far")
    _failed_along_bottom(ax, bad["trial_id"].to_numpy(dtype=float), scored=len(good))
    return _finish(fig, ax, ylabel=metric, title=f"{metric} by trial", xlabel="trial id (order of sampling)")


def marks(events: pd.DataFrame) -> list[tuple[float, str]]:
    """(epoch, kind) of each line the timeline draws, one per kind and epoch, kinds in `EVENT_STYLES`.

    A rollback a nudge asked for is a rollback: caviar records it as its own event, and a run of an
    older caviar, which recorded only the nudge ("... rollback" in its detail), gets one drawn too.
    """
    if events.empty or "event" not in events or "epoch" not in events:
        return []
    found: dict[tuple[float, str], None] = {}
    details = events["detail"] if "detail" in events else pd.Series("", index=events.index)
    epochs = pd.to_numeric(events["epoch"], errors="coerce").astype(float)   # a missing epoch: NaN
    for epoch, event, detail in zip(epochs, events["event"], details):
        if not math.isfinite(float(epoch)):
            continue
        kinds = [str(event)] + (["rollback"] if event == "nudge" and "rollback" in str(detail).split() else [])
        found.update(((float(epoch), kind), None) for kind in kinds if kind in EVENT_STYLES)
    return list(found)


@literal_text
def babysit_timeline(epochs: pd.DataFrame, events: pd.DataFrame, metric: str, mode: str) -> Figure:
    """A babysat run epoch by epoch: `metric` on top, the learning rate (log axis) below, with
    rollbacks, divergences, plateaus, nudges and the stop as vertical lines on both."""
    fig = Figure(figsize=(SIZE[0], SIZE[1] * 1.4))
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    if epochs.empty or "epoch" not in epochs:
        return _no_data(fig, top, "no epochs recorded")
    if metric in epochs:
        top.plot(epochs["epoch"], epochs[metric], marker="o", markersize=3, color="tab:blue", label=metric)
        values = epochs[metric].astype(float)
        if values.notna().any():
            at = _best_index(values, mode)
            top.scatter([epochs.at[at, "epoch"]], [values[at]], marker="*", s=180, color="gold",
                        edgecolor="black", zorder=3, label=f"best ({values[at]:.4g})")
    if "learning_rate" in epochs:
        # Each epoch's rate centred on it: a decision at epoch e shows as a step between e and e + 1.
        bottom.step(epochs["epoch"], epochs["learning_rate"], where="mid", color="tab:green", marker="o",
                    markersize=3)
        if (epochs["learning_rate"] > 0).all():
            bottom.set_yscale("log")
            _plain_log(bottom.yaxis)
    seen: set[str] = set()
    for epoch, event in marks(events):
        style = EVENT_STYLES[event]
        for ax in (top, bottom):
            ax.axvline(epoch, color=style[0], linestyle=style[1], linewidth=1.2, alpha=0.8,
                       label=event if ax is top and event not in seen else None)
        seen.add(event)
    top.set_ylabel(metric)
    top.set_title(f"babysat run: {metric} and learning rate per epoch")
    top.grid(True, alpha=0.3)
    top.legend(fontsize="small")
    bottom.set_ylabel("learning rate")
    bottom.set_xlabel("epoch")
    bottom.xaxis.set_major_locator(MaxNLocator(integer=True))
    bottom.grid(True, alpha=0.3)
    fig.tight_layout()
    return fig


@literal_text
def importance_bars(table: pd.DataFrame) -> Figure:
    """Horizontal bars of `importance` per hyperparameter, most important on top (NaN as 0, labelled)."""
    fig = Figure(figsize=(SIZE[0], max(2.0, 0.45 * len(table) + 1.2)))
    ax = fig.add_subplot()
    if table.empty:
        return _no_data(fig, ax, "no searched hyperparameters")
    values = table["importance"].astype(float)
    ys = np.arange(len(table))[::-1]
    ax.barh(ys, values.fillna(0.0), color="tab:blue")
    ax.set_yticks(ys, table["param"].astype(str))
    for y, v in zip(ys, values):
        ax.text(max(v, 0.0) if math.isfinite(v) else 0.0, y, f" {v:.2f}" if math.isfinite(v) else " n/a",
                va="center", fontsize="small")
    ax.set_xlim(0, max(1.0, float(values.max()) if values.notna().any() else 1.0) * 1.1)
    ax.set_xlabel("share of score variance explained (epsilon squared)")
    ax.set_title("which hyperparameters mattered")
    fig.tight_layout()
    return fig
