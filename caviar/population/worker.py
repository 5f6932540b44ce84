"""The worker side of a population: train one member for one generation, from a state it is handed.

`train_segment` is plain Python (testable without Ray): it builds the member's trainer, loads the
state it starts from (its own, or the member's it copied), sets the values it explores, trains up to
the generation's last epoch, and hands back what happened and the state it ends with. A member
that diverges stops at once: the driver replaces it from the best.

It also keeps the state of the segment's best epoch (by the job's metric and mode) when that is not
its last: the population's best ever is its best epoch, as a trial's score is its best epoch, and
the driver can roll back to it.

`PopulationWorker` is the Ray actor around it, one per CPU, reused for every member and generation.
Its `train` returns three objects: the report, which the driver fetches, the state at the end and
the best epoch's state (None: the end's), which stay in Ray's object store and goes, by reference, to whichever worker trains that member (or its copies)
next: states move between workers without passing through the disk.
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from caviar.population.policy import diverged
from caviar.store.vocabulary import Mode
from caviar.trainers.check import checked_metrics


@dataclass(frozen=True)
class Task:
    """Train `member` from epoch `start` up to `until` (inclusive).

    config: every hyperparameter it trains with (the job's, then its current values).
    changes: its current changeable values, set after a state is loaded (a state may hold others).
    reshuffle: a fresh data-order seed after a copy (a copy would else retrace its source's batches).
    first_loss: its untrained model's loss, the divergence yardstick; None: measure it now.
    mode: "max" or "min", how `metric` ranks the segment's epochs.
    """

    member: int
    config: Mapping[str, Any]
    seed: int
    start: int
    until: int
    metric: str
    divergence_ratio: float
    changes: Mapping[str, Any] = field(default_factory=dict)
    reshuffle: int | None = None
    first_loss: float | None = None
    mode: str = "max"


@dataclass
class Report:
    """What a generation did to one member: one (epoch, metrics, seconds) per epoch trained, and why
    it stopped early if it diverged. best_epoch: the epoch of its best finite, undiverged metric
    (None: none), whose state is the segment's best state."""

    member: int
    epochs: list[tuple[int, dict[str, float], float]]
    diverged: str | None
    first_loss: float | None
    seconds: float
    node: str = ""
    best_epoch: int | None = None


def initial_loss(trainer: Any, data: Any) -> float | None:
    """The untrained model's training loss (`evaluate`), or None for a trainer without it (then the
    first epoch's train loss is the yardstick)."""
    evaluate = getattr(trainer, "evaluate", None)
    if not callable(evaluate):
        return None
    loss = evaluate(data.x_train, data.y_train).get("loss")
    return float(loss) if loss is not None and math.isfinite(loss) else None


def train_segment(trainer_class: type, data: Any, task: Task,
                  state: Mapping[str, Any] | None) -> tuple[Report, dict, dict | None]:
    """Train `task`'s member from `state` (None: from scratch); (its report, its state at the end, its
    best epoch's state when that is an earlier epoch, else None)."""
    start = time.perf_counter()
    trainer = trainer_class(dict(task.config), data, task.seed)
    first_loss = task.first_loss
    if state is None:
        first_loss = initial_loss(trainer, data)
    else:
        trainer.load_state_dict({key: value.copy() for key, value in state.items()})  # the store's copy is read-only
        if task.changes:
            trainer.set_hyperparameters(**task.changes)
    if task.reshuffle is not None and callable(getattr(trainer, "reshuffle", None)):
        trainer.reshuffle(task.reshuffle)
    epochs, why, mode = [], None, Mode(task.mode)
    best_epoch, best_score, best_state = None, None, None
    for epoch in range(task.start + 1, task.until + 1):
        began = time.perf_counter()
        metrics = checked_metrics(trainer.train_epoch())
        epochs.append((epoch, metrics, time.perf_counter() - began))
        if first_loss is None and math.isfinite(metrics.get("train_loss", math.nan)):
            first_loss = metrics["train_loss"]   # no evaluate(): the first epoch's loss is the yardstick
        why = diverged(metrics, task.metric, first_loss, task.divergence_ratio)
        if why is not None:
            why = f"{why} at epoch {epoch}"
            break
        if mode.better(metrics[task.metric], best_score):
            best_epoch, best_score = epoch, metrics[task.metric]
            # a copy only while a later epoch may be worse: at most one state per improving epoch
            best_state = {key: value.copy() for key, value in trainer.state_dict().items()}
    report = Report(task.member, epochs, why, first_loss, time.perf_counter() - start, best_epoch=best_epoch)
    end = trainer.state_dict()
    return report, end, None if best_epoch == task.until else best_state


def _make_actor_class() -> Any:
    import ray

    @ray.remote(num_cpus=1, max_restarts=0, max_task_retries=0)
    class PopulationWorker:
        """A Ray actor that trains members of a population, one generation at a time, on one CPU."""

        def __init__(self, data: Any, trainer_name: str, sys_path: list[str]) -> None:
            for entry in reversed(sys_path):
                if entry not in sys.path:
                    sys.path.insert(0, entry)
            from threadpoolctl import threadpool_limits

            from caviar.trainers.registry import resolve_trainer

            self._limits = threadpool_limits(limits=1)   # one BLAS thread: members do not oversubscribe
            self.data, self.trainer_class = data, resolve_trainer(trainer_name)

        def node(self) -> str:
            return ray.util.get_node_ip_address()

        @ray.method(num_returns=3)
        def train(self, task: Task, state: Mapping[str, Any] | None) -> tuple[Report, dict, dict | None]:
            report, state_out, best_state = train_segment(self.trainer_class, self.data, task, state)
            report.node = ray.util.get_node_ip_address()
            return report, state_out, best_state

    return PopulationWorker


_ACTOR_CLASS = None


def population_worker_class() -> Any:
    """The Ray actor class (built on first use, so importing this module does not import Ray)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        _ACTOR_CLASS = _make_actor_class()
    return _ACTOR_CLASS
