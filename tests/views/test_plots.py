"""The report's figures (caviar/views/plots.py), one function each, on runs from tests/run_factory.py:
each returns a matplotlib Figure kept out of pyplot, log-scale hyperparameters get log axes, the
best trial is marked by the run's mode, `png_bytes` renders a PNG, and nothing touches the disk."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure

from caviar.store.reader import load
from caviar.store.ranking import ranked
from caviar.views import plots
from caviar.views.importance import importance
from caviar.views.show import scales_of
from tests.run_factory import make_babysit, make_sweep
from tests.support import snapshot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """A results folder: a two-round sweep maximising val_accuracy, one minimising val_loss, a babysat run."""
    root = tmp_path_factory.mktemp("plots")
    make_sweep(root, "sweep", rounds=2)
    make_sweep(root, "losses", mode="min", seed=1)
    make_babysit(root, "panda")
    return root


@pytest.fixture(scope="module")
def sweep(results):
    return load(results / "sweep")


@pytest.fixture(scope="module")
def panda(results):
    return load(results / "panda")


def legend_texts(ax) -> list[str]:
    legend = ax.get_legend()
    return [t.get_text() for t in legend.get_texts()] if legend is not None else []


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk."""
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def assert_standalone(fig) -> None:
    """A Figure of its own: not registered with pyplot, so a report keeps no global state."""
    assert isinstance(fig, Figure)
    assert fig.canvas.manager is None


# --- score against each hyperparameter --------------------------------------------------------------

def test_each_searched_hyperparameter_is_drawn_on_its_scale(sweep):
    scales = scales_of(sweep.job["space"])
    assert scales == {"learning_rate": "log", "beta1": "one_minus_log", "batch_size": "category", "l2": "log"}
    for name, scale in scales.items():
        fig = plots.score_vs_param(sweep.trials, name, scale, "val_accuracy", "max")
        assert_standalone(fig)
        (ax,) = fig.axes
        assert ax.get_xscale() == ("linear" if scale == "category" else "log"), name
        assert ax.get_ylabel() == "val_accuracy" and ax.get_title() == f"val_accuracy against {name}"


def test_a_linear_hyperparameter_gets_a_linear_axis(sweep):
    trials = sweep.trials.assign(params_dropout=np.linspace(0.0, 0.5, len(sweep.trials)))
    (ax,) = plots.score_vs_param(trials, "dropout", "linear", "val_accuracy", "max").axes
    assert ax.get_xscale() == "linear" and ax.get_xlabel() == "dropout"


def test_log_scale_points_sit_at_their_values(sweep):
    one_round = sweep.trials.assign(round=0)
    (ax,) = plots.score_vs_param(one_round, "learning_rate", "log", "val_accuracy", "max").axes
    assert ax.get_xlabel() == "learning_rate (log scale)"
    completed = sweep.trials[sweep.trials["status"] == "completed"]
    xs = ax.collections[0].get_offsets()[:, 0]
    assert np.allclose(np.sort(xs), np.sort(completed["params_learning_rate"].to_numpy()))
    plots.png_bytes(ax.figure)   # ticks are made when drawn
    ticks = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert ticks and not any("$" in t or "mathdefault" in t for t in ticks)   # plain text, not mathtext source


def test_betas_are_drawn_as_one_minus_beta_with_ticks_that_read_as_betas(sweep):
    (ax,) = plots.score_vs_param(sweep.trials, "beta1", "one_minus_log", "val_accuracy", "max").axes
    formatter = ax.xaxis.get_major_formatter()
    assert [formatter(x, 0) for x in (0.1, 0.01, 0.001)] == ["0.9", "0.99", "0.999"]
    assert ax.get_xlim()[0] > 0 and ax.get_xlim()[1] < 1


