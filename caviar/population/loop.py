"""The population driver loop: synchronous generations on Ray actors, decisions by the pure policy.

Each generation, every member trains `interval` epochs in the context's pool (`caviar.population.
pools`: on the driver, or on `PopulationWorker` actors, member m on worker m mod W, states passed by
reference through Ray's object store) from the state it was left with. Each task also carries a
fallback for a divergence before the generation's last epoch, which its worker replaces at once
(`caviar.population.worker`): the state the generation starts from of the previous generation's
best-ranked healthy member (the same reference for every member), with values explored from that
member's, one set per epoch that could diverge so (`policy.fallback_values`, a generator seeded by
the job seed, the generation and the member); before any member has a score, the member's own
initial state with its learning rate x `[babysit] divergence_factor`. The driver fetches the
reports (one call for the whole generation), takes each member's values after its last replacement,
ranks the members, applies `caviar.population.policy.decide` (a member that diverged at the
generation's last epoch copies the best quantile, the worst quantile copies the best quantile, then
explores, or rolls back to the best ever) by handing each copy its source's state reference, commits
the generation (`caviar.population.state`), then appends its rows to the tables
(`caviar.population.rows`: one `diverged` event per replacement, at the epoch it diverged).

Everything a generation does depends only on the commit it starts from (scores, values, states) and
on generators seeded by the job seed: the same job and seed give the same population, on the
driver or on Ray, in parallel or not, interrupted and resumed (the generation replayed) or not.
"""

from __future__ import annotations

import math
import os
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pyarrow.parquet as pq

from caviar.population.plan import Plan
from caviar.population.policy import (Copy, Generation, decide, fallback_rng, fallback_source, fallback_values,
                                      improved, policy_rng)
from caviar.population.pools import worth_ray
from caviar.population.rows import changes, copy_row, epoch_rows, replacement_rows, values_at
from caviar.population.state import Member, Population, load_commit, save_commit
from caviar.population.worker import Fallback, Task, population_worker_class
from caviar.store.layout import visible_parts
from caviar.store.vocabulary import Mode

COPY_STREAM = 0xC0   # spawn_key (member, generation, COPY_STREAM): a copy's fresh data order
# Committed rows reach the tables at most this often (and at the end): each write is a Parquet part
# and two fsyncs, a third of a small generation's time. Until then the commit holds them.
FLUSH_SECONDS = 1.0


@dataclass
class Context:
    """What every generation needs: the job, its plan, the open run folder, where members train.

    pool: a `DriverPool` or a `RayPool`. to_ray: starts (or joins) Ray and returns a RayPool, for a
    run on the driver that `worth_ray` sends there with `ray_workers` actors.
    """

    job: Any
    plan: Plan
    run: Any
    pool: Any
    say: Callable[[str], None]
    to_ray: Callable[[], Any] | None = None
    ray_workers: int = 1
    ray_startup: float = 0.0   # seconds Ray took to start or join (0: not yet)
    ray_started: bool = False  # this run started a Ray of its own (so it stops it)
    pending: dict[str, list[dict]] | None = None   # committed rows not yet in the tables
    flushed: float = 0.0       # time.monotonic() of the last write to the tables
    train_seconds: float = 0.0  # the last generation's training, its members' summed


def reshuffle_seed(job_seed: int, member: int, generation: int, replacement: int | None = None) -> int:
    """The data-order seed a member takes after copying at the end of `generation` (or, during it,
    after its `replacement`-th divergence replaced, from 0)."""
    key = (member, generation, COPY_STREAM) + (() if replacement is None else (replacement,))
    words = np.random.SeedSequence(job_seed, spawn_key=key).generate_state(1)
    return int(words[0]) >> 1


def start_workers(data_ref: Any, trainer_name: str, n_workers: int) -> list[Any]:
    sys_path = [p for p in [os.getcwd(), *sys.path] if p and os.path.isdir(p)]
    return [population_worker_class().remote(data_ref, trainer_name, sys_path) for _ in range(n_workers)]


def stop_workers(actors: list[Any]) -> None:
    """Kill the workers, none in the instant it starts (`caviar.sweep.worker.stop_actors` says why)."""
    from caviar.sweep.worker import stop_actors

    stop_actors(actors, [actor.node.remote() for actor in actors])


def _standing(pop: Population) -> Generation:
    """The members as their last generation left them: scores, divergences, values."""
    return Generation([m.score for m in pop.members], [m.diverged is not None for m in pop.members],
                      [m.values for m in pop.members])


