"""A population's plan from its job and trainer: what explore may change, the members, the generations.

Checked before anything runs, each refusal one line naming the field: a [pbt] mutable name the
trainer cannot change between epochs, a population with nothing to explore, a sampler that cannot
draw every member at once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from caviar.config.space import Fixed
from caviar.search.samplers import Sampler, trial_seed

def mutable_names(job: Any, trainer: type) -> list[str]:
    """The hyperparameters explore changes: [pbt] mutable, else every searched [space] name the trainer
    lists as `mutable`. ValueError naming pbt.mutable when the trainer cannot change one."""
    declared = getattr(trainer, "mutable", None)
    searched = [n for n, d in job.space.dimensions.items() if not isinstance(d, Fixed)]
    names = list(job.pbt.mutable)
    if declared is not None:
        for name in names:
            if name not in declared:
                raise ValueError(f"pbt.mutable: the {job.trainer} trainer cannot change {name!r} during training "
                                 f"(it can change: {', '.join(declared) or 'nothing'})")
    elif not names:
        raise ValueError(f"pbt.mutable: the {job.trainer} trainer declares no `mutable` hyperparameters; list "
                         "those its set_hyperparameters takes (e.g. mutable = [\"learning_rate\"])")
    if not names:
        names = [n for n in searched if n in declared]
    for name in names:
        if name not in searched:
            raise ValueError(f"pbt.mutable: {name!r} is fixed in [space]; explore needs a range or a choice")
    if not names:
        raise ValueError(f"pbt.mutable: nothing to explore: no searched [space] name is one the {job.trainer} "
                         f"trainer can change during training ({', '.join(declared or ()) or 'none'})")
    return names


@dataclass(frozen=True)
class Plan:
    """The population: `size` members, their first values and seeds, `epochs` each, decided every
    `interval` epochs (the last generation may be shorter)."""

    size: int
    values: list[dict[str, Any]]
    seeds: list[int]
    names: list[str]
    epochs: int
    interval: int

    @property
    def generations(self) -> int:
        return math.ceil(self.epochs / self.interval)

    def until(self, generation: int) -> int:
        """The epoch generation `generation` (from 0) trains up to."""
        return min((generation + 1) * self.interval, self.epochs)


def make_plan(job: Any, trainer: type, sampler: Sampler) -> Plan:
    """The population of `job`: `[search] trials` members drawn by its sampler (all at once)."""
    from caviar.sweep.plan import max_epochs

    names = mutable_names(job, trainer)
    size = sampler.n_trials
    if not all(sampler.ready(member) for member in range(size)):
        raise ValueError(f"search.sampler: pbt draws the whole population at once; {job.search.sampler} cannot")
    drawn = [sampler.ask(member) for member in range(size)]
    values = [{name: config[name] for name in job.space.names} for config in drawn]
    seeds = [trial_seed(job.search.seed, member) for member in range(size)]
    return Plan(size, values, seeds, names, max_epochs(job, trainer), job.pbt.interval)
