"""Population-based training, measured (not a test): what PBT's best buys, and what it costs against Ray Tune.

For each problem (digits, spiral): a population of 8 of caviar's NumPy network, 30 epochs, initial
learning rates drawn wide (1e-4 .. 1 with Adam and no batch norm: the top ones diverge), and

- caviar pbt:        `parallel` with `scheduler = "pbt"` (interval 3, the [pbt] defaults);
- fixed:             the same 8 configurations, each kept fixed for 30 epochs (`scheduler = "fifo"`);
- random:            8 other random configurations, 30 epochs each (the same epochs as the population);
- Ray Tune PBT:      `tune.schedulers.PopulationBasedTraining` on the same trainer, data, population,
                     epochs, interval and mutations (quantile 0.25, resample 0.25), checkpoints as .npz.

Scores, the same for every method: best, the best validation accuracy any member or trial reached
at any epoch (caviar's trials score: a trial's best epoch; Ray Tune: each trial's history); last,
the best at the last epoch. Wall time of each run includes starting its own local Ray, when it
starts one (a small caviar population trains on the driver and never does). Target: caviar pbt >=
fixed on both problems, and >= 5x faster than Ray Tune's PBT at an equal or better score.

    python benchmarks/pbt.py [--epochs 30] [--population 8] [--problems digits,spiral] [--seeds 0,1,2]

Timings on a shared machine are noisy: methods are interleaved within each seed, and the summary
gives the median over the seeds of each figure and of each ratio (Ray Tune / caviar, per seed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import tempfile
import time
from pathlib import Path

import numpy as np

# spiral with noise 0.6 and a small network: hard enough that no method reaches 1.0
PROBLEMS = {
    "digits": {"source": "digits", "hidden": [64], "options": {}},
    "spiral": {"source": "spiral", "hidden": [16], "options": {"noise": 0.6}},
}
LOW, HIGH = 1e-4, 10.0
INTERVAL = 3


def job_text(problem: str, epochs: int, population: int, scheduler: str, seed: int) -> str:
    spec = PROBLEMS[problem]
    return f"""name = "bench"
