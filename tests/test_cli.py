"""Bad input at the command line: exit status 2, one line on stderr naming the field, no traceback,
and nothing already in the results folder touched.

A handful of real `python -m caviar` processes check what a user sees (exit status, the whole of
stderr); the many cases and the property tests run `caviar.cli.main` in this process.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from caviar import cli
from caviar.config.job import BabysitSpec, DataSpec, SearchSpec
from caviar.nn.mlp import MLP_HYPERPARAMETERS
from tests.support import caviar_run, snapshot, write_job

VICTIM = "victim"  # the run already in the results folder; every bad job below is named after it

GOOD = """
name = "victim"
[data]
source = "digits"
[model]
hidden_layers = [8]
epochs = 2
[space]
learning_rate = { log_uniform = [1e-4, 1e-1] }
batch_size = { choice = [32, 64] }
[search]
trials = 4
[babysit]
epochs = 2
"""


def with_lines(section: str, *lines: str) -> str:
    """GOOD with `lines` added at the top of [section] ("" for the top level)."""
    if not section:
        return "\n".join(lines) + "\n" + GOOD.replace('name = "victim"\n', "")
    return GOOD.replace(f"[{section}]\n", f"[{section}]\n" + "\n".join(lines) + "\n")


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A results folder holding a finished run named `victim` and another run."""
    out = tmp_path / "results"
    run = out / VICTIM
    (run / "trials.parquet").mkdir(parents=True)
    (run / "epochs.parquet").mkdir()
    (run / "checkpoints").mkdir()
    (run / "job.toml").write_text(GOOD)
    (run / "trials.parquet" / "part-000000.parquet").write_bytes(b"PAR1 trials of the run before PAR1")
    (run / "epochs.parquet" / "part-000000.parquet").write_bytes(b"PAR1 epochs of the run before PAR1")
    (run / "checkpoints" / "epoch-0003.npz").write_bytes(bytes(range(256)))
    (out / "other").mkdir()
    (out / "other" / "job.toml").write_text('name = "other"\n')
    return out


def assert_one_error_line(stderr: str, command: str, field: str) -> None:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith(f"caviar {command}: error: "), lines[0]
    assert lines[0][len(f"caviar {command}: error: "):].startswith(field), lines[0]


# --- real processes ------------------------------------------------------------------------------

def missing_file_job(tmp_path: Path) -> str:
    return with_lines("data", f'source = "{tmp_path / "no_such_file.csv"}"').replace('source = "digits"\n', "")


PROCESS_CASES = [
    # (id, command and flags, job text or None for a missing file, extra flags, field)
    ("bad value", ["parallel", "--dry-run"], with_lines("search", "trials = -3").replace("trials = 4\n", ""), [],
     "search.trials"),
    ("unknown key", ["parallel", "--dry-run"], with_lines("search", "trails = 3"), [], "search.trails"),
    ("bad --set", ["parallel", "--dry-run"], GOOD, ["--set", "space.learning_rate={ log_uniform = [0, 0.1] }"],
     "space.learning_rate"),
    ("invalid TOML", ["parallel", "--overwrite"], GOOD + "\n[search\n", [], "job"),
    ("bad --name", ["parallel", "--overwrite"], GOOD, ["--name", "../victim"], "name"),
    ("missing job file", ["babysit", "--overwrite"], None, [], "job"),
    ("bad model value", ["babysit", "--overwrite"], with_lines("model", "batch_norm = 1"), [], "model.batch_norm"),
    ("bad --seed", ["babysit", "--overwrite"], GOOD, ["--seed", "-1"], "search.seed"),
]


@pytest.mark.parametrize("command, text, extra, field", [c[1:] for c in PROCESS_CASES],
                         ids=[c[0] for c in PROCESS_CASES])
