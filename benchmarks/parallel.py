"""The same sweep through caviar, a process pool, plain Ray tasks, Ray Tune and Optuna.

64 trials x 20 epochs of caviar's MLP on digits, metrics reported every epoch, no early stopping
(fifo), the same 64 configurations everywhere. Prints wall time and

    efficiency = sequential compute / (cores x wall)

where sequential compute is the same 64 trials run one after another in this process, measured in
this run (the machine is shared: only ratios within one run mean anything). Each run of a Ray-based
method gets a freshly started Ray, as a user's command or script does (worker processes
prestarted); Ray's start-up is reported apart and not counted in any wall time.
caviar runs twice: on that Ray (as on a cluster, or in a script that ran `ray.init`), and with no
Ray up, as a command or `caviar.sweep()` runs it on a machine of its own (a fresh interpreter that
has run a 2-trial sweep, as the pool's parent has run the trials: `main` alone is timed): the driver
and its helper train, and a Ray boots only if its workers would end the sweep sooner
(`caviar.sweep.ray_on_demand`). Both ratios of the two are printed: of their median walls, and the
median of each round's own (its two runs are seconds apart).

    python benchmarks/parallel.py [--trials 64] [--epochs 20] [--hidden 64] [--repeat 3] [--skip tune,optuna]

Then the whole command, start-up included, as a user runs it: `python -m caviar parallel` in a
fresh process with a Ray of its own, for the typical first sweep (48 trials x 10 epochs, fifo) and
for the default job (jobs/digits.toml, ASHA), against

    floor = the same trials' compute (each for the epochs it ran there) in one process / cores

measured right after each caviar run, and against Ray Tune's whole run of the 48 x 10 sweep (a
fresh process: import, ray.init, Tuner.fit, end). Targets: caviar within floor + 1.5 s, and at
least 20x faster than Tune end to end. `--skip whole` leaves this part out, `--skip loop` the
first; `--whole-trials 48 --whole-epochs 10` size the first sweep.

Each method runs `--repeat` times, the methods taking turns (Ray Tune once: it is slow), and the
median wall time is kept. Each Ray run starts after its Ray has booted its idle worker processes.
`--hidden 256,256` makes every epoch heavier, to see efficiency once fixed costs (worker start-up)
are small against the compute.

Needs the bench extra for Ray Tune and Optuna: pip install -e '.[bench]'.
"""

from __future__ import annotations

import argparse
import concurrent.futures as futures
import logging
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import rivals  # noqa: E402  (after the path: run as a script)

JOB = ROOT / "jobs" / "digits.toml"
# After ray.init, Ray boots one idle worker process per CPU in the background (about a second
# here); each Ray run waits that long first, so that no method is timed booting them.
PRESTART_SECONDS = 2.0


def overrides(n_trials: int, epochs: int, hidden: str) -> list[str]:
    return [f"search.trials={n_trials}", f"model.epochs={epochs}", "search.scheduler=fifo",
            "search.sampler=random", f"model.hidden_layers=[{hidden}]"]


def sweep_configs(n_trials: int, epochs: int, hidden: str) -> tuple[list[dict], list[int], object]:
    from caviar.config.job import load_job
    from caviar.sweep.command import build_sampler
    from caviar.search.samplers import trial_seed

    job = load_job(JOB, overrides(n_trials, epochs, hidden))
    sampler = build_sampler(job)
    configs = [{**{k: v for k, v in job.model.items() if k != "trainer"}, **sampler.ask(t)} for t in range(n_trials)]
    return configs, [trial_seed(job.search.seed, t) for t in range(n_trials)], job


def load_data(job):
    return job.data.load()


def train(config: dict, data, seed: int, report=None) -> list[dict]:
    """One trial, every epoch's metrics; `report(epoch, metrics)` is called as each epoch ends."""
    from caviar.nn.mlp import MLPTrainer

    trainer = MLPTrainer(config, data, seed)
    history = []
    for epoch in range(1, int(config["epochs"]) + 1):
        metrics = trainer.train_epoch()
        history.append(metrics)
        if report is not None:
            report(epoch, metrics)
    return history


_POOL_DATA = None


def _pool_init() -> None:
    from threadpoolctl import threadpool_limits

    threadpool_limits(1)


def _pool_trial(config: dict, seed: int) -> list[dict]:
    return train(config, _POOL_DATA, seed)


def run_sequential(configs, seeds, data) -> float:
    return rivals.sequential_wall(train, configs, seeds, data)


def run_pool(configs, seeds, data, cores) -> float:
    """The bare baseline: forked processes that have the dataset already (a fork shares this one's:
    nothing is loaded, imported or sent but each trial's config)."""
    global _POOL_DATA
    import multiprocessing

    _POOL_DATA = data
    start = time.perf_counter()
    with futures.ProcessPoolExecutor(cores, mp_context=multiprocessing.get_context("fork"),
                                     initializer=_pool_init) as pool:
        list(pool.map(_pool_trial, configs, seeds))
    return time.perf_counter() - start


