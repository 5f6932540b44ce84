"""Views of a population (caviar/views/population.py): the lineage, the schedule, the figures."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd

from caviar.views.population import is_population, lineage, member_curves, schedule, schedule_plot, schedule_text


def population_run():
    """Three members, 6 epochs: member 1 copies 2 at epoch 2, member 0 copies 1 at epoch 4."""
    rows = []
    rates = {0: [0.3] * 4 + [0.004] * 2, 1: [0.001] * 2 + [0.02] * 4, 2: [0.05] * 6}
    for member, per_epoch in rates.items():
        for epoch, rate in enumerate(per_epoch, start=1):
            rows.append({"trial_id": member, "epoch": epoch, "learning_rate": rate, "params_learning_rate": rate,
                         "val_accuracy": 0.5 + 0.01 * epoch + 0.1 * (member == 0)})
    events = pd.DataFrame([
        {"epoch": 2, "event": "exploit", "member": 1, "source": 2},
        {"epoch": 2, "event": "improved", "member": 2, "source": pd.NA},
        {"epoch": 4, "event": "exploit", "member": 0, "source": 1},
    ])
    trials = pd.DataFrame({"trial_id": [0, 1, 2], "status": ["completed"] * 3, "score": [0.9, 0.6, 0.7]})
    job = {"search": {"scheduler": "pbt", "metric": "val_accuracy", "mode": "max"}}
    return SimpleNamespace(trials=trials, epochs=pd.DataFrame(rows), events=events, job=job)


def test_the_best_members_lineage_follows_its_copies_back():
    run = population_run()
    assert lineage(run.events, 0, 6) == [(2, 1, 2), (1, 3, 4), (0, 5, 6)]
    assert lineage(run.events, 2, 6) == [(2, 1, 6)]


def test_the_schedule_is_the_lineages_rates_epoch_by_epoch():
    frame = schedule(population_run())
    assert list(frame["member"]) == [2, 2, 1, 1, 0, 0]
    assert list(frame["learning_rate"]) == [0.05, 0.05, 0.02, 0.02, 0.004, 0.004]
    text = schedule_text(population_run())
    assert "epochs 1-2  member 2  learning_rate 0.05" in text and "epochs 5-6  member 0  learning_rate 0.004" in text


def test_a_population_is_told_by_its_job_and_its_figures_draw():
    run = population_run()
    assert is_population(run.job) and not is_population({"search": {"scheduler": "asha"}}) and not is_population({})
    assert member_curves(run.epochs, run.events, "val_accuracy").axes
    assert schedule_plot(schedule(run)).axes
    assert schedule_plot(pd.DataFrame()).axes   # nothing yet: a figure that says so


def test_show_json_of_a_population_holds_its_schedule(tmp_path):
    from caviar.views.show import show_json

    run = population_run()
    run.name, run.kind, run.path = "p", "sweep", tmp_path
    shown = show_json(run)
    assert [row["learning_rate"] for row in shown["schedule"]] == [0.05, 0.05, 0.02, 0.02, 0.004, 0.004]
