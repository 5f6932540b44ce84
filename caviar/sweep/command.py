"""`caviar parallel`: caviar mode from the command line.

Order matters for the promise that bad input changes nothing: the job, its fit to the trainer, the
sampler and the data are all validated, and the folder checked (`caviar.lifecycle`), before the run
is locked; then Ray starts, and only once it is up is the folder created, replaced or repaired: a
cluster that cannot be joined costs nothing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from caviar import lifecycle
from caviar.config.choices import SAMPLER_ABOUT
from caviar.search.samplers import Sampler, trial_seed
from caviar.store.layout import holds_results
from caviar.store.vocabulary import RunKind
from caviar.sweep.plan import build_sampler, build_scheduler

EXIT_ALL_FAILED = 1   # the sweep ran, and no trial of it trained: not bad input, not a success


def command(args: argparse.Namespace) -> int:
    """`caviar parallel [JOB] [--dry-run] [--resume | --overwrite]`: 0 when every trial finished, 130
    when Ctrl-C stopped it. Raises ValueError / FileExistsError (exit 2) before writing anything."""
    from caviar.trainers import check_job

    job = lifecycle.job_for(args, resume=args.resume)
    if args.concurrency is not None and args.concurrency < 1:
        raise ValueError(f"--concurrency: must be at least 1, got {args.concurrency}")
    trainer = check_job(job)
    sampler, scheduler = build_sampler(job), build_scheduler(job, trainer)
    data = job.data.load()
    if args.dry_run:
        print(dry_run_table(job, sampler))
        return 0
    request = lifecycle.RunRequest(RunKind.SWEEP, Path(args.out), job.name, resume=args.resume,
                                   overwrite=args.overwrite, resume_flags=_resume_flags(args))
    with lifecycle.locked(request):
        if args.resume:   # under the lock: a resume that ran a moment ago may have grown the run
            from caviar.sweep.restore import check_growth

            check_growth(request.path, sampler.n_trials)
        return _run(job, trainer, request, sampler, scheduler, data, args)


def _run(job: Any, trainer: type, request: lifecycle.RunRequest, sampler: Any, scheduler: Any, data: Any,
         args: argparse.Namespace) -> int:
    """Join Ray, open the folder, run the sweep, print the leaderboard (under the run's lock)."""
    import ray

    from caviar.sweep.ray_session import connect_ray
    from caviar.sweep.run import run_sweep

    started = False
    try:
        started, startup = connect_ray(args.address)
        run = lifecycle.open_folder(request, job)
        status = run_sweep(job, trainer, run, request, sampler, scheduler, data, concurrency=args.concurrency or 0,
                           quiet=bool(args.quiet), startup=startup)
    except KeyboardInterrupt:   # while Ray starts, the folder opens or the end compacts: the same rule
        if request.resume or holds_results(request.path):
            return lifecycle.interrupted(request, "the finished trials are")
        raise
    finally:
        if started or ray.is_initialized() and args.address is None:
            ray.shutdown()
    return print_summary(run, job) if status == 0 else status


def _resume_flags(args: argparse.Namespace) -> tuple[str, ...]:
    """The flags of this command that its resume command repeats."""
    flags = ["--address", args.address] if args.address else []
    flags += ["--concurrency", str(args.concurrency)] if args.concurrency else []
    return tuple(flags + (["--quiet"] if args.quiet else []))


# A dry run prints the first configurations only: a job of a million trials answers in a second.
DRY_RUN_ROWS = 50


def dry_run_table(job: Any, sampler: Sampler) -> str:
    """The first DRY_RUN_ROWS configurations the job would run (of those decided before any result), one
    row per trial, then how many more there are."""
    import pandas as pd

    from caviar.views.show import format_table, scales_of

    # The trials decided before any result are a prefix of the ids (coarse_to_fine: its first round).
    decided, high = 0, sampler.n_trials
    while decided < high:
        middle = (decided + high) // 2
        decided, high = (middle + 1, high) if sampler.ready(middle) else (decided, middle)
    rows = []
    for trial_id in range(min(decided, DRY_RUN_ROWS)):
        config = sampler.ask(trial_id)
        row = {"trial": trial_id, "seed": trial_seed(job.search.seed, trial_id)}
        row.update({name: config.get(name) for name in job.space.names})   # None: inactive
        rows.append(row)
    # The leaderboard's formatting: scientific notation on log scales, enough digits for betas.
    table = format_table(pd.DataFrame(rows), scales_of(job.space)) if rows else "(no trials)"
    lines = [f"{job.name}: {sampler.n_trials:,} trials, sampler {job.search.sampler}, scheduler "
             f"{job.search.scheduler}, metric {job.search.metric} ({job.search.mode})",
             f"sampler {job.search.sampler}: {SAMPLER_ABOUT[job.search.sampler]}", table]
    if decided > len(rows):
        lines.append(f"... and {decided - len(rows):,} more")
    if decided < sampler.n_trials:
        lag = "twice the workers" if job.search.lag == "auto" else job.search.lag
        later = "in later rounds, drawn around the best of earlier ones" if job.search.sampler == "coarse_to_fine" \
            else f"proposed from the scores of earlier trials (trial k learns from trials 0 .. k-lag-1; lag {lag})"
        lines.append(f"(+{sampler.n_trials - decided:,} trials {later})")
    return "\n".join(lines)


def print_summary(run: Any, job: Any) -> int:
    """The top 10 trials and where the results are; the exit status: 0, or 1 when every trial failed
    (a script must not take a sweep that learned nothing for a success), with the first error."""
    from caviar.store.reader import load
    from caviar.store.vocabulary import Status
    from caviar.views.show import leaderboard, scales_of

    trials = load(run.path).trials
    print(leaderboard(trials, job.search.mode, top=10, scales=scales_of(job.space)))
    print(f"\nresults: {run.path}  (python -m caviar show {job.name} --out {run.path.parent})")
    if len(trials) and (trials["status"] == Status.FAILED).all():
        first = trials.sort_values("trial_id")["error"].iloc[0]
        print(f"caviar parallel: error: every trial failed; trial {trials['trial_id'].min()}: "
              f"{' '.join(str(first).split())}", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0
