"""Trial schedulers: which trials keep training. Pure decision logic, no Ray.

A scheduler is asked at fixed epochs (its `milestones`) whether a trial goes on. Between milestones a
trial trains without asking, which lets the driver hand a worker a whole segment of epochs at once.

- `FIFO`: every trial runs all its epochs.
- `ASHA` (asynchronous successive halving, Li et al. 2018): rungs at `grace_period * reduction_factor**k`
  epochs. A trial reaching a rung continues only if its score is in the top `1 / reduction_factor`
  of the scores recorded at that rung so far; it never waits for other trials, so workers never
  idle. Which trials are pruned depends on the order results arrive, as in every asynchronous
  scheduler: sweeps with `fifo` repeat exactly, sweeps with `asha` repeat their configurations.
  Left "auto", the rungs come from the trials' epochs (`asha_defaults`): two rungs, the last at
  about a third of the epochs, so no trial is judged on its first epoch or two of a long run.

What a trial is judged on at a rung is `rung_score(curve)`: its best score so far, or with
`smoothing` s in (0, 1) the best so far of its exponentially smoothed curve (TensorBoard's
smoothing, debiased), so that one lucky epoch of a noisy trial does not carry it past a rung.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod
from typing import Sequence

from caviar.config.choices import AUTO, POPULATION, SCHEDULER_CHECKS, SCHEDULERS
from caviar.config.values import checked, one_of, positive
from caviar.store.vocabulary import MODES, Mode


def asha_defaults(max_epochs: int, grace_period: int | str = AUTO,
                  reduction_factor: float | str = AUTO) -> tuple[int, float]:
    """ASHA's (grace_period, reduction_factor) for trials of `max_epochs` epochs, each "auto" or given.

    An "auto" reduction factor is 3 (2 below 9 epochs, so that short trials still get two rungs); an
    "auto" grace period is ceil(max_epochs / reduction_factor**2), which puts the last of two rungs near
    a third of the epochs: 15 epochs -> rungs 2, 6; 30 -> 4, 12; 100 -> 12, 36. A fixed grace period of
    one or two epochs prunes on the noisiest part of a curve, and trials that learn slowly at first
    (a large batch takes few steps per epoch) with it.
    """
    factor = (3.0 if max_epochs >= 9 else 2.0) if reduction_factor == AUTO else float(reduction_factor)
    grace = max(1, math.ceil(max_epochs / factor**2 - 1e-9)) if grace_period == AUTO else int(grace_period)
    return grace, factor


class Scheduler(ABC):
    """Decides at milestone epochs whether a trial continues."""

    def __init__(self, max_epochs: int, mode: str = "max", smoothing: float = 0.0) -> None:
        # Guards with job.py's rules and messages: a job file's values were checked there already.
        self.max_epochs = checked("model.epochs", max_epochs, positive)
        self.mode = Mode(checked("search.mode", mode, one_of(MODES)))
        self.smoothing = checked("search.smoothing", smoothing, SCHEDULER_CHECKS["smoothing"])

    def rung_score(self, curve: Sequence[float]) -> float:
        """What a trial is judged on after the epochs of `curve` (its metric, epoch 1 first, in the
        metric's units): the best so far of the debiased exponential moving average with weight
        `smoothing` (0: the best value so far). Non-finite values are skipped; NaN when none is finite."""
        s, sign = self.smoothing, self.mode.sign
        average = weight = 0.0
        best = math.nan
        for value in curve:
            if value is None or not math.isfinite(value):
                continue
            average, weight = s * average + (1 - s) * value, s * weight + (1 - s)
            smoothed = average / weight
            if math.isnan(best) or sign * smoothed > sign * best:
                best = smoothed
        return best

    @property
    @abstractmethod
    def milestones(self) -> tuple[int, ...]:
        """Epochs (from 1, increasing) after which `should_continue` is asked; ends before max_epochs."""

    def next_stop(self, epoch: int) -> int:
        """The epoch a trial that has run `epoch` epochs should train up to before asking again."""
        for milestone in self.milestones:
            if milestone > epoch:
                return milestone
        return self.max_epochs

    @abstractmethod
    def should_continue(self, trial_id: int, epoch: int, score: float) -> bool:
        """Record `score` (the trial's best so far) at milestone `epoch`; False prunes the trial."""


class FIFO(Scheduler):
    """Every trial runs to the end."""

    @property
    def milestones(self) -> tuple[int, ...]:
        return ()

    def should_continue(self, trial_id: int, epoch: int, score: float) -> bool:
        return True


class ASHA(Scheduler):
    """Asynchronous successive halving.

    Args:
        max_epochs: epochs of a trial that is never pruned.
        grace_period: the first rung, in epochs: no trial is pruned before it; "auto": from max_epochs.
        reduction_factor: keep the top 1/reduction_factor at each rung; rungs grow by this factor;
            "auto": from max_epochs (see `asha_defaults`).
        mode: "max" or "min" for the score.
        smoothing: what rungs judge, see `Scheduler.rung_score`; in [0, 1).
    """

    def __init__(self, max_epochs: int, mode: str = "max", *, grace_period: int | str = AUTO,
                 reduction_factor: float | str = AUTO, smoothing: float = 0.0) -> None:
        super().__init__(max_epochs, mode, smoothing)
        rules = SCHEDULER_CHECKS
        grace_period, self.reduction_factor = asha_defaults(
            max_epochs, checked("search.grace_period", grace_period, rules["grace_period"]),
            checked("search.reduction_factor", reduction_factor, rules["reduction_factor"]))
        self.grace_period = grace_period
        rungs = []
        rung = float(grace_period)
        while math.ceil(rung) < max_epochs:
            if not rungs or math.ceil(rung) > rungs[-1]:
                rungs.append(math.ceil(rung))
            rung *= self.reduction_factor
        self._milestones = tuple(rungs)
        # Per rung, the scores recorded there, kept sorted (higher is better) so the cutoff is a
        # lookup: deciding costs O(log n) comparisons however many trials have finished.
        self._recorded: dict[int, list[float]] = {r: [] for r in rungs}
        # Per rung, each trial's recorded value: a trial that reaches a rung again (rerun after its
        # worker died) replaces its entry instead of counting twice.
        self._by_trial: dict[int, dict[int, float]] = {r: {} for r in rungs}

    @property
    def milestones(self) -> tuple[int, ...]:
        return self._milestones

    def should_continue(self, trial_id: int, epoch: int, score: float) -> bool:
        if epoch not in self._recorded:
            return True
        value = self.mode.sign * score
        if math.isnan(value):
            value = -math.inf
        recorded = self._recorded[epoch]
        previous = self._by_trial[epoch].get(trial_id)
        if previous is not None:
            del recorded[bisect.bisect_left(recorded, previous)]
        self._by_trial[epoch][trial_id] = value
        bisect.insort(recorded, value)
        # Keep the top ceil(n / rf) of the scores seen at this rung (this one included).
        keep = max(1, math.ceil(len(recorded) / self.reduction_factor))
        cutoff = recorded[len(recorded) - keep]
        return value >= cutoff


def make_scheduler(name: str, *, max_epochs: int, mode: str, grace_period: int | str = AUTO,
                   reduction_factor: float | str = AUTO, smoothing: float = 0.0) -> Scheduler:
    """The scheduler a job names ("fifo" or "asha"). A job may also name "pbt", which is no trial
    scheduler but a driver of its own (caviar.population): refused here, after the same check."""
    name = checked("search.scheduler", name, one_of((*SCHEDULERS, POPULATION)))
    if name == POPULATION:
        raise ValueError("search.scheduler: pbt trains a population (caviar.population), not one trial at a time")
    if name == "fifo":
        return FIFO(max_epochs, mode, smoothing)
    return ASHA(max_epochs, mode, grace_period=grace_period, reduction_factor=reduction_factor, smoothing=smoothing)
