"""A population's table rows from a generation's reports (caviar/population/rows.py)."""

from __future__ import annotations

from caviar.population.rows import epoch_rows, values_at
from caviar.population.worker import Replacement, Report


def report_with_a_replacement() -> Report:
    # Epochs 4-6; the divergence at epoch 5 replaced: epoch 6 trains with the replacement's rate.
    epochs = [(4, {"val_accuracy": 0.9}, 0.1), (5, {"val_accuracy": 0.1}, 0.1), (6, {"val_accuracy": 0.8}, 0.1)]
    return Report(member=2, epochs=epochs, diverged=None, first_loss=1.0, seconds=0.3, best_epoch=4,
                  replacements=[Replacement(5, 0, "non-finite train_loss inf at epoch 5", {"learning_rate": 0.01})])


def test_the_values_an_epoch_trained_with_switch_after_each_replaced_divergence():
    report, began = report_with_a_replacement(), {"learning_rate": 0.2}
    assert [values_at(report, began, e)["learning_rate"] for e in (4, 5, 6)] == [0.2, 0.2, 0.01]
    rows = epoch_rows(report, began, generation=1, default_rate=None)
    assert [row["params_learning_rate"] for row in rows] == [values_at(report, began, e)["learning_rate"]
                                                            for e in (4, 5, 6)]
