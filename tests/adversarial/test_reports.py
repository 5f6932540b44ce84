"""Adversarial cases about received run folders and the reports made from them.

A results folder may come from someone else (a colleague's tarball, a shared drive), so everything
in it is input: its entries may be symlinks pointing out of it, its column names and texts may hold
HTML or matplotlib markup, and its job.toml may name modules that sit in the folder itself.
`caviar report` must write only inside the run folder (never through a link, never deleting
through one), show every name as text, and import nothing a results folder names. Each case here is
one such input, run through the real command line against real files and real symlinks; add a case
for every new kind of file or value a received folder can hold.
"""

from __future__ import annotations

import html
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from caviar.cli import main
from tests.run_factory import make_babysit, make_sweep, write_table
from tests.support import ROOT, caviar_run, snapshot

SCRIPT = "<script>alert(1)</script>"


def elsewhere_folder(root: Path) -> Path:
    """A folder outside the run holding a PNG and a text file, as a link's target."""
    target = root / "elsewhere"
    target.mkdir()
    (target / "holiday.png").write_bytes(b"\x89PNG\r\n\x1a\nnot ours")
    (target / "notes.txt").write_text("keep me\n")
    return target


def assert_real_report(run: Path) -> list[str]:
    """The report is a real file of the run's own, holding its figures (nothing referenced beside
    it); returns the figures' names."""
    assert (run / "report.html").is_file() and not (run / "report.html").is_symlink()
    page = (run / "report.html").read_text()
    sources = re.findall(r'src="([^"]*)"', page)
    assert sources and all(src.startswith("data:image/png;base64,") for src in sources)
    return [html.unescape(name) for name in re.findall(r'data-figure="([^"]*)"', page)]


# ------------------------------------------------------------------ links out of the run folder

@pytest.mark.parametrize("maker", [make_sweep, make_babysit], ids=["sweep", "babysit"])
def test_a_report_folder_linked_elsewhere_is_left_alone_and_its_target_untouched(tmp_path, maker):
    out = tmp_path / "out"
    run = maker(out, "received")
    target = elsewhere_folder(tmp_path)
    before = snapshot(target, folders=True, mtimes=True)
    (run / "report").symlink_to(target, target_is_directory=True)

    assert main(["report", "received", "--out", str(out)]) == 0

    assert snapshot(target, folders=True, mtimes=True) == before   # no PNG deleted, no file or temp file added
    assert (run / "report").is_symlink()                            # not the page's: never followed
    assert_real_report(run)


def test_a_report_page_linked_elsewhere_is_replaced_and_its_target_untouched(tmp_path):
    out = tmp_path / "out"
    run = make_sweep(out, "received", n_trials=6)
    outside = tmp_path / "elsewhere.html"
    outside.write_text("my own page\n")
    (run / "report.html").symlink_to(outside)

    assert main(["report", "received", "--out", str(out)]) == 0

    assert outside.read_text() == "my own page\n"
    assert_real_report(run)


def test_old_figure_files_linked_elsewhere_are_removed_as_links(tmp_path):
    out = tmp_path / "out"
    run = make_babysit(out, "received")
    target = elsewhere_folder(tmp_path)
    (target / "other.png").write_bytes(b"\x89PNG\r\n\x1a\nalso not ours")
    before = snapshot(target, mtimes=True)
    (run / "report").mkdir()
    (run / "report" / "timeline.png").symlink_to(target / "holiday.png")   # where an earlier caviar drew it
    (run / "report" / "old.png").symlink_to(target / "other.png")

    assert main(["report", "received", "--out", str(out)]) == 0

    assert snapshot(target, mtimes=True) == before
    assert not (run / "report").exists()   # the links removed, never followed; then the empty folder
    assert assert_real_report(run) == ["timeline"]


def test_a_dangling_report_link_is_replaced_without_creating_its_target(tmp_path):
    out = tmp_path / "out"
    run = make_sweep(out, "received", n_trials=6)
    (run / "report").symlink_to(tmp_path / "nowhere", target_is_directory=True)
    (run / "report.html").symlink_to(tmp_path / "nowhere.html")

    assert main(["report", "received", "--out", str(out)]) == 0

    assert not (tmp_path / "nowhere").exists() and not (tmp_path / "nowhere.html").exists()
    assert_real_report(run)


def test_a_report_entry_that_is_a_file_is_left_alone(tmp_path):
    out = tmp_path / "out"
    run = make_sweep(out, "received", n_trials=6)
    (run / "report").write_text("a file of the sender's, not ours to delete\n")

    assert main(["report", "received", "--out", str(out)]) == 0

    assert (run / "report").read_text() == "a file of the sender's, not ours to delete\n"
    assert_real_report(run)


def test_a_report_page_that_is_a_folder_is_refused_in_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    run = make_sweep(out, "received", n_trials=6)
    (run / "report.html").mkdir()
    (run / "report.html" / "index.html").write_text("the sender's\n")
    before = snapshot(run)

    assert main(["report", "received", "--out", str(out)]) == 2

    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and str(run / "report.html") in err
    assert snapshot(run) == before


# ------------------------------------------------------------------ names are text, not markup

MATH_PARAM = r"lr$\frac{a}{$"
MATH_METRIC = r"val$\sqrt{$<b>acc"


