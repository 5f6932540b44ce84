"""A results folder received from someone else: resuming or dry-running it never runs code that sits
inside it, and says which code a saved job will run before importing anything."""

from __future__ import annotations

from pathlib import Path

import pytest

from caviar.config.job import parse_job
from tests.support import caviar_run

EVIL = "import pathlib\npathlib.Path(__file__).with_name('ran.txt').write_text('imported')\nclass Trainer: pass\n"


def received(out: Path, trainer: str) -> Path:
    """`out/victim`: a sweep folder whose job.toml names `trainer`, and `out/evil.py` beside it."""
    run = out / "victim"
    run.mkdir(parents=True)
    (run / "job.toml").write_text(parse_job({"name": "victim", "model": {"trainer": trainer}}).to_toml())
    (out / "evil.py").write_text(EVIL)
    return run


@pytest.mark.parametrize("argv", [["parallel", "--resume"], ["parallel", "--resume", "--dry-run"],
                                  ["babysit", "--resume"]])
def test_a_saved_job_naming_a_module_inside_out_is_refused_unimported(tmp_path, argv):
    out = tmp_path / "results"
    received(out, "evil:Trainer")
    done = caviar_run(*argv, "--name", "victim", "--out", ".", cwd=out, timeout=120)   # '' on sys.path: out
    assert done.returncode == 2, done.stderr
    assert "inside --out" in done.stderr and done.stderr.count("\n") == 1
    assert not (out / "ran.txt").exists()


def test_a_saved_job_says_which_code_it_will_run(tmp_path):
    out = tmp_path / "results"
    received(out, "tests.toys:ToyTrainer")
    done = caviar_run("parallel", "--resume", "--dry-run", "--name", "victim", "--out", out,
                      cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert done.returncode == 0, done.stderr
    assert "the saved job runs the trainer tests.toys:ToyTrainer from " in done.stderr
    assert str(Path(__file__).resolve().parents[1] / "toys.py") in done.stderr


def test_a_job_toml_that_links_out_of_the_run_is_never_read_through(tmp_path):
    import caviar

    out = tmp_path / "results"
    run = received(out, "tests.toys:ToyTrainer")
    elsewhere = tmp_path / "elsewhere.toml"
    (run / "job.toml").rename(elsewhere)
    (run / "job.toml").symlink_to(elsewhere)
    with pytest.raises(ValueError, match="job.toml is a symbolic link"):
        caviar.load(run)
    done = caviar_run("parallel", "--resume", "--dry-run", "--name", "victim", "--out", out, timeout=120)
    assert done.returncode == 2 and "job.toml is a symbolic link" in done.stderr
