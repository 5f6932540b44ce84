"""A sweep's plan from its job: the sampler, the scheduler, how long a trial lasts, how many workers."""

from __future__ import annotations

import sys
from typing import Any

from caviar.search.samplers import Sampler, make_sampler
from caviar.search.schedulers import Scheduler, make_scheduler

DEFAULT_EPOCHS = 20  # a trial's epochs when neither the job nor the trainer's defaults say


def build_sampler(job: Any) -> Sampler:
    """The job's sampler, with the options of its [search] section."""
    search = job.search
    options: dict[str, Any] = {}
    if search.sampler == "grid":
        options = {"grid_points": search.grid_points}
    elif search.sampler == "coarse_to_fine":
        options = {"rounds": search.rounds, "keep_fraction": search.keep_fraction, "shrink": search.shrink}
    return make_sampler(search.sampler, job.space, n_trials=search.trials, seed=search.seed, mode=search.mode,
                        options=options)


def max_epochs(job: Any, trainer: type) -> int:
    """Epochs of a trial that is never stopped early: the job's `epochs`, else the trainer's default."""
    from caviar.trainers import full_config

    return int(full_config(trainer, job.config()).get("epochs", DEFAULT_EPOCHS))


def build_scheduler(job: Any, trainer: type) -> Scheduler:
    return make_scheduler(job.search.scheduler, max_epochs=max_epochs(job, trainer), mode=job.search.mode,
                          grace_period=job.search.grace_period, reduction_factor=job.search.reduction_factor,
                          smoothing=job.search.smoothing)


def worker_count(requested: int, cpus: int, trials_left: int, quiet: bool) -> int:
    """Workers to start: as asked (default one per CPU), but no more than there are CPUs (a worker
    holds one; more would wait forever) or trials left to run."""
    n = requested or cpus
    if n > cpus:
        if not quiet:
            print(f"caviar: concurrency {n} is more than the {cpus} CPUs Ray has; using {cpus}", file=sys.stderr)
        n = cpus
    return max(1, min(n, trials_left))
