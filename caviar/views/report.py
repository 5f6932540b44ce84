"""`caviar report NAME`: one self-contained HTML page about a run, figures and all.

    OUT/NAME/report.html          open it in a browser, mail it, copy it anywhere: no JavaScript,
                                  no network, nothing beside it (each figure is a PNG inside the page)

A sweep gets: the best trials, every failure with its whole error, which hyperparameters mattered
(`caviar.views.importance`), the score against each hyperparameter (on the scale it was searched
on), learning curves and the score by trial order. A babysat run gets its timeline (score and
learning rate per epoch, with rollbacks, plateaus and nudges marked), its epochs and its events.
Pruned trials' scores come from fewer epochs than finished ones': the page says so wherever both
appear, and the importance ranking leaves them out when enough trials completed. The page is
written atomically (temp file in the same folder, then `os.replace`).

A run folder may be someone else's, so nothing in it is followed out of it: a `report.html` that is
a symlink is replaced by a real file of our own (the link is removed, its target left untouched), a
`report.html` that is a folder is refused before anything is written. Every text from the folder
is HTML-escaped on the page and drawn literally in the figures. An earlier caviar wrote the figures
into a `report/` folder beside the page: its PNG files are removed (a link among them as a link,
never its target), then the folder if nothing else is in it; a `report` that is a link or a file is
left alone.
"""

from __future__ import annotations

import argparse
import base64
import html
from pathlib import Path
from typing import Any

import pandas as pd

from caviar.store.atomic import atomic_write_bytes
from caviar.store.ranking import ranked
from caviar.store.vocabulary import RunKind, Status, judged_by
from caviar.views import population, show
from caviar.views.importance import MIN_TRIALS, importance, scored