def run_ray_tasks(configs, seeds, data, cores) -> float:
    import ray

    @ray.remote(num_cpus=1)
    def trial(config, data, seed):
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1):
            return train(config, data, seed)

    start = time.perf_counter()
    data_ref = ray.put(data)
    pending = [trial.remote(c, data_ref, s) for c, s in zip(configs, seeds)]
    while pending:
        _, pending = ray.wait(pending, num_returns=1)
    return time.perf_counter() - start


# Each caviar run's fixed costs (caviar.sweep.costs: name -> seconds), from its CAVIAR_DEBUG line.
CAVIAR_COSTS: list[dict[str, float]] = []


def parse_costs(stderr: str) -> dict[str, float]:
    """The fixed costs a caviar run printed with CAVIAR_DEBUG=1: "name 1.23 s, ..." -> {name: 1.23}."""
    from caviar.sweep.costs import PREFIX

    line = next((line for line in stderr.splitlines() if line.startswith(PREFIX)), "")
    parts = (part.strip().rsplit(" ", 2) for part in line[len(PREFIX):].split(",") if part.strip().endswith(" s"))
    return {name: float(seconds) for name, seconds, _ in parts}


def run_caviar(n_trials, epochs, hidden, cores) -> float:
    import contextlib
    import io

    from caviar.cli import main

    sets = [arg for item in overrides(n_trials, epochs, hidden) for arg in ("--set", item)]
    err = io.StringIO()
    os.environ["CAVIAR_DEBUG"] = "1"   # for its fixed-cost line
    try:
        with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()), \
                contextlib.redirect_stderr(err):
            start = time.perf_counter()
            status = main(["parallel", str(JOB), "--out", out, "--quiet", "--concurrency", str(cores), *sets])
            wall = time.perf_counter() - start
    finally:
        del os.environ["CAVIAR_DEBUG"]
    assert status == 0, err.getvalue()
    CAVIAR_COSTS.append(parse_costs(err.getvalue()))
    return wall


# A fresh interpreter that imports caviar and runs a sweep of 2 trials x 1 epoch, then times
# `main(...)` alone: caviar as a user's command (or `caviar.sweep()` in a script) runs it on a
# machine where no Ray is up, without the interpreter's start, the imports and the first use of
# NumPy's generators and BLAS, which the pool's parent has behind it too (it has run the trials).
# Everything a sweep does is timed: the job, the data, the run folder and its lock, the helper's
# fork, the trials, the compaction and the leaderboard.
_TIMED_MAIN = """
import contextlib, io, sys, tempfile, time
from caviar.cli import main
err = io.StringIO()
with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
    if main(["parallel", sys.argv[1], "--out", out, "--name", "warm-up", "--quiet", "--set", "search.trials=2",
             "--set", "model.epochs=1"]):
        raise SystemExit(err.getvalue())
    start = time.perf_counter()
    status = main(["parallel", sys.argv[1], "--out", out, "--quiet", "--concurrency", sys.argv[2], *sys.argv[3:]])
    wall = time.perf_counter() - start
if status:
    raise SystemExit(err.getvalue())
print(wall)
"""


