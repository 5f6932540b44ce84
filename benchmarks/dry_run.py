"""`caviar parallel --dry-run` of a million trials against a thousand, in the same run.

The dry run shows the first 50 configurations and counts the rest, so its time should hardly grow
with the number of trials (it took 85 s and 1.4 GB for a million random trials before the cut).
Prints each sampler's median wall time and the ratio million ÷ thousand; methods take turns.

    python benchmarks/dry_run.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def dry_run(trials: int, sampler: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "caviar", "parallel", "--dry-run", "--set", f"search.trials={trials}",
                    "--set", f"search.sampler={sampler}"], check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    for sampler in ("random", "sobol", "coarse_to_fine"):
        times: dict[int, list[float]] = {1_000: [], 1_000_000: []}
        for _ in range(args.repeats):
            for trials in times:   # interleaved: the machine's noise falls on both alike
                times[trials].append(dry_run(trials, sampler))
        small, large = (statistics.median(times[t]) for t in times)
        print(f"{sampler:15s} 1,000 trials {small:5.2f} s   1,000,000 trials {large:5.2f} s   ratio {large / small:4.2f}")


if __name__ == "__main__":
    main()
