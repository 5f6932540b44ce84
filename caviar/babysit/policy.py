"""The babysitter's judgement: after each epoch, what would a careful person do next?

A pure function of the run so far — no files, no trainer, no clock — so every rule is tested on a
list of numbers. The loop in `caviar.babysit.loop` only carries the decisions out.

One epoch is a `Day` (its score on the job's metric, its training loss, the learning rate it was
trained with). `step(state, day, policy)` judges one day given the counters the earlier days left
behind; `decide(history, policy)` folds `step` over a whole history and returns the last verdict.
The rules, in the order they are checked:

- stop: the target score is reached, or the epoch budget is spent (a stop on an improving day still
  counts as an improvement: the loop keeps that checkpoint);
- diverged: a NaN/inf score or loss, or a training loss above `divergence_ratio` × the yardstick
  (the first epoch's loss; or the initial state's, when the loop can measure it and starts the
  counters with it — a first epoch whose rate is far too high has itself blown up, and must not
  become the yardstick, nor the best) → roll back at once to the best checkpoint (epoch 0, the
  initial state, if nothing was better yet) with the learning rate × `divergence_factor`;
- improved: the score beats the best by more than `min_delta` → keep a checkpoint;
- regressed: the score is more than `tolerance` worse than the best → roll back to the best
  checkpoint with the learning rate × `rollback_factor` (and a fresh data order);
- cooldown: for `cooldown` epochs after a plateau cut, only wait;
- plateau: `patience` epochs without improvement → learning rate × `plateau_factor`;
- and a rollback once `max_rollbacks` are spent, or a cut below `min_lr`, is a stop instead.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol, Sequence, Union

from caviar.store.vocabulary import Mode


class PolicySpec(Protocol):
    """The `[babysit]` fields the policy reads (`caviar.config.job.BabysitSpec` has them all)."""

    epochs: int  # epoch budget: stop after this many epochs trained (rolled-back epochs count)
    patience: int  # epochs without improvement before a plateau cut
    min_delta: float  # an improvement must beat the best by more than this (metric units)
    plateau_factor: float  # learning rate × this on a plateau
    cooldown: int  # epochs after a plateau cut before patience counts again
    tolerance: float  # a score this much worse than the best is a regression (metric units)
    rollback_factor: float  # learning rate × this after a regression
    divergence_ratio: float  # training loss above this × the first epoch's is a divergence
    divergence_factor: float  # learning rate × this after a divergence (a larger cut)
    min_lr: float  # stop rather than train below this learning rate
    max_rollbacks: int  # stop rather than roll back more often than this
    target: float | None  # stop once the score reaches this (None: no target)
    mode: str  # "max" (accuracy) or "min" (loss)


@dataclass(frozen=True)
class Day:
    """One epoch as the policy sees it.

    epoch: the babysitter's epoch count, from 1 (epochs after a rollback keep counting up).
    score: the job's metric on the validation split. loss: the training loss (train_loss); None
    when the trainer does not report one (then only a non-finite score counts as a divergence).
    learning_rate: the base learning rate this epoch was trained with.
    """

    epoch: int
    score: float
    loss: float | None
    learning_rate: float


@dataclass(frozen=True)
class PolicyState:
    """The counters earlier days leave behind; saved in every checkpoint so a resume judges alike.

    best_score/best_epoch: the best day so far (None/0: none yet, the best checkpoint is the initial
    state). first_loss: the yardstick of divergence: the initial state's training loss when the loop
    starts the counters with it (then `first_loss_initial`), else the first finite epoch's. wait: epochs
    without improvement since the last improvement or cut. cooldown: epochs of cooldown left.
    rollbacks: rollbacks and divergences so far (a person's rollback does not count).
    """

    best_score: float | None = None
    best_epoch: int = 0
    first_loss: float | None = None
    first_loss_initial: bool = False
    wait: int = 0
    cooldown: int = 0
    rollbacks: int = 0

    def to_dict(self) -> dict[str, float | int | None]:
        """Plain JSON-able values (for checkpoint metadata)."""
        return {
            "best_score": self.best_score,
            "best_epoch": self.best_epoch,
            "first_loss": self.first_loss,
            "first_loss_initial": self.first_loss_initial,
            "wait": self.wait,
            "cooldown": self.cooldown,
            "rollbacks": self.rollbacks,
        }

    @classmethod
    def from_dict(cls, values: dict) -> PolicyState:
        """The inverse of `to_dict`."""
        return cls(
            best_score=None if values.get("best_score") is None else float(values["best_score"]),
            best_epoch=int(values.get("best_epoch", 0)),
            first_loss=None if values.get("first_loss") is None else float(values["first_loss"]),
            first_loss_initial=bool(values.get("first_loss_initial", False)),
            wait=int(values.get("wait", 0)),
            cooldown=int(values.get("cooldown", 0)),
            rollbacks=int(values.get("rollbacks", 0)),
        )


# --- the decisions --------------------------------------------------------------------------------
# Each is a small frozen record with `kind` (the name written to the `decision` column) and
# `reason` (one line for the display and the events table).


@dataclass(frozen=True)
class Continue:
    """Nothing to do: train the next epoch as is."""

    reason: str = ""
    kind: ClassVar[str] = "continue"
    improved: ClassVar[bool] = False


@dataclass(frozen=True)
class Improved:
    """A new best score: keep this epoch's checkpoint as the best."""

    score: float
    reason: str = ""
    kind: ClassVar[str] = "improved"
    improved: ClassVar[bool] = True


@dataclass(frozen=True)
class Plateau:
    """No progress for `patience` epochs: go on from here with a smaller learning rate."""

    learning_rate: float
    reason: str = ""
    kind: ClassVar[str] = "plateau"
    improved: ClassVar[bool] = False


@dataclass(frozen=True)
class Rollback:
    """The score regressed: back to the checkpoint of `to_epoch`, smaller learning rate, new data order."""

    learning_rate: float
    to_epoch: int
    reason: str = ""
    kind: ClassVar[str] = "rollback"
    improved: ClassVar[bool] = False


@dataclass(frozen=True)
class Diverged:
    """The loss blew up: back to the checkpoint of `to_epoch` (0: the initial state), a larger cut."""

    learning_rate: float
    to_epoch: int
    reason: str = ""
    kind: ClassVar[str] = "diverged"
    improved: ClassVar[bool] = False


@dataclass(frozen=True)
class Stop:
    """Stop training. `cause`: "target" | "epochs" | "min_lr" | "max_rollbacks" | "nudge".

    improved: this last epoch was also a new best (so its checkpoint is kept as the best).
    """

    cause: str
    reason: str = ""
    improved: bool = False
    kind: ClassVar[str] = "stop"


Decision = Union[Continue, Improved, Plateau, Rollback, Diverged, Stop]


# --- the rules ------------------------------------------------------------------------------------


def worse_by(score: float, best: float, mode: str) -> float:
    """How much worse `score` is than `best` in the metric's units (negative: better)."""
    return Mode(mode).worse_by(score, best)


def improves(score: float, best: float | None, mode: str, min_delta: float) -> bool:
    """Whether `score` (finite) is a new best: better than `best` (None: no best yet) by more than
    `min_delta` (metric units). The population's best ever follows the same rule."""
    return best is None or -worse_by(score, best, mode) > min_delta


def regressed(score: float, best: float, mode: str, tolerance: float) -> bool:
    """Whether `score` is more than `tolerance` (metric units) worse than `best`: a rollback's cue,
    for the babysat model and for the population's best member alike."""
    return worse_by(score, best, mode) > tolerance


def _reached(score: float, target: float | None, mode: str) -> bool:
    if target is None:
        return False
    return Mode(mode).sign * (score - target) >= 0


def _divergence(state: PolicyState, day: Day, policy: PolicySpec) -> str | None:
    """Why this day counts as diverged, or None."""
    if day.loss is None:
        return None if math.isfinite(day.score) else f"non-finite score {day.score:.4g}"
    if not math.isfinite(day.score) or not math.isfinite(day.loss):
        return f"non-finite score {day.score:.4g} or loss {day.loss:.4g}"
    if state.first_loss is not None and day.loss > policy.divergence_ratio * state.first_loss:
        which = "the initial loss" if state.first_loss_initial else "the first epoch's loss"
        return f"loss {day.loss:.4g} above {policy.divergence_ratio:g} × {which} {state.first_loss:.4g}"
    return None


def _roll_back(
    state: PolicyState, day: Day, policy: PolicySpec, factor: float, why: str, diverged: bool
) -> tuple[Decision, PolicyState]:
    """A rollback (or divergence) to the best checkpoint, unless the budget or the floor says stop."""
    if state.rollbacks >= policy.max_rollbacks:
        return Stop("max_rollbacks", f"{why}; all {policy.max_rollbacks} rollbacks used"), state
    rate = day.learning_rate * factor
    if rate < policy.min_lr:
        return Stop("min_lr", f"{why}; learning rate {rate:.3g} would be below min_lr {policy.min_lr:.3g}"), state
    # A fresh start from the best state: patience and cooldown count from here.
    after = replace(state, wait=0, cooldown=0, rollbacks=state.rollbacks + 1)
    where = f"epoch {state.best_epoch}" if state.best_epoch else "the initial state"
    reason = f"{why}; back to {where}, learning rate × {factor:g}"
    if diverged:
        return Diverged(rate, state.best_epoch, reason), after
    return Rollback(rate, state.best_epoch, reason), after


def step(state: PolicyState, day: Day, policy: PolicySpec) -> tuple[Decision, PolicyState]:
    """Judge one day: the decision, and the counters the next day starts from.

    Pure: the same (state, day, policy) always gives the same answer.
    """
    mode = policy.mode
    diverged = _divergence(state, day, policy)
    if state.first_loss is None and day.loss is not None and math.isfinite(day.loss):
        state = replace(state, first_loss=day.loss)
    improved = diverged is None and improves(day.score, state.best_score, mode, policy.min_delta)
    before = state.best_score
    if improved:
        state = replace(state, best_score=day.score, best_epoch=day.epoch, wait=0)
    # `cooldown` whole epochs after a plateau cut in which patience does not count (as PyTorch's
    # ReduceLROnPlateau does): the smaller rate gets time to show what it can do.
    cooling = state.cooldown > 0
    if cooling:
        state = replace(state, cooldown=state.cooldown - 1, wait=0)

    if diverged is None and _reached(day.score, policy.target, mode):
        return Stop("target", f"score {day.score:.4g} reached the target {policy.target:g}", improved), state
    if day.epoch >= policy.epochs:
        return Stop("epochs", f"all {policy.epochs} epochs trained", improved), state
    if day.learning_rate < policy.min_lr:
        return Stop("min_lr", f"learning rate {day.learning_rate:.3g} below min_lr {policy.min_lr:.3g}",
                    improved), state
    if diverged is not None:
        return _roll_back(state, day, policy, policy.divergence_factor, diverged, diverged=True)
    if improved:
        was = "nothing" if before is None else f"{before:.4g}"
        return Improved(day.score, f"score {day.score:.4g} beat {was}"), state

    assert state.best_score is not None  # a finite day that did not improve has a best to compare with
    if regressed(day.score, state.best_score, mode, policy.tolerance):
        drop = worse_by(day.score, state.best_score, mode)
        why = f"score {day.score:.4g} is {drop:.4g} worse than the best {state.best_score:.4g}"
        return _roll_back(state, day, policy, policy.rollback_factor, why, diverged=False)
    if cooling:
        return Continue(f"cooldown, {state.cooldown} more epoch(s)"), state

    wait = state.wait + 1
    if wait < policy.patience:
        return Continue(f"{wait} epoch(s) without improvement"), replace(state, wait=wait)
    rate = day.learning_rate * policy.plateau_factor
    why = f"{wait} epochs without improvement"
    if rate < policy.min_lr:
        return Stop("min_lr", f"{why}; learning rate {rate:.3g} would be below min_lr {policy.min_lr:.3g}"), state
    return (Plateau(rate, f"{why}; learning rate × {policy.plateau_factor:g}"),
            replace(state, wait=0, cooldown=policy.cooldown))


def manual_rollback(state: PolicyState) -> PolicyState:
    """The counters after a person's rollback (a nudge): patience starts over; no budget is used."""
    return replace(state, wait=0, cooldown=0)


def replay(
    history: Sequence[Day], policy: PolicySpec, start: PolicyState | None = None
) -> tuple[list[Decision], PolicyState]:
    """Every day's decision in order, and the counters after the last one.

    start: the counters before the first day (default: none; `PolicyState(first_loss=initial loss)`
    to judge divergence against the untrained model).
    """
    state = start if start is not None else PolicyState()
    decisions: list[Decision] = []
    for day in history:
        decision, state = step(state, day, policy)
        decisions.append(decision)
    return decisions, state


def decide(history: Sequence[Day], policy: PolicySpec, start: PolicyState | None = None) -> Decision:
    """The decision after the last day of `history` (oldest first; must not be empty)."""
    if not history:
        raise ValueError("history: no epochs to judge")
    return replay(history, policy, start)[0][-1]
