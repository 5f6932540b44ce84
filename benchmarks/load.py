"""Results store speed: writing a 10,000-trial sweep through TableWriter, and reading it back with
`caviar.load` against reading the same data from CSV with `pandas.read_csv`.

    python benchmarks/load.py                     # 10,000 trials x 20 epochs = 200,000 epoch rows
    python benchmarks/load.py --trials 2000       # smaller

The write side appends rows as the parallel driver does (one trials row and its 20 epoch rows per
result) and flushes every 100 results. The read side runs each reader in a fresh process, three
times: seconds (best of three) and peak memory (growth of the process's peak RSS over what it
held after its imports, median of three). The machine is shared, so read the ratios, not the
absolute numbers.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FLUSH_EVERY = 100
REPEATS = 3
METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")


def sweep_rows(n_trials: int, n_epochs: int, seed: int = 0):
    """(trial row, its epoch rows) for each trial of a realistic sweep, as the driver writes them."""
    rng = np.random.default_rng(seed)
    for trial_id in range(n_trials):
        lr = 10 ** rng.uniform(-4, -1)
        config = {"params_learning_rate": lr, "params_beta1": 1 - 10 ** rng.uniform(-3, -1),
                  "params_batch_size": int(rng.choice([32, 64, 128, 256])),
                  "params_optimizer": str(rng.choice(["adam", "momentum", "rmsprop"]))}
        curve = 1 - np.exp(-np.arange(1, n_epochs + 1) * rng.uniform(0.05, 0.5))
        epochs = [{"trial_id": trial_id, "epoch": e + 1, "learning_rate": lr, "seconds": rng.uniform(0.5, 2),
                   "train_loss": 2.3 * (1 - curve[e]) + 0.05, "train_accuracy": 0.1 + 0.88 * curve[e],
                   "val_loss": 2.3 * (1 - curve[e]) + 0.1, "val_accuracy": 0.1 + 0.85 * curve[e]}
                  for e in range(n_epochs)]
        failed = rng.random() < 0.02
        trial = {"trial_id": trial_id, "status": "failed" if failed else "completed", **config,
                 "score": float("nan") if failed else max(r["val_accuracy"] for r in epochs),
                 "epochs": n_epochs, "seconds": sum(r["seconds"] for r in epochs), "seed": int(rng.integers(2**31)),
                 "error": "FloatingPointError: loss is nan" if failed else None, "node": "10.0.0.7", "round": 0}
        if not failed:
            trial |= {k: epochs[-1][k] for k in METRICS}
        yield trial, epochs


def write_run(out: Path, n_trials: int, n_epochs: int) -> dict[str, float]:
    """Write the sweep through TableWriter; throughput figures. Leaves `out/parts` (as a killed run
    would) and `out/sweep` (the same, compacted)."""
    from caviar.store.folder import open_run

    rows = list(sweep_rows(n_trials, n_epochs))
    run = open_run(out, "sweep", 'name = "sweep"\n', overwrite=True)
    trials, epochs = run.table("trials"), run.table("epochs")
    flush_seconds = []
    start = time.perf_counter()
    for i, (trial, epoch_rows) in enumerate(rows, 1):
        epochs.append(epoch_rows)
        trials.append([trial])
        if i % FLUSH_EVERY == 0:
            t = time.perf_counter()
            run.flush()
            flush_seconds.append(time.perf_counter() - t)
    run.flush()
    written = time.perf_counter() - start
    shutil.copytree(run.path, out / "parts")
    start = time.perf_counter()
    run.compact()
    compact = time.perf_counter() - start
    tenth = max(1, len(flush_seconds) // 10)
    return {"results_per_s": n_trials / written, "epoch_rows_per_s": n_trials * n_epochs / written,
            "append_only_per_s": n_trials / (written - sum(flush_seconds)),
            "flushes": len(flush_seconds), "first_flushes_ms": 1e3 * statistics.median(flush_seconds[:tenth]),
            "last_flushes_ms": 1e3 * statistics.median(flush_seconds[-tenth:]), "compact_s": compact}


def write_csv(out: Path) -> None:
    from caviar.store.reader import load

    run = load(out / "sweep")
    (out / "csv").mkdir(exist_ok=True)
    run.trials.to_csv(out / "csv" / "trials.csv", index=False)
    run.epochs.to_csv(out / "csv" / "epochs.csv", index=False)


def vm_mb(field: str) -> float:
    """A memory figure of this process from /proc (VmRSS: now, VmHWM: peak since the last reset)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) / 1024 for line in f if line.startswith(field + ":"))


