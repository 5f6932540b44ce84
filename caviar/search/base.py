"""What every sampler is: configs for trial ids 0 .. n_trials-1, told each trial's score, and the seeds
they draw from.

Trial k's draws come from its own stream, `SeedSequence(job_seed, spawn_key=(k, ...))`, never from a
shared stream consumed in ask order, so trial k gets the same config (and `trial_seed` the same training
seed) whatever order Ray runs and finishes trials in. The samplers themselves live in `samplers.py`
(the unit cube) and `model_based.py` (Optuna's engines).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from caviar.config.space import SearchSpace
from caviar.store.vocabulary import Mode


def trial_seed(job_seed: int, trial_id: int) -> int:
    """The training seed of trial `trial_id`, 0 <= seed < 2**31, from SeedSequence(job_seed, spawn_key=(trial_id,))."""
    state = np.random.SeedSequence(job_seed, spawn_key=(trial_id,)).generate_state(1, dtype=np.uint32)
    return int(state[0]) >> 1


def stream(job_seed: int, *key: int) -> np.random.Generator:
    """The generator of the draws named by `key` (a trial id, then which of its draws) under `job_seed`."""
    return np.random.default_rng(np.random.SeedSequence(job_seed, spawn_key=key))


class Sampler(ABC):
    """Configs for trial ids 0 .. n_trials-1. Subclasses give `unit_point`; scales live in the space."""

    name: str = ""

    def __init__(self, space: SearchSpace, *, n_trials: int, seed: int, mode: str = "max") -> None:
        self.space = space
        self.n_trials = n_trials  # how many trials it will give (grid may give fewer than asked)
        self.seed = seed
        self.mode = Mode(mode)
        self._scores: dict[int, float] = {}

    @abstractmethod
    def unit_point(self, trial_id: int) -> np.ndarray:
        """Trial `trial_id`'s point of the unit cube, shape (len(space),); only called when ready."""

    def ready(self, trial_id: int) -> bool:
        """Whether `ask(trial_id)` can be answered now (coarse_to_fine waits for the previous round)."""
        self._check_id(trial_id)
        return True

    def ask(self, trial_id: int) -> dict[str, Any]:
        """The config of a trial: searched and fixed values. The same for the same seed, in any order."""
        if not self.ready(trial_id):
            raise RuntimeError(f"trial {trial_id} is not ready: round {self.round_of(trial_id) - 1} is still running")
        return self.space.from_unit(self.unit_point(trial_id))

    def tell(self, trial_id: int, score: float) -> None:
        """A trial's score; NaN for a failed trial (worst whatever the mode). Telling twice is an error
        unless the score is the same, since a later round may already depend on the first one."""
        self._check_id(trial_id)
        score = float(score)
        old = self._scores.get(trial_id)
        if old is not None and not (old == score or (math.isnan(old) and math.isnan(score))):
            raise RuntimeError(f"trial {trial_id} was already told score {old}, now {score}")
        self._scores[trial_id] = score

    def round_of(self, trial_id: int) -> int:
        """The round a trial belongs to: 0 except for coarse_to_fine."""
        self._check_id(trial_id)
        return 0

    def _check_id(self, trial_id: int) -> None:
        if not 0 <= trial_id < self.n_trials:
            raise IndexError(f"trial id {trial_id} is outside 0..{self.n_trials - 1} of this {self.name} sampler")

    def __repr__(self) -> str:
        return f"{type(self).__name__}(n_trials={self.n_trials}, seed={self.seed}, dims={list(self.space.names)})"
