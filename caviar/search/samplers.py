"""Samplers: which configs a sweep tries, as points of the unit cube, all reproducible from one seed.

A sampler is asked for trial ids 0 .. n_trials-1 and told their scores. Trial k gets the same config
(and `trial_seed` the same training seed) for the same job seed whatever order Ray runs and finishes
trials in: every random draw of trial k comes from its own stream,
`SeedSequence(job_seed, spawn_key=(k, ...))`, never from a shared stream consumed in ask order.

- `random` (default): each trial an independent uniform point. Few hyperparameters matter and which
  ones is not known in advance, so every trial should try a new value of every one.
- `grid`: `grid_points` values per continuous dimension (log-spaced on log scales), every value of a
  choice, at most every value of an integer. Kept to show why random wins: 9 grid trials over two
  dimensions try only 3 values of the one that matters.
- `sobol`: scrambled Sobol points: like random, but more even coverage for the same number of trials.
- `coarse_to_fine`: rounds; each round samples boxes around the best trials of all earlier rounds,
  sized by how far apart the good trials lie. Round r+1 is `ready` only once every trial of round r
  has been told, so its boxes are fixed by the scores alone, not by which trials finished first.
- `tpe`, `gp`, `cmaes`: Optuna's model-based samplers (`caviar.search.model_based`, Optuna imported
  only when one is made); trial k learns from the scores of trials 0 .. k-lag-1.

In a space with conditional dimensions every sampler still draws the whole cube; a dimension its
parents make inactive is left out of the config, and the grid keeps each distinct config once.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from typing import Any, Mapping

import numpy as np

from caviar.config.choices import MODEL_BASED, SAMPLER_CHECKS, SAMPLERS
from caviar.config.messages import reject_unknown
from caviar.config.space import SearchSpace
from caviar.config.values import checked, non_negative, one_of, positive
from caviar.search.base import Sampler, trial_seed
from caviar.search.base import stream as _rng  # its old local name: the samplers below read as before
from caviar.store.vocabulary import MODES
# Option -> default. Every sampler accepts every option and ignores the ones it does not use, so a job
# can keep `rounds` while trying `sampler = "random"`. None means "the default".
OPTIONS: dict[str, Any] = {"grid_points": 3, "rounds": 3, "keep_fraction": 0.25, "shrink": 0.5, "lag": "auto"}
_MAX_GRID = 2**62
_MAX_CONDITIONAL_GRID = 2**18  # a conditional grid is enumerated once to drop repeats (about 10 s at most)

# spawn_key prefixes beyond any trial id, for the draws that belong to the whole sweep
_SWEEP = 2**32
_SOBOL_STREAM, _GRID_STREAM = 0, 1
# second spawn_key element of a trial's config draws; (k,) alone is its training seed (trial_seed)
_CONFIG_STREAM = 0
__all__ = ["OPTIONS", "Sampler", "RandomSampler", "SobolSampler", "GridSampler", "CoarseToFineSampler",
           "make_sampler", "trial_seed"]


class RandomSampler(Sampler):
    """Independent uniform points: trial k draws from its own stream."""

    name = "random"

    def unit_point(self, trial_id: int) -> np.ndarray:
        self._check_id(trial_id)
        return _rng(self.seed, trial_id, _CONFIG_STREAM).random(len(self.space))


class SobolSampler(Sampler):
    """Trial k is the k-th point of one scrambled Sobol sequence, scrambled from the job seed."""

    name = "sobol"

    def __init__(self, space: SearchSpace, *, n_trials: int, seed: int, mode: str = "max") -> None:
        super().__init__(space, n_trials=n_trials, seed=seed, mode=mode)
        d = len(space)
        if d == 0:
            self._points = np.zeros((n_trials, 0))
        else:
            # Imported here: scipy.stats takes most of a second to import, and every command that
            # reads a job imports this module (job.py takes SAMPLERS from it).
            from scipy.stats import qmc

            # A whole power of two keeps Sobol's balance (and scipy quiet); the first n_trials are the same
            # points `random(n_trials)` would give.
            sobol = qmc.Sobol(d, scramble=True, rng=_rng(seed, _SWEEP, _SOBOL_STREAM))
            self._points = sobol.random_base2(max(0, math.ceil(math.log2(n_trials))))[:n_trials]

    def unit_point(self, trial_id: int) -> np.ndarray:
        self._check_id(trial_id)
        return self._points[trial_id].copy()


class GridSampler(Sampler):
    """The grid in its fixed (itertools.product) order. If fewer trials are asked for than the grid has
    points, a seeded random subset of them, still in grid order, rather than only the first corner."""

    name = "grid"

    def __init__(self, space: SearchSpace, *, n_trials: int, seed: int, mode: str = "max",
                 grid_points: int = 3) -> None:
        axes = [space.dimensions[name].grid_units(grid_points) for name in space.names]
        size = math.prod(len(a) for a in axes)
        if size > (_MAX_CONDITIONAL_GRID if space.conditions else _MAX_GRID):
            raise ValueError(f"search.grid_points: a grid of {size} points is too large; use sampler = \"random\"")
        self._axes = [np.asarray(a, dtype=float) for a in axes]
        # A conditional space's grid holds each config once: a point where a dimension is inactive
        # stands for every value of that dimension, so only its first value is kept.
        points = self._distinct(space, size) if space.conditions else None
        size = size if points is None else len(points)
        super().__init__(space, n_trials=min(n_trials, size), seed=seed, mode=mode)
        self.grid_size = size
        if n_trials >= size:
            self._indices = np.arange(size, dtype=np.int64)
        else:
            chosen = _rng(seed, _SWEEP, _GRID_STREAM).choice(size, size=n_trials, replace=False)
            self._indices = np.sort(chosen).astype(np.int64)
        if points is not None:
            self._indices = points[self._indices]

    def _distinct(self, space: SearchSpace, size: int) -> np.ndarray:
        """Grid indices (increasing) of the points whose inactive dimensions sit at their first value."""
        conditional = [i for i, name in enumerate(space.names) if name in space.conditions]
        kept = []
        for index in range(size):
            point, digits = self._point(index)
            config = space.from_unit(point)
            if all(digits[i] == 0 for i in conditional if space.names[i] not in config):
                kept.append(index)
        return np.asarray(kept, dtype=np.int64)

    def _point(self, index: int) -> tuple[np.ndarray, list[int]]:
        """The unit point of grid index `index`, and its digit on each axis."""
        point, digits = np.empty(len(self._axes)), [0] * len(self._axes)
        for i in range(len(self._axes) - 1, -1, -1):  # last axis varies fastest, like itertools.product
            index, digits[i] = divmod(index, len(self._axes[i]))
            point[i] = self._axes[i][digits[i]]
        return point, digits

    def unit_point(self, trial_id: int) -> np.ndarray:
        self._check_id(trial_id)
        return self._point(int(self._indices[trial_id]))[0]


class CoarseToFineSampler(Sampler):
    """Rounds of trials: round 0 is uniform; round r > 0 draws in boxes around the best trials so far.

    Before round r, every trial of the earlier rounds has been told. The *good* trials are the best
    `keep_fraction` of all of them (failed ones never count while any trial has a score); the
    *centres* are the better half of the good ones, so a mediocre trial never becomes a centre
    because its round happened to be weak. A box's side, per dimension of the unit cube, is the spread
    (max - min) of the good trials there, at most `shrink ** r` and at least a quarter of that: a
    dimension where every good trial agrees is searched narrowly, one where good trials lie far apart
    (it hardly matters) stays wide. Boxes are clipped to the unit cube, so values never leave their
    bounds. Choice and integer dimensions shrink too, to neighbouring values.

    The trials are split across rounds as evenly as possible (earlier rounds get the remainder); a
    round's trials go round-robin over its centres, best first, and each draws uniformly in its box
    from its own stream.
    """

    name = "coarse_to_fine"
    MIN_SIDE = 0.25   # the narrowest box, as a share of the widest (shrink ** r): a floor against zooming on noise

    def __init__(self, space: SearchSpace, *, n_trials: int, seed: int, mode: str = "max",
                 rounds: int = 3, keep_fraction: float = 0.25, shrink: float = 0.5) -> None:
        super().__init__(space, n_trials=n_trials, seed=seed, mode=mode)
        self.rounds = min(rounds, n_trials)  # never an empty round
        self.keep_fraction = keep_fraction
        self.shrink = shrink
        base, extra = divmod(n_trials, self.rounds)
        sizes = [base + (1 if r < extra else 0) for r in range(self.rounds)]
        self.round_starts = tuple(int(s) for s in np.cumsum([0] + sizes[:-1]))  # first trial id of each round
        self.round_sizes = tuple(sizes)
        # round -> (centres (n_centres, n_dims), box sides (n_dims,)), fixed once computed
        self._boxes: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def round_of(self, trial_id: int) -> int:
        self._check_id(trial_id)
        return bisect_right(self.round_starts, trial_id) - 1

    def ready(self, trial_id: int) -> bool:
        r = self.round_of(trial_id)
        return r == 0 or all(k in self._scores for k in self._round_ids(r - 1))

    def _round_ids(self, r: int) -> range:
        return range(self.round_starts[r], self.round_starts[r] + self.round_sizes[r])

    def good(self, r: int) -> list[int]:
        """Trial ids of rounds < r that count as good for round r, best first (ties by id): the top
        `keep_fraction` of them, failed ones left out unless no trial has a score; rounds < r must be told."""
        ids = range(self.round_starts[r])
        sign = -self.mode.sign

        def worst_last(k: int) -> tuple[bool, float, int]:
            score = self._scores[k]
            return (math.isnan(score), 0.0 if math.isnan(score) else sign * score, k)

        ranked = sorted(ids, key=worst_last)
        # The small epsilon keeps 0.1 * 30 = 3.0000000000000004 from keeping 4.
        top = ranked[: max(1, math.ceil(self.keep_fraction * len(ranked) - 1e-9))]
        return [k for k in top if not math.isnan(self._scores[k])] or top[:1]

    def kept(self, r: int) -> list[int]:
        """The centres of round r + 1, best first: the better half of its good trials (at least one)."""
        good = self.good(r + 1)
        return good[: math.ceil(len(good) / 2)]

    def box(self, r: int) -> tuple[np.ndarray, np.ndarray]:
        """Round r's (centres (n_centres, n_dims), box sides (n_dims,)) in the unit cube; r >= 1, ready."""
        if r not in self._boxes:
            d = len(self.space)
            ids = self.good(r)
            good = np.array([self.unit_point(k) for k in ids]).reshape(len(ids), d)
            widest = self.shrink**r
            spread = np.ptp(good, axis=0) if len(good) > 1 else np.full(d, widest)
            sides = np.clip(spread, self.MIN_SIDE * widest, widest)
            self._boxes[r] = (good[: math.ceil(len(good) / 2)], sides)
        return self._boxes[r]

    def unit_point(self, trial_id: int) -> np.ndarray:
        r = self.round_of(trial_id)
        rng = _rng(self.seed, trial_id, _CONFIG_STREAM)
        d = len(self.space)
        if r == 0:
            return rng.random(d)
        if r not in self._boxes and not self.ready(trial_id):
            raise RuntimeError(f"trial {trial_id} is not ready: round {r - 1} is still running")
        centres, sides = self.box(r)
        centre = centres[(trial_id - self.round_starts[r]) % len(centres)]
        low = np.clip(centre - sides / 2, 0.0, 1.0)
        high = np.clip(centre + sides / 2, 0.0, 1.0)
        return np.minimum(low + rng.random(d) * (high - low), np.nextafter(1.0, 0.0))