def test_a_real_process_exits_2_with_one_line_and_touches_nothing(tmp_path, out, command, text, extra, field):
    job = tmp_path / "missing.toml" if text is None else write_job(tmp_path, "bad", text=text)
    before = snapshot(out, folders=True)
    result = caviar_run(command[0], job, "--out", out, *command[1:], *extra, cwd=tmp_path, timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_error_line(result.stderr, command[0], field)
    assert "Traceback" not in result.stdout
    assert snapshot(out, folders=True) == before


@pytest.mark.parametrize("command", [["parallel", "--overwrite"], ["babysit", "--overwrite"]])
def test_a_missing_data_file_exits_2_and_leaves_the_old_run_alone(tmp_path, out, command):
    """The data is read before the results folder is opened: even --overwrite keeps the old run."""
    job = write_job(tmp_path, "bad", text=missing_file_job(tmp_path))
    if command[0] == "babysit":   # a babysat run to overwrite (babysit refuses a sweep's folder outright)
        shutil.rmtree(out / VICTIM / "trials.parquet")
    before = snapshot(out, folders=True)
    result = caviar_run(command[0], job, "--out", out, *command[1:], cwd=tmp_path, timeout=300)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_error_line(result.stderr, command[0], "data.source")
    assert snapshot(out, folders=True) == before


# --- in process: many bad job files ---------------------------------------------------------------

BAD_FILES = [
    # (id, job text, field)
    ("unknown section", with_lines("", "[serach]", "trials = 3"), "serach"),
    ("unknown top-level key", with_lines("", "nmae = 'x'"), "nmae"),
    ("section not a table", with_lines("", "search = 3").replace("[search]\ntrials = 4\n", ""), "search"),
    ("name with a slash", GOOD.replace('name = "victim"', 'name = "a/../victim"'), "name"),
    ("name dot-dot", GOOD.replace('name = "victim"', 'name = ".."'), "name"),
    ("name not text", GOOD.replace('name = "victim"', "name = 7"), "name"),
    ("hidden name", GOOD.replace('name = "victim"', 'name = ".victim"'), "name"),
    ("unknown data source", GOOD.replace('source = "digits"', 'source = "digitz"'), "data.source"),
    ("data file of unknown type", GOOD.replace('source = "digits"', 'source = "train.xlsx"'), "data.source"),
    ("bad fraction", with_lines("data", "valid_fraction = 1.5"), "data.valid_fraction"),
    ("fractions over 1", with_lines("data", "valid_fraction = 0.6", "test_fraction = 0.5"), "data.test_fraction"),
    ("unknown data option", with_lines("data", "[data.options]", "noise = 0.1"), "data.options.noise"),
    ("unknown hyperparameter", with_lines("model", "hiden_layers = [8]"), "model.hiden_layers"),
    ("bad hyperparameter", with_lines("model", "optimizer = 'adamw'"), "model.optimizer"),
    ("bad trainer", with_lines("model", "trainer = 'not a trainer'"), "model.trainer"),
    ("bad dimension", GOOD.replace("[1e-4, 1e-1]", "[0, 0.1]"), "space.learning_rate"),
    ("unknown dimension kind", GOOD.replace("log_uniform", "loguniform"), "space.learning_rate"),
    ("bad value in a dimension", GOOD.replace("[32, 64]", "[0, 64]"), "space.batch_size"),
    ("float range for an integer", GOOD.replace("{ choice = [32, 64] }", "{ uniform = [16, 256] }"),
     "space.batch_size: batch_size takes whole numbers"),
    ("unknown searched name", with_lines("space", "lr = { log_uniform = [1e-4, 1e-1] }"), "space.lr"),
    ("bad sampler", with_lines("search", "sampler = 'bayesian'"), "search.sampler"),
    ("bad scheduler", with_lines("search", "scheduler = 'hyperband'"), "search.scheduler"),
    ("bad mode", with_lines("search", "mode = 'maximize'"), "search.mode"),
    ("empty metric", with_lines("search", "metric = ''"), "search.metric"),
    ("unreported metric", with_lines("search", "metric = 'accuracy'"), "search.metric"),
    ("float count", with_lines("search", "concurrency = 1.5"), "search.concurrency"),
    ("bad babysit value", with_lines("babysit", "rollback_factor = 2"), "babysit.rollback_factor"),
    ("babysit typo", with_lines("babysit", "patiance = 2"), "babysit.patiance"),
    ("bad target", with_lines("babysit", "target = 'high'"), "babysit.target"),
    ("invalid TOML", GOOD + "x = \n", "job"),
    ("duplicate key", with_lines("search", "trials = 5"), "job"),
]


@pytest.mark.parametrize("text, field", [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES])
@pytest.mark.parametrize("command", [["parallel", "--dry-run"], ["babysit", "--overwrite"]])
def test_every_bad_job_file_is_one_line_naming_the_field(tmp_path, out, capsys, command, text, field):
    job = write_job(tmp_path, "bad", text=text)
    before = snapshot(out, folders=True)
    assert cli.main([command[0], str(job), "--out", str(out), *command[1:]]) == 2
    captured = capsys.readouterr()
    assert_one_error_line(captured.err, command[0], field)
    assert snapshot(out, folders=True) == before


BAD_SETS = [
    # (id, --set values, field)
    ("no equals sign", ["search.trials"], "--set"),
    ("empty key", ["=3"], "--set"),
    ("empty section", [".trials=3"], "--set"),
    ("unknown key", ["search.trails=3"], "search.trails"),
    ("unknown section", ["serach.trials=3"], "serach"),
    ("into a value", ["model.epochs.x=1"], "model.epochs"),
    ("over a section", ["search=3"], "search"),
    ("negative", ["search.trials=-3"], "search.trials"),
    ("text for a number", ["search.trials=many"], "search.trials"),
    ("bad dimension", ["space.learning_rate={ log_uniform = [0, 0.1] }"], "space.learning_rate"),
    ("list where a choice was meant", ["space.batch_size=[32, 64]"], "space.batch_size"),
    ("unknown hyperparameter", ["model.dropout=0.5"], "model.dropout"),
    ("bad name", ["name=../x"], "name"),
    ("hidden name", ["name=.x"], "name"),
    ("float range for an integer", ["space.epochs={ uniform = [2, 10] }"], "space.epochs"),
    ("last one is bad", ["search.trials=8", "search.trials=0"], "search.trials"),
    ("bad data option", ["data.source=spiral", "data.options.arms=5"], "data.options.arms"),
]


@pytest.mark.parametrize("sets, field", [c[1:] for c in BAD_SETS], ids=[c[0] for c in BAD_SETS])
def test_every_bad_set_is_one_line_naming_the_field(tmp_path, out, capsys, sets, field):
    job = write_job(tmp_path, "bad", text=GOOD)
    before = snapshot(out, folders=True)
    argv = ["parallel", str(job), "--dry-run", "--out", str(out)]
    for value in sets:
        argv += ["--set", value]
    assert cli.main(argv) == 2
    assert_one_error_line(capsys.readouterr().err, "parallel", field)
    assert snapshot(out, folders=True) == before


# --- properties ----------------------------------------------------------------------------------

FIELDS = [
    "search.sampler", "search.trials", "search.scheduler", "search.metric", "search.mode", "search.concurrency",
    "search.seed", "search.grid_points", "search.rounds", "search.keep_fraction", "search.shrink",
    "search.grace_period", "search.reduction_factor", "search.max_retries", "search.trial_timeout",
    "babysit.epochs", "babysit.patience", "babysit.min_delta", "babysit.plateau_factor", "babysit.cooldown",
    "babysit.tolerance", "babysit.rollback_factor", "babysit.divergence_ratio", "babysit.divergence_factor",
    "babysit.min_lr", "babysit.max_rollbacks", "babysit.target", "babysit.seed", "babysit.keep_checkpoints",
    "babysit.metric", "babysit.mode", "data.valid_fraction", "data.test_fraction", "data.seed", "data.target",
    "model.hidden_layers", "model.batch_norm", "model.activation", "model.optimizer", "model.learning_rate",
    "model.beta1", "model.batch_size", "model.l2", "model.epochs", "name",
]
# Values a user might type, most of them wrong for most fields (small numbers: a valid value makes
# the dry run print every trial, and it must stay quick).
typed = st.one_of(
    st.integers(-3, 40).map(str), st.floats(-2, 2).map(repr), st.booleans().map(str),
    st.text(alphabet="abc_./-=[]{}\"' 019\n", max_size=12),
    st.sampled_from(["nan", "-inf", "inf", "1e400", "[]", "[0]", "[8, 8]", "{ a = 1 }", "{}", "none", "max", "min",
                     "grid", "asha", "adam", "relu", "val_loss", "2024-01-01", '""', "..", "../x", "a/b"]),
)


@given(field=st.sampled_from(FIELDS), value=typed)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_set_value_either_runs_or_is_one_line_naming_a_field(tmp_path, out, capsys, field, value):
    """Whatever a user types after --set, the dry run either works or says which field is wrong."""
    job = write_job(tmp_path, "bad", text=GOOD)
    before = snapshot(out, folders=True)
    status = cli.main(["parallel", str(job), "--dry-run", "--out", str(out), "--set", f"{field}={value}"])
    err = capsys.readouterr().err
    assert snapshot(out, folders=True) == before
    if status == 0:
        assert err == ""
        return
    assert status == 2
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    message = err.strip()[len("caviar parallel: error: "):]
    # the field itself; or the field it clashed with (a fraction sum); or --set when no field was made
    assert message.startswith((f"{field}: ", f"{field}.", "data.test_fraction: ", "--set: ")), message


@given(section=st.sampled_from(["search", "babysit", "data", "model", "space"]),
       key=st.from_regex(r"[a-z][a-z_]{0,12}", fullmatch=True))
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_an_unknown_key_in_a_file_is_named_with_its_section(tmp_path, out, capsys, section, key):
    known = {"search": SearchSpec.__dataclass_fields__, "babysit": BabysitSpec.__dataclass_fields__,
             "data": DataSpec.__dataclass_fields__, "model": MLP_HYPERPARAMETERS + ("trainer",),
             "space": MLP_HYPERPARAMETERS + ("trainer",)}[section]
    if key in known:
        return
    job = write_job(tmp_path, "bad", text=with_lines(section, f"{key} = 1"))
    before = snapshot(out, folders=True)
    assert cli.main(["parallel", str(job), "--dry-run", "--out", str(out)]) == 2
    assert_one_error_line(capsys.readouterr().err, "parallel", f"{section}.{key}: unknown")
    assert snapshot(out, folders=True) == before


@pytest.mark.parametrize("command", ["parallel", "babysit"])
@pytest.mark.parametrize("name, problem", [("ghost", "there is no run 'ghost'"), (VICTIM, "has no job.toml")])
def test_a_resume_by_name_needs_the_run_and_its_saved_job(out, capsys, command, name, problem):
    """Never the default job in a run's place: a resume by --name reads the run's own job.toml."""
    (out / VICTIM / "job.toml").unlink()
    before = snapshot(out, folders=True)
    assert cli.main([command, "--out", str(out), "--name", name, "--resume"]) == 2
    err = capsys.readouterr().err
    assert_one_error_line(err, command, "--resume")
    assert problem in err
    assert snapshot(out, folders=True) == before


# --- OSErrors: one line, "--out:" for a path in the results folder, exit 1 when the machine failed ---------

OS_ERRORS = [
    # (id, the error, --out, message, exit status)
    ("full disk, no path", OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), "res",
     f"--out: res: {os.strerror(errno.ENOSPC)}", 1),
    ("quota, a path in out", OSError(errno.EDQUOT, os.strerror(errno.EDQUOT), "res/run/epochs.parquet/part-1"), "res",
     f"--out: res/run/epochs.parquet/part-1: {os.strerror(errno.EDQUOT)}", 1),
    ("I/O error elsewhere", OSError(errno.EIO, os.strerror(errno.EIO), "/elsewhere/x"), "res",
     f"/elsewhere/x: {os.strerror(errno.EIO)}", 1),
    ("out is a file", FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), "setup.py"), "setup.py",
     "--out: setup.py: exists and is not a folder", 2),
    ("through a file", NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), "setup.py/res"), "setup.py/res",
     f"--out: setup.py/res: {os.strerror(errno.ENOTDIR)}", 2),
    ("a folder above out", PermissionError(errno.EACCES, os.strerror(errno.EACCES), "/srv"), "/srv/a/res",
     f"--out: /srv: {os.strerror(errno.EACCES)}", 2),
    ("read-only", OSError(errno.EROFS, os.strerror(errno.EROFS), "res/.run.lock"), "res",
     f"--out: res/.run.lock: {os.strerror(errno.EROFS)}", 2),
    ("not out's", PermissionError(errno.EACCES, os.strerror(errno.EACCES), "data.csv"), "res",
     f"data.csv: {os.strerror(errno.EACCES)}", 2),
    ("a message of its own", FileExistsError("--out: res/x exists and is not a run folder"), "res",
     "--out: res/x exists and is not a run folder", 2),
    ("no errno, no path", OSError("Couldn't deserialize thrift:\n TProtocolException"), "res",
     "Couldn't deserialize thrift: TProtocolException", 1),
    ("a ValueError", ValueError("search.trials: bad\nmore"), "res", "search.trials: bad", 2),
]


