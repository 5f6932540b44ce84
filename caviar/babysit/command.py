"""`python -m caviar babysit` and `caviar.babysit()`: everything checked before the results folder is
touched, then the loop. `babysit(...)` is the Python entry point (returns the run as `caviar.load`
reads it); `command(args)` the command line's thin shell; both run `run_babysit`.

The order matters, because `--overwrite` deletes the old run the moment the folder is opened: the
names (`--from SWEEP` babysits into SWEEP-babysit, never into the sweep itself), the job against its
trainer, the data, the folder (`caviar.lifecycle`), its checkpoints (no symbolic link), the resume
point and the best state it goes back to, and the trainer's first epoch are all checked first, and
any problem ends the command with one line and exit status 2, the old run byte for byte as it was.

Once the folder is open, the run lock says so (`caviar.store.lock.mark_open`): `caviar nudge` refuses
until then, since a nudge sent into the old folder would be replaced with it.

Ctrl-C during a babysit stops it at the end of the epoch in progress, with every epoch persisted,
and prints the command that resumes it (exit status 130); a second Ctrl-C stops at once (the epochs
since the last checkpoint are then replayed, exactly, by the resume). A Ctrl-C anywhere after the
folder is open (while attaching or finishing, too) prints that command as well.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Iterator

from caviar import lifecycle
from caviar.babysit.loop import Sitter
from caviar.babysit.resume import refuse_links, resume_point
from caviar.store import lock
from caviar.store.vocabulary import RunKind, validate_run_name


def babysit(job: Any = None, *, trainer: Any = None, data: Any = None, out: str | os.PathLike[str] = "results",
            name: str | None = None, seed: int | None = None, overrides: Any = None, from_run: str | None = None,
            resume: bool = False, overwrite: bool = False, quiet: bool = False) -> Any:
    """Babysit one model (panda mode) as `caviar babysit` does, and return its run (`caviar.load`'s Run).

    job, trainer, data, out, name, seed, overrides: as `caviar.sweep` takes them. from_run: a finished
    sweep under `out` whose best trial to start from (into FROM-babysit unless `name`). quiet: no
    line per epoch. Bad input raises ValueError with the command's one-line message, before anything
    is written; Ctrl-C stops at the end of the epoch in progress (persisted) and raises KeyboardInterrupt.
    """
    invocation = lifecycle.Invocation.of(job, trainer=trainer, data=data, out=out, name=name, seed=seed,
                                         overrides=overrides, quiet=quiet)
    echo = (lambda line: None) if quiet else (lambda line: print(line, flush=True))
    status, path = run_babysit(invocation, from_run=from_run, resume=bool(resume), overwrite=bool(overwrite), echo=echo)
    if status == lifecycle.EXIT_INTERRUPTED:
        raise KeyboardInterrupt(f"babysit interrupted; its epochs are saved in {path}")
    from caviar.store.reader import load

    return load(path)


def command(args: argparse.Namespace) -> int:
    """`caviar babysit [JOB] [--from RUN] [--resume | --overwrite]`: 0 when the run finished, 130
    when Ctrl-C stopped it. Raises ValueError / FileExistsError (exit 2) before writing anything."""
    invocation = lifecycle.Invocation(args.job, tuple(args.set), args.name, args.seed, args.out)
    return run_babysit(invocation, from_run=args.from_run, resume=args.resume, overwrite=args.overwrite,
                       echo=lambda line: print(line, flush=True))[0]


def run_babysit(invocation: lifecycle.Invocation, *, from_run: str | None, resume: bool, overwrite: bool,
                echo: Callable[[str], None]) -> tuple[int, Path]:
    """Check everything, lock, train the first epoch, open the folder, babysit: (exit status, folder)."""
    from caviar.trainers import check_job

    invocation = _named_after_from(invocation, from_run, resume)
    job = lifecycle.job_for(invocation, resume=resume)
    request = lifecycle.RunRequest(RunKind.BABYSIT, Path(invocation.out), job.name, resume=resume, overwrite=overwrite)
    if from_run is not None and job.name == from_run:
        raise ValueError(f"--name: {job.name!r} is the sweep given to --from; babysit into another run "
                         f"(by default {from_run}-babysit)")
    trainer = check_job(job)   # the job's own mistakes first, then the folder's
    lifecycle.check_folder(request)
    if from_run is not None:
        from caviar.babysit.from_sweep import with_best_trial

        job = with_best_trial(job, request.out / from_run, echo)
        trainer = check_job(job)   # the sweep's values, through the same checks
    data = job.load_data()
    with lifecycle.locked(request):
        if not overwrite and request.path.is_dir():  # a folder kept as it is: nothing read through a link
            refuse_links(request.path)
        last = resume_point(request.path) if resume else None
        sitter = Sitter(job, trainer, data, echo, request.path)
        if last is not None:
            sitter.resume(last)
        else:
            sitter.begin()  # trains the first epoch: the trainer's metrics are checked here
        run = lifecycle.open_folder(request, job)
        try:
            lock.mark_open(request.path)  # from now on a nudge stays: `caviar nudge` waited for this
            summary = _babysit(sitter, run)
        except KeyboardInterrupt:  # a second Ctrl-C, or one outside the epochs: the run stays resumable
            summary = None
        if summary is None:
            return lifecycle.interrupted(request, f"epochs up to {sitter.saved_epoch} are"), request.path
    echo(summary.line())
    return 0, request.path


def _babysit(sitter: Sitter, run: Any) -> Any:
    """Train into the open folder `run` and finish: the Summary, or None when Ctrl-C stopped the run at
    an epoch boundary (persisted). A second Ctrl-C raises KeyboardInterrupt: the epoch in progress
    is lost, not the run."""
    with _ctrl_c_at_epoch_end(sitter):
        sitter.attach(run)
        finished = sitter.run_until_stopped()
    return sitter.finish() if finished else None


def _named_after_from(invocation: lifecycle.Invocation, from_run: str | None,
                      resume: bool) -> lifecycle.Invocation:
    """`--from SWEEP` without --name babysits into SWEEP-babysit, never into the sweep's own folder."""
    if from_run is None:
        return invocation
    validate_run_name(from_run, "--from")
    if resume:
        raise ValueError(f"--from: not with --resume (a resumed run goes on with the model it started "
                         f"with), got --from {from_run}")
    if invocation.name is not None:
        return invocation
    return dataclasses.replace(invocation, name=f"{from_run}-babysit")


@contextlib.contextmanager
def _ctrl_c_at_epoch_end(sitter: Sitter) -> Iterator[None]:
    """While it is open, a first Ctrl-C asks `sitter` to stop at the next epoch boundary (persisted);
    a second raises KeyboardInterrupt at once. Only the main thread can handle signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: Any) -> None:
        if sitter.interrupted:
            raise KeyboardInterrupt
        sitter.interrupted = True
        # os.write, not print: the handler may run in the middle of a print to the same stream
        with contextlib.suppress(OSError, ValueError):
            os.write(sys.stdout.fileno(), b"stopping at the end of this epoch (Ctrl-C again: stop at once)\n")

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
