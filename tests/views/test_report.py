"""`caviar report`: one self-contained HTML page in the run's folder, its figures PNGs inside it."""

from __future__ import annotations

import base64
import html
import re
import shutil
from io import BytesIO
from pathlib import Path

import matplotlib
import matplotlib.image
import numpy as np
import pandas as pd

from caviar.views import plots, show
from caviar.cli import main
from caviar.store.reader import load
from tests.run_factory import POPULATION_COPIES, make_babysit, make_population, make_sweep, write_table
from tests.support import ROOT, TOY_SWEEP, caviar_main, caviar_output, caviar_run, write_job

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def figures_of(page: Path) -> dict[str, bytes]:
    """The figures an HTML page holds: each one's name (`data-figure`) -> its PNG bytes."""
    found = re.findall(r'<img data-figure="([^"]*)" alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)">',
                       page.read_text())
    return {html.unescape(name): base64.b64decode(data, validate=True) for name, data in found}


def assert_readable_png(data: bytes, name: str) -> None:
    assert data[:8] == PNG_SIGNATURE, name
    image = matplotlib.image.imread(BytesIO(data), format="png")
    assert image.ndim == 3 and image.shape[0] >= 200 and image.shape[1] >= 400, (name, image.shape)
    assert np.ptp(image[..., :3]) > 0.5, f"{name} is blank"


def assert_offline_report(run: Path) -> list[str]:
    """The report is one file: every figure a readable PNG inside it, nothing referenced outside it
    (no link, no script, no file beside it); returns the figures' names, sorted."""
    page = run / "report.html"
    text = page.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "<script" not in text and "http://" not in text and "https://" not in text and "url(" not in text
    references = re.findall(r'\b(?:src|href)="([^"]*)"', text)
    assert all(ref.startswith("data:image/png;base64,") for ref in references), references
    figures = figures_of(page)
    assert figures and len(figures) == len(references) == text.count("<img")
    for name, data in figures.items():
        assert_readable_png(data, name)
    assert not (run / "report").exists()      # no figure folder beside the page
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]   # the page's temp file is gone
    return sorted(figures)


def test_report_of_a_sweep_draws_every_hyperparameter_and_ranks_them(runs, capsys):
    status = main(["report", "sweep", "--out", str(runs)])

    assert status == 0
    assert str(runs / "sweep" / "report.html") in capsys.readouterr().out
    shown = assert_offline_report(runs / "sweep")
    for name in ("learning_rate", "beta1", "batch_size", "l2"):
        assert f"score_vs_{name}" in shown
    assert {"importance", "learning_curves", "score_by_trial"} <= set(shown)
    text = (runs / "sweep" / "report.html").read_text()
    # The importance table ranks learning_rate (the one that drives the simulated score) first.
    importance_table = text.split("Which hyperparameters mattered")[1].split("</table>")[0]
    assert re.findall(r"<td>([a-z_0-9]+)</td>", importance_table)[0] == "learning_rate"
    assert "epsilon squared" in text  # the measure is explained on the page


def test_report_of_a_babysat_run_draws_its_timeline(runs):
    assert main(["report", "panda", "--out", str(runs)]) == 0

    shown = assert_offline_report(runs / "panda")
    assert shown == ["timeline"]
    text = (runs / "panda" / "report.html").read_text()
    for event in ("rollback", "plateau", "nudge"):
        assert f"<td>{event}</td>" in text


def test_report_of_a_half_written_run_without_epochs(tmp_path):
    run = make_sweep(tmp_path, "killed", n_trials=6, with_epochs=False, failed=0)
    (run / "trials.parquet" / ".part-000002.parquet.4242-abcdef.tmp").write_bytes(b"PAR1 half a file")

    assert main(["report", "killed", "--out", str(tmp_path)]) == 0

    shown = assert_offline_report(run)
    assert "learning_curves" not in shown
    assert "No epochs recorded" in (run / "report.html").read_text()


