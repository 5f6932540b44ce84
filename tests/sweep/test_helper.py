"""The driver's forked trainer while its Ray boots (caviar/sweep/helper.py): the same events as the
workers' SegmentRunner in this process, gone when stopped or when the driver dies, none on one core.
Its place in a sweep (each trial once, the same results) is tested in test_head_start.py."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import psutil

from caviar.data import Dataset
from caviar.sweep.helper import start_helper
from caviar.sweep.worker import Segment, SegmentRunner
from tests.support import ROOT


def tiny_data() -> Dataset:
    x = np.zeros((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    return Dataset(x, y, x, y, x[:0], y[:0], 2, "tiny")


def without_seconds(events: list[tuple]) -> list[tuple]:
    return [event[:4] if event[0] == "epoch" else event[:3] for event in events]


def test_the_helper_sends_the_events_a_runner_here_gives_and_stops_at_once():
    segments = [Segment(7, {"learning_rate": 0.01}, 11, 2, 3), Segment(7, {"learning_rate": 0.01}, 11, 3, 3)]
    here = SegmentRunner(tiny_data(), "tests.toys:ToyTrainer")
    expected = [event for segment in segments for event in here.run(segment)]
    helper = start_helper(tiny_data(), "tests.toys:ToyTrainer", cpus=2)
    assert helper is not None
    try:
        got = []
        for segment in segments:   # paused after epoch 2, then on from there in the same process
            helper.conn.send((segment, []))
            while not got or got[-1][0] == "epoch" or got[-1][1:3] != (7, segment.until_epoch):
                assert helper.conn.poll(60)
                got.extend(helper.conn.recv())   # in batches, as a worker sends them
        assert without_seconds(got) == without_seconds(expected)
    finally:
        helper.stop()
    assert not helper.process.is_alive() and not psutil.pid_exists(helper.process.pid)


def test_one_core_has_no_helper():
    assert start_helper(tiny_data(), "tests.toys:ToyTrainer", cpus=1) is None


def test_the_helper_dies_with_its_driver_even_by_sigkill():
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from tests.sweep.test_helper import tiny_data
        from caviar.sweep.helper import start_helper
        helper = start_helper(tiny_data(), "tests.toys:ToyTrainer", cpus=2)
        print(helper.process.pid, flush=True)
        time.sleep(600)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    pid = int(driver.stdout.readline())
    assert psutil.pid_exists(pid)
    driver.send_signal(signal.SIGKILL)
    driver.wait(30)
    deadline = time.monotonic() + 30
    while psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
        assert time.monotonic() < deadline, "the helper outlived its driver"
        time.sleep(0.05)


def test_helpers_die_with_a_driver_killed_the_moment_they_were_forked():
    """The driver dies before its helpers have asked Linux for the death signal: they end anyway
    (they see their parent changed, and the pipe's far end is closed in them)."""
    driver = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import os, signal
        from tests.sweep.test_helper import tiny_data
        from caviar.sweep.helper import start_helper
        helpers = [start_helper(tiny_data(), "tests.toys:ToyTrainer", cpus=2) for _ in range(5)]
        print(" ".join(str(h.process.pid) for h in helpers), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)], cwd=ROOT, stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    pids = [int(pid) for pid in driver.stdout.readline().split()]
    driver.wait(30)
    deadline = time.monotonic() + 30
    alive = lambda pid: psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE  # noqa: E731
    while any(alive(pid) for pid in pids):
        assert time.monotonic() < deadline, "a helper outlived its driver"
        time.sleep(0.05)


class OneSegmentSweep:
    """The two things a helper asks of a sweep: its next segment (one), and to hear its events."""

    def __init__(self, segment: Segment) -> None:
        self.segments, self.events = [segment], []

    def _take_work(self, slot, batch: int) -> list[Segment]:
        taken, self.segments = self.segments[:batch], self.segments[batch:]
        return taken

    def _on_event(self, slot, call, event: tuple) -> None:
        self.events.append(event)


def test_a_helper_started_for_a_sweep_has_its_first_segment_from_the_fork():
    """Decided before the fork (the child has what deciding imported) and sent at once: the helper
    trains it without being given anything, and the driver hears its events as from any segment."""
    segment = Segment(3, {"learning_rate": 0.01}, 5, 2, 2)
    sweep = OneSegmentSweep(segment)
    helper = start_helper(tiny_data(), "tests.toys:ToyTrainer", cpus=2, sweep=sweep)
    assert helper is not None
    try:
        assert helper.trials() == [3] and helper.busy and not sweep.segments
        deadline = time.monotonic() + 60
        while helper.busy:
            assert time.monotonic() < deadline
            helper.pump(sweep, wait=0.1)
        expected = list(SegmentRunner(tiny_data(), "tests.toys:ToyTrainer").run(segment))
        assert without_seconds(sweep.events) == without_seconds(expected)
        assert not helper.give(sweep)   # nothing left
    finally:
        helper.stop()
