"""Panda mode: one model, watched epoch by epoch, taken back to its last good day when a day goes badly.

`python -m caviar babysit [JOB]` trains the job's [model] (or, with `--from SWEEP`, the best trial of
a finished sweep) one epoch at a time. After each epoch the pure policy (`caviar.policy`) decides;
this module carries the decision out, applies a person's nudges (`caviar.nudge`), and writes
OUT/NAME/epochs.parquet (one row per epoch: epoch, learning_rate, seconds, metrics, decision),
events.parquet (epoch, event, learning_rate, score, detail) and checkpoints/ (the initial state as
epoch 0, the best, the last and a ring of the newest).

A step: train, decide, carry the decision out, apply waiting nudges, then — when due — persist: the
checkpoint (holding the policy's counters, the rate, the nudged values and the rows since the last
persist), then those rows, then the nudge files are archived. Rows never reach the disk before the
checkpoint that holds them, so after a SIGKILL `--resume` restores that checkpoint (the trainer's
state holds its RNG), replays the later epochs exactly, and writes back any of its rows the kill
kept off disk, once.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import sys
import time
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from caviar import nudge as channel
from caviar.policy import Day, Decision, Diverged, Plateau, PolicyState, Rollback, Stop, manual_rollback, step

Snapshot = tuple[int, dict, dict]  # (epoch, trainer state, meta): what one checkpoint holds
# Persist (checkpoint + rows) once the time since the last persist is this many times what a persist
# cost: checkpointing then takes ~1/PERSIST_RATIO of the time, even with 20 ms epochs (benchmarks/).
PERSIST_RATIO = 100.0


@dataclass
class Summary:
    """What a babysat run came to. final: test metrics of the best checkpoint ("test_accuracy", ...)
    where the data has a test split and the trainer can `evaluate`, else its validation metrics."""

    path: Path
    metric: str
    best_epoch: int
    best_score: float
    epochs: int
    rollbacks: int
    stopped: str
    final: dict[str, float] = field(default_factory=dict)

    def line(self) -> str:  # "best epoch 11  val_accuracy 0.9833  test_accuracy 0.9611  test_loss 0.1204  (..."
        final = "".join(f"  {k} {v:.4f}" for k, v in self.final.items() if k != self.metric)
        return (f"best epoch {self.best_epoch}  {self.metric} {self.best_score:.4f}{final}  ({self.epochs} "
                f"epochs, {self.rollbacks} rollbacks; stopped: {self.stopped})  results: {self.path}")


def command(args: argparse.Namespace) -> int:
    """`caviar babysit [JOB] [--from RUN] [--resume | --overwrite]`: 0 when the run finished."""
    from caviar import cli
    from caviar.job import load_job
    from caviar.results import open_run
    from caviar.trainer import resolve_trainer

    job = cli.load_job_from_args(args)
    run_dir = Path(args.out) / job.name
    if args.resume and (run_dir / "job.toml").is_file():
        # The job as run (same model); --set applies on top (`babysit.epochs=100`: more epochs).
        job = load_job(run_dir / "job.toml", cli.job_overrides(args))
    elif args.from_run:
        job = with_best_trial(job, Path(args.out) / args.from_run)
    pid = channel.running_pid(run_dir)
    if pid is not None:
        raise ValueError(f"run: {job.name!r} is being babysat right now by process {pid}")
    # The data and the trainer are checked before the results folder is touched.
    resolve_trainer(job.trainer)
    data = job.data.load()
    run = open_run(args.out, job.name, job.to_toml(), resume=args.resume, overwrite=args.overwrite)
    channel.acquire_lock(run.path)
    try:
        summary = babysit(job, run, data=data, echo=lambda line: print(line, flush=True))
    finally:
        channel.release_lock(run.path)
    print(summary.line(), flush=True)
    return 0


def with_best_trial(job: Any, sweep: Path) -> Any:
    """`job` with [model] overridden by the `params_*` of the sweep's best completed trial."""
    import pandas as pd

    from caviar.job import parse_job, validate_name

    trials_path = Path(sweep.parent) / validate_name(sweep.name, "--from") / "trials.parquet"
    if not trials_path.exists():
        raise ValueError(f"--from: no trials.parquet in {sweep}: is {sweep.name!r} a finished sweep?")
    trials = pd.read_parquet(trials_path)
    done = trials[(trials["status"] == "completed") & trials["score"].notna()] if "status" in trials else trials
    if done.empty:
        raise ValueError(f"--from: the sweep {sweep.name!r} has no completed trial with a score")
    best = done.loc[done["score"].idxmax() if job.search.mode == "max" else done["score"].idxmin()]
    params = {c[7:]: _plain(best[c]) for c in trials.columns if c.startswith("params_") and pd.notna(best[c])}
    raw = job.to_raw()
    raw["model"].update(params)
    print(f"from {sweep.name}: score {best['score']:.4f} with {params}", flush=True)
    return parse_job(raw)


