"""The live progress view: one redrawn line in a terminal, plain lines elsewhere, notes above it."""

from __future__ import annotations

import io
import math

from caviar.views.progress import Progress, format_duration, format_value


def test_values_are_short_and_durations_read_as_clock_time():
    assert format_value(3.1623e-4) == "3.16e-04" and format_value(0.25) == "0.25" and format_value(7) == "7"
    assert format_value(math.nan) == "nan"
    assert format_duration(59) == "0:59" and format_duration(3725) == "1:02:05" and format_duration(math.inf) == "?"


def test_the_line_has_counts_the_best_trial_with_its_config_and_an_eta():
    progress = Progress(10, "val_accuracy", stream=io.StringIO(), interactive=False)
    progress.start -= 20                       # 20 s in, 4 of 10 done: 30 s to go
    line = progress.line(4, 2, 1, 0, (0.9731, 3, {"learning_rate": 3.1623e-4}))
    assert line.startswith("4/10 done | 2 running | 1 pruned | 0 failed | ")
    assert "best val_accuracy 0.9731 (trial 3: learning_rate=3.16e-04)" in line
    assert "| 0:20 elapsed, ETA 0:30 | best" in line   # time before the best: a narrow terminal keeps it


def test_outside_a_terminal_lines_are_printed_at_most_every_interval_and_never_twice_alike():
    stream = io.StringIO()
    progress = Progress(4, "score", stream=stream, interval=3600)
    assert not progress.interactive
    progress.update(0, 2, 0, 0, None)
    progress.update(1, 2, 0, 0, None)                 # within the interval: not drawn
    progress.update(4, 0, 0, 0, None, force=True)
    progress.update(4, 0, 0, 0, None, force=True)     # the same line again: not repeated
    lines = stream.getvalue().splitlines()
    assert [line.split(" | ")[0] for line in lines] == ["0/4 done", "4/4 done"]


def test_in_a_terminal_one_line_is_redrawn_and_a_note_goes_above_it():
    stream = io.StringIO()
    progress = Progress(4, "score", stream=stream, interactive=True, interval=0)
    progress.update(1, 2, 0, 0, None)
    progress.note("caviar: a message")
    progress.update(1, 2, 0, 0, None)                 # the same state is drawn again under the note
    progress.close()
    text = stream.getvalue()
    assert "\n" not in text.split("caviar: a message")[0]   # the live line is redrawn, never scrolled
    assert text.count("\r\x1b[2K1/4 done") == 2
    assert text.endswith("\n")
    assert text.index("caviar: a message\n") < text.rindex("1/4 done")


def test_counts_and_time_come_before_the_best_configuration_so_a_narrow_terminal_keeps_them():
    import io

    from caviar.views.progress import Progress

    progress = Progress(10, "val_accuracy", stream=io.StringIO(), interactive=False)
    params = {f"hyperparameter_{i}": 0.000123 * i for i in range(6)}
    line = progress.line(4, 2, 1, 0, (0.93, 3, params))
    assert line.index("elapsed") < line.index("ETA") < line.index("best")


def test_in_a_terminal_the_line_fits_its_width_and_keeps_the_counts_and_time(monkeypatch):
    monkeypatch.setenv("COLUMNS", "72")   # what shutil.get_terminal_size reads first
    stream = io.StringIO()
    progress = Progress(10, "val_accuracy", stream=stream, interactive=True)
    params = {f"hyperparameter_{i}": 0.000123 * i for i in range(6)}
    progress.update(4, 2, 1, 0, (0.93, 3, params), force=True)
    drawn = stream.getvalue().split("\r\x1b[2K")[-1]
    assert len(drawn) == 71 < len(progress.line(4, 2, 1, 0, (0.93, 3, params)))   # one column spare: no wrap
    assert drawn.startswith("4/10 done | 2 running | 1 pruned | 0 failed |") and "ETA" in drawn
