"""What a job's [search] may choose: sampler and scheduler names, and the rules of their options.

The job file's vocabulary, kept here so that reading a job needs nothing of the search code; the
samplers and schedulers (`caviar.search`) implement these names and guard their own arguments with
the very same checks, so a bad value reads the same wherever it is caught.
"""

from __future__ import annotations

from caviar.config.values import Check, above_one, fraction_closed, integer, positive

SAMPLERS = ("random", "grid", "sobol", "coarse_to_fine")
SCHEDULERS = ("fifo", "asha")
# [search] scheduler = "pbt" is no trial scheduler but a driver of its own (caviar.population, [pbt]).
POPULATION = "pbt"

SAMPLER_CHECKS: dict[str, Check] = {"grid_points": integer(2), "rounds": positive, "keep_fraction": fraction_closed,
                                    "shrink": fraction_closed}
SCHEDULER_CHECKS: dict[str, Check] = {"grace_period": positive, "reduction_factor": above_one}
