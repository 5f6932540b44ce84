"""`caviar parallel` and `caviar.sweep()`: caviar mode from the command line and from Python.

`sweep(...)` is the entry point (returns the run as `caviar.load` reads it); `command(args)` is the
command line's thin shell over the same two steps, `prepare` and `execute`, adding --dry-run, the
leaderboard and the exit status.

Order matters for the promise that bad input changes nothing: the job, its fit to the trainer, the
sampler and the data are all validated, and the folder checked (`caviar.lifecycle`), before the run
is locked; then a cluster is joined, and only once that worked is the folder created, replaced or
repaired: a cluster that cannot be joined costs nothing. A local Ray of the sweep's own instead
boots in a child process while the folder opens and the driver trains (`caviar.sweep.head_start`).
A pbt job is handed to `caviar.population` after the same checks.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caviar import lifecycle
from caviar.config.choices import POPULATION, SAMPLER_ABOUT
from caviar.search.samplers import Sampler, trial_seed
from caviar.store.layout import holds_results
from caviar.store.vocabulary import RunKind
from caviar.sweep.plan import build_sampler, build_scheduler

EXIT_ALL_FAILED = 1   # the sweep ran, and no trial of it trained: not bad input, not a success


@dataclass(frozen=True)
class Options:
    """How a sweep runs (the flags of `parallel` beyond the job's own)."""

    address: str | None = None       # a Ray cluster to join; None: $RAY_ADDRESS, else a local Ray
    resume: bool = False
    overwrite: bool = False
    concurrency: int | None = None   # trials in flight; None: the job's, else one per CPU
    quiet: bool = False


@dataclass(frozen=True)
class Prepared:
    """A sweep checked and ready to run: nothing on disk touched yet."""

    job: Any
    trainer: type
    sampler: Any
    scheduler: Any
    data: Any
    plan: Any = None   # a pbt job's population (`caviar.population.plan.Plan`); None for a sweep


def sweep(job: Any = None, *, trainer: Any = None, data: Any = None, out: str | os.PathLike[str] = "results",
          name: str | None = None, seed: int | None = None, overrides: Any = None, address: str | None = None,
          resume: bool = False, overwrite: bool = False, concurrency: int | None = None, quiet: bool = False) -> Any:
    """Run a sweep (caviar mode) as `caviar parallel` does, and return its run (`caviar.load`'s Run).

    job: a job file's path or its name in jobs/, a dict of its tables ({"search": {"trials": 8}, ...}),
        or a parsed Job; None: the default job (or, with `resume` and `name`, the run's saved job).
    trainer: a trainer class, or "package.module:Class" ([model] trainer); data: a data function, or
        any [data] source. A class or function passed itself must be importable by Ray's workers
        (defined in a module, not in __main__, a notebook or a function), else ValueError at once.
    overrides: as --set: ["search.trials=8"] or {"search.trials": 8}. The rest as the command's flags.
    Bad input raises ValueError with the command's one-line message, before anything is written;
    Ctrl-C stops the sweep cleanly (every finished trial kept) and raises KeyboardInterrupt.
    """
    invocation = lifecycle.Invocation.of(job, trainer=trainer, data=data, out=out, name=name, seed=seed,
                                         overrides=overrides, quiet=quiet)
    options = Options(address, bool(resume), bool(overwrite), concurrency, bool(quiet))
    status, path = execute(prepare(invocation, options), invocation, options)
    if status == lifecycle.EXIT_INTERRUPTED:
        raise KeyboardInterrupt(f"sweep interrupted; the finished trials are saved in {path}")
    from caviar.store.reader import load

    return load(path)


def command(args: argparse.Namespace) -> int:
    """`caviar parallel [JOB] [--dry-run] [--resume | --overwrite]`: 0 when every trial finished, 130
    when Ctrl-C stopped it. Raises ValueError / FileExistsError (exit 2) before writing anything."""
    invocation = lifecycle.Invocation(args.job, tuple(args.set), args.name, args.seed, args.out, bool(args.quiet))
    options = Options(args.address, args.resume, args.overwrite, args.concurrency, bool(args.quiet))
    prepared = prepare(invocation, options)
    if args.dry_run:
        print(dry_run_table(prepared.job, prepared.sampler))
        return 0
    status, path = execute(prepared, invocation, options)
    return print_summary(path, prepared.job) if status == 0 else status


def prepare(invocation: lifecycle.Invocation, options: Options) -> Prepared:
    """Everything a sweep needs, checked before any work: the job, its fit to the trainer, the
    sampler and scheduler, the data. Raises ValueError (one line) on bad input."""
    from caviar.trainers import check_job

    job = lifecycle.job_for(invocation, resume=options.resume)
    concurrency = options.concurrency
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1):
        raise ValueError(f"--concurrency: must be at least 1, got {concurrency}")
    trainer = check_job(job)
    population = job.search.scheduler == POPULATION   # a pbt job: caviar.population drives it
    sampler = build_sampler(job)
    scheduler = None if population else build_scheduler(job, trainer)
    plan = None
    if population:   # its refusals (pbt.mutable, ...) come here, for --dry-run as for a run
        from caviar.population.plan import make_plan

        plan = make_plan(job, trainer, sampler)
    return Prepared(job, trainer, sampler, scheduler, job.load_data(), plan)