@pytest.mark.parametrize("name, mode", [("sweep", "max"), ("losses", "min")])
def test_the_best_trial_by_the_runs_mode_is_starred_and_statuses_counted(results, name, mode):
    run = load(results / name)
    trials = run.trials.assign(round=0)
    (ax,) = plots.score_vs_param(trials, "learning_rate", "log", run.job["search"]["metric"], mode).axes
    best = int(ranked(trials, mode)["trial_id"].iloc[0])
    counts = trials["status"].value_counts()
    labels = legend_texts(ax)
    assert f"best (trial {best})" in labels
    assert f"completed ({counts['completed']})" in labels and f"failed ({counts['failed']})" in labels
    assert f"pruned ({counts['pruned']}, hollow): best score within 2 epochs or fewer, stopped early" in labels


def test_pruned_trials_are_hollow_and_said_to_be_scored_on_fewer_epochs(sweep):
    for fig in (plots.score_vs_param(sweep.trials, "learning_rate", "log", "val_accuracy", "max"),
                plots.score_by_trial(sweep.trials, "val_accuracy", "max")):
        (ax,) = fig.axes
        pruned = sweep.trials[sweep.trials["status"] == "pruned"]
        (label,) = [text for text in legend_texts(ax) if text.startswith("pruned")]
        assert "within 2 epochs or fewer" in label and "stopped early" in label
        hollow = [c for c in ax.collections if len(c.get_offsets()) and not c.get_facecolor().any()]
        assert sum(len(c.get_offsets()) for c in hollow) == len(pruned)


def test_a_coarse_to_fine_sweep_is_coloured_by_round_against_each_hyperparameter(sweep):
    (ax,) = plots.score_vs_param(sweep.trials, "learning_rate", "log", "val_accuracy", "max").axes
    scored = sweep.trials[sweep.trials["status"] != "failed"]
    per_round = scored["round"].value_counts()
    labels = legend_texts(ax)
    assert [f"round {r} ({per_round[r]})" for r in (0, 1)] == [t for t in labels if t.startswith("round")]
    colours = {tuple(c.get_facecolor()[0]) for c in ax.collections if len(c.get_offsets()) and c.get_facecolor().any()
               and c.get_label().startswith("round")}
    assert len(colours) == 2


def test_a_one_round_sweep_has_no_round_in_its_legends(sweep):
    one_round = sweep.trials.assign(round=0)
    for fig in (plots.score_vs_param(one_round, "learning_rate", "log", "val_accuracy", "max"),
                plots.score_by_trial(one_round, "val_accuracy", "max")):
        assert not [t for t in legend_texts(fig.axes[0]) if "round" in t]


def test_a_hyperparameter_no_trial_has_says_so(sweep):
    trials = sweep.trials.assign(params_momentum=np.nan)
    fig = plots.score_vs_param(trials, "momentum", "linear", "val_accuracy", "max")
    assert_standalone(fig)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no trials with momentum"]


# --- learning curves -------------------------------------------------------------------------------

def test_learning_curves_colour_the_top_trials_by_rank(sweep):
    fig = plots.learning_curves(sweep.epochs, sweep.trials, "val_accuracy", "max", top=3)
    assert_standalone(fig)
    (ax,) = fig.axes
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "val_accuracy"
    top = ranked(sweep.trials[sweep.trials["status"] != "failed"], "max").head(3)
    labelled = [label for label in legend_texts(ax) if label.startswith("trial ")]
    assert labelled == [f"trial {int(t)} ({s:.4g})" for t, s in zip(top["trial_id"], top["score"])]
    # one line per trial (plus two for the legend's faded and light-blue entries: both kinds are drawn)
    assert len(ax.lines) == sweep.epochs["trial_id"].nunique() + 2
    others = sweep.trials[~sweep.trials["trial_id"].isin(top["trial_id"])]["status"].value_counts()
    faint = [re.fullmatch(r"(.*) \((\d+)(, \d+ off the axis)?\)", label).group(1, 2)   # "kind (n[, k off the axis])"
             for label in legend_texts(ax) if not label.startswith("trial ")]
    assert faint == [("other completed", str(others["completed"])),
                     ("pruned or failed (stopped early)", str(others["pruned"] + others["failed"]))]


