"""The driver's records of a sweep in flight: each running trial, each streaming call to a worker,
and each worker slot. Plain data; `caviar.sweep.loop.Sweep` owns and changes them.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from caviar.sweep.worker import Segment


@dataclass
class TrialState:
    """A trial the driver is running: its identity and what it has reported so far."""

    trial_id: int
    config: dict[str, Any]
    params: dict[str, Any]
    seed: int
    round: int
    max_epochs: int
    epoch_rows: list[dict[str, Any]] = field(default_factory=list)
    last_metrics: dict[str, float] = field(default_factory=dict)
    best: float = -math.inf      # best score so far, sign-flipped so that higher is better
    seconds: float = 0.0
    epochs: int = 0
    retries: int = 0
    started_at: float = math.inf  # wall-clock seconds (`time.time()` on its worker) it began training

    def restart(self) -> None:
        """Forget a lost attempt (its worker died): the trial reruns from scratch."""
        self.epoch_rows.clear()
        self.last_metrics.clear()
        self.best, self.seconds, self.epochs, self.started_at = -math.inf, 0.0, 0, math.inf


@dataclass(eq=False)
class Call:
    """One streaming call to a worker: its segments, and how many of them have ended."""

    stream: Any
    segments: list[Segment]
    ended: int = 0


@dataclass
class Slot:
    """A worker actor and what the driver has asked of it."""

    actor: Any = None                                     # none until there is work for it
    node_ref: Any = ""                                    # the worker's node IP, once it has started
    calls: deque[Call] = field(default_factory=deque)
    held: dict[int, int] = field(default_factory=dict)   # paused trial -> epochs it has run
    drop: list[int] = field(default_factory=list)         # pruned trials to forget at the next call
    segment_started: float = 0.0                          # when the running segment began
    created: float = 0.0                                  # when its actor was asked for
    started: float = 0.0                                  # when the driver saw it started (for timing)