def _tasks(ctx: Context, pop: Population, generation: int, source: int | None) -> list[Task]:
    """Every member's task for `generation`; source: its fallback member (None: each its own start)."""
    job, plan = ctx.job, ctx.plan
    start, until = (plan.until(generation - 1) if generation else 0), plan.until(generation)
    return [Task(member=i, config=job.config(m.values), seed=plan.seeds[i], start=start, until=until,
                 metric=job.search.metric, divergence_ratio=job.babysit.divergence_ratio,
                 changes={name: m.values[name] for name in plan.names}, reshuffle=m.reshuffle,
                 first_loss=m.first_loss, mode=job.search.mode,
                 fallback=_fallback(ctx, pop, i, generation, source, until - start - 1))
            for i, m in enumerate(pop.members)]


def _fallback(ctx: Context, pop: Population, member: int, generation: int, source: int | None,
              count: int) -> Fallback:
    """Where `member` goes on from after each of (at most) `count` divergences replaced in `generation`."""
    job = ctx.job
    values = fallback_values(pop.members[member].values, None if source is None else pop.members[source].values,
                             count, dims=job.space.dimensions, names=ctx.plan.names, factors=job.pbt.factors,
                             resample_probability=job.pbt.resample_probability,
                             divergence_factor=job.babysit.divergence_factor,
                             rng=fallback_rng(job.search.seed, generation, member))
    return Fallback(member if source is None else source, tuple(job.config(v) for v in values), tuple(values),
                    tuple(reshuffle_seed(job.search.seed, member, generation, j) for j in range(count)))


def _record(ctx: Context, pop: Population, reports: list[Any], generation: int,
            source: int | None) -> tuple[list[dict], list[dict]]:
    """Take a generation's reports into the members; its epochs rows and its replacements' events."""
    plan, scores = ctx.plan, [m.score for m in pop.members]   # as the generation began
    start = plan.until(generation - 1) if generation else 0
    rows, events = [], []
    for report in sorted(reports, key=lambda r: r.member):
        member = pop.members[report.member]
        rows += epoch_rows(report, member.values, generation, ctx.job.config().get("learning_rate"))
        events += replacement_rows(report, member.values, plan.names, generation, scores=scores, start=start,
                                   fresh=source is None)
        if report.replacements:   # it goes on as its last replacement left it
            member.values, member.copied_from = dict(report.replacements[-1].values), report.replacements[-1].source
        member.first_loss, member.reshuffle, member.diverged = report.first_loss, None, report.diverged
        member.seconds += report.seconds
        member.node = report.node
        if report.epochs:
            member.metrics = {k: v for k, v in report.epochs[-1][1].items() if k != "learning_rate"}
        member.score = math.nan if report.diverged else member.metrics.get(ctx.job.search.metric, math.nan)
        if report.best_epoch is not None:
            score = _segment_best(ctx, report)
            if Mode(ctx.job.search.mode).better(score, member.best):
                member.best = score
    return rows, events


def _segment_best(ctx: Context, report: Any) -> float:
    """The metric at the report's best epoch (NaN: none)."""
    return next((float(m[ctx.job.search.metric]) for e, m, _ in report.epochs if e == report.best_epoch), math.nan)


def _improved(ctx: Context, pop: Population, reports: list[Any], refs: list[Any], best_refs: list[Any],
              best_ref: Any, began: list[dict]) -> tuple[dict | None, Any]:
    """A new best ever among the generation's best epochs: its `improved` event row and its state's
    reference (the member's end state, or its best epoch's when that came earlier), else (None, best_ref).
    began: each member's values as the generation began; the best's are those its best epoch trained
    with (a divergence replaced after it changed them)."""
    reports = sorted(reports, key=lambda r: r.member)
    scores = [_segment_best(ctx, r) if r.best_epoch is not None else math.nan for r in reports]
    values = [values_at(r, began[r.member], r.best_epoch) if r.best_epoch is not None else began[r.member]
              for r in reports]
    gen = Generation(scores, [not math.isfinite(s) for s in scores], values)
    better = improved(pop.best, gen, ctx.job.search.mode, [r.best_epoch or 0 for r in reports],
                      ctx.job.babysit.min_delta)
    if better is None:
        return None, best_ref
    pop.best = better
    event = {"epoch": better.epoch, "event": "improved", "base_learning_rate": float(
        better.values.get("learning_rate", math.nan)), "score": better.score, "member": better.member,
        "detail": f"member {better.member} is the best so far (epoch {better.epoch})", "generation": pop.generation}
    # best_refs[m] holds None when the best epoch was the last: the end state is the best state then
    return event, best_refs[better.member] if reports[better.member].best_epoch != ctx.plan.until(
        pop.generation) else refs[better.member]


