"""The fixed cost of a sweep on Ray, measured: what it pays besides its trials' compute.

Timed where it happens, printed as one line on stderr with CAVIAR_DEBUG=1 (and read by
benchmarks/parallel.py): the dataset's transfer into Ray's object store, the workers' start (from
the first actor asked for to the last one seen started: each imports the trainer's modules),
stopping them, and the final compaction of the run's tables. Seconds of wall time, this process.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

PREFIX = "caviar: fixed costs:"


class Costs:
    """Seconds spent per fixed cost of one sweep (`seconds`: name -> seconds, summed over calls)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextmanager
    def timed(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - start

    def workers(self, slots: Sequence[Any]) -> None:
        """The workers' start from the slots of a sweep (each with `created` and `started`, monotonic
        seconds; 0 for none): first asked for to last seen started."""
        started = [slot for slot in slots if slot.started and slot.created]
        if started:
            self.seconds["workers start"] = (max(s.started for s in started) - min(s.created for s in started))

    def line(self) -> str:
        parts = ", ".join(f"{name} {seconds:.2f} s" for name, seconds in self.seconds.items())
        return f"{PREFIX} {parts or 'none (no Ray joined)'}"

    def report(self) -> None:
        if os.environ.get("CAVIAR_DEBUG"):
            print(self.line(), file=sys.stderr, flush=True)