def test_the_learning_curves_legend_names_only_lines_that_are_there(sweep):
    completed = sweep.trials[sweep.trials["status"] == "completed"]
    epochs = sweep.epochs[sweep.epochs["trial_id"].isin(completed["trial_id"])]
    (ax,) = plots.learning_curves(epochs, completed, "val_accuracy", "max", top=len(completed)).axes
    labels = legend_texts(ax)
    assert len(labels) == len(completed) and all(label.startswith("trial ") for label in labels)


def test_learning_curves_fit_the_axis_to_the_best_trials_not_to_zero(sweep):
    # The simulated best trials end near 0.95; pruned and failed ones stop near 0.3-0.6.
    (ax,) = plots.learning_curves(sweep.epochs, sweep.trials, "val_accuracy", "max", top=5).axes
    best = ranked(sweep.trials, "max").head(5)
    rows = sweep.epochs[sweep.epochs["trial_id"].isin(best["trial_id"])]
    late = rows[rows["epoch"] >= 3]["val_accuracy"]
    low, high = ax.get_ylim()
    assert low <= late.min() and late.max() <= high              # the best trials' later epochs are in view
    assert low > sweep.epochs["val_accuracy"].min() + 0.2         # the worst early values are not
    assert high - low < 0.5 * (sweep.epochs["val_accuracy"].max() - sweep.epochs["val_accuracy"].min())
    assert "axis fitted" in ax.get_title()


def test_learning_curves_of_a_tiny_asha_sweep_colour_the_completed_trial_and_fit_to_it(results):
    # 4 trials, 3 pruned at epoch 2 (as ASHA leaves a tiny sweep): "the best" is the completed one;
    # the pruned ones are grey, below the fitted axis, and the legend says so.
    run = load(make_sweep(results, "tiny", n_trials=4, failed=0, pruned_fraction=0.75))
    assert run.trials["status"].tolist().count("pruned") == 3
    (ax,) = plots.learning_curves(run.epochs, run.trials, "val_accuracy", "max").axes
    done = run.trials[run.trials["status"] == "completed"].iloc[0]
    labels = legend_texts(ax)
    assert [label for label in labels if label.startswith("trial ")] == [f"trial {done['trial_id']} ({done['score']:.4g})"]
    assert ax.get_title() == "learning curves: the best completed trial (axis fitted to them)"
    late = run.epochs[(run.epochs["trial_id"] == done["trial_id"]) & (run.epochs["epoch"] >= 3)]["val_accuracy"]
    pruned = run.epochs[run.epochs["trial_id"] != done["trial_id"]]["val_accuracy"]
    low, high = ax.get_ylim()
    assert low <= late.min() and late.max() <= high and pruned.max() < low
    assert "pruned or failed (stopped early) (3, 3 off the axis)" in labels


def test_learning_curves_of_a_minimised_metric_rank_the_lowest_first(results):
    run = load(results / "losses")
    (ax,) = plots.learning_curves(run.epochs, run.trials, "val_loss", "min", top=1).axes
    best = ranked(run.trials, "min").iloc[0]
    assert [label for label in legend_texts(ax) if label.startswith("trial ")] == \
        [f"trial {int(best['trial_id'])} ({best['score']:.4g})"]


def test_learning_curves_without_epochs_say_so(sweep):
    fig = plots.learning_curves(sweep.epochs.iloc[:0], sweep.trials, "val_accuracy", "max")
    assert_standalone(fig)
    assert [t.get_text() for t in fig.axes[0].texts] == ["no val_accuracy per epoch recorded"]


# --- score by trial ----------------------------------------------------------------------------------

