"""What a user types and where results go: command-line flags, `--set` values, `--out`, a small disk, data
files at the limits. Each input gets one line on stderr naming what is wrong and no traceback: exit
status 2 for bad input, 1 for a machine that fails (a full disk), and what was saved before intact.

The full disk is real: a tmpfs of a few hundred KB mounted for the test (root only), filled up to
a few pages, then a driver resumes into it.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import caviar
from caviar import cli
from tests.support import DIGITS, TOY_SWEEP, caviar_output, caviar_run, snapshot, write_job

NO_SPACE = os.strerror(28)   # "No space left on device"


def one_line(stderr: str, command: str, start: str, *, notices: bool = False) -> str:
    """The one line of stderr, checked to be `COMMAND: error: START...`; its message. With `notices`,
    lines before it that are caviar's notices ("caviar: the saved job runs ...") are allowed."""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 or notices and all(line.startswith("caviar: ") for line in lines[:-1]), stderr
    prefix = f"{command}: error: "
    assert lines[-1].startswith(prefix + start), lines[-1]
    return lines[-1][len(prefix):]


# --- a real small filesystem ----------------------------------------------------------------------------

@contextlib.contextmanager
def tmpfs(folder: Path, size: str, *, read_only: bool = False) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `folder` for the block (needs root), unmounted after it."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (",ro" if read_only else "")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def leave_free(folder: Path, free: int) -> None:
    """Fill the filesystem of `folder` with a ballast file until about `free` bytes are left."""
    stat = os.statvfs(folder)
    (folder / "ballast").write_bytes(bytes(stat.f_bavail * stat.f_frsize - free))


def hidden_files(run: Path) -> list[str]:
    """Temp files (names starting with '.') left anywhere in a run folder."""
    return [str(p.relative_to(run)) for p in run.rglob(".*")]


def test_a_full_disk_stops_a_sweep_with_one_line_and_keeps_the_trials_saved_before(ray_session, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP)   # 8 trials
    with tmpfs(tmp_path / "disk", "2m") as out:
        first = caviar_run("parallel", job, "--out", out, "--address", ray_session, "--quiet", timeout=120)
        assert first.returncode == 0, first.stderr
        before = caviar.load(out / "sweep").trials.sort_values("trial_id", ignore_index=True)
        leave_free(out, 16 * 1024)   # room for the lock and the job.toml; 300 trials' rows need far more
        resume = ["parallel", "--out", out, "--name", "sweep", "--resume", "--set", "search.trials=300",
                  "--address", ray_session, "--quiet"]
        grown = caviar_run(*resume, timeout=120)
        assert grown.returncode == 1, grown.stderr
        message = one_line(grown.stderr, "caviar parallel", f"--out: {out}", notices=True)
        assert message.endswith(NO_SPACE)
        after = caviar.load(out / "sweep").trials.sort_values("trial_id", ignore_index=True)
        pd.testing.assert_frame_equal(after[after.trial_id < 8], before)
        assert hidden_files(out / "sweep") == []
        (out / "ballast").unlink()   # room again: the same resume finishes the sweep, each trial once
        again = caviar_run(*resume, timeout=120)
        assert again.returncode == 0, again.stderr
        assert sorted(caviar.load(out / "sweep").trials.trial_id) == list(range(300))


def test_a_full_disk_stops_a_babysat_run_with_one_line_and_keeps_the_epochs_saved_before(tmp_path):
    job = write_job(tmp_path, "panda", DIGITS, babysit={"epochs": 3})
    with tmpfs(tmp_path / "disk", "1m") as out:
        first = caviar_run("babysit", job, "--out", out, timeout=120)
        assert first.returncode == 0, first.stderr
        before = caviar.load(out / "panda")
        leave_free(out, 16 * 1024)   # less than one checkpoint
        resume = ["babysit", "--out", out, "--name", "panda", "--resume", "--set", "babysit.epochs=30"]
        more = caviar_run(*resume, timeout=120)
        assert more.returncode == 1, more.stderr
        assert one_line(more.stderr, "caviar babysit", f"--out: {out}", notices=True).endswith(NO_SPACE)
        after = caviar.load(out / "panda")
        assert len(before.epochs) == 3
        pd.testing.assert_frame_equal(after.epochs.head(3), before.epochs)
        assert hidden_files(out / "panda") == []
        (out / "ballast").unlink()   # room again: the same resume trains on to epoch 30, each epoch once
        again = caviar_run(*resume, timeout=120)
        assert again.returncode == 0, again.stderr
        assert caviar.load(out / "panda").epochs.epoch.tolist() == list(range(1, 31))


