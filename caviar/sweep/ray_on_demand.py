"""A sweep's own Ray, booted only when the work left is worth it.

A local Ray's boot takes seconds (3.7-5.5 s here, benchmarks/ray_boot.py) and keeps about half a
core busy all that time, and a sweep on it pays its workers' start and a little per epoch. So the
driver boots it only when finishing on Ray would be sooner than finishing here, with the driver and
its helper (`caviar.sweep.helper`): when Ray gives more trainers than these (a machine of more than
two cores) and the compute left (projected from the epochs trained so far, MIN_EPOCHS at least) is
more than `boot_threshold`. On a machine whose cores the trainers here fill already, Ray gives no
speed, only a trial's isolation in a process of its own: it boots there only for a sweep that would
keep the trainers here busy for more than LONG_SWEEP_SECONDS. Until enough epochs have ended a
timer stands in for the projection: if they are still running after their share of that threshold
(`first_deadline`, WARMUP_SECONDS at least), epochs are long and Ray boots then, from that thread,
so that a job of minute-long epochs does not wait for them to end.

The expected boot is EXPECTED_BOOT_SECONDS, or $CAVIAR_RAY_BOOT_SECONDS (0: boot at once, as a
sweep always did; a large value: train here unless the sweep is long).

`RayOnDemand` answers as a `caviar.sweep.local_ray.LocalRay` does (`ready`, `wait`, `join`, `stop`,
`boot_seconds`, `node`), so `caviar.sweep.head_start` drives either alike.
"""

from __future__ import annotations

import math
import os
import socket
import statistics
import threading
from collections.abc import Iterable, Sequence
from typing import Any

# A local Ray's boot on the machines caviar was measured on (benchmarks/ray_boot.py: 3.7-5.5 s).
EXPECTED_BOOT_SECONDS = 4.0
# Epochs measured before the projection decides (until then, the first epochs' timer does).
MIN_EPOCHS = 5
# Joining a booted Ray costs the driver about this share of the boot's time (importing Ray,
# connecting, the workers' start: both grow alike with the machine's load).
JOIN_SHARE = 0.5
# A sweep that would keep the trainers here busy longer than this goes to Ray even where Ray gives
# no more trainers: each trial then runs in a worker process of its own, which a crash or the
# out-of-memory killer ends alone, and the driver is free to show progress between epochs.
LONG_SWEEP_SECONDS = 60.0
# How long first epochs may run before they count as long: one-time costs (imports, PyTorch's
# first batch: 1.5 s here) are not the sweep's pace.
WARMUP_SECONDS = 2.0


def expected_boot_seconds() -> float:
    """The boot time the rule assumes: $CAVIAR_RAY_BOOT_SECONDS when set, else EXPECTED_BOOT_SECONDS."""
    text = os.environ.get("CAVIAR_RAY_BOOT_SECONDS", "")
    try:
        value = float(text) if text else EXPECTED_BOOT_SECONDS
    except ValueError:
        value = EXPECTED_BOOT_SECONDS
    return value if math.isfinite(value) and value >= 0 else EXPECTED_BOOT_SECONDS


