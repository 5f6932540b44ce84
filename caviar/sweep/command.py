"""`caviar parallel`: caviar mode from the command line.

Order matters for the promise that bad input changes nothing: the job, the sampler and the data are
all validated before the results folder is opened; Ray starts last.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import math
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any, Iterator

from caviar.store.atomic import atomic_write_bytes
from caviar.config.job import Job
from caviar.store.reader import holds_results
from caviar.views.progress import Progress
from caviar.search.samplers import Sampler, make_sampler, trial_seed
from caviar.search.schedulers import Scheduler, make_scheduler

EXIT_INTERRUPTED = 130
LOCK_FILE = ".sweep.lock"   # hidden: readers and holds_results pass over it


def build_sampler(job: Job) -> Sampler:
    """The job's sampler, with the options of its [search] section."""
    search = job.search
    options: dict[str, Any] = {}
    if search.sampler == "grid":
        options = {"grid_points": search.grid_points}
    elif search.sampler == "coarse_to_fine":
        options = {"rounds": search.rounds, "keep_fraction": search.keep_fraction, "shrink": search.shrink}
    return make_sampler(search.sampler, job.space, n_trials=search.trials, seed=search.seed, mode=search.mode,
                        options=options)


def max_epochs(job: Job) -> int:
    """Epochs of a trial that is never stopped early (the job's fixed `epochs`)."""
    return int(job.config().get("epochs", 20))


def build_scheduler(job: Job) -> Scheduler:
    return make_scheduler(job.search.scheduler, max_epochs=max_epochs(job), mode=job.search.mode,
                          grace_period=job.search.grace_period, reduction_factor=job.search.reduction_factor)


