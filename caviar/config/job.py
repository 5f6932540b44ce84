"""The job file: TOML -> validated, frozen dataclasses.

A job file has a top-level `name` and the tables [data], [model], [space], [search], [babysit] and [pbt]
(see jobs/digits.toml for a commented example). Every key is checked before anything runs, and a
mistake is one `ValueError` whose message starts with the field's path:

    search.trails: unknown key (did you mean 'trials'?)
    search.trials: expected a positive integer, got -3
    space.learning_rate: log_uniform needs 0 < low < high, got [0, 0.1]

`load_job(path, overrides)` reads a file, applies `--set section.key=value` overrides
(caviar/overrides.py) and validates; `Job.to_toml()` writes the job as run, with every default
filled in, so that loading it again gives an equal Job.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Sequence

import tomli_w

from caviar.config.choices import POPULATION, SAMPLER_CHECKS, SAMPLERS, SCHEDULER_CHECKS, SCHEDULERS
from caviar.config.conditions import split_when
from caviar.config.messages import field_path, one_line, reject_unknown, show_value
from caviar.config.overrides import apply_overrides
from caviar.config.pbt import PBT_CHECKS, PbtSpec, check_pbt_job
from caviar.config.space import SearchSpace, parse_dimension
from caviar.data import BUILTINS, FILE_TYPES, OPTIONS as DATA_OPTIONS
from caviar.importing import is_import_name
from caviar.store.vocabulary import MODES, validate_run_name
from caviar.config.values import (Check, Expected, above_one, checked, fraction_closed, non_negative, number, one_of,
                                  plain, positive, string)

SECTIONS = ("data", "model", "space", "search", "babysit", "pbt")
DEFAULT_TRAINER = "mlp"  # the built-in network's short name (caviar.nn lists the built-ins)
TASKS = ("classification", "regression")  # [model] task: what the target is (the data reads it too)
DEFAULT_TASK = "classification"
# A built-in's short name, or "package.module:ClassName"; which names exist is the registry's call.
_TRAINER = re.compile(r"[A-Za-z_][\w-]*|[A-Za-z_][\w.]*:[A-Za-z_]\w*")


@dataclass(frozen=True)
class DataSpec:
    """[data]: where the examples come from and how they are split."""

    source: str = "digits"  # built-in digits | spiral | blobs, a .parquet, .csv or .npz path, or "module:function"
    target: str = "label"  # the target column of a tabular file (or of a data function's DataFrame)
    valid_fraction: float = 0.2  # share of rows held out to score trials, in (0, 1)
    test_fraction: float = 0.0  # share held out for a final test, in [0, 1); 0: no test split
    seed: int = 0  # the shuffle before splitting: the same seed gives the same split
    options: dict[str, Any] = field(default_factory=dict)  # sizes of built-ins; a data function's keyword arguments

    def load(self, task: str = "classification") -> Any:
        """The Dataset this section describes for `task` (classification | regression): a built-in or
        a file (caviar.data.load_dataset), or what a data function returns (caviar.sources).
        ValueError "data.<field>: problem" on bad data."""
        from caviar.data import load_dataset
        from caviar.sources import is_function_source, load_function_source

        if is_function_source(self.source):
            return load_function_source(self, task)
        return load_dataset(self.source, target=self.target, valid_fraction=self.valid_fraction,
                            test_fraction=self.test_fraction, seed=self.seed, options=self.options, task=task)


@dataclass(frozen=True)
class SearchSpec:
    """[search]: caviar mode, many trials in parallel."""

    sampler: str = "random"  # random | grid | sobol | coarse_to_fine | tpe | gp | cmaes
    trials: int = 32  # configurations to train (grid may give fewer)
    scheduler: str = "asha"  # fifo: every trial runs all its epochs; asha: stop the hopeless early; pbt: [pbt]
    metric: str = "val_accuracy"  # the reported metric that scores a trial (its best epoch)
    mode: str = "max"  # max | min: whether a higher metric is better; left out, what the metric's name tells
    concurrency: int = 0  # trials in flight; 0: as many as the cluster fits (one per CPU by default)
    seed: int = 0  # the same seed samples the same configurations with the same trial seeds
    grid_points: int = 3  # grid: points per searched continuous dimension
    rounds: int = 3  # coarse_to_fine: sampling rounds, each around the best trials so far
    keep_fraction: float = 0.25  # coarse_to_fine: share of all trials so far that count as good
    shrink: float = 0.5  # coarse_to_fine: round r's boxes are at most shrink ** r wide
    lag: int | str = "auto"  # tpe, gp, cmaes: trial k learns from trials 0 .. k-lag-1 (auto: 2 x workers)
    grace_period: int | str = "auto"  # asha: epochs every trial gets before it can be stopped; auto: from epochs
    reduction_factor: float | str = "auto"  # asha: keep the top 1/reduction_factor at each rung; auto: from epochs
    smoothing: float = 0.0  # asha: judge rungs on the best of the smoothed curve (0: the raw best so far)
    max_retries: int = 2  # reruns of a trial whose worker crashed (not of one that raised)
    trial_timeout: float = 0.0  # seconds before a trial is stopped as failed; 0: no limit
    cpus_per_trial: float = 1.0  # Ray CPUs each trial's worker holds (its threads); a fraction shares a CPU
    gpus_per_trial: float = 0.0  # Ray GPUs each trial's worker holds; 0.5: two trials share one GPU


@dataclass(frozen=True)
class BabysitSpec:
    """[babysit]: panda mode, one model watched epoch by epoch."""

    epochs: int = 60  # the most epochs to train
    patience: int = 3  # epochs without improvement before the learning rate is lowered
    min_delta: float = 1e-4  # the least change of the metric that counts as an improvement
    plateau_factor: float = 0.5  # learning rate x this on a plateau, in (0, 1]
    cooldown: int = 2  # epochs after a change before the next plateau can be declared
    tolerance: float = 0.02  # a metric this much worse than the best triggers a rollback
    rollback_factor: float = 0.5  # learning rate x this after a rollback, in (0, 1]
    divergence_ratio: float = 3.0  # a train loss above this x the first epoch's has diverged
    divergence_factor: float = 0.1  # learning rate x this after a divergence, in (0, 1]
    min_lr: float = 1e-6  # stop once the learning rate would go below this
    max_rollbacks: int = 10  # stop after this many rollbacks
    target: float | None = None  # stop once the metric reaches this; None (or "none"): never
    seed: int = 0  # the model's seed: initial weights and data order
    keep_checkpoints: int = 3  # the best checkpoints kept on disk
    metric: str = "val_accuracy"  # in a job file: [search] metric unless set here
    mode: str = "max"  # in a job file: [search] mode unless set here


@dataclass(frozen=True)
class Job:
    """A validated job. `model` holds the fixed hyperparameters and "trainer"; treat it as read-only."""

    name: str
    data: DataSpec = field(default_factory=DataSpec)
    model: dict[str, Any] = field(default_factory=lambda: {"trainer": DEFAULT_TRAINER})
    space: SearchSpace = field(default_factory=lambda: SearchSpace({}))
    search: SearchSpec = field(default_factory=SearchSpec)
    babysit: BabysitSpec = field(default_factory=BabysitSpec)
    pbt: PbtSpec = field(default_factory=PbtSpec)

    @property
    def trainer(self) -> str:
        """A built-in trainer's short name ("mlp") or "package.module:ClassName"."""
        return self.model["trainer"]

    @property
    def task(self) -> str:
        """[model] task: "classification" (the default) or "regression"; it says what the data's target is."""
        return self.model.get("task", DEFAULT_TASK)

    def load_data(self) -> Any:
        """The Dataset of [data], its target read as the task needs (class labels, or numbers)."""
        return self.data.load(self.task)

    def config(self, values: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """The hyperparameters a trainer gets: [model] (without "trainer"), [space]'s fixed values,
        then `values` (e.g. a sampler's config) on top. A name in [space] overrides [model]."""
        config = {k: v for k, v in self.model.items() if k != "trainer"}
        config.update(self.space.fixed)
        config.update(values or {})
        return config

    def to_raw(self) -> dict[str, Any]:
        """The job as a plain TOML table, every default written out."""
        data, babysit = asdict(self.data), asdict(self.babysit)
        if not data["options"]:
            del data["options"]
        if babysit["target"] is None:  # TOML has no null: a missing key means none
            del babysit["target"]
        space = self.space.spec()
        raw = {"name": self.name, "data": data, "model": dict(self.model), "space": space,
               "search": asdict(self.search), "babysit": babysit}
        if self.search.scheduler == POPULATION or self.pbt != PbtSpec():   # [pbt] only where it says something
            raw["pbt"] = asdict(self.pbt)
        return plain(raw)

    def to_toml(self) -> str:
        """The job as run (overrides applied, defaults filled in); `parse_job` of it gives an equal Job."""
        header = "# The job as run by caviar: overrides applied, every default written out.\n"
        return header + tomli_w.dumps(self.to_raw())


def load_job(path: str | Path, overrides: Sequence[str] = ()) -> Job:
    """Read, override and validate the job file at `path`; its name defaults to the file's stem."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"job: no such file: {str(path)!r}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"job: {path}: cannot read it as UTF-8 text ({one_line(exc)})") from None
    return parse_job(_toml(text, f"job: {path}"), overrides, default_name=path.stem)


def _toml(text: str, where: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ValueError(f"{where}: invalid TOML: {one_line(exc)}") from None


def parse_job(source: str | Mapping[str, Any], overrides: Sequence[str] = (), *, default_name: str = "job") -> Job:
    """Validate a job given as TOML text or as an already parsed table, after `overrides`."""
    raw = apply_overrides(_toml(source, "job") if isinstance(source, str) else source, overrides)
    reject_unknown(raw, ("name",) + SECTIONS, (), what="top-level key or section")
    tables = {section: raw.get(section, {}) for section in SECTIONS}
    for section, table in tables.items():
        if not isinstance(table, dict):
            raise ValueError(f"{section}: expected a table ([{section}]), got {show_value(table)}")
    name = validate_run_name(raw.get("name", default_name), "name" if "name" in raw else "name (the file's name)")
    data = _data(tables["data"])
    model = _model(tables["model"])
    space = _space(tables["space"])
    search = _section(SearchSpec, tables["search"], "search", _SEARCH_CHECKS, _implied_mode(tables["search"], {}))
    if search.sampler == "coarse_to_fine" and search.rounds > search.trials:
        raise ValueError(f"search.rounds: coarse_to_fine needs at least one trial per round, got {search.rounds} "
                         f"rounds for {search.trials} trials")
    inherited = {"metric": search.metric, "mode": search.mode}
    babysit = _section(BabysitSpec, tables["babysit"], "babysit", _BABYSIT_CHECKS,
                       _implied_mode(tables["babysit"], inherited))
    for section, spec in (("search", search), ("babysit", babysit)):
        if (better := direction(spec.metric)) is not None and spec.mode != better:
            raise ValueError(f"{section}.mode: a {spec.metric} is better {'lower' if better == 'min' else 'higher'}, "
                             f"so mode must be {better!r}, got {spec.mode!r} (leave mode out: it follows the metric)")
    pbt = _section(PbtSpec, tables["pbt"], "pbt", PBT_CHECKS)
    if search.scheduler == POPULATION:
        check_pbt_job(pbt, space, search)
    return Job(name=name, data=data, model=model, space=space, search=search, babysit=babysit, pbt=pbt)


# Metrics whose better direction their name tells, by its last word (val_mse -> mse). A section's
# mode left out follows it (`metric = "val_mse"` alone is minimized, where the default, max, would
# pick the worst trial); a mode given against it is refused. Other names: max, or [search]'s mode.
DIRECTIONS = {"loss": "min", "mse": "min", "rmse": "min", "mae": "min", "error": "min",
              "accuracy": "max", "r2": "max", "auc": "max", "f1": "max"}


def direction(metric: Any) -> str | None:
    """"min" or "max" when the metric's name tells which is better, else None."""
    return DIRECTIONS.get(metric.rpartition("_")[2]) if isinstance(metric, str) else None


def _implied_mode(table: Mapping[str, Any], inherited: Mapping[str, Any]) -> dict[str, Any]:
    """A section's defaults: `inherited`, its mode replaced by what its metric's name tells."""
    better = direction(table.get("metric", inherited.get("metric", SearchSpec.metric)))
    return {**inherited, "mode": better} if better is not None else dict(inherited)


# --- sections ------------------------------------------------------------------------------------

def _section(cls: type, table: Mapping[str, Any], section: str, checks: Mapping[str, Check],
             defaults: Mapping[str, Any] | None = None) -> Any:
    """Build the dataclass `cls` from a table: unknown keys rejected, each value checked."""
    reject_unknown(table, [f.name for f in fields(cls)], (section,))
    values = {}
    for f in fields(cls):
        if f.name in table:
            value = table[f.name]
        elif defaults and f.name in defaults:
            value = defaults[f.name]
        else:
            value = f.default_factory() if callable(f.default_factory) else f.default
        values[f.name] = checked(f"{section}.{f.name}", value, checks[f.name])
    return cls(**values)


def _data(table: Mapping[str, Any]) -> DataSpec:
    data = _section(DataSpec, table, "data", _DATA_CHECKS)
    if data.valid_fraction + data.test_fraction >= 1:
        raise ValueError(f"data.test_fraction: valid_fraction + test_fraction must be below 1 to leave rows "
                         f"to train on, got {data.valid_fraction} + {data.test_fraction}")
    if data.source in BUILTINS:  # option values are checked by load_dataset; names can be checked now
        reject_unknown(data.options, tuple(DATA_OPTIONS[data.source]), ("data", "options"),
                       what=f"option of {data.source}", list_valid=True)
    elif data.options and not is_import_name(data.source):  # a data function's are its keyword arguments
        raise ValueError(f"data.options: a file takes no options, got {show_value(data.options)}")
    return data


def _model(table: Mapping[str, Any]) -> dict[str, Any]:
    # Which keys and values the trainer takes is checked against the trainer itself, when a job is
    # about to run (`caviar.trainers.check_job`): reading a job imports no trainer.
    trainer = checked("model.trainer", table.get("trainer", DEFAULT_TRAINER), _trainer)
    if "task" in table:
        checked("model.task", table["task"], one_of(TASKS))
    return {"trainer": trainer, **{k: v for k, v in table.items() if k != "trainer"}}


def _space(table: Mapping[str, Any]) -> SearchSpace:
    for key in ("trainer", "task"):
        if key in table:
            raise ValueError(f"space.{key}: the {key} cannot be searched; set it in [model]")
    dimensions, whens = {}, {}
    for name, spec in table.items():
        spec, when = split_when(spec)   # a conditional dimension: its scale, and when it exists
        if when is not None:
            whens[name] = when
        try:
            dimensions[name] = parse_dimension(spec)
        except ValueError as exc:
            raise ValueError(f"{field_path(('space', name))}: {one_line(exc)}") from None
    return SearchSpace(dimensions, whens)


# --- checks: the rules of each field (the samplers' and schedulers' own ones for their options) ----

_text = string("a non-empty string")
_trainer = string("a built-in trainer's name or 'package.module:ClassName'", _TRAINER.fullmatch)
_source = string(f"one of {', '.join(BUILTINS)} or a path to a {', '.join(FILE_TYPES)} file, or 'package.module:function'",
                 lambda text: text in BUILTINS or Path(text).suffix.lower() in FILE_TYPES or is_import_name(text),
                 BUILTINS)


def _table(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Expected("a table")
    return value


def _target(value: Any) -> float | None:
    """A number, or none (TOML has no null: the key left out, or the string "none")."""
    none = value is None or (isinstance(value, str) and value.lower() == "none")
    return None if none else number('a number or "none"', lambda v: True)(value)


_at_least_0 = number("a number >= 0", lambda v: v >= 0)


def _ray_quantity(value: float) -> bool:
    """Ray's rule for a task's resources: a fraction of one unit, or whole units (1.5 GPUs is refused)."""
    return value <= 1 or float(value).is_integer()

_DATA_CHECKS: dict[str, Check] = dict(
    source=_source, target=_text, seed=non_negative, options=_table,
    valid_fraction=number("a fraction in (0, 1)", lambda v: 0 < v < 1),
    test_fraction=number("a fraction in [0, 1)", lambda v: 0 <= v < 1),
)
_SEARCH_CHECKS: dict[str, Check] = dict(
    sampler=one_of(SAMPLERS), trials=positive, scheduler=one_of((*SCHEDULERS, POPULATION)), metric=_text,
    mode=one_of(MODES), concurrency=non_negative, seed=non_negative, **SAMPLER_CHECKS, **SCHEDULER_CHECKS,
    max_retries=non_negative, trial_timeout=number("a number of seconds >= 0 (0: no limit)", lambda v: v >= 0),
    cpus_per_trial=number("a number > 0, whole above 1 (as Ray allows)", lambda v: 0 < v and _ray_quantity(v)),
    gpus_per_trial=number("a number >= 0, whole above 1 (as Ray allows)", lambda v: 0 <= v and _ray_quantity(v)),
)
_BABYSIT_CHECKS: dict[str, Check] = dict(
    epochs=positive, patience=positive, min_delta=_at_least_0, plateau_factor=fraction_closed,
    cooldown=non_negative, tolerance=_at_least_0, rollback_factor=fraction_closed,
    divergence_ratio=above_one, divergence_factor=fraction_closed,
    min_lr=number("a number > 0", lambda v: v > 0), max_rollbacks=non_negative, target=_target,
    seed=non_negative, keep_checkpoints=positive, metric=_text, mode=one_of(MODES),
)
