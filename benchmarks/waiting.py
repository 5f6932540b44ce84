"""What reproducible model-based proposals cost in wall time: tpe waiting for earlier results, against
random (which never waits), on the same trials.

A tpe sweep proposes trial k from the results of trials 0 .. k-lag-1 and waits for them when they are
not in yet; random proposes every trial at once. Here both run the same trials: each one sleeps a
time drawn from its own trial seed (log-normal, so long and short ones mix and finish out of order),
whatever its configuration, so any difference in wall time is waiting (and the driver's TPE
proposals). Prints each method's median span (first trial's start to last trial's end, so Ray's and
the workers' start-up are left out) over `--repeat` runs, methods taking turns, its ratio to random's,
measured in the same run on one Ray started here, and the share of the workers' time left idle.

    python benchmarks/waiting.py [--trials 48] [--workers 2] [--mean 0.4] [--repeat 3] [--lags 1,2,4]

`--lags` are multiples of the worker count (lag = "auto" is 2 x workers).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class SleepTrainer:
    """One epoch of sleep, its length drawn from the trial's seed (log-normal around config["mean"]);
    val_accuracy a fixed function of the learning rate, so tpe has something to learn."""

    metrics = ("val_accuracy", "started", "ended")   # started/ended: wall clock (s), to time the sweep

    def __init__(self, config: Mapping[str, Any], data: Any, seed: int) -> None:
        sigma = 0.8
        mean = float(config.get("mean", 0.4))
        self.seconds = float(np.random.default_rng(seed).lognormal(np.log(mean) - sigma**2 / 2, sigma))
        self.score = 1.0 - (np.log10(float(config["learning_rate"])) + 2.5) ** 2 / 10

    def train_epoch(self) -> dict[str, float]:
        started = time.time()
        time.sleep(self.seconds)
        return {"val_accuracy": self.score, "started": started, "ended": time.time()}

    def state_dict(self) -> dict[str, np.ndarray]:
        return {}

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        pass

    def set_hyperparameters(self, **changes: Any) -> None:
        pass


def write_job(folder: Path, trials: int, workers: int, mean: float) -> Path:
    path = folder / "waiting.toml"
    path.write_text(f"""
[data]
source = "blobs"
[model]
trainer = "waiting:SleepTrainer"
epochs = 1
mean = {mean}
[space]
learning_rate = {{ log_uniform = [1e-5, 1e-1] }}
beta1 = {{ one_minus_log_uniform = [0.5, 0.9999] }}
[search]
trials = {trials}
scheduler = "fifo"
concurrency = {workers}
""")
    return path


def timed(job: Path, out: Path, address: str, name: str, sampler: str, lag: int | None) -> tuple[float, float]:
    """(span, idle): seconds from the first trial's start to the last one's end (Ray's and the workers'
    start-up left out), and the share of the workers' time in that span not spent in a trial."""
    import pandas as pd

    from caviar.cli import main

    extra = ["--set", f"search.sampler={sampler}"] + (["--set", f"search.lag={lag}"] if lag is not None else [])
    status = main(["parallel", str(job), "--out", str(out), "--name", name, "--address", address, "--quiet",
                   *extra])
    assert status == 0, f"{name}: exit status {status}"
    epochs = pd.read_parquet(out / name / "epochs.parquet")
    span = float(epochs["ended"].max() - epochs["started"].min())
    workers = int(job.read_text().split("concurrency = ")[1].split()[0])
    return span, 1 - float((epochs["ended"] - epochs["started"]).sum()) / (workers * span)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mean", type=float, default=0.4, help="mean seconds per trial")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--lags", default="1,2,4", help="lags to try, as multiples of the workers")
    args = parser.parse_args()

    import contextlib
    import io

    import ray

    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    address = ray.get_runtime_context().gcs_address
    methods = [("random", "random", None)] + [(f"tpe lag {m * args.workers}", "tpe", m * args.workers)
                                              for m in (int(x) for x in args.lags.split(","))]
    walls: dict[str, list[tuple[float, float]]] = {label: [] for label, _, _ in methods}
    with tempfile.TemporaryDirectory() as tmp:
        job = write_job(Path(tmp), args.trials, args.workers, args.mean)
        for r in range(args.repeat):
            for label, sampler, lag in methods:   # taking turns: a busy spell hits every method alike
                with contextlib.redirect_stdout(io.StringIO()):
                    walls[label].append(timed(job, Path(tmp) / "out", address, f"{sampler}{lag}-{r}", sampler, lag))
    ray.shutdown()
    base = statistics.median(span for span, _ in walls["random"])
    print(f"{args.trials} trials of {args.mean} s on average, {args.workers} workers; median of {args.repeat} runs")
    print(f"{'method':<14}{'span s':>9}{'x random':>10}{'idle':>8}   spans")
    for label, values in walls.items():
        span, idle = (statistics.median(v[i] for v in values) for i in (0, 1))
        runs = ", ".join(f"{v[0]:.1f}" for v in values)
        print(f"{label:<14}{span:>9.2f}{span / base:>10.2f}{idle:>8.0%}   {runs}")


if __name__ == "__main__":
    main()
