"""Seconds per epoch: caviar's NumPy MLP trainer against the same network in PyTorch (CPU).

Both sides: one BLAS / intra-op thread (threadpoolctl and torch.set_num_threads(1)), float32, the
same batch size, one hidden layer (dense -> batch norm -> relu, or dense + bias -> relu with
--no-batch-norm) and a softmax output, cross-entropy, Adam (lr 1e-3). An "epoch" is what
`MLPTrainer.train_epoch` does: shuffle the training set once, one pass of mini-batches (summing
the batch loss and correct count), then an evaluation pass over the validation set in eval mode.
Torch's Adam runs with its defaults (on CPU: the single-tensor, non-fused implementation).

Shapes: digits (1,438 x 64 train / 359 valid, 64 units, batch 32 and 128) and a synthetic
20,000 x 784 training set with 10 classes and 2,000 validation rows (256 units batch 128;
512 units batch 512).

The machine is shared, so repetitions interleave numpy and torch (alternating which goes first)
and the table shows medians and their ratio, in process CPU time (steady under contention: time
other processes hold the core is not counted) and in wall time. Peak memory is measured per
framework in a fresh subprocess: the growth of peak RSS (reset through /proc/self/clear_refs after
the data is built and the framework imported) over building the model and two epochs, so torch's
figure includes the library code it pages in on first use; plus tracemalloc's peak for the NumPy
trainer (what NumPy itself allocates; most of it is the shuffled copy of the training set).

    python benchmarks/trainer.py                # all four shapes, 7 repetitions of 2 epochs
    python benchmarks/trainer.py --reps 3 --shapes digits-b32
    python benchmarks/trainer.py --no-batch-norm

Needs torch (pip install torch==2.13.0, the `bench` extra). Never run by the test suite.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import subprocess
import sys
import time
import tracemalloc
from dataclasses import dataclass
from typing import Callable

import numpy as np
from threadpoolctl import threadpool_limits

from caviar.data import Dataset, load_dataset
from caviar.nn.mlp import MLPTrainer


@dataclass(frozen=True)
class Shape:
    data: str  # "digits" or "synthetic"
    hidden: int
    batch_size: int


SHAPES = {
    "digits-b32": Shape("digits", 64, 32),
    "digits-b128": Shape("digits", 64, 128),
    "synth784-h256-b128": Shape("synthetic", 256, 128),
    "synth784-h512-b512": Shape("synthetic", 512, 512),
}


def synthetic(n_train: int = 20_000, n_valid: int = 2_000, d: int = 784, n_classes: int = 10) -> Dataset:
    """Gaussian classes around random centres, generated in float32 (no float64 temporaries)."""
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((n_classes, d), dtype=np.float32)

    def split(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, n_classes, n)
        x = rng.standard_normal((n, d), dtype=np.float32)
        x *= 3.0
        x += centres[y]
        return x, y

    (xt, yt), (xv, yv) = split(n_train), split(n_valid)
    mean, std = xt.mean(axis=0), xt.std(axis=0)
    xt -= mean
    xt /= std
    xv -= mean
    xv /= std
    return Dataset(xt, yt, xv, yv, xt[:0], yt[:0], n_classes, "synthetic")


def load(shape: Shape) -> Dataset:
    return load_dataset("digits") if shape.data == "digits" else synthetic()


def numpy_runner(shape: Shape, data: Dataset, batch_norm: bool) -> Callable[[], None]:
    config = {"hidden_layers": [shape.hidden], "batch_size": shape.batch_size, "batch_norm": batch_norm}
    trainer = MLPTrainer(config, data, seed=0)
    return lambda: trainer.train_epoch() and None


def torch_runner(shape: Shape, data: Dataset, batch_norm: bool) -> Callable[[], None]:
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(0)
    d, h, c = data.x_train.shape[1], shape.hidden, data.n_classes
    body = [nn.Linear(d, h, bias=False), nn.BatchNorm1d(h, eps=1e-5, momentum=0.1)] if batch_norm else [nn.Linear(d, h)]
    model = nn.Sequential(*body, nn.ReLU(), nn.Linear(h, c))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, betas=(0.9, 0.999), eps=1e-8)
    x, y = torch.from_numpy(data.x_train), torch.from_numpy(data.y_train)
    xv, yv = torch.from_numpy(data.x_valid), torch.from_numpy(data.y_valid)
    gen = torch.Generator().manual_seed(0)
    n, b = x.shape[0], shape.batch_size

    def epoch() -> None:
        model.train()
        order = torch.randperm(n, generator=gen)
        xs, ys = x[order], y[order]
        loss_sum, correct = torch.zeros(()), torch.zeros((), dtype=torch.int64)
        for lo in range(0, n, b):
            xb, yb = xs[lo:lo + b], ys[lo:lo + b]
            if batch_norm and xb.shape[0] < 2:
                break
            scores = model(xb)
            loss = F.cross_entropy(scores, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * xb.shape[0]
            correct += (scores.detach().argmax(1) == yb).sum()
        model.eval()
        with torch.no_grad():
            for lo in range(0, xv.shape[0], 512):
                scores = model(xv[lo:lo + 512])
                loss_sum += F.cross_entropy(scores, yv[lo:lo + 512], reduction="sum")
                correct += (scores.argmax(1) == yv[lo:lo + 512]).sum()
        float(loss_sum), int(correct)

    return epoch


def pin_threads() -> None:
    threadpool_limits(1)
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass


def time_shape(shape: Shape, reps: int, epochs: int, batch_norm: bool) -> dict[str, tuple[float, float]]:
    """Median seconds per epoch per framework, as (process CPU time, wall time), repetitions
    interleaved. CPU time is the steadier measure on a shared machine: it does not count the time
    other processes hold the core (both sides run on this one thread)."""
    data = load(shape)
    runners = {"numpy": numpy_runner(shape, data, batch_norm), "torch": torch_runner(shape, data, batch_norm)}
    for run in runners.values():  # warm-up: buffers, lazy imports, allocator pools
        run()
    cpu: dict[str, list[float]] = {"numpy": [], "torch": []}
    wall: dict[str, list[float]] = {"numpy": [], "torch": []}
    for rep in range(reps):
        for name in (("numpy", "torch") if rep % 2 == 0 else ("torch", "numpy")):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            for _ in range(epochs):
                runners[name]()
            cpu[name].append((time.process_time() - start_cpu) / epochs)
            wall[name].append((time.perf_counter() - start_wall) / epochs)
    return {name: (statistics.median(cpu[name]), statistics.median(wall[name])) for name in runners}


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def memory_probe(framework: str, shape: Shape, batch_norm: bool) -> None:
    """(In a fresh process.) Print peak RSS growth in MiB over building the model and two epochs,
    and for numpy also tracemalloc's peak in MiB."""
    pin_threads()
    data = load(shape)
    make = numpy_runner if framework == "numpy" else torch_runner
    if framework == "torch":
        import torch  # noqa: F401  (library pages are not the model's memory)
    with open("/proc/self/clear_refs", "w") as f:  # reset VmHWM, the peak RSS, to the current RSS
        f.write("5")
    base = _rss_kib("VmRSS")
    if framework == "numpy":
        tracemalloc.start()
    run = make(shape, data, batch_norm)
    run()
    run()
    traced = tracemalloc.get_traced_memory()[1] / 2**20 if framework == "numpy" else math.nan
    print(f"{(_rss_kib('VmHWM') - base) / 1024:.2f} {traced:.2f}")


