"""`caviar.sweep(...)` from Python, on the session's real Ray: the same run as `caviar parallel`.

A job given as a path, a dict or a parsed Job gives the run folder the command line writes, and
returns what `caviar.load` reads; a trainer class passed itself works when workers can import it
and is refused in one line when they cannot; bad input is a ValueError with the command's line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

import caviar
from caviar.config.job import parse_job
from caviar.store.reader import load
from tests.support import ROOT, TOY_SWEEP, caviar_output, hold_lock, run_sweep, write_job
from tests.toys import ToyTrainer

# What differs between two runs of the same trials: durations, the node, and the wall-clock times.
VOLATILE = ["seconds", "node", "started_at", "finished_at"]


class HalfToy(ToyTrainer):
    """A trainer defined in this test module: workers import it as tests.sweep.test_api:HalfToy."""

    def train_epoch(self) -> dict[str, float]:
        metrics = super().train_epoch()
        return {**metrics, "val_accuracy": metrics["val_accuracy"] / 2}


def tables(run) -> tuple:
    """A run's trials and epochs without what timing changes, in a fixed order."""
    trials = run.trials.drop(columns=VOLATILE).sort_values("trial_id").reset_index(drop=True)
    epochs = run.epochs.drop(columns=["seconds", "time"]).sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    return trials, epochs


def layout(path: Path) -> list[tuple[str, bool]]:
    """The run folder's entries (part files vary in number with flush timing: their folders count)."""
    return sorted((p.name, p.is_dir()) for p in path.iterdir())


def test_a_sweep_from_a_path_a_dict_and_a_job_is_the_run_the_command_line_writes(ray_session, tmp_path):
    job = write_job(tmp_path, "toy", TOY_SWEEP, search={"trials": 4, "scheduler": "fifo"})
    out = tmp_path / "results"
    assert run_sweep(job, out, ray_session) == 0
    cli = load(out / "toy")
    raw = {"name": "toy", **{k: dict(v) for k, v in TOY_SWEEP.items()}}
    raw["search"].update(trials=4, scheduler="fifo")
    for name, given in (("by_path", job), ("by_dict", raw), ("by_job", parse_job(raw))):
        run = caviar.sweep(given, name=name, out=out, address=ray_session, quiet=True)
        assert isinstance(run, type(cli)) and run.kind == "sweep" and run.path == out / name
        assert layout(run.path) == layout(cli.path)
        for mine, theirs in zip(tables(run), tables(cli)):
            assert mine.equals(theirs)
        assert {k: v for k, v in run.job.items() if k != "name"} == {k: v for k, v in cli.job.items() if k != "name"}


def test_a_trainer_class_from_a_module_is_recorded_by_name_and_runs_on_the_workers(ray_session, tmp_path):
    raw = {"data": {"source": "spiral"}, "model": {"epochs": 2}, "search": {"trials": 2, "scheduler": "fifo"},
           "space": {"learning_rate": {"log_uniform": [1e-3, 1e-2]}}}
    run = caviar.sweep(raw, trainer=HalfToy, name="half", out=tmp_path, address=ray_session, quiet=True,
                       overrides={"search.seed": 5})
    assert run.job["model"]["trainer"] == "tests.sweep.test_api:HalfToy" and run.job["search"]["seed"] == 5
    assert (run.trials["status"] == "completed").all() and (run.trials["val_accuracy"] < 0.5).all()


def test_a_trainer_defined_in_main_is_refused_in_one_line_before_any_work(tmp_path):
    code = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
            "import caviar\nfrom tests.toys import ToyTrainer\nclass Mine(ToyTrainer): pass\n"
            f"try:\n    caviar.sweep({{'data': {{'source': 'spiral'}}}}, trainer=Mine, out={str(tmp_path)!r})\n"
            "except ValueError as e:\n    print(e)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.startswith("trainer: Mine is defined in __main__ (a script or a notebook)"), done
    assert done.stdout.count("\n") == 1 and list(tmp_path.iterdir()) == []


def test_a_regression_job_on_generated_data_records_val_mse_and_val_r2(ray_session, tmp_path):
    run = caviar.sweep("regression", out=tmp_path, address=ray_session, quiet=True,
                       overrides={"search.trials": 2, "model.epochs": 2, "search.scheduler": "fifo",
                                  "data.options": {"n_samples": 300}, "model.hidden_layers": [8]})
    assert {"val_mse", "val_r2", "train_mse", "train_r2"} <= set(run.trials.columns)
    assert (run.trials["status"] == "completed").all() and (run.trials["score"] == run.trials["val_r2"]).all()
    assert len(run.epochs) == 4 and run.epochs["val_mse"].gt(0).all()


def test_a_metric_the_task_does_not_report_is_refused_before_any_work(ray_session, tmp_path, capsys):
    job = write_job(tmp_path, "mismatch", data={"source": "caviar.sources:friedman"}, model={"task": "regression"},
                    search={"metric": "val_accuracy"})
    status, out, err = caviar_output(capsys, "parallel", job, "--out", tmp_path / "results", "--address", ray_session)
    assert status == 2 and err.count("\n") == 1
    assert err.startswith("caviar parallel: error: search.metric: the mlp trainer reports val_mse, val_r2, ")
    assert "for model.task = 'regression', got 'val_accuracy'" in err and not (tmp_path / "results").exists()
    with pytest.raises(ValueError, match=r"^search.metric: the mlp trainer reports val_mse"):
        caviar.sweep(job, out=tmp_path / "results", address=ray_session)
    assert not (tmp_path / "results").exists()


