"""The fixed cost of a sweep on Ray (caviar/sweep/costs.py): timed, and one CAVIAR_DEBUG line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from caviar.sweep import costs as costs_module
from caviar.sweep.costs import PREFIX, Costs
from tests.support import TOY_SWEEP, caviar_main, write_job


def test_costs_sum_per_name_and_the_workers_start_spans_first_asked_to_last_started(monkeypatch):
    ticks = iter([100.0, 100.01, 200.0, 200.01])   # two compactions of 10 ms, on a clock of our own
    monkeypatch.setattr(costs_module.time, "perf_counter", lambda: next(ticks))
    costs = Costs()
    for _ in range(2):
        with costs.timed("compaction"):
            pass
    costs.workers([SimpleNamespace(created=10.0, started=11.5), SimpleNamespace(created=10.2, started=12.0),
                   SimpleNamespace(created=10.4, started=0.0)])   # never started: not counted
    assert costs.seconds["compaction"] == pytest.approx(0.02)
    assert costs.seconds["workers start"] == 2.0
    assert costs.line().startswith(f"{PREFIX} compaction 0.0") and costs.line().endswith("workers start 2.00 s")
    assert Costs().line() == f"{PREFIX} none (no Ray joined)"


def test_a_sweep_on_ray_says_its_fixed_costs_with_caviar_debug_only(ray_session, tmp_path, monkeypatch, capsys):
    job = write_job(tmp_path, "costs", TOY_SWEEP, search={"trials": 4})
    assert caviar_main("parallel", job, "--out", tmp_path / "quiet", "--address", ray_session, "--quiet") == 0
    assert PREFIX not in capsys.readouterr().err
    monkeypatch.setenv("CAVIAR_DEBUG", "1")
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--address", ray_session, "--quiet") == 0
    line = next(line for line in capsys.readouterr().err.splitlines() if line.startswith(PREFIX))
    names = [part.strip().rsplit(" ", 2)[0] for part in line[len(PREFIX):].split(",")]
    assert names == ["data to Ray", "workers start", "stopping workers", "compaction"], line
