"""A second trainer while the local Ray boots: a forked, Ray-free process on another core.

The driver trains on one core while its Ray boots (`caviar.sweep.head_start`); a Ray's boot keeps
about half a core busy (benchmarks/ray_boot.py), so on a machine of two cores or more a second
trainer has room. The driver forks it before it imports Ray: the child has the trainer's modules
and the dataset already, so it trains from its first moment (its first segment, and BLAS at one
thread, are settled before the fork). It runs the workers' `SegmentRunner` on the segments that the
driver sends down a pipe (the sweep's own decisions, as for a worker) and sends back its events in
batches, as a worker does (`run_batch`: at most EVENT_SECONDS apart, and at once when the segment
ends); the driver feeds them to the sweep exactly as a worker's. A message per epoch cost the
driver, which trains too, a pipe read and an unpickling per epoch of the helper's.

Like a worker (`CALLS_PER_WORKER`), it holds its next segment before it ends the one it trains, so
it never waits for the driver, which looks only between its own epochs (a wait of one such epoch
per trial was 3-5% of a short sweep's helper); but not near the sweep's end (`QUEUE_WHILE_WAITING`),
where a segment queued behind the helper's would leave the driver idle while it waits its turn.
Once nothing is or will be its own, it ends (`retire`) while the driver trains on. When the workers
take over, the helper is stopped and its unfinished trials go to them (each reruns from its first
epoch: a trial's result depends only on its config and seed).

It never outlives the driver: the kernel kills it when the driver dies (PR_SET_PDEATHSIG, even on
SIGKILL), it ignores the terminal's Ctrl-C (the driver stops it in order), and it ends at once when
its pipe closes. The pipe carries pickles between two processes of this one sweep only.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import select
import signal
from collections import deque
from typing import Any

from caviar.sweep.loop import Call, Slot, Sweep
from caviar.sweep.worker import Segment, SegmentRunner, run_batch

PR_SET_PDEATHSIG = 1
EVENT_SECONDS = 0.1   # the helper's epochs reach the driver (and the display) at most this late
# The helper is given its next segment in advance only while more trials than this wait to start:
# the last ones go to whichever trainer is free first, as in a process pool.
QUEUE_WHILE_WAITING = 2
# A segment is queued only if its message is at most this big: it then fits the empty pipe, so the
# driver never blocks on a helper that is busy training (and sending its own events) meanwhile.
QUEUE_BYTES = 16 * 1024


def _die_with_parent(parent_pid: int) -> None:
    """Ask Linux to SIGKILL this process when the driver dies (elsewhere: its pipe's end ends it).

    The driver may have died between the fork and this call (the kernel then never sends the
    signal): a parent other than the driver means it has, so the helper ends here.
    """
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:
        os._exit(0)


def _serve(conn: Any, parent_end: Any, parent_pid: int, data: Any, trainer_name: str, blas_limited: bool) -> None:
    """The helper's life: segments in, events out, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    # The fork gave this process the driver's end of the pipe too: closed here, so the pipe ends
    # (EOFError below) when the driver's end does, wherever the death signal is not available.
    parent_end.close()
    # A session of its own, like the local Ray's: Linux's autogroup scheduler shares a busy
    # machine's CPU between sessions, so in the driver's session it would only halve the driver's.
    os.setsid()
    if not blas_limited:   # one BLAS thread, as on a worker and on the driver meanwhile
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=1)
    runner = SegmentRunner(data, trainer_name)
    try:
        while True:
            segment, drop = conn.recv()
            for events in run_batch(runner, [segment], drop, EVENT_SECONDS, flush_each_segment=True):
                conn.send(events)
    except (EOFError, OSError):
        return   # the driver closed the pipe (or is gone): nothing here is the sweep's record