def test_score_by_trial_shows_rounds_and_the_best_so_far(sweep):
    fig = plots.score_by_trial(sweep.trials, "val_accuracy", "max")
    assert_standalone(fig)
    (ax,) = fig.axes
    labels = legend_texts(ax)
    per_round = sweep.trials[sweep.trials["status"] != "failed"]["round"].value_counts()
    assert {f"round 0 ({per_round[0]})", f"round 1 ({per_round[1]})", "best so far", "failed (1)"} <= set(labels)
    (line,) = [line for line in ax.lines if line.get_label() == "best so far"]
    good = sweep.trials[sweep.trials["status"] != "failed"].sort_values("trial_id")
    assert list(line.get_xdata()) == good["trial_id"].tolist()
    assert np.allclose(line.get_ydata(), good["score"].cummax().to_numpy())


def test_score_by_trial_in_min_mode_tracks_the_lowest_so_far(results):
    run = load(results / "losses")
    (ax,) = plots.score_by_trial(run.trials, "val_loss", "min").axes
    (line,) = [line for line in ax.lines if line.get_label() == "best so far"]
    good = run.trials[run.trials["status"] != "failed"].sort_values("trial_id")
    assert np.allclose(line.get_ydata(), good["score"].cummin().to_numpy())


def test_every_failure_of_an_all_failed_sweep_is_in_view(sweep):
    failed = sweep.trials.assign(status="failed", score=np.nan)
    for fig in (plots.score_by_trial(failed, "val_accuracy", "max"),
                plots.score_vs_param(failed, "learning_rate", "log", "val_accuracy", "max")):
        (ax,) = fig.axes
        (crosses,) = [c for c in ax.collections if c.get_label().startswith("failed")]
        xs = crosses.get_offsets()[:, 0]
        low, high = ax.get_xlim()
        assert len(xs) == len(failed) and ((low <= xs) & (xs <= high)).all()
        assert f"every trial failed ({len(failed)}): no score to draw" in [t.get_text() for t in ax.texts]


def test_score_by_trial_of_no_trials_says_so(sweep):
    fig = plots.score_by_trial(sweep.trials.iloc[:0], "val_accuracy", "max")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no trials"]


# --- a babysat run's timeline ------------------------------------------------------------------------

def test_the_timeline_draws_the_metric_and_the_rate_on_a_log_axis_with_events_marked(panda):
    fig = plots.babysit_timeline(panda.epochs, panda.events, "val_accuracy", "max")
    assert_standalone(fig)
    top, bottom = fig.axes
    assert bottom.get_yscale() == "log" and top.get_yscale() == "linear"
    assert bottom.get_ylabel() == "learning rate" and top.get_ylabel() == "val_accuracy"
    labels = legend_texts(top)
    assert {"val_accuracy", "rollback", "diverged", "plateau", "nudge", "stop"} <= set(labels)
    assert "best (0.96)" in labels                      # the factory's best epoch
    marked = [e for e in panda.events["event"] if e in plots.EVENT_STYLES]
    vertical = [line for line in top.lines if len(set(line.get_xdata())) == 1 and len(line.get_xdata()) == 2]
    assert sorted(line.get_xdata()[0] for line in vertical) == sorted(
        float(e) for e, kind in zip(panda.events["epoch"], panda.events["event"]) if kind in plots.EVENT_STYLES)
    assert len(vertical) == len(marked)


def test_a_rollback_a_nudge_asked_for_is_drawn_as_a_rollback(panda):
    # As an older caviar recorded it: only the nudge, its detail ending in "rollback".
    events = panda.events.copy()
    events.loc[events["event"] == "nudge", "detail"] = "learning_rate=0.0003 rollback"
    nudged = float(events.loc[events["event"] == "nudge", "epoch"].iloc[0])
    assert (nudged, "rollback") in plots.marks(events) and (nudged, "nudge") in plots.marks(events)
    top, _ = plots.babysit_timeline(panda.epochs, events, "val_accuracy", "max").axes
    red = [line.get_xdata()[0] for line in top.lines if line.get_color() == plots.EVENT_STYLES["rollback"][0]]
    assert nudged in red
    # As caviar records it now, the rollback an event of its own at the same epoch: drawn once.
    both = pd.concat([events, events[events["event"] == "nudge"].assign(event="rollback")], ignore_index=True)
    assert plots.marks(both).count((nudged, "rollback")) == 1


