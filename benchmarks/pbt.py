"""Population-based training, measured (not a test): what PBT's best buys, and what it costs against Ray Tune.

For each problem (digits, spiral): a population of 8 of caviar's NumPy network, 30 epochs, initial
learning rates drawn wide (1e-4 .. 1 with Adam and no batch norm: the top ones diverge), and

- caviar pbt:        `parallel` with `scheduler = "pbt"` (interval 3, the [pbt] defaults);
- fixed:             the same 8 configurations, each kept fixed for 30 epochs (`scheduler = "fifo"`);
- random:            8 other random configurations, 30 epochs each (the same epochs as the population);
- Ray Tune PBT:      `tune.schedulers.PopulationBasedTraining` on the same trainer, data, population,
                     epochs, interval and mutations (quantile 0.25, resample 0.25), checkpoints as .npz.

Scores: caviar's trials score (pbt: each member's last epoch; fixed and random: each trial's best
epoch, which flatters them); Ray Tune: the best member's last validation accuracy. Wall time of each
run includes starting its own local Ray. Target: caviar pbt >= fixed on both problems, and >= 5x
faster than Ray Tune's PBT at an equal or better score.

    python benchmarks/pbt.py [--epochs 30] [--population 8] [--problems digits,spiral]

Timings on a shared machine are noisy: methods are interleaved and compared within one run.
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

PROBLEMS = {
    "digits": {"source": "digits", "hidden": [64]},
    "spiral": {"source": "spiral", "hidden": [64, 64]},
}
LOW, HIGH = 1e-4, 1.0
INTERVAL = 3


def job_text(problem: str, epochs: int, population: int, scheduler: str, seed: int) -> str:
    spec = PROBLEMS[problem]
    return f"""name = "bench"
[data]
source = "{spec['source']}"
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


def run_caviar(folder: Path, name: str, text: str) -> tuple[float, float, int]:
    """(best score, wall seconds, members or trials that failed) of one `caviar parallel` run."""
    import caviar
    from caviar import cli

    path = folder / f"{name}.toml"
    path.write_text(text)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):   # the leaderboard: the table below says it
        status = cli.main(["parallel", str(path), "--out", str(folder), "--name", name, "--quiet", "--overwrite"])
    wall = time.perf_counter() - start
    trials = caviar.load(folder / name).trials
    failed = int((trials["status"] == "failed").sum()) + int(trials["score"].isna().sum())
    assert status in (0, 1), status
    return float(trials["score"].max()), wall, failed


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


def run_tune(problem: str, epochs: int, population: int, seed: int, storage: Path) -> tuple[float, float]:
    """(best member's last val_accuracy, wall seconds) of Ray Tune's PBT, starting its own Ray."""
    import ray
    from ray import tune
    from ray.tune.schedulers import PopulationBasedTraining

    from caviar.data import load_dataset

    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    try:
        data = load_dataset(PROBLEMS[problem]["source"])
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
        best = max(r.metrics.get("val_accuracy", 0.0) for r in results if r.metrics)
    finally:
        ray.shutdown()
    return float(best), time.perf_counter() - start


def ray_start_seconds() -> float:
    """What starting (and stopping) a local Ray costs here now: every run above pays it once."""
    import ray

    start = time.perf_counter()
    ray.init(address="local", include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    ray.shutdown()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--population", type=int, default=8)
    parser.add_argument("--problems", default="digits,spiral")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tune", action="store_true", help="skip Ray Tune (caviar's methods only)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for problem in args.problems.split(","):
            make = lambda scheduler, seed: job_text(problem, args.epochs, args.population, scheduler, seed)  # noqa: E731
            pbt = run_caviar(folder, f"{problem}-pbt", make("pbt", args.seed))
            tune_result = None if args.no_tune else run_tune(problem, args.epochs, args.population, args.seed,
                                                              folder / "tune")
            fixed = run_caviar(folder, f"{problem}-fixed", make("fifo", args.seed))
            random = run_caviar(folder, f"{problem}-random", make("fifo", args.seed + 1))
            rows.append((problem, pbt, fixed, random, tune_result, ray_start_seconds()))
    print(f"population {args.population}, {args.epochs} epochs, learning rate log-uniform [{LOW}, {HIGH}], "
          f"interval {INTERVAL}; score = best val_accuracy; wall includes starting Ray")
    print(f"{'problem':8} {'method':14} {'best':>7} {'wall s':>7} {'failed':>7}")
    for problem, pbt, fixed, random, tuned, ray_start in rows:
        print(f"{problem:8} (a local Ray starts and stops in {ray_start:.1f} s here now)")
        for method, (score, wall, failed) in (("caviar pbt", pbt), ("fixed", fixed), ("random", random)):
            print(f"{problem:8} {method:14} {score:7.4f} {wall:7.1f} {failed:7d}")
        if tuned is not None:
            print(f"{problem:8} {'ray tune pbt':14} {tuned[0]:7.4f} {tuned[1]:7.1f} {'':>7}")
            net = (tuned[1] - ray_start) / max(pbt[1] - ray_start, 1e-9)
            print(f"{problem:8} ratios: pbt - fixed {pbt[0] - fixed[0]:+.4f}, pbt - tune {pbt[0] - tuned[0]:+.4f}, "
                  f"tune wall / pbt wall {tuned[1] / pbt[1]:.1f}x ({net:.1f}x without Ray's start)")
        else:
            print(f"{problem:8} ratios: pbt - fixed {pbt[0] - fixed[0]:+.4f}")


if __name__ == "__main__":
    main()
