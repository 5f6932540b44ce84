"""PBT's decisions as pure functions of the population's scores: who copies whom, and what it tries next.

A member that diverges (NaN, or a train loss above `divergence_ratio` x its untrained loss) is
replaced at once instead of failing. Before the generation's last epoch its worker does it, that
epoch, from the fallback the driver handed it as the generation began (`fallback_source`,
`fallback_values`): the state the generation started from of the previous generation's best-ranked
healthy member, with values explored from that member's (one set per possible replacement, drawn
from `fallback_rng`, so a second divergence takes new values, the same ones in every run); before any
member has a score, its own initial state with the babysitter's cut for a divergence, the learning
rate x `divergence_factor` (again at each replacement), clipped to the space (`babysat_values`).

At the end of each generation (`interval` epochs of every member) `decide` ranks the members and says:

- diverged at the generation's last epoch: copies a member of the best `quantile`, drawn at random,
  whatever its rank (the next thing that happens: at once too), or the lone healthy member; when
  every member diverged, each starts over from its initial state with the babysitter's cut (its
  learning rate x `divergence_factor`), as `fresh` copies of itself;
- in the worst `quantile` (exploit): copies a member of the best `quantile`, drawn at random;
- every copy then explores (`explore`): each changeable value is resampled from its [space] dimension
  with probability `resample_probability`, else moved by a factor on its own scale (a log dimension
  multiplied, a beta's `1 - beta` multiplied, an integer rounded, a choice one step along its list),
  clipped to the space;
- the population's best ever, by the babysitter's rules (`caviar.babysit.policy`, `[babysit]`): a
  member's best epoch is a new best ever only when it beats the old by more than `min_delta`
  (`improved`); when the best member now scores more than `tolerance` worse than the best ever, the
  worst quantile copies the best ever's state instead of today's best, with the best ever's learning
  rate x `rollback_factor`, clipped to the space (explored values when the learning rate is not
  changeable), as the babysitter rolls back; at most `max_rollbacks` such generations over the run,
  then the worst exploit as usual.

Everything random comes from the generators passed in, which the driver seeds from the job seed and
the generation (and the member, for a fallback): the same job and seed give the same decisions,
whatever order the members finished in, on the driver or on Ray, resumed or not.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from caviar.babysit.policy import PolicySpec, improves, regressed
from caviar.config.space import Choice, Dimension, Fixed, IntUniform, OneMinusLogUniform
from caviar.store.vocabulary import Mode

POLICY_STREAM = 0xB7  # SeedSequence(job_seed, spawn_key=(generation, POLICY_STREAM)): a stream no trial uses
FALLBACK_STREAM = 0xD1  # spawn_key (generation, member, FALLBACK_STREAM): a member's fallback values


def policy_rng(job_seed: int, generation: int) -> np.random.Generator:
    """The generator of generation `generation`'s decisions: the same for the same job seed, always."""
    return np.random.default_rng(np.random.SeedSequence(job_seed, spawn_key=(generation, POLICY_STREAM)))


def fallback_rng(job_seed: int, generation: int, member: int) -> np.random.Generator:
    """The generator of `member`'s fallback values in generation `generation`: its own stream, so one
    member's draws never shift another's, nor the end-of-generation decisions'."""
    return np.random.default_rng(np.random.SeedSequence(job_seed, spawn_key=(generation, member, FALLBACK_STREAM)))


@dataclass(frozen=True)
class Copy:
    """Member `member` takes the state and values of `source` (of the best ever, with `best_ever`),
    then trains on with `new` (the values it explores; `old`: those it had)."""

    member: int
    source: int
    reason: str                        # "exploit" | "diverged" | "rollback"
    old: Mapping[str, Any] = field(default_factory=dict)
    new: Mapping[str, Any] = field(default_factory=dict)
    best_ever: bool = False
    fresh: bool = False                # starts over from its initial state (every member diverged)


@dataclass(frozen=True)
class Best:
    """The population's best score so far and whose state (member, at which epoch) it was."""

    score: float
    member: int
    epoch: int
    values: Mapping[str, Any] = field(default_factory=dict)   # its hyperparameters then


