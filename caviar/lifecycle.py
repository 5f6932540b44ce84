"""One lifecycle for every driver: which job a command runs, and how its run folder is opened and left.

Both drivers (`caviar.sweep`, `caviar.babysit`) go through the same steps, in this order, so a rule
about run folders is written once and holds for both:

1. `job_for(args)`: the job (a file, or from Python a dict or a Job) with its overrides, or, for
   `--resume`, the job.toml saved in the run's folder (plus any new --set): a resume needs no job
   file. `Invocation` is what a command was asked, from the command line or from Python.
2. `check_folder(request)`: every refusal that needs no change on disk: --resume with --overwrite,
   a resume of a run that is not there, a name that already holds results (neither flag), a folder
   of the other kind (not even with --overwrite), a run another driver is running now.
3. `locked(request)`: the run's lock (`caviar.store.lock`, beside the folder) for the rest of the
   command, taken before anything in the folder is created, reset or repaired; the checks of step 2
   are made again under it, since another command may have changed the folder meanwhile.
4. `open_folder(request, job)`: the folder created, replaced (--overwrite) or repaired (--resume),
   and its job.toml recording the job as run.
5. `interrupted(request, saved)`: Ctrl-C ends the command with exit status 130 and one message
   saying what is saved and the command that resumes the run.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from caviar.store import lock
from caviar.store.atomic import atomic_write_bytes
from caviar.store.folder import RunFolder, open_run
from caviar.store.layout import folder_kind, holds_results
from caviar.store.vocabulary import JOB_FILE, RunKind, validate_run_name

EXIT_INTERRUPTED = 130
# What a --resume may change: the budget (more trials, more epochs) and how the work is run; never
# what a trial is or how it is scored.
RESUMABLE = frozenset({"search.trials", "search.concurrency", "search.max_retries", "search.trial_timeout",
                       "babysit.epochs"})
COMMANDS = {RunKind.SWEEP: "parallel", RunKind.BABYSIT: "babysit"}

# A driver never writes into the other kind's folder, not even with --overwrite: `parallel` and
# `babysit` share the default name, and a sweep is hours of trials, not one run to start over.
_OTHER_KIND = {
    (RunKind.BABYSIT, False): "name: {name!r} holds a sweep; babysit its best trial with --from {name} "
                              "(into {name}-babysit), or pick another --name",
    (RunKind.BABYSIT, True): "--resume: {name!r} is a sweep (it has trials), not a babysat run; babysit its "
                             "best trial into a new run with --from {name}",
    (RunKind.SWEEP, False): "name: {name!r} holds a babysat run; pick another --name for the sweep",
    (RunKind.SWEEP, True): "--resume: {name!r} is a babysat run, not a sweep; pick another --name for the sweep",
}


class RunExists(FileExistsError, ValueError):
    """A refusal to write over a run: a FileExistsError for the command line (exit status 2, one
    line), and a ValueError, as every bad input is, for a caller in Python."""


@dataclass(frozen=True)
class Invocation:
    """What a driver command is asked to run, from the command line or from Python (`caviar.sweep`).

    job: a job file's path or name in jobs/ (None: the default job, or with a resume by `name` the
    run's saved job), a dict of the job's tables, or a parsed Job. `set`: overrides as --set gives
    them ("search.trials=8"); `name` and `seed` are folded into them (`caviar.config.files`).
    """

    job: Any = None
    set: tuple[str, ...] = ()
    name: str | None = None
    seed: int | None = None
    out: str = "results"
    quiet: bool = False

    @classmethod
    def of(cls, job: Any = None, *, trainer: Any = None, data: Any = None, out: str | os.PathLike[str] = "results",
           name: str | None = None, seed: int | None = None, overrides: Any = None, quiet: bool = False) -> Invocation:
        """The Python entry points' arguments: a trainer class and a data function become the
        "module:name" a job gives (refused, one line, when no worker could import them), `overrides`
        a list of "key=value" or a dict {"search.trials": 8}; bad ones raise ValueError."""
        from caviar.importing import import_name

        given = []
        if trainer is not None:
            text = trainer if isinstance(trainer, str) else import_name(trainer, "trainer", "class")
            given.append(f"model.trainer={_toml_value(text)}")
        if data is not None:
            text = data if isinstance(data, (str, os.PathLike)) else import_name(data, "data", "function")
            given.append(f"data.source={_toml_value(os.fspath(text))}")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ValueError(f"seed: expected an integer, got {seed!r}")
        if name is not None and not isinstance(name, str):
            raise ValueError(f"name: expected a run name (text), got {name!r}")
        return cls(job, tuple(given + _override_texts(overrides)), name, seed, os.fspath(out), quiet)


def _override_texts(overrides: Any) -> list[str]:
    """Overrides as --set texts: a list of "key=value" kept, a dict's values written as TOML."""
    if overrides is None:
        return []
    if isinstance(overrides, Mapping):
        if bad := next((key for key in overrides if not isinstance(key, str)), None):
            raise ValueError(f"overrides: keys are dotted field names ('search.trials'), got {bad!r}")
        return [f"{key}={_toml_value(value)}" for key, value in overrides.items()]
    if isinstance(overrides, str) or not isinstance(overrides, Sequence) or \
            not all(isinstance(item, str) for item in overrides):
        raise ValueError(f"overrides: expected a dict or a list of 'section.key=value' texts, got {overrides!r}")
    return list(overrides)