def _event_row(ctx: Context, copy: Copy, pop: Population, epoch: int, generation: int) -> dict:
    """The events row of an end-of-generation copy."""
    score = pop.best.score if copy.best_ever and pop.best else pop.members[copy.source].score
    detail = (f"member {copy.member} starts over from its initial state (every member diverged)" if copy.fresh
              else f"member {copy.member} copies member {copy.source}")
    detail += (f" (its best, epoch {pop.best.epoch}; rollback {pop.rollbacks} of at most "
               f"{ctx.job.babysit.max_rollbacks})") if copy.best_ever and pop.best else ""
    detail += f"; {changes(copy, ctx.plan.names)}"
    detail += f"; {pop.members[copy.member].diverged}" if copy.reason == "diverged" else ""
    return copy_row(copy, ctx.plan.names, epoch, generation, score, detail)


def _decide(ctx: Context, pop: Population, generation: int) -> list[Copy]:
    job, plan = ctx.job, ctx.plan
    return decide(_standing(pop), mode=job.search.mode, quantile=job.pbt.quantile, names=plan.names,
                  dims=job.space.dimensions, factors=job.pbt.factors,
                  resample_probability=job.pbt.resample_probability, rng=policy_rng(job.search.seed, generation),
                  best_ever=pop.best, babysit=job.babysit, rollbacks=pop.rollbacks)


def _apply(ctx: Context, pop: Population, copies: list[Copy], refs: list[Any], best_ref: Any,
           generation: int) -> list[Any]:
    """Hand each copy its source's state (a reference: no bytes move through the driver) and values."""
    new_refs = list(refs)
    for copy in copies:
        member = pop.members[copy.member]
        # a fresh start has no state to load (None): the worker builds the member anew
        new_refs[copy.member] = None if copy.fresh else best_ref if copy.best_ever else refs[copy.source]
        source = pop.best.member if copy.best_ever else copy.source
        member.first_loss = pop.members[source].first_loss if member.first_loss is None else member.first_loss
        member.values = dict(copy.new)
        member.copied_from = member.copied_from if copy.fresh else copy.source
        member.reshuffle = reshuffle_seed(ctx.job.search.seed, copy.member, generation)
    return new_refs


def run_generation(ctx: Context, pop: Population, refs: list[Any], best_ref: Any) -> tuple[list[Any], Any]:
    """Train, decide, commit and write one generation; the members' and the best's state references."""
    generation, plan, pool = pop.generation, ctx.plan, ctx.pool
    source = fallback_source(_standing(pop), ctx.job.search.mode)   # as the generation begins
    # one reference for every task (a state the driver trained before Ray started is put once)
    fallback = pool.put(refs[source]) if source is not None else None
    calls = [pool.train(i, task, refs[i], fallback) for i, task in enumerate(_tasks(ctx, pop, generation, source))]
    reports = pool.get([report for report, _, _ in calls])
    ctx.train_seconds = sum(report.seconds for report in reports)
    refs = [state for _, state, _ in calls]
    began = [dict(m.values) for m in pop.members]   # before _record moves them past any replacement
    epochs, events = _record(ctx, pop, reports, generation, source)
    until = plan.until(generation)
    event, best_ref = _improved(ctx, pop, reports, refs, [best for _, _, best in calls], best_ref, began)
    events += [event] if event is not None else []
    copies = _decide(ctx, pop, generation) if generation + 1 < plan.generations else []
    pop.rollbacks += any(copy.reason == "rollback" for copy in copies)
    events += [_event_row(ctx, copy, pop, until, generation) for copy in copies]
    refs = _apply(ctx, pop, copies, refs, best_ref, generation)
    pop.generation = generation + 1
    states = pool.get(refs + ([best_ref] if best_ref is not None else []))
    pending = ctx.pending or {"epochs": [], "events": []}
    rows = {"epochs": pending["epochs"] + epochs, "events": pending["events"] + events}
    save_commit(ctx.run.checkpoints_dir, pop, states[:len(refs)], states[len(refs)] if best_ref is not None else None,
                rows)
    ctx.pending = rows
    if pop.generation >= plan.generations or time.monotonic() - ctx.flushed >= FLUSH_SECONDS:
        write_rows(ctx.run, rows)
        ctx.pending, ctx.flushed = None, time.monotonic()
    ctx.say(_progress(ctx, pop, copies, until, sum(len(report.replacements) for report in reports)))
    return refs, best_ref