REPORT_FILE = "report.html"
OLD_FIGURE_DIR = "report"  # where caviar 0.1 put the figures; the page no longer needs it

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { padding: 0.2em 0.7em; text-align: right; border-bottom: 1px solid #eee; font-family: monospace; }
td { max-width: 48em; overflow-wrap: anywhere; vertical-align: top; }
th { background: #f4f4f4; }
.figures img { max-width: 49%; height: auto; }
img { max-width: 100%; height: auto; }
p.note { color: #555; max-width: 60em; }
"""

IMPORTANCE_NOTE = (
    "For each hyperparameter, the trials with a score are grouped by its value (one group per choice, "
    "or up to 5 quantile bins of a continuous value, which makes the measure the same on a linear or "
    "log scale), and a one-way analysis of variance asks what share of the score's variance the "
    "group means explain. <b>importance</b> is that share corrected for the groups explaining some "
    "variance by chance (epsilon squared: about 0 when the hyperparameter does not matter, 1 when "
    "it explains every difference); <b>eta_squared</b> is the uncorrected share; <b>spearman</b> "
    "is the rank correlation of value and score (its sign says which way the score moves). Each "
    "hyperparameter is judged on its own, so read it as a ranking, not as parts of a whole."
)
PRUNED_NOTE = ("Hollow points are pruned trials: the early stopper ended them, so their score is the best "
               "of fewer epochs than a finished trial's. Compare them with each other, not with the filled points.")


def _own_page(folder: Path) -> Path:
    """The page's path, made ours: a symlink there (a received folder's, pointing anywhere, dangling
    or not) is removed, never followed; a folder there is the user's and is refused (FileExistsError,
    one line) before anything is drawn."""
    page = folder / REPORT_FILE
    if not page.is_symlink() and page.is_dir():
        raise FileExistsError(f"{page} is a folder; move it away to write the report there")
    if page.is_symlink():
        page.unlink()
    return page


def _drop_old_figures(folder: Path) -> None:
    """Remove the PNG files an earlier caviar wrote into `report/` (links as links), then the folder
    if it is empty; a `report` that is a link or not a folder is not ours to touch."""
    old = folder / OLD_FIGURE_DIR
    if old.is_symlink() or not old.is_dir():
        return
    for entry in old.iterdir():
        if entry.name.endswith(".png") and (entry.is_symlink() or entry.is_file()):
            entry.unlink(missing_ok=True)
    if not any(old.iterdir()):
        old.rmdir()


def _table(frame: pd.DataFrame, scales: dict[str, str] | None = None) -> str:
    """`frame` as an HTML table, every text escaped and whole (a page wraps it; a terminal cuts it)."""
    if frame.empty:
        return "<p>(none)</p>"
    return show.format_frame(frame, scales, max_text=None).to_html(index=False, border=0, escape=True)


class _Page:
    """The report being built: HTML parts in reading order, figures inside them."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def add(self, text: str) -> None:
        self.parts.append(text)

    @staticmethod
    def figure(stem: str, fig: Any, alt: str) -> str:
        """`fig` as an <img> holding its PNG (base64): the page needs no file beside it. `stem` names
        the figure for a reader of the HTML (`data-figure`), escaped as any text from the folder."""
        from caviar.views.plots import png_bytes

        data = base64.b64encode(png_bytes(fig)).decode("ascii")
        return (f'<img data-figure="{html.escape(stem)}" alt="{html.escape(alt)}" '
                f'src="data:image/png;base64,{data}">')


def _when(run: Any) -> str:
    """ "started ... , last result ... (UTC)" from the run's time columns; "" for a run without them."""
    moments = [frame[column] for frame, column in ((run.trials, "started_at"), (run.trials, "finished_at"),
                                                   (run.epochs, "time"), (run.events, "time")) if column in frame]
    values = pd.concat(moments).dropna() if moments else pd.Series(dtype=object)
    if values.empty:
        return ""
    first, last = (pd.Timestamp(v).strftime(show.TIME_FORMAT) for v in (values.min(), values.max()))
    return f"; started {first}, last result {last} (UTC)"


def _failures(page: _Page, trials: pd.DataFrame) -> None:
    """Every failed trial with its whole error, newest last: an all-failed sweep shows each one."""
    failed = trials[trials["status"] == Status.FAILED].sort_values("trial_id")
    if failed.empty:
        return
    every = " (every trial)" if len(failed) == len(trials) else ""
    columns = [c for c in ("trial_id", "epochs", "seconds", "finished_at", "error") if c in failed]
    page.add(f"<h2>Failures</h2><p>{len(failed)} of {len(trials)} trials failed{every}.</p>")
    page.add(_table(failed[columns].reset_index(drop=True)))


def _importance(page: _Page, trials: pd.DataFrame, scales: dict[str, str]) -> None:
    """The ranking over the completed trials when there are enough of them; else over every scored
    trial, saying that pruned trials' scores from fewer epochs are mixed in."""
    from caviar.views import plots

    completed, with_pruned = scored(trials, pruned=False), scored(trials)
    completed_only = len(completed) >= MIN_TRIALS or len(completed) == len(with_pruned)
    used = completed if completed_only else with_pruned
    table = importance(trials, scales, pruned=not completed_only)
    page.add("<h2>Which hyperparameters mattered</h2>")
    page.add(f'<p class="note">{IMPORTANCE_NOTE}</p>')
    left_out = len(with_pruned) - len(completed)
    if completed_only:
        out = f"; the {left_out} pruned trials are left out: their scores come from fewer epochs" if left_out else ""
        page.add(f"<p>Measured over the {len(used)} completed trials{out}.</p>")
    else:
        page.add(f"<p>Measured over the {len(used)} trials with a score: only {len(completed)} completed, so the "
                 f"{left_out} pruned trials count too, with their best score from fewer epochs (the early "
                 "stopper judged them among the worst): the ranking then mixes how far a trial got with "
                 "how well it did.</p>")
    if len(used) < MIN_TRIALS:
        page.add(f"<p>Too few trials to tell: at least {MIN_TRIALS} with a score are needed.</p>")
    page.add(_table(table))
    if table["importance"].notna().any():
        page.add(page.figure("importance", plots.importance_bars(table), "importance of each hyperparameter"))


def _best(trials: pd.DataFrame, mode: str, top: int) -> pd.DataFrame:
    """The leaderboard, with when each trial finished where the run recorded it."""
    board = show.leaderboard_frame(trials, mode, top)
    if "finished_at" in trials and "finished_at" not in board:
        board["finished_at"] = ranked(trials, mode).head(top)["finished_at"].to_numpy()
    return board


def _sweep(page: _Page, run: Any, metric: str, mode: str, top: int) -> None:
    from caviar.views import plots

    trials, epochs = run.trials, run.epochs
    scales = show.scales_of(run.job.get("space"))
    counts = show.status_counts(trials)
    page.add(f"<p>{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "</p>")
    if trials.empty:
        page.add("<p>No finished trials yet.</p>")
        return
    page.add(f"<h2>Best trials</h2>{_table(_best(trials, mode, top), scales)}")
    _failures(page, trials)
    _importance(page, trials, scales)
    rounds = "round" in trials and trials["round"].nunique() > 1
    notes = ([PRUNED_NOTE] if counts[Status.PRUNED] else []) + \
        (["Colours are the rounds of the coarse-to-fine search: later rounds cluster around the best."]
         if rounds else [])
    page.add(f"<h2>{html.escape(metric)} against each hyperparameter</h2>")
    page.add("".join(f'<p class="note">{note}</p>' for note in notes) + '<div class="figures">')
    for name in show.param_names(trials):
        scale = scales.get(name, "linear")
        page.add(page.figure(f"score_vs_{name}", plots.score_vs_param(trials, name, scale, metric, mode),
                             f"{metric} against {name}"))
    page.add("</div>")

    page.add("<h2>Learning curves</h2>")
    if epochs.empty:
        page.add("<p>No epochs recorded for this run.</p>")
    else:
        page.add('<p class="note">The y axis fits the best trials from half their epochs on, where they are '
                 "compared; earlier epochs and worse trials may run off its edge.</p>")
        page.add(page.figure("learning_curves", plots.learning_curves(epochs, trials, metric, mode), "learning curves"))
    page.add("<h2>Score by trial order</h2>")
    page.add('<p class="note">The line is the best score so far.' + (f" {PRUNED_NOTE}" if counts[Status.PRUNED] else "")
             + "</p>")
    page.add(page.figure("score_by_trial", plots.score_by_trial(trials, metric, mode), f"{metric} by trial"))


def _babysit(page: _Page, run: Any, metric: str, mode: str) -> None:
    from caviar.views import plots

    epochs, events = run.epochs, run.events
    page.add("<h2>Timeline</h2>")
    page.add(page.figure("timeline", plots.babysit_timeline(epochs, events, metric, mode), "babysat run timeline"))
    page.add(f"<h2>Epochs</h2>{_table(show.babysit_epochs(epochs, metric))}")
    page.add(f"<h2>Events</h2>{_table(events)}")


def _population(page: _Page, run: Any, metric: str) -> None:
    """A population's members with their copies, and the schedule its best member discovered."""
    page.add("<h2>Population</h2>")
    page.add('<p class="note">Each line is a member; a dashed jump is a member copying a better one '
             "(exploit), or a diverged one replaced by the best.</p>")
    page.add(page.figure("population", population.member_curves(run.epochs, run.events, metric), "members"))
    frame = population.schedule(run)
    page.add("<h2>Discovered schedule</h2>")
    page.add(page.figure("schedule", population.schedule_plot(frame), "the best member's learning rate"))
    page.add(_table(frame))


def write_report(run: Any, *, top: int = 10) -> Path:
    """Write the self-contained `report.html` into the run's folder; returns its path.

    run: a `caviar.store.reader.Run` (a sweep or a babysat run).
    """
    folder = Path(run.path)
    metric, mode = judged_by(run.job, run.kind)
    path = _own_page(folder)   # a refusal comes before the drawing
    page = _Page()
    page.add(f"<h1>{html.escape(run.name)}</h1>")
    page.add(f"<p>{html.escape(run.kind)} run in <code>{html.escape(str(folder))}</code>, "
             f"judged by <b>{html.escape(metric)}</b> ({html.escape(mode)}){_when(run)}</p>")
    page.add(_table(show.compare_table([run]).drop(columns=["run"])))
    if run.kind == RunKind.BABYSIT:
        _babysit(page, run, metric, mode)
    else:
        _sweep(page, run, metric, mode, top)
    if population.is_population(run.job):
        _population(page, run, metric)
    title = html.escape(f"caviar report: {run.name}")
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(page.parts) + "\n</body></html>\n")
    atomic_write_bytes(path, document.encode("utf-8"))
    _drop_old_figures(folder)
    return path


def command(args: argparse.Namespace) -> int:
    """`caviar report NAME [--out DIR]`: write the report and print where it is."""
    path = write_report(show.load_run(args.run, args.out))
    print(f"report: {path}")
    return 0