class Helper:
    """The driver's handle on its forked trainer: up to two segments at a time (one training, one
    queued), like a worker's slot."""

    def __init__(self, data: Any, trainer_name: str, sweep: Sweep | None = None, blas_limited: bool = False) -> None:
        self.slot = Slot(node_ref="")
        self.calls: deque[Call] = deque()   # the segment it trains now, then the one queued behind it
        self.stopped = False
        self.retired = False   # ended because nothing was left for it (still a trainer to the boot rule)
        self.message_bytes = 0   # the largest segment message sent so far
        # Its first segment (of `sweep`, if given) is decided before the fork, so that the child has
        # whatever deciding imported (the sampler's first draw imports numpy.random: 5 ms, which the
        # child would pay again before its first epoch).
        first = sweep._take_work(self.slot, 1) if sweep is not None else []
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, daemon=True,
                                       args=(child, self.conn, os.getpid(), data, trainer_name, blas_limited))
        self.process.start()
        child.close()
        # One poll object for the pipe: `Connection.poll` builds a selector per call, which at each
        # of the driver's epochs was most of what looking at the helper cost.
        self._poller = select.poll()
        self._poller.register(self.conn.fileno(), select.POLLIN)
        if first:
            self._send(first)

    @property
    def busy(self) -> bool:
        return bool(self.calls)

    def wants(self, sweep: Sweep) -> bool:
        """Whether to give it a segment now: it is idle, or it trains one and enough trials wait
        that queueing one behind it cannot leave the driver without work at the end."""
        return not self.calls or (len(self.calls) == 1 and sweep.trials_waiting > QUEUE_WHILE_WAITING
                                  and self.message_bytes <= QUEUE_BYTES)

    def give(self, sweep: Sweep) -> bool:
        """Send it the sweep's next segment; False when there is none to give."""
        segments = sweep._take_work(self.slot, 1)
        if not segments:
            return False
        self._send(segments)
        return True

    def _send(self, segments: list[Segment]) -> None:
        message = pickle.dumps((segments[0], self.slot.drop))
        self.message_bytes = max(self.message_bytes, len(message))
        self.calls.append(Call(stream=None, segments=segments))
        self.conn.send_bytes(message)   # what `conn.recv` unpickles
        self.slot.drop = []

    def pump(self, sweep: Sweep, wait: float = 0.0) -> None:
        """Feed the sweep what the helper has said (waiting up to `wait` s for a first word)."""
        timeout = int(wait * 1000)
        while self.calls and self._poller.poll(timeout):
            timeout = 0
            for event in self.conn.recv():
                sweep._on_event(self.slot, self.calls[0], event)
                if event[0] != "epoch":
                    self.calls.popleft()

    def trials(self) -> list[int]:
        """The trials it has started or has queued and not finished: those of its segments, and
        those paused in it."""
        current = [s.trial_id for call in self.calls for s in call.segments]
        return current + [t for t in self.slot.held if t not in current]

    def done_with(self, sweep: Sweep) -> bool:
        """Whether nothing is or will be the helper's: it trains nothing, holds no paused trial, and
        no trial waits to start."""
        return not self.calls and not self.slot.held and not sweep.trials_waiting

    def retire(self) -> None:
        """End the process without waiting for it (the kernel tears it down on its own core while the
        driver trains its last trial: joining it cost the end of a sweep 5-7 ms); `stop` reaps it."""
        self.stopped = self.retired = True
        if self.process.is_alive():
            self.process.kill()

    def stop(self) -> None:
        """End the process at once (it writes nothing: a trial in progress is the caller's to requeue)."""
        self.stopped = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def start_helper(data: Any, trainer_name: str, cpus: int, sweep: Sweep | None = None,
                 blas_limited: bool = False) -> Helper | None:
    """A helper when the machine has a core for it (and fork: Linux, macOS), else None; with `sweep`,
    it starts on that sweep's next segment; `blas_limited`: this process has BLAS at one thread
    already, which the helper inherits (else it sets that itself)."""
    return Helper(data, trainer_name, sweep, blas_limited) if can_help(cpus) else None


def can_help(cpus: int) -> bool:
    """Whether a helper starts on a machine of `cpus` CPUs: a core for it, and fork (Linux, macOS)."""
    return cpus >= 2 and "fork" in multiprocessing.get_all_start_methods()

