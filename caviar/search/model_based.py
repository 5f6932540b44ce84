"""Model-based samplers: Optuna's TPE, Gaussian-process and CMA-ES samplers, driven through its
ask-and-tell interface, reproducible in parallel.

Optuna's own parallel runs are not reproducible (optuna#3056): a trial is proposed from whatever has
finished by then. Here trial k is proposed from a fixed set of results, those of trials 0 .. k-lag-1,
and waits for them when needed (`ready`); its engine is seeded from the job seed and k. So the same job,
seed and lag give the same configurations whatever order trials finish in, and a resume (which tells
the finished trials' scores again, then replays the proposals in id order) gives them too. The first
`startup` trials are drawn at random (as each engine does before it has data) and never wait.

One in-memory Optuna study holds trials 0, 1, ... in id order: trial k is asked when its config is
needed (every lower id first), and the scores of trials below k - lag are told to the study, in id
order, just before trial k is asked; later ones stay RUNNING, which TPE's constant liar reads as "in
flight" (the same set, whatever has finished). A fresh engine seeded for trial k makes each proposal.

Each caviar dimension maps to Optuna's exact counterpart: uniform and log_uniform to a float (log) range,
one_minus_log_uniform to a log range over 1 - value, integer ranges to Optuna's int (log) ranges,
choice to a categorical over the choices' positions (so lists and mixed values need no conversion).
Conditional dimensions are asked define-by-run, parents first, only where active. A failed trial (NaN)
is told as failed; a pruned one as finished with its best score so far. Optuna is imported only when
such a sampler is built; a missing engine is a ValueError naming what to install.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import math
import warnings
from abc import abstractmethod
from typing import Any, ClassVar, Iterator

import numpy as np

from caviar.config.conditions import is_active
from caviar.config.space import (Choice, Fixed, IntLogUniform, IntUniform, LogUniform, OneMinusLogUniform,
                                 SearchSpace, Uniform)
from caviar.search.base import Sampler

_ENGINE_STREAM = 1  # second spawn_key element of trial k's engine seed (0 is its random config draws)


def check_engine(engine: str, needs: tuple[str, str] | None = None) -> None:
    """ValueError "search.sampler: ..." saying what to install when `engine` cannot run here: Optuna,
    and `needs` = (module, what to install) beyond it."""
    try:
        import optuna  # noqa: F401
    except ImportError:
        raise ValueError(f"search.sampler: {engine} runs on Optuna, which is not installed; "
                         "pip install 'caviar[optuna]' (or pip install optuna cmaes)") from None
    if needs is not None:
        try:
            importlib.import_module(needs[0])
        except ImportError:
            raise ValueError(f"search.sampler: {engine} needs {needs[1]}") from None


def engine_seed(job_seed: int, trial_id: int) -> int:
    """The seed of the engine that proposes trial `trial_id`, 0 <= seed < 2**32."""
    seq = np.random.SeedSequence(job_seed, spawn_key=(trial_id, _ENGINE_STREAM))
    return int(seq.generate_state(1, dtype=np.uint32)[0])


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Optuna without its per-trial log lines and its experimental-feature warnings; the caller's
    logging level is restored after."""
    import optuna

    level = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.simplefilter("ignore", FutureWarning)
            yield
    finally:
        optuna.logging.set_verbosity(level)


