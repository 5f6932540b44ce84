"""One lifecycle for every driver: which job a command runs, and how its run folder is opened and left.

Both drivers (`caviar.sweep`, `caviar.babysit`) go through the same steps, in this order, so a rule
about run folders is written once and holds for both:

1. `job_for(args)`: the job file with its overrides, or, for `--resume`, the job.toml saved in the
   run's folder (plus any new --set): a resume needs no job file.
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


def job_for(args: argparse.Namespace, *, resume: bool) -> Any:
    """The validated Job a command runs: its job file with every override applied; with `resume`,
    the job as the run was first run (its folder's job.toml) plus any new --set. A resume by --name
    reads no job file at all: it may have been edited or deleted since."""
    from caviar.config.files import job_overrides, resolve_job_path
    from caviar.config.job import load_job

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
    job = load_job(resolve_job_path(getattr(args, "job", None)), job_overrides(args))
    if resume and saved(job.name).is_file():
        return _trusted(_resumed(saved(job.name), job_overrides(args)), args, saved=True)
    return _trusted(job, args, saved=False)


def _resumed(path: Path, overrides: list[str]) -> Any:
    """The saved job with a resume's --set applied, which may only give the run more budget or
    change how it is run: a new metric, mode, space, model value or seed would score the trials
    (epochs) still to come differently from those already done."""
    from caviar.config.job import load_job, parse_job

    before = load_job(path)
    after = parse_job(before.to_raw(), overrides)   # the saved job, read once, with the --set on top
    old, new = _dotted(before.to_raw()), _dotted(after.to_raw())
    refused = sorted(key for key in old.keys() | new.keys() if old.get(key) != new.get(key) and key not in RESUMABLE)
    if refused:
        raise ValueError(f"--set: {refused[0]} cannot change on --resume (the work already saved was done with "
                         f"the saved value; a resume may change only {', '.join(sorted(RESUMABLE))}); "
                         "run it under a new --name instead")
    return after


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
    """`job`, once its trainer is known not to come from inside --out (nothing in a results folder
    chooses code). A job read from a run's job.toml says, before anything is imported, which code
    it will run (unless --quiet)."""
    from caviar.trainers.registry import refuse_code_from

    origin = refuse_code_from(job.trainer, Path(args.out))
    if saved and origin is not None and not getattr(args, "quiet", False):
        print(f"caviar: the saved job runs the trainer {job.trainer} from {origin}", file=sys.stderr, flush=True)
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
        raise FileExistsError(f"{run} already holds results: pass --resume to continue it "
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