def test_the_page_copied_alone_shows_every_figure(runs, tmp_path):
    assert main(["report", "sweep", "--out", str(runs)]) == 0
    alone = tmp_path / "mailed" / "report.html"
    alone.parent.mkdir()
    shutil.copy(runs / "sweep" / "report.html", alone)

    shown = assert_offline_report(alone.parent)

    assert len(shown) == 4 + 3   # a figure per hyperparameter, importance, learning curves, score by trial
    assert [p.name for p in alone.parent.iterdir()] == ["report.html"]


def test_the_figures_an_earlier_caviar_wrote_beside_the_page_are_removed(tmp_path):
    run = make_sweep(tmp_path, "again", n_trials=8, failed=0)
    (run / "report").mkdir()
    (run / "report" / "score_vs_dropout.png").write_bytes(b"old")
    kept = make_sweep(tmp_path, "kept", n_trials=8, failed=0)
    (kept / "report").mkdir()
    (kept / "report" / "timeline.png").write_bytes(b"old")
    (kept / "report" / "notes.txt").write_text("mine\n")

    assert main(["report", "again", "--out", str(tmp_path)]) == 0
    assert main(["report", "kept", "--out", str(tmp_path)]) == 0

    assert_offline_report(run)   # the folder is gone with its figure
    assert [p.name for p in (kept / "report").iterdir()] == ["notes.txt"]   # not ours: kept, and its folder


def test_errors_and_event_details_are_whole_on_the_page(tmp_path):
    error = "ValueError: " + " ".join(f"word{i}" for i in range(60))   # over 400 characters
    sweep = make_sweep(tmp_path, "long", n_trials=8, failed=2)
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials["error"] = trials["error"].where(trials["error"].isna(), error)
    shutil.rmtree(sweep / "trials.parquet")
    write_table(sweep / "trials.parquet", trials)
    panda = make_babysit(tmp_path, "wordy")
    events = pd.read_parquet(panda / "events.parquet")
    detail = "back to epoch 4, " + ", ".join(f"because of reason {i}" for i in range(20))
    events["detail"] = detail
    shutil.rmtree(panda / "events.parquet")
    write_table(panda / "events.parquet", events)

    assert main(["report", "long", "--out", str(tmp_path)]) == 0
    assert main(["report", "wordy", "--out", str(tmp_path)]) == 0

    page = (sweep / "report.html").read_text()
    assert page.count(error) == 2 + 2   # each failure, in the best trials and under Failures
    assert (panda / "report.html").read_text().count(detail) == len(events)


def test_every_failure_is_listed_with_its_error(tmp_path):
    run = make_sweep(tmp_path, "failing", n_trials=8, failed=3)
    assert main(["report", "failing", "--out", str(tmp_path)]) == 0
    page = (run / "report.html").read_text()
    failures = page.split("<h2>Failures</h2>")[1].split("</table>")[0]
    assert "<p>3 of 8 trials failed.</p>" in failures
    assert re.findall(r"<tr>\s*<td>(\d+)</td>", failures) == ["5", "6", "7"]


def test_the_importance_ranking_leaves_pruned_trials_out_when_enough_completed(runs):
    assert main(["report", "sweep", "--out", str(runs)]) == 0
    trials = load(runs / "sweep").trials
    completed, pruned = (int((trials["status"] == s).sum()) for s in ("completed", "pruned"))
    assert completed >= 8 and pruned > 0
    page = (runs / "sweep" / "report.html").read_text()
    assert (f"Measured over the {completed} completed trials; the {pruned} pruned trials are left out: "
            "their scores come from fewer epochs.") in page
    ranking = page.split("Which hyperparameters mattered")[1].split("</table>")[0]
    assert set(re.findall(r"<td>(\d+)</td>\s*</tr>", ranking)) == {str(completed)}   # the n column
    assert "Hollow points are pruned trials" in page


def test_with_few_completed_trials_the_ranking_says_pruned_ones_are_mixed_in(tmp_path):
    run = make_sweep(tmp_path, "few", n_trials=10, failed=1)   # 6 completed, 3 pruned
    assert main(["report", "few", "--out", str(tmp_path)]) == 0
    page = (run / "report.html").read_text()
    assert ("Measured over the 9 trials with a score: only 6 completed, so the 3 pruned trials count too, "
            "with their best score from fewer epochs") in page


