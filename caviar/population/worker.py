"""The worker side of a population: train one member for one generation, from a state it is handed.

`train_segment` is plain Python (testable without Ray): it builds the member's trainer, loads the
state it starts from (its own, or the member's it copied), sets the values it explores, trains up to
the generation's last epoch, and hands back what happened and the state it ends with.

A member that diverges before the generation's last epoch is replaced at once, that epoch, rather
than idle until the generation ends: it goes on from its task's `Fallback` (the state the
generation started from of the previous generation's best-ranked healthy member, handed beside the
task like any state; before any member has a score, a fresh trainer: its own initial state), with
the values the driver drew for that replacement, and a fresh data order; a later divergence takes
the next values. The diverged epoch keeps its row (as the babysitter keeps a rolled-back epoch) and
the report lists each `Replacement`. A divergence at the generation's last epoch ends the segment:
the driver's end-of-generation copy replaces the member (the next thing that happens), or, in the
last generation, the member keeps its best earlier epoch as its score.

It also keeps the state of the segment's best epoch (by the job's metric and mode) when that is not
its last: the population's best ever is its best epoch, as a trial's score is its best epoch, and
the driver can roll back to it.

`PopulationWorker` is the Ray actor around it, one per CPU, reused for every member and generation.
Its `train` returns three objects: the report, which the driver fetches, the state at the end and
the best epoch's state (None: the end's), which stay in Ray's object store and goes, by reference, to
whichever worker trains that member (or its copies) next: states move between workers without
passing through the disk. The fallback state arrives by reference too (Ray hands it to the task
with its arguments; on one node, read-only shared memory that is copied only when it is used).
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
class Fallback:
    """Where a member that diverges before its generation's last epoch goes on from: the state of
    member `source` as the generation began (handed to `train_segment` beside the task; None there:
    a fresh trainer, the member's own initial state), trained with `configs[j]` (every hyperparameter,
    `values[j]` on the job's) and data-order seed `reshuffles[j]` after its j-th divergence."""

    source: int
    configs: tuple[Mapping[str, Any], ...]
    values: tuple[Mapping[str, Any], ...]
    reshuffles: tuple[int, ...]


@dataclass(frozen=True)
class Replacement:
    """A divergence at `epoch` (`why`) replaced at once: the next epoch trains `source`'s state (its
    fallback) with `values`."""

    epoch: int
    source: int
    why: str
    values: Mapping[str, Any]


@dataclass(frozen=True)
class Task:
    """Train `member` from epoch `start` up to `until` (inclusive).

    config: every hyperparameter it trains with (the job's, then its current values).
    changes: its current changeable values, set after a state is loaded (a state may hold others).
    reshuffle: a fresh data-order seed after a copy (a copy would else retrace its source's batches).
    first_loss: its untrained model's loss, the divergence yardstick; None: measure it now.
    mode: "max" or "min", how `metric` ranks the segment's epochs.
    fallback: where a divergence before `until` takes it (None: it stops there).
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
    fallback: Fallback | None = None


@dataclass
class Report:
    """What a generation did to one member: one (epoch, metrics, seconds) per epoch trained (a
    replaced epoch too), each divergence replaced on the way, and why it diverged at its last epoch
    if it did (None: it did not). best_epoch: the epoch of its best finite, undiverged metric
    (None: none), whose state is the segment's best state."""

    member: int
    epochs: list[tuple[int, dict[str, float], float]]
    diverged: str | None
    first_loss: float | None
    seconds: float
    node: str = ""
    best_epoch: int | None = None
    replacements: list[Replacement] = field(default_factory=list)


def initial_loss(trainer: Any, data: Any) -> float | None:
    """The untrained model's training loss (`evaluate`), or None for a trainer without it (then the
    first epoch's train loss is the yardstick)."""
    evaluate = getattr(trainer, "evaluate", None)
    if not callable(evaluate):
        return None
    loss = evaluate(data.x_train, data.y_train).get("loss")
    return float(loss) if loss is not None and math.isfinite(loss) else None


def train_segment(trainer_class: type, data: Any, task: Task, state: Mapping[str, Any] | None,
                  fallback: Mapping[str, Any] | None = None) -> tuple[Report, dict, dict | None]:
    """Train `task`'s member from `state` (None: from scratch), replacing a divergence before the last
    epoch from `fallback` (`task.fallback`'s source state; None: a fresh trainer); (its report, its
    state at the end, its best epoch's state when that is an earlier epoch, else None)."""
    start = time.perf_counter()
    trainer, first_loss = _started(trainer_class, data, task, state)
    epochs, replacements, why = [], [], None
    best = _BestEpoch(Mode(task.mode))
    for epoch in range(task.start + 1, task.until + 1):
        began = time.perf_counter()
        metrics = checked_metrics(trainer.train_epoch())
        epochs.append((epoch, metrics, time.perf_counter() - began))
        if first_loss is None and math.isfinite(metrics.get("train_loss", math.nan)):
            first_loss = metrics["train_loss"]   # no evaluate(): the first epoch's loss is the yardstick
        why = diverged(metrics, task.metric, first_loss, task.divergence_ratio)
        if why is None:
            best.judge(epoch, metrics[task.metric], trainer)
            continue
        why, j = f"{why} at epoch {epoch}", len(replacements)
        if epoch == task.until or task.fallback is None or j >= len(task.fallback.values):
            break
        trainer = _replacement(trainer_class, data, task, fallback, j)
        replacements.append(Replacement(epoch, task.fallback.source, why, dict(task.fallback.values[j])))
        why = None
    report = Report(task.member, epochs, why, first_loss, time.perf_counter() - start, best_epoch=best.epoch,
                    replacements=replacements)
    return report, trainer.state_dict(), None if best.epoch == task.until else best.state


def _started(trainer_class: type, data: Any, task: Task,
             state: Mapping[str, Any] | None) -> tuple[Any, float | None]:
    """The member's trainer as its segment starts, and its divergence yardstick."""
    trainer = _built(trainer_class, data, task.config, task.seed, state, task.changes, task.reshuffle)
    return trainer, task.first_loss if state else initial_loss(trainer, data)


def _replacement(trainer_class: type, data: Any, task: Task, state: Mapping[str, Any] | None, j: int) -> Any:
    """The trainer a member goes on with after its j-th divergence of the segment (`task.fallback`),
    with a data order of its own, not its source's again."""
    fallback = task.fallback
    assert fallback is not None
    changes = {name: fallback.values[j][name] for name in task.changes if name in fallback.values[j]}
    return _built(trainer_class, data, fallback.configs[j], task.seed, state, changes, fallback.reshuffles[j])


def _built(trainer_class: type, data: Any, config: Mapping[str, Any], seed: int, state: Mapping[str, Any] | None,
           changes: Mapping[str, Any], reshuffle: int | None) -> Any:
    """A trainer of `config`, holding `state` (None or empty, as a commit keeps a fresh start: its own
    initial state) with `changes` set on it, on data order `reshuffle` (None: its own)."""
    trainer = trainer_class(dict(config), data, seed)
    if state:
        trainer.load_state_dict({key: value.copy() for key, value in state.items()})  # the store's copy is read-only
        if changes:
            trainer.set_hyperparameters(**changes)
    if reshuffle is not None and callable(getattr(trainer, "reshuffle", None)):
        trainer.reshuffle(reshuffle)
    return trainer


class _BestEpoch:
    """The segment's best epoch so far (by `mode`) and, while a later epoch may be worse, its state."""

    def __init__(self, mode: Mode) -> None:
        self.mode, self.epoch, self.score, self.state = mode, None, None, None

    def judge(self, epoch: int, score: float, trainer: Any) -> None:
        if self.mode.better(score, self.score):
            self.epoch, self.score = epoch, score
            # a copy only while a later epoch may be worse: at most one state per improving epoch
            self.state = {key: value.copy() for key, value in trainer.state_dict().items()}


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
        def train(self, task: Task, state: Mapping[str, Any] | None,
                  fallback: Mapping[str, Any] | None = None) -> tuple[Report, dict, dict | None]:
            report, state_out, best_state = train_segment(self.trainer_class, self.data, task, state, fallback)
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
