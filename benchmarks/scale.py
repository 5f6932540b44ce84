"""Driver cost at scale: overhead per trial, peak driver memory, and results per second.

Each measurement runs `python -m caviar parallel` as a subprocess against a Ray started once by this
script (start-up not counted), with `benchmarks.trainers:SpinTrainer`, whose epochs busy-wait an
exact time, so the compute floor is known:

    floor = trials x epochs x spin / workers
    overhead per trial = (wall - floor) / trials          (Ray Tune's published test: ~9 ms)

Peak memory is the driver process's resident set, sampled every 20 ms.

    python benchmarks/scale.py [--sizes 1000,10000] [--spin 0.01]
"""

from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent


def job_file(folder: Path, trials: int, epochs: int, spin: float) -> Path:
    path = folder / f"scale-{trials}-{epochs}.toml"
    path.write_text(f"""
name = "scale"
[data]
source = "blobs"
options = {{ n_samples = 200, n_features = 4, n_classes = 2 }}
[model]
trainer = "benchmarks.trainers:SpinTrainer"
epochs = {epochs}
spin = {spin}
[space]
learning_rate = {{ log_uniform = [1e-4, 1e-1] }}
[search]
trials = {trials}
scheduler = "fifo"
""")
    return path


def run_driver(job: Path, out: Path, address: str, workers: int) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of one driver run."""
    command = [sys.executable, "-m", "caviar", "parallel", str(job), "--out", str(out), "--address", address,
               "--concurrency", str(workers), "--quiet"]
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    watched = psutil.Process(process.pid)
    peak = 0
    while process.poll() is None:
        try:
            peak = max(peak, watched.memory_info().rss)
        except psutil.NoSuchProcess:
            break
        time.sleep(0.02)
    wall = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(process.stderr.read().decode())
    return wall, peak / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,10000")
    parser.add_argument("--spin", type=float, default=0.01, help="seconds of compute per trial")
    parser.add_argument("--throughput-trials", type=int, default=1000)
    parser.add_argument("--throughput-epochs", type=int, default=20)
    args = parser.parse_args()
    workers = os.cpu_count() or 1

    import ray

    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
    address = ray.get_runtime_context().gcs_address
    env_note = f"{workers} workers, trials of {args.spin * 1000:.0f} ms"
    print(f"caviar driver at scale ({env_note})")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run_driver(job_file(tmp, 20, 1, args.spin), tmp / "warm", address, workers)  # warm the worker pool
        # An empty sweep's driver: start-up, actors, data, compaction; subtracted as a fixed cost.
        fixed, _ = run_driver(job_file(tmp, workers, 1, 0.0), tmp / "fixed", address, workers)
        print(f"fixed cost of a driver run (start-up, actors, data, final compaction): {fixed:.2f} s")
        print(f"{'trials':>8} {'wall s':>8} {'floor s':>8} {'overhead ms/trial':>18} {'peak driver MB':>15}")
        for size in [int(s) for s in args.sizes.split(",")]:
            wall, peak = run_driver(job_file(tmp, size, 1, args.spin), tmp / f"out{size}", address, workers)
            floor = size * args.spin / workers
            print(f"{size:>8} {wall:>8.1f} {floor:>8.1f} {(wall - fixed - floor) / size * 1000:>18.2f} {peak:>15.0f}")
        n, e = args.throughput_trials, args.throughput_epochs
        wall, peak = run_driver(job_file(tmp, n, e, 0.0), tmp / "tp", address, workers)
        print(f"throughput: {n} trials x {e} epochs of no compute: {n * e / (wall - fixed):,.0f} results/s "
              f"({n * e / wall:,.0f} counting the fixed cost), peak driver {peak:.0f} MB")
    ray.shutdown()


if __name__ == "__main__":
    main()
