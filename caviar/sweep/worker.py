"""The worker side of caviar mode: a long-lived process that trains trial after trial.

`SegmentRunner` is plain Python (testable without Ray): it holds the trainers of the trials it is
training and runs *segments* — "train trial k up to epoch e" — reporting what happened as small
event tuples. `TrialWorker` is the Ray actor around it: one per CPU slot, reused for every trial, so
no process or actor starts per trial, and the dataset is resolved once per actor from the node's
object store (zero-copy), not shipped per trial.

Events (tuples, cheap to serialize):
    ("epoch", trial_id, epoch, metrics, seconds, at)   metrics: dict[str, float] of that epoch
    ("paused", trial_id, epoch, seconds, at)            reached the segment's end; trainer kept for later
    ("done", trial_id, epoch, seconds, at)              reached the trial's last epoch; trainer dropped
    ("failed", trial_id, epoch, seconds, error, at)     raised; trainer dropped
    ("diverged", trial_id, epoch, seconds, error, at)   reported NaN/inf (the driver keeps any earlier best)
`seconds` of the last three is the compute time of that segment (trainer construction included);
`at` (always last) is the wall-clock moment the event happened, `time.time()` seconds on the
worker's node, so `at - seconds` is when the segment began.
"""

from __future__ import annotations

import math
import sys
import time
import traceback
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

from caviar.trainers.check import checked_metrics
from caviar.trainers.registry import resolve_trainer


@dataclass(frozen=True)
class Segment:
    """Train `trial_id` from where it is up to `until_epoch` (inclusive) of `max_epochs`."""

    trial_id: int
    config: Mapping[str, Any]
    seed: int
    until_epoch: int
    max_epochs: int


def error_text(exc: BaseException) -> str:
    """One readable line for a trial's error: the exception and where in the user's code it came from."""
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


class SegmentRunner:
    """Runs segments of trials on one dataset with one trainer class.

    Args:
        data: the Dataset every trainer gets.
        trainer_name: "mlp" or "package.module:ClassName".
    """

    def __init__(self, data: Any, trainer_name: str) -> None:
        self.data = data
        self.trainer_class = resolve_trainer(trainer_name)
        self.trainers: dict[int, Any] = {}  # trial_id -> trainer paused between segments
        self.epochs_done: dict[int, int] = {}

    def drop(self, trial_ids: list[int]) -> None:
        """Forget paused trials (the driver pruned them)."""
        for trial_id in trial_ids:
            self.trainers.pop(trial_id, None)
            self.epochs_done.pop(trial_id, None)

    def run(self, segment: Segment) -> Iterator[tuple]:
        """Train one segment, yielding an event per epoch and one closing event."""
        trial_id = segment.trial_id
        start = time.perf_counter()
        epoch = self.epochs_done.get(trial_id, 0)
        try:
            trainer = self.trainers.get(trial_id)
            if trainer is None:
                trainer = self.trainer_class(dict(segment.config), self.data, segment.seed)
                epoch = 0
            while epoch < segment.until_epoch:
                epoch_start = time.perf_counter()
                metrics = trainer.train_epoch()
                epoch += 1
                clean = checked_metrics(metrics)  # the same check, and words, as panda mode's
                yield ("epoch", trial_id, epoch, clean, time.perf_counter() - epoch_start, time.time())
                bad = [k for k, v in clean.items() if not math.isfinite(v)]
                if bad:  # a divergence, not a bug: the driver keeps the trial's earlier best
                    self.drop([trial_id])
                    values = ", ".join(f"{k}={clean[k]}" for k in bad)
                    error = f"FloatingPointError: non-finite {values} at epoch {epoch}"
                    yield ("diverged", trial_id, epoch, time.perf_counter() - start, error, time.time())
                    return
        except Exception as exc:  # a trial's failure is data, never the end of the sweep
            self.drop([trial_id])
            yield ("failed", trial_id, epoch, time.perf_counter() - start, error_text(exc), time.time())
            return
        if epoch >= segment.max_epochs:
            self.drop([trial_id])
            yield ("done", trial_id, epoch, time.perf_counter() - start, time.time())
        else:
            self.trainers[trial_id] = trainer
            self.epochs_done[trial_id] = epoch
            yield ("paused", trial_id, epoch, time.perf_counter() - start, time.time())


def run_batch(runner: SegmentRunner, segments: list[Segment], drop: list[int], flush_seconds: float,
              flush_each_segment: bool) -> Iterator[list[tuple]]:
    """Run segments in order, yielding events in lists.

    Events are coalesced for `flush_seconds` to keep the per-result cost low with very short trials;
    with `flush_each_segment` every segment's end is sent at once (the driver times trials by it).
    """
    runner.drop(drop)
    buffer: list[tuple] = []
    last_flush = time.perf_counter()
    for segment in segments:
        for event in runner.run(segment):
            buffer.append(event)
            ends = event[0] != "epoch"
            now = time.perf_counter()
            if (ends and flush_each_segment) or now - last_flush >= flush_seconds:
                yield buffer
                buffer = []
                last_flush = now
    if buffer:
        yield buffer


def _make_actor_class():
    import ray

    @ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
    class TrialWorker:
        """A Ray actor that trains trials one after another on the CPUs (and GPUs) the sweep gives each trial."""

        def __init__(self, data: Any, trainer_name: str, sys_path: list[str], blas_threads: int) -> None:
            for entry in reversed(sys_path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            # Pin BLAS threads so concurrent trials do not oversubscribe the cores.
            from threadpoolctl import threadpool_limits

            self._limits = threadpool_limits(limits=blas_threads)
            self.runner = SegmentRunner(data, trainer_name)

        def node(self) -> str:
            return ray.util.get_node_ip_address()

        def run(self, segments: list[Segment], drop: list[int], flush_seconds: float, flush_each_segment: bool):
            yield from run_batch(self.runner, segments, drop, flush_seconds, flush_each_segment)

    return TrialWorker


_ACTOR_CLASS = None


def trial_worker_class():
    """The Ray actor class (built on first use, so importing this module does not import Ray)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = _make_actor_class()
    return _ACTOR_CLASS


STOP_WAIT_SECONDS = 10.0   # longest that stopping waits for workers still starting


def stop_actors(actors: list[Any], started: list[Any], wait_seconds: float = STOP_WAIT_SECONDS) -> None:
    """Kill worker actors, but none in the instant it is starting.

    Ray (seen with 2.60) loses a CPU when an actor is killed just as a worker process is leased to
    it: the kill reaches the worker before the actor does and is ignored, and the lease is never
    returned. Every later actor on that cluster then waits for the lost CPU: in our CI, a sweep
    that replaced a dead worker and finished at once left the next sweeps waiting forever.

    Args:
        actors: the actor handles to kill.
        started: for each actor, the ObjectRef of a call that returns once it has started (or its
            result, when already fetched). The wait for them is bounded by `wait_seconds`: an actor
            still waiting for a CPU by then has no worker, and killing it only cancels its request.
    """
    import ray

    pending = [ref for ref in started if isinstance(ref, ray.ObjectRef)]
    if pending:
        ray.wait(pending, num_returns=len(pending), timeout=wait_seconds, fetch_local=False)
    for actor in actors:
        ray.kill(actor)