def this_node_ip() -> str:
    """The address Ray gives this machine (what a worker here writes as its trials' `node`): the one
    the route to a public address leaves from, as Ray finds it (no packet is sent), else loopback."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("8.8.8.8", 53))
            return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"


def compute_left(trials_left: int, running: Iterable[tuple[int, int]], epoch_seconds: Sequence[float]) -> float | None:
    """The compute a sweep still needs, in seconds of one core; None before MIN_EPOCHS epochs have ended.

    Args:
        trials_left: trials not started yet.
        running: (epochs run, max epochs) of each trial started and not finished.
        epoch_seconds: the durations of the epochs ended so far.

    An epoch costs the median of those: a process's first epoch often carries one-time costs
    (PyTorch sets up its kernels on its first batch: 1.5 s for a 0.05 s epoch here), and the median
    ignores the driver's and its helper's. Every trial is assumed to run its max epochs (a pruner
    only makes the sweep shorter), and a trial not started as many as the longest of those started.
    """
    if len(epoch_seconds) < MIN_EPOCHS:
        return None
    running = list(running)
    longest = max((most for _, most in running), default=1)
    epochs_left = trials_left * longest + sum(max(0, most - ran) for ran, most in running)
    return epochs_left * statistics.median(epoch_seconds)


def boot_threshold(trainers: int, workers: int, boot_seconds: float) -> float:
    """The compute left (seconds of one core) above which booting Ray now ends the sweep sooner.

    Here, `trainers` share it: left / trainers. On Ray: the boot (the trainers here go on meanwhile),
    joining it (JOIN_SHARE of the boot), then `workers` share what is left:
    boot + join + (left - boot * trainers) / workers. The second is shorter once
    left > (boot + join - boot * trainers / workers) / (1 / trainers - 1 / workers), which needs more
    workers than trainers; with no more, Ray pays only for a sweep of LONG_SWEEP_SECONDS and more.
    """
    trainers, workers = max(1, trainers), max(1, workers)
    if workers <= trainers:
        return max(LONG_SWEEP_SECONDS, boot_seconds) * trainers
    join = JOIN_SHARE * boot_seconds
    return (boot_seconds + join - boot_seconds * trainers / workers) / (1 / trainers - 1 / workers)


def worth_booting(seconds_left: float, trainers: int, workers: int, boot_seconds: float) -> bool:
    """Whether a Ray booting now, with `workers` workers, would end the sweep sooner than the
    `trainers` here (or, where it gives no more trainers, whether the sweep is long)."""
    return seconds_left > boot_threshold(trainers, workers, boot_seconds)


def first_deadline(epochs_in_sweep: int, trainers: int, workers: int, boot_seconds: float) -> float:
    """Seconds after which first epochs still running say the sweep is worth a Ray: at that pace the
    sweep's epochs (`epochs_in_sweep`, at most) add up to more than `boot_threshold`. Never less than
    WARMUP_SECONDS, the one-time costs a first epoch may carry."""
    return max(WARMUP_SECONDS, boot_threshold(trainers, workers, boot_seconds) / max(1, epochs_in_sweep))


class RayOnDemand:
    """A local Ray with `cpus` CPUs, started by `boot()` (at most once, from any thread).

    Until then it is not ready and costs nothing; `wait()` boots it if need be.
    """

    def __init__(self, cpus: int, boot_seconds: float | None = None) -> None:
        self.cpus = cpus
        self.expected = expected_boot_seconds() if boot_seconds is None else boot_seconds
        self.node = this_node_ip()
        self.head: Any = None   # the LocalRay, once booted
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._stopped = False

    @property
    def booted(self) -> bool:
        return self.head is not None

    @property
    def boot_seconds(self) -> float:
        """How long the Ray took to come up (0 until it is)."""
        return self.head.boot_seconds if self.head is not None else 0.0

    def boot(self) -> None:
        """Start the Ray's boot in its child process (returns at once; nothing after a stop)."""
        from caviar.sweep.local_ray import LocalRay

        with self._lock:
            if self.head is None and not self._stopped:
                self.head = LocalRay.start(self.cpus)

    def boot_after(self, seconds: float) -> None:
        """Boot from a timer thread in `seconds`, unless `cancel_timer()` or `boot()` comes first."""
        if self._timer is None and self.head is None:
            self._timer = threading.Timer(seconds, self.boot)
            self._timer.daemon = True
            self._timer.start()

    def cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def consider(self, seconds_left: float | None, trainers: int, workers: int, epochs_in_sweep: int) -> None:
        """Boot now if the projected compute left is worth it (`trainers` here now, `workers` on the
        Ray); before any projection, set the timer."""
        if self.head is not None:
            return
        if seconds_left is None:
            self.boot_after(first_deadline(epochs_in_sweep, trainers, workers, self.expected))
            return
        self.cancel_timer()   # measured now: the projection decides from here on
        if worth_booting(seconds_left, trainers, workers, self.expected):
            self.boot()

    def ready(self) -> bool:
        head = self.head
        return head is not None and head.ready()

    def wait(self, timeout: float = 600.0) -> None:
        """Block until the Ray is up, booting it first if nothing has."""
        self.boot()
        self.head.wait(timeout)

    def join(self) -> None:
        self.head.join()

    def stop(self) -> None:
        """No boot from now on; a booted Ray is ended, every process of it."""
        self.cancel_timer()
        with self._lock:   # a boot under way in the timer's thread finishes first, then is ended
            self._stopped = True
        if self.head is not None:
            self.head.stop()