@pytest.mark.parametrize("exc, out, message, status", [c[1:] for c in OS_ERRORS], ids=[c[0] for c in OS_ERRORS])
def test_an_error_is_one_line_naming_out_when_it_is_about_out(exc, out, message, status):
    assert cli.error_line(exc, out) == (message, status)


def test_an_error_line_without_an_out_names_no_out():
    assert cli.error_line(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), None) == (os.strerror(errno.ENOSPC), 1)


def test_version_prints_the_package_version(capsys):
    import caviar

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"caviar {caviar.__version__}"


def test_flags_go_anywhere_after_the_command(runs, capsys):
    """`caviar compare A --out DIR B` and `caviar nudge NAME --out DIR key=value` read as meant."""
    assert cli.main(["compare", "sweep", "--out", str(runs), "panda"]) == 0
    table = capsys.readouterr().out
    assert "sweep" in table and "panda" in table
    assert cli.main(["nudge", "panda", "--out", str(runs), "learning_rate=0.01", "--stop"]) == 2
    err = capsys.readouterr().err   # understood; refused only because nobody babysits it right now
    assert "not being babysat" in err and "unrecognized" not in err


def test_flags_go_before_the_command_too(runs, capsys):
    """`caviar --out DIR show NAME` reads as `caviar show NAME --out DIR`, for every command."""
    assert cli.main(["--out", str(runs), "show", "sweep"]) == 0
    assert "sweep" in capsys.readouterr().out
    assert cli.main([f"--out={runs}", "compare", "sweep", "panda"]) == 0
    assert "panda" in capsys.readouterr().out
    assert cli.main(["--out", str(runs), "nudge", "panda", "learning_rate=0.01"]) == 2
    err = capsys.readouterr().err   # understood; refused only because nobody babysits it right now
    assert "not being babysat" in err and "unrecognized" not in err