def run_caviar_no_ray(n_trials, epochs, hidden, cores) -> float:
    """caviar with no Ray up: it trains on its own cores and boots a Ray only when the work left
    would outlast the boot (`caviar.sweep.ray_on_demand`)."""
    sets = [arg for item in overrides(n_trials, epochs, hidden) for arg in ("--set", item)]
    # PYTHONDONTWRITEBYTECODE (set on some machines) would have caviar's modules compiled again in
    # each run, 0.03-0.06 s here, which no installed caviar pays: bytecode is cached as usual.
    env = {k: v for k, v in os.environ.items()
           if k not in ("RAY_ADDRESS", "CAVIAR_RAY_BOOT_SECONDS", "PYTHONDONTWRITEBYTECODE")}
    done = subprocess.run([sys.executable, "-c", _TIMED_MAIN, str(JOB), str(cores), *sets], capture_output=True,
                          text=True, env=env, cwd=ROOT)
    if done.returncode:
        raise SystemExit(f"caviar exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return float(done.stdout.split()[-1])


def run_tune(configs, seeds, data, cores) -> float:
    return rivals.tune_wall(train, configs, seeds, data, cores, one_blas_thread=True)


def run_optuna(configs, seeds, data, cores) -> float:
    return rivals.optuna_wall(train, configs, seeds, data, cores)


# ---- the whole command, start-up included ---------------------------------------------------------------

def whole_caviar(sets: list[str], out: str) -> float:
    """`python -m caviar parallel` from the shell's point of view: process start to exit, its own Ray."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "caviar", "parallel", str(JOB), "--out", out, "--quiet", "--overwrite",
                           *[arg for item in sets for arg in ("--set", item)]], capture_output=True, text=True, env=env,
                          cwd=ROOT)
    wall = time.perf_counter() - start
    if done.returncode:
        raise SystemExit(f"caviar exited with {done.returncode}: {done.stderr.strip()[-500:]}")
    return wall


def floor_of(run_dir: Path, job, data, cores: int) -> float:
    """The compute of a finished run's trials, each for the epochs it ran, in this process, / cores."""
    import pandas as pd
    from threadpoolctl import threadpool_limits

    trials = pd.read_parquet(run_dir / "trials.parquet")
    base = {k: v for k, v in job.model.items() if k != "trainer"}
    names = [c for c in trials.columns if c.startswith("params_")]
    with threadpool_limits(1):
        start = time.perf_counter()
        for _, row in trials.iterrows():
            config = {**base, **{n[len("params_"):]: _plain(row[n]) for n in names}, "epochs": int(row["epochs"])}
            train(config, data, int(row["seed"]))
        return (time.perf_counter() - start) / cores


def _plain(value):
    """A Parquet scalar as the trainer takes it (numpy int64 -> int)."""
    return value.item() if hasattr(value, "item") else value


def whole_tune(n_trials: int, epochs: int) -> float:
    """Ray Tune's whole run of the same sweep in a fresh process (this script with --tune-whole)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    start = time.perf_counter()
    subprocess.run([sys.executable, __file__, "--tune-whole", "--trials", str(n_trials), "--epochs", str(epochs)],
                   check=True, capture_output=True, env=env)
    return time.perf_counter() - start


def tune_whole_run(n_trials: int, epochs: int, hidden: str) -> None:
    """The body of --tune-whole: everything a Tune user's script does, start to end."""
    import ray

    configs, seeds, job = sweep_configs(n_trials, epochs, hidden)
    data = load_data(job)
    cores = os.cpu_count() or 1
    ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING,
             log_to_driver=False)
    run_tune(configs, seeds, data, cores)
    ray.shutdown()


