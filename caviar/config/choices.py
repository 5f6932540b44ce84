"""What a job's [search] may choose: sampler and scheduler names, and the rules of their options.

The job file's vocabulary, kept here so that reading a job needs nothing of the search code; the
samplers and schedulers (`caviar.search`) implement these names and guard their own arguments with
the very same checks, so a bad value reads the same wherever it is caught.
"""

from __future__ import annotations

from typing import Any

from caviar.config.values import Check, Expected, above_one, fraction_closed, integer, non_negative, number, positive

SAMPLERS = ("random", "grid", "sobol", "coarse_to_fine", "tpe", "gp", "cmaes")
MODEL_BASED = ("tpe", "gp", "cmaes")  # Optuna's engines (caviar.search.model_based); the rest draw in the unit cube
SCHEDULERS = ("fifo", "asha")
# [search] scheduler = "pbt" is no trial scheduler but a driver of its own (caviar.population, [pbt]).
POPULATION = "pbt"

# One line per sampler for `--dry-run`: what it does and when to pick it (the README says more).
SAMPLER_ABOUT = {
    "random": "independent draws on each dimension's scale; every trial tries new values of every "
              "dimension and none waits for another: the safe default",
    "grid": "every combination of grid_points values per dimension; for one or two dimensions, or to see "
            "why random does better",
    "sobol": "random made even (scrambled Sobol points): fewer gaps and clumps for the same budget",
    "coarse_to_fine": "rounds, each drawn in boxes around the best of the last; each round waits for the last",
    "tpe": "Optuna's TPE learns from the scores so far where good trials lie; for budgets of about 30 "
           "trials and more, choices and conditional dimensions",
    "gp": "Optuna's Gaussian process: the most from few trials on a few continuous dimensions; a "
          "proposal costs the driver up to seconds",
    "cmaes": "Optuna's CMA-ES moves a Gaussian over continuous dimensions (choices drawn at random); for "
             "hundreds of trials",
}


def _lag(value: Any) -> int | str:
    """"auto" (twice the sweep's workers, fixed when it first runs) or a whole number of trials."""
    if value == "auto":
        return value
    try:
        return non_negative(value)
    except Expected:
        raise Expected('"auto" or an integer >= 0') from None


SAMPLER_CHECKS: dict[str, Check] = {"grid_points": integer(2), "rounds": positive, "keep_fraction": fraction_closed,
                                    "shrink": fraction_closed, "lag": _lag}
AUTO = "auto"  # an ASHA setting left to be chosen from the trials' epochs


def auto_or(check: Check) -> Check:
    """"auto", or a value `check` accepts."""
    def auto_or_check(value: object) -> object:
        if value == AUTO:
            return AUTO
        try:
            return check(value)
        except Expected as exc:
            raise Expected(f'"{AUTO}" or {exc.what}') from None

    return auto_or_check


SCHEDULER_CHECKS: dict[str, Check] = {"grace_period": auto_or(positive), "reduction_factor": auto_or(above_one),
                                      "smoothing": number("a number in [0, 1)", lambda v: 0 <= v < 1)}