def measure_memory(framework: str, name: str, batch_norm: bool) -> tuple[float, float]:
    cmd = [sys.executable, __file__, "--memory-probe", framework, "--shapes", name]
    if not batch_norm:
        cmd.append("--no-batch-norm")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.split()
    return float(out[0]), float(out[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=7, help="interleaved repetitions per framework")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per repetition")
    parser.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=list(SHAPES))
    parser.add_argument("--no-batch-norm", action="store_true", help="dense + bias instead of batch norm, both sides")
    parser.add_argument("--memory-probe", choices=("numpy", "torch"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    batch_norm = not args.no_batch_norm
    if args.memory_probe:
        memory_probe(args.memory_probe, SHAPES[args.shapes[0]], batch_norm)
        return
    pin_threads()
    print(f"batch norm {'on' if batch_norm else 'off'} on both sides; 1 thread each; float32; Adam; "
          f"median of {args.reps} interleaved repetitions of {args.epochs} epochs; "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}, "
          f"OPENBLAS_L2_SIZE={os.environ.get('OPENBLAS_L2_SIZE', '(unset)')}")
    print(f"{'':<20} {'CPU s/epoch':^27} {'wall s/epoch':^27} {'peak memory MiB':^34}")
    print(f"{'shape':<20} {'numpy':>8} {'torch':>8} {'ratio':>9} {'numpy':>8} {'torch':>8} {'ratio':>9} "
          f"{'np RSS':>8} {'np traced':>10} {'torch RSS':>10}")
    for name in args.shapes:
        t = time_shape(SHAPES[name], args.reps, args.epochs, batch_norm)
        rss_np, traced_np = measure_memory("numpy", name, batch_norm)
        rss_torch, _ = measure_memory("torch", name, batch_norm)
        (cpu_np, wall_np), (cpu_torch, wall_torch) = t["numpy"], t["torch"]
        print(f"{name:<20} {cpu_np:>8.4f} {cpu_torch:>8.4f} {cpu_np / cpu_torch:>9.2f} "
              f"{wall_np:>8.4f} {wall_torch:>8.4f} {wall_np / wall_torch:>9.2f} "
              f"{rss_np:>8.1f} {traced_np:>10.1f} {rss_torch:>10.1f}", flush=True)

if __name__ == "__main__":
    main()
