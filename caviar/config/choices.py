"""What a job's [search] may choose: sampler and scheduler names, and the rules of their options.

The job file's vocabulary, kept here so that reading a job needs nothing of the search code; the
samplers and schedulers (`caviar.search`) implement these names and guard their own arguments with
the very same checks, so a bad value reads the same wherever it is caught.
"""

from __future__ import annotations

from caviar.config.values import Check, Expected, above_one, fraction_closed, integer, number, positive

SAMPLERS = ("random", "grid", "sobol", "coarse_to_fine")
SCHEDULERS = ("fifo", "asha")

SAMPLER_CHECKS: dict[str, Check] = {"grid_points": integer(2), "rounds": positive, "keep_fraction": fraction_closed,
                                    "shrink": fraction_closed}
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
