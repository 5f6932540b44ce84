"""Search quality, measured (not a test): how good a configuration each sampler finds for the same budget.

Every method tunes the same built-in NumPy network on the same problem over the same wide space
(learning_rate log-uniform [1e-5, 1]; 1 - beta1 log-uniform [1e-4, 0.5]; batch_size one of 16..256;
l2 log-uniform [1e-7, 1e-1]) with 48 trials, trial k always training with caviar's training seed for
trial k, so that the methods differ only in which configurations they propose:

- `caviar:<sampler>` for each sampler named by `--caviar` (default: random, coarse_to_fine; a
  sampler added later, e.g. `--caviar random,coarse_to_fine,tpe`, is measured as soon as caviar has
  it), each once with the `fifo` scheduler and once with `asha` (`+asha`), the sampler and the
  scheduler built from a real job by caviar's own `build_sampler` / `build_scheduler`;
- `optuna:tpe` and `optuna:random`: Optuna's TPESampler and RandomSampler (their defaults, seeded),
  driven through ask-and-tell on the same trainer, every trial run to the end.

Trials run one after another in this process (no Ray): the benchmark is about search, not speed, and
ASHA decides as it would with one worker. Per run it records each trial's best validation accuracy
(the trial's score, as caviar scores it: a trial whose metric turns non-finite keeps its best) and the
test accuracy of the model at that best epoch (`test_fraction` holds out a test split no method sees).
The run's chosen configuration is its best-scored trial; its test accuracy is what a user would get.

Printed per problem, medians over seeds: the best validation score, the chosen configuration's test
accuracy, the epochs spent, and the same two scores at equal epochs (every method cut to the fewest
epochs any method of that seed spent: what each had found by then), with a paired Wilcoxon p-value
against Optuna's TPE (small p: the difference is not seed luck).

    python benchmarks/search_quality.py                       # the full size: 3 problems, 8 seeds
    python benchmarks/search_quality.py --seeds 3 --problems spiral --caviar random,coarse_to_fine,tpe

Needs Optuna (`pip install -e '.[bench]'`).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from caviar.config.choices import SAMPLERS
from caviar.config.job import Job, parse_job
from caviar.data import load_dataset
from caviar.search.samplers import trial_seed
from caviar.sweep.plan import build_sampler, build_scheduler
from caviar.trainers.registry import resolve_trainer

TRIALS = 48
SEEDS = 8
BATCH_SIZES = [16, 32, 64, 128, 256]
SPACE = {  # the wide space, as a caviar [space]
    "learning_rate": {"log_uniform": [1e-5, 1.0]},
    "beta1": {"one_minus_log_uniform": [0.5, 1 - 1e-4]},
    "batch_size": {"choice": BATCH_SIZES},
    "l2": {"log_uniform": [1e-7, 1e-1]},
}


@dataclass(frozen=True)
class Problem:
    source: str
    options: dict[str, Any]
    model: dict[str, Any]   # [model]: fixed values, epochs included


PROBLEMS = {
    "digits": Problem("digits", {}, {"hidden_layers": [64], "batch_norm": True, "optimizer": "adam", "epochs": 15}),
    "spiral": Problem("spiral", {"n_per_class": 500, "n_classes": 3, "noise": 0.4},
                      {"hidden_layers": [32, 32], "optimizer": "adam", "epochs": 30}),
    # Ours: overlapping clusters in 20-D without batch norm, where a rate too high diverges and l2 matters.
    "blobs": Problem("blobs", {"n_samples": 2000, "n_features": 20, "n_classes": 5, "spread": 2.5},
                     {"hidden_layers": [64, 64], "batch_norm": False, "optimizer": "adam", "epochs": 20}),
}


@dataclass
class Trial:
    """One trained configuration: its score and what it cost."""

    score: float          # best finite validation accuracy (NaN: none)
    test: float           # test accuracy at that epoch
    epochs: int


@dataclass
class Run:
    trials: list[Trial] = field(default_factory=list)

    def chosen(self, budget: float = math.inf) -> Trial | None:
        """The best-scored trial among those finished within `budget` epochs (first on ties)."""
        best, spent = None, 0
        for trial in self.trials:
            spent += trial.epochs
            if spent > budget:
                break
            if math.isfinite(trial.score) and (best is None or trial.score > best.score):
                best = trial
        return best

    @property
    def epochs(self) -> int:
        return sum(t.epochs for t in self.trials)


def train(trainer_class: type, config: dict[str, Any], data: Any, seed: int,
          judge: Callable[[list[float]], bool]) -> Trial:
    """Train one configuration epoch by epoch; `judge(curve)` after each epoch says whether it goes on."""
    trainer = trainer_class(config, data, seed)
    curve: list[float] = []
    best, test = math.nan, math.nan
    for _ in range(int(config["epochs"])):
        metrics = trainer.train_epoch()
        value = float(metrics["val_accuracy"])
        curve.append(value)
        if not all(math.isfinite(v) for v in metrics.values()):
            break     # caviar ends a trial here ("diverged") and keeps its best earlier epoch
        if not value <= best:   # NaN best: the first finite value
            best, test = value, float(trainer.evaluate(data.x_test, data.y_test)["accuracy"])
        if len(curve) < config["epochs"] and not judge(curve):
            break
    return Trial(best, test, len(curve))


def job_of(name: str, problem: Problem, sampler: str, scheduler: str, seed: int) -> Job:
    return parse_job({"name": name, "model": problem.model, "space": SPACE,
                      "search": {"sampler": sampler, "scheduler": scheduler, "trials": TRIALS, "seed": seed}})


def run_caviar(sampler_name: str, scheduler_name: str, problem: Problem, data: Any, seed: int) -> Run:
    trainer_class = resolve_trainer("mlp")
    job = job_of("bench", problem, sampler_name, scheduler_name, seed)
    sampler, scheduler = build_sampler(job), build_scheduler(job, trainer_class)
    run = Run()
    for k in range(sampler.n_trials):
        assert sampler.ready(k), f"{sampler_name}: trial {k} not ready after every earlier trial was told"
        config = job.config(sampler.ask(k))

        def judge(curve: list[float], k: int = k) -> bool:
            epoch = len(curve)
            return epoch not in scheduler.milestones or \
                scheduler.should_continue(k, epoch, scheduler.rung_score(curve))

        trial = train(trainer_class, config, data, trial_seed(seed, k), judge)
        sampler.tell(k, trial.score)
        run.trials.append(trial)
    return run


def run_optuna(kind: str, problem: Problem, data: Any, seed: int) -> Run:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=seed) if kind == "tpe" else optuna.samplers.RandomSampler(seed=seed)
    study = optuna.create_study(direction="maximize", sampler=sampler)
    trainer_class = resolve_trainer("mlp")
    base = job_of("bench", problem, "random", "fifo", seed).config()
    run = Run()
    for k in range(TRIALS):
        ask = study.ask()
        config = {**base,
                  "learning_rate": ask.suggest_float("learning_rate", 1e-5, 1.0, log=True),
                  "beta1": 1 - ask.suggest_float("one_minus_beta1", 1e-4, 0.5, log=True),
                  "batch_size": ask.suggest_categorical("batch_size", BATCH_SIZES),
                  "l2": ask.suggest_float("l2", 1e-7, 1e-1, log=True)}
        trial = train(trainer_class, config, data, trial_seed(seed, k), lambda curve: True)
        if math.isfinite(trial.score):
            study.tell(ask, trial.score)
        else:
            study.tell(ask, state=optuna.trial.TrialState.FAIL)
        run.trials.append(trial)
    return run


def methods(caviar_samplers: list[str]) -> dict[str, Callable[[Problem, Any, int], Run]]:
    out: dict[str, Callable[[Problem, Any, int], Run]] = {}
    for name in caviar_samplers:
        for scheduler in ("fifo", "asha"):
            label = f"caviar:{name}" + ("+asha" if scheduler == "asha" else "")
            out[label] = lambda p, d, s, n=name, sch=scheduler: run_caviar(n, sch, p, d, s)
    for kind in ("tpe", "random"):
        out[f"optuna:{kind}"] = lambda p, d, s, kind=kind: run_optuna(kind, p, d, s)
    return out


def wilcoxon_p(a: list[float], b: list[float]) -> float:
    """Two-sided paired Wilcoxon signed-rank p-value; 1.0 when every pair is equal."""
    from scipy.stats import wilcoxon

    diff = np.asarray(a) - np.asarray(b)
    if not np.any(diff[np.isfinite(diff)]):
        return 1.0
    return float(wilcoxon(a, b, nan_policy="omit").pvalue)


def summarize(problem: str, runs: dict[str, list[Run]]) -> None:
    """Print one table: medians over seeds, at 48 trials and at equal epochs, p against optuna:tpe."""
    n_seeds = len(next(iter(runs.values())))
    budgets = [min(r[i].epochs for r in runs.values()) for i in range(n_seeds)]

    def column(label: str, budget: bool, what: str) -> list[float]:
        out = []
        for i, run in enumerate(runs[label]):
            chosen = run.chosen(budgets[i] if budget else math.inf)
            out.append(math.nan if chosen is None else getattr(chosen, what))
        return out

    print(f"\n## {problem}: {TRIALS} trials, {n_seeds} seeds (equal epochs: {int(np.median(budgets))} per run, median)")
    print("| method | best val | p vs tpe | chosen test | p vs tpe | epochs | val, equal epochs | test, equal epochs |")
    print("|---|---|---|---|---|---|---|---|")
    reference = "optuna:tpe"
    for label in runs:
        val, test = column(label, False, "score"), column(label, False, "test")
        val_eq, test_eq = column(label, True, "score"), column(label, True, "test")
        p_val = wilcoxon_p(val, column(reference, False, "score")) if label != reference else math.nan
        p_test = wilcoxon_p(test, column(reference, False, "test")) if label != reference else math.nan
        epochs = np.median([run.epochs for run in runs[label]])
        print(f"| {label} | {np.nanmedian(val):.4f} | {p_val:.2f} | {np.nanmedian(test):.4f} | {p_test:.2f} | "
              f"{epochs:.0f} | {np.nanmedian(val_eq):.4f} | {np.nanmedian(test_eq):.4f} |")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=SEEDS, help=f"search seeds per method (default {SEEDS})")
    parser.add_argument("--problems", default=",".join(PROBLEMS), help=f"comma-separated, of {', '.join(PROBLEMS)}")
    parser.add_argument("--caviar", default="random,coarse_to_fine",
                        help="caviar samplers to measure, comma-separated (each with fifo and with asha)")
    parser.add_argument("--methods", default="", help="only these method labels, comma-separated (default: all)")
    parser.add_argument("--save", default="", help="also write every trial of every run to this JSON file")
    args = parser.parse_args(argv)
    samplers = [s for s in args.caviar.split(",") if s]
    problems = [p for p in args.problems.split(",") if p]
    for name in samplers:
        if name not in SAMPLERS:
            parser.error(f"--caviar: {name!r} is not a sampler of this caviar ({', '.join(SAMPLERS)})")
    for name in problems:
        if name not in PROBLEMS:
            parser.error(f"--problems: unknown problem {name!r} (valid: {', '.join(PROBLEMS)})")
    table = methods(samplers)
    if args.methods:
        wanted = args.methods.split(",")
        unknown = [m for m in wanted if m not in table]
        if unknown or "optuna:tpe" not in wanted:
            parser.error(f"--methods: need optuna:tpe and labels among {', '.join(table)}; got {args.methods!r}")
        table = {m: table[m] for m in wanted}
    saved: dict[str, Any] = {}
    for name in problems:
        problem = PROBLEMS[name]
        data = load_dataset(problem.source, valid_fraction=0.2, test_fraction=0.2, seed=0, options=problem.options)
        runs: dict[str, list[Run]] = {label: [] for label in table}
        started = time.perf_counter()
        for seed in range(args.seeds):   # seeds outside, methods inside: the machine's load hits all alike
            for label, method in table.items():
                runs[label].append(method(problem, data, seed))
            print(f"{name}: seed {seed} done, {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
            if args.save:   # after every seed: a long run cut short keeps what it measured
                saved[name] = {label: [[(t.score, t.test, t.epochs) for t in run.trials] for run in r]
                               for label, r in runs.items()}
                Path(args.save).write_text(json.dumps(saved))
        summarize(name, runs)
    return 0


if __name__ == "__main__":
    sys.exit(main())
