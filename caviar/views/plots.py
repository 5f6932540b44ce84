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
from matplotlib.ticker import FuncFormatter, MaxNLocator

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
    grey, failed trials red crosses along the bottom edge, the best trial a star.
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
        if scale == "one_minus_log":
            # The axis is 1 - value on a log scale; its ticks read as the values (0.9, 0.99, 0.999).
            ax.xaxis.set_major_formatter(FuncFormatter(_one_minus_label))
        ax.set_xlabel(f"{name} (log scale of 1 - {name})" if scale == "one_minus_log"
                      else f"{name} (log scale)" if scale == "log" else name)
    for status, style in ((Status.COMPLETED, dict(color="tab:blue", alpha=0.8)), (Status.PRUNED, dict(color=PRUNED, alpha=0.6))):
        part = good[good["status"] == status]
        if len(part):
            ax.scatter(position(part), part["score"], s=22, label=f"{status} ({len(part)})", **style)
    if len(good):
        best = ranked(good, mode).head(1)   # the leaderboard's best, ties and all
        ax.scatter(position(best), best["score"], marker="*", s=180, color="gold", edgecolor="black",
                   zorder=3, label=f"best (trial {int(best['trial_id'].iloc[0])})")
    if len(bad):
        ax.scatter(position(bad), np.zeros(len(bad)), marker="x", color=FAILED, clip_on=False,
                   transform=ax.get_xaxis_transform(), label=f"failed ({len(bad)})")
    if not len(good) and not len(bad):
        return _no_data(fig, ax, f"no trials with {name}")
    return _finish(fig, ax, ylabel=metric, title=f"{metric} against {name}")


@literal_text
def learning_curves(epochs: pd.DataFrame, trials: pd.DataFrame, metric: str, mode: str, top: int = 5) -> Figure:
    """`metric` per epoch of every trial: the `top` best in colour, other completed ones light blue,
    pruned ones faded grey, each top trial's best epoch marked."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    if epochs.empty or metric not in epochs or "trial_id" not in epochs:
        return _no_data(fig, ax, f"no {metric} per epoch recorded")

    good, _ = _scored(trials)
    order = ranked(good, mode)
    best_ids = order["trial_id"].head(top).tolist()
    status = dict(zip(trials["trial_id"], trials["status"]))
    for trial_id, rows in epochs.groupby("trial_id", sort=True):
        if trial_id in best_ids:
            continue
        faded = status.get(trial_id) != Status.COMPLETED
        ax.plot(rows["epoch"], rows[metric], color=PRUNED if faded else "tab:blue",
                alpha=0.3 if faded else 0.25, linewidth=0.8, zorder=1)
    ax.plot([], [], color=PRUNED, alpha=0.5, label="pruned / failed")
    ax.plot([], [], color="tab:blue", alpha=0.4, label="other completed")
    colours = matplotlib.colormaps["tab10"]
    for rank, trial_id in enumerate(best_ids):
        rows = epochs[epochs["trial_id"] == trial_id]
        if rows.empty:
            continue
        score = float(order.loc[order["trial_id"] == trial_id, "score"].iloc[0])
        colour = colours((rank + 1) % 10)
        ax.plot(rows["epoch"], rows[metric], color=colour, linewidth=2, zorder=2,
                label=f"trial {int(trial_id)} ({score:.4g})")
        at = _best_index(rows[metric].astype(float), mode)
        ax.scatter([rows.at[at, "epoch"]], [rows.at[at, metric]], color=colour, edgecolor="black", zorder=3)
    return _finish(fig, ax, ylabel=metric, title=f"learning curves: the {len(best_ids)} best trials",
                   xlabel="epoch")


@literal_text
def score_by_trial(trials: pd.DataFrame, metric: str, mode: str) -> Figure:
    """Score against trial id, coloured by round (coarse-to-fine rounds show as bands), pruned
    trials hollow, failed ones red crosses along the bottom, and the best score so far as a line."""
    fig = Figure(figsize=SIZE)
    ax = fig.add_subplot()
    if trials.empty:
        return _no_data(fig, ax, "no trials")
    good, bad = _scored(trials)
    rounds = trials["round"] if "round" in trials else pd.Series(0, index=trials.index)
    colours = matplotlib.colormaps["tab10"]
    for i, round_ in enumerate(sorted(rounds.unique())):
        part = good[rounds.loc[good.index] == round_]
        colour = colours(i % 10)
        done, pruned = part[part["status"] == Status.COMPLETED], part[part["status"] != Status.COMPLETED]
        ax.scatter(done["trial_id"], done["score"], color=colour, s=24, label=f"round {round_}")
        ax.scatter(pruned["trial_id"], pruned["score"], facecolor="none", edgecolor=colour, s=24)
    if (good["status"] != Status.COMPLETED).any():
        ax.scatter([], [], facecolor="none", edgecolor="0.3", label="pruned (hollow)")
    if len(good):
        ordered = good.sort_values("trial_id")
        running = ordered["score"].astype(float)
        running = running.cummax() if Mode(mode) is Mode.MAX else running.cummin()
        ax.step(ordered["trial_id"], running, where="post", color="black", linewidth=1, label="best so far")
    if len(bad):
        ax.scatter(bad["trial_id"], np.zeros(len(bad)), marker="x", color=FAILED, clip_on=False,
                   transform=ax.get_xaxis_transform(), label=f"failed ({len(bad)})")
    return _finish(fig, ax, ylabel=metric, title=f"{metric} by trial", xlabel="trial id (order of sampling)")


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
    seen: set[str] = set()
    for row in events.itertuples(index=False) if not events.empty else ():
        style = EVENT_STYLES.get(str(row.event))
        if style is None or not math.isfinite(float(row.epoch)):
            continue
        for ax in (top, bottom):
            ax.axvline(float(row.epoch), color=style[0], linestyle=style[1], linewidth=1.2, alpha=0.8,
                       label=str(row.event) if ax is top and row.event not in seen else None)
        seen.add(str(row.event))
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