def quantile_size(n: int, quantile: float) -> int:
    """How many members are in the best (and the worst) `quantile` of `n`: ceil(n * q), at most n // 2
    (so that no member is both), at least 1 once there are two."""
    return min(n // 2, max(1, math.ceil(n * quantile))) if n >= 2 else 0


def ranking(scores: Sequence[float], diverged: Sequence[bool], mode: str) -> list[int]:
    """Member ids best first: finite scores by the mode (ties: the lower id first), then the rest."""
    sign = Mode(mode).sign
    healthy = [i for i, s in enumerate(scores) if math.isfinite(s) and not diverged[i]]
    healthy.sort(key=lambda i: (-sign * scores[i], i))
    return healthy + [i for i in range(len(scores)) if i not in set(healthy)]


def diverged(metrics: Mapping[str, float], metric: str, first_loss: float | None, ratio: float) -> str | None:
    """Why an epoch's metrics count as diverged, or None: a non-finite score or train loss, or a train
    loss above `ratio` x `first_loss` (the untrained model's loss)."""
    score, loss = metrics.get(metric, math.nan), metrics.get("train_loss")
    if not math.isfinite(score):
        return f"non-finite {metric} {score:.4g}"
    if loss is None:
        return None
    if not math.isfinite(loss):
        return f"non-finite train_loss {loss:.4g}"
    if first_loss is not None and math.isfinite(first_loss) and loss > ratio * first_loss:
        return f"train_loss {loss:.4g} above {ratio:g} x the initial loss {first_loss:.4g}"
    return None


def perturb(dim: Dimension, value: Any, factor: float) -> Any:
    """`value` moved by `factor` on `dim`'s own scale, clipped to the dimension."""
    if isinstance(dim, Fixed):
        return value
    if isinstance(dim, Choice):   # no scale: one step along the list, up for a factor above 1
        values = list(dim.values)
        index = next((i for i, v in enumerate(values) if v == value and type(v) is type(value)), 0)
        step = 1 if factor > 1 else -1 if factor < 1 else 0
        return values[min(max(index + step, 0), len(values) - 1)]
    if isinstance(dim, OneMinusLogUniform):   # a beta: what matters is 1 - beta, on a log scale
        moved = 1.0 - (1.0 - float(value)) * factor
    else:
        moved = float(value) * factor
    moved = min(max(moved, dim.low), dim.high)
    if isinstance(dim, IntUniform):
        whole = int(round(moved))
        if whole == value and factor != 1:   # a small integer would never move by rounding alone
            whole += 1 if factor > 1 else -1
        return int(min(max(whole, dim.low), dim.high))
    return moved


def explore(values: Mapping[str, Any], dims: Mapping[str, Dimension], names: Sequence[str],
            factors: Sequence[float], resample_probability: float, rng: np.random.Generator) -> dict[str, Any]:
    """New values of `names` (each a dimension of `dims`), every other value kept: each resampled with
    probability `resample_probability`, else perturbed by one of `factors`. Two draws per name, always,
    so that one name's outcome never shifts the next one's randomness."""
    new = dict(values)
    for name in names:
        resample, u = rng.random(), rng.random()
        if resample < resample_probability:
            new[name] = dims[name].from_unit(u)
        else:
            new[name] = perturb(dims[name], values[name], factors[min(int(u * len(factors)), len(factors) - 1)])
    return new


def babysat_values(values: Mapping[str, Any], dims: Mapping[str, Dimension], names: Sequence[str], factor: float, *,
                   factors: Sequence[float], resample_probability: float, rng: np.random.Generator) -> dict[str, Any]:
    """The babysitter's cut applied to `values`: the learning rate x `factor`, clipped to its dimension,
    when it is one of `names`; else (nothing to cut) `names` explored."""
    if "learning_rate" in names:
        return {**values, "learning_rate": perturb(dims["learning_rate"], values["learning_rate"], factor)}
    return explore(values, dims, names, factors, resample_probability, rng)


def fallback_values(own: Mapping[str, Any], source: Mapping[str, Any] | None, count: int, *,
                    dims: Mapping[str, Dimension], names: Sequence[str], factors: Sequence[float],
                    resample_probability: float, divergence_factor: float,
                    rng: np.random.Generator) -> list[dict[str, Any]]:
    """The values of a member's `count` possible replacements in one generation, in order.

    source: the fallback member's values: each replacement explores them afresh. None (no member has
    a score yet): the babysitter's cut of `own`, again at each replacement (`babysat_values` with
    `divergence_factor`: the rate x 0.1, then x 0.01, ...)."""
    values, current = [], dict(own)
    for _ in range(count):
        if source is not None:
            values.append(explore(source, dims, names, factors, resample_probability, rng))
        else:
            current = babysat_values(current, dims, names, divergence_factor, factors=factors,
                                     resample_probability=resample_probability, rng=rng)
            values.append(current)
    return values


@dataclass(frozen=True)
class Generation:
    """What `decide` needs of a generation: each member's score, whether it diverged, its values."""

    scores: Sequence[float]
    diverged: Sequence[bool]
    values: Sequence[Mapping[str, Any]]


def fallback_source(gen: Generation, mode: str) -> int | None:
    """The member whose state a member that diverges in the next generation goes on from: the
    best-ranked healthy one of `gen` (None: no member has a finite score yet)."""
    best = next(iter(ranking(gen.scores, gen.diverged, mode)), None)
    return best if best is not None and math.isfinite(gen.scores[best]) and not gen.diverged[best] else None


def decide(gen: Generation, *, mode: str, quantile: float, names: Sequence[str], dims: Mapping[str, Dimension],
           factors: Sequence[float], resample_probability: float, rng: np.random.Generator,
           best_ever: Best | None = None, babysit: PolicySpec | None = None, rollbacks: int = 0) -> list[Copy]:
    """The copies of one generation's end, in member order (see the module's docstring).

    babysit: the `[babysit]` rules for a rollback (tolerance, rollback_factor, max_rollbacks; None:
    never roll back); rollbacks: the generations that rolled back so far."""
    n = len(gen.scores)
    order = ranking(gen.scores, gen.diverged, mode)
    healthy = [i for i in order if math.isfinite(gen.scores[i]) and not gen.diverged[i]]
    if not healthy:   # nothing to copy from: each starts over, as the babysitter would, with a cut rate
        factor = babysit.divergence_factor if babysit is not None else 1.0
        return [Copy(m, m, "diverged", old=dict(gen.values[m]), fresh=True,
                     new=babysat_values(gen.values[m], dims, names, factor, factors=factors,
                                        resample_probability=resample_probability, rng=rng)) for m in range(n)]
    k = quantile_size(len(healthy), quantile)
    top, bottom = healthy[:k], healthy[len(healthy) - k:] if k else []
    behind = (best_ever is not None and babysit is not None and rollbacks < babysit.max_rollbacks
              and regressed(gen.scores[healthy[0]], best_ever.score, mode, babysit.tolerance))
    sources: dict[int, tuple[int, str, bool]] = {}
    donors = top or healthy[:1]   # a lone healthy member has no quantile: the diverged copy it
    for member in range(n):   # drawn from the best quantile, as an exploit: all of them copying the one
        if member not in healthy:   # best would collapse the population onto one lineage at once
            sources[member] = (donors[int(rng.integers(len(donors)))], "diverged", False)
    for member in bottom:
        if behind:
            sources[member] = (best_ever.member, "rollback", True)
        else:
            sources[member] = (top[int(rng.integers(len(top)))], "exploit", False)
    copies = []
    for member in sorted(sources):
        source, reason, from_best = sources[member]
        if from_best:   # the babysitter's rollback: its best state, a smaller rate
            new = babysat_values(best_ever.values, dims, names, babysit.rollback_factor, factors=factors,
                                 resample_probability=resample_probability, rng=rng)
        else:
            new = explore(gen.values[source], dims, names, factors, resample_probability, rng)
        copies.append(Copy(member, source, reason, old=dict(gen.values[member]), new=new, best_ever=from_best))
    return copies


def improved(best: Best | None, gen: Generation, mode: str, epoch: int | Sequence[int],
             min_delta: float = 0.0) -> Best | None:
    """The new best ever when a member beats `best` this generation by more than `min_delta` (the
    babysitter's `improves`), else None. `gen.scores`: each member's best epoch of the generation,
    reached at `epoch` (one for all, or one per member), so the best ever is the best epoch any member
    reached, as a trial's score is."""
    scores, values = gen.scores, gen.values
    order = ranking(scores, gen.diverged, mode)
    top = order[0] if order else None
    if top is None or gen.diverged[top] or not math.isfinite(scores[top]) \
            or not improves(scores[top], None if best is None else best.score, mode, min_delta):
        return None
    return Best(float(scores[top]), top, epoch if isinstance(epoch, int) else int(epoch[top]), dict(values[top]))