def write_rows(run: Any, rows: dict[str, list[dict]]) -> None:
    """Committed generations' rows into the tables, epochs first (events point at them)."""
    for name in ("epochs", "events"):
        if rows[name]:
            table = run.table(name)
            table.append(rows[name])
            table.flush()


def _progress(ctx: Context, pop: Population, copies: list[Copy], until: int, replaced: int) -> str:
    metric, plan = ctx.job.search.metric, ctx.plan
    best = f"best {metric} {pop.best.score:.4g} (member {pop.best.member})" if pop.best else "no finite score yet"
    diverged = replaced + sum(c.reason == "diverged" for c in copies)
    return (f"caviar: generation {pop.generation}/{plan.generations}, epoch {until}/{plan.epochs}: {best}; "
            f"{len(copies)} copies" + (f"; {diverged} divergences replaced" if diverged else ""))


def restored(ctx: Context) -> tuple[Population, list[Any], Any]:
    """The population to go on from: the last committed generation (the rows it holds written where
    the tables lack them), or a new one."""
    commit = load_commit(ctx.run.checkpoints_dir) if ctx.run.resumed else None
    if commit is None:
        return Population([Member(dict(v)) for v in ctx.plan.values]), [None] * ctx.plan.size, None
    pop, states, best_state, rows = commit
    write_missing(ctx.run, rows)
    ctx.flushed = time.monotonic()
    put = ctx.pool.put
    return pop, [put(state) for state in states], put(best_state) if best_state is not None else None


def write_missing(run: Any, rows: dict[str, list[dict]]) -> None:
    """Append the committed rows of each generation a table lacks (a kill or Ctrl-C came between the
    commit and the write, or before the rows were due)."""
    missing = {}
    for name, table_rows in rows.items():
        present = _generations(run, name)
        missing[name] = [row for row in table_rows if row["generation"] not in present]
    write_rows(run, missing)


def settle(run: Any) -> None:
    """After Ctrl-C: every committed generation's rows in the tables, so what finished is kept."""
    commit = load_commit(run.checkpoints_dir)
    if commit is not None:
        write_missing(run, commit[3])


def _generations(run: Any, table: str) -> set[int]:
    """The generations whose rows `table` holds (its parts on disk, each read for that column only)."""
    found: set[int] = set()
    for part in visible_parts(run.path / f"{table}.parquet"):
        if "generation" in pq.read_schema(part).names:
            found |= {int(v) for v in pq.read_table(part, columns=["generation"]).column(0).to_pylist() if v is not None}
    return found


def declare_tables(run: Any, plan: Plan) -> None:
    """Type the columns that may be null in a table's first part (an "improved" event has no source),
    so that every part has the same schema and any Parquet reader reads the folder whole."""
    import pyarrow as pa

    arrow = {bool: pa.bool_(), int: pa.int64(), float: pa.float64(), str: pa.string()}
    values = {name: arrow.get(type(plan.values[0][name])) for name in plan.names} if plan.values else {}
    types = {"member": pa.int64(), "source": pa.int64(), "generation": pa.int64()}
    types.update({f"{side}_{name}": t for name, t in values.items() if t is not None for side in ("old", "new")})
    run.table("events", types=types)
    run.table("epochs", types={"generation": pa.int64()})


def run_population(ctx: Context) -> Population:
    """Every generation not yet committed, moving from the driver to Ray when `worth_ray` says so;
    the population at the end. Ctrl-C propagates; the pool is closed whatever happens."""
    declare_tables(ctx.run, ctx.plan)
    pop, refs, best_ref = restored(ctx)
    try:
        while pop.generation < ctx.plan.generations:
            refs, best_ref = run_generation(ctx, pop, refs, best_ref)
            left = ctx.plan.generations - pop.generation
            if not ctx.pool.on_ray and ctx.to_ray is not None and worth_ray(ctx.train_seconds, left, ctx.ray_workers):
                ctx.pool.close()
                ctx.pool = ctx.to_ray()   # the states handed on are values: Ray takes them as they are
    finally:
        ctx.pool.close()
    return pop
