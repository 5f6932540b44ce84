"""The live progress view of a sweep: one line, redrawn in a terminal, printed now and then elsewhere.

done / running / pruned / failed, the best score so far with its configuration, and an ETA. The
view only reads counters the driver keeps anyway, so drawing it costs the same at trial 10 and at
trial 10,000; it redraws at most `interval` seconds apart.
"""

from __future__ import annotations

import math
import shutil
import sys
import time
from typing import Any, TextIO


def format_value(value: Any) -> str:
    """A hyperparameter value, short: 3.16e-04 for small or large floats, 0.25 otherwise."""
    if isinstance(value, float):
        if value == 0 or not math.isfinite(value):
            return f"{value:g}"
        return f"{value:.4g}" if 1e-2 <= abs(value) < 1e4 else f"{value:.2e}"
    return str(value)


def format_duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class Progress:
    """Draws a sweep's state.

    Args:
        total: trials in the sweep.
        metric: the name of the job's metric, shown beside the best score.
        stream: where to draw (default stderr, so stdout keeps only the results).
        interactive: redraw one line in place; default: when `stream` is a terminal.
        interval: seconds between redraws (between plain lines when not interactive).
    """

    def __init__(self, total: int, metric: str, *, stream: TextIO | None = None, interactive: bool | None = None,
                 interval: float | None = None, already_done: int = 0) -> None:
        self.total, self.metric = total, metric
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() if interactive is None else interactive
        self.interval = interval if interval is not None else (0.1 if self.interactive else 5.0)
        self.start = time.monotonic()
        self.already_done = already_done
        self.last_draw = -math.inf
        self.last_line = ""

    def line(self, done: int, running: int, pruned: int, failed: int, best: tuple | None) -> str:
        elapsed = time.monotonic() - self.start
        done_now = done - self.already_done
        eta = elapsed / done_now * (self.total - done) if done_now > 0 else math.inf
        # Counts and time first: a narrow terminal cuts the line's end, and the best configuration
        # (long with many hyperparameters) is what can go.
        parts = [f"{done}/{self.total} done", f"{running} running", f"{pruned} pruned", f"{failed} failed",
                 f"{format_duration(elapsed)} elapsed, ETA {format_duration(eta) if done < self.total else '0:00'}"]
        if best is not None:
            score, trial_id, params = best
            config = " ".join(f"{k}={format_value(v)}" for k, v in params.items())
            parts.append(f"best {self.metric} {score:.4g} (trial {trial_id}{': ' + config if config else ''})")
        return " | ".join(parts)

    def update(self, done: int, running: int, pruned: int, failed: int, best: tuple | None, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self.last_draw < self.interval:
            return
        self.last_draw = now
        line = self.line(done, running, pruned, failed, best)
        if self.interactive:
            width = shutil.get_terminal_size((120, 20)).columns
            self.stream.write("\r\x1b[2K" + line[: width - 1])
        elif line != self.last_line:
            self.stream.write(line + "\n")
        self.last_line = line
        self.stream.flush()

    def note(self, text: str) -> None:
        """A message on a line of its own, above the live line (which the next update redraws)."""
        self.stream.write(("\r\x1b[2K" if self.interactive else "") + text + "\n")
        self.stream.flush()
        self.last_draw, self.last_line = -math.inf, ""

    def close(self) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()