def _plain(value: Any) -> Any:
    """A pandas cell as the plain value a job file holds; a list (e.g. hidden_layers from a choice)
    is stored as its JSON text in a string column."""
    value = value.item() if isinstance(value, np.generic) else value
    if isinstance(value, str) and value.startswith("["):
        with contextlib.suppress(ValueError):
            return json.loads(value)
    return value


# --- the loop ---------------------------------------------------------------------------------------


def babysit(job: Any, run: Any, *, data: Any = None, echo: Callable[[str], None] = print) -> Summary:
    """Babysit `job` into the open run folder `run` (resuming from its last checkpoint if it has one).

    `data`: the job's Dataset, when the caller has loaded it already.
    """
    from caviar.checkpoint import CheckpointStore
    from caviar.trainer import resolve_trainer

    spec = job.babysit
    data = job.data.load() if data is None else data
    trainer = resolve_trainer(job.trainer)(job.config(), data, spec.seed)
    sitter = _Sitter(job, run, trainer, CheckpointStore(run.checkpoints_dir, keep=spec.keep_checkpoints), data, echo)
    sitter.start()
    while sitter.stopped is None:
        sitter.step()
    return sitter.finish()


def _learning_rate(job: Any) -> float:
    """The starting learning rate: the config's, or the built-in trainer's default."""
    if job.trainer == "mlp":
        from caviar.nn.mlp import MLPConfig

        return MLPConfig.from_mapping(job.config()).learning_rate
    if "learning_rate" not in job.config():
        raise ValueError("model.learning_rate: babysit needs the starting learning rate of a custom trainer")
    return float(job.config()["learning_rate"])