def make_sampler(name: str, space: SearchSpace, *, n_trials: int, seed: int, mode: str = "max",
                 options: Mapping[str, Any] | None = None) -> Sampler:
    """The sampler a job names. `options` may hold grid_points, rounds, keep_fraction, shrink, lag (None or
    missing: the default); a sampler ignores the ones it does not use. A job file's values were checked
    by job.py already; these guards, with the same rules and messages, are for other callers:
    ValueError "search.<field>: ..." on a bad name, trial count, seed, mode or option."""
    name = checked("search.sampler", name, one_of(SAMPLERS))
    n_trials = checked("search.trials", n_trials, positive)
    seed = checked("search.seed", seed, non_negative)
    mode = checked("search.mode", mode, one_of(MODES))
    given = {k: v for k, v in (options or {}).items() if v is not None}
    reject_unknown(given, tuple(OPTIONS), ("search",), what="sampler option", list_valid=True)
    # Checked whatever the sampler, so a bad value is reported before it matters.
    opts = {key: checked(f"search.{key}", given.get(key, default), SAMPLER_CHECKS[key])
            for key, default in OPTIONS.items()}
    common = dict(n_trials=n_trials, seed=seed, mode=mode)
    if name in MODEL_BASED:   # Optuna is imported only now, and only if such a sampler is asked for
        from caviar.search.model_based import ENGINES

        return ENGINES[name](space, lag=None if opts["lag"] == "auto" else opts["lag"], **common)
    if name == "grid":
        return GridSampler(space, grid_points=opts["grid_points"], **common)
    if name == "coarse_to_fine":
        return CoarseToFineSampler(space, rounds=opts["rounds"], keep_fraction=opts["keep_fraction"],
                                   shrink=opts["shrink"], **common)
    return (SobolSampler if name == "sobol" else RandomSampler)(space, **common)
