"""Work starts at once: the driver trains trials itself (and so does its forked helper,
`caviar.sweep.helper`, on a second core) while its local Ray boots, or instead of it.

A local Ray takes seconds to start (3.7-5.5 s on a laptop, more on a loaded machine); a first sweep
of digits is about a second of compute. So the driver does not wait: the Ray boots only once the
work left would outlast its boot (`caviar.sweep.ray_on_demand`, judged at each epoch here), and
meanwhile the driver trains trials, one after another, through the sweep's own decisions
(`Sweep._take_work`, `Sweep._on_event`: the same sampler, scheduler, seeds and rows as a worker's)
with a `SegmentRunner` of its own, the code every worker runs. When the head is up, the driver
stops taking new trials and the sweep goes on on Ray's workers; a sweep that ends first never
joins Ray at all, nor one whose work left is less than joining would cost (JOIN_SHARE of the time
Ray took to boot, twice over).

The driver's trial in progress when Ray comes up is finished here if little of it is left
(HANDOVER_SECONDS), else handed to a worker, which trains it again from the start: a trial's
result depends only on its config and seed, so either way it is the trial a worker alone gives.

A trial trained here names as its `node` the address the local Ray gives this machine, as a
worker's does (`RowsHere`).

Once Ray is up, its worker actors take a second or more to start (each imports the trainer's
modules); the driver goes on training until they have, by the same rule (`WorkersStarting`).
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any

from caviar.sweep.costs import Costs
from caviar.sweep.helper import Helper, can_help, start_helper
from caviar.sweep.ray_on_demand import JOIN_SHARE, RayOnDemand, compute_left
from caviar.sweep.loop import FLUSH_SECONDS, Call, Slot, Sweep, TrialState
from caviar.sweep.worker import Segment, SegmentRunner

# A trial of the driver's with more compute than this left when Ray is up goes to a worker (it
# restarts there): the cores are Ray's from then on. Less than this, the driver finishes it.
HANDOVER_SECONDS = 1.0
# The boot rule's pace is the median of at most this many of the latest epochs finished here.
EPOCH_SAMPLE = 64
# The boot rule is applied at most this often (at each epoch, it cost the driver, which trains too,
# a few percent of a sweep of short epochs; a boot decided this much later changes nothing).
CONSIDER_SECONDS = 0.05
# Between its own epochs the driver looks around (the helper's events, the boot rule, the display)
# at most this often while its helper holds a segment in reserve, else after every epoch: those
# looks were a fifth of its bookkeeping on a sweep of 3 ms epochs.
LOOK_SECONDS = 0.01


class RowsHere:
    """The trial rows the driver writes while it trains (its helper's too), each with the node's
    name filled in as a worker's is; counts them, with their epochs and compute. Wraps
    `sweep.write_trial` while the driver trains."""

    def __init__(self, sweep: Sweep, node: str) -> None:
        self.sweep, self.node = sweep, node
        self.write = sweep.write_trial
        self.trials, self.seconds = 0, 0.0
        # The compute of the latest epochs finished here: the pace the boot rule projects from
        # (a bounded sample, so that judging at each epoch costs the same all sweep long).
        self.epoch_seconds: deque[float] = deque(maxlen=EPOCH_SAMPLE)
        self.considered = -CONSIDER_SECONDS   # time.monotonic() of the boot rule's last look
        self.looked = -LOOK_SECONDS           # and of the driver's last look around (`_train`)
        sweep.write_trial = self

    def __call__(self, row: dict, epoch_rows: list[dict]) -> None:
        self.trials += 1
        self.seconds += float(row.get("seconds") or 0.0)
        self.epoch_seconds.extend(float(epoch["seconds"]) for epoch in epoch_rows)
        self.write({**row, "node": self.node}, epoch_rows)

    def close(self) -> None:
        self.sweep.write_trial = self.write


def work_left(sweep: Sweep) -> bool:
    """Whether some trial of the sweep has no row yet."""
    return len(sweep.finished) < sweep.sampler.n_trials


def _hand_over(sweep: Sweep, head: Any, rows: RowsHere) -> bool:
    """Whether the workers should take over now: Ray is up, and the work left (the trials without a
    row, at the mean compute of those trained here) is worth the cost of joining it."""
    if not head.ready():
        return False
    if not rows.trials:
        return True
    left = (sweep.sampler.n_trials - len(sweep.finished)) * rows.seconds / rows.trials
    return left > 2 * JOIN_SHARE * head.boot_seconds


def _consider_boot(sweep: Sweep, head: Any, rows: RowsHere, helper: Helper | None) -> None:
    """Boot a sweep's own Ray once the work left, trained here, would outlast its boot
    (`caviar.sweep.ray_on_demand`); a Ray up or booting already, or joined, is left as it is."""
    if not isinstance(head, RayOnDemand) or head.booted or not sweep.active:
        return
    now = time.monotonic()
    if now - rows.considered < CONSIDER_SECONDS:
        return
    rows.considered = now
    running = [(trial.epochs, trial.max_epochs) for trial in sweep.active.values()]
    trials_left = max(0, sweep.sampler.n_trials - len(sweep.finished) - len(running))
    epoch_seconds = [*rows.epoch_seconds, *(float(epoch["seconds"]) for trial in sweep.active.values()
                                           for epoch in trial.epoch_rows)]
    trainers = 1 + bool(helper is not None and (helper.retired or not helper.stopped))
    longest = max(most for _, most in running)
    head.consider(compute_left(trials_left, running, epoch_seconds), trainers, sweep.n_workers,
                  (trials_left + len(running)) * longest)


def _seconds_left(trial: TrialState) -> float:
    """The compute a trial still needs, from its epochs so far (0 before its first epoch)."""
    return (trial.max_epochs - trial.epochs) * trial.seconds / trial.epochs if trial.epochs else 0.0


def _move_to_workers(sweep: Sweep, runner: SegmentRunner, slot: Slot, trial: TrialState) -> None:
    """Hand a trial the driver started to the workers: it reruns there from its first epoch."""
    runner.drop([trial.trial_id])
    slot.held.pop(trial.trial_id, None)
    trial.restart()
    sweep.retry_queue.appendleft(trial)


def _feed(sweep: Sweep, helper: Helper | None, head: Any, rows: RowsHere, wait: float = 0.0) -> None:
    """Take in what the helper said; give it segments while it wants them (`Helper.wants`) and the
    workers have not taken over; retire it once nothing is left for it."""
    if helper is None or helper.stopped:
        return
    try:
        helper.pump(sweep, wait)
    except (EOFError, OSError):   # it died (killed, out of memory): its trials go to the driver or workers
        _take_back(sweep, helper)
        return
    while helper.wants(sweep) and not _hand_over(sweep, head, rows) and helper.give(sweep):
        pass
    if helper.done_with(sweep):
        helper.retire()


def _take_back(sweep: Sweep, helper: Helper | None) -> None:
    """Stop the helper; its unfinished trials go to the workers, each to rerun from its start."""
    if helper is None or helper.stopped and not helper.trials():
        return
    helper.stop()
    for trial_id in reversed(helper.trials()):
        trial = sweep.active[trial_id]
        trial.restart()
        sweep.retry_queue.appendleft(trial)
    helper.slot.held.clear()
    helper.calls.clear()


def _train(sweep: Sweep, runner: SegmentRunner, slot: Slot, segment: Segment, head: Any,
           rows: RowsHere, helper: Helper | None) -> None:
    """Run one segment here, each event through the sweep as if a worker had sent it; stop early
    (and hand the trial over) when the workers take over and much of the trial is left."""
    trial = sweep.active[segment.trial_id]
    call = Call(stream=None, segments=[segment])
    started = time.perf_counter()
    sweep.training_here = 1   # the progress line counts it as running
    try:
        for event in runner.run(segment):
            if event[0] == "epoch" and _hand_over(sweep, head, rows):
                spent, epochs = trial.seconds + time.perf_counter() - started, event[2]
                if (trial.max_epochs - epochs) * spent / epochs > HANDOVER_SECONDS:
                    _move_to_workers(sweep, runner, slot, trial)
                    return
            sweep._on_event(slot, call, event)
            now = time.monotonic()
            if now - rows.looked < LOOK_SECONDS and helper is not None and len(helper.calls) > 1:
                continue   # the helper has its next segment: nothing here is urgent
            rows.looked = now
            _consider_boot(sweep, head, rows, helper)
            _feed(sweep, helper, head, rows)
            sweep.training_here = 1 + bool(helper is not None and helper.busy)
            sweep.on_change(sweep)   # the display redraws at its own pace, not at each call
    finally:
        sweep.training_here = 0
    runner.drop(slot.drop)
    slot.drop = []


def train_while_ray_starts(sweep: Sweep, runner: SegmentRunner, head: Any, helper: Helper | None = None) -> None:
    """Train the sweep's trials here, one at a time (and on `helper`, if any, with its next segment held in reserve), until
    the local Ray is up or none is left.

    Returns with every trial the driver or its helper started either finished or queued for the
    workers (the helper stopped then). The caller limits BLAS to one thread (`run_with_head`).
    """
    slot = Slot(node_ref="")
    rows = RowsHere(sweep, head.node)
    last_flush = time.monotonic()
    try:
        while work_left(sweep):
            held = [sweep.active[t] for t in slot.held]
            if _hand_over(sweep, head, rows) and not (held and _seconds_left(held[0]) <= HANDOVER_SECONDS):
                for trial in held:
                    _move_to_workers(sweep, runner, slot, trial)
                _take_back(sweep, helper)
                break
            _feed(sweep, helper, head, rows)
            segments = sweep._take_work(slot, 1)
            _consider_boot(sweep, head, rows, helper)
            if segments:
                _train(sweep, runner, slot, segments[0], head, rows, helper)
            elif helper is not None and helper.busy:   # the last trials are the helper's
                sweep.training_here = 1
                _feed(sweep, helper, head, rows, wait=0.05)
                sweep.on_change(sweep)
                sweep.training_here = 0
            else:
                break
            if time.monotonic() - last_flush >= FLUSH_SECONDS:
                sweep.flush(trials=True)
                last_flush = time.monotonic()
    finally:
        rows.close()
    sweep.flush(trials=True)


class WorkersStarting:
    """A started Ray's worker actors booting (a second or more: each imports the trainer's modules):
    ready once every one of them has started, so the driver trains meanwhile too."""

    boot_seconds = 0.0   # joined already: handing over costs nothing more

    def __init__(self, sweep: Sweep, node: str) -> None:
        self.sweep, self.node = sweep, node

    def ready(self) -> bool:
        return all(self.sweep._started(slot) for slot in self.sweep.slots)


def run_with_head(sweep: Sweep, head: RayOnDemand, data: Any, trainer_name: str, *, train_here: bool,
                  costs: Costs | None = None) -> None:
    """The whole sweep with a local Ray that is still booting: trials here until it is up (and on,
    if what is left is not worth joining it), then join it and start the workers, trials here
    until they have started, then the workers only."""
    runner = SegmentRunner(data, trainer_name) if train_here else None
    if runner is None or head.expected <= 0:
        head.boot()
    if runner is not None:
        from threadpoolctl import threadpool_limits

        # One BLAS thread while this process trains, as on a worker: the other cores are booting
        # Ray (threads fighting over them made a trial here ten times slower than on a worker).
        # Set once, before the fork: the helper inherits it, and threadpoolctl's look at the
        # loaded libraries (3-7 ms a call) is paid once.
        limits = threadpool_limits(limits=1)
        try:
            _train_here(sweep, runner, head, data, trainer_name, costs or Costs())
        finally:
            limits.restore_original_limits()
    elif work_left(sweep):
        join(head, sweep, data, costs or Costs())
        sweep.start_workers()
    if work_left(sweep):
        sweep.run()


def _train_here(sweep: Sweep, runner: SegmentRunner, head: RayOnDemand, data: Any, trainer_name: str,
                costs: Costs) -> None:
    """The driver's part: trials here and on its helper until the Ray is up (or none is left); then
    join it, start its workers, and train here until they have started."""
    # The boot rule's timer (a thread) is armed before the fork, while the cores are idle:
    # started once the driver and its helper compute, it waited up to 12 ms for a CPU.
    head.consider(None, 1 + can_help(head.cpus), sweep.n_workers,
                  (sweep.sampler.n_trials - len(sweep.finished)) * sweep.max_epochs)
    helper = None
    try:
        helper = start_helper(data, trainer_name, head.cpus, sweep, blas_limited=True)
        train_while_ray_starts(sweep, runner, head, helper)
    finally:
        if helper is not None:
            helper.stop()
    if not work_left(sweep):
        return
    join(head, sweep, data, costs)
    sweep.start_workers()
    train_while_ray_starts(sweep, runner, WorkersStarting(sweep, head.node))


def join(head: Any, sweep: Sweep, data: Any, costs: Costs) -> None:
    """Wait for the local Ray, join it, and give the sweep its dataset there (for its workers)."""
    with costs.timed("waiting for and joining Ray"):
        head.wait()
        head.join()
    import ray

    with costs.timed("data to Ray"):
        sweep.data_ref = ray.put(data)
