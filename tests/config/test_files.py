"""Which job file a command means (a path, a name in ./jobs, then one of the package's examples) and
the overrides its --set, --name and --seed flags add up to."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from caviar.config.files import DEFAULT_JOB, PACKAGE_JOBS, job_overrides, resolve_job_path

# --- resolve_job_path ---------------------------------------------------------------------------------


@pytest.fixture
def elsewhere(tmp_path, monkeypatch) -> Path:
    """An empty current folder, with no jobs/ of its own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_package_ships_its_example_jobs():
    assert (PACKAGE_JOBS / "digits.toml").is_file()
    assert DEFAULT_JOB == "digits"


def test_a_path_to_a_file_is_taken_as_it_is(elsewhere):
    job = elsewhere / "my job.toml"
    job.write_text('name = "mine"\n')
    assert resolve_job_path(str(job)) == job
    assert resolve_job_path("my job.toml") == Path("my job.toml")


def test_a_path_to_a_file_need_not_end_in_toml(elsewhere):
    (elsewhere / "job.txt").write_text("")
    assert resolve_job_path("job.txt") == Path("job.txt")


def test_a_name_is_found_in_jobs_of_the_current_folder(elsewhere):
    (elsewhere / "jobs").mkdir()
    (elsewhere / "jobs" / "mine.toml").write_text('name = "mine"\n')
    found = resolve_job_path("mine")
    assert found.resolve() == (elsewhere / "jobs" / "mine.toml").resolve()
    assert resolve_job_path("mine.toml").resolve() == found.resolve()


def test_a_job_in_the_current_folder_comes_before_the_packaged_example_of_the_same_name(elsewhere):
    (elsewhere / "jobs").mkdir()
    (elsewhere / "jobs" / "digits.toml").write_text('name = "local"\n')
    assert resolve_job_path("digits").resolve() == (elsewhere / "jobs" / "digits.toml").resolve()
    assert resolve_job_path(None).resolve() == (elsewhere / "jobs" / "digits.toml").resolve()


def test_a_file_named_as_given_comes_before_a_job_of_that_name(elsewhere):
    (elsewhere / "jobs").mkdir()
    (elsewhere / "jobs" / "digits.toml").write_text('name = "local"\n')
    (elsewhere / "digits").write_text('name = "the file"\n')
    assert resolve_job_path("digits") == Path("digits")


def test_a_name_not_in_the_current_folder_is_found_among_the_package_examples(elsewhere):
    assert resolve_job_path("digits").resolve() == (PACKAGE_JOBS / "digits.toml").resolve()
    assert resolve_job_path("digits.toml").resolve() == (PACKAGE_JOBS / "digits.toml").resolve()
    (elsewhere / "jobs").mkdir()  # a jobs/ folder without that job does not hide the examples
    (elsewhere / "jobs" / "other.toml").write_text("")
    assert resolve_job_path("spiral").resolve() == (PACKAGE_JOBS / "spiral.toml").resolve()


def test_no_job_given_means_the_default_example(elsewhere):
    assert resolve_job_path(None).resolve() == (PACKAGE_JOBS / f"{DEFAULT_JOB}.toml").resolve()


def test_a_folder_is_not_a_job_file(elsewhere):
    (elsewhere / "spiral").mkdir()  # a folder of that name: the example job is meant
    assert resolve_job_path("spiral").resolve() == (PACKAGE_JOBS / "spiral.toml").resolve()


@pytest.mark.parametrize("job", ["no-such-job", "no-such-job.toml", "missing/dir/job.toml"])
def test_a_missing_job_is_a_value_error_about_the_job(elsewhere, job):
    with pytest.raises(ValueError) as info:
        resolve_job_path(job)
    message = str(info.value)
    assert message.startswith("job: ")
    assert repr(job) in message and "jobs/" in message
    assert "\n" not in message


# --- job_overrides ------------------------------------------------------------------------------------


def test_job_overrides_keeps_the_set_overrides_in_order():
    args = argparse.Namespace(set=["search.trials=8", "model.epochs=2"], name=None, seed=None)
    assert job_overrides(args) == ["search.trials=8", "model.epochs=2"]


def test_job_overrides_folds_name_and_seed_in_after_the_set_ones():
    args = argparse.Namespace(set=["search.trials=8"], name="quick", seed=7)
    assert job_overrides(args) == ["search.trials=8", "name=quick", "search.seed=7", "babysit.seed=7"]


def test_job_overrides_keeps_a_seed_of_zero():
    args = argparse.Namespace(set=None, name=None, seed=0)
    assert job_overrides(args) == ["search.seed=0", "babysit.seed=0"]


def test_job_overrides_of_a_command_without_those_flags_is_empty():
    assert job_overrides(argparse.Namespace()) == []
    assert job_overrides(argparse.Namespace(set=None, name=None, seed=None)) == []
    assert job_overrides(argparse.Namespace(set=[])) == []


def test_a_name_flag_is_a_name_override_that_keeps_its_text():
    from caviar.config.overrides import apply_overrides

    overrides = job_overrides(argparse.Namespace(set=["name=from-set"], name="2024", seed=3))
    raw = apply_overrides({"name": "digits", "search": {"seed": 0}}, overrides)
    assert raw["name"] == "2024"  # --name comes after --set name=..., so it wins, and stays text
    assert raw["search"]["seed"] == 3 and raw["babysit"]["seed"] == 3


def test_job_overrides_does_not_change_the_parsed_arguments():
    given = ["search.trials=8"]
    args = argparse.Namespace(set=given, name="quick", seed=1)
    job_overrides(args)
    job_overrides(args)
    assert given == ["search.trials=8"] and args.set is given
    assert job_overrides(args) == ["search.trials=8", "name=quick", "search.seed=1", "babysit.seed=1"]