def whole_commands(args, cores: int) -> None:
    """Whole-command wall times of caviar (first sweep, default job) against the floor and Tune."""
    from caviar.config.job import load_job

    sweeps = {f"{args.whole_trials} x {args.whole_epochs} fifo": overrides(args.whole_trials, args.whole_epochs, "64"),
              "default job (digits, asha)": []}
    walls: dict[str, list[float]] = {name: [] for name in sweeps}
    floors: dict[str, list[float]] = {name: [] for name in sweeps}
    tune: list[float] = []
    with tempfile.TemporaryDirectory() as out:
        for repeat in range(args.repeat):
            for name, sets in sweeps.items():   # interleaved, as above
                walls[name].append(whole_caviar(sets, out))
                job = load_job(JOB, sets)
                floors[name].append(floor_of(Path(out) / job.name, job, load_data(job), cores))
                print(f"  run {repeat + 1}: caviar {name:<28} {walls[name][-1]:6.2f} s   floor {floors[name][-1]:5.2f} s",
                      flush=True)
            if "tune" not in args.skip.split(",") and repeat == 0:
                tune.append(whole_tune(args.whole_trials, args.whole_epochs))
                print(f"  run {repeat + 1}: Ray Tune whole run             {tune[-1]:6.2f} s", flush=True)
    print(f"\nwhole command (start-up included), median of {args.repeat}; floor = in-process compute / {cores}")
    print("sweep                          caviar s   floor s   caviar - floor   target")
    for name in sweeps:
        wall, floor = statistics.median(walls[name]), statistics.median(floors[name])
        print(f"{name:<30} {wall:8.2f}   {floor:7.2f}   {wall - floor:+10.2f} s    <= +1.50 s")
    if tune:
        first = statistics.median(walls[next(iter(sweeps))])
        print(f"Ray Tune whole run of the first sweep: {tune[0]:.1f} s, caviar {tune[0] / first:.1f}x faster "
              "end to end (target >= 20x)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--hidden", default="64", help="hidden layer sizes, comma-separated (default 64)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per method; the median is kept")
    parser.add_argument("--skip", default="", help="comma-separated: pool,ray,caviar,local,tune,optuna; loop,whole (local: caviar with no Ray up)")
    parser.add_argument("--whole-trials", type=int, default=48)
    parser.add_argument("--whole-epochs", type=int, default=10)
    parser.add_argument("--tune-whole", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    skip = set(filter(None, args.skip.split(",")))
    cores = os.cpu_count() or 1
    if args.tune_whole:
        tune_whole_run(args.trials, args.epochs, args.hidden)
        return
    if "loop" not in skip:
        loop_methods(args, skip, cores)
    if "whole" not in skip:
        whole_commands(args, cores)


def loop_methods(args, skip: set[str], cores: int) -> None:
    """The sweep through every method, Ray started beforehand (its start-up not counted)."""

    from threadpoolctl import threadpool_limits

    configs, seeds, job = sweep_configs(args.trials, args.epochs, args.hidden)
    data = load_data(job)
    with threadpool_limits(1):
        sequential = statistics.median(run_sequential(configs, seeds, data) for _ in range(args.repeat))
    print(f"sweep: {args.trials} trials x {args.epochs} epochs on digits, hidden [{args.hidden}], {cores} cores; "
          f"sequential compute {sequential:.1f} s (median of {args.repeat})")

    import ray

    def fresh_ray() -> float:
        """A newly started Ray, as each `python -m caviar parallel` (or a user's script) would see
        it, worker processes prestarted; returns the seconds it took, which no wall time counts."""
        ray.shutdown()
        start = time.perf_counter()
        ray.init(address="local", num_cpus=cores, include_dashboard=False, logging_level=logging.WARNING,
                 log_to_driver=False)
        took = time.perf_counter() - start
        time.sleep(PRESTART_SECONDS)
        return took

    rows = []
    runners = {
        "caviar": lambda: run_caviar(args.trials, args.epochs, args.hidden, cores),
        "caviar, no Ray up": lambda: run_caviar_no_ray(args.trials, args.epochs, args.hidden, cores),
        "process pool": lambda: run_pool(configs, seeds, data, cores),
        "plain Ray tasks": lambda: run_ray_tasks(configs, seeds, data, cores),
        "Ray Tune": lambda: run_tune(configs, seeds, data, cores),
        "Optuna (n_jobs)": lambda: run_optuna(configs, seeds, data, cores),
    }
    keys = {"caviar": "caviar", "caviar, no Ray up": "local", "process pool": "pool", "plain Ray tasks": "ray", "Ray Tune": "tune",
            "Optuna (n_jobs)": "optuna"}
    uses_ray = {"caviar", "plain Ray tasks", "Ray Tune"}
    startups = []
    walls: dict[str, list[float]] = {name: [] for name in runners if keys[name] not in skip}
    # Round-robin, not one method after another: this machine's speed drifts by tens of percent
    # over minutes, and interleaving spreads the drift over every method alike; the order turns
    # round every other round, so that no method always runs first (or right after a Ray's start).
    for repeat in range(args.repeat):
        for name in (list(walls) if repeat % 2 == 0 else list(walls)[::-1]):
            if name == "Ray Tune" and repeat:
                continue   # minutes per run: once is enough to place it
            if name in uses_ray:
                startups.append(fresh_ray())
            walls[name].append(runners[name]())
            print(f"  run {repeat + 1}: {name:<16} {walls[name][-1]:8.2f} s", flush=True)
    for name, runs in walls.items():
        wall = statistics.median(runs)
        rows.append((name, wall, sequential / (cores * wall)))
    if startups:
        print(f"Ray start-up before each Ray run: median {statistics.median(startups):.1f} s (not counted above)")
    medians = dict((name, wall) for name, wall, _ in rows)
    print("\nmethod            wall s   efficiency   caviar speed-up")
    for name, wall, eff in rows:
        print(f"{name:<16} {wall:8.1f}   {eff:10.2f}   {wall / medians.get('caviar', wall):8.2f}x")
    if "caviar" in medians and "process pool" in medians:
        print(f"caviar's efficiency / the process pool's: {medians['process pool'] / medians['caviar']:.3f} "
              "(target >= 0.95), on a Ray up beforehand")
    if "caviar, no Ray up" in medians and "process pool" in medians:
        print(f"caviar's efficiency / the process pool's: {medians['process pool'] / medians['caviar, no Ray up']:.3f} "
              "(target >= 0.95), with no Ray up (as a command runs it)")
        # Each round's two runs are seconds apart: their ratio is free of the drift between rounds.
        paired = statistics.median(pool / mine for pool, mine in zip(walls["process pool"], walls["caviar, no Ray up"]))
        print(f"  the same, median of the {args.repeat} rounds' own ratios: {paired:.3f}")
    if CAVIAR_COSTS:
        names = dict.fromkeys(name for costs in CAVIAR_COSTS for name in costs)
        print("caviar's fixed costs, median s: " + ", ".join(
            f"{name} {statistics.median(c.get(name, 0.0) for c in CAVIAR_COSTS):.2f}" for name in names)
            + f" (of a {medians['caviar']:.1f} s wall)")


if __name__ == "__main__":
    main()
