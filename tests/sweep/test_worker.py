"""The worker's segment runner, without Ray: events, pausing, failures; and, on the session's real
Ray, how worker actors are stopped."""

from __future__ import annotations

import time

import numpy as np

from caviar.data import Dataset
from caviar.sweep.worker import Segment, SegmentRunner, run_batch, stop_actors, trial_worker_class


def tiny_data() -> Dataset:
    x = np.zeros((4, 2), np.float32)
    y = np.array([0, 1, 0, 1])
    return Dataset(x, y, x, y, x[:0], y[:0], 2, "tiny")


def test_a_segment_reports_each_epoch_then_pauses_and_continues():
    runner = SegmentRunner(tiny_data(), "tests.toys:ToyTrainer")
    events = list(runner.run(Segment(7, {"learning_rate": 1e-3}, 1, until_epoch=2, max_epochs=4)))
    assert [e[0] for e in events] == ["epoch", "epoch", "paused"]
    assert [e[2] for e in events[:2]] == [1, 2]
    events = list(runner.run(Segment(7, {"learning_rate": 1e-3}, 1, until_epoch=4, max_epochs=4)))
    assert [(e[0], e[2]) for e in events] == [("epoch", 3), ("epoch", 4), ("done", 4)]
    assert runner.trainers == {}


def test_a_raising_trial_fails_with_its_error_and_a_nan_trial_ends_as_diverged():
    runner = SegmentRunner(tiny_data(), "tests.toys:FlakyTrainer")
    raised = list(runner.run(Segment(1, {"fail": "raise"}, 1, until_epoch=5, max_epochs=5)))
    assert raised[-1][0] == "failed" and "RuntimeError: boom at epoch 2" in raised[-1][4]
    nan = list(runner.run(Segment(2, {"fail": "nan"}, 1, until_epoch=5, max_epochs=5)))
    assert [e[0] for e in nan] == ["epoch", "epoch", "diverged"]   # the driver decides what its score is
    assert nan[-1][2] == 2 and nan[-1][4] == "FloatingPointError: non-finite val_loss=nan at epoch 2"
    assert runner.trainers == {}


def test_same_seed_same_metrics():
    runs = []
    for _ in range(2):
        runner = SegmentRunner(tiny_data(), "tests.toys:ToyTrainer")
        runs.append([e[3] for e in runner.run(Segment(0, {}, 42, 3, 3)) if e[0] == "epoch"])
    assert runs[0] == runs[1]


def test_batches_coalesce_events_but_keep_their_order():
    runner = SegmentRunner(tiny_data(), "tests.toys:ToyTrainer")
    segments = [Segment(t, {}, t, 2, 2) for t in range(3)]
    batches = list(run_batch(runner, segments, [], flush_seconds=60.0, flush_each_segment=False))
    assert len(batches) == 1
    assert [(e[0], e[1]) for e in batches[0] if e[0] != "epoch"] == [("done", 0), ("done", 1), ("done", 2)]
    each = list(run_batch(runner, segments, [], flush_seconds=60.0, flush_each_segment=True))
    assert len(each) == 3


def test_a_metric_named_like_a_result_column_fails_the_trial():
    runner = SegmentRunner(tiny_data(), "tests.toys:ToyTrainer")
    runner.trainer_class = type("Clashing", (runner.trainer_class,), {
        "train_epoch": lambda self: {"score": 1.0, "val_accuracy": 0.5}})
    events = list(runner.run(Segment(0, {}, 1, 2, 2)))
    assert events[-1][0] == "failed" and "score" in events[-1][4]


def test_a_worker_still_starting_is_killed_only_once_it_has_started(ray_session, tmp_path):
    """Killing an actor in the instant its worker is leased makes Ray lose that CPU for good."""
    import ray

    slow = tmp_path / "slow_start_trainer.py"
    slow.write_text("import pathlib, time\ntime.sleep(1.5)\npathlib.Path(__file__).with_suffix('.started').touch()\n"
                    "from tests.toys import ToyTrainer\n")
    actor = trial_worker_class().remote(ray.put(tiny_data()), "slow_start_trainer:ToyTrainer", [str(tmp_path)], 1)
    stop_actors([actor], [actor.node.remote()], wait_seconds=120)   # however slowly the machine boots it
    assert slow.with_suffix(".started").exists()
    total = ray.cluster_resources()["CPU"]
    deadline = time.monotonic() + 30
    while ray.available_resources().get("CPU", 0) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ray.available_resources().get("CPU", 0) == total