def dry_run_table(job: Job, sampler: Sampler) -> str:
    """The configurations the job would run (those decided before any result), one row per trial."""
    import pandas as pd

    from caviar.views.show import format_table, scales_of

    rows = []
    for trial_id in range(sampler.n_trials):
        if not sampler.ready(trial_id):
            break
        config = sampler.ask(trial_id)
        row = {"trial": trial_id, "seed": trial_seed(job.search.seed, trial_id)}
        row.update({name: config[name] for name in job.space.names})
        rows.append(row)
    # The leaderboard's formatting: scientific notation on log scales, enough digits for betas.
    table = format_table(pd.DataFrame(rows), scales_of(job.space)) if rows else "(no trials)"
    lines = [f"{job.name}: {sampler.n_trials} trials, sampler {job.search.sampler}, scheduler "
             f"{job.search.scheduler}, metric {job.search.metric} ({job.search.mode})", table]
    if len(rows) < sampler.n_trials:
        lines.append(f"(+{sampler.n_trials - len(rows)} trials in later rounds, drawn around the best of earlier ones)")
    return "\n".join(lines)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on a cluster address nothing answers at (ray.init would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return   # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        source = "--address" if address != os.environ.get("RAY_ADDRESS") else "RAY_ADDRESS"
        raise ValueError(f"{source}: nothing answers at {address} ({exc.strerror or exc}); is the Ray head "
                         "running (`ray start --head`)?") from None


def connect_ray(address: str | None) -> tuple[bool, float]:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a local Ray.

    Returns whether this call started Ray (so it should shut it down) and the seconds it took.
    """
    import ray

    start = time.monotonic()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return False, 0.0
    if address:
        check_reachable(address)
    try:
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            ray.init(include_dashboard=False, logging_level=logging.WARNING, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        cause = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ValueError(f"--address: cannot join the Ray cluster at {address or 'a new local Ray'}: {cause}") from None
    return True, time.monotonic() - start


def resume_command(args: argparse.Namespace, job: Job) -> str:
    """The command that resumes this sweep: by name, from the job.toml in its folder, so it works
    whatever has become of the job file since."""
    parts = [sys.executable, "-m", "caviar", "parallel", "--out", str(args.out), "--name", job.name, "--resume"]
    parts += ["--address", args.address] if args.address else []
    parts += ["--concurrency", str(args.concurrency)] if args.concurrency else []
    parts += ["--quiet"] if args.quiet else []
    return " ".join(shlex.quote(p) for p in parts)


def command(args: argparse.Namespace) -> int:
    from caviar.cli import load_job_from_args

    job = load_job_from_args(args, resume=args.resume)
    if args.concurrency is not None and args.concurrency < 1:
        raise ValueError(f"--concurrency: must be at least 1, got {args.concurrency}")
    if args.resume and args.overwrite:
        raise ValueError("--resume: continues the run, --overwrite replaces it; pass one of them")
    sampler = build_sampler(job)
    scheduler = build_scheduler(job)
    from caviar.store.writer import open_run
    from caviar.trainers.protocol import resolve_trainer

    # Everything a sweep needs is checked before anything is run or written.
    resolve_trainer(job.trainer)
    data = job.data.load()
    if args.dry_run:
        print(dry_run_table(job, sampler))
        return 0
    run_dir = Path(args.out) / job.name
    refuse_babysit_folder(run_dir)
    if run_dir.is_dir():
        with sweep_lock(run_dir):   # refused while another driver runs this sweep; released at once
            pass
    if args.resume or (holds_results(run_dir) and not args.overwrite):
        # Resuming, or refused for an existing name: both before Ray starts.
        run = open_run(Path(args.out), job.name, job.to_toml(), resume=args.resume)
        ray_session = connect_ray(args.address)
    else:
        # Nothing is created or replaced until Ray is up: a cluster that cannot be joined costs nothing.
        ray_session = connect_ray(args.address)
        run = open_run(Path(args.out), job.name, job.to_toml(), overwrite=args.overwrite)
    with sweep_lock(run.path):
        return run_sweep(job, run, sampler, scheduler, data, args, ray_session)


@contextlib.contextmanager
def sweep_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run folder for one driver: a second `parallel` on the same name (a --resume while
    the first still runs) would number its parts alike and compact away the other's."""
    fd = os.open(run_dir / LOCK_FILE, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ValueError(f"name: {run_dir.name!r} is being run by another caviar parallel right now") from None
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def refuse_babysit_folder(run_dir: Path) -> None:
    """A sweep never resumes into, or replaces, a babysat run's folder (it has events or checkpoints)."""
    if (run_dir / "events.parquet").exists() or (run_dir / "checkpoints").is_dir():
        raise ValueError(f"name: {run_dir.name!r} holds a babysat run; pick another --name for the sweep")


def _restore(run: Any, sampler: Sampler, scheduler: Scheduler, metric: str
             ) -> tuple[set[int], dict[str, int], tuple | None]:
    """What a resumed sweep already did: finished ids, status counts, best trial. The sampler is told
    every score, and the scheduler sees again what each trial scored at its milestones."""
    from caviar.store.reader import load

    saved = load(run.path)
    trials = saved.trials
    counts = {"completed": 0, "pruned": 0, "failed": 0}
    best = None
    finished = set(int(t) for t in trials["trial_id"])
    if finished and max(finished) >= sampler.n_trials:
        raise ValueError(f"search.trials: this run already has trial {max(finished)}; a resumed sweep "
                         f"can grow but not shrink (got {sampler.n_trials})")
    epochs = saved.epochs
    if not epochs.empty:
        unfinished = ~epochs["trial_id"].isin(finished)
        if unfinished.any():
            _drop_unfinished_epochs(run, finished)
        epochs = epochs[~unfinished]
    _replay_milestones(epochs, scheduler, metric)
    if trials.empty:
        return finished, counts, best
    trials = trials.drop_duplicates("trial_id", keep="last")
    for status, n in trials["status"].value_counts().items():
        counts[str(status)] = int(n)
    params = [c for c in trials.columns if c.startswith("params_")]
    sign = 1.0 if sampler.mode == "max" else -1.0
    for row in trials.to_dict("records"):   # records, not tuples: a params_ name need not be an identifier
        score = float(row["score"]) if row["score"] is not None and not math.isnan(row["score"]) else math.nan
        sampler.tell(int(row["trial_id"]), score)
        if math.isfinite(score) and (best is None or sign * score > sign * best[0]):
            best = (score, int(row["trial_id"]), {c[len("params_"):]: row[c] for c in params})
    return finished, counts, best


def _replay_milestones(epochs: Any, scheduler: Scheduler, metric: str) -> None:
    """Record each finished trial's best-so-far score at every milestone it passed, so an ASHA
    sweep that resumes prunes as hard as one that never stopped."""
    if not scheduler.milestones or epochs.empty or metric not in epochs.columns:
        return
    sign = 1.0 if scheduler.mode == "max" else -1.0
    epochs = epochs.sort_values(["trial_id", "epoch"])
    best_so_far = (sign * epochs[metric]).groupby(epochs["trial_id"]).cummax() * sign
    at_milestones = epochs["epoch"].isin(scheduler.milestones) & best_so_far.notna()
    for trial_id, epoch, score in zip(epochs["trial_id"][at_milestones], epochs["epoch"][at_milestones],
                                      best_so_far[at_milestones]):
        scheduler.should_continue(int(trial_id), int(epoch), float(score))


def _drop_unfinished_epochs(run: Any, finished: set[int]) -> None:
    """Remove epoch rows of trials that have no trial row (a kill between the two tables' flushes):
    those trials run again, and would otherwise have their epochs twice."""
    import pyarrow as pa
    import pyarrow.compute as pc

    kept = pa.array(sorted(finished), type=pa.int64())
    run.table("epochs").compact(keep=lambda table: pc.is_in(table["trial_id"], value_set=kept))


def worker_count(requested: int, cpus: int, trials_left: int, quiet: bool) -> int:
    """Workers to start: as asked (default one per CPU), but no more than there are CPUs (a worker
    holds one; more would wait forever) or trials left to run."""
    n = requested or cpus
    if n > cpus:
        if not quiet:
            print(f"caviar: concurrency {n} is more than the {cpus} CPUs Ray has; using {cpus}", file=sys.stderr)
        n = cpus
    return max(1, min(n, trials_left))


def show_progress(sweep: Any, progress: Progress) -> None:
    """Draw the sweep's state, after any message it has for the user."""
    for notice in sweep.notices:
        progress.note(notice)
    sweep.notices.clear()
    progress.update(len(sweep.finished), sweep.running, sweep.counts["pruned"], sweep.counts["failed"], sweep.best)


def run_sweep(job: Job, run: Any, sampler: Sampler, scheduler: Scheduler, data: Any, args: argparse.Namespace,
              ray_session: tuple[bool, float]) -> int:
    """Run the sweep into `run` on the connected Ray, print the leaderboard. Returns the exit status."""
    import ray

    from caviar.sweep.loop import Sweep

    started, startup = ray_session
    quiet = getattr(args, "quiet", False)
    try:
        finished, counts, best = (_restore(run, sampler, scheduler, job.search.metric) if args.resume
                                  else (set(), None, None))
        if args.resume and (run.path / "job.toml").read_text() != job.to_toml():
            # The job as now run (a grown sweep), recorded once the resume is known to be valid.
            atomic_write_bytes(run.path / "job.toml", job.to_toml().encode(), fsync=True)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n_workers = worker_count(args.concurrency or job.search.concurrency, cpus, sampler.n_trials - len(finished), quiet)
        if not quiet:
            print(f"caviar: {job.name}: {sampler.n_trials} trials on {n_workers} workers "
                  f"({cpus} CPUs; Ray ready in {startup:.1f} s); results in {run.path}", file=sys.stderr)
        trials_table, epochs_table = run.table("trials"), run.table("epochs")

        def write_trial(row: dict, epoch_rows: list[dict]) -> None:
            epochs_table.append(epoch_rows)
            trials_table.append([row])

        def flush(trials: bool = True) -> None:
            # Epochs first: a trial row on disk always has its epochs on disk.
            epochs_table.flush()
            if trials:
                trials_table.flush()

        progress = Progress(sampler.n_trials, job.search.metric, already_done=len(finished),
                            stream=open(os.devnull, "w") if quiet else None)
        sweep = Sweep(
            sampler=sampler, scheduler=scheduler, base_config=job.config(), job_seed=job.search.seed, metric=job.search.metric,
            mode=job.search.mode, max_epochs=max_epochs(job), data_ref=ray.put(data),
            trainer_name=job.trainer, n_workers=n_workers,
            max_retries=job.search.max_retries, trial_timeout=float(job.search.trial_timeout or 0),
            write_trial=write_trial, flush=flush, finished=finished,
            on_change=lambda s: show_progress(s, progress),
        )
        if counts:
            sweep.counts, sweep.best = counts, best
        try:
            sweep.start_workers()
            sweep.run()
        except KeyboardInterrupt:
            flush()
            progress.close()
            print(f"\ncaviar: stopped; {len(sweep.finished)} finished trials are saved in {run.path}.\n"
                  f"Resume with: {resume_command(args, job)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except BaseException:
            flush()   # whatever else stopped the sweep, every finished trial reaches the disk
            raise
        finally:
            sweep.stop_workers()
        progress.update(len(sweep.finished), 0, sweep.counts["pruned"], sweep.counts["failed"], sweep.best, force=True)
        progress.close()
        for table in (epochs_table, trials_table):
            table.compact()
    finally:
        if started:
            ray.shutdown()
    print_summary(run, job)
    return 0


def print_summary(run: Any, job: Job) -> None:
    """The top 10 trials and where the results are."""
    from caviar.store.reader import load
    from caviar.views.show import leaderboard, scales_of

    trials = load(run.path).trials
    print(leaderboard(trials, job.search.mode, top=10, scales=scales_of(job.space)))
    print(f"\nresults: {run.path}  (python -m caviar show {job.name} --out {run.path.parent})")
