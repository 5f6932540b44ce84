"""One member's generation (caviar/population/worker.py): plain, and on a real Ray actor."""

from __future__ import annotations

import numpy as np

from caviar import MLPTrainer
from caviar.data import load_dataset
from caviar.population.worker import Fallback, Task, population_worker_class, train_segment

CONFIG = {"hidden_layers": [16], "optimizer": "adam", "learning_rate": 0.01, "batch_norm": True}


def task(**over) -> Task:
    fields = {"member": 1, "config": CONFIG, "seed": 5, "start": 0, "until": 2, "metric": "val_accuracy",
              "divergence_ratio": 3.0, "changes": {"learning_rate": 0.01}}
    return Task(**{**fields, **over})


def trained_state(data) -> dict:
    trainer = MLPTrainer(CONFIG, data, seed=9)
    for _ in range(2):
        trainer.train_epoch()
    return trainer.state_dict()


def test_a_copy_holds_exactly_the_sources_state_weights_moments_and_batch_norm_statistics():
    data = load_dataset("digits")
    source = trained_state(data)
    report, copied, best = train_segment(MLPTrainer, data, task(start=2, until=2), source)   # no epoch: the copy itself
    assert report.epochs == [] and report.diverged is None and best is None and report.best_epoch is None
    assert copied.keys() == source.keys()
    assert any(k.startswith("optim.") for k in source) and any("running" in k or "mean" in k for k in source)
    for key in source:
        np.testing.assert_array_equal(copied[key], source[key], err_msg=key)


def test_explored_values_take_effect_after_the_copy():
    data = load_dataset("digits")
    report, state, _ = train_segment(MLPTrainer, data, task(start=2, until=3, changes={"learning_rate": 0.002}),
                                  trained_state(data))
    assert [epoch for epoch, _, _ in report.epochs] == [3]
    assert report.epochs[0][1]["learning_rate"] == 0.002 and float(state["hp.learning_rate"]) == 0.002


WILD = {**CONFIG, "optimizer": "sgd", "learning_rate": 5000.0, "batch_norm": False}


def fallback(source, *rates, config=WILD):
    return Fallback(source, tuple({**config, "learning_rate": r} for r in rates),
                    tuple({"learning_rate": r} for r in rates), tuple(range(11, 11 + len(rates))))


def test_a_member_without_a_fallback_that_diverges_stops_at_once_and_says_why():
    data = load_dataset("digits")
    report, _, _ = train_segment(MLPTrainer, data, task(config=WILD, until=6, changes={}), None)
    assert report.diverged is not None and len(report.epochs) < 6 and report.replacements == []
    assert report.first_loss is not None and report.first_loss > 0   # the untrained model's loss


def test_a_divergence_before_the_last_epoch_goes_on_at_once_from_the_fallback_with_its_next_values():
    """The first replacement (still 5000) diverges again; the second (0.01) trains on to the end."""
    data = load_dataset("digits")
    wild = task(config=WILD, until=4, changes={"learning_rate": 5000.0},
                fallback=fallback(3, 5000.0, 0.01, 0.02, config=CONFIG))
    report, end, _ = train_segment(MLPTrainer, data, wild, None, trained_state(data))
    assert [(r.epoch, r.source, r.values) for r in report.replacements] == [
        (1, 3, {"learning_rate": 5000.0}), (2, 3, {"learning_rate": 0.01})]
    assert all("at epoch" in r.why for r in report.replacements)
    assert [e for e, _, _ in report.epochs] == [1, 2, 3, 4] and report.diverged is None   # each epoch has its row
    assert [m["learning_rate"] for _, m, _ in report.epochs[2:]] == [0.01, 0.01]
    assert float(end["hp.learning_rate"]) == 0.01
    assert report.epochs[3][1]["val_accuracy"] > 0.5 and report.best_epoch in (3, 4)


def test_a_replacement_starts_from_the_fallback_state_exactly_or_afresh_without_one():
    from tests.toys import FragileQuadraticTrainer, NoisyQuadraticTrainer

    source = NoisyQuadraticTrainer({"learning_rate": 0.1}, None, 7)
    for _ in range(3):
        source.train_epoch()
    checksum = FragileQuadraticTrainer.checksum(source)
    config = {"learning_rate": 0.05, "blow_up_at": 2, "blow_up_rate": 0.05}
    fragile = task(config=config, until=4, changes={"learning_rate": 0.05}, metric="val_loss", mode="min",
                   fallback=fallback(6, 0.2, config=config))
    report, _, _ = train_segment(FragileQuadraticTrainer, None, fragile, None, source.state_dict())
    assert report.replacements[0].epoch == 2 and report.epochs[2][1]["state_before"] == checksum
    assert report.epochs[2][1]["learning_rate"] == 0.2
    report, _, _ = train_segment(FragileQuadraticTrainer, None, fragile, None, None)   # no score yet: afresh
    assert report.epochs[2][1]["state_before"] == report.epochs[0][1]["state_before"] == 7500.0


def test_a_divergence_at_the_last_epoch_is_left_to_the_driver():
    from tests.toys import FragileQuadraticTrainer

    config = {"learning_rate": 0.05, "blow_up_at": 3, "blow_up_rate": 0.05}
    fragile = task(config=config, until=3, changes={}, metric="val_loss", mode="min",
                   fallback=fallback(0, 0.2, 0.2, config=config))
    report, _, best = train_segment(FragileQuadraticTrainer, None, fragile, None, None)
    assert report.replacements == [] and report.diverged.endswith("at epoch 3") and len(report.epochs) == 3
    assert report.best_epoch == 2 and int(best["step"]) == 2 * FragileQuadraticTrainer.STEPS


def test_the_segments_best_epoch_keeps_its_state_when_a_later_epoch_is_worse():
    from tests.toys import PeakingTrainer

    peaking = task(config={"learning_rate": 0.01, "peak": 2}, until=4, changes={})
    report, end, best = train_segment(PeakingTrainer, None, peaking, None)
    assert [round(m["val_accuracy"], 6) for _, m, _ in report.epochs] == [0.85, 0.9, 0.85, 0.8]
    assert report.best_epoch == 2 and int(best["trained"]) == 2 and int(end["trained"]) == 4
    report, end, best = train_segment(PeakingTrainer, None, task(config={"learning_rate": 0.01, "peak": 9},
                                                                  until=4, changes={}), None)
    assert report.best_epoch == 4 and best is None   # the end state is the best one: no second copy


def test_on_ray_the_state_travels_by_reference_and_arrives_exact(ray_session):
    import ray

    data = load_dataset("digits")
    source = trained_state(data)
    worker = population_worker_class().remote(ray.put(data), "mlp", [])
    try:
        report_ref, state_ref, _ = worker.train.remote(task(start=2, until=2), ray.put(source))
        report, copied = ray.get([report_ref, state_ref])
        assert report.member == 1 and report.node
        for key in source:
            np.testing.assert_array_equal(copied[key], source[key], err_msg=key)
    finally:
        from caviar.population.loop import stop_workers

        stop_workers([worker])