@pytest.mark.parametrize("argv, expected", [
    (["--quiet", "parallel", "job"], {"command": "parallel", "quiet": True, "job": "job"}),
    (["--set", "search.trials=2", "--out", "show", "parallel", "--dry-run"],   # a flag's value may name a command
     {"command": "parallel", "set": ["search.trials=2"], "out": "show", "dry_run": True}),
    (["--resume", "--name", "a", "babysit"], {"command": "babysit", "resume": True, "name": "a"}),
    (["--rollback", "nudge", "a", "l2=0.1"], {"command": "nudge", "rollback": True, "run": "a", "changes": ["l2=0.1"]}),
    (["--json", "--top", "3", "show", "a"], {"command": "show", "json": True, "top": 3, "run": "a"}),
    (["--out", "r", "compare", "a", "b"], {"command": "compare", "out": "r", "runs": ["a", "b"]}),
    (["--out", "r", "report", "a"], {"command": "report", "out": "r", "run": "a"}),
    (["--port", "0", "serve", "--host", "::1"], {"command": "serve", "port": 0, "host": "::1"}),
], ids=lambda v: " ".join(v) if isinstance(v, list) else "")
def test_every_command_reads_flags_before_its_name(argv, expected):
    args = vars(cli.parse(cli.build_parser(), argv))
    assert {key: args[key] for key in expected} == expected


