"""Running a sweep into its open run folder on a connected Ray: workers, writes, display, the end.

The loop itself is `caviar.sweep.loop.Sweep`; this module wires it to the run folder (each finished
trial's epochs, then its row, so a trial row on disk always has its epochs), the progress view, and
the lifecycle's Ctrl-C rule (every finished trial flushed, exit 130 with the resume command).
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from caviar import lifecycle
from caviar.store.vocabulary import JOB_FILE, Status
from caviar.sweep.costs import Costs
from caviar.sweep.plan import max_epochs, param_types, settle_lag, worker_count
from caviar.sweep.resources import actor_resources, cluster_nodes, one_cpu_each, trial_slots, trial_threads
from caviar.sweep.restore import Restored, restore
from caviar.views.progress import Progress


class Writer:
    """A finished trial's rows into the run's tables; flushes epochs before trials.

    A flush writes in the background: the rows are taken from the buffers at once (so parts keep
    their order), and one thread writes and fsyncs them while the driver goes on (it trains too, and
    a flush's fsyncs were 2% of a short sweep). At most one flush is in flight: the next one, and
    `settle`, `compact` and `close`, wait for it first and raise its error (a full disk: exit 1).
    The epochs part of a flush is written before its trials part, in the same thread, so no trial
    row ever reaches the disk before its epochs. A background write that fails loses its rows (the
    run ends with the error; a resume trains those trials again, as any not on disk).
    """

    def __init__(self, run: Any, types: dict[str, Any] | None = None) -> None:
        self.trials, self.epochs = run.table("trials", types=types), run.table("epochs")
        self._pool: ThreadPoolExecutor | None = None
        self._in_flight: Future | None = None
        self._start_thread()

    def _start_thread(self) -> None:
        """Start the writing thread now, before the trainers take the cores: started at the first
        flush, while they computed, it waited milliseconds for a CPU, all of them the driver's."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="caviar-writer")
            self._pool.submit(lambda: None).result()

    def write_trial(self, row: dict, epoch_rows: list[dict]) -> None:
        self.epochs.append(epoch_rows)
        self.trials.append([row])

    def flush(self, trials: bool = True) -> None:
        """Start writing what is buffered (epochs; trials too with `trials`); returns at once."""
        self.settle()
        epochs = self.epochs.take()
        try:
            trials_part = self.trials.take() if trials else None
        except BaseException:
            if epochs is not None:
                epochs()   # taken from the buffer: on disk before the error goes on
            raise
        parts = [part for part in (epochs, trials_part) if part is not None]
        if parts:
            self._start_thread()   # again after a `close`
            self._in_flight = self._pool.submit(lambda: [write() for write in parts])

    def settle(self) -> None:
        """Wait for the flush in flight (if any); its error, raised here."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is not None:
            in_flight.result()

    def flush_now(self) -> None:
        """Everything buffered on disk before returning (Ctrl-C, an error: the process ends next)."""
        try:
            self.settle()
        finally:
            self.epochs.flush()
            self.trials.flush()

    def compact(self) -> None:
        """Everything on disk, each table merged into one part; the writer's thread ended."""
        try:
            self.flush_now()
            for table in (self.epochs, self.trials):
                table.compact()
        finally:
            self.close()

    def close(self) -> None:
        """No thread left behind (a later fork, a caller's next sweep)."""
        try:
            self.settle()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None


def show_progress(sweep: Any, progress: Progress) -> None:
    """Draw the sweep's state, after any message it has for the user."""
    for notice in sweep.notices:
        progress.note(notice)
    sweep.notices.clear()
    progress.update(len(sweep.finished), sweep.running, sweep.counts[Status.PRUNED], sweep.counts[Status.FAILED], sweep.best)


def build_sweep(job: Any, trainer: type, sampler: Any, scheduler: Any, data_ref: Any, writer: Writer,
                done: Restored, n_workers: int, progress: Progress) -> Any:
    """The driver loop of this sweep, told what a resumed run already did. `data_ref`: the dataset in
    Ray's object store (None until the sweep joins its local Ray)."""
    from caviar.sweep.loop import Sweep

    sweep = Sweep(
        sampler=sampler, scheduler=scheduler, base_config=job.config(), job_seed=job.search.seed,
        metric=job.search.metric, mode=job.search.mode, max_epochs=max_epochs(job, trainer), data_ref=data_ref,
        trainer_name=job.trainer, n_workers=n_workers, max_retries=job.search.max_retries,
        trial_timeout=float(job.search.trial_timeout or 0), write_trial=writer.write_trial, flush=writer.flush,
        finished=done.finished, on_change=lambda s: show_progress(s, progress),
        resources=actor_resources(job.search), threads=trial_threads(job.search),
    )
    sweep.counts.update(done.counts)
    sweep.best = done.best
    return sweep


def _cluster_cpus() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def _put(data: Any) -> Any:
    import ray

    return ray.put(data)


def run_sweep(job: Any, trainer: type, run: Any, request: lifecycle.RunRequest, sampler: Any, scheduler: Any,
              data: Any, *, concurrency: int, quiet: bool, startup: float, head: Any = None) -> int:
    """Run the sweep into `run`: on the connected Ray, or with `head` (a `RayOnDemand`: the sweep's
    own Ray, booted when the work left is worth it), on this process until that Ray is up and on
    its workers after. Returns the exit status (0, or 130 on Ctrl-C)."""
    from caviar.sweep import head_start

    done = restore(run, sampler, scheduler, job.search.metric) if request.resume else Restored()
    if head is not None:
        cpus = slots = head.cpus
    else:
        cpus = _cluster_cpus()
        slots = cpus if one_cpu_each(job.search) else trial_slots(cluster_nodes(), job.search)
    what = "CPUs Ray has" if head is not None or one_cpu_each(job.search) else "trials the cluster fits at once"
    n_workers = worker_count(concurrency or job.search.concurrency, max(1, slots),
                             sampler.n_trials - len(done.finished), quiet, what=what)
    job = settle_lag(job, sampler, n_workers)   # tpe/gp/cmaes: lag "auto" becomes a number, recorded
    lifecycle.record_job(run.path / JOB_FILE, job.to_toml())
    if not quiet:
        ray_state = "training here; Ray starts if the work left needs it" if head is not None \
            else f"Ray ready in {startup:.1f} s"
        print(f"caviar: {job.name}: {sampler.n_trials} trials on {n_workers} workers "
              f"({cpus} CPUs; {ray_state}); results in {run.path}", file=sys.stderr)
    writer = Writer(run, param_types(job.space))
    progress = Progress(sampler.n_trials, job.search.metric, already_done=len(done.finished),
                        stream=open(os.devnull, "w") if quiet else None)
    costs = Costs()
    with costs.timed("data to Ray"):
        data_ref = None if head is not None else _put(data)
    sweep = build_sweep(job, trainer, sampler, scheduler, data_ref, writer, done, n_workers, progress)
    trained = False
    try:
        if head is not None:   # only a worker can be stopped in the middle of an epoch: no timeout here
            head_start.run_with_head(sweep, head, data, job.trainer, train_here=not job.search.trial_timeout,
                                     costs=costs)
        elif head_start.work_left(sweep):
            sweep.start_workers()
            sweep.run()
        trained = True
    except KeyboardInterrupt:
        writer.flush_now()
        progress.close()
        return lifecycle.interrupted(request, f"{len(sweep.finished)} finished trials are")
    except BaseException:
        writer.flush_now()   # whatever else stopped the sweep, every finished trial reaches the disk
        raise
    finally:
        costs.workers(sweep.slots)
        with costs.timed("stopping workers"):
            sweep.stop_workers()
        if not trained:   # the compaction below closes it otherwise
            writer.close()
    progress.update(len(sweep.finished), 0, sweep.counts[Status.PRUNED], sweep.counts[Status.FAILED], sweep.best, force=True)
    progress.close()
    with costs.timed("compaction"):
        writer.compact()
    costs.report()
    return 0
