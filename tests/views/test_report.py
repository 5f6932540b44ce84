"""`caviar report`: an offline HTML page and readable PNG figures in the run's folder."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd

from caviar.views import plots, show
from caviar.cli import main
from caviar.store.reader import load
from tests.run_factory import make_sweep
from tests.support import ROOT, caviar_main, caviar_output, caviar_run, write_job

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figures_of(page: Path) -> list[str]:
    """The relative image paths an HTML page references."""
    return re.findall(r'<img src="([^"]+)"', page.read_text())


def assert_readable_png(path: Path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, path
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 400, (path, image.shape)
    assert np.ptp(image[..., :3]) > 0.5, f"{path} is blank"


def assert_offline_report(run: Path) -> list[str]:
    """The report exists, every figure it shows is a readable PNG beside it and every PNG is shown."""
    page = run / "report.html"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "http://" not in text and "https://" not in text
    shown = figures_of(page)
    assert shown and len(shown) == len(set(shown))
    for src in shown:
        assert not src.startswith("/") and src.startswith("report/")
        assert_readable_png(run / src)
    assert sorted(shown) == sorted(f"report/{p.name}" for p in (run / "report").glob("*.png"))
    leftovers = [p for p in run.rglob("*.tmp")]
    assert not [p for p in leftovers if "report" in p.name or p.parent.name == "report"], leftovers
    return shown


def test_report_of_a_sweep_draws_every_hyperparameter_and_ranks_them(runs, capsys):
    status = main(["report", "sweep", "--out", str(runs)])

    assert status == 0
    assert str(runs / "sweep" / "report.html") in capsys.readouterr().out
    shown = assert_offline_report(runs / "sweep")
    for name in ("learning_rate", "beta1", "batch_size", "l2"):
        assert f"report/score_vs_{name}.png" in shown
    assert {"report/importance.png", "report/learning_curves.png", "report/score_by_trial.png"} <= set(shown)
    text = (runs / "sweep" / "report.html").read_text()
    # The importance table ranks learning_rate (the one that drives the simulated score) first.
    importance_table = text.split("Which hyperparameters mattered")[1].split("</table>")[0]
    assert re.findall(r"<td>([a-z_0-9]+)</td>", importance_table)[0] == "learning_rate"
    assert "epsilon squared" in text  # the measure is explained on the page


def test_report_of_a_babysat_run_draws_its_timeline(runs):
    assert main(["report", "panda", "--out", str(runs)]) == 0

    shown = assert_offline_report(runs / "panda")
    assert shown == ["report/timeline.png"]
    text = (runs / "panda" / "report.html").read_text()
    for event in ("rollback", "plateau", "nudge"):
        assert f"<td>{event}</td>" in text


def test_report_of_a_half_written_run_without_epochs(tmp_path):
    run = make_sweep(tmp_path, "killed", n_trials=6, with_epochs=False, failed=0)
    (run / "trials.parquet" / ".part-000002.parquet.4242-abcdef.tmp").write_bytes(b"PAR1 half a file")

    assert main(["report", "killed", "--out", str(tmp_path)]) == 0

    shown = assert_offline_report(run)
    assert "report/learning_curves.png" not in shown
    assert "No epochs recorded" in (run / "report.html").read_text()


def test_a_second_report_replaces_the_first_and_drops_figures_it_no_longer_draws(tmp_path):
    run = make_sweep(tmp_path, "again", n_trials=8, failed=0)
    assert main(["report", "again", "--out", str(tmp_path)]) == 0
    (run / "report" / "score_vs_dropout.png").write_bytes(b"old")

    assert main(["report", "again", "--out", str(tmp_path)]) == 0

    assert not (run / "report" / "score_vs_dropout.png").exists()
    assert_offline_report(run)


def test_hyperparameters_are_drawn_on_the_scale_they_were_searched_on(runs):
    trials = pd.read_parquet(runs / "sweep" / "trials.parquet")

    lr = plots.score_vs_param(trials, "learning_rate", "log", "val_accuracy", "max").axes[0]
    beta = plots.score_vs_param(trials, "beta1", "one_minus_log", "val_accuracy", "max").axes[0]
    batch = plots.score_vs_param(trials, "batch_size", "category", "val_accuracy", "max").axes[0]

    assert lr.get_xscale() == "log"
    assert beta.get_xscale() == "log"
    # 1 - beta on the axis: 0.999 sits left of 0.99, and the tick labels read as betas.
    xs = beta.collections[0].get_offsets()[:, 0]
    completed = trials[trials["status"] == "completed"]
    assert np.allclose(np.sort(xs), np.sort(1 - completed["params_beta1"].to_numpy()))
    assert [t.get_text() for t in batch.get_xticklabels()] == ["32", "64", "128", "256"]


def test_names_are_drawn_as_text_and_the_callers_matplotlib_settings_stay(runs):
    name, metric = r"lr$\frac{a}{$", r"val$\sqrt{$acc"
    trials = pd.read_parquet(runs / "sweep" / "trials.parquet").rename(columns={"params_learning_rate": f"params_{name}"})
    epochs = pd.read_parquet(runs / "sweep" / "epochs.parquet").rename(columns={"val_accuracy": metric})
    before = dict(matplotlib.rcParams)

    figures = [plots.score_vs_param(trials, name, "log", metric, "max"),
               plots.learning_curves(epochs, trials, metric, "max"), plots.score_by_trial(trials, metric, "max")]

    for fig in figures:
        assert plots.png_bytes(fig)[:8] == PNG_SIGNATURE   # mathtext would raise on the unclosed \frac{
        texts = [t for ax in fig.axes for t in (ax.title, ax.xaxis.label, ax.yaxis.label, *ax.get_xticklabels())]
        assert not any(t.get_parse_math() for t in texts)
    ax = figures[0].axes[0]
    assert ax.get_xlabel() == f"{name} (log scale)" and ax.get_title() == f"{metric} against {name}"
    assert dict(matplotlib.rcParams) == before and matplotlib.rcParams["text.parse_math"] is True


# ------------------------------------------------------------------ real runs of the real command line

TINY_JOB = """
name = "tiny"
[data]
source = "digits"
[model]
trainer = "mlp"
hidden_layers = [16]
epochs = 2
[space]
learning_rate = { log_uniform = [1e-4, 1e-1] }
beta1 = { one_minus_log_uniform = [0.9, 0.999] }
batch_size = { choice = [32, 64] }
[search]
trials = 4
metric = "val_accuracy"
mode = "max"
"""


def default_job(folder: Path) -> Path:
    """jobs/digits.toml (the default job), or a tiny job like it while the repository has none."""
    default = ROOT / "jobs" / "digits.toml"
    if default.is_file():
        return default
    return write_job(folder, "tiny", text=TINY_JOB)


def test_a_real_sweep_shows_compares_and_reports(ray_session, tmp_path, capsys):
    out = tmp_path / "out"
    # The sweep runs in this process, joined to the session's Ray: a driver in a subprocess cannot
    # reach a loopback-only cluster on this machine (Ray swaps 127.0.0.1 for the host's address).
    assert main(["parallel", str(default_job(tmp_path)), "--set", "search.trials=4", "--set", "model.epochs=2",
                 "--name", "real", "--out", str(out), "--address", ray_session, "--quiet"]) == 0
    capsys.readouterr()

    run = load(out / "real")
    assert run.kind == "sweep" and len(run.trials) == 4
    status, shown, _ = caviar_output(capsys, "show", "real", "--out", out)
    assert status == 0
    assert "trials: 4 (" in shown
    best = run.trials.loc[run.trials["score"].idxmax()]
    assert f"best: {best['score']:.4f} (trial {best['trial_id']}, epoch " in shown
    status, printed, _ = caviar_output(capsys, "compare", "real", "--out", out)
    assert status == 0
    compared = printed.splitlines()[1].split()
    assert compared[:6] == ["real", "sweep", "val_accuracy", "max", f"{best['score']:.4f}", str(best["trial_id"])]
    assert caviar_main("report", "real", "--out", out) == 0
    shown_figures = assert_offline_report(out / "real")
    assert "report/score_vs_learning_rate.png" in shown_figures and "report/learning_curves.png" in shown_figures


def test_a_real_babysat_run_shows_compares_and_reports(tmp_path, capsys):
    out = tmp_path / "out"
    done = caviar_run("babysit", default_job(tmp_path), "--set", "babysit.epochs=4", "--name", "panda", "--out", out,
                      cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr

    run = load(out / "panda")
    assert run.kind == "babysit" and len(run.epochs) == 4
    status, shown, _ = caviar_output(capsys, "show", "panda", "--out", out)
    assert status == 0
    epoch, best = show.best_epoch(run.epochs, "val_accuracy", "max")
    assert f"epochs: 4, best {best:.4f} at epoch {int(epoch)}" in shown
    assert "decision" in shown and "stop" in shown
    status, printed, _ = caviar_output(capsys, "compare", "panda", "--out", out)
    assert status == 0
    compared = printed.splitlines()[1].split()
    assert compared[:5] == ["panda", "babysit", "val_accuracy", "max", f"{best:.4f}"]
    assert caviar_main("report", "panda", "--out", out) == 0
    assert assert_offline_report(out / "panda") == ["report/timeline.png"]