def _warn_once(load: Callable[[], Any]) -> Any:
    """`load()`, with the store's warnings (a corrupt checkpoint skipped) as one line each on stderr."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        found = load()
    for warning in caught:
        print(f"caviar babysit: warning: {warning.message}", file=sys.stderr, flush=True)
    return found


def _best(store: Any) -> Any:
    """The best checkpoint (epoch 0, the initial state, until something improved)."""
    if (best := _warn_once(store.load_best)) is None:
        raise FileNotFoundError(f"{store.folder}: no best checkpoint reads")
    return best


class _Sitter:
    """One babysat run between epochs; each method is one part of a step.

    A *snapshot* is what a checkpoint holds: (epoch, trainer state, meta). The newest one and the best
    one live in memory (a rollback needs no disk); they are written — persisted, with the rows since
    the last persist — when a person's nudge was applied or the run stops, and otherwise once the
    time since the last persist is PERSIST_RATIO times what a persist costs, so that checkpointing
    takes a small share of the time however short an epoch is. Epochs after the last persist are
    replayed exactly by a resume (same state, same RNG), so skipping a write loses no result.
    """

    def __init__(self, job: Any, run: Any, trainer: Any, store: Any, data: Any, echo: Callable[[str], None]):
        self.job, self.run, self.trainer, self.store, self.data, self.echo = job, run, trainer, store, data, echo
        self.spec, self.metric = job.babysit, job.babysit.metric
        self.epoch = 0  # epochs trained (rolled-back ones count: it is the compute spent)
        self.lr = _learning_rate(job)  # the base learning rate the next epoch trains with
        self.policy = PolicyState()
        self.nudged: dict[str, Any] = {}  # a person's changes other than the learning rate: kept across rollbacks
        self.stopped: str | None = None  # why the run stopped (None while it runs)
        self.rows: dict[str, list[dict]] = {"epochs": [], "events": []}  # rows since the last persist
        self.handled: list[tuple[Path, bool]] = []  # nudge files applied (or refused) since then
        self.best: Snapshot | None = None  # the best snapshot while it is newer than the disk's best.npz
        self.best_saved = True
        self.cost, self.since = 0.0, time.perf_counter()  # seconds the last persist took; when it ended

    # -- start and resume --

    def start(self) -> None:
        last = _warn_once(self.store.load_last) if self.run.resumed else None
        if last is None:
            self.trainer.set_hyperparameters(learning_rate=self.lr)
            # The untrained model's loss is the yardstick of divergence where the trainer can tell it:
            # a first epoch at a far too high rate blows up itself, and must not be the yardstick.
            can = hasattr(self.trainer, "evaluate")
            initial = float(self.trainer.evaluate(self.data.x_train, self.data.y_train)["loss"]) if can else math.nan
            if math.isfinite(initial) and initial > 0:
                self.policy = PolicyState(first_loss=initial)
                self._event("start", None, f"initial train loss {initial:.4g}")
            snapshot = self._snapshot({})
            self.best, self.best_saved = snapshot, False  # epoch 0: where an early divergence goes back to
            self._persist(snapshot)
            self.echo(f"babysitting {self.job.name}: {self.metric} ({self.spec.mode}), up to {self.spec.epochs} "
                      f"epochs, learning rate {self.lr:.2e}; results in {self.run.path}")
            return
        state, meta = last
        self.trainer.load_state_dict(state)
        self.epoch, self.lr = int(meta["epoch"]), float(meta["learning_rate"])
        self.policy = PolicyState.from_dict(meta["policy"])
        self.nudged, self.stopped = dict(meta.get("nudged", {})), meta.get("stopped")
        _write_missing(self.run, meta.get("rows", {}), upto=self.epoch)
        for name in meta.get("nudges", []):  # applied before the kill: never apply twice
            channel.archive(self.run.path / channel.NUDGES_DIR / name)
        if self.stopped == "epochs" and self.epoch < self.spec.epochs:
            self.stopped = None  # a finished run given more epochs goes on
        self._event("resume", None, f"from the checkpoint of epoch {self.epoch}")
        self.echo(f"resuming {self.job.name} after epoch {self.epoch}, learning rate {self.lr:.2e}")

    # -- one step --

    def step(self) -> None:
        started = time.perf_counter()
        metrics = {k: float(v) for k, v in self.trainer.train_epoch().items()}
        seconds = time.perf_counter() - started
        self.epoch += 1
        if self.metric not in metrics:
            raise ValueError(f"babysit.metric: the trainer reports {', '.join(sorted(metrics))}, not {self.metric!r}")
        score = metrics[self.metric]
        day = Day(self.epoch, score, metrics.get("train_loss", 0.0), self.lr)
        decision, self.policy = step(self.policy, day, self.spec)
        self.rows["epochs"].append({"epoch": self.epoch, "learning_rate": metrics.pop("learning_rate", self.lr),
                                    "seconds": seconds, **metrics, "decision": decision.kind})
        self._carry_out(decision, score)
        nudged = self._take_nudges(score)
        line = self._line(day, decision)
        due = nudged or self.stopped or time.perf_counter() - self.since >= PERSIST_RATIO * self.cost
        if decision.improved or due:
            snapshot = self._snapshot(metrics)
            if decision.improved:
                self.best, self.best_saved = snapshot, False
            if due:
                self._persist(snapshot)
        self.echo(line)

    def _carry_out(self, decision: Decision, score: float) -> None:
        if isinstance(decision, (Rollback, Diverged)):
            self._restore_best()
        if isinstance(decision, (Plateau, Rollback, Diverged)):
            self.lr = decision.learning_rate
            self.trainer.set_hyperparameters(learning_rate=self.lr)
        self.stopped = decision.cause if isinstance(decision, Stop) else None
        if decision.kind != "continue":
            self._event(decision.kind, score, decision.reason)

    def _restore_best(self) -> None:
        """Back to the best state with a fresh data order (the same order again would lead the same
        way), keeping the person's nudged values; the caller sets the learning rate."""
        self.trainer.load_state_dict(self.best[1] if self.best is not None else _best(self.store).state)
        if self.nudged:
            self.trainer.set_hyperparameters(**self.nudged)
        if hasattr(self.trainer, "reshuffle"):  # seeded by (seed, epoch): a resume replays the same order
            self.trainer.reshuffle(int(np.random.SeedSequence([self.spec.seed, self.epoch]).generate_state(1)[0]))

    def _take_nudges(self, score: float) -> bool:
        """Apply the nudges waiting at this epoch boundary, oldest first; True if there were any."""
        paths = channel.pending(self.run.path)
        for path in paths:
            try:
                request = channel.read(path)
                self.trainer.set_hyperparameters(**request.changes)  # the trainer's own check, again
            except (ValueError, TypeError) as exc:
                self._event("nudge_refused", score, f"{path.name}: {exc}")
                self.handled.append((path, True))
                continue
            changes = dict(request.changes)
            if "learning_rate" in changes:
                self.lr = float(changes.pop("learning_rate"))
            self.nudged.update(changes)
            if request.rollback:
                self._restore_best()
                self.trainer.set_hyperparameters(learning_rate=self.lr)
                self.policy = manual_rollback(self.policy)
            self._event("nudge", score, request.describe())
            self.handled.append((path, False))
            if request.stop and self.stopped is None:
                self.stopped = "nudge"
                self._event("stop", score, "stopped by a nudge")
        return bool(paths)

    def _snapshot(self, metrics: Mapping[str, float]) -> Snapshot:
        meta = {"epoch": self.epoch, "learning_rate": self.lr, "policy": self.policy.to_dict(),
                "nudged": dict(self.nudged), "stopped": self.stopped, "metrics": dict(metrics),
                "rows": {k: list(v) for k, v in self.rows.items()}, "nudges": [p.name for p, _ in self.handled]}
        return self.epoch, self.trainer.state_dict(), meta

    def _persist(self, snapshot: Snapshot) -> None:
        """Checkpoint (the best first, if it is newer than best.npz), then the rows, then archive."""
        started = time.perf_counter()
        if not self.best_saved and self.best is not None and self.best[0] != snapshot[0]:
            self.store.save(*self.best, best=True)
        self.store.save(*snapshot, best=not self.best_saved and self.best is not None and self.best[0] == snapshot[0])
        self.best_saved = True
        for name, rows in self.rows.items():
            if rows:
                self.run.table(name).append(rows)
                self.run.table(name).flush()
        for path, refused in self.handled:
            channel.archive(path, refused=refused)
        self.rows, self.handled = {"epochs": [], "events": []}, []
        self.since = time.perf_counter()
        self.cost = self.since - started

    def _event(self, event: str, score: float | None, detail: str) -> None:
        self.rows["events"].append({"epoch": self.epoch, "event": event, "learning_rate": self.lr,
                                    "score": score, "detail": detail})

    def _line(self, day: Day, decision: Decision) -> str:
        best = math.nan if self.policy.best_score is None else self.policy.best_score  # (formatted eagerly)
        to = f"epoch {decision.to_epoch}" if getattr(decision, "to_epoch", 0) else "the initial state"
        what = {"improved": f"improved (best {best:.4f})", "plateau": f"plateau (lr -> {self.lr:.1e})",
                "rollback": f"rollback to {to} (lr -> {self.lr:.1e})", "stop": f"stop: {decision.reason}",
                "diverged": f"diverged, back to {to} (lr -> {self.lr:.1e})"}.get(decision.kind, decision.kind)
        extra = "".join(f"  {e['event']}: {e['detail']}" for e in self.rows["events"]
                        if e["event"].startswith("nudge") and e["epoch"] == day.epoch)
        return f"epoch {day.epoch:>3}  {self.metric} {day.score:.4f}  lr {day.learning_rate:.1e}  {what}{extra}"

    # -- the end --

    def finish(self) -> Summary:
        """Restore the best checkpoint, evaluate it, record and compact."""
        state, meta = _best(self.store)
        best_epoch = int(meta["epoch"])
        self.trainer.load_state_dict(state)
        best_score = math.nan if self.policy.best_score is None else self.policy.best_score
        if self.data.x_test.shape[0] and hasattr(self.trainer, "evaluate"):
            tested = self.trainer.evaluate(self.data.x_test, self.data.y_test)
            final = {f"test_{k}": float(v) for k, v in tested.items()}
        else:
            final = {k: float(v) for k, v in meta.get("metrics", {}).items() if k.startswith("val_")}
        detail = f"best epoch {best_epoch} restored; " + ", ".join(f"{k} {v:.4f}" for k, v in final.items())
        self._event("final", best_score, detail)
        _write_missing(self.run, self.rows)  # a resumed run that had already stopped may have them
        self.rows = {"epochs": [], "events": []}
        self.run.compact()
        return Summary(self.run.path, self.metric, best_epoch, best_score, self.epoch, self.policy.rollbacks,
                       self.stopped or "", final)