def with_markup_names(out: Path) -> Path:
    """A sweep whose hyperparameter and metric names are broken mathtext (and HTML)."""
    run = make_sweep(out, "markup", n_trials=8)
    job = (run / "job.toml").read_text()
    job = job.replace('metric = "val_accuracy"', f"metric = '{MATH_METRIC}'")
    (run / "job.toml").write_text(job.replace("[space]\n", f"[space]\n'{MATH_PARAM}' = {{ log_uniform = [1e-4, 1e-1] }}\n"))
    renames = {"params_learning_rate": f"params_{MATH_PARAM}", "val_accuracy": MATH_METRIC}
    for table in ("trials", "epochs"):
        frame = pd.read_parquet(run / f"{table}.parquet").rename(columns=renames)
        shutil.rmtree(run / f"{table}.parquet")
        write_table(run / f"{table}.parquet", frame)
    return run


def test_names_with_mathtext_markup_are_drawn_and_shown_as_text(tmp_path):
    out = tmp_path / "out"
    run = with_markup_names(out)

    done = caviar_run("report", "markup", "--out", out, timeout=120, cwd=ROOT)

    assert done.returncode == 0, done.stderr
    page = (run / "report.html").read_text()
    assert r"lr$\frac{a}{$" in page and r"val$\sqrt{$&lt;b&gt;acc" in page
    assert "<b>acc" not in page
    figures = assert_real_report(run)
    assert len([f for f in figures if f.startswith("score_vs_")]) == 4, figures
    assert f"score_vs_{MATH_PARAM}" in figures


def test_names_that_would_make_the_same_or_too_long_a_file_name_get_a_figure_each(tmp_path):
    out = tmp_path / "out"
    run = make_sweep(out, "names", n_trials=8)
    long_name = "l" * 300   # a file name over the 255 bytes a folder entry may have
    renames = {"params_beta1": "params_a b", "params_batch_size": "params_a/b", "params_l2": f"params_{long_name}"}
    trials = pd.read_parquet(run / "trials.parquet").rename(columns=renames)
    shutil.rmtree(run / "trials.parquet")
    write_table(run / "trials.parquet", trials)

    assert main(["report", "names", "--out", str(out)]) == 0

    shown = [name for name in assert_real_report(run) if name.startswith("score_vs_")]
    assert sorted(shown) == sorted(f"score_vs_{n}" for n in ("learning_rate", "a b", "a/b", long_name))
    assert [p.name for p in run.iterdir() if "report" in p.name] == ["report.html"]   # no file per figure


# ------------------------------------------------------------------ HTML in a received folder's values

def test_every_text_from_the_folder_is_escaped_on_the_page(tmp_path):
    out = tmp_path / "out"
    run = make_sweep(out, "escaped", n_trials=6, failed=1)
    trials = pd.read_parquet(run / "trials.parquet").rename(columns={"params_l2": f"params_{SCRIPT}"})
    trials["error"] = trials["error"].where(trials["error"].isna(), f"RuntimeError: {SCRIPT}")
    shutil.rmtree(run / "trials.parquet")
    write_table(run / "trials.parquet", trials)
    job = (run / "job.toml").read_text().replace('metric = "val_accuracy"', f'metric = "{SCRIPT}"')
    (run / "job.toml").write_text(job)

    assert main(["report", "escaped", "--out", str(out)]) == 0

    page = (run / "report.html").read_text()
    assert "<script" not in page
    assert "RuntimeError: &lt;script&gt;alert(1)&lt;/script&gt;" in page   # the error text, shown escaped
    assert "<th>&lt;script&gt;alert(1)&lt;/script&gt;</th>" in page       # the hyperparameter's name


def test_event_details_of_a_babysat_run_are_escaped(tmp_path):
    out = tmp_path / "out"
    run = make_babysit(out, "escaped")
    events = pd.read_parquet(run / "events.parquet")
    events["detail"] = SCRIPT
    shutil.rmtree(run / "events.parquet")
    write_table(run / "events.parquet", events)

    assert main(["report", "escaped", "--out", str(out)]) == 0

    page = (run / "report.html").read_text()
    assert "<script" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# ------------------------------------------------------------------ code named by a received folder

EVIL = """
from pathlib import Path
Path(__file__).with_name("IMPORTED").write_text("the report imported me")
class X:
    pass
"""


@pytest.mark.parametrize("trainer,cwd", [("received.evil_module:X", "out"), ("evil_module:X", "run")])
def test_the_report_imports_nothing_the_job_names(tmp_path, trainer, cwd):
    out = tmp_path / "out"
    run = make_sweep(out, "received", n_trials=6)
    (run / "evil_module.py").write_text(EVIL)
    (run / "__init__.py").write_text(EVIL)
    job = (run / "job.toml").read_text().replace('trainer = "mlp"', f'trainer = "{trainer}"')
    assert trainer in job
    (run / "job.toml").write_text(job)

    # Run from where the named module is importable (python -m puts the working folder on sys.path).
    done = caviar_run("report", "received", "--out", out, timeout=120, cwd=out if cwd == "out" else run)

    assert done.returncode == 0, done.stderr
    assert not (run / "IMPORTED").exists()
    assert (run / "report.html").is_file()
