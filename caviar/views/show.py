"""`caviar show` and `caviar compare`: a run's results as fixed-width text tables.

    python -m caviar show NAME [--top N]      # status counts and the best trials (babysit: epochs + events)
    python -m caviar compare NAME NAME ...    # one row per run: best score, trials, compute, epochs to best

NAME is a run name under `--out` or a path to a run folder. The read side is `caviar.store.reader`;
this module only decides what to show and how numbers read: learning rates and other log-scale values
in scientific notation, averaging betas with enough digits to tell 0.999 from 0.9999.
`leaderboard(trials, mode, top)` is the text table the parallel driver prints at the end of a sweep.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import pandas as pd

from caviar.store.ranking import ranked
from caviar.store.vocabulary import PARAM_PREFIX, STATUSES, Mode, RunKind, judged_by
from caviar.views.population import COPY_EVENTS, is_population, schedule, schedule_text

MAX_TEXT = 60  # characters of an error message or detail shown in a terminal's table cell
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"  # a moment (UTC) in a table cell


# ------------------------------------------------------------------------------------------------ runs


def run_path(name: str, out: str | Path = "results") -> Path:
    """The folder a user means by NAME: `out/NAME` if it exists, else NAME as a path.

    Raises ValueError when neither is a folder (whether it holds a run is results_io's call).
    """
    for candidate in (Path(out) / name, Path(name)):
        if candidate.is_dir():
            return candidate
    raise ValueError(f"run: no run {name!r} in {str(out)!r} (give a run name under --out or a path to a run folder)")


def load_run(name: str, out: str | Path = "results") -> Any:
    """The run NAME (see `run_path`) read by `caviar.store.reader.load`; ValueError if it is not a run."""
    from caviar.store.reader import load

    return load(run_path(name, out))


def scales_of(space: Any) -> dict[str, str]:
    """name -> "linear" | "log" | "one_minus_log" | "category" for every searched dimension.

    space: the job's [space] table as read from job.toml (name -> TOML value), or a
    `caviar.config.space.SearchSpace`. Fixed values are left out; an entry this version cannot parse is
    guessed from its kind's name, so an old job.toml still reads.
    """
    from caviar.config.space import Choice, Fixed, parse_dimension

    dimensions = getattr(space, "dimensions", None)
    items = dict(dimensions) if dimensions is not None else dict(space or {})
    scales: dict[str, str] = {}
    for name, spec in items.items():
        try:
            dim = spec if hasattr(spec, "kind") else parse_dimension(spec)
        except (ValueError, TypeError):
            kind = next(iter(spec), "") if isinstance(spec, Mapping) else ""
            scales[name] = ("category" if "choice" in kind else "one_minus_log" if "one_minus" in kind
                            else "log" if "log" in kind else "linear")
            continue
        if isinstance(dim, Fixed):
            continue
        scales[name] = "category" if isinstance(dim, Choice) else getattr(dim, "scale", "linear")
    return scales


def param_names(trials: pd.DataFrame) -> list[str]:
    """Searched hyperparameters of a trials table, in column order, without the `params_` prefix."""
    return [c[len(PARAM_PREFIX):] for c in trials.columns if c.startswith(PARAM_PREFIX)]


# ---------------------------------------------------------------------------------------- number format


def _beta_digits(values: np.ndarray) -> int:
    """Decimals that show 1 - beta to two significant digits (0.9 -> 3, 0.9995 -> 6)."""
    gaps = 1.0 - values[(values < 1.0)]
    smallest = float(gaps.min()) if gaps.size else 0.1
    return int(min(10, max(3, math.ceil(-math.log10(smallest)) + 2)))


def _float_formatter(values: np.ndarray, name: str, scale: str | None) -> Callable[[float], str]:
    finite = values[np.isfinite(values)]
    magnitude = float(np.abs(finite).max()) if finite.size else 0.0
    positive = finite.size > 0 and bool((finite > 0).all())
    spans_decades = positive and float(finite.max() / finite.min()) >= 1000.0
    if "seconds" in name or name.endswith("_s"):  # durations: tenths, or milliseconds when short
        return (lambda v: f"{v:.1f}") if magnitude >= 1.0 else (lambda v: f"{v:.3f}")
    if scale == "log" or "learning_rate" in name or name == "lr" or (scale is None and spans_decades) \
            or 0.0 < magnitude < 1e-2 or magnitude >= 1e6:
        return lambda v: f"{v:.2e}"
    if scale == "one_minus_log":
        digits = _beta_digits(finite)
        return lambda v: f"{v:.{digits}f}"
    return lambda v: f"{v:.4f}"


def _formatter(column: pd.Series, name: str, scale: str | None,
               max_text: int | None = MAX_TEXT) -> Callable[[Any], str]:
    if pd.api.types.is_bool_dtype(column):
        return str
    if isinstance(column.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(column):
        return lambda v: pd.Timestamp(v).strftime(TIME_FORMAT)   # UTC, as stored: to the second
    if pd.api.types.is_integer_dtype(column):
        return lambda v: str(int(v))
    if pd.api.types.is_float_dtype(column):
        fmt = _float_formatter(column.to_numpy(dtype=float, na_value=np.nan), name, scale)
        return lambda v: fmt(float(v))
    return lambda v: _short_text(v, max_text)


def _short_text(value: Any, max_text: int | None = MAX_TEXT) -> str:
    """One line of at most `max_text` characters (an error may hold a whole traceback); None: whole."""
    text = " ".join(str(value).split())
    return text if max_text is None or len(text) <= max_text else text[: max_text - 3] + "..."


def format_frame(frame: pd.DataFrame, scales: Mapping[str, str] | None = None, *,
                 max_text: int | None = MAX_TEXT) -> pd.DataFrame:
    """The same table with every cell as display text; missing values read "-".

    scales: column name -> "log" | "one_minus_log" | ... (a `params_` column looks up its bare name).
    Without a scale a column is read by its numbers: anything spanning three decades or below 0.01
    is in scientific notation, seconds with one decimal (three below a second), everything else with four;
    moments as UTC date and time to the second. Text is cut at `max_text` characters (None: never,
    for a page that wraps it).
    """
    scales = dict(scales or {})
    text = {}
    for name in frame.columns:
        column = frame[name]
        bare = name[len(PARAM_PREFIX):] if name.startswith(PARAM_PREFIX) else name
        fmt = _formatter(column, bare, scales.get(bare), max_text)
        text[name] = [("-" if _missing(v) else fmt(v)) for v in column.tolist()]
    return pd.DataFrame(text, index=frame.index, columns=frame.columns, dtype=object)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, (float, np.floating)) and math.isnan(value)) or value is pd.NA


def format_table(frame: pd.DataFrame, scales: Mapping[str, str] | None = None) -> str:
    """A fixed-width text table (no index) of `frame`, numbers formatted as by `format_frame`:
    numbers and their headers right-aligned, text left-aligned, two spaces between columns."""
    if frame.empty:
        return "(none)"
    text = format_frame(frame, scales)
    columns = []
    for name in frame.columns:
        cells = [str(name)] + list(text[name])
        width = max(len(c) for c in cells)
        numeric = pd.api.types.is_numeric_dtype(frame[name]) and not pd.api.types.is_bool_dtype(frame[name])
        columns.append([c.rjust(width) if numeric else c.ljust(width) for c in cells])
    return "\n".join("  ".join(row).rstrip() for row in zip(*columns))


# ---------------------------------------------------------------------------------------------- sweeps


def leaderboard_frame(trials: pd.DataFrame, metric_mode: str, top: int = 10) -> pd.DataFrame:
    """The `top` best trials as a typed table, best first (failed last, see `ranked`).

    trials: a trials table (the README's "Results" columns). metric_mode: the job's [search] mode, "max" or "min".
    Columns: trial_id, status, score, each hyperparameter under its bare name, epochs, seconds, then
    round (only when the sweep had more than one) and error (only when a shown trial failed).
    """
    if top < 1:
        raise ValueError(f"top: must be at least 1, got {top}")
    board = ranked(trials, metric_mode).head(top)
    params = [c for c in trials.columns if c.startswith(PARAM_PREFIX)]
    head = [c for c in ("trial_id", "status", "score") if c in trials]
    tail = [c for c in ("epochs", "seconds") if c in trials]
    if "round" in trials and trials["round"].nunique() > 1:
        tail.append("round")
    if "error" in trials and board["error"].notna().any():
        tail.append("error")
    board = board[head + params + tail]
    taken = set(head + tail)
    # A hyperparameter called like a trial column (a searched `epochs`) keeps its prefix.
    return board.rename(columns={c: c[len(PARAM_PREFIX):] for c in params if c[len(PARAM_PREFIX):] not in taken}) \
        .reset_index(drop=True)


def leaderboard(trials: pd.DataFrame, metric_mode: str, top: int = 10,
                scales: Mapping[str, str] | None = None) -> str:
    """The `top` best trials as a fixed-width text table, ready to print (`show`, the end of a sweep).

    scales: optional name -> "log" | "one_minus_log" | ... (`scales_of(job.space)`); without it
    numbers are formatted by their magnitude. The typed table is `leaderboard_frame`.
    """
    return format_table(leaderboard_frame(trials, metric_mode, top), scales)


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    """{"completed": n, "pruned": n, "failed": n} (every status, zero when absent)."""
    counts = trials["status"].value_counts() if "status" in trials else pd.Series(dtype=int)
    return {s: int(counts.get(s, 0)) for s in STATUSES}


def best_epoch(epochs: pd.DataFrame, metric: str, mode: str) -> tuple[float, float]:
    """(epoch, value) of the first epoch row with the best `metric` per `mode`; NaNs when unknown."""
    if epochs.empty or metric not in epochs or "epoch" not in epochs:
        return math.nan, math.nan
    values = pd.to_numeric(epochs[metric], errors="coerce")
    if values.notna().sum() == 0:
        return math.nan, math.nan
    at = values.idxmax() if Mode.of(mode) is Mode.MAX else values.idxmin()
    return float(epochs.at[at, "epoch"]), float(values[at])


def summary(run: Any) -> dict[str, Any]:
    """The numbers `compare` shows for one run.

    run: a `caviar.store.reader.Run`. Keys: run, kind, metric, mode, best, best_trial (sweeps), trials
    (sweeps), epochs_run (epochs trained in all; a population: its epochs rows), compute_s (sum of
    trial seconds, babysit: of epoch seconds), epochs_to_best (sweeps: the epoch at which the best
    trial reached its score; babysit: the epoch of the best score).
    """
    metric, mode = judged_by(run.job, run.kind)
    row: dict[str, Any] = {"run": run.name, "kind": run.kind, "metric": metric, "mode": mode, "best": math.nan,
                           "best_trial": pd.NA, "trials": pd.NA, "epochs_run": pd.NA, "compute_s": math.nan,
                           "epochs_to_best": pd.NA}
    trials, epochs = run.trials, run.epochs
    if run.kind == RunKind.BABYSIT:
        epoch, value = best_epoch(epochs, metric, mode)
        row.update(best=value, epochs_run=len(epochs), epochs_to_best=_int_or_na(epoch),
                   compute_s=float(epochs["seconds"].sum()) if "seconds" in epochs else math.nan)
        return row
    row["trials"] = len(trials)
    if is_population(run.job) and "trial_id" in epochs:   # what each member trained, not what it was given
        row["epochs_run"] = len(epochs)
    elif "epochs" in trials:
        row["epochs_run"] = int(trials["epochs"].sum())
    if "seconds" in trials:
        row["compute_s"] = float(trials["seconds"].sum())
    order = ranked(trials, mode)
    if not order.empty and math.isfinite(best := float(order["score"].iloc[0])):
        trial_id = order["trial_id"].iloc[0]
        row.update(best=best, best_trial=int(trial_id))
        if "trial_id" in epochs:
            row["epochs_to_best"] = _int_or_na(best_epoch(epochs[epochs["trial_id"] == trial_id], metric, mode)[0])
    return row


def event_counts(events: pd.DataFrame) -> dict[str, int]:
    """A population's decisions: {"exploit": n, "diverged": n, "rollback": n, "improved": n} (zero when absent)."""
    counts = events["event"].value_counts() if "event" in events else pd.Series(dtype=int)
    return {event: int(counts.get(event, 0)) for event in (*COPY_EVENTS, "improved")}


def _int_or_na(value: float) -> Any:
    return int(value) if math.isfinite(value) else pd.NA


def compare_table(runs: list[Any]) -> pd.DataFrame:
    """One row per run (see `summary`), in the order given; sweeps and babysat runs side by side."""
    frame = pd.DataFrame([summary(run) for run in runs])
    for column in ("best_trial", "trials", "epochs_run", "epochs_to_best"):
        frame[column] = frame[column].astype("Int64")
    return frame


# --------------------------------------------------------------------------------------------- show


def _seconds(value: float) -> str:
    return f"{value:.1f} s" if value >= 1.0 else f"{value:.3f} s"


def _sweep_text(run: Any, top: int) -> list[str]:
    trials = run.trials
    info = summary(run)
    counts = status_counts(trials)
    if is_population(run.job):   # a member ends completed or failed; each divergence is an event (replaced)
        decisions = ", ".join(f"{n} {event}" for event, n in event_counts(run.events).items())
        lines = [f"trials: {len(trials)} members ({counts['completed']} completed, {counts['failed']} failed); "
                 f"events: {decisions}"]
    else:
        lines = [f"trials: {len(trials)} ({', '.join(f'{n} {s}' for s, n in counts.items())})"]
    if trials.empty:
        return lines + ["", "no finished trials yet"]
    if math.isfinite(info["best"]):
        at = "" if info["epochs_to_best"] is pd.NA else f", epoch {info['epochs_to_best']}"
        lines.append(f"best: {info['best']:.4f} (trial {info['best_trial']}{at})")
    lines.append(f"compute: {_seconds(info['compute_s'])} over {info['epochs_run']} epochs")
    shown = min(top, len(trials))
    lines += ["", f"top {shown} of {len(trials)} trials", leaderboard(trials, info["mode"], top, scales_of(run.job.get("space")))]
    return lines


def babysit_epochs(epochs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """The epochs table in reading order: epoch, learning_rate, the job's metric, other metrics, seconds,
    time, decision."""
    first = [c for c in ("epoch", "learning_rate", metric) if c in epochs]
    last = [c for c in ("seconds", "time", "decision") if c in epochs]
    return epochs[first + [c for c in epochs.columns if c not in first + last] + last]


def _babysit_text(run: Any) -> list[str]:
    epochs, events = run.epochs, run.events
    info = summary(run)
    lines = [f"epochs: {len(epochs)}"]
    if math.isfinite(info["best"]):
        lines[0] += f", best {info['best']:.4f} at epoch {info['epochs_to_best']}"
    if not events.empty and "event" in events:
        counts = events["event"].value_counts()
        lines.append("events: " + ", ".join(f"{n} {event}" for event, n in counts.items()))
    if math.isfinite(info["compute_s"]):
        lines.append(f"compute: {_seconds(info['compute_s'])}")
    lines += ["", "epochs", format_table(babysit_epochs(epochs, info["metric"]))]
    lines += ["", "events", format_table(events)]
    return lines


def show_text(run: Any, top: int = 10) -> str:
    """What `caviar show` prints for a loaded run."""
    if top < 1:
        raise ValueError(f"top: must be at least 1, got {top}")
    metric, mode = judged_by(run.job, run.kind)
    lines = [f"{run.kind} {run.name}  ({run.path})", f"metric: {metric} ({mode})"]
    lines += _babysit_text(run) if run.kind == RunKind.BABYSIT else _sweep_text(run, top)
    if is_population(run.job) and not run.trials.empty:
        lines += ["", schedule_text(run)]
    return "\n".join(lines)


def show_json(run: Any, top: int = 10) -> dict[str, Any]:
    """What `show` says, as plain JSON values (NaN as null): the run, its summary (`summary`), and
    for a sweep its status counts and `top` best trials, for a babysat run its epochs and events; a
    population adds its events' counts (`event_counts`) and its best member's schedule."""
    def plain(value: Any) -> Any:   # every float exactly, missing values as null
        value = value.item() if isinstance(value, np.generic) else value
        if isinstance(value, pd.Timestamp) and not _missing(value):
            return value.isoformat()   # a moment, as ISO 8601 text with its UTC offset
        return None if _missing(value) else value

    def records(frame: pd.DataFrame) -> list[dict[str, Any]]:
        return [{k: plain(v) for k, v in row.items()} for row in frame.to_dict("records")]

    info = {k: plain(v) for k, v in summary(run).items()}
    shown: dict[str, Any] = {"run": run.name, "kind": str(run.kind), "path": str(run.path), "summary": info}
    if run.kind == RunKind.BABYSIT:
        shown.update(epochs=records(run.epochs), events=records(run.events))
    else:
        shown.update(counts=status_counts(run.trials), top=records(ranked(run.trials, info["mode"]).head(top)))
    if is_population(run.job):   # its decisions, and the best member's discovered schedule
        shown.update(events=event_counts(run.events), schedule=records(schedule(run)))
    return shown


def show_command(args: argparse.Namespace) -> int:
    """`caviar show NAME [--top N] [--json] [--out DIR]`."""
    run = load_run(args.run, args.out)
    if getattr(args, "json", False):
        import json

        if args.top < 1:
            raise ValueError(f"--top: must be at least 1, got {args.top}")
        print(json.dumps(show_json(run, args.top), default=str))
    else:
        print(show_text(run, args.top))
    return 0


def compare_command(args: argparse.Namespace) -> int:
    """`caviar compare NAME NAME ... [--out DIR]`."""
    runs = [load_run(name, args.out) for name in args.runs]
    print(format_table(compare_table(runs)))
    return 0