class ModelBasedSampler(Sampler):
    """An Optuna engine (a subclass names it), trial k proposed from the results of trials 0 .. k-lag-1.

    Args:
        lag: trials proposed without waiting for each other's results; None until the sweep knows its
            workers (`set_lag`): until then only the `startup` trials (and trial 0) are ready.
    """

    startup: ClassVar[int] = 10  # random trials before the model takes over (Optuna's default)
    needs: ClassVar[tuple[str, str] | None] = None  # (module, what to install) beyond Optuna

    def __init__(self, space: SearchSpace, *, n_trials: int, seed: int, mode: str = "max",
                 lag: int | None = None) -> None:
        super().__init__(space, n_trials=n_trials, seed=seed, mode=mode)
        check_engine(self.name, self.needs)
        import optuna

        self.lag = lag
        with _quiet():
            self._study = optuna.create_study(direction="maximize" if self.mode.sign > 0 else "minimize",
                                              sampler=optuna.samplers.RandomSampler(seed=seed))
        self._trials: list[Any] = []           # the study's trial of each id asked so far
        self._configs: list[dict[str, Any]] = []
        self._told_to_study = 0                # trials 0 .. this-1 have been told to the study
        self._prefix = 0                       # trials 0 .. this-1 all have a score

    @abstractmethod
    def _engine(self, seed: int) -> Any:
        """A fresh Optuna sampler seeded with `seed`."""

    def set_lag(self, lag: int) -> None:
        """Fix the lag (before any trial beyond the random start is proposed: it decides what they see)."""
        if self.lag is not None and lag != self.lag and len(self._configs) > self.startup:
            raise RuntimeError(f"the lag is {self.lag} and trials were proposed with it; cannot make it {lag}")
        self.lag = int(lag)

    def ready(self, trial_id: int) -> bool:
        self._check_id(trial_id)
        if trial_id < self.startup or trial_id < len(self._configs):
            return True
        while self._prefix in self._scores:
            self._prefix += 1
        return trial_id - (self.lag or 0) <= self._prefix

    def ask(self, trial_id: int) -> dict[str, Any]:
        if not self.ready(trial_id):
            raise RuntimeError(f"trial {trial_id} is not ready: it learns from trials 0 .. "
                               f"{trial_id - (self.lag or 0) - 1}, and trial {self._prefix} has no score yet")
        while len(self._configs) <= trial_id:
            self._propose(len(self._configs))
        return copy.deepcopy(self._configs[trial_id])

    def unit_point(self, trial_id: int) -> np.ndarray:
        return self.space.to_unit(self.ask(trial_id))

    # ---- one proposal ----------------------------------------------------------------------------
    def _propose(self, trial_id: int) -> None:
        """Ask the study for trial `trial_id` (the next id), after telling it what this trial may see."""
        import optuna

        seed = engine_seed(self.seed, trial_id)
        with _quiet():
            if trial_id < self.startup:
                self._study.sampler = optuna.samplers.RandomSampler(seed=seed)
            else:
                self._tell_study(trial_id - (self.lag or 0))
                self._study.sampler = self._engine(seed)
            trial = self._study.ask()
            config = self._draw(trial)
        self._trials.append(trial)
        self._configs.append(config)

    def _tell_study(self, below: int) -> None:
        """Tell the study the scores of trials up to `below` (excluded), in id order."""
        from optuna.trial import TrialState

        while self._told_to_study < below:
            k = self._told_to_study
            score = self._scores[k]
            if math.isnan(score):
                self._study.tell(self._trials[k], state=TrialState.FAIL)
            else:
                self._study.tell(self._trials[k], score)
            self._told_to_study += 1

    def _draw(self, trial: Any) -> dict[str, Any]:
        """The config of an Optuna trial, define-by-run: each active dimension, parents first."""
        drawn: dict[str, Any] = {}
        for name in self.space.order:
            if is_active(name, drawn, self.space.conditions):
                drawn[name] = suggest(trial, name, self.space.dimensions[name])
        return {name: drawn[name] for name in self.space.dimensions if name in drawn}


class TPESampler(ModelBasedSampler):
    """Optuna's default TPE (multivariate, constant liar): a density of good configurations against one
    of the rest. Grouped where dimensions are conditional: each set of dimensions that exist together
    gets its own joint model."""

    name = "tpe"

    def _engine(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.TPESampler(seed=seed, n_startup_trials=self.startup, multivariate=True,
                                          constant_liar=True, group=bool(self.space.conditions))


class GPSampler(ModelBasedSampler):
    """Optuna's Gaussian-process sampler (log expected improvement); runs on PyTorch."""

    name = "gp"
    needs = ("torch", "PyTorch (pip install torch)")

    def _engine(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=self.startup, warn_independent_sampling=False)


class CmaEsSampler(ModelBasedSampler):
    """Optuna's CMA-ES over the numeric dimensions (choices are drawn at random). It samples its first
    generation itself, so only trial 0 is drawn before any result."""

    name = "cmaes"
    startup = 1
    needs = ("cmaes", "cmaes (pip install cmaes)")

    def _engine(self, seed: int) -> Any:
        import optuna

        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=self.startup,
                                            warn_independent_sampling=False)


ENGINES: dict[str, type[ModelBasedSampler]] = {cls.name: cls for cls in (TPESampler, GPSampler, CmaEsSampler)}


def suggest(trial: Any, name: str, dim: Any) -> Any:
    """Dimension `dim`'s value for an Optuna trial: the distribution Optuna draws from is exactly the
    dimension's (a one_minus_log_uniform beta is drawn as 1 - beta on a log scale)."""
    if isinstance(dim, Fixed):
        return dim.from_unit(0.0)
    if isinstance(dim, Choice):
        return copy.deepcopy(dim.values[trial.suggest_categorical(name, list(range(len(dim.values))))])
    if isinstance(dim, (IntUniform, IntLogUniform)):
        return int(trial.suggest_int(name, dim.low, dim.high, log=isinstance(dim, IntLogUniform)))
    if isinstance(dim, OneMinusLogUniform):
        gap = trial.suggest_float(name, 1.0 - dim.high, 1.0 - dim.low, log=True)
        return min(max(1.0 - gap, dim.low), dim.high)
    if isinstance(dim, (Uniform, LogUniform)):
        value = trial.suggest_float(name, dim.low, dim.high, log=isinstance(dim, LogUniform))
        return min(max(float(value), dim.low), dim.high)
    raise TypeError(f"space.{name}: {type(dim).__name__} has no Optuna counterpart")