@pytest.mark.parametrize("argv, complaint", [
    (["--bogus", "show", "a"], "caviar show: error: unrecognized arguments: --bogus"),
    (["--quiet", "show", "a"], "caviar show: error: unrecognized arguments: --quiet"),   # another command's flag
    (["--out", "r", "shw", "a"], "caviar: error: argument COMMAND: invalid choice: 'shw'"),
    (["--out", "r"], "caviar: error: the following arguments are required: COMMAND"),
])
def test_a_bad_flag_before_the_command_is_one_line_exit_2(argv, complaint, capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(argv)
    err = capsys.readouterr().err
    assert done.value.code == 2 and err.count("\n") == 1 and err.startswith(complaint), err


def test_help_and_version_before_a_command_still_answer(capsys):
    # a unique prefix answers as argparse reads one: --ver, --he
    for argv in (["--help"], ["--version"], ["--out", "r", "--version", "show", "a"], ["--ver"], ["--he", "show"]):
        with pytest.raises(SystemExit) as done:
            cli.main(argv)
        assert done.value.code == 0
    out = capsys.readouterr().out
    assert "usage: caviar" in out and out.count("caviar ") >= 2


def test_a_real_process_reads_flags_before_the_command(runs):
    done = caviar_run("--out", runs, "show", "sweep", "--json", timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["run"] == "sweep"