# --- --out -----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["parallel", "babysit"])
def test_an_out_that_is_a_file_or_goes_through_one_is_named_as_out(tmp_path, capsys, command):
    job = write_job(tmp_path, "job", DIGITS)
    afile = tmp_path / "afile"
    afile.write_text("not a folder")
    for out, problem in ((afile, "exists and is not a folder"), (afile / "sub", os.strerror(20))):
        status, _, err = caviar_output(capsys, command, job, "--out", out)
        assert status == 2
        assert one_line(err, f"caviar {command}", f"--out: {out}: {problem}")
    assert afile.read_text() == "not a folder"


@pytest.mark.parametrize("command", ["parallel", "babysit"])
def test_an_out_through_a_read_only_folder_is_named_as_out(tmp_path, capsys, command):
    job = write_job(tmp_path, "job", DIGITS)
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as read_only:
        status, _, err = caviar_output(capsys, command, job, "--out", read_only / "results")
        assert status == 2
        assert one_line(err, f"caviar {command}", f"--out: {read_only / 'results'}: {os.strerror(30)}")


def test_an_out_that_is_a_read_only_folder_is_named_as_out(tmp_path, capsys):
    job = write_job(tmp_path, "job", DIGITS)
    with tmpfs(tmp_path / "ro", "64k", read_only=True) as read_only:
        status, _, err = caviar_output(capsys, "babysit", job, "--out", read_only)
        assert status == 2
        assert one_line(err, "caviar babysit", f"--out: {read_only}")


# --- usage errors --------------------------------------------------------------------------------------

USAGE_ERRORS = [
    # (argv, the parser that tells it)
    ([], "caviar"),
    (["paralel"], "caviar"),
    (["parallel", "--seed", "x"], "caviar parallel"),
    (["parallel", "--concurrency"], "caviar parallel"),
    (["parallel", "--bogus"], "caviar parallel"),
    (["parallel", "job", "extra"], "caviar parallel"),
    (["babysit", "--dry-run"], "caviar babysit"),
    (["nudge"], "caviar nudge"),
    (["show", "--top", "many", "run"], "caviar show"),
    (["compare"], "caviar compare"),
    (["report", "a", "b"], "caviar report"),
]


@pytest.mark.parametrize("argv, prog", USAGE_ERRORS, ids=[" ".join(c[0]) or "nothing" for c in USAGE_ERRORS])
def test_a_usage_error_is_one_line_and_exit_2(capsys, argv, prog):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    one_line(err, prog, "")
    assert err.rstrip().endswith(f"(see {prog} --help)")


