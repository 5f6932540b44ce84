"""The example PyTorch CNN swept through caviar, a bare process pool, Ray Tune and Optuna.

32 trials x 5 epochs of caviar/examples/digits_cnn.py on digits (jobs/digits_cnn.toml, random
sampler, no early stopping), one PyTorch thread per trial, the same 32 configurations and seeds
everywhere, metrics reported every epoch. Prints wall times and

    efficiency = sequential compute / (cores x wall)

where sequential compute is the same trials run one after another in this process, measured in
this run (the machine is shared: only ratios within one run mean anything), then the ratios the
issue asks for: caviar's efficiency against the pool's, and caviar's speed against Ray Tune's and
Optuna's. Each Ray run gets a freshly started Ray (worker processes prestarted); Ray's start-up is
not counted. The process pool is a spawned one: fresh interpreters that import PyTorch, as Ray's
workers do (a forked pool, PyTorch already imported in its parent, is shown too); the sequential loop
and Optuna's threads run in this warm process.

    python benchmarks/torch_sweep.py [--trials 32] [--epochs 5] [--repeat 3] [--skip tune,optuna]

Methods take turns (round-robin; Ray Tune once: it is slow); the median wall time is kept.
Needs the bench extra: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import contextlib
import io
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import rivals  # noqa: E402  (after the path: run as a script)

JOB = ROOT / "jobs" / "digits_cnn.toml"
PRESTART_SECONDS = 2.0   # Ray boots its idle workers after ray.init; no method is timed doing so


def overrides(n_trials: int, epochs: int) -> list[str]:
    return [f"search.trials={n_trials}", f"model.epochs={epochs}", "search.scheduler=fifo", "search.sampler=random"]


def sweep_plan(n_trials: int, epochs: int) -> tuple[list[dict], list[int], object]:
    """The configurations and seeds caviar runs for this job, so every method trains the same trials."""
    from caviar.config.job import load_job
    from caviar.search.samplers import trial_seed
    from caviar.sweep.plan import build_sampler

    job = load_job(JOB, overrides(n_trials, epochs))
    sampler = build_sampler(job)
    configs = [job.config(sampler.ask(t)) for t in range(n_trials)]
    return configs, [trial_seed(job.search.seed, t) for t in range(n_trials)], job


def train(config: dict, data, seed: int, report=None) -> list[dict]:
    """One trial on one thread, every epoch's metrics; `report(epoch, metrics)` after each epoch."""
    import torch

    from caviar.examples.digits_cnn import DigitsCNN

    torch.set_num_threads(1)
    trainer = DigitsCNN(config, data, seed)
    history = []
    for epoch in range(1, int(config["epochs"]) + 1):
        history.append(trainer.train_epoch())
        if report is not None:
            report(epoch, history[-1])
    return history


_POOL_DATA = None


def _pool_init(n_trials: int, epochs: int) -> None:
    global _POOL_DATA
    _POOL_DATA = sweep_plan(n_trials, epochs)[2].data.load()


def _pool_trial(config: dict, seed: int) -> list[dict]:
    return train(config, _POOL_DATA, seed)


def run_sequential(configs, seeds, data) -> float:
    return rivals.sequential_wall(train, configs, seeds, data)


def run_pool(configs, seeds, n_trials, epochs, cores, method: str) -> float:
    """A bare process pool. "spawn": fresh interpreters that import PyTorch themselves, as Ray's
    workers (caviar's, Ray Tune's) do; "fork": copies of this process, PyTorch already imported."""
    import multiprocessing

    start = time.perf_counter()
    with futures.ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context(method), initializer=_pool_init,
                                     initargs=(n_trials, epochs)) as pool:
        list(pool.map(_pool_trial, configs, seeds))
    return time.perf_counter() - start


def run_caviar(n_trials, epochs, cores) -> float:
    from caviar.cli import main

    sets = [arg for item in overrides(n_trials, epochs) for arg in ("--set", item)]
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        start = time.perf_counter()
        status = main(["parallel", str(JOB), "--out", out, "--quiet", "--concurrency", str(cores), *sets])
        wall = time.perf_counter() - start
    assert status == 0
    return wall


def run_tune(configs, seeds, data, cores) -> float:
    return rivals.tune_wall(train, configs, seeds, data, cores)


def run_optuna(configs, seeds, data, cores) -> float:
    return rivals.optuna_wall(train, configs, seeds, data, cores)


def report(rows: list[tuple[str, float]], sequential: float, cores: int) -> None:
    walls = dict(rows)
    efficiency = {name: sequential / (cores * wall) for name, wall in rows}
    print("\nmethod            wall s   efficiency   caviar speed-up")
    for name, wall in rows:
        print(f"{name:<16} {wall:8.1f}   {efficiency[name]:10.2f}   {wall / walls.get('caviar', wall):8.2f}x")
    if "caviar" in walls:
        for name, target in (("process pool", "within 5%: >= 0.95"), ("Ray Tune", ">= 10"),
                             ("Optuna (n_jobs)", ">= 2")):
            if name in walls:
                ratio = efficiency["caviar"] / efficiency[name]
                print(f"caviar / {name:<16} efficiency ratio {ratio:6.2f}   (target {target})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is kept")
    parser.add_argument("--skip", default="", help="comma-separated: pool,fork,caviar,tune,optuna")
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cores = 2   # the comparison: two workers, one thread each

    configs, seeds, job = sweep_plan(args.trials, args.epochs)
    data = job.data.load()
    train(configs[0], data, seeds[0])   # warm: PyTorch's first convolution sets itself up
    sequential = statistics.median(run_sequential(configs, seeds, data) for _ in range(args.repeat))
    print(f"sweep: {args.trials} trials x {args.epochs} epochs of the digits CNN, {cores} workers x 1 thread; "
          f"sequential compute {sequential:.1f} s (median of {args.repeat})", flush=True)

    import ray

    def fresh_ray() -> None:
        ray.shutdown()
        # "local": a Ray of this benchmark's own, never another one running on the machine.
        ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
        time.sleep(PRESTART_SECONDS)

    runners = {
        "caviar": lambda: run_caviar(args.trials, args.epochs, cores),
        "process pool": lambda: run_pool(configs, seeds, args.trials, args.epochs, cores, "spawn"),
        "pool (fork)": lambda: run_pool(configs, seeds, args.trials, args.epochs, cores, "fork"),
        "Ray Tune": lambda: run_tune(configs, seeds, data, cores),
        "Optuna (n_jobs)": lambda: run_optuna(configs, seeds, data, cores),
    }
    keys = {"caviar": "caviar", "process pool": "pool", "pool (fork)": "fork", "Ray Tune": "tune",
            "Optuna (n_jobs)": "optuna"}
    walls: dict[str, list[float]] = {name: [] for name in runners if keys[name] not in skip}
    for repeat in range(args.repeat):   # round-robin: the machine's speed drifts over minutes
        for name in walls:
            if name == "Ray Tune" and repeat:
                continue
            if name in ("caviar", "Ray Tune"):
                fresh_ray()
            walls[name].append(runners[name]())
            print(f"  run {repeat + 1}: {name:<16} {walls[name][-1]:8.1f} s", flush=True)
    report([(name, statistics.median(runs)) for name, runs in walls.items()], sequential, cores)


if __name__ == "__main__":
    main()
