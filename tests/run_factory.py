"""Build realistic run folders for tests, exactly in the layout the drivers write (DESIGN.md).

A sweep folder holds `job.toml`, `trials.parquet/` (with the times and the job's `model_` values)
and `epochs.parquet/`; a babysat folder holds
`job.toml`, `epochs.parquet/` (with a `decision` column), `events.parquet/` and `checkpoints/`; a
population (`scheduler = "pbt"`) a sweep's tables plus `events.parquet/` of its copies.
Every table is a FOLDER of part files (`part-000000.parquet`, ...), as the store writes them
before compaction. The numbers are simulated from a seeded generator so tests know the truth:
in a sweep the score is driven by log10(learning_rate) (best near 10**-2.5), and the other
hyperparameters only add noise.

    from tests.run_factory import make_sweep, make_babysit
    sweep = make_sweep(tmp_path, "sweep")          # -> tmp_path / "sweep"
    panda = make_babysit(tmp_path, "panda")
    pop = make_population(tmp_path, "pop")

Nothing here imports caviar: the folders are an independent oracle for the read side.
"""

from __future__ import annotations

import json
import math
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import tomli_w

METRICS = ("train_loss", "train_accuracy", "val_loss", "val_accuracy")
START = datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc)   # when every simulated run began (UTC)

SPACE: dict[str, Any] = {
    "learning_rate": {"log_uniform": [1e-4, 1e-1]},
    "beta1": {"one_minus_log_uniform": [0.9, 0.999]},
    "batch_size": {"choice": [32, 64, 128, 256]},
    "l2": {"log_uniform": [1e-6, 1e-2]},
}


