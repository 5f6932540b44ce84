"""Panda mode, measured (not a test): what babysitting costs per epoch, and what it buys.

1. Overhead: the real `caviar.babysit.loop` loop on digits (the default [64, 64] network). Each epoch's
   training time is the `seconds` column; everything else between two epoch lines (deciding,
   checkpointing with fsync, writing the rows, looking for nudges, printing) is overhead. Target:
   <= 5% of the epoch time. The parts are also timed one by one, outside the loop.
2. Recovery: final validation accuracy from a learning rate 10x too high, averaged over seeds, for
   a fixed rate, plateau-only cuts (what ReduceLROnPlateau does, same patience/factor/cooldown as
   [babysit]), and caviar's babysitter with rollback. "final" is the model each method ends with
   (the babysitter restores its best checkpoint); "best epoch" is the best validation accuracy
   seen on the way, what a baseline would keep with checkpoint-on-improvement.

    python benchmarks/babysit.py [--epochs 30] [--seeds 5]

Timings on a shared machine are noisy: the overhead is a ratio measured in the same run.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from caviar.babysit.loop import babysit
from caviar.store.checkpoints import CheckpointStore
from caviar.data import load_dataset
from caviar.config.job import BabysitSpec, parse_job
from caviar.nn.mlp import MLPTrainer
from caviar.babysit.policy import Day, PolicyState, step
from caviar.store.folder import open_run

# From a learning rate 10x too high: plain SGD without batch norm, where 1.0 trains well and 10
# blows up in the first epoch; and Adam without batch norm, where 0.01 trains well and 0.1 is noisy.
SCENARIOS = {
    "sgd, no batch norm, lr 10 (good: 1)": {"optimizer": "sgd", "batch_norm": False, "learning_rate": 10.0},
    "adam, no batch norm, lr 0.1 (good: 0.01)": {"optimizer": "adam", "batch_norm": False, "learning_rate": 0.1},
}
BASE_MODEL = {"hidden_layers": [64, 64]}


def run_babysit(model: dict, epochs: int, seed: int, out: Path, name: str, lines: list | None = None,
                babysit_table: dict | None = None):
    """One real babysat run in-process (fsync on, as the command does); returns (summary, epochs table)."""
    import pandas as pd

    job = parse_job({"name": name, "model": model,
                     "babysit": {"epochs": epochs, "seed": seed, **(babysit_table or {})}})
    run = open_run(out, name, job.to_toml(), overwrite=True)
    echo = (lambda line: lines.append(time.perf_counter())) if lines is not None else (lambda line: None)
    summary = babysit(job, run, echo=echo)
    return summary, pd.read_parquet(run.path / "epochs.parquet")


def overhead(epochs: int, out: Path) -> None:
    stamps: list[float] = []
    # A policy that lets it run all its epochs (no early stop on min_lr), as a long run would.
    _, table = run_babysit(dict(BASE_MODEL), epochs, 0, out, "overhead", stamps, {"patience": 10 * epochs})
    # stamps[0] is the start line; stamps[k] follows epoch k. Step k = stamps[k] - stamps[k-1].
    steps = np.diff(stamps[1:])  # from epoch 2 on: no first-epoch warm-up
    train = table["seconds"].to_numpy()[1: len(steps) + 1]
    extra = steps - train
    run, last = slice(0, -1), -1  # the last epoch always checkpoints (the run stops): a one-off, like compaction
    print(f"overhead of babysitting, {len(steps) + 1} epochs of digits, hidden [64, 64]:")
    print(f"  epoch (training + validation)  {train.mean() * 1e3:7.2f} ms on average")
    print(f"  everything else in the loop    {extra[run].mean() * 1e3:7.2f} ms on average = "
          f"{extra[run].sum() / train[run].sum():.1%} of the epoch time (target <= 5%)")
    print(f"    most epochs {np.median(extra) * 1e3:.2f} ms ({np.median(extra) / np.median(train):.1%}); "
          f"an epoch that checkpoints up to {extra[run].max() * 1e3:.1f} ms; {(extra[run] > 5 * np.median(extra)).sum()} "
          f"checkpointed of {len(extra) - 1}")
    print(f"    the last epoch's checkpoint {extra[last] * 1e3:.1f} ms; counting it too: "
          f"{extra.sum() / train.sum():.1%}")

    # The parts, one by one, on the same trainer.
    data = load_dataset("digits")
    trainer = MLPTrainer(BASE_MODEL, data, 0)
    trainer.train_epoch()
    spec = BabysitSpec()
    state, n = PolicyState(), 200
    t = time.perf_counter()
    for e in range(1, n + 1):
        _, state = step(state, Day(e, 0.9 + 1e-4 * np.sin(e), 0.3, 1e-3), spec)
    decide = (time.perf_counter() - t) / n
    with tempfile.TemporaryDirectory() as tmp:
        store = CheckpointStore(Path(tmp), keep=spec.keep_checkpoints)
        t = time.perf_counter()
        for e in range(1, 21):
            store.save(e, trainer.state_dict(), {"epoch": e, "policy": state.to_dict()}, best=e % 3 == 0)
        save = (time.perf_counter() - t) / 20
        fast = CheckpointStore(Path(tmp) / "nofsync", keep=spec.keep_checkpoints, fsync=False)
        t = time.perf_counter()
        for e in range(1, 21):
            fast.save(e, trainer.state_dict(), {"epoch": e}, best=False)
        save_nofsync = (time.perf_counter() - t) / 20
        run = open_run(tmp, "rows", "name = 'rows'\n")
        row = {"epoch": 1, "learning_rate": 1e-3, "seconds": 0.01, "train_loss": 0.3, "val_accuracy": 0.9,
               "decision": "continue"}
        t = time.perf_counter()
        for e in range(1, 21):
            run.table("epochs").append([{**row, "epoch": e}])
            run.table("epochs").flush()
        flush = (time.perf_counter() - t) / 20
    epoch = float(np.median(train))
    print("  the parts, timed alone:")
    for what, seconds in (("decide (policy.step)", decide), ("checkpoint (fsync)", save),
                          ("checkpoint (no fsync)", save_nofsync), ("one table part (fsync)", flush)):
        print(f"    {what:<24} {seconds * 1e3:8.3f} ms  = {seconds / epoch:6.1%} of an epoch")


def fixed_and_plateau(model: dict, epochs: int, seed: int, spec: BabysitSpec) -> dict[str, tuple[float, float]]:
    """(final, best epoch) validation accuracy of a fixed rate and of plateau-only cuts."""
    data = load_dataset("digits")
    results = {}
    for method in ("fixed", "plateau"):
        trainer = MLPTrainer(model, data, seed)
        lr, best, wait, cooldown, accs = model["learning_rate"], -np.inf, 0, 0, []
        for _ in range(epochs):
            acc = trainer.train_epoch()["val_accuracy"]
            accs.append(acc)
            if method == "plateau":  # PyTorch's ReduceLROnPlateau(mode="max"), step by step
                if acc > best + spec.min_delta:
                    best, wait = acc, 0
                else:
                    wait += 1
                if cooldown > 0:
                    cooldown, wait = cooldown - 1, 0
                if wait >= spec.patience:
                    lr, wait, cooldown = max(lr * spec.plateau_factor, spec.min_lr), 0, spec.cooldown
                    trainer.set_hyperparameters(learning_rate=lr)
        finite = [a for a in accs if np.isfinite(a)]
        results[method] = (accs[-1], max(finite) if finite else np.nan)
    return results


def recovery(epochs: int, seeds: int, out: Path) -> None:
    spec = BabysitSpec()
    print(f"\nfinal validation accuracy from a learning rate 10x too high ({epochs} epochs, digits, hidden "
          f"[64, 64], mean over {seeds} seeds; [babysit] defaults):")
    header = f"  {'scenario':<42} {'method':<26} {'final':>7} {'best epoch':>11} {'lr at end':>10}"
    print(header)
    for title, overrides in SCENARIOS.items():
        model = {**BASE_MODEL, **overrides}
        rows: dict[str, list[tuple[float, float, float]]] = {}
        for seed in range(seeds):
            base = fixed_and_plateau(model, epochs, seed, spec)
            rows.setdefault("fixed learning rate", []).append((*base["fixed"], np.nan))
            rows.setdefault("plateau-only cuts", []).append((*base["plateau"], np.nan))
            summary, table = run_babysit(model, epochs, seed, out, f"recovery-{seed}")
            rows.setdefault("caviar babysit (rollback)", []).append(
                (summary.best_score, float(table["val_accuracy"].max()), float(table["learning_rate"].iloc[-1])))
        for method, values in rows.items():
            final, best, lr = (float(np.nanmean(col)) if not np.all(np.isnan(col)) else np.nan
                               for col in np.array(values).T)
            lr_text = "" if np.isnan(lr) else f"{lr:.1e}"
            print(f"  {title:<42} {method:<26} {final:7.4f} {best:11.4f} {lr_text:>10}")
            title = ""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--overhead-epochs", type=int, default=150)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        overhead(args.overhead_epochs, Path(tmp))
        recovery(args.epochs, args.seeds, Path(tmp))


if __name__ == "__main__":
    main()
