"""[pbt]: population-based training (`[search] scheduler = "pbt"`), its keys, defaults and rules.

The defaults are those of Jaderberg et al. (2017) and Ray Tune: the worst quarter copies the best
quarter, a copied value is resampled with probability 0.25, else multiplied by 0.8 or 1.2. Which
hyperparameters may change is checked against the trainer when the job is about to run
(`caviar.population.plan`): reading a job imports no trainer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from caviar.config.values import Check, Expected, is_number, number, positive

DEFAULT_FACTORS = (0.8, 1.2)


@dataclass(frozen=True)
class PbtSpec:
    """[pbt]: how often and how a population exploits and explores."""

    interval: int = 4  # epochs each member trains between two decisions (a generation)
    quantile: float = 0.25  # the worst this share copies the best this share, in (0, 0.5]
    resample_probability: float = 0.25  # an explored value is drawn afresh from [space] this often
    factors: list[float] = field(default_factory=lambda: list(DEFAULT_FACTORS))  # else x one of these
    mutable: list[str] = field(default_factory=list)  # what explore may change; []: every [space] name the trainer can change


def _factors(value: Any) -> list[float]:
    if not isinstance(value, list) or not value or not all(is_number(v) and 0 < v < float("inf") for v in value):
        raise Expected("a non-empty list of numbers > 0 (e.g. [0.8, 1.2])")
    return [float(v) for v in value]


def _names(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise Expected("a list of hyperparameter names (e.g. [\"learning_rate\"])")
    if len(set(value)) != len(value):
        raise Expected("a list of distinct hyperparameter names")
    return list(value)


PBT_CHECKS: dict[str, Check] = dict(
    interval=positive,
    quantile=number("a fraction in (0, 0.5]", lambda v: 0 < v <= 0.5),
    resample_probability=number("a probability in [0, 1]", lambda v: 0 <= v <= 1),
    factors=_factors,
    mutable=_names,
)


def check_pbt_job(pbt: PbtSpec, space: Any, search: Any) -> None:
    """The rules of a pbt job that need only the job: its space holds what explore changes, the
    population is drawn at once, and every member trains the same epochs. ValueError naming the field."""
    for name in pbt.mutable:
        if name not in space.names:
            raise ValueError(f"pbt.mutable: {name!r} is not searched in [space]; explore changes values within "
                             f"the space (searched: {', '.join(space.names) or 'none'})")
    if search.sampler == "coarse_to_fine":
        raise ValueError("search.sampler: pbt draws the whole population at once; coarse_to_fine needs rounds "
                         "(use random, sobol or grid)")
    if "epochs" in space.names:
        raise ValueError("space.epochs: every member of a pbt population trains the same epochs; set it in [model]")
