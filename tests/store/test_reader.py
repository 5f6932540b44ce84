"""The read side: `caviar.load` and `caviar.load_all` on finished, crashed and foreign run folders."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import caviar
from caviar.store.folder import open_run
from caviar.store.reader import load, load_all, load_trials

JOB = 'name = "digits"\n[search]\ntrials = 4\nmetric = "val_accuracy"\n'


def write_sweep(out, name, n=3, *, params=None):
    run = open_run(out, name, JOB.replace("digits", name))
    trials, epochs = run.table("trials"), run.table("epochs")
    for i in range(n):
        epochs.append([{"trial_id": i, "epoch": e, "learning_rate": 0.01, "seconds": 0.1, "val_accuracy": e / 10}
                       for e in (1, 2)])
        trials.append([{"trial_id": i, "status": "completed", **(params or {"params_lr": 10.0 ** -i}),
                        "score": i / 10, "epochs": 2, "seconds": 0.2, "seed": i, "error": None,
                        "val_accuracy": i / 10}])
        run.flush()
    return run


def test_load_reads_a_sweep_with_its_job_and_typed_columns(tmp_path):
    run = write_sweep(tmp_path, "digits")
    run.compact()
    r = caviar.load(tmp_path / "digits")            # the public name
    assert (r.name, r.kind, r.path) == ("digits", "sweep", tmp_path / "digits")
    assert r.job == {"name": "digits", "search": {"trials": 4, "metric": "val_accuracy"}}
    assert r.trials.trial_id.tolist() == [0, 1, 2] and r.trials.trial_id.dtype == "int64"
    assert r.trials.status.dtype == "str" and r.trials.params_lr.dtype == "float64"
    assert len(r.epochs) == 6 and r.epochs.epoch.dtype == "int64"
    assert r.events.empty and r.events.columns.tolist() == ["epoch", "event", "base_learning_rate", "score", "detail",
                                                            "time"]
    assert str(r.events.time.dtype) == "datetime64[us, UTC]"   # an absent table has the declared types
    assert r.events.epoch.dtype == "int64" and r.events.event.dtype == "str"


def test_load_trials_reads_the_trials_table_alone_as_load_gives_it(tmp_path, monkeypatch):
    """The end of a sweep prints its leaderboard from it: no epoch row is read."""
    import caviar.store.reader as reader_module

    write_sweep(tmp_path, "digits")
    read = []
    read_table = reader_module.read_table
    monkeypatch.setattr(reader_module, "read_table", lambda path, columns=None: (read.append(path.name),
                                                                                read_table(path, columns))[1])
    trials = load_trials(tmp_path / "digits")
    assert read == ["trials.parquet"]
    pd.testing.assert_frame_equal(trials, load(tmp_path / "digits").trials)
    empty = open_run(tmp_path, "empty", JOB.replace("digits", "empty"))
    assert load_trials(empty.path).columns.tolist() == load(empty.path).trials.columns.tolist()


def test_load_reads_a_half_written_run(tmp_path):
    """Killed mid-run: a temp file lying around, an early part without the metric columns."""
    run = open_run(tmp_path, "crashed", JOB)
    trials = run.table("trials")
    trials.append([{"trial_id": 0, "status": "failed", "score": None, "error": "boom", "epochs": 0}])
    trials.flush()
    trials.append([{"trial_id": 1, "status": "completed", "score": 0.9, "epochs": 3, "val_accuracy": 0.9,
                    "params_batch_size": 64}])
    trials.flush()
    (trials.path / ".part-000002.parquet.77-abcdef.tmp").write_bytes(b"PAR1\x00\x00 cut short")
    r = load(run.path)
    assert r.trials.trial_id.tolist() == [0, 1]
    assert r.trials.val_accuracy.isna().tolist() == [True, False]
    # an int column with a hole stays an int column (pandas' nullable Int64), never float
    assert r.trials.params_batch_size.dtype == "Int64" and r.trials.params_batch_size.tolist()[1] == 64
    assert r.trials.error.tolist()[0] == "boom" and pd.isna(r.trials.error.tolist()[1])
    assert r.epochs.empty and r.epochs.columns.tolist() == ["trial_id", "epoch", "learning_rate", "seconds", "time"]


def test_load_reads_parts_written_by_hand_with_differing_columns(tmp_path):
    folder = tmp_path / "manual" / "trials.parquet"
    folder.mkdir(parents=True)
    pq.write_table(pa.table({"trial_id": [0, 1], "status": ["completed"] * 2}), folder / "part-000000.parquet")
    pq.write_table(pa.table({"trial_id": [2], "status": ["pruned"], "val_loss": [0.3]}),
                   folder / "part-000001.parquet")
    r = load(tmp_path / "manual")                     # no job.toml: the tables alone make it a run
    assert r.job == {} and r.trials.trial_id.tolist() == [0, 1, 2]
    assert r.trials.val_loss.isna().tolist() == [True, True, False]


def test_load_reads_a_babysat_run_without_trials(tmp_path):
    run = open_run(tmp_path, "panda", JOB)
    run.table("epochs").append([{"epoch": e, "learning_rate": 0.1, "seconds": 1.0, "val_loss": 1 / e,
                                 "decision": "continue"} for e in (1, 2, 3)])
    run.table("events").append([{"epoch": 2, "event": "improved", "base_learning_rate": 0.1, "score": 0.5,
                                 "detail": ""}])
    run.flush()
    r = load(run.path)
    assert r.kind == "babysit"
    assert r.trials.empty and {"trial_id", "status", "score"} <= set(r.trials.columns)
    assert r.trials.trial_id.dtype == "int64"
    assert "trial_id" not in r.epochs.columns and r.epochs.decision.tolist() == ["continue"] * 3
    assert r.events.event.tolist() == ["improved"]


def test_load_reads_a_single_file_table(tmp_path):
    (tmp_path / "single").mkdir()
    pd.DataFrame({"trial_id": [3, 4], "status": ["completed", "failed"], "score": [0.5, np.nan]}).to_parquet(
        tmp_path / "single" / "trials.parquet")
    r = load(tmp_path / "single")
    assert r.trials.trial_id.tolist() == [3, 4] and r.trials.trial_id.dtype == "int64"
    assert r.trials.status.tolist() == ["completed", "failed"]


def test_load_reads_a_just_opened_run(tmp_path):
    run = open_run(tmp_path, "fresh", JOB)
    r = load(run.path)
    assert r.trials.empty and r.epochs.empty and r.events.empty and r.job["name"] == "digits"


def test_load_skips_a_damaged_part_with_a_warning(tmp_path):
    run = write_sweep(tmp_path, "damaged")
    (run.path / "trials.parquet" / "part-000001.parquet").write_bytes(b"PAR1 damaged on disk")
    with pytest.warns(RuntimeWarning, match="part-000001.parquet"):
        r = load(run.path)
    assert r.trials.trial_id.tolist() == [0, 2]


def test_load_refuses_what_is_not_a_run(tmp_path):
    with pytest.raises(ValueError, match="no run folder"):
        load(tmp_path / "missing")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "todo.txt").write_text("hello")
    with pytest.raises(ValueError, match="not a caviar run"):
        load(tmp_path / "notes")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "job.toml").write_text("name = ")
    with pytest.raises(ValueError, match="job.toml is not valid TOML"):
        load(tmp_path / "bad")


def test_load_all_stacks_every_runs_trials_with_an_experiment_column(tmp_path):
    write_sweep(tmp_path, "a", 2).compact()
    write_sweep(tmp_path, "b", 3, params={"params_lr": 0.1, "params_optimizer": "adam"})
    open_run(tmp_path, "panda", JOB).table("epochs").append([{"epoch": 1, "val_loss": 0.5}])
    (tmp_path / "plots").mkdir()                      # not a run
    (tmp_path / "README.md").write_text("results")
    (tmp_path / ".sweep.old-1234").mkdir()            # an interrupted --overwrite
    (tmp_path / ".sweep.old-1234" / "job.toml").write_text(JOB)
    frame = caviar.load_all(tmp_path)
    assert frame.columns[0] == "experiment"
    assert frame.experiment.tolist() == ["a", "a", "b", "b", "b"]
    assert frame.trial_id.tolist() == [0, 1, 0, 1, 2] and frame.trial_id.dtype == "int64"
    assert frame.params_optimizer.isna().tolist() == [True, True, False, False, False]
    assert frame.groupby("experiment").score.max().to_dict() == {"a": 0.1, "b": 0.2}


def test_load_all_of_an_empty_folder_and_of_conflicting_types(tmp_path):
    assert load_all(tmp_path).columns[:2].tolist() == ["experiment", "trial_id"] and load_all(tmp_path).empty
    with pytest.raises(ValueError, match="no results folder"):
        load_all(tmp_path / "missing")
    write_sweep(tmp_path, "ints", 1, params={"params_units": 32})
    write_sweep(tmp_path, "strings", 1, params={"params_units": "auto"})
    frame = load_all(tmp_path)
    assert frame.params_units.tolist() == [32, "auto"]


WRITER = """
import sys
from caviar.store.folder import open_run
run = open_run(sys.argv[1], "live", 'name = "live"\\n')
trials = run.table("trials")
for batch in range(60):
    trials.append([{"trial_id": 4 * batch + k, "status": "completed", "score": 0.5} for k in range(4)])
    trials.flush()
    if batch % 3 == 2:
        trials.compact()
