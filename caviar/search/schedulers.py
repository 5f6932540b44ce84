"""Trial schedulers: which trials keep training. Pure decision logic, no Ray.

A scheduler is asked at fixed epochs (its `milestones`) whether a trial goes on. Between milestones a
trial trains without asking, which lets the driver hand a worker a whole segment of epochs at once.

- `FIFO`: every trial runs all its epochs.
- `ASHA` (asynchronous successive halving, Li et al. 2018): rungs at `grace_period * reduction_factor**k`
  epochs. A trial reaching a rung continues only if its score is in the top `1 / reduction_factor`
  of the scores recorded at that rung so far; it never waits for other trials, so workers never
  idle. Which trials are pruned depends on the order results arrive, as in every asynchronous
  scheduler: sweeps with `fifo` repeat exactly, sweeps with `asha` repeat their configurations.
"""

from __future__ import annotations

import bisect
import math
from abc import ABC, abstractmethod

from caviar.config.choices import POPULATION, SCHEDULER_CHECKS, SCHEDULERS
from caviar.config.values import checked, one_of, positive
from caviar.store.vocabulary import MODES, Mode



class Scheduler(ABC):
    """Decides at milestone epochs whether a trial continues."""

    def __init__(self, max_epochs: int, mode: str = "max") -> None:
        # Guards with job.py's rules and messages: a job file's values were checked there already.
        self.max_epochs = checked("model.epochs", max_epochs, positive)
        self.mode = Mode(checked("search.mode", mode, one_of(MODES)))

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
        grace_period: the first rung, in epochs: no trial is pruned before it.
        reduction_factor: keep the top 1/reduction_factor at each rung; rungs grow by this factor.
        mode: "max" or "min" for the score.
    """

    def __init__(self, max_epochs: int, mode: str = "max", *, grace_period: int = 1, reduction_factor: float = 3) -> None:
        super().__init__(max_epochs, mode)
        rules = SCHEDULER_CHECKS
        grace_period = checked("search.grace_period", grace_period, rules["grace_period"])
        self.reduction_factor = checked("search.reduction_factor", reduction_factor, rules["reduction_factor"])
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


def make_scheduler(name: str, *, max_epochs: int, mode: str, grace_period: int = 1, reduction_factor: float = 3) -> Scheduler:
    """The scheduler a job names ("fifo" or "asha"). A job may also name "pbt", which is no trial
    scheduler but a driver of its own (caviar.population): refused here, after the same check."""
    name = checked("search.scheduler", name, one_of((*SCHEDULERS, POPULATION)))
    if name == POPULATION:
        raise ValueError("search.scheduler: pbt trains a population (caviar.population), not one trial at a time")
    if name == "fifo":
        return FIFO(max_epochs, mode)
    return ASHA(max_epochs, mode, grace_period=grace_period, reduction_factor=reduction_factor)