# --- rows after a crash ---------------------------------------------------------------------------

_KEYS = {"epochs": ("epoch",), "events": ("epoch", "event", "detail")}  # what tells two rows apart


def _write_missing(run: Any, rows: Mapping[str, list[dict]], *, upto: int | None = None) -> None:
    """Write those of `rows` that are not on disk yet (by key, counting repeats), so that a step
    redone after a kill never writes a row twice. `upto`: first drop the rows of later epochs (on a
    resume from the checkpoint of epoch `upto`, rows written after a checkpoint that turned out corrupt).
    """
    import pyarrow.compute as pc

    from caviar.results_io import read_table

    for name, keys in _KEYS.items():
        disk = read_table(run.path / f"{name}.parquet")
        if disk is not None and upto is not None and disk.num_rows and pc.max(disk["epoch"]).as_py() > upto:
            run.table(name).compact(keep=lambda table: pc.less_equal(table["epoch"], upto))
            disk = disk.filter(pc.less_equal(disk["epoch"], upto))
            print(f"caviar babysit: warning: dropped {name} rows after epoch {upto} (checkpoint lost)", file=sys.stderr)
        have = Counter(zip(*(disk[k].to_pylist() for k in keys))) if disk is not None else Counter()
        missing = []
        for row in rows.get(name, []):
            key = tuple(row.get(k) for k in keys)
            if have[key] > 0:
                have[key] -= 1
            else:
                missing.append(row)
        if missing:
            run.table(name).append(missing)
            run.table(name).flush()
