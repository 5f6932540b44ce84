"""One home for making jobs and running caviar in the tests.

Tests all over tests/ write small job files and then run the command line, either in this process
(quick, and capsys sees what it prints) or as a real `python -m caviar` process (the exit status
and stderr a user sees, or a driver to kill). The helpers for that live here once, rather than a
copy in each test file: every test makes a job and starts caviar the same way, a change to the
command line is followed in one place, and no test module imports from another.

- Jobs: `write_job` writes a job file from section texts or tables, on top of a preset
  (`TOY_SWEEP`, `DIGITS`), or a whole text as it is (bad input).
- In this process: `caviar_main`, `caviar_output` (with what it printed), and the two drivers
  `run_sweep` and `run_babysit`.
- Real processes: `caviar_run` (to the end), `caviar_start` (a `Popen`, for tests that read its
  live output, interrupt or kill it), `driver_with_rows` (a `parallel` driver once its first trial
  rows are on disk) and `run_command` (a command line caviar printed, such as its resume command).
- Folders: `snapshot`, every file's bytes, to show that a refused command touched nothing.
- Locks: `hold_lock`, a real second process holding a run's lock, as a live driver would.

This is a support module, not a test file (pytest collects only test_*.py). Test trainers stay in
tests/toys.py, since job files name them as `tests.toys:...`; simulated run folders stay
in tests/run_factory.py; fixtures (the shared Ray cluster) in tests/conftest.py.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from caviar import cli

ROOT = Path(__file__).resolve().parent.parent
CAVIAR = [sys.executable, "-m", "caviar"]

# --- jobs --------------------------------------------------------------------------------------------

# Presets for write_job: a job's tables, section by section.
# A sweep of the toy trainer on the spiral data: quick, seeded, scored by val_accuracy.
TOY_SWEEP: Mapping[str, Mapping[str, Any]] = {
    "data": {"source": "spiral"},
    "model": {"trainer": "tests.toys:ToyTrainer", "epochs": 3},
    "space": {"learning_rate": {"log_uniform": [1e-4, 1e-1]}},
    "search": {"sampler": "random", "trials": 8, "scheduler": "fifo", "metric": "val_accuracy", "mode": "max",
               "seed": 3},
}
# Small and quick for a babysat run: the built-in trainer on digits, one hidden layer of 32.
DIGITS: Mapping[str, Mapping[str, Any]] = {
    "data": {"source": "digits"},
    "model": {"hidden_layers": [32]},
    "babysit": {},
}


def _toml(value: Any) -> str:
    """`value` as TOML: tables inline, so that lines may follow them in their section."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))   # a JSON string is a TOML basic string
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{key} = {_toml(item)}" for key, item in value.items()) + " }"
    if isinstance(value, Sequence):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def write_job(folder: Path, name: str = "job", base: Mapping[str, Mapping[str, Any]] | None = None, *,
              text: str | None = None, **sections: str | Mapping[str, Any]) -> Path:
    """Write the job `name` to `folder/<name>.toml` and return the file's path.

    The file holds `name = "<name>"`, then the tables of `base` (a preset such as TOY_SWEEP or
    DIGITS), then any other section given. A section given as a table (a mapping) updates the
    base's, key by key; given as text, its TOML lines are added at the end of the section:
    `write_job(tmp_path, "sweep", TOY_SWEEP, search={"trials": 4}, model="sleep = 0.1")`.
    To search a space of your own rather than add to the preset's, leave the preset's out:
    `{**TOY_SWEEP, "space": {}}`.

    `text` is the whole file instead, written as it is (bad TOML too); `name` then only names the file.
    """
    path = Path(folder) / f"{name}.toml"
    if text is not None:
        if base or sections:
            raise TypeError("write_job: text is the whole file; no base or sections with it")
        path.write_text(text)
        return path
    tables: dict[str, dict[str, Any]] = {section: dict(table) for section, table in (base or {}).items()}
    added: dict[str, list[str]] = {}
    for section, given in sections.items():
        table = tables.setdefault(section, {})
        if isinstance(given, Mapping):
            table.update(given)
        else:
            added.setdefault(section, []).append(given)
    lines = [f"name = {_toml(name)}"]
    for section, table in tables.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml(value)}" for key, value in table.items()]
        lines += [extra for extra in added.get(section, []) if extra]
    path.write_text("\n".join(lines) + "\n")
    return path


# The toy SteadyTrainer on digits, for babysat runs; each test gives it a learning_rate (or leaves it
# out on purpose).
STEADY: Mapping[str, Mapping[str, Any]] = {**DIGITS, "model": {**DIGITS["model"], "trainer": "tests.toys:SteadyTrainer"}}