print("done", flush=True)
"""


def test_load_while_another_process_writes_and_compacts_sees_each_row_once(tmp_path):
    import subprocess
    import sys

    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    seen, reads = 0, 0
    try:
        while proc.poll() is None or reads == 0:
            if not (tmp_path / "live").is_dir():
                continue
            ids = load(tmp_path / "live").trials.trial_id.tolist()
            reads += 1
            assert len(ids) == len(set(ids)), "a row read twice"
            assert ids == list(range(len(ids))), "a row missing"
            assert len(ids) >= seen, "rows went away"
            seen = len(ids)
    finally:
        assert proc.wait(timeout=60) == 0
        proc.stdout.close()
    assert load(tmp_path / "live").trials.trial_id.tolist() == list(range(240))


def test_events_of_an_older_run_read_their_base_rate_under_todays_name(tmp_path):
    """Runs written before the rename called the events' base rate `learning_rate` (the epochs table's
    name for the decayed rate an epoch used): read back, it is `base_learning_rate`, one meaning a name."""
    run = tmp_path / "old"
    (run / "events.parquet").mkdir(parents=True)
    pd.DataFrame({"epoch": [1], "event": ["plateau"], "learning_rate": [0.5], "score": [0.9], "detail": [""]}) \
        .to_parquet(run / "events.parquet" / "part-000000.parquet")
    events = load(run).events
    assert events.columns.tolist() == ["epoch", "event", "base_learning_rate", "score", "detail"]
    assert events["base_learning_rate"].tolist() == [0.5]


def test_load_reads_past_what_a_crash_or_a_resume_set_aside(tmp_path):
    run = write_sweep(tmp_path, "aside")
    aside = run.path / ".trials.parquet.compact-0a0b0c0d"          # a compaction killed before its swap
    aside.mkdir()
    pq.write_table(pq.read_table(run.path / "trials.parquet"), aside / "part-000000-000002.parquet")
    (run.path / ".quarantine" / "trials").mkdir(parents=True)      # a part a resume set aside
    (run.path / ".quarantine" / "trials" / "part-000007.parquet").write_bytes(b"PAR1 damaged")
    assert load(run.path).trials.trial_id.tolist() == [0, 1, 2]
    assert load_all(tmp_path)["trial_id"].tolist() == [0, 1, 2]
    assert sorted(pd.read_parquet(run.path / "trials.parquet").trial_id) == [0, 1, 2]


def test_load_all_compares_a_sweep_and_a_babysat_run_by_a_fixed_model_value(tmp_path, ray_address):
    """A babysat run is one row of `load_all` beside a sweep's trials: its best score, epochs and
    status, the values the job's [space] searches as params_ columns, its fixed values as model_
    ones, so runs of one job compare by a [model] value whatever drove them."""
    from tests.support import DIGITS, run_babysit, run_sweep, write_job

    job = write_job(tmp_path, "digits", DIGITS, model={"hidden_layers": [16], "epochs": 2},
                    space={"learning_rate": {"log_uniform": [1e-3, 1e-1]}},
                    search={"trials": 2, "scheduler": "fifo", "metric": "val_accuracy", "mode": "max"},
                    babysit={"epochs": 3})
    out = tmp_path / "out"
    assert run_sweep(job, out, ray_address, "--name", "narrow") == 0
    assert run_babysit(job, out, "--name", "wide", "--set", "model.hidden_layers=[32]",
                       "--set", "model.learning_rate=0.02") == 0
    frame = load_all(out)
    assert frame.experiment.tolist() == ["narrow", "narrow", "wide"]
    by_layers = frame.groupby("model_hidden_layers")["score"].max()
    assert sorted(by_layers.index) == ["[16]", "[32]"]
    wide = frame[frame.experiment == "wide"].iloc[0]
    epochs = load(out / "wide").epochs
    assert wide["score"] == epochs["val_accuracy"].max() and wide["epochs"] == len(epochs) == 3
    assert wide["status"] == "completed" and pd.isna(wide["trial_id"])
    assert wide["params_learning_rate"] == 0.02 and wide["model_trainer"] == "mlp"
    assert wide["model_epochs"] == 2 and set(frame["model_trainer"]) == {"mlp"}
    assert wide["started_at"] <= wide["finished_at"]