def measure(method: str, path: str) -> None:
    """(In a fresh process) read trials and epochs one way; print seconds and peak memory as JSON.

    Peak memory: how far the resident set rose above what the process held after its imports
    (the peak is reset first, so import-time peaks do not count; Arrow's allocations count too,
    which tracemalloc would miss).
    """
    import pandas as pd

    import caviar.store.reader as io

    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")                  # reset VmHWM to the current resident set
    base = vm_mb("VmRSS")
    start = time.perf_counter()
    if method == "csv":
        frames = [pd.read_csv(Path(path) / "trials.csv"), pd.read_csv(Path(path) / "epochs.csv")]
    elif method == "read_parquet":
        frames = [pd.read_parquet(Path(path) / "trials.parquet"), pd.read_parquet(Path(path) / "epochs.parquet")]
    else:
        run = io.load(path)
        frames = [run.trials, run.epochs]
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "peak_mb": vm_mb("VmHWM") - base,
                      "held_mb": sum(f.memory_usage(deep=True).sum() for f in frames) / 2**20,
                      "rows": sum(len(f) for f in frames)}))


def disk_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=10_000)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--measure", nargs=2, metavar=("METHOD", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        measure(*args.measure)
        return
    with tempfile.TemporaryDirectory(prefix="caviar-bench-") as tmp:
        out = Path(tmp)
        print(f"writing {args.trials:,} trials x {args.epochs} epochs "
              f"({args.trials * args.epochs:,} epoch rows), flushing every {FLUSH_EVERY} results ...")
        w = write_run(out, args.trials, args.epochs)
        write_csv(out)
        print(f"append: {w['results_per_s']:,.0f} results/s = {w['epoch_rows_per_s']:,.0f} epoch rows/s "
              f"(+ 1 trials row each), {w['flushes']} flushes, each part fsynced; "
              f"append alone {w['append_only_per_s']:,.0f} results/s")
        print(f"flush (trials + epochs parts): first tenth {w['first_flushes_ms']:.1f} ms, last tenth "
              f"{w['last_flushes_ms']:.1f} ms (ratio {w['last_flushes_ms'] / w['first_flushes_ms']:.2f}: "
              f"does not grow with the run); compact at the end {w['compact_s']:.2f} s")
        cases = [("pandas.read_csv (baseline)", "csv", out / "csv"),
                 ("caviar.load, compacted", "load", out / "sweep"),
                 ("caviar.load, parts (killed run)", "load", out / "parts"),
                 ("pandas.read_parquet, compacted", "read_parquet", out / "sweep")]
        results = {}
        for label, method, path in cases:
            runs = [json.loads(subprocess.run([sys.executable, __file__, "--measure", method, str(path)],
                                              check=True, capture_output=True, text=True).stdout)
                    for _ in range(REPEATS)]
            results[label] = (min(r["seconds"] for r in runs), statistics.median(r["peak_mb"] for r in runs),
                              runs[0]["held_mb"], disk_mb(path))
        base_s, base_mb = results[cases[0][0]][:2]
        print(f"\nreading trials + epochs ({args.trials:,} + {args.trials * args.epochs:,} rows), "
              f"best of {REPEATS} fresh processes:")
        print(f"{'reader':<34}{'seconds':>9}{'x CSV':>8}{'peak MB':>10}{'x CSV':>8}{'frames MB':>11}{'disk MB':>9}")
        for label, (seconds, peak, held, disk) in results.items():
            print(f"{label:<34}{seconds:>9.3f}{seconds / base_s:>8.2f}{peak:>10.1f}"
                  f"{peak / base_mb if base_mb > 0 else float('nan'):>8.2f}{held:>11.1f}{disk:>9.1f}")


if __name__ == "__main__":
    main()
