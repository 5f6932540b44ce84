"""`caviar show` and `caviar compare` on run folders built like the drivers write them."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from caviar.views.show import format_table, leaderboard, leaderboard_frame
from tests.run_factory import make_population, make_sweep
from tests.support import caviar_output


def rows_starting_with(text: str, first_cell: str) -> list[str]:
    return [line for line in text.splitlines() if line.split()[:1] == [first_cell]]


def test_show_sweep_prints_status_counts_and_the_best_trials_first(runs, capsys):
    truth = pd.read_parquet(runs / "sweep" / "trials.parquet")
    best5 = truth.sort_values("score", ascending=False).head(5)

    status, out, _ = caviar_output(capsys, "show", "sweep", "--out", str(runs), "--top", "5")

    assert status == 0
    counts = truth["status"].value_counts()
    assert f"trials: 24 ({counts['completed']} completed, {counts['pruned']} pruned, 1 failed, 0 diverged)" in out
    table = out[out.index("trial_id"):].splitlines()
    assert table[0].split()[:7] == ["trial_id", "status", "score", "learning_rate", "beta1", "batch_size", "l2"]
    assert [int(line.split()[0]) for line in table[1:]] == best5["trial_id"].tolist()
    top = best5.iloc[0]
    cells = table[1].split()
    assert cells[2] == f"{top['score']:.4f}"
    assert cells[3] == f"{top['params_learning_rate']:.2e}"  # a learning rate reads in scientific notation
    assert float(cells[4]) == pytest.approx(top["params_beta1"], abs=1e-5)
    assert int(cells[5]) == top["params_batch_size"]
    assert f"best: {top['score']:.4f} (trial {top['trial_id']}" in out


def test_show_sorts_by_the_jobs_mode_and_puts_failed_trials_last(tmp_path, capsys):
    make_sweep(tmp_path, "losses", mode="min", n_trials=10, failed=2)
    truth = pd.read_parquet(tmp_path / "losses" / "trials.parquet")

    _, out, _ = caviar_output(capsys, "show", "losses", "--out", str(tmp_path), "--top", "10")

    lines = out[out.index("trial_id"):].splitlines()[1:]
    shown = [int(line.split()[0]) for line in lines]
    scored = truth.dropna(subset=["score"]).sort_values("score")
    assert shown[:8] == scored["trial_id"].tolist()  # lowest val_loss first
    assert [line.split()[1] for line in lines[-2:]] == ["failed", "failed"]
    assert "FloatingPointError" in lines[-1]  # why it failed
    assert "metric: val_loss (min)" in out


def test_show_babysit_prints_epochs_with_decisions_and_events(runs, capsys):
    status, out, _ = caviar_output(capsys, "show", str(runs / "panda"))  # a path works as well as a name

    assert status == 0
    assert "babysit panda" in out
    assert "best 0.9600 at epoch 11" in out
    epochs_part, events_part = out.split("\nepochs\n")[1].split("\nevents\n")
    epoch_rows = epochs_part.strip().splitlines()
    assert epoch_rows[0].split()[:3] == ["epoch", "learning_rate", "val_accuracy"]
    assert epoch_rows[0].split()[-1] == "decision"
    assert len(epoch_rows) == 1 + 12
    assert rows_starting_with(epochs_part, "5")[0].split()[-1] == "rollback"
    assert rows_starting_with(epochs_part, "10")[0].split()[1] == "3.00e-04"
    for event in ("diverged", "rollback", "plateau", "nudge", "stop", "improved"):
        assert event in events_part
    nudge = rows_starting_with(events_part, "10")[0]
    assert "learning_rate=0.0003" in nudge


def test_compare_puts_a_sweep_and_a_babysat_run_side_by_side(runs, capsys):
    trials = pd.read_parquet(runs / "sweep" / "trials.parquet")
    epochs = pd.read_parquet(runs / "sweep" / "epochs.parquet")
    best = trials.loc[trials["score"].idxmax()]
    best_curve = epochs[epochs["trial_id"] == best["trial_id"]]
    epoch_of_best = int(best_curve.loc[best_curve["val_accuracy"].idxmax(), "epoch"])

    status, out, _ = caviar_output(capsys, "compare", "sweep", "panda", "--out", str(runs))

    assert status == 0
    header, sweep, panda = out.strip().splitlines()
    assert header.split() == ["run", "kind", "metric", "mode", "best", "best_trial", "trials", "epochs_run",
                              "compute_s", "epochs_to_best"]
    assert sweep.split() == ["sweep", "sweep", "val_accuracy", "max", f"{best['score']:.4f}", str(best["trial_id"]),
                             "24", str(trials["epochs"].sum()), f"{trials['seconds'].sum():.1f}", str(epoch_of_best)]
    assert panda.split() == ["panda", "babysit", "val_accuracy", "max", "0.9600", "-", "-", "12", "9.6", "11"]


def test_a_missing_run_or_a_folder_that_is_no_run_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for argv in (["show", "nope", "--out", str(tmp_path)], ["show", "empty", "--out", str(tmp_path)],
                 ["compare", "nope", "--out", str(tmp_path)], ["report", "nope", "--out", str(tmp_path)]):
        status, out, err = caviar_output(capsys, *argv)
        assert status == 2
        assert out == ""
        assert len(err.strip().splitlines()) == 1
        assert "nope" in err or "empty" in err


def test_show_reads_a_half_written_run(tmp_path, capsys):
    # Killed mid-sweep: no epochs table yet, a temp part being written, a temp job file.
    run = make_sweep(tmp_path, "killed", n_trials=6, with_epochs=False, failed=0)
    (run / "trials.parquet" / ".part-000002.parquet.4242-abcdef.tmp").write_bytes(b"PAR1 half a file")
    (run / ".job.toml.4242-abcdef.tmp").write_text("name = ")

    status, out, _ = caviar_output(capsys, "show", "killed", "--out", str(tmp_path))

    assert status == 0
    assert "trials: 6 (" in out
    assert "best: " in out and ", epoch" not in out.split("best: ")[1].splitlines()[0]  # no epochs to tell


def test_leaderboard_is_a_printable_table_of_the_best_trials():
    trials = pd.DataFrame({
        "trial_id": [0, 1, 2, 3, 4],
        "status": ["completed", "failed", "pruned", "completed", "completed"],
        "params_learning_rate": [1e-3, 1e-2, 3e-4, 2e-2, 5e-4],
        "params_epochs": [5, 5, 5, 5, 5],  # a searched hyperparameter named like a trial column
        "score": [0.8, np.nan, 0.9, 0.9, 0.7],
        "epochs": [5, 1, 2, 5, 5],
        "seconds": [1.0, 0.1, 0.4, 1.0, 1.0],
        "error": [None, "boom", None, None, None],
    })

    board = leaderboard_frame(trials, "max", top=5)
    assert board["trial_id"].tolist() == [3, 2, 0, 4, 1]  # a tie goes to the completed trial; failed last
    assert list(board.columns) == ["trial_id", "status", "score", "learning_rate", "params_epochs", "epochs",
                                   "seconds", "error"]
    assert leaderboard_frame(trials, "min", top=2)["trial_id"].tolist() == [4, 0]
    assert "error" not in leaderboard_frame(trials, "max", top=2).columns

    text = leaderboard(trials, "max", top=3)
    assert isinstance(text, str)
    assert text.splitlines()[1].split() == ["3", "completed", "0.9000", "2.00e-02", "5", "5", "1.0"]
    with pytest.raises(ValueError, match="mode"):
        leaderboard(trials, "maximize")


def test_numbers_read_on_their_scale():
    frame = pd.DataFrame({"beta1": [0.9, 0.999, 0.9995], "l2": [1e-6, 1e-4, 1e-2], "momentum": [0.9, 0.95, 0.5],
                          "seconds": [1.234, 20.0, 300.5], "score": [0.5, math.nan, 0.75]})

    lines = format_table(frame, {"beta1": "one_minus_log"}).splitlines()

    assert lines[0].split() == ["beta1", "l2", "momentum", "seconds", "score"]
    assert lines[1].split() == ["0.900000", "1.00e-06", "0.9000", "1.2", "0.5000"]
    assert lines[3].split() == ["0.999500", "1.00e-02", "0.5000", "300.5", "0.7500"]
    assert lines[2].split()[-1] == "-"


def test_show_json_is_one_object_a_script_can_read(runs, capsys):
    import json

    from caviar import cli

    assert cli.main(["show", "sweep", "--json", "--top", "3", "--out", str(runs)]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert sweep["kind"] == "sweep" and len(sweep["top"]) == 3 and sum(sweep["counts"].values()) == 24
    assert sweep["top"][0]["score"] == sweep["summary"]["best"] and sweep["summary"]["trials"] == 24
    assert cli.main(["show", "--json", "panda", "--out", str(runs)]) == 0
    panda = json.loads(capsys.readouterr().out)
    assert panda["kind"] == "babysit" and [e["epoch"] for e in panda["epochs"]] == list(range(1, 13))


def test_show_of_a_population_counts_its_copies_and_epochs_and_prints_the_best_members_schedule(tmp_path, capsys):
    import json

    make_population(tmp_path, "pop")
    status, out, _ = caviar_output(capsys, "show", "pop", "--out", str(tmp_path))
    assert status == 0
    assert "1 diverged" in out and "0 diverged" not in out   # member 1's divergence at epoch 3, replaced
    assert "2 exploit" in out and "1 rollback" in out
    assert "over 23 epochs" in out   # the epochs trained (member 2 stopped at 5), not 4 x 6
    # The best member (3) carries member 0's model up to 3, member 1's at 4, then its own.
    assert "epochs 1-3  member 0  learning_rate 0.05" in out
    assert "epochs 4-4  member 1  learning_rate 0.04" in out and "epochs 5-6  member 3  learning_rate 0.032" in out
    status, out, _ = caviar_output(capsys, "show", "pop", "--out", str(tmp_path), "--json")
    shown = json.loads(out)
    assert [(row["epoch"], row["member"], row["learning_rate"]) for row in shown["schedule"]] == [
        (1, 0, 0.05), (2, 0, 0.05), (3, 0, 0.05), (4, 1, 0.04), (5, 3, 0.032), (6, 3, 0.032)]
    assert shown["summary"]["epochs_run"] == 23 and shown["events"]["diverged"] == 1
