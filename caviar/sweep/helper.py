"""A second trainer while the local Ray boots: a forked, Ray-free process on another core.

The driver trains on one core while its Ray boots (`caviar.sweep.head_start`); a Ray's boot keeps
about half a core busy (benchmarks/ray_boot.py), so on a machine of two cores or more a second
trainer has room. The driver forks it before it imports Ray: the child has the trainer's modules
and the dataset already, so it trains from its first moment. It runs the workers' `SegmentRunner`
on one segment at a time that the driver sends down a pipe (the sweep's own decisions, as for a
worker) and sends back its events in batches, as a worker does (`run_batch`: at most EVENT_SECONDS
apart, and at once when the segment ends); the driver feeds them to the sweep exactly as a
worker's. A message per epoch cost the driver, which trains too, a pipe read and an unpickling per
epoch of the helper's. When the workers take over, the helper is stopped and its unfinished trials go to them
(each reruns from its first epoch: a trial's result depends only on its config and seed).

It never outlives the driver: the kernel kills it when the driver dies (PR_SET_PDEATHSIG, even on
SIGKILL), it ignores the terminal's Ctrl-C (the driver stops it in order), and it ends at once when
its pipe closes. The pipe carries pickles between two processes of this one sweep only.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
from typing import Any

from caviar.sweep.loop import Call, Slot, Sweep
from caviar.sweep.worker import SegmentRunner, run_batch

PR_SET_PDEATHSIG = 1
EVENT_SECONDS = 0.1   # the helper's epochs reach the driver (and the display) at most this late


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


def _serve(conn: Any, parent_end: Any, parent_pid: int, data: Any, trainer_name: str) -> None:
    """The helper's life: segments in, events out, until the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent_pid)
    # The fork gave this process the driver's end of the pipe too: closed here, so the pipe ends
    # (EOFError below) when the driver's end does, wherever the death signal is not available.
    parent_end.close()
    # A session of its own, like the local Ray's: Linux's autogroup scheduler shares a busy
    # machine's CPU between sessions, so in the driver's session it would only halve the driver's.
    os.setsid()
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)   # one BLAS thread, as on a worker and on the driver meanwhile
    runner = SegmentRunner(data, trainer_name)
    try:
        while True:
            segment, drop = conn.recv()
            for events in run_batch(runner, [segment], drop, EVENT_SECONDS, flush_each_segment=True):
                conn.send(events)
    except (EOFError, OSError):
        return   # the driver closed the pipe (or is gone): nothing here is the sweep's record


class Helper:
    """The driver's handle on its forked trainer: one segment at a time, like a worker's slot."""

    def __init__(self, data: Any, trainer_name: str) -> None:
        context = multiprocessing.get_context("fork")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.conn, os.getpid(), data, trainer_name),
                                       daemon=True)
        self.process.start()
        child.close()
        self.slot = Slot(node_ref="")
        self.call: Call | None = None   # the segment it trains now
        self.stopped = False

    @property
    def busy(self) -> bool:
        return self.call is not None

    def give(self, sweep: Sweep) -> bool:
        """Send it the sweep's next segment; False when there is none to give."""
        segments = sweep._take_work(self.slot, 1)
        if not segments:
            return False
        self.call = Call(stream=None, segments=segments)
        self.conn.send((segments[0], self.slot.drop))
        self.slot.drop = []
        return True

    def pump(self, sweep: Sweep, wait: float = 0.0) -> None:
        """Feed the sweep what the helper has said (waiting up to `wait` s for a first word)."""
        while self.call is not None and self.conn.poll(wait):
            wait = 0.0
            for event in self.conn.recv():
                sweep._on_event(self.slot, self.call, event)
                if event[0] != "epoch":
                    self.call = None

    def trials(self) -> list[int]:
        """The trials it has started and not finished: the one it trains, and those paused in it."""
        current = [s.trial_id for s in self.call.segments] if self.call is not None else []
        return current + [t for t in self.slot.held if t not in current]

    def stop(self) -> None:
        """End the process at once (it writes nothing: a trial in progress is the caller's to requeue)."""
        self.stopped = True
        if self.process.is_alive():
            self.process.kill()
        self.process.join()
        self.conn.close()


def start_helper(data: Any, trainer_name: str, cpus: int) -> Helper | None:
    """A helper when the machine has a core for it (and fork: Linux, macOS), else None."""
    if cpus < 2 or "fork" not in multiprocessing.get_all_start_methods():
        return None
    return Helper(data, trainer_name)