def _toml_value(value: Any) -> str:
    """`value` as the TOML text of an override's right-hand side (a table inline)."""
    import json

    import tomli_w

    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{json.dumps(str(k))} = {_toml_value(v)}" for k, v in value.items()) + " }"
    try:
        return tomli_w.dumps({"v": value}).partition("=")[2].strip()
    except TypeError as exc:
        raise ValueError(f"overrides: {value!r} has no TOML form ({exc})") from None


@dataclass(frozen=True)
class RunRequest:
    """What a command asks of a run folder. `resume_flags`: flags the resume command repeats
    (a sweep's --address, --concurrency, --quiet)."""

    kind: RunKind
    out: Path
    name: str
    resume: bool = False
    overwrite: bool = False
    resume_flags: tuple[str, ...] = field(default=())

    @property
    def path(self) -> Path:
        return self.out / self.name

    @property
    def command(self) -> str:
        return COMMANDS[self.kind]


def job_for(args: argparse.Namespace | Invocation, *, resume: bool) -> Any:
    """The validated Job a command runs: its job (file, dict or Job) with every override applied; with `resume`,
    the job as the run was first run (its folder's job.toml) plus any new --set. A resume by --name
    reads no job file at all: it may have been edited or deleted since."""
    from caviar.config.files import job_overrides

    def saved(name: str) -> Path:
        path = Path(args.out) / name / JOB_FILE
        if path.is_symlink():   # a run's files are its own: a link is never read through
            raise ValueError(f"--resume: {path} is a symbolic link; a run folder's files must be its own")
        return path

    if resume and args.name is not None:
        validate_run_name(args.name, "--name")
        if saved(args.name).is_file():
            return _trusted(_resumed(saved(args.name), job_overrides(args)), args, saved=True)
        if getattr(args, "job", None) is None:   # never resume a run with the default job in its place
            folder = Path(args.out) / args.name
            if not folder.is_dir():
                raise ValueError(f"--resume: there is no run {args.name!r} in {args.out} to resume")
            raise ValueError(f"--resume: {folder} has no {JOB_FILE}; pass the job file it was run with")
    job = _fresh_job(getattr(args, "job", None), job_overrides(args))
    if resume and saved(job.name).is_file():
        return _trusted(_resumed(saved(job.name), job_overrides(args)), args, saved=True)
    return _trusted(job, args, saved=False)


def _fresh_job(job: Any, overrides: list[str]) -> Any:
    """The job a command names (a path or a name in jobs/, a dict of tables, a Job), overrides applied."""
    from caviar.config.files import resolve_job_path
    from caviar.config.job import Job, load_job, parse_job

    if isinstance(job, Job):
        return parse_job(job.to_raw(), overrides)
    if isinstance(job, Mapping):
        return parse_job(job, overrides)
    if job is not None and not isinstance(job, (str, os.PathLike)):
        raise ValueError(f"job: expected a job file's path or name, a dict or a caviar Job, got {job!r}")
    return load_job(resolve_job_path(None if job is None else os.fspath(job)), overrides)


def _resumed(path: Path, overrides: list[str]) -> Any:
    """The saved job with a resume's --set applied, which may only give the run more budget or
    change how it is run: a new metric, mode, space, model value or seed would score the trials
    (epochs) still to come differently from those already done."""
    from caviar.config.job import load_job, parse_job
    from caviar.config.overrides import apply_overrides

    before = load_job(path)
    raw = apply_overrides(before.to_raw(), overrides)   # the saved job, read once, with the --set on top
    try:
        after = parse_job(raw)
    except ValueError:   # a change a resume may not make is the news, even when it is bad besides
        _refuse_changes(before.to_raw(), raw)
        raise
    _refuse_changes(before.to_raw(), after.to_raw())
    return after


