"""Panda mode: one model, watched epoch by epoch, taken back to its last good day when a day goes badly.

`python -m caviar babysit [JOB]` (`caviar.babysit.command`) trains the job's [model] (or, with
`--from SWEEP`, the best trial of a finished sweep) one epoch at a time. After each epoch the pure
policy (`caviar.babysit.policy`) decides; this module carries the decision out, applies a person's nudges
(`caviar.babysit.nudges`), and writes OUT/NAME/epochs.parquet (one row per epoch: epoch, learning_rate,
seconds, metrics, decision), events.parquet (epoch, event, learning_rate, score, detail) and
checkpoints/ (the initial state as epoch 0, the best in two copies, the last and a ring of the newest;
`caviar.store.checkpoints`). The end (`caviar.babysit.ending`) restores the best and compacts.

A fresh run trains its first epoch before the results folder is opened, so a trainer that does not
report the job's metric (or reports a column the loop writes itself) is refused with nothing on disk
touched. A step: train, decide, carry the decision out, apply waiting nudges, then — when due —
persist: the checkpoint (holding the policy's counters, the rate, the nudged values and the rows
since the last persist), then those rows, then the nudge files are archived. Rows never reach the
disk before the checkpoint that holds them, so after a SIGKILL `--resume` restores that checkpoint
(the trainer's state holds its RNG), replays the later epochs exactly, and writes back any of its
rows the kill kept off disk, once. (One exception: a trainer that fails inside an epoch leaves the
rows of every epoch before it on disk; a resume drops those after its checkpoint and trains them
again.) A resume reads the best state it would go back to before its first epoch; when no copy of
it reads, the newest checkpoint stands in for it, and the run still ends, saying so.

When a persist is due (`persist_due`): at once when a nudge was applied, the run stops or Ctrl-C
asked it to; on an improvement when a persist costs less than CHEAP_PERSIST (3%) of an epoch (both
on average) — then every improvement is on disk as it happens; otherwise once the time since the
last persist is PERSIST_RATIO (100) times what a persist costs. Checkpointing thus takes at most ~3% of
the time, even when every epoch improves, and ~1% with 5 ms epochs (digits; benchmarks/babysit.py),
where a persist costs about as much as an epoch and the improvements wait in memory.
"""

from __future__ import annotations

import contextlib
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np

from caviar.babysit import ending
from caviar.babysit import nudges as channel
from caviar.babysit.ending import Summary
from caviar.store.vocabulary import utc_now
from caviar.trainers.check import checked_metrics
from caviar.babysit.resume import best_point, refuse_links, resume_point, write_missing
from caviar.babysit.policy import Day, Decision, Diverged, Plateau, PolicyState, Rollback, Stop, manual_rollback, step

Snapshot = tuple[int, dict, dict]  # (epoch, trainer state, meta): what one checkpoint holds
PERSIST_RATIO = 100.0  # persist once the time since the last persist is this many times its cost
CHEAP_PERSIST = 0.03  # an improvement persists at once when a persist costs less than this × an epoch
# the policy's decisions that a rollback a nudge asks for overrides (its own rollbacks and stops stand)
ASKED_OVERRIDES = ("continue", "improved", "plateau")


def persist_due(*, forced: bool, improved: bool, since: float, cost: float, mean_epoch: float) -> bool:
    """Whether a step persists now (pure). forced: a nudge was applied, the run stopped or was
    interrupted. since: seconds since the last persist ended; cost: mean seconds a persist takes
    (means, not the last one: one slow fsync does not turn the rule off); mean_epoch: mean seconds
    of training per epoch."""
    if forced or (improved and cost < CHEAP_PERSIST * mean_epoch):
        return True
    return since >= PERSIST_RATIO * cost


def epoch_metrics(reported: Any, metric: str) -> dict[str, float]:
    """A trainer's `train_epoch()` result as floats, checked as caviar mode checks it (a dict of
    numbers, no reserved name; `caviar.trainers.checked_metrics`), and holding the job's `metric`."""
    metrics = checked_metrics(reported)
    if metric not in metrics:
        raise ValueError(f"babysit.metric: the trainer reports {', '.join(sorted(metrics))}, not {metric!r}")
    return metrics


