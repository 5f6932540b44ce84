"""`python -m caviar babysit`: everything checked before the results folder is touched, then the loop.

The order matters, because `--overwrite` deletes the old run the moment the folder is opened: the
names (`--from SWEEP` babysits into SWEEP-babysit, never into the sweep itself), the resume point,
the data, the trainer (constructed once) and its first epoch's metrics are all checked first, and
any problem ends the command with one line and exit status 2, the old run byte for byte as it was.

Ctrl-C during a babysit stops it at the end of the epoch in progress, with every epoch persisted,
and prints the command that resumes it (exit status 130); a second Ctrl-C stops at once (the epochs
since the last checkpoint are then replayed, exactly, by the resume).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from caviar.babysit import nudges as channel
from caviar.babysit.loop import Sitter
from caviar.babysit.resume import holds_sweep, resume_point

EXIT_INTERRUPTED = 130


def command(args: argparse.Namespace) -> int:
    """`caviar babysit [JOB] [--from RUN] [--resume | --overwrite]`: 0 when the run finished, 130
    when Ctrl-C stopped it. Raises ValueError / FileExistsError (exit 2) before writing anything."""
    from caviar import cli
    from caviar.config.job import validate_name
    from caviar.store.writer import open_run
    from caviar.store.reader import JOB_FILE, holds_results

    if args.resume and args.overwrite:
        raise ValueError("--resume and --overwrite: pass one of them, not both")
    if args.from_run is not None:
        validate_name(args.from_run, "--from")
        if args.resume:
            raise ValueError(f"--from: not with --resume (a resumed run goes on with the model it started "
                             f"with), got --from {args.from_run}")
        if args.name is None:  # never the sweep's own folder
            args = argparse.Namespace(**{**vars(args), "name": f"{args.from_run}-babysit"})
    job = cli.load_job_from_args(args, resume=args.resume)
    out = Path(args.out)
    run_dir = out / job.name
    if args.from_run is not None and job.name == args.from_run:
        raise ValueError(f"--name: {job.name!r} is the sweep given to --from; babysit into another run "
                         f"(by default {args.from_run}-babysit)")
    if args.resume:
        if not run_dir.is_dir():
            raise ValueError(f"--resume: there is no run {job.name!r} in {out} to resume")
    elif run_dir.is_dir() and holds_sweep(run_dir):
        # Not even with --overwrite: `parallel` and `babysit` share the default name, and a sweep
        # is hours of trials, not one run to start over.
        raise ValueError(f"name: {job.name!r} holds a sweep; babysit its best trial with --from {job.name} "
                         f"(into {job.name}-babysit), or pick another --name")
    elif run_dir.is_dir() and holds_results(run_dir) and not args.overwrite:
        raise FileExistsError(f"{run_dir} already holds results: pass --resume to continue it "
                              "or --overwrite to replace it")
    if args.from_run is not None:
        job = with_best_trial(job, out / args.from_run)
    pid = channel.running_pid(run_dir)
    if pid is not None:
        raise ValueError(f"run: {job.name!r} is being babysat right now by process {pid}")
    last = resume_point(run_dir) if args.resume else None
    sitter = Sitter(job, job.data.load(), lambda line: print(line, flush=True), run_dir)
    if last is not None:
        sitter.resume(last)
    else:
        sitter.begin()  # trains the first epoch: the trainer's metrics are checked here
    run = open_run(out, job.name, job.to_toml(), resume=args.resume, overwrite=args.overwrite)
    channel.acquire_lock(run.path)
    try:
        _record_job(run.path / JOB_FILE, job.to_toml())  # a resume's --set, as the README promises
        try:
            with _ctrl_c_at_epoch_end(sitter):
                sitter.attach(run)
                finished = sitter.run_until_stopped()
        except KeyboardInterrupt:  # the second Ctrl-C: the epoch in progress is lost, not the run
            finished = False
        if not finished:
            print(f"caviar babysit: interrupted; epochs up to {sitter.saved_epoch} are saved in {run.path}. "
                  f"Resume with: {resume_command(args, job.name)}", file=sys.stderr, flush=True)
            return EXIT_INTERRUPTED
        summary = sitter.finish()
    finally:
        channel.release_lock(run.path)
    print(summary.line(), flush=True)
    return 0


def _record_job(path: Path, text: str) -> None:
    """Rewrite the run's job.toml (atomically) when the job as run now differs from it."""
    from caviar.store.atomic import atomic_write_bytes

    data = text.encode()
    with contextlib.suppress(FileNotFoundError):
        if path.read_bytes() == data:
            return
    atomic_write_bytes(path, data)


def resume_command(args: argparse.Namespace, name: str) -> str:
    """The command line that resumes run `name`: by name, from the job.toml in its folder, so it
    works whatever has become of the job file since."""
    return shlex.join([sys.executable, "-m", "caviar", "babysit", "--out", str(args.out), "--name", name, "--resume"])


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


def with_best_trial(job: Any, sweep: Path) -> Any:
    """`job` with [model] overridden by the `params_*` of the sweep's best completed trial, best by
    the sweep's own `search.mode` (its job.toml; "max" when it has none)."""
    from caviar.config.job import parse_job, validate_name
    from caviar.store.reader import load

    validate_name(sweep.name, "--from")
    if not sweep.is_dir():
        raise ValueError(f"--from: there is no run {sweep.name!r} in {sweep.parent}")
    run = load(sweep)
    trials = run.trials
    if run.kind != "sweep" or trials.empty:
        raise ValueError(f"--from: {sweep.name!r} has no trials: is it a finished sweep?")
    completed = trials["status"].eq("completed").fillna(False).astype(bool) if "status" in trials else True
    done = trials[completed & trials["score"].notna()]
    if done.empty:
        raise ValueError(f"--from: the sweep {sweep.name!r} has no completed trial with a score")
    search = run.job.get("search", {})
    mode = search.get("mode", "max") if isinstance(search, dict) else "max"
    if mode not in ("max", "min"):
        raise ValueError(f"--from: the sweep's search.mode must be 'max' or 'min', got {mode!r}")
    scores = done["score"].astype(float)
    best = done.loc[scores.idxmax() if mode == "max" else scores.idxmin()]
    params = {c[7:]: _plain(best[c]) for c in trials.columns if c.startswith("params_") and not _missing(best[c])}
    raw = job.to_raw()
    raw["model"].update(params)
    print(f"from {sweep.name}: score {float(best['score']):.4f} ({mode}) with {params}", flush=True)
    return parse_job(raw)


def _missing(value: Any) -> bool:
    import pandas as pd

    return value is None or (not isinstance(value, (list, tuple, np.ndarray)) and bool(pd.isna(value)))


def _plain(value: Any) -> Any:
    """A pandas cell as the plain value a job file holds; a list (e.g. hidden_layers from a choice)
    is stored as its JSON text in a string column."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, str) and value.lstrip().startswith("["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value