[data]
source = "{spec['source']}"
options = {{ {', '.join(f'{k} = {v}' for k, v in spec['options'].items())} }}
[model]
hidden_layers = {spec['hidden']}
optimizer = "adam"
batch_norm = false
epochs = {epochs}
[space]
learning_rate = {{ log_uniform = [{LOW}, {HIGH}] }}
[search]
sampler = "random"
trials = {population}
scheduler = "{scheduler}"
seed = {seed}
[pbt]
interval = {INTERVAL}
"""


def run_caviar(folder: Path, name: str, text: str) -> dict:
    """One `caviar parallel` run: best score, best last-epoch score, wall and Ray start-up seconds,
    members or trials that failed."""
    import re

    import caviar
    from caviar import cli

    path = folder / f"{name}.toml"
    path.write_text(text)
    start = time.perf_counter()
    said = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(said):   # the table below says it
        status = cli.main(["parallel", str(path), "--out", str(folder), "--name", name, "--overwrite"])
    wall = time.perf_counter() - start
    run = caviar.load(folder / name)
    trials, epochs = run.trials, run.epochs
    last = epochs[epochs["epoch"] == epochs["epoch"].max()]["val_accuracy"].max()
    ready = re.search(r"Ray ready in ([0-9.]+) s", said.getvalue())
    assert status in (0, 1), said.getvalue()
    return {"best": float(trials["score"].max()), "last": float(last), "wall": wall,
            "ray": float(ready[1]) if ready else 0.0,
            "failed": int((trials["status"] == "failed").sum()),
            "diverged": int((run.events["event"] == "diverged").sum()) if "event" in run.events else 0}


def _tune_trainable(data_ref, hidden, epochs):
    from ray import tune

    def trainable(config):
        from caviar import MLPTrainer

        data = data_ref
        trainer = MLPTrainer({"hidden_layers": hidden, "optimizer": "adam", "batch_norm": False,
                              "learning_rate": config["learning_rate"]}, data, seed=int(config["seed"]))
        start = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint is not None:
            with checkpoint.as_directory() as d:
                with np.load(os.path.join(d, "state.npz"), allow_pickle=False) as z:
                    state = {k: z[k] for k in z.files}
            trainer.load_state_dict(state)
            trainer.set_hyperparameters(learning_rate=config["learning_rate"])
            start = int(state["epoch"])
        for epoch in range(start + 1, epochs + 1):
            metrics = trainer.train_epoch()
            acc = metrics["val_accuracy"] if np.isfinite(metrics["val_accuracy"]) else 0.0
            if epoch % INTERVAL == 0 or epoch == epochs:
                with tempfile.TemporaryDirectory() as d:
                    np.savez(os.path.join(d, "state.npz"), **trainer.state_dict())
                    tune.report({"val_accuracy": acc}, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report({"val_accuracy": acc})
    return trainable


def run_tune(problem: str, epochs: int, population: int, seed: int, storage: Path) -> dict:
    """Ray Tune's PBT, starting its own Ray: best member's last val_accuracy, wall and start-up seconds."""
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from caviar.data import load_dataset

    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ready = time.perf_counter() - start
    try:
        data = load_dataset(PROBLEMS[problem]["source"], options=PROBLEMS[problem]["options"])
        pbt = PopulationBasedTraining(time_attr="training_iteration", perturbation_interval=INTERVAL,
                                      hyperparam_mutations={"learning_rate": tune.loguniform(LOW, HIGH)},
                                      quantile_fraction=0.25, resample_probability=0.25, metric="val_accuracy",
                                      mode="max", synch=True)
        rng = np.random.default_rng(seed)
        tuner = tune.Tuner(
            _tune_trainable(data, PROBLEMS[problem]["hidden"], epochs),
            param_space={"learning_rate": tune.loguniform(LOW, HIGH), "seed": tune.randint(0, 2**31 - 1)},
            tune_config=tune.TuneConfig(scheduler=pbt, num_samples=population, reuse_actors=True),
            run_config=tune.RunConfig(storage_path=str(storage), name=f"tune-{problem}-{rng.integers(1 << 30)}",
                                      stop={"training_iteration": epochs}, verbose=0),
        )
        results = tuner.fit()
        best = max(float(r.metrics_dataframe["val_accuracy"].max()) for r in results if r.metrics)
        last = max(r.metrics.get("val_accuracy", 0.0) for r in results if r.metrics)
    finally:
        ray.shutdown()
    return {"best": float(best), "last": float(last), "wall": time.perf_counter() - start, "ray": ready,
            "failed": 0, "diverged": 0}


METHODS = ("caviar pbt", "fixed", "random", "ray tune pbt")


def run_seed(folder: Path, problem: str, args: argparse.Namespace, seed: int) -> dict[str, dict | None]:
    """Every method once on `problem` with `seed`, interleaved."""
    make = lambda scheduler, s: job_text(problem, args.epochs, args.population, scheduler, s)  # noqa: E731
    results: dict[str, dict | None] = {"caviar pbt": run_caviar(folder, f"{problem}-{seed}-pbt", make("pbt", seed))}
    results["ray tune pbt"] = None if args.no_tune else run_tune(problem, args.epochs, args.population, seed,
                                                                  folder / "tune")
    results["fixed"] = run_caviar(folder, f"{problem}-{seed}-fixed", make("fifo", seed))
    # other configurations: a seed no other run of this benchmark uses
    results["random"] = run_caviar(folder, f"{problem}-{seed}-random", make("fifo", seed + 1000))
    return results


def print_tables(rows: list[tuple[str, int, dict]], args: argparse.Namespace) -> None:
    print(f"population {args.population}, {args.epochs} epochs, learning rate log-uniform [{LOW}, {HIGH}] (Adam, "
          f"no batch norm), interval {INTERVAL}, seeds {args.seeds}. best: the best validation accuracy at any "
          "epoch; last: at the last epoch; net s: wall minus starting Ray")
    print(f"{'problem':8} {'seed':>4} {'method':14} {'best':>7} {'last':>7} {'wall s':>7} {'net s':>7} "
          f"{'failed':>7} {'diverged':>8}")
    for problem, seed, results in rows:
        for method in METHODS:
            r = results[method]
            if r is not None:
                print(f"{problem:8} {seed:4d} {method:14} {r['best']:7.4f} {r['last']:7.4f} {r['wall']:7.1f} "
                      f"{r['wall'] - r['ray']:7.1f} {r['failed']:7d} {r['diverged']:8d}")
    print("\nmedians over the seeds")
    for problem in dict.fromkeys(p for p, _, _ in rows):
        runs = [results for p, _, results in rows if p == problem]
        med = lambda method, f: float(np.median([f(r[method]) for r in runs]))  # noqa: E731
        line = f"{problem:8} best: " + ", ".join(f"{m} {med(m, lambda r: r['best']):.4f}" for m in METHODS
                                                if runs[0][m] is not None)
        line += f"; pbt - fixed (best) {med('caviar pbt', lambda r: r['best']) - med('fixed', lambda r: r['best']):+.4f}"
        if runs[0]["ray tune pbt"] is not None:
            wall = float(np.median([r["ray tune pbt"]["wall"] / r["caviar pbt"]["wall"] for r in runs]))
            net = float(np.median([(r["ray tune pbt"]["wall"] - r["ray tune pbt"]["ray"])
                                   / max(r["caviar pbt"]["wall"] - r["caviar pbt"]["ray"], 1e-9) for r in runs]))
            line += f"; tune / pbt wall {wall:.1f}x, without starting Ray {net:.1f}x"
        print(line)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--problems", default="digits,spiral")
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated job seeds; medians over them")
    parser.add_argument("--no-tune", action="store_true", help="skip Ray Tune (caviar's methods only)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in [int(s) for s in args.seeds.split(",")]:
            for problem in args.problems.split(","):
                rows.append((problem, seed, run_seed(Path(tmp), problem, args, seed)))
                print(f"done: {problem} seed {seed}", flush=True)
    print_tables(rows, args)


if __name__ == "__main__":
    main()