def babysit(job: Any, run: Any, *, data: Any = None, echo: Callable[[str], None] = print) -> Summary:
    """Babysit `job` into the open run folder `run` (resuming from its last checkpoint if it has one).

    `data`: the job's Dataset, when the caller has loaded it already.
    """
    from caviar.trainers import check_job

    sitter = Sitter(job, check_job(job), job.data.load() if data is None else data, echo, run.path)
    refuse_links(run.path)
    last = resume_point(run.path) if run.resumed else None
    if last is not None:
        sitter.resume(last)
    else:
        sitter.begin()
    sitter.attach(run)
    sitter.run_until_stopped()
    return sitter.finish()


def starting_rate(trainer: type, config: Mapping[str, Any]) -> float:
    """The base learning rate a run starts from: the config's, or the trainer's default for it."""
    from caviar.trainers import full_config

    full = full_config(trainer, config)
    if "learning_rate" not in full:
        raise ValueError("model.learning_rate: babysit needs the starting learning rate (the trainer "
                         "declares no default for it)")
    return float(full["learning_rate"])


def _copied(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """A trainer state whose arrays share no memory with `state`'s: a trainer may hand out its live
    arrays, or keep and train in place the ones it is given."""
    return {k: np.array(v, copy=True) for k, v in state.items()}


def _handled(recorded: list) -> list[tuple[str, bool]]:
    """The nudge files a checkpoint says were handled, as (name, refused): [name, refused] pairs, or
    plain names (a checkpoint of an older caviar, which recorded only applied ones)."""
    return [(item, False) if isinstance(item, str) else (str(item[0]), bool(item[1])) for item in recorded]


class Sitter:
    """One babysat run between epochs; each method is one part of a step.

    Built (trainer constructed, learning rate checked) and started — `begin()` for a fresh run, which
    trains the first epoch, or `resume(checkpoint)` — before the results folder is opened; then
    `attach(run)` writes, `run_until_stopped()` trains, `finish()` restores the best and compacts.

    A *snapshot* is what a checkpoint holds: (epoch, trainer state, meta). The newest one and the best
    one live in memory (a rollback needs no disk) until `persist_due` says to write them. Epochs after
    the last persist are replayed exactly by a resume (same state, same RNG), so skipping a write
    loses no result.
    """

    def __init__(self, job: Any, trainer: type, data: Any, echo: Callable[[str], None], path: Path):
        self.job, self.data, self.echo, self.path = job, data, echo, Path(path)
        self.spec, self.metric = job.babysit, job.babysit.metric
        self.lr = starting_rate(trainer, job.config())  # the base learning rate the next epoch trains with
        self.trainer = trainer(job.config(), data, self.spec.seed)
        self.run: Any = None
        self.store: Any = None
        self.epoch = 0  # epochs trained (rolled-back ones count: it is the compute spent)
        self.policy = PolicyState()
        self.asked_rollbacks = 0  # rollbacks a nudge asked for (the policy's counter leaves them out)
        self.asked_to: int | None = None  # the epoch a nudge's rollback went back to, at this boundary
        self.nudged: dict[str, Any] = {}  # a person's changes other than the learning rate: kept across rollbacks
        self.stopped: str | None = None  # why the run stopped (None while it runs)
        self.rows: dict[str, list[dict]] = {"epochs": [], "events": []}  # rows since the last persist
        self.handled: list[tuple[Path, bool]] = []  # nudge files applied (or refused) since then
        self.best: Snapshot | None = None  # the best snapshot (what a rollback and the end go back to)
        self.best_saved = True  # whether best.npz holds it
        self.best_lost = ""  # why `best` is a stand-in (no copy of the best checkpoint read on resume)
        self.nudges_blocked = False  # said once: a nudges folder is a link, so none is read
        self.persisted, self.persists = 0.0, 0  # seconds spent persisting, persists done by this process
        self.since = time.perf_counter()  # when the last persist ended
        self.trained, self.timed = 0.0, 0  # seconds of training, epochs trained by this process
        self.first: tuple[dict[str, float], float] | None = None  # epoch 1, trained before the folder opened
        self.resumed_from: Any = None  # the checkpoint a resume goes on from
        self.saved_epoch = 0  # the epoch of the newest persisted checkpoint
        self.interrupted = False  # Ctrl-C: stop at the next epoch boundary, everything persisted
        self.last_metrics: dict[str, float] = {}
        self.trained_at = ""  # when the last epoch ended (UTC, ISO 8601): its row's `time`

    # -- start and resume (nothing written) --

    def begin(self) -> None:
        """A fresh run: measure the untrained model, keep it as epoch 0, and train the first epoch
        (its metrics checked before any file is written)."""
        self.trainer.set_hyperparameters(learning_rate=self.lr)
        # The untrained model's loss is the yardstick of divergence where the trainer can tell it:
        # a first epoch at a far too high rate blows up itself, and must not be the yardstick.
        can = hasattr(self.trainer, "evaluate")
        initial = float(self.trainer.evaluate(self.data.x_train, self.data.y_train)["loss"]) if can else math.nan
        if math.isfinite(initial) and initial > 0:
            self.policy = PolicyState(first_loss=initial, first_loss_initial=True)
            self._event("start", None, f"initial train loss {initial:.4g}")
        self.best, self.best_saved = self._snapshot({}), False  # epoch 0: where an early divergence goes back to
        self.echo(f"babysitting {self.job.name}: {self.metric} ({self.spec.mode}), up to {self.spec.epochs} "
                  f"epochs, learning rate {self.lr:.2e}; results in {self.path}")
        self.first = self._train()
        if "train_loss" not in self.first[0]:
            self.echo("note: the trainer reports no train_loss, so a divergence is seen only as a non-finite "
                      "score; report train_loss to have a blow-up caught before the score shows it")

    def resume(self, last: Any) -> None:
        """Go on from checkpoint `last` (its trainer state, counters, rate and nudged values), the best
        state it goes back to read first (`best_point`): known before any epoch trains."""
        best, self.best_lost = best_point(self.path, last)
        kept = _copied(best.state) if best is last else best.state  # not the trainer's
        self.best = (int(best.meta["epoch"]), kept, best.meta)
        state, meta = last
        self.trainer.load_state_dict(state)
        self.epoch, self.lr = int(meta["epoch"]), float(meta["learning_rate"])
        self.policy = PolicyState.from_dict(meta["policy"])
        self.nudged, self.stopped = dict(meta.get("nudged", {})), meta.get("stopped")
        self.asked_rollbacks = int(meta.get("asked_rollbacks", 0))  # (0 in a checkpoint of an older caviar)
        # as the run had them (a trainer whose state holds no hyperparameters would start from the job's)
        self.trainer.set_hyperparameters(learning_rate=self.lr, **self.nudged)
        if self.stopped == "epochs" and self.epoch < self.spec.epochs:
            self.stopped = None  # a finished run given more epochs goes on
        self.resumed_from = last

    def attach(self, run: Any) -> None:
        """Start writing into the open run folder: epoch 0 and the first epoch, or a resume's repairs."""
        from caviar.store.checkpoints import CheckpointStore

        self.run = run
        self.store = CheckpointStore(run.checkpoints_dir, keep=self.spec.keep_checkpoints)
        if self.resumed_from is None:
            assert self.best is not None and self.first is not None, "begin() comes before attach()"
            self._persist(self.best)
            metrics, seconds = self.first
            self.first = None
            self._judge(metrics, seconds)
            return
        meta = self.resumed_from.meta
        write_missing(run, meta.get("rows", {}), upto=self.epoch)
        for name, refused in _handled(meta.get("nudges", [])):  # handled before the kill: never twice
            channel.archive(run.path / channel.NUDGES_DIR / name, refused=refused)
        self.saved_epoch = self.epoch
        self._event("resume", None, f"from the checkpoint of epoch {self.epoch}")
        self.echo(f"resuming {self.job.name} after epoch {self.epoch}, learning rate {self.lr:.2e}")

    # -- one step --

    def run_until_stopped(self) -> bool:
        """Train until the policy, a nudge or the budget stops the run (True), or Ctrl-C set
        `interrupted` (False: the state at this epoch boundary is persisted). A trainer that fails
        (raises, or reports no dict) leaves every epoch before it on disk (`_keep_what_trained`)."""
        while self.stopped is None and not self.interrupted:
            self.step()
        if self.stopped is None and (self.saved_epoch != self.epoch or self.handled):
            self._persist(self._snapshot(self.last_metrics))
        return self.stopped is not None

    def step(self) -> None:
        try:
            metrics, seconds = self._train()
        except Exception:
            self._keep_what_trained()
            raise
        self._judge(metrics, seconds)

    def _keep_what_trained(self) -> None:
        """The trainer failed inside an epoch, its state past the last epoch boundary: write the rows
        of every epoch before it, with the newest state on hand (the best, when it is newer than the
        disk) as the checkpoint. A resume goes on from the newest checkpoint, training the epochs
        after it again (their rows are dropped first, then written again, the same). A failure to
        write here leaves the trainer's error the one reported."""
        with contextlib.suppress(OSError, ValueError):
            if not self.best_saved and self.best is not None:
                self._persist(self.best)
            else:
                self._write_rows()

    def _train(self) -> tuple[dict[str, float], float]:
        """One epoch: its checked metrics and its seconds."""
        started = time.perf_counter()
        reported = self.trainer.train_epoch()
        seconds = time.perf_counter() - started
        self.trained_at = utc_now()
        self.trained, self.timed = self.trained + seconds, self.timed + 1
        return epoch_metrics(reported, self.metric), seconds

    def _judge(self, metrics: dict[str, float], seconds: float) -> None:
        """Decide on the epoch just trained, carry it out, apply nudges, persist when due, display."""
        self.epoch += 1
        score = metrics[self.metric]
        day = Day(self.epoch, score, metrics.get("train_loss"), self.lr)
        decision, self.policy = step(self.policy, day, self.spec)
        self.rows["epochs"].append({"epoch": self.epoch, "learning_rate": metrics.pop("learning_rate", self.lr),
                                    "seconds": seconds, "time": self.trained_at, **metrics,
                                    "decision": decision.kind})
        self.last_metrics = metrics
        self._carry_out(decision, score)
        self.asked_to = None
        nudged = self._take_nudges(score)
        line = self._line(day, decision)
        due = persist_due(forced=nudged or self.stopped is not None or self.interrupted, improved=decision.improved,
                          since=time.perf_counter() - self.since, cost=self.persisted / max(self.persists, 1),
                          mean_epoch=self.trained / max(self.timed, 1))
        if decision.improved or due:
            snapshot = self._snapshot(metrics)
            if decision.improved:
                self.best, self.best_saved, self.best_lost = snapshot, False, ""
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
        assert self.best is not None, "begin() or resume() keeps a best state"
        self.trainer.load_state_dict(_copied(self.best[1]))  # the trainer may keep (and train) what it is given
        if self.nudged:
            self.trainer.set_hyperparameters(**self.nudged)
        if hasattr(self.trainer, "reshuffle"):  # seeded by (seed, epoch): a resume replays the same order
            self.trainer.reshuffle(int(np.random.SeedSequence([self.spec.seed, self.epoch]).generate_state(1)[0]))

    def _take_nudges(self, score: float) -> bool:
        """Apply the nudges waiting at this epoch boundary, oldest first; True if there were any."""
        blocked = channel.blocked(self.run.path)
        if blocked is not None and not self.nudges_blocked:
            print(f"caviar babysit: warning: {blocked} is a symbolic link (or not a folder): no nudge is read "
                  "or moved through it; remove it to nudge this run", file=sys.stderr, flush=True)
        self.nudges_blocked = blocked is not None
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
            self._event("nudge", score, request.describe())
            if request.rollback:
                self._restore_best()
                self.trainer.set_hyperparameters(learning_rate=self.lr)
                self.policy = manual_rollback(self.policy)
                self._asked_rollback(score)
            self.handled.append((path, False))
            if request.stop and self.stopped is None:
                self.stopped = "nudge"
                self._event("stop", score, "stopped by a nudge")
        return bool(paths)

    def _asked_rollback(self, score: float) -> None:
        """Record a rollback a nudge asked for as a rollback: its own event, and this epoch's decision
        (unless the policy went back or stopped itself)."""
        assert self.best is not None, "begin() or resume() keeps a best state"
        self._event("rollback", score, f"asked by a nudge: back to epoch {self.best[0]}")
        self.asked_rollbacks, self.asked_to = self.asked_rollbacks + 1, self.best[0]
        row = self.rows["epochs"][-1] if self.rows["epochs"] else None
        if row is not None and row["epoch"] == self.epoch and row["decision"] in ASKED_OVERRIDES:
            row["decision"] = "rollback"

    def _snapshot(self, metrics: Mapping[str, float]) -> Snapshot:
        meta = {"epoch": self.epoch, "learning_rate": self.lr, "policy": self.policy.to_dict(),
                "nudged": dict(self.nudged), "stopped": self.stopped, "metrics": dict(metrics),
                "asked_rollbacks": self.asked_rollbacks,
                "rows": {k: list(v) for k, v in self.rows.items()},
                "nudges": [[p.name, refused] for p, refused in self.handled]}  # (name, refused) pairs
        return self.epoch, _copied(self.trainer.state_dict()), meta  # not the trainer's live arrays

    def _persist(self, snapshot: Snapshot) -> None:
        """Checkpoint (the best first, if it is newer than best.npz), then the rows, then archive."""
        started = time.perf_counter()
        if not self.best_saved and self.best is not None and self.best[0] != snapshot[0]:
            self.store.save(*self.best, best=True)
        self.store.save(*snapshot, best=not self.best_saved and self.best is not None and self.best[0] == snapshot[0])
        self.best_saved = True
        self._write_rows()
        self.saved_epoch = snapshot[0]
        self.since = time.perf_counter()
        self.persisted, self.persists = self.persisted + self.since - started, self.persists + 1

    def _write_rows(self) -> None:
        """The rows since the last persist, then the nudge files they record moved out of the queue."""
        for name, rows in self.rows.items():
            if rows:
                self.run.table(name).append(rows)
                self.run.table(name).flush()
        for path, refused in self.handled:
            channel.archive(path, refused=refused)
        self.rows, self.handled = {"epochs": [], "events": []}, []

    def _event(self, event: str, score: float | None, detail: str) -> None:
        self.rows["events"].append({"epoch": self.epoch, "event": event, "base_learning_rate": self.lr,
                                    "score": score, "detail": detail, "time": utc_now()})

    def _line(self, day: Day, decision: Decision) -> str:
        best = math.nan if self.policy.best_score is None else self.policy.best_score  # (formatted eagerly)
        asked = self.asked_to is not None and decision.kind in ASKED_OVERRIDES  # as this epoch's row says
        kind, back = ("rollback", self.asked_to) if asked else (decision.kind, getattr(decision, "to_epoch", 0))
        to = (f"epoch {back}" if back else "the initial state") + (", asked by a nudge" if asked else "")
        what = {"improved": f"improved (best {best:.4f})", "plateau": f"plateau (lr -> {self.lr:.1e})",
                "rollback": f"rollback to {to} (lr -> {self.lr:.1e})", "stop": f"stop: {decision.reason}",
                "diverged": f"diverged, back to {to} (lr -> {self.lr:.1e})"}.get(kind, kind)
        extra = "".join(f"  {e['event']}: {e['detail']}" for e in self.rows["events"]
                        if e["event"].startswith("nudge") and e["epoch"] == day.epoch)
        return f"epoch {day.epoch:>3}  {self.metric} {day.score:.4f}  lr {day.learning_rate:.1e}  {what}{extra}"

    # -- the end --

    def finish(self) -> Summary:
        """Restore the best state (or say why not), evaluate it, record and compact (`caviar.babysit.ending`)."""
        return ending.finish(self)
