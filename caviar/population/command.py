"""`caviar parallel JOB` with `[search] scheduler = "pbt"`: a population from the command line.

`caviar.sweep.command` reads and checks the job, the trainer, the sampler, the population's plan
(`make_plan`: bad input, exit 2, nothing written, for `--dry-run` too) and the data as for any
sweep, then hands a pbt job here. The same lifecycle follows (`caviar.lifecycle`): the run locked,
Ray joined, the folder opened, the generations run; Ctrl-C keeps every committed generation and
prints the resume command. The command line's summary (leaderboard, schedule, results line) is
`caviar.sweep.command.print_summary`'s, as for any sweep, printed once.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from typing import Any, Mapping

from caviar import lifecycle
from caviar.population.loop import Context, run_population, settle
from caviar.population.plan import Plan
from caviar.population.state import Population, load_commit
from caviar.store.layout import holds_results, visible_parts
from caviar.store.vocabulary import CHECKPOINTS, Status, model_columns

def run_command(job: Any, trainer: type, request: lifecycle.RunRequest, plan: Plan, data: Any,
                args: argparse.Namespace) -> int:
    """Run (or resume) the population `plan` of `job` (`make_plan`'s, checked before anything is
    written) into `request`'s folder; the exit status."""
    with lifecycle.locked(request):
        if request.resume:
            _check_resume(request, plan)
        return _run(job, trainer, plan, request, data, args)


def _check_resume(request: lifecycle.RunRequest, plan: Plan) -> None:
    """A resume goes on with the population it committed: another size would be another run."""
    commit = load_commit(request.path / CHECKPOINTS)
    if commit is not None and len(commit[0].members) != plan.size:
        raise ValueError(f"--set: search.trials cannot change on a pbt --resume (the population has "
                         f"{len(commit[0].members)} members); run it under a new --name instead")


def _run(job: Any, trainer: type, plan: Plan, request: lifecycle.RunRequest, data: Any,
         args: argparse.Namespace) -> int:
    quiet = bool(args.quiet)
    run = None
    say = (lambda text: None) if quiet else (lambda text: print(text, file=sys.stderr, flush=True))
    ctx = _context(job, trainer, plan, data, args, say)
    try:
        if args.address or os.environ.get("RAY_ADDRESS"):   # a cluster to join: train there from the start
            ctx.pool = ctx.to_ray()
        run = ctx.run = lifecycle.open_folder(request, job)
        where = (f"on {len(ctx.pool.actors)} Ray workers (Ray ready in {ctx.ray_startup:.1f} s)" if ctx.pool.on_ray
                 else f"on the driver, then on {ctx.ray_workers} Ray workers if the rest is worth starting Ray")
        say(f"caviar: {job.name}: a population of {plan.size} for {plan.epochs} epochs, deciding every "
            f"{plan.interval}, {where}; results in {run.path}")
        pop = run_population(ctx)
        write_trials(run, job, plan, pop)
        run.compact()
    except KeyboardInterrupt:
        if run is not None:
            settle(run)
        if request.resume or holds_results(request.path):
            return lifecycle.interrupted(request, "the finished generations are")
        raise
    finally:
        if ctx.ray_started:   # only a Ray of its own (never one it joined, nor import Ray to ask)
            import ray

            ray.shutdown()
    return 0


def _context(job: Any, trainer: type, plan: Plan, data: Any, args: argparse.Namespace, say: Any) -> Context:
    """Where the population starts: on Ray at once when it joins a cluster (--address, $RAY_ADDRESS),
    else on the driver, with a way to Ray (`caviar.population.pools` says why)."""
    from caviar.population.pools import DriverPool
    from caviar.sweep.plan import worker_count
    from caviar.sweep.ray_session import local_cpus

    requested = args.concurrency or job.search.concurrency
    workers = worker_count(requested, local_cpus(), plan.size, quiet=True)
    ctx = Context(job, plan, None, DriverPool(trainer, data), say, ray_workers=workers)

    def to_ray() -> Any:
        import ray

        from caviar.population.loop import start_workers, stop_workers
        from caviar.population.pools import RayPool
        from caviar.sweep.ray_session import connect_ray

        # set before connecting too: a Ctrl-C while a local Ray starts must still stop it
        ctx.ray_started = not ray.is_initialized()
        ctx.ray_started, ctx.ray_startup = connect_ray(args.address)
        cpus = max(1, int(ray.cluster_resources().get("CPU", 1)))
        n_workers = worker_count(requested, cpus, plan.size, bool(args.quiet))
        if ctx.run is not None:
            say(f"caviar: moving the population to {n_workers} Ray workers (Ray ready in {ctx.ray_startup:.1f} s)")
        return RayPool(start_workers(ray.put(data), job.trainer, n_workers), stop_workers)

    ctx.to_ray = to_ray
    return ctx


def trial_rows(job: Any, plan: Plan, pop: Population, trained: Mapping[int, int]) -> list[dict]:
    """One trials row per member: its final values and score (its best epoch's), the epochs it trained
    (`trained`), the member it last copied, and the job's fixed values (`model_<name>`) as a sweep's
    trials have them. A member that diverged at the very last epoch keeps its best earlier epoch, as a
    sweep's diverged trial does, and is `diverged` as that trial is; only one with no finite epoch at all failed."""
    fixed = model_columns({"trainer": job.trainer, **job.config()}, job.space.names)
    rows = []
    for i, m in enumerate(pop.members):
        status = Status.FAILED if not math.isfinite(m.best) else Status.DIVERGED if m.diverged else Status.COMPLETED
        row = {"trial_id": i, "status": status}
        row.update({f"params_{name}": value for name, value in m.values.items()})
        error = None if m.diverged is None else f"diverged at the end: {m.diverged}"
        row.update(score=m.best, epochs=trained.get(i, 0), seconds=m.seconds, seed=plan.seeds[i], error=error,
                   node=m.node, round=0, copied_from=m.copied_from)
        rows.append({**row, **fixed, **m.metrics})
    return rows


def write_trials(run: Any, job: Any, plan: Plan, pop: Population) -> None:
    """The trials table, once, when every generation is committed (a resume of a finished run keeps it)."""
    import pyarrow as pa

    table = run.table("trials", types={"copied_from": pa.int64()})
    if table.column("trial_id"):
        return
    table.append(trial_rows(job, plan, pop, _trained(run)))
    table.flush()


def _trained(run: Any) -> dict[int, int]:
    """Each member's epochs rows, every generation's written by now: the epochs it trained."""
    import pyarrow.parquet as pq

    counts: dict[int, int] = {}
    for part in visible_parts(run.path / "epochs.parquet"):
        for member in pq.read_table(part, columns=["trial_id"]).column(0).to_pylist():
            counts[member] = counts.get(member, 0) + 1
    return counts
