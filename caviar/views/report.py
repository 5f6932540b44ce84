"""`caviar report NAME`: one self-contained HTML page about a run, with PNG figures beside it.

    OUT/NAME/report.html          open it in a browser: no JavaScript, no network
    OUT/NAME/report/*.png         the figures, referenced by relative paths

A sweep gets: the best trials, which hyperparameters mattered (`caviar.views.importance`), the score
against each hyperparameter (on the scale it was searched on), learning curves and the score by
trial order. A babysat run gets its timeline (score and learning rate per epoch, with rollbacks,
plateaus and nudges marked), its epochs and its events. Every file is written atomically (temp
file in the same folder, then `os.replace`), figures first and the page last, so a page never
points to a missing figure; figures of an earlier report that this one no longer draws are removed.

A run folder may be someone else's, so nothing in it is followed out of it: a `report` or
`report.html` that is a symlink is replaced by a real folder or file of our own (the link is
removed, its target left untouched), a `report` that is some other file, or a `report.html` that is
a folder, is refused before anything is written. Every text from the folder is HTML-escaped on
the page and drawn literally in the figures; a name that cannot be a file name as it is (other
characters, too long) gets a figure file named after it and a hash of it, one per name.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import re
from pathlib import Path
from typing import Any

import pandas as pd

from caviar.store.atomic import atomic_write_bytes
from caviar.store.vocabulary import RunKind
from caviar.views import population, show
from caviar.views.importance import MIN_TRIALS, importance, scored

REPORT_FILE = "report.html"
FIGURE_DIR = "report"
STEM_CHARS = 80  # a figure file's stem is kept this short (a folder entry holds 255 bytes)

STYLE = """
body { font-family: sans-serif; max-width: 1100px; margin: 2em auto; padding: 0 1em; color: #222; }
h1 { margin-bottom: 0.2em; } h2 { margin-top: 1.6em; border-bottom: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 0.5em 0; }
th, td { padding: 0.2em 0.7em; text-align: right; border-bottom: 1px solid #eee; font-family: monospace; }
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
    "is the rank correlation of value and score (its sign says which way the score moves). Pruned "
    "trials count with their score from fewer epochs: the early stopper judged them among the worst, "
    "so the ranking covers how far a trial got as well as how well it did. Each hyperparameter is "
    "judged on its own, so read it as a ranking, not as parts of a whole."
)


def _file_name(stem: str) -> str:
    """`stem`.png when `stem` is a plain, short file name; else its plain part and a hash of it."""
    plain = re.sub(r"[^A-Za-z0-9._-]", "_", stem)
    if plain == stem and len(stem) <= STEM_CHARS:
        return stem + ".png"
    digest = hashlib.sha256(stem.encode("utf-8", "surrogatepass")).hexdigest()[:12]
    return f"{plain[:STEM_CHARS - 13]}-{digest}.png"


def _own_entries(folder: Path) -> Path:
    """The run's figure folder, made a real folder of the run's own; refuses before anything is written.

    A symlink at `report` or `report.html` (a received folder's, pointing anywhere, dangling or not) is
    removed, never followed: its target is left untouched. Any other `report` that is not a folder,
    or a `report.html` that is a folder, is the user's and is refused (FileExistsError, one line).
    """
    figure_dir, page = folder / FIGURE_DIR, folder / REPORT_FILE
    if not figure_dir.is_symlink() and figure_dir.exists() and not figure_dir.is_dir():
        raise FileExistsError(f"{figure_dir} is not a folder; move it away to write the report's figures there")
    if not page.is_symlink() and page.is_dir():
        raise FileExistsError(f"{page} is a folder; move it away to write the report there")
    for link in (figure_dir, page):
        if link.is_symlink():
            link.unlink()
    figure_dir.mkdir(exist_ok=True)
    if figure_dir.is_symlink() or not figure_dir.is_dir():   # replaced meanwhile: still never followed
        raise FileExistsError(f"{figure_dir} is not a folder of the run's own")
    return figure_dir


def _table(frame: pd.DataFrame, scales: dict[str, str] | None = None) -> str:
    if frame.empty:
        return "<p>(none)</p>"
    return show.format_frame(frame, scales).to_html(index=False, border=0, escape=True)


class _Page:
    """The report being built: HTML parts and the figures to save, in reading order."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.parts: list[str] = []
        self.figures: dict[str, Any] = {}  # file name -> Figure

    def add(self, text: str) -> None:
        self.parts.append(text)

    def figure(self, stem: str, fig: Any, alt: str) -> str:
        name = _file_name(stem)
        while name in self.figures:   # two stems that make one file name (a hash's chance): both kept
            name = _file_name(name + "+")
        self.figures[name] = fig
        return f'<img src="{FIGURE_DIR}/{html.escape(name)}" alt="{html.escape(alt)}">'


def _sweep(page: _Page, run: Any, metric: str, mode: str, top: int) -> None:
    from caviar.views import plots

    trials, epochs = run.trials, run.epochs
    scales = show.scales_of(run.job.get("space"))
    counts = show.status_counts(trials)
    page.add(f"<p>{len(trials)} trials: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + "</p>")
    if trials.empty:
        page.add("<p>No finished trials yet.</p>")
        return
    page.add(f"<h2>Best trials</h2>{_table(show.leaderboard_frame(trials, mode, top), scales)}")

    names = show.param_names(trials)
    table = importance(trials, scales)
    page.add("<h2>Which hyperparameters mattered</h2>")
    page.add(f'<p class="note">{IMPORTANCE_NOTE}</p>')
    used = scored(trials)
    page.add(f"<p>Measured over the {len(used)} trials with a score (completed and pruned).</p>")
    if len(used) < MIN_TRIALS:
        page.add(f"<p>Too few trials to tell: at least {MIN_TRIALS} with a score are needed.</p>")
    page.add(_table(table))
    if table["importance"].notna().any():
        page.add(page.figure("importance", plots.importance_bars(table), "importance of each hyperparameter"))

    page.add(f"<h2>{html.escape(metric)} against each hyperparameter</h2><div class=\"figures\">")
    for name in names:
        scale = scales.get(name, "linear")
        page.add(page.figure(f"score_vs_{name}", plots.score_vs_param(trials, name, scale, metric, mode),
                             f"{metric} against {name}"))
    page.add("</div>")

    page.add("<h2>Learning curves</h2>")
    if epochs.empty:
        page.add("<p>No epochs recorded for this run.</p>")
    else:
        page.add(page.figure("learning_curves", plots.learning_curves(epochs, trials, metric, mode), "learning curves"))
    page.add("<h2>Score by trial order</h2>")
    page.add('<p class="note">Colours are the rounds of a coarse-to-fine search; the line is the best score so far.</p>')
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
    """Write `report.html` and its figures into the run's folder; returns the page's path.

    run: a `caviar.store.reader.Run` (a sweep or a babysat run).
    """
    folder = Path(run.path)
    metric, mode = show.metric_of(run.job, run.kind)
    figure_dir = _own_entries(folder)   # a refusal comes before the drawing
    page = _Page(folder)
    page.add(f"<h1>{html.escape(run.name)}</h1>")
    page.add(f"<p>{html.escape(run.kind)} run in <code>{html.escape(str(folder))}</code>, "
             f"judged by <b>{html.escape(metric)}</b> ({html.escape(mode)})</p>")
    page.add(_table(show.compare_table([run]).drop(columns=["run"])))
    if run.kind == RunKind.BABYSIT:
        _babysit(page, run, metric, mode)
    else:
        _sweep(page, run, metric, mode, top)
    if population.is_population(run.job):
        _population(page, run, metric)

    from caviar.views import plots

    for name, fig in page.figures.items():
        atomic_write_bytes(figure_dir / name, plots.png_bytes(fig))
    for old in figure_dir.glob("*.png"):
        if old.name not in page.figures and (old.is_symlink() or old.is_file()):
            old.unlink(missing_ok=True)   # a link itself, never its target
    title = html.escape(f"caviar report: {run.name}")
    document = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
                f"<style>{STYLE}</style></head>\n<body>\n" + "\n".join(page.parts) + "\n</body></html>\n")
    path = folder / REPORT_FILE
    atomic_write_bytes(path, document.encode("utf-8"))
    return path


def command(args: argparse.Namespace) -> int:
    """`caviar report NAME [--out DIR]`: write the report and print where it is."""
    path = write_report(show.load_run(args.run, args.out))
    print(f"report: {path}")
    return 0