# --- caviar in this process ---------------------------------------------------------------------------

def caviar_main(*argv: str | Path) -> int:
    """`caviar ARGV` in this process (`caviar.cli.main`): its exit status."""
    return cli.main([str(arg) for arg in argv])


def caviar_output(capsys, *argv: str | Path) -> tuple[int, str, str]:
    """`caviar ARGV` in this process: its exit status, and what it printed to stdout and stderr."""
    status = caviar_main(*argv)
    out, err = capsys.readouterr()
    return status, out, err


def run_sweep(job: Path, out: Path, address: str, *extra: str) -> int:
    """`caviar parallel JOB --out OUT --address ADDRESS --quiet EXTRA` in this process."""
    return caviar_main("parallel", job, "--out", out, "--address", address, "--quiet", *extra)


def run_babysit(job: Path, out: Path, *extra: str) -> int:
    """`caviar babysit JOB --out OUT EXTRA` in this process."""
    return caviar_main("babysit", job, "--out", out, *extra)


# --- caviar in real processes -------------------------------------------------------------------------

def run_command(command: Sequence[str], *, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`command` in a real process run to its end, with no input: its status, stdout and stderr as text."""
    return subprocess.run(list(command), cwd=cwd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                          timeout=timeout)


def caviar_run(*argv: str | Path, timeout: float, cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python -m caviar ARGV` in a real process run to its end: exit status, stdout and stderr, as a user
    sees them."""
    return run_command(CAVIAR + [str(arg) for arg in argv], timeout=timeout, cwd=cwd)


def caviar_start(*argv: str | Path, cwd: Path | None = None, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                 **popen) -> subprocess.Popen:
    """`python -m caviar ARGV` started in a real process and returned at once, to read, interrupt or kill.

    Its output is text, piped unless `stdout`/`stderr` say otherwise; `popen` goes to `subprocess.Popen`.
    """
    return subprocess.Popen(CAVIAR + [str(arg) for arg in argv], cwd=cwd, stdin=subprocess.DEVNULL,
                            stdout=stdout, stderr=stderr, text=True, **popen)


def driver_with_rows(argv: Sequence[str | Path], trials_dir: Path, rows: int, **popen) -> subprocess.Popen:
    """A `caviar ARGV` (`parallel`) driver started as a subprocess, returned once `rows` trial rows are on disk."""
    driver = caviar_start(*argv, cwd=ROOT, stdout=subprocess.DEVNULL, **popen)
    deadline = time.monotonic() + 120
    while not (trials_dir.is_dir()
               and sum(pq.read_metadata(p).num_rows for p in trials_dir.glob("part-*.parquet")) >= rows):
        assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read()
        time.sleep(0.05)
    return driver


# --- folders -------------------------------------------------------------------------------------------

def snapshot(folder: Path, *, folders: bool = False, mtimes: bool = False) -> dict[str, Any]:
    """Every file under `folder` and its bytes, by relative path: a folder exactly as it is.

    With `folders`, every folder too (as None); with `mtimes`, each file's (bytes, modification time).
    """
    shot: dict[str, Any] = {}
    for path in sorted(folder.rglob("*")):
        key = str(path.relative_to(folder))
        if path.is_file():
            shot[key] = (path.read_bytes(), path.stat().st_mtime_ns) if mtimes else path.read_bytes()
        elif folders:
            shot[key] = None
    return shot


# --- locks ----------------------------------------------------------------------------------------------

def hold_lock(run: Path, kind: str = "babysit", *, open_folder: bool = False) -> subprocess.Popen:
    """A real second process that takes the run's lock (`caviar.store.lock`) as driver `kind` and
    sleeps, as a live driver would; with `open_folder`, as one past its first epoch, whose run folder
    is open (`mark_open`). Kill it to free the lock."""
    opened = f"mark_open({str(run)!r}); " if open_folder else ""
    code = (f"import time; from caviar.store.lock import acquire, mark_open; acquire({str(run)!r}, {kind!r}); "
            f"{opened}print('locked', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


# --- reading what a run wrote -----------------------------------------------------------------------

def parquet_table(run: Path, name: str) -> Any:
    """Table `name` of the run folder `run`, read by pandas as any Parquet reader would."""
    import pandas as pd

    return pd.read_parquet(Path(run) / f"{name}.parquet")


def wait_for_epoch(proc: subprocess.Popen, epoch: int) -> bool:
    """Read a babysit's live display until the line of `epoch`; False if the run ended first."""
    for line in proc.stdout:
        if line.startswith("epoch") and int(line.split()[1]) >= epoch:
            return True
    return False