def test_bad_input_from_python_is_a_value_error_with_the_commands_line(ray_session, tmp_path):
    with pytest.raises(ValueError, match=r"^data.source: tests.data_functions:raises raised RuntimeError"):
        caviar.sweep({"data": {"source": "spiral"}}, data="tests.data_functions:raises", out=tmp_path)
    with pytest.raises(ValueError, match=r"^search.trails: unknown key \(did you mean 'trials'\?\)"):
        caviar.sweep({"search": {"trails": 2}}, out=tmp_path)
    with pytest.raises(ValueError, match=r"^overrides: expected a dict or a list"):
        caviar.sweep(None, overrides="search.trials=2", out=tmp_path)
    assert list(tmp_path.iterdir()) == []
    job = write_job(tmp_path, "toy", TOY_SWEEP, search={"trials": 1})
    caviar.sweep(job, out=tmp_path / "results", address=ray_session, quiet=True)
    with pytest.raises(ValueError, match=r"already holds results: pass --resume"):
        caviar.sweep(job, out=tmp_path / "results", address=ray_session, quiet=True)
    grown = caviar.sweep(None, name="toy", resume=True, overrides=["search.trials=2"], out=tmp_path / "results",
                         address=ray_session, quiet=True)
    assert sorted(grown.trials["trial_id"]) == [0, 1]


def test_the_readme_gives_the_signatures_of_both_entry_points():
    import inspect
    import re

    import caviar.babysit.command
    import caviar.sweep.command

    readme = (ROOT / "README.md").read_text(encoding="utf-8").split("## From Python", 1)[1]
    shown = re.search(r"`caviar.sweep\((.*?)\)`", readme, re.S).group(1)
    names = [part.split("=")[0].strip() for part in shown.replace("\n", " ").split(",") if part.strip() != "*"]
    assert names == list(inspect.signature(caviar.sweep.command.sweep).parameters)
    babysit = set(inspect.signature(caviar.babysit.command.babysit).parameters)
    assert babysit == set(names) - {"address", "concurrency"} | {"from_run"}


def test_ctrl_c_in_python_keeps_the_finished_trials_raises_keyboard_interrupt_and_resumes(ray_session, tmp_path):
    out = tmp_path / "out"
    job = {"name": "sweep", **TOY_SWEEP, "model": {"epochs": 10, "sleep": 0.1}, "search": {**TOY_SWEEP["search"],
                                                                                          "trials": 16}}
    code = ("import caviar\nfrom tests.toys import ToyTrainer\n"
            f"try:\n    caviar.sweep({job!r}, trainer=ToyTrainer, out={str(out)!r}, address={ray_session!r}, quiet=True)\n"
            "except KeyboardInterrupt as e:\n    print('interrupted:', e, flush=True)\n")
    trials_dir = out / "sweep" / "trials.parquet"
    driver = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True,
                              preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while not (trials_dir.is_dir() and sum(pq.read_metadata(p).num_rows for p in trials_dir.glob("part-*.parquet")) >= 2):
        assert time.monotonic() < deadline and driver.poll() is None, driver.stderr.read()
        time.sleep(0.05)
    driver.send_signal(signal.SIGINT)
    stdout, stderr = driver.communicate(timeout=60)
    assert driver.returncode == 0 and stdout.startswith("interrupted: sweep interrupted; the finished trials are saved")
    assert "Resume with: " in stderr and "--resume" in stderr
    kept = load(out / "sweep").trials
    assert 2 <= len(kept) < 16 and kept.status.eq("completed").all()
    run = caviar.sweep(None, name="sweep", resume=True, out=out, address=ray_session, quiet=True)
    assert sorted(run.trials.trial_id) == list(range(16)) and set(kept.trial_id) <= set(run.trials.trial_id)
    assert run.job["model"]["trainer"] == "tests.toys:ToyTrainer"


def test_a_run_another_driver_holds_is_refused_from_python(ray_session, tmp_path):
    holder = hold_lock(tmp_path / "toy", "sweep")
    try:
        with pytest.raises(ValueError, match=r"^name: 'toy' is being run by "):
            caviar.sweep({"name": "toy", **TOY_SWEEP}, out=tmp_path, address=ray_session, quiet=True)
    finally:
        holder.kill()
        holder.wait()


def test_a_ray_the_caller_connected_stays_connected(ray_session, tmp_path):
    import ray

    assert ray.is_initialized()
    run = caviar.sweep({"name": "toy", **TOY_SWEEP, "search": {**TOY_SWEEP["search"], "trials": 2}}, out=tmp_path,
                       quiet=True)   # no address: the Ray this process is connected to
    assert len(run.trials) == 2 and ray.is_initialized() and ray.cluster_resources().get("CPU") == 2
