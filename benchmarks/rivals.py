"""The rivals every speed benchmark runs the same trials on: Ray Tune, Optuna (`n_jobs`), and the
sequential floor.

Each takes the benchmark's own `train(config, data, seed, report=...)` so that the rivals train the
very model caviar trains, and returns the wall seconds of its whole run after its set-up.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, Callable, Sequence

Train = Callable[..., list]   # train(config, data, seed, report=fn(epoch, metrics)) -> each epoch's metrics


def sequential_wall(train: Train, configs: Sequence[dict], seeds: Sequence[int], data: Any) -> float:
    """The floor: every trial, one after the other, in this process."""
    start = time.perf_counter()
    for config, seed in zip(configs, seeds):
        train(config, data, seed)
    return time.perf_counter() - start


def tune_wall(train: Train, configs: Sequence[dict], seeds: Sequence[int], data: Any, cores: int, *,
              one_blas_thread: bool = False) -> float:
    """Ray Tune: one trial per config (a grid over their indices), `cores` at a time, each
    reporting every epoch; on the Ray this process is connected to."""
    from ray import tune

    def trainable(config, data=None):
        index = config["index"]
        if not one_blas_thread:
            train(configs[index], data, seeds[index], report=lambda e, m: tune.report(m))
            return
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            train(configs[index], data, seeds[index], report=lambda e, m: tune.report(m))

    with tempfile.TemporaryDirectory() as storage:
        tuner = tune.Tuner(
            tune.with_resources(tune.with_parameters(trainable, data=data), {"cpu": 1}),
            param_space={"index": tune.grid_search(list(range(len(configs))))},
            tune_config=tune.TuneConfig(max_concurrent_trials=cores),
            run_config=tune.RunConfig(storage_path=storage, verbose=0),
        )
        start = time.perf_counter()
        tuner.fit()
        return time.perf_counter() - start


def optuna_wall(train: Train, configs: Sequence[dict], seeds: Sequence[int], data: Any, cores: int) -> float:
    """Optuna with `n_jobs=cores` threads: trial k trains configs[k], reporting val_accuracy each epoch."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial):
        index = trial.number
        history = train(configs[index], data, seeds[index], report=lambda e, m: trial.report(m["val_accuracy"], e))
        return max(m["val_accuracy"] for m in history)

    study = optuna.create_study(direction="maximize")
    start = time.perf_counter()
    study.optimize(objective, n_trials=len(configs), n_jobs=cores)
    return time.perf_counter() - start