def test_a_usage_error_in_a_real_process_is_one_line_and_help_is_unchanged():
    done = caviar_run("parallel", "--seed", "x", timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == "caviar parallel: error: argument --seed: invalid int value: 'x' (see caviar parallel --help)\n"
    helped = caviar_run("parallel", "--help", timeout=60)
    assert helped.returncode == 0 and helped.stderr == ""
    assert helped.stdout.startswith("usage: caviar parallel [-h]") and "--dry-run" in helped.stdout


# --- --set values -----------------------------------------------------------------------------------------

MALFORMED_SETS = [
    # (--set, the TOML reason)
    ("search.trial_timeout=1e", "unexpected 'e' at character 2"),
    ("model.learning_rate=0.1.2", "unexpected '.' at character 4"),
    ("search.trials=8x", "unexpected 'x' at character 2"),
    ("babysit.min_lr=1e-6e", "unexpected 'e' at character 5"),
    ("model.epochs=1_", "unexpected '_' at character 2"),
    ("data.valid_fraction=.2", "invalid value at character 1 ('.')"),
    ("model.hidden_layers=[64,", "invalid value at the end"),
    ("model.hidden_layers=[64, 6x]", "unclosed array at character 7 ('x')"),
    ("space.learning_rate={ log_uniform = [1e-4, 1e-1 }", "unclosed array at character 29 ('}')"),
    ('model.epochs="8', "unterminated string at the end"),
]


@pytest.mark.parametrize("setting, reason", MALFORMED_SETS, ids=[c[0] for c in MALFORMED_SETS])
def test_a_malformed_set_value_says_it_is_not_a_valid_value(tmp_path, capsys, setting, reason):
    field, _, text = setting.partition("=")
    status, _, err = caviar_output(capsys, "parallel", "--dry-run", "--out", tmp_path, "--set", setting)
    assert status == 2
    message = one_line(err, "caviar parallel", f"{field}: {text!r} is not a valid value (TOML: ")
    assert reason in message and "expected a" not in message   # not "expected a finite number"


@pytest.mark.parametrize("setting, message", [
    ("search.trials=many", "search.trials: expected a positive integer, got 'many'"),
    ("model.optimizer=adamw", "model.optimizer: expected one of"),
    ("data.source=1e", "data.source: expected one of blobs, digits, spiral or a path"),
])
def test_plain_text_is_still_taken_as_text(tmp_path, capsys, setting, message):
    status, _, err = caviar_output(capsys, "parallel", "--dry-run", "--out", tmp_path, "--set", setting)
    assert status == 2
    one_line(err, "caviar parallel", message)


# --- limits -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("command", [["parallel", "--dry-run"], ["babysit"]], ids=["parallel", "babysit"])
def test_hidden_layers_of_billions_of_weights_are_refused_before_anything_is_built(tmp_path, capsys, command):
    out = tmp_path / "results"
    status, _, err = caviar_output(capsys, *command, "--out", out, "--set", "model.hidden_layers=[65536, 65536]")
    assert status == 2
    message = one_line(err, f"caviar {command[0]}", "model.hidden_layers: [65536, 65536] make 4,294,967,296 weights")
    assert "268,435,456" in message
    assert not out.exists()


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1e200"])
def test_data_values_too_large_to_standardize_are_refused_naming_the_column(tmp_path, capsys, value):
    rows = "".join(f"{v},{i % 2}\n" for i, v in enumerate([1, 2, value, 4, 5, 6, 7, 8]))
    data = write_csv(tmp_path / "big.csv", "size,label\n" + rows)
    status, _, err = caviar_output(capsys, "parallel", "--dry-run", "--out", tmp_path, "--set", f"data.source={data}")
    assert status == 2
    one_line(err, "caviar parallel", f"data.source: {data}: column 'size' has {float(value)!r} at row 2, beyond ")


def test_a_csv_with_a_column_name_twice_is_refused_naming_it(tmp_path, capsys):
    data = write_csv(tmp_path / "twice.csv", "a,b,a,label\n" + "".join(f"{i},{i},{-i},{i % 2}\n" for i in range(8)))
    status, _, err = caviar_output(capsys, "parallel", "--dry-run", "--out", tmp_path, "--set", f"data.source={data}")
    assert status == 2
    one_line(err, "caviar parallel", f"data.source: {data}: column 'a' appears more than once")


@pytest.mark.parametrize("sampler, more", [("random", ["... and 999,950 more"]),
                                            ("coarse_to_fine", ["... and 333,284 more", "(+666,666 trials in later "
                                                                "rounds, drawn around the best of earlier ones)"])])
def test_a_dry_run_of_a_million_trials_shows_fifty_and_counts_the_rest(tmp_path, capsys, sampler, more):
    # Its speed (0.6 s against 85 s before the cut) is benchmarks/dry_run.py's to measure.
    status, out, err = caviar_output(capsys, "parallel", "--dry-run", "--out", tmp_path, "--set",
                                     "search.trials=1000000", "--set", f"search.sampler={sampler}")
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0].startswith(f"digits: 1,000,000 trials, sampler {sampler}")
    assert lines[1].startswith(f"sampler {sampler}: ")   # what it does and when to pick it
    assert [line.split()[0] for line in lines[3:53]] == [str(k) for k in range(50)]
    assert lines[53:] == more


def test_a_refused_input_leaves_the_results_folder_as_it_was(tmp_path, capsys):
    """The limits above are refused before the folder is touched: an old run stays byte for byte."""
    job = write_job(tmp_path, "victim", DIGITS, babysit={"epochs": 1})
    out = tmp_path / "results"
    assert caviar_output(capsys, "babysit", job, "--out", out)[0] == 0
    before = snapshot(out, folders=True)
    data = write_csv(tmp_path / "big.csv", "x,label\n" + "".join(f"{1e308 if i == 3 else i},{i % 2}\n" for i in range(8)))
    for setting in (f"data.source={data}", "model.hidden_layers=[65536, 65536]", "model.learning_rate=0.1.2"):
        assert caviar_output(capsys, "babysit", job, "--out", out, "--overwrite", "--set", setting)[0] == 2
    assert snapshot(out, folders=True) == before
    assert np.isfinite(caviar.load(out / "victim").epochs.val_accuracy).all()
