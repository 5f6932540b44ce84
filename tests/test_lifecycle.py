"""One lifecycle for both drivers (caviar/lifecycle.py): the same refusals, the same lock, the same
record of the job, the same Ctrl-C message, whichever driver runs the job."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from caviar import lifecycle
from caviar.store.lock import holder
from caviar.store.vocabulary import RunKind
from caviar.trainers.check import reserved_message
from tests.run_factory import make_babysit, make_sweep
from tests.support import DIGITS, TOY_SWEEP, caviar_output, hold_lock, snapshot, write_job

SWEEP, BABYSIT = RunKind.SWEEP, RunKind.BABYSIT


def request(out: Path, kind: RunKind, name: str, **flags) -> lifecycle.RunRequest:
    return lifecycle.RunRequest(kind, out, name, **flags)


# --- the refusals, the same for both kinds ------------------------------------------------------------

@pytest.mark.parametrize("kind", [SWEEP, BABYSIT])
def test_resume_with_overwrite_is_refused(tmp_path, kind):
    with pytest.raises(ValueError, match="^--resume: .*pass one of them"):
        lifecycle.check_folder(request(tmp_path, kind, "run", resume=True, overwrite=True))


@pytest.mark.parametrize("kind", [SWEEP, BABYSIT])
def test_a_resume_of_a_run_that_is_not_there_is_refused(tmp_path, kind):
    with pytest.raises(ValueError, match="^--resume: there is no run 'ghost'"):
        lifecycle.check_folder(request(tmp_path, kind, "ghost", resume=True))


@pytest.mark.parametrize("kind, make", [(SWEEP, make_sweep), (BABYSIT, make_babysit)])
def test_existing_results_need_resume_or_overwrite(tmp_path, kind, make):
    make(tmp_path, "run")
    with pytest.raises(FileExistsError, match="already holds results: pass --resume"):
        lifecycle.check_folder(request(tmp_path, kind, "run"))
    lifecycle.check_folder(request(tmp_path, kind, "run", resume=True))
    lifecycle.check_folder(request(tmp_path, kind, "run", overwrite=True))


@pytest.mark.parametrize("kind, other", [(SWEEP, make_babysit), (BABYSIT, make_sweep)])
@pytest.mark.parametrize("flags", [{}, {"overwrite": True}, {"resume": True}])
def test_neither_driver_writes_into_the_other_kinds_folder(tmp_path, kind, other, flags):
    other(tmp_path, "run")
    before = snapshot(tmp_path / "run")
    with pytest.raises(ValueError, match="babysat run|sweep"):
        lifecycle.check_folder(request(tmp_path, kind, "run", **flags))
    assert snapshot(tmp_path / "run") == before


def test_a_run_name_that_could_leave_out_is_refused(tmp_path):
    with pytest.raises(ValueError, match="^name: "):
        lifecycle.check_folder(request(tmp_path, SWEEP, "../elsewhere"))


# --- the lock -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind, holder_kind, shown", [(SWEEP, "babysit", "caviar babysit"),
                                                      (BABYSIT, "sweep", "caviar parallel")])
def test_a_run_another_driver_holds_is_refused_naming_it(tmp_path, kind, holder_kind, shown):
    proc = hold_lock(tmp_path / "run", holder_kind)
    try:
        with pytest.raises(ValueError, match=f"'run' is being run by {shown} \\(process {proc.pid}\\)"):
            lifecycle.check_folder(request(tmp_path, kind, "run"))
        with pytest.raises(ValueError, match="is being run by"):
            with lifecycle.locked(request(tmp_path, kind, "run")):
                pass
    finally:
        proc.kill()
        proc.wait()
    with lifecycle.locked(request(tmp_path, kind, "run")):   # its holder dead, the run is free
        assert holder(tmp_path / "run") is not None
    assert holder(tmp_path / "run") is None


# --- the job as run, and the way out -------------------------------------------------------------------

def test_the_folder_records_the_job_as_run_and_a_resume_records_its_changes(tmp_path):
    from caviar.config.job import parse_job

    job = parse_job({"name": "run", "search": {"trials": 4}})
    with lifecycle.locked(request(tmp_path, SWEEP, "run")):
        run = lifecycle.open_folder(request(tmp_path, SWEEP, "run"), job)
    assert (run.path / "job.toml").read_text() == job.to_toml()
    grown = parse_job({"name": "run", "search": {"trials": 8}})
    lifecycle.open_folder(request(tmp_path, SWEEP, "run", resume=True), grown)
    assert (run.path / "job.toml").read_text() == grown.to_toml()


def test_the_resume_command_names_the_run_and_repeats_the_flags(tmp_path, capsys):
    req = request(tmp_path, SWEEP, "run", resume_flags=("--address", "127.0.0.1:1", "--quiet"))
    assert lifecycle.interrupted(req, "3 finished trials are") == 130
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("caviar parallel: interrupted; 3 finished trials are saved in ")
    assert line.endswith(f"Resume with: {sys.executable} -m caviar parallel --out {tmp_path} --name run --resume "
                         "--address 127.0.0.1:1 --quiet")


def test_a_resume_by_name_reads_the_saved_job_even_when_the_file_is_gone(tmp_path):
    from caviar.config.job import parse_job

    job = parse_job({"name": "run", "search": {"trials": 5}})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "job.toml").write_text(job.to_toml())
    args = argparse.Namespace(out=str(tmp_path), name="run", job=None, set=["search.trials=9"], seed=None)
    resumed = lifecycle.job_for(args, resume=True)
    assert resumed.search.trials == 9 and resumed.search.metric == job.search.metric
    (tmp_path / "bare").mkdir()
    with pytest.raises(ValueError, match="has no job.toml"):
        lifecycle.job_for(argparse.Namespace(out=str(tmp_path), name="bare", job=None, set=[], seed=None),
                          resume=True)


# --- a trainer that reports a reserved name: the same refusal in both modes ---------------------------

def _jobs(tmp_path: Path, trainer: str) -> tuple[Path, Path]:
    sweep = write_job(tmp_path, "sweep", TOY_SWEEP, model={"trainer": trainer}, search={"trials": 2})
    panda = write_job(tmp_path, "panda", DIGITS, model={"trainer": trainer, "learning_rate": 0.01},
                      babysit={"epochs": 2})
    return sweep, panda


def test_a_declared_reserved_metric_is_refused_alike_in_both_modes_before_anything_trains(tmp_path, capsys):
    sweep, panda = _jobs(tmp_path, "tests.toys:DeclaredScoreTrainer")
    out = tmp_path / "out"
    # No --address: the refusal comes before Ray would start, and before any folder exists.
    status_s, _, err_s = caviar_output(capsys, "parallel", sweep, "--out", out)
    status_b, printed, err_b = caviar_output(capsys, "babysit", panda, "--out", out)
    assert status_s == status_b == 2
    line_s, line_b = err_s.strip(), err_b.strip()
    assert line_s.removeprefix("caviar parallel: error: ") == line_b.removeprefix("caviar babysit: error: ")
    assert "a metric named 'score', a column caviar writes itself" in line_s and "\n" not in line_s
    assert printed == "" and not out.exists()   # nothing trained, nothing written


def test_an_undeclared_reserved_metric_gets_the_same_words_in_both_modes(tmp_path, capsys, ray_session):
    import caviar

    sweep, panda = _jobs(tmp_path, "tests.toys:ScoreReportingTrainer")
    out = tmp_path / "out"
    status, _, err = caviar_output(capsys, "babysit", panda, "--out", out)
    assert status == 2 and err.strip() == f"caviar babysit: error: {reserved_message('score')}"
    assert not (out / "panda").exists()   # refused after its first epoch, before the folder opened
    caviar_output(capsys, "parallel", sweep, "--out", out, "--address", ray_session, "--quiet")
    errors = set(caviar.load(out / "sweep").trials["error"])
    assert len(errors) == 1 and next(iter(errors)).startswith(f"ValueError: {reserved_message('score')}")


def test_a_trainer_without_a_training_loss_is_told_so_not_given_zero(tmp_path, capsys):
    import caviar

    job = write_job(tmp_path, "noloss", DIGITS, model={"trainer": "tests.toys:NoLossTrainer", "learning_rate": 0.01},
                    babysit={"epochs": 3})
    status, printed, _ = caviar_output(capsys, "babysit", job, "--out", tmp_path / "out")
    assert status == 0 and "reports no train_loss" in printed
    assert "train_loss" not in caviar.load(tmp_path / "out" / "noloss").epochs.columns


@pytest.mark.parametrize("change", ["search.metric=val_loss", "search.mode=min", "search.seed=4",
                                    "space.learning_rate={ log_uniform = [1e-3, 1e-1] }", "model.epochs=7",
                                    "babysit.metric=val_loss"])
def test_a_resume_refuses_a_change_that_would_score_the_rest_of_the_run_differently(tmp_path, change):
    """Found in review: a resume with --set search.metric=val_loss mixed accuracy-scored and
    loss-scored trials in one leaderboard. A resume may grow the budget, not change the question."""
    from caviar.config.job import parse_job

    job = parse_job({"name": "run", "space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}}})
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "job.toml").write_text(job.to_toml())
    args = argparse.Namespace(out=str(tmp_path), name="run", job=None, set=[change], seed=None)
    with pytest.raises(ValueError, match=f"^--set: {change.split('=')[0]} cannot change on --resume"):
        lifecycle.job_for(args, resume=True)