def test_hyperparameters_are_drawn_on_the_scale_they_were_searched_on(runs):
    trials = pd.read_parquet(runs / "sweep" / "trials.parquet").assign(round=0)   # one colour for completed trials

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
    assert "score_vs_learning_rate" in shown_figures and "learning_curves" in shown_figures
    page = (out / "real" / "report.html").read_text()
    started = run.trials["started_at"].min().strftime("%Y-%m-%d %H:%M:%S")
    assert f"; started {started}, last result " in page   # when it ran, from the trials' moments


def test_a_real_sweep_whose_every_trial_failed_reports_each_failure(ray_session, tmp_path, capsys):
    out = tmp_path / "out"
    job = write_job(tmp_path, "doomed", TOY_SWEEP, model={"trainer": "tests.toys:FlakyTrainer", "fail": "raise"},
                    search={"trials": 4})
    assert main(["parallel", str(job), "--out", str(out), "--address", ray_session, "--quiet"]) == 1
    capsys.readouterr()

    assert caviar_main("report", "doomed", "--out", out) == 0

    page = (out / "doomed" / "report.html").read_text()
    failures = page.split("<h2>Failures</h2>")[1].split("</table>")[0]
    assert "<p>4 of 4 trials failed (every trial).</p>" in failures
    assert re.findall(r"<tr>\s*<td>(\d+)</td>", failures) == ["0", "1", "2", "3"]
    assert failures.count("RuntimeError: boom at epoch 2 (at ") == 4
    assert {"score_vs_learning_rate", "score_by_trial"} <= set(assert_offline_report(out / "doomed"))


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
    assert assert_offline_report(out / "panda") == ["timeline"]


def test_a_run_written_before_the_time_columns_still_shows_and_reports(tmp_path, capsys):
    run = make_sweep(tmp_path, "old", legacy=True)
    assert "started_at" not in load(run).trials and "time" not in load(run).epochs

    status, shown, _ = caviar_output(capsys, "show", "old", "--out", tmp_path)
    assert status == 0 and "best: " in shown
    assert main(["report", "old", "--out", str(tmp_path)]) == 0

    assert_offline_report(run)
    page = (run / "report.html").read_text()
    assert "; started " not in page and "finished_at" not in page


def test_the_report_says_when_a_run_ran_and_when_each_trial_finished(runs):
    assert main(["report", "sweep", "--out", str(runs)]) == 0
    page = (runs / "sweep" / "report.html").read_text()
    assert "; started 2026-01-05 09:00:00, last result 2026-01-05 09:00:25 (UTC)" in page
    best = page.split("<h2>Best trials</h2>")[1].split("</table>")[0]
    assert "<th>finished_at</th>" in best and "<td>2026-01-05 09:00:" in best


def test_report_of_a_population_draws_every_copy_as_a_jump_and_the_discovered_schedule(tmp_path, monkeypatch):
    from caviar.views import population

    drawn = {}

    def spy(name):
        real = getattr(population, name)
        monkeypatch.setattr(population, name, lambda *args: drawn.setdefault(name, real(*args)))

    spy("member_curves")
    spy("schedule_plot")
    run = make_population(tmp_path, "pop")
    assert main(["report", "pop", "--out", str(tmp_path)]) == 0
    assert {"population", "schedule"} <= set(assert_offline_report(run))
    jumps = [line for line in drawn["member_curves"].axes[0].lines if line.get_linestyle() == "--"]
    assert len(jumps) == len(POPULATION_COPIES) == 4   # exploit, diverged and rollback, each drawn
    assert sorted(tuple(line.get_xdata()) for line in jumps) == sorted((e, e + 1) for e, *_ in POPULATION_COPIES)
    (rates,) = [line.get_ydata() for line in drawn["schedule_plot"].axes[0].lines]
    assert list(rates) == [0.05, 0.05, 0.05, 0.04, 0.032, 0.032]
    assert "Discovered schedule" in (run / "report.html").read_text()
