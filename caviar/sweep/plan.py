"""A sweep's plan from its job: the sampler, the scheduler, how long a trial lasts, how many workers."""

from __future__ import annotations

import sys
from typing import Any

from caviar.config.choices import MODEL_BASED
from caviar.search.samplers import Sampler, make_sampler
from caviar.search.schedulers import Scheduler, make_scheduler

DEFAULT_EPOCHS = 20  # a trial's epochs when neither the job nor the trainer's defaults say


def build_sampler(job: Any) -> Sampler:
    """The job's sampler, with the options of its [search] section."""
    search = job.search
    options: dict[str, Any] = {}
    if search.sampler in MODEL_BASED:
        options = {"lag": search.lag}
    elif search.sampler == "grid":
        options = {"grid_points": search.grid_points}
    elif search.sampler == "coarse_to_fine":
        options = {"rounds": search.rounds, "keep_fraction": search.keep_fraction, "shrink": search.shrink}
    return make_sampler(search.sampler, job.space, n_trials=search.trials, seed=search.seed, mode=search.mode,
                        options=options)


AUTO_LAG_PER_WORKER = 2  # lag = "auto": trials a model-based sampler proposes without waiting, per worker


def settle_lag(job: Any, sampler: Sampler, n_workers: int) -> Any:
    """The job with a model-based sampler's lag fixed: as the job gives it, or for "auto" twice the
    workers of the run's first session. The caller records the job as run, so that a resume, whatever
    its concurrency, proposes the rest as the first session would have."""
    from dataclasses import replace

    if job.search.sampler not in MODEL_BASED:
        return job
    lag = AUTO_LAG_PER_WORKER * n_workers if job.search.lag == "auto" else job.search.lag
    sampler.set_lag(lag)  # type: ignore[attr-defined]
    return replace(job, search=replace(job.search, lag=lag))


def param_types(space: Any) -> dict[str, Any]:
    """Arrow types of the params_<name> columns of conditional dimensions: a column whose first rows
    are all null (inactive) would otherwise be typed as a float when first written, and refuse a
    choice of strings later."""
    import pyarrow as pa

    types: dict[str, Any] = {}
    for name in space.conditions:
        values = [space.dimensions[name].from_unit(u) for u in (0.0, 0.5, 0.999)]
        kind = pa.string() if any(isinstance(v, (str, list)) for v in values) else pa.bool_() \
            if all(isinstance(v, bool) for v in values) else pa.int64() \
            if all(isinstance(v, int) for v in values) else pa.float64()
        types[f"params_{name}"] = kind
    return types


def max_epochs(job: Any, trainer: type) -> int:
    """Epochs of a trial that is never stopped early: the job's `epochs`, else the trainer's default."""
    from caviar.trainers import full_config

    return int(full_config(trainer, job.config()).get("epochs", DEFAULT_EPOCHS))


def build_scheduler(job: Any, trainer: type) -> Scheduler:
    return make_scheduler(job.search.scheduler, max_epochs=max_epochs(job, trainer), mode=job.search.mode,
                          grace_period=job.search.grace_period, reduction_factor=job.search.reduction_factor,
                          smoothing=job.search.smoothing)


def worker_count(requested: int, cpus: int, trials_left: int, quiet: bool, what: str = "CPUs Ray has") -> int:
    """Workers to start: as asked (default one per CPU, or per trial's share of the cluster: `cpus`
    is then that count and `what` says so), but no more than there are (a worker holds its share;
    more would wait forever) or trials left to run."""
    n = requested or cpus
    if n > cpus:
        if not quiet:
            print(f"caviar: concurrency {n} is more than the {cpus} {what}; using {cpus}", file=sys.stderr)
        n = cpus
    return max(1, min(n, trials_left))