def _refuse_changes(saved: dict[str, Any], given: dict[str, Any]) -> None:
    """Refuse a resume's job table that differs from the saved one in a field a resume may not change."""
    old, new = _dotted(saved), _dotted(given)
    refused = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key) and key not in RESUMABLE)
    if refused:
        raise ValueError(f"--set: {refused[0]} cannot change on --resume (the work already saved was done with "
                         f"the saved value; a resume may change only {', '.join(sorted(RESUMABLE))}); "
                         "run it under a new --name instead")


def _dotted(table: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"search.trials": 8, ...}: a job's raw table flattened to its fields."""
    flat: dict[str, Any] = {}
    for key, value in table.items():
        if isinstance(value, dict) and key in ("data", "model", "space", "search", "babysit", "pbt") and not prefix:
            flat.update(_dotted(value, f"{key}."))
        else:
            flat[prefix + key] = value
    return flat


def _trusted(job: Any, args: argparse.Namespace, *, saved: bool) -> Any:
    """`job`, once its trainer and data function are known not to come from inside --out (nothing in a results folder
    chooses code). A job read from a run's job.toml says, before anything is imported, which code
    it will run (unless --quiet)."""
    from caviar.trainers.registry import refuse_code_from

    origin = refuse_code_from(job.trainer, Path(args.out))
    data_origin = refuse_code_from(job.data.source, Path(args.out), "data.source")
    if saved and not getattr(args, "quiet", False):
        for what, name, where in (("trainer", job.trainer, origin), ("data function", job.data.source, data_origin)):
            if where is not None:
                print(f"caviar: the saved job runs the {what} {name} from {where}", file=sys.stderr, flush=True)
    return job


def check_folder(request: RunRequest) -> None:
    """Raise ValueError / FileExistsError (exit status 2) for a request the folder refuses; reads only."""
    validate_run_name(request.name)
    run = request.path
    if request.resume and request.overwrite:
        raise ValueError("--resume: continues the run, --overwrite replaces it; pass one of them")
    if run.exists() and not run.is_dir():
        raise FileExistsError(f"--out: {run} exists and is not a run folder")
    if request.resume and not run.is_dir():
        raise ValueError(f"--resume: there is no run {request.name!r} in {request.out} to resume")
    kind = folder_kind(run) if run.is_dir() else None
    if kind is not None and kind != request.kind:
        raise ValueError(_OTHER_KIND[request.kind, request.resume].format(name=request.name))
    if not request.resume and not request.overwrite and run.is_dir() and holds_results(run):
        raise RunExists(f"{run} already holds results: pass --resume to continue it "
                              "or --overwrite to replace it")
    holder = lock.holder(run)
    if holder is not None and holder.pid != os.getpid():
        raise ValueError(f"name: {request.name!r} is being run by {holder.describe()} right now")


@contextlib.contextmanager
def locked(request: RunRequest) -> Iterator[None]:
    """Hold the run's lock for the rest of the command, the folder's checks made again under it."""
    check_folder(request)
    with lock.held(request.path, request.kind.value):
        check_folder(request)
        yield


def open_folder(request: RunRequest, job: Any) -> RunFolder:
    """Create, replace or repair the run folder (under the lock), and record the job as run in its
    job.toml: a resume's new --set included, so that the next resume runs what this one ran."""
    run = open_run(request.out, request.name, job.to_toml(), resume=request.resume, overwrite=request.overwrite)
    record_job(run.path / JOB_FILE, job.to_toml())
    return run


def record_job(path: Path, text: str) -> None:
    """Rewrite a run's job.toml (atomically) when the job as run now differs from it."""
    data = text.encode()
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == data:
            return
    atomic_write_bytes(path, data, fsync=True)


def resume_command(request: RunRequest) -> str:
    """The command line that resumes the run: by name, from the job.toml in its folder, so it works
    whatever has become of the job file since."""
    return shlex.join([sys.executable, "-m", "caviar", request.command, "--out", str(request.out),
                       "--name", request.name, "--resume", *request.resume_flags])


def interrupted(request: RunRequest, saved: str) -> int:
    """Say what Ctrl-C left on disk and how to go on; the exit status of an interrupted command."""
    print(f"caviar {request.command}: interrupted; {saved} saved in {request.path}. "
          f"Resume with: {resume_command(request)}", file=sys.stderr, flush=True)
    return EXIT_INTERRUPTED
