"""`caviar parallel`: caviar mode from the command line.

Order matters for the promise that bad input changes nothing: the job, its fit to the trainer, the
sampler and the data are all validated, and the folder checked (`caviar.lifecycle`), before the run
is locked; then a cluster is joined, and only once that worked is the folder created, replaced or
repaired: a cluster that cannot be joined costs nothing. A local Ray of the sweep's own instead
boots in a child process while the folder opens and the driver trains (`caviar.sweep.head_start`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from caviar import lifecycle
from caviar.config.choices import POPULATION
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
    population = job.search.scheduler == POPULATION   # a pbt job: caviar.population drives it
    sampler = build_sampler(job)
    scheduler = None if population else build_scheduler(job, trainer)
    data = job.data.load()
    if args.dry_run:
        print(dry_run_table(job, sampler))
        return 0
    request = lifecycle.RunRequest(RunKind.SWEEP, Path(args.out), job.name, resume=args.resume,
                                   overwrite=args.overwrite, resume_flags=_resume_flags(args))
    if population:
        from caviar.population.command import run_command

        return run_command(job, trainer, request, sampler, data, args)
    with lifecycle.locked(request):
        if args.resume:   # under the lock: a resume that ran a moment ago may have grown the run
            from caviar.sweep.restore import check_growth

            check_growth(request.path, sampler.n_trials)
        return _run(job, trainer, request, sampler, scheduler, data, args)


def _run(job: Any, trainer: type, request: lifecycle.RunRequest, sampler: Any, scheduler: Any, data: Any,
         args: argparse.Namespace) -> int:
    """Start or join Ray, open the folder, run the sweep, print the leaderboard (under the run's lock).

    Without --address (or $RAY_ADDRESS, or a Ray this process already joined), the sweep's own Ray
    boots in a child process while this one trains (`caviar.sweep.head_start`) -- when each trial
    asks for one CPU and no GPU, as the driver's own core can give; otherwise Ray starts first."""
    from caviar.sweep.ray_session import connect_ray, stop_ray, wants_local_head
    from caviar.sweep.resources import check_cluster, one_cpu_each

    started, startup, head = False, 0.0, None
    try:
        if wants_local_head(args.address) and one_cpu_each(job.search):   # first thing: Ray boots
            from caviar.sweep.local_ray import LocalRay                    # while this process works

            head = LocalRay.start(local_cpus())
        else:
            started, startup = connect_ray(args.address)
            check_cluster(job.search)   # a trial bigger than any node: exit 2, the folder untouched
        from caviar.sweep.run import run_sweep

        run = lifecycle.open_folder(request, job)
        status = run_sweep(job, trainer, run, request, sampler, scheduler, data, concurrency=args.concurrency or 0,
                           quiet=bool(args.quiet), startup=startup, head=head)
    except KeyboardInterrupt:   # while Ray starts, the folder opens or the end compacts: the same rule
        if request.resume or holds_results(request.path):
            return lifecycle.interrupted(request, "the finished trials are")
        raise
    finally:
        stop_ray(head, started, args.address)
    return print_summary(run, job) if status == 0 else status


def local_cpus() -> int:
    """The CPUs a local Ray gets: those this process may run on (as Ray counts them)."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


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
        row.update({name: config[name] for name in job.space.names})
        rows.append(row)
    # The leaderboard's formatting: scientific notation on log scales, enough digits for betas.
    table = format_table(pd.DataFrame(rows), scales_of(job.space)) if rows else "(no trials)"
    lines = [f"{job.name}: {sampler.n_trials:,} trials, sampler {job.search.sampler}, scheduler "
             f"{job.search.scheduler}, metric {job.search.metric} ({job.search.mode})", table]
    if decided > len(rows):
        lines.append(f"... and {decided - len(rows):,} more")
    if decided < sampler.n_trials:
        lines.append(f"(+{sampler.n_trials - decided:,} trials in later rounds, drawn around the best of earlier ones)")
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