def job_dict(name: str, *, metric: str = "val_accuracy", mode: str = "max", trials: int = 24,
             epochs: int = 6, sampler: str = "random", space: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A complete job as `Job.to_toml()` writes it (every section, overrides already applied)."""
    return {
        "name": name,
        "data": {"source": "digits", "target": "label", "valid_fraction": 0.2, "test_fraction": 0.0, "seed": 0},
        "model": {"trainer": "mlp", "hidden_layers": [64, 64], "batch_norm": True, "optimizer": "adam",
                  "learning_rate": 0.001, "batch_size": 64, "epochs": epochs},
        "space": dict(SPACE if space is None else space),
        "search": {"sampler": sampler, "trials": trials, "scheduler": "asha", "metric": metric, "mode": mode,
                   "concurrency": 0, "seed": 0},
        "babysit": {"epochs": 12, "patience": 3, "metric": metric, "mode": mode, "seed": 0},
    }


def write_table(folder: Path, frame: pd.DataFrame, parts: int = 1) -> None:
    """Write `frame` as a folder of `parts` part files (row order kept across parts)."""
    folder.mkdir(parents=True, exist_ok=True)
    chunks = np.array_split(np.arange(len(frame)), max(1, parts)) if len(frame) else [np.arange(0)]
    for seq, rows in enumerate(chunks):
        table = pa.Table.from_pandas(frame.iloc[rows].reset_index(drop=True), preserve_index=False)
        pq.write_table(table, folder / f"part-{seq:06d}.parquet")


def _write_job(run: Path, job: Mapping[str, Any]) -> None:
    run.mkdir(parents=True, exist_ok=True)
    (run / "job.toml").write_text(tomli_w.dumps(dict(job)))


def simulate_sweep(n_trials: int = 24, *, epochs: int = 6, seed: int = 0, rounds: int = 1,
                   failed: int = 1, pruned_fraction: float = 0.3) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, epochs) tables of a simulated sweep over `SPACE`.

    Accuracy after `e` epochs is `peak * (1 - exp(-e / 2))` with `peak = 0.95 - 0.08 * (log10(lr) + 2.5)**2`
    plus small noise; a trial's score is its best epoch. The last `failed` trials fail after one
    epoch (NaN score, an error message); as ASHA would, the `pruned_fraction` of the others with the
    worst accuracy at epoch 2 stop there.
    """
    rng = np.random.default_rng(seed)
    configs, histories = [], []
    for _ in range(n_trials):
        lr = float(10 ** rng.uniform(-4, -1))
        configs.append({"params_learning_rate": lr, "params_beta1": float(1 - 10 ** rng.uniform(-3, -1)),
                        "params_batch_size": int(rng.choice([32, 64, 128, 256])),
                        "params_l2": float(10 ** rng.uniform(-6, -2))})
        peak = 0.95 - 0.08 * (math.log10(lr) + 2.5) ** 2
        history = []
        for epoch in range(1, epochs + 1):
            acc = peak * (1 - math.exp(-epoch / 2)) + float(rng.normal(0, 0.005))
            history.append({"train_loss": 2.3 * (1 - acc) + 0.01, "train_accuracy": min(acc + 0.02, 1.0),
                            "val_loss": 2.3 * (1 - acc) + 0.05, "val_accuracy": acc})
        histories.append(history)
    alive = [t for t in range(n_trials - failed)]
    at_rung = sorted(alive, key=lambda t: histories[t][min(1, epochs - 1)]["val_accuracy"])
    pruned = set(at_rung[: int(round(pruned_fraction * len(alive)))]) if epochs > 2 else set()
    trial_rows: list[dict[str, Any]] = []
    epoch_rows: list[dict[str, Any]] = []
    for trial_id, (config, history) in enumerate(zip(configs, histories)):
        is_failed = trial_id >= n_trials - failed
        history = history[:1] if is_failed else history[:2] if trial_id in pruned else history
        started = START + timedelta(seconds=trial_id)   # one trial a second, each epoch half a second
        for epoch, metrics in enumerate(history, start=1):
            epoch_rows.append({"trial_id": trial_id, "epoch": epoch, "learning_rate": config["params_learning_rate"],
                               "seconds": 0.5 + 0.01 * config["params_batch_size"] / 32,
                               "time": started + timedelta(seconds=0.5 * epoch), **metrics})
        if is_failed:
            score, status, error = math.nan, "failed", "FloatingPointError: loss is nan at epoch 1"
            last = {name: math.nan for name in METRICS}
        else:
            score = max(m["val_accuracy"] for m in history)
            status, error = ("pruned" if trial_id in pruned else "completed"), None
            last = history[-1]
        trial_rows.append({
            "trial_id": trial_id, "status": status, **config,
            "score": score, "epochs": len(history), "seconds": 0.5 * len(history) + 0.1, "seed": 1000 + trial_id,
            "error": error, "node": "127.0.0.1", "round": trial_id * rounds // n_trials,
            "started_at": started, "finished_at": started + timedelta(seconds=0.5 * len(history)), **last,
        })
    trials = pd.DataFrame(trial_rows).astype({"trial_id": "int64", "params_batch_size": "int64", "epochs": "int64",
                                              "seed": "int64", "round": "int64"})
    return trials, pd.DataFrame(epoch_rows).astype({"trial_id": "int64", "epoch": "int64"})


def make_sweep(root: Path, name: str = "sweep", *, n_trials: int = 24, epochs: int = 6, seed: int = 0,
               rounds: int = 1, failed: int = 1, parts: int = 2, with_epochs: bool = True,
               mode: str = "max", legacy: bool = False, pruned_fraction: float = 0.3) -> Path:
    """Write a sweep run folder `root/name` and return its path.

    `mode="min"` stores the job with `metric = "val_loss", mode = "min"` and scores the trials by
    their lowest val_loss, so sorting by the job's mode can be checked. `legacy=True` writes it as
    caviar 0.1.0 did: no time columns (`started_at`, `finished_at`, `time`) and no `model_` ones.
    """
    run = Path(root) / name
    trials, epoch_table = simulate_sweep(n_trials, epochs=epochs, seed=seed, rounds=rounds, failed=failed,
                                         pruned_fraction=pruned_fraction)
    metric = "val_accuracy"
    if mode == "min":
        metric = "val_loss"
        best_loss = epoch_table.groupby("trial_id")["val_loss"].min()
        trials["score"] = trials["trial_id"].map(best_loss).where(trials["status"] != "failed")
    sampler = "coarse_to_fine" if rounds > 1 else "random"
    job = job_dict(name, metric=metric, mode=mode, trials=n_trials, epochs=epochs, sampler=sampler)
    _write_job(run, job)
    # The job's fixed values, after the times and before the metrics, as the driver writes them.
    at = trials.columns.get_loc("finished_at") + 1
    for offset, (key, value) in enumerate((k, v) for k, v in job["model"].items() if k not in job["space"]):
        trials.insert(at + offset, f"model_{key}", json.dumps(value) if isinstance(value, list) else value)
    if legacy:
        trials = trials.drop(columns=["started_at", "finished_at"] + [c for c in trials if c.startswith("model_")])
        epoch_table = epoch_table.drop(columns="time")
    write_table(run / "trials.parquet", trials, parts)
    if with_epochs:
        write_table(run / "epochs.parquet", epoch_table, parts)
    return run


def simulate_babysit(n_epochs: int = 12, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(epochs, events) of a simulated babysat run.

    The learning rate starts at 1e-2. Epoch 5 diverges (rollback to epoch 4, rate / 4), epoch 8
    plateaus (rate / 2), a person nudges the rate to 3e-4 before epoch 10, and the last epoch stops.
    The best val_accuracy is at epoch `n_epochs - 1` (0.96).
    """
    rng = np.random.default_rng(seed)
    lr = 1e-2
    epochs: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    acc = 0.5
    best = -math.inf
    for epoch in range(1, n_epochs + 1):
        if epoch == 10:
            events.append({"epoch": epoch, "event": "nudge", "learning_rate": 3e-4, "score": math.nan,
                           "detail": "learning_rate=0.0003 (from the command line)"})
            lr = 3e-4
        if epoch == 5:
            acc_e, val_loss = 0.11, 40.0
        elif epoch == n_epochs - 1:
            acc_e, val_loss = 0.96, 0.15
        else:
            acc = min(acc + 0.06, 0.94) if epoch < 8 else acc
            acc_e, val_loss = acc + float(rng.normal(0, 0.002)), 2.3 * (1 - acc) + 0.05
        decision = "continue"
        if epoch == 5:
            decision = "rollback"
            events.append({"epoch": epoch, "event": "diverged", "learning_rate": lr, "score": acc_e,
                           "detail": "val_loss 40 > 4 x best"})
            events.append({"epoch": epoch, "event": "rollback", "learning_rate": lr / 4, "score": best,
                           "detail": "back to epoch 4, learning_rate / 4"})
        elif epoch == 8:
            decision = "plateau"
            events.append({"epoch": epoch, "event": "plateau", "learning_rate": lr / 2, "score": acc_e,
                           "detail": "no improvement for 3 epochs, learning_rate / 2"})
        elif epoch == n_epochs:
            decision = "stop"
            events.append({"epoch": epoch, "event": "stop", "learning_rate": lr, "score": best,
                           "detail": f"reached {n_epochs} epochs"})
        elif acc_e > best:
            decision = "improved"
            events.append({"epoch": epoch, "event": "improved", "learning_rate": lr, "score": acc_e,
                           "detail": "checkpoint saved"})
        if epoch != 5:
            best = max(best, acc_e)
        epochs.append({"epoch": epoch, "learning_rate": lr, "seconds": 0.8,
                       "time": START + timedelta(seconds=0.8 * epoch), "train_loss": val_loss - 0.04,
                       "train_accuracy": min(acc_e + 0.01, 1.0), "val_loss": val_loss, "val_accuracy": acc_e,
                       "decision": decision})
        if epoch == 5:
            lr /= 4
        elif epoch == 8:
            lr /= 2
    frame = pd.DataFrame(epochs).astype({"epoch": "int64"})
    events_frame = pd.DataFrame(events).astype({"epoch": "int64"})
    events_frame["time"] = START + pd.to_timedelta(0.8 * events_frame["epoch"], unit="s")   # at its epoch's end
    return frame, events_frame


def make_babysit(root: Path, name: str = "panda", *, n_epochs: int = 12, seed: int = 0, parts: int = 2,
                 with_events: bool = True) -> Path:
    """Write a babysat run folder `root/name` and return its path."""
    run = Path(root) / name
    epochs, events = simulate_babysit(n_epochs, seed=seed)
    _write_job(run, job_dict(name))
    write_table(run / "epochs.parquet", epochs, parts)
    if with_events:
        write_table(run / "events.parquet", events, parts)
    (run / "checkpoints").mkdir(exist_ok=True)
    return run


# A population of 4 over 6 epochs (interval 2): the values each member trains with, epoch by epoch,
# and its copies: (epoch, event, member, source). Member 1 diverges at epoch 3 and is replaced at once
# from member 0; member 2 rolls back at epoch 4 and trains no epoch 6 (as a member that diverged
# mid-generation idled before caviar replaced it at once). Member 3 is the best.
POPULATION_RATES = {0: [0.05] * 6, 1: [0.2] * 3 + [0.04] * 3, 2: [0.001] * 4 + [0.025], 3: [0.003] * 2 + [0.06] * 2
                    + [0.032] * 2}
POPULATION_COPIES = [(2, "exploit", 3, 0), (3, "diverged", 1, 0), (4, "exploit", 3, 1), (4, "rollback", 2, 0)]


def make_population(root: Path, name: str = "pop") -> Path:
    """Write the population POPULATION_RATES / POPULATION_COPIES as `root/name` and return its path:
    23 epochs trained (member 2 stopped at 5), while its trials rows say 6 each."""
    run = Path(root) / name
    job = job_dict(name, trials=4, epochs=6, space={"learning_rate": SPACE["learning_rate"]})
    job["search"]["scheduler"] = "pbt"
    job["pbt"] = {"interval": 2}
    _write_job(run, job)
    epochs, trials = [], []
    for member, rates in POPULATION_RATES.items():
        for epoch, rate in enumerate(rates, start=1):
            acc = 0.5 + 0.05 * epoch + 0.02 * member
            epochs.append({"trial_id": member, "epoch": epoch, "learning_rate": rate, "seconds": 0.5,
                           "generation": (epoch - 1) // 2, "params_learning_rate": rate, "train_loss": 1 - acc,
                           "val_loss": 1 - acc, "val_accuracy": acc})
        copied = [source for _, event, who, source in POPULATION_COPIES if who == member]
        trials.append({"trial_id": member, "status": "completed", "params_learning_rate": rates[-1],
                       "score": 0.5 + 0.05 * len(rates) + 0.02 * member, "epochs": 6, "seconds": 0.5 * len(rates),
                       "seed": 1000 + member, "error": None, "node": "127.0.0.1", "round": 0,
                       "copied_from": copied[-1] if copied else None})
    events = [{"epoch": epoch, "event": event, "member": member, "source": source, "generation": (epoch - 1) // 2,
               "old_learning_rate": POPULATION_RATES[member][epoch - 1],
               "new_learning_rate": POPULATION_RATES[member][epoch], "detail": f"member {member} copies {source}"}
              for epoch, event, member, source in POPULATION_COPIES]
    events.append({"epoch": 6, "event": "improved", "member": 3, "source": None, "generation": 2, "detail": "best"})
    write_table(run / "trials.parquet", pd.DataFrame(trials).astype({"copied_from": "Int64"}))
    write_table(run / "epochs.parquet", pd.DataFrame(epochs))
    write_table(run / "events.parquet", pd.DataFrame(events).astype({"source": "Int64"}))
    return run