def test_the_timeline_keeps_a_linear_rate_axis_when_a_rate_is_zero(panda):
    epochs = panda.epochs.assign(learning_rate=[0.0] + [0.01] * (len(panda.epochs) - 1))
    _, bottom = plots.babysit_timeline(epochs, panda.events, "val_accuracy", "max").axes
    assert bottom.get_yscale() == "linear"


def test_the_timeline_of_a_minimised_metric_stars_the_lowest(panda):
    epochs = panda.epochs.assign(val_loss=np.linspace(1.0, 0.2, len(panda.epochs)))
    top, _ = plots.babysit_timeline(epochs, panda.events.iloc[:0], "val_loss", "min").axes
    assert "best (0.2)" in legend_texts(top)


def test_the_timeline_of_no_epochs_says_so(panda):
    fig = plots.babysit_timeline(panda.epochs.iloc[:0], panda.events, "val_accuracy", "max")
    assert [t.get_text() for t in fig.axes[0].texts] == ["no epochs recorded"]


# --- importance bars -------------------------------------------------------------------------------

def test_importance_bars_list_every_hyperparameter_most_important_on_top(sweep):
    table = importance(sweep.trials, scales_of(sweep.job["space"]))
    fig = plots.importance_bars(table)
    assert_standalone(fig)
    (ax,) = fig.axes
    at_height = sorted(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())), reverse=True)
    assert [label for _, label in at_height] == table["param"].tolist()   # the first row on top
    assert len(ax.patches) == len(table)
    widths = [bar.get_width() for bar in sorted(ax.patches, key=lambda bar: bar.get_y(), reverse=True)]
    assert widths == pytest.approx(table["importance"].fillna(0.0).tolist())


def test_importance_bars_of_nothing_say_so():
    fig = plots.importance_bars(pd.DataFrame({"param": [], "importance": []}))
    assert [t.get_text() for t in fig.axes[0].texts] == ["no searched hyperparameters"]


# --- rendering, and nothing on disk ---------------------------------------------------------------------

def test_png_bytes_renders_each_figure_at_its_size(sweep, panda):
    one_axes = plots.score_by_trial(sweep.trials, "val_accuracy", "max")
    assert png_size(plots.png_bytes(one_axes)) == (640, 400)
    timeline = plots.babysit_timeline(panda.epochs, panda.events, "val_accuracy", "max")
    assert png_size(plots.png_bytes(timeline)) == (640, 560)


def test_png_bytes_is_a_picture_not_a_blank_page(sweep):
    import matplotlib.image
    from io import BytesIO

    data = plots.png_bytes(plots.score_vs_param(sweep.trials, "learning_rate", "log", "val_accuracy", "max"))
    image = matplotlib.image.imread(BytesIO(data), format="png")
    assert image.shape[:2] == (400, 640) and np.ptp(image[..., :3]) > 0.5


def test_drawing_and_rendering_write_nothing(results, tmp_path, monkeypatch):
    before = snapshot(results, folders=True)
    monkeypatch.chdir(tmp_path)
    sweep, panda = load(results / "sweep"), load(results / "panda")
    scales = scales_of(sweep.job["space"])
    figures = [plots.score_vs_param(sweep.trials, name, scale, "val_accuracy", "max") for name, scale in scales.items()]
    figures += [plots.learning_curves(sweep.epochs, sweep.trials, "val_accuracy", "max"),
                plots.score_by_trial(sweep.trials, "val_accuracy", "max"),
                plots.importance_bars(importance(sweep.trials, scales)),
                plots.babysit_timeline(panda.epochs, panda.events, "val_accuracy", "max")]
    for fig in figures:
        assert png_size(plots.png_bytes(fig))[0] == 640
    assert list(tmp_path.iterdir()) == []
    assert snapshot(results, folders=True) == before