def execute(prepared: Prepared, invocation: lifecycle.Invocation, options: Options) -> tuple[int, Path]:
    """Lock the run, join Ray, open the folder and run the sweep: (exit status, the run's folder)."""
    job = prepared.job
    request = lifecycle.RunRequest(RunKind.SWEEP, Path(invocation.out), job.name, resume=options.resume,
                                   overwrite=options.overwrite, resume_flags=_resume_flags(options))
    if job.search.scheduler == POPULATION:
        from caviar.population.command import run_command

        return run_command(job, prepared.trainer, request, prepared.plan, prepared.data, options), request.path
    with lifecycle.locked(request):
        if options.resume:   # under the lock: a resume that ran a moment ago may have grown the run
            from caviar.sweep.restore import check_growth

            check_growth(request.path, prepared.sampler.n_trials)
        return _run(prepared, request, options), request.path


def _run(prepared: Prepared, request: lifecycle.RunRequest, options: Options) -> int:
    """Start or join Ray, open the folder, run the sweep (under the run's lock): the exit status.

    Without an address (or $RAY_ADDRESS, or a Ray this process already joined), this process trains
    from the first moment and the sweep's own Ray boots in a child process once the work left is
    worth it (`caviar.sweep.head_start`, `ray_on_demand`) -- when each trial asks for one CPU and no
    GPU, as the driver's own core can give; otherwise Ray starts first."""
    from caviar.sweep.ray_session import connect_ray, joined_already, local_cpus, stop_ray, wants_local_head
    from caviar.sweep.resources import check_cluster, one_cpu_each

    job = prepared.job
    started, startup, head, joined = False, 0.0, None, joined_already()   # a caller's Ray stays connected
    try:
        if wants_local_head(options.address) and one_cpu_each(job.search):
            from caviar.sweep.ray_on_demand import RayOnDemand

            head = RayOnDemand(local_cpus())
            if job.search.trial_timeout:   # only workers train such a job: its Ray boots first thing
                head.boot()
        else:
            started, startup = connect_ray(options.address)
            check_cluster(job.search)   # a trial bigger than any node: exit 2, the folder untouched
        from caviar.sweep.run import run_sweep

        run = lifecycle.open_folder(request, job)
        return run_sweep(job, prepared.trainer, run, request, prepared.sampler, prepared.scheduler, prepared.data,
                         concurrency=options.concurrency or 0, quiet=options.quiet, startup=startup, head=head)
    except KeyboardInterrupt:   # while Ray starts, the folder opens or the end compacts: the same rule
        if request.resume or holds_results(request.path):
            return lifecycle.interrupted(request, "the finished trials are")
        raise
    finally:
        stop_ray(head, started, options.address, joined)


def _resume_flags(options: Options) -> tuple[str, ...]:
    """The flags of this command that its resume command repeats."""
    flags = ["--address", options.address] if options.address else []
    flags += ["--concurrency", str(options.concurrency)] if options.concurrency else []
    return tuple(flags + (["--quiet"] if options.quiet else []))


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


def print_summary(path: Path, job: Any) -> int:
    """The top 10 trials (a population: members, then its best member's schedule) and where the results
    are; the exit status: 0, or 1 when every trial failed (a script must not take a sweep that learned
    nothing for a success), with the first error."""
    from caviar.store.reader import load, load_trials
    from caviar.store.vocabulary import Status
    from caviar.views.show import leaderboard, scales_of

    run = load(path) if job.search.scheduler == POPULATION else None   # a sweep's: its trials alone
    trials = run.trials if run is not None else load_trials(path)
    print(leaderboard(trials, job.search.mode, top=10, scales=scales_of(job.space)))
    if run is not None:
        from caviar.views.population import schedule_text

        print("\n" + schedule_text(run))
    print(f"\nresults: {path}  (python -m caviar show {job.name} --out {path.parent})")
    if len(trials) and (trials["status"] == Status.FAILED).all():
        if job.search.scheduler == POPULATION:
            print("caviar parallel: error: every member of the population diverged", file=sys.stderr)
            return EXIT_ALL_FAILED
        first = trials.sort_values("trial_id")["error"].iloc[0]
        print(f"caviar parallel: error: every trial failed; trial {trials['trial_id'].min()}: "
              f"{' '.join(str(first).split())}", file=sys.stderr)
        return EXIT_ALL_FAILED
    return 0
