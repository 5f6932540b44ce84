"""The caviar-mode driver loop: hand segments of trials to Ray workers, decide, write, display.

The driver owns every decision: which trial runs next (the sampler), whether a trial goes on at a
milestone (the scheduler), what a failure means (retry or fail). Workers (`caviar.sweep.worker`) only
train. Results are buffered per trial and written when the trial ends, so a trial retried after a
worker died never leaves a half-written trace, and the store is flushed at most every
`FLUSH_SECONDS`: every finished trial is on disk about a second after it ends.

Per result the driver does O(1) work; nothing it does grows with the number of finished trials.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable

from caviar.search.samplers import Sampler, trial_seed
from caviar.search.schedulers import Scheduler
from caviar.store.vocabulary import STATUSES, Mode, Status, model_columns, utc_at
from caviar.sweep.records import Call, Slot, TrialState
from caviar.sweep.worker import Segment, stop_actors, trial_worker_class

FLUSH_SECONDS = 0.5      # finished trials reach the disk within about this long
CALLS_PER_WORKER = 2     # one running, one queued: a worker never waits for the driver
TARGET_CALL_SECONDS = 0.5  # short trials are batched into calls of about this length
MAX_BATCH = 64
HOLD_SECONDS = 5.0       # longest that trial rows wait for the first metrics before being written
WAIT_SECONDS = 0.2       # how often the loop wakes without results (timeouts, flushes, display)
START_WARN_SECONDS = 30.0  # a worker not started by then waits for a CPU that other work holds


class Sweep:
    """Run every trial of a sweep on `n_workers` Ray actors.

    Args:
        base_config: the job's fixed hyperparameters; each trial's sampled values go on top.
        sampler: gives each trial's config; told each finished trial's score.
        scheduler: decides at milestones; None of its decisions is undone.
        write_trial: called with (trial_row, epoch_rows) for each finished trial.
        flush: called at most every FLUSH_SECONDS to make written rows durable.
        on_change: called after each batch of results, for the display.
        finished: trial ids already done (a resumed sweep): never run again.
        resources: each worker actor's Ray options ({"num_cpus": 1.0, "num_gpus": 0.5}); threads: its
            compute threads (BLAS; a PyTorch trainer reads its CPUs from Ray itself).
    """

    def __init__(self, *, sampler: Sampler, scheduler: Scheduler, base_config: dict[str, Any], job_seed: int,
                 metric: str, mode: str,
                 max_epochs: int, data_ref: Any, trainer_name: str, n_workers: int, max_retries: int,
                 trial_timeout: float, write_trial: Callable, flush: Callable, on_change: Callable,
                 finished: set[int], resources: dict[str, float] | None = None, threads: int = 1) -> None:
        self.sampler, self.scheduler, self.base_config = sampler, scheduler, base_config
        self.job_seed, self.metric = job_seed, metric
        self.mode = Mode(mode)
        self.sign = self.mode.sign
        self.max_epochs = max_epochs
        self.max_retries, self.trial_timeout = max_retries, trial_timeout
        self.write_trial, self.flush, self.on_change = write_trial, flush, on_change
        self.data_ref, self.trainer_name, self.n_workers = data_ref, trainer_name, n_workers
        self.resources, self.threads = resources or {"num_cpus": 1.0}, threads   # each worker's Ray share
        self.finished = set(finished)
        # What every trial row records of the job's fixed values, so runs compare by them (`load_all`).
        self.model_values = model_columns({"trainer": trainer_name, **base_config}, sampler.space.names)
        self.next_new = 0                       # lowest trial id not yet started (or skipped)
        self.retry_queue: deque[TrialState] = deque()
        self.active: dict[int, TrialState] = {}
        self.counts = dict.fromkeys(STATUSES, 0)
        self.best: tuple[float, int, dict[str, Any]] | None = None   # (score, trial_id, params)
        self.metric_names: dict[str, None] = {}  # every metric reported so far, in first-seen order
        self.segment_seconds = 0.0              # running mean, sizes the batches
        self.slots: list[Slot] = []
        self.training_here = 0                  # trials the driver itself trains now (while its Ray starts)
        self.last_flush = time.monotonic()
        self.notices: list[str] = []            # one-off messages for the user; the caller shows and clears them
        self.start_checked = 0.0
        self.start_warned = False

    # ---- workers -------------------------------------------------------------------------------
    def _start_actor(self, slot: Slot) -> None:
        sys_path = [p for p in [os.getcwd(), *sys.path] if p and os.path.isdir(p)]
        worker = trial_worker_class().options(**self.resources)
        slot.actor = worker.remote(self.data_ref, self.trainer_name, sys_path, self.threads)
        slot.node_ref, slot.created = slot.actor.node.remote(), time.monotonic()

    def start_workers(self) -> None:
        self.slots = [Slot() for _ in range(self.n_workers)]
        for slot in self.slots:
            self._start_actor(slot)

    @staticmethod
    def _started(slot: Slot) -> bool:
        """Whether the slot's worker has started (waiting for a CPU, it has not). Never blocks."""
        import ray   # here, not above: the driver trains while Ray starts without importing it

        if isinstance(slot.node_ref, ray.ObjectRef) and not ray.wait([slot.node_ref], timeout=0, fetch_local=False)[0]:
            return False
        Sweep._node(slot)
        return True

    @staticmethod
    def _node(slot: Slot) -> str:
        """The IP of the node a worker runs on (known by the time it has finished a trial)."""
        if not isinstance(slot.node_ref, str):
            import ray
            from ray.exceptions import RayError

            try:
                slot.node_ref = ray.get(slot.node_ref, timeout=10)
            except RayError:
                slot.node_ref = ""
            slot.started = time.monotonic()
        return slot.node_ref

    def stop_workers(self) -> None:
        started = [slot for slot in self.slots if slot.actor is not None]
        if not started:
            return   # nothing of Ray to stop (a sweep the driver finished alone never imports Ray)
        stop_actors([slot.actor for slot in started], [slot.node_ref for slot in started])
        self.slots = []

    def _check_starts(self) -> None:
        """Say once when workers have waited START_WARN_SECONDS for a CPU: a sweep that seems stuck
        on a busy cluster is waiting, not broken. Checked at most once a second."""
        now = time.monotonic()
        if self.start_warned or now - self.start_checked < 5 * WAIT_SECONDS:
            return
        self.start_checked = now
        waiting = [slot for slot in self.slots if now - slot.created >= START_WARN_SECONDS and not self._started(slot)]
        if waiting:
            self.start_warned = True
            self.notices.append(
                f"caviar: {len(waiting)} of {len(self.slots)} workers have waited over "
                f"{START_WARN_SECONDS:g} s for a CPU that other work on the cluster holds (`ray status` shows it); "
                "their trials start when one frees")

    @property
    def running(self) -> int:
        """Trials training now: on workers (one waiting for a CPU has work queued but is not running
        it) and on the driver."""
        return self.training_here + sum(1 for slot in self.slots if slot.calls and self._started(slot))

    # ---- work assignment -----------------------------------------------------------------------
    def _new_trial(self) -> TrialState | None:
        """The next trial to start, in id order; None when none is ready (or none is left)."""
        if self.retry_queue:
            return self.retry_queue.popleft()
        while self.next_new < self.sampler.n_trials and self.next_new in self.finished:
            self.next_new += 1
        if self.next_new >= self.sampler.n_trials or not self.sampler.ready(self.next_new):
            return None
        trial_id = self.next_new
        self.next_new += 1
        # Every [space] name comes from the sampler: a conditional one it leaves out (inactive) reaches
        # the trainer neither from [space] nor from [model], and its params_<name> is null.
        space = self.sampler.space
        config = {**{k: v for k, v in self.base_config.items() if k not in space.dimensions},
                  **self.sampler.ask(trial_id)}
        trial = TrialState(
            trial_id=trial_id, config=config, params={n: config.get(n) for n in space.names},
            seed=trial_seed(self.job_seed, trial_id), round=self.sampler.round_of(trial_id),
            max_epochs=int(config.get("epochs", self.max_epochs)),
        )
        self.active[trial_id] = trial
        return trial

    def _segment(self, trial: TrialState) -> Segment:
        """The trial's next segment: up to the scheduler's next milestone, or to its own last epoch
        (which may lie beyond the scheduler's when `epochs` is searched)."""
        until = self.scheduler.next_stop(trial.epochs)
        if until <= trial.epochs or until >= self.scheduler.max_epochs:
            until = trial.max_epochs
        return Segment(trial.trial_id, trial.config, trial.seed, min(until, trial.max_epochs), trial.max_epochs)

    def _take_work(self, slot: Slot, batch: int) -> list[Segment]:
        segments = []
        while slot.held and len(segments) < batch:
            trial_id, _ = slot.held.popitem()
            segments.append(self._segment(self.active[trial_id]))
        while len(segments) < batch:
            trial = self._new_trial()
            if trial is None:
                break
            segments.append(self._segment(trial))
        return segments

    @property
    def trials_waiting(self) -> int:
        """Trials not started yet: new ones (finished ones of a resumed run among them) and retries."""
        return self.sampler.n_trials - self.next_new + len(self.retry_queue)

    def _batch_size(self) -> int:
        """Segments per call: enough for a call to last about TARGET_CALL_SECONDS (each call costs
        the driver and the worker a few milliseconds), but few enough near the end of the sweep that
        no worker sits idle while another works through a long batch."""
        if self.segment_seconds <= 0:
            return 1
        batch = min(MAX_BATCH, max(1, int(TARGET_CALL_SECONDS / self.segment_seconds)))
        return max(1, min(batch, self.trials_waiting // (2 * CALLS_PER_WORKER * max(1, len(self.slots)))))

    def _dispatch(self) -> None:
        batch = self._batch_size()
        for slot in self.slots:
            while len(slot.calls) < CALLS_PER_WORKER:
                segments = self._take_work(slot, batch)
                if not segments:
                    break
                if slot.actor is None:
                    self._start_actor(slot)
                if not slot.calls:
                    slot.segment_started = time.monotonic()
                stream = slot.actor.run.options(num_returns="streaming").remote(
                    segments, slot.drop, FLUSH_SECONDS / 5, self.trial_timeout > 0)
                slot.drop = []
                slot.calls.append(Call(stream, segments))

    # ---- results ---------------------------------------------------------------------------------
    def _finish(self, trial: TrialState, status: Status, error: str | None, slot: Slot, at: float | None = None) -> None:
        """Write a trial's row; `at`: when it ended on its worker (now, for a trial the driver ended)."""
        self.active.pop(trial.trial_id, None)
        if status != Status.FAILED and self.metric not in trial.last_metrics:
            status, error = Status.FAILED, f"the trainer did not report the metric {self.metric!r}"
        score = self.sign * trial.best if status != Status.FAILED and math.isfinite(trial.best) else math.nan
        row = {"trial_id": trial.trial_id, "status": status}
        row.update({f"params_{name}": value for name, value in trial.params.items()})
        row.update(score=score, epochs=trial.epochs, seconds=trial.seconds, seed=trial.seed, error=error,
                   node=self._node(slot), round=trial.round,
                   started_at=utc_at(trial.started_at) if math.isfinite(trial.started_at) else None,
                   finished_at=utc_at(time.time() if at is None else at))
        row.update(self.model_values)
        # Every metric seen so far, null where this trial has none: all parts share their columns.
        row.update({name: trial.last_metrics.get(name) for name in self.metric_names})
        self.write_trial(row, trial.epoch_rows)
        self.counts[status] += 1
        self.finished.add(trial.trial_id)
        self.sampler.tell(trial.trial_id, score)
        if self.mode.better(score, None if self.best is None else self.best[0]):
            self.best = (score, trial.trial_id, trial.params)

    def _on_event(self, slot: Slot, call: Call, event: tuple) -> None:
        kind, trial_id = event[0], event[1]
        trial = self.active[trial_id]
        if kind == "epoch":
            epoch, metrics, seconds, at = event[2:6]
            learning_rate = metrics.pop("learning_rate", trial.config.get("learning_rate", math.nan))
            trial.epoch_rows.append({"trial_id": trial_id, "epoch": epoch, "learning_rate": float(learning_rate),
                                     "seconds": seconds, "time": datetime.fromtimestamp(at, timezone.utc), **metrics})
            trial.started_at = min(trial.started_at, at - seconds)
            trial.last_metrics, trial.epochs = metrics, epoch
            if not metrics.keys() <= self.metric_names.keys():
                self.metric_names.update(dict.fromkeys(metrics))
            value = metrics.get(self.metric)
            # An epoch with any non-finite metric ends the trial and does not count for its score.
            if value is not None and all(math.isfinite(v) for v in metrics.values()):
                trial.best = max(trial.best, self.sign * value)
            return
        call.ended += 1
        slot.segment_started = time.monotonic()
        seconds, at = event[3], event[-1]
        trial.started_at = min(trial.started_at, at - seconds)   # the segment's start, construction included
        trial.seconds += seconds
        self.segment_seconds = seconds if self.segment_seconds <= 0 else 0.8 * self.segment_seconds + 0.2 * seconds
        if kind == "failed":
            self._finish(trial, Status.FAILED, event[4], slot, at)
        elif kind == "diverged":   # non-finite after good epochs: keep the best of them
            self._finish(trial, Status.DIVERGED if math.isfinite(trial.best) else Status.FAILED, event[4], slot, at)
        elif kind == "done":
            self._finish(trial, Status.COMPLETED, None, slot, at)
        elif self.metric not in trial.last_metrics:
            slot.drop.append(trial_id)
            self._finish(trial, Status.FAILED, f"the trainer did not report the metric {self.metric!r}", slot, at)
        elif self.scheduler.should_continue(trial_id, trial.epochs, self.scheduler.rung_score(
                [row.get(self.metric) for row in trial.epoch_rows])):
            slot.held[trial_id] = trial.epochs
        else:
            slot.drop.append(trial_id)
            self._finish(trial, Status.PRUNED, None, slot, at)

    def _lose_slot(self, index: int, culprit_error: str, *, timed_out: bool = False) -> None:
        """A worker died or was killed: fail or retry the trial it was running, requeue the rest.
        A trial that timed out is failed at once, with the epochs it had reported."""
        slot = self.slots[index]
        lost: list[int] = list(slot.held)
        for call in slot.calls:
            lost += [segment.trial_id for segment in call.segments[call.ended:]]
        culprit = lost[len(slot.held)] if len(lost) > len(slot.held) else None
        stop_actors([slot.actor], [slot.node_ref])
        # Its replacement starts when there is work for it: a worker started at the end of a sweep
        # only to be stopped at once is the kill-while-starting case that loses a CPU.
        self.slots[index] = Slot()
        for trial_id in dict.fromkeys(lost):
            trial = self.active[trial_id]
            if trial_id == culprit:
                trial.retries += 1
                if timed_out or trial.retries > self.max_retries:
                    error = culprit_error if timed_out else f"{culprit_error} (gave up after {trial.retries} attempts)"
                    self._finish(trial, Status.FAILED, error, slot)
                    continue
            trial.restart()
            self.retry_queue.appendleft(trial) if trial_id == culprit else self.retry_queue.append(trial)

    def _check_timeouts(self) -> None:
        if self.trial_timeout <= 0:
            return
        now = time.monotonic()
        for index, slot in enumerate(self.slots):
            if not slot.calls:
                continue
            if not self._started(slot):
                slot.segment_started = now   # a trial's clock starts with its worker, not in the queue
                continue
            call = slot.calls[0]
            trial = self.active.get(call.segments[call.ended].trial_id) if call.ended < len(call.segments) else None
            if trial is not None and trial.seconds + now - slot.segment_started > self.trial_timeout:
                self._lose_slot(index, f"timed out after {self.trial_timeout:g} s", timed_out=True)

    def _poll(self) -> None:
        import ray
        from ray.exceptions import RayError

        streams = {id(call.stream): (i, call) for i, slot in enumerate(self.slots) for call in slot.calls}
        if not streams:
            return
        ready, _ = ray.wait([c.stream for _, c in streams.values()], num_returns=1, timeout=WAIT_SECONDS,
                            fetch_local=True)
        for stream in ready:
            index, call = streams[id(stream)]
            slot = self.slots[index]
            if call not in slot.calls:
                continue   # its worker was replaced while handling an earlier stream
            try:
                events = ray.get(next(stream))
            except StopIteration:
                slot.calls.remove(call)
                continue
            except RayError as exc:
                # The worker process died (killed, out of memory, the trainer's module failed to
                # import on its node...): say which, in one line.
                cause = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
                self._lose_slot(index, f"worker process died ({type(exc).__name__}: {cause[:300]})")
                continue
            for event in events:
                self._on_event(slot, call, event)

    def run(self) -> None:
        """Run until every trial is finished. Ctrl-C propagates as KeyboardInterrupt."""
        started = time.monotonic()
        while True:
            self._dispatch()
            if not any(slot.calls for slot in self.slots):
                break
            self._poll()
            self._check_timeouts()
            self._check_starts()
            if time.monotonic() - self.last_flush >= FLUSH_SECONDS:
                # Trial rows wait (at most HOLD_SECONDS) until some trial has reported its metrics,
                # so that the first trials part already has every metric column (pandas reads a
                # folder of parts with the first part's columns).
                self.flush(trials=bool(self.metric_names) or time.monotonic() - started > HOLD_SECONDS)
                self.last_flush = time.monotonic()
            self.on_change(self)
        self.flush(trials=True)
        self.on_change(self)
