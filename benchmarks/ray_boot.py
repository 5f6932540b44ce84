"""How much of the machine a local Ray's boot keeps busy: would a second process pay while it boots?

While `python -m caviar parallel` boots its Ray (caviar.sweep.local_ray), the driver trains on one
core. A second Ray-free trainer pays only if the boot leaves a core idle: this starts the same
child as a sweep does, `--repeat` times, and prints its boot wall time, the CPU seconds of its
process tree until it is up, and their ratio (cores kept busy; the machine has `cores`).

    python benchmarks/ray_boot.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def tree_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its live descendants."""
    try:
        root = psutil.Process(pid)
        processes = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0.0
    total = 0.0
    for process in processes:
        try:
            times = process.cpu_times()
            total += times.user + times.system + times.children_user + times.children_system
        except psutil.Error:
            continue   # ended between the listing and the look: its time is in its parent's children_*
    return total


def boot_once(cores: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of one local Ray's boot, up to the moment the driver could join."""
    from caviar.sweep.local_ray import LocalRay

    start = time.monotonic()
    head = LocalRay.start(cores)
    cpu = 0.0
    try:
        while not head.ready():
            cpu = max(cpu, tree_cpu(head.process.pid))   # sampled: a process that ends takes its time
            time.sleep(0.05)
        wall = time.monotonic() - start
        return wall, max(cpu, tree_cpu(head.process.pid))
    finally:
        head.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    print(f"{cores} cores; load average {os.getloadavg()[0]:.1f}")
    for _ in range(args.repeat):
        wall, cpu = boot_once(cores)
        # On a loaded machine the boot also waits for CPU: its busy share is then a lower bound.
        print(f"boot {wall:5.2f} s wall, {cpu:5.2f} CPU s: {cpu / wall:.2f} of {cores} cores busy, "
              f"the driver's trainer takes 1 more", flush=True)


if __name__ == "__main__":
    main()
