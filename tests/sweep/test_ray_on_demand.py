"""A sweep's own Ray boots only when the work left is worth it (caviar/sweep/ray_on_demand.py): the
projection and the rule as pure functions, then sweeps whose Ray is never booted (short), booted
from the projection, or booted from the first epoch's timer (long epochs)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pandas as pd
import pytest

from caviar.sweep.ray_on_demand import (EXPECTED_BOOT_SECONDS, MIN_EPOCHS, WARMUP_SECONDS, RayOnDemand, compute_left,
                                        expected_boot_seconds, first_deadline, this_node_ip, worth_booting)
from tests.support import TOY_SWEEP, caviar_main, write_job


def test_the_compute_left_is_every_epoch_left_at_the_median_epochs_cost():
    # 3 trials not started (each as long as the longest started, 10), two running: 10-4 and 8-8 left.
    epochs = [0.1] * 20
    assert compute_left(3, [(4, 10), (8, 8)], epochs) == pytest.approx((30 + 6) * 0.1)
    assert compute_left(3, [(0, 10)], [0.1] * (MIN_EPOCHS - 1)) is None   # too little measured yet
    assert compute_left(0, [], epochs) == 0.0
    # The driver's and its helper's first epochs carried PyTorch's set-up: the pace is the others'.
    assert compute_left(10, [(0, 5)], [1.5, 1.5, 0.05, 0.05, 0.05]) == pytest.approx(55 * 0.05)


def test_ray_is_worth_booting_when_the_trainers_here_would_outlast_its_boot():
    assert worth_booting(9.0, trainers=2, boot_seconds=4.0)        # 4.5 s each > 4 s
    assert not worth_booting(7.0, trainers=2, boot_seconds=4.0)    # 3.5 s each: done before Ray is up
    assert worth_booting(5.0, trainers=1, boot_seconds=4.0)
    # The first epoch's deadline: past it, the sweep's epochs at that pace outlast the boot.
    deadline = first_deadline(40, trainers=2, boot_seconds=100.0)
    assert deadline > WARMUP_SECONDS
    assert worth_booting(40 * deadline * 1.01, 2, 100.0) and not worth_booting(40 * deadline * 0.99, 2, 100.0)
    assert first_deadline(480, trainers=2, boot_seconds=4.0) == WARMUP_SECONDS   # a first epoch may warm up


def test_the_expected_boot_comes_from_the_environment_when_it_makes_sense(monkeypatch):
    monkeypatch.setenv("CAVIAR_RAY_BOOT_SECONDS", "0")
    assert expected_boot_seconds() == 0.0
    for bad in ("soon", "-1", "nan"):
        monkeypatch.setenv("CAVIAR_RAY_BOOT_SECONDS", bad)
        assert expected_boot_seconds() == EXPECTED_BOOT_SECONDS
    monkeypatch.delenv("CAVIAR_RAY_BOOT_SECONDS")
    assert expected_boot_seconds() == EXPECTED_BOOT_SECONDS


def test_the_node_a_trial_trained_here_names_is_the_one_a_local_ray_gives_this_machine():
    # Asked of Ray in a process of its own, joined to no cluster (the session's names itself 127.0.0.2):
    # the address a local Ray started here takes, and so its workers' `node`.
    ray_says = subprocess.run([sys.executable, "-c", "from ray._private.services import get_node_ip_address; "
                               "print(get_node_ip_address())"], capture_output=True, text=True, timeout=120)
    assert this_node_ip() == ray_says.stdout.strip()


class NeverUp:
    """A Ray whose boot never ends (the driver trains every trial); records who booted it."""

    cpus, boot_seconds, joined = 2, 0.0, False

    def __init__(self, booted_by: list) -> None:
        booted_by.append(threading.current_thread() is threading.main_thread())

    def ready(self) -> bool:
        return False

    def stop(self) -> None:
        pass


def sweep_here(tmp_path, monkeypatch, boot_seconds: str, name: str, **sections) -> tuple[list[bool], pd.DataFrame]:
    """Run a toy sweep with its own (never ready) Ray: who booted it (True: the main thread), and the rows."""
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    booted_by: list[bool] = []
    monkeypatch.setenv("CAVIAR_RAY_BOOT_SECONDS", boot_seconds)
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: NeverUp(booted_by)))
    job = write_job(tmp_path, name, TOY_SWEEP, **sections)
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    return booted_by, pd.read_parquet(tmp_path / "out" / name / "trials.parquet")


def test_a_sweep_done_here_before_a_ray_could_be_up_never_boots_one(tmp_path, monkeypatch):
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "4", "short", search={"trials": 12})
    assert booted_by == []
    assert sorted(trials.trial_id) == list(range(12)) and set(trials.status) == {"completed"}
    assert set(trials.node) == {this_node_ip()}


def test_a_sweep_that_would_outlast_the_boot_boots_its_ray_once(tmp_path, monkeypatch):
    # 24 trials x 3 epochs x 20 ms: about 0.7 s per trainer here, more than the 0.1 s boot.
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "0.1", "long", search={"trials": 24},
                                   model={"sleep": 0.02})
    assert len(booted_by) == 1
    assert sorted(trials.trial_id) == list(range(24)) and trials.trial_id.is_unique


def test_a_first_epoch_that_runs_long_boots_the_ray_before_it_ends(tmp_path, monkeypatch):
    """Epochs of 0.5 s, 4 epochs in the sweep, a 0.2 s boot for 2 trainers, no warm-up allowed: past
    0.1 s into the first epoch the sweep is worth a Ray, and the driver, inside that epoch, cannot
    look: the timer boots it."""
    import caviar.sweep.ray_on_demand as ray_on_demand

    monkeypatch.setattr(ray_on_demand, "WARMUP_SECONDS", 0.0)
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "0.2", "slow", search={"trials": 2},
                                   model={"sleep": 0.5, "epochs": 2})
    assert booted_by == [False]   # from the timer's thread, not the driver's
    assert sorted(trials.trial_id) == [0, 1]


def test_a_stopped_ray_on_demand_never_boots(monkeypatch):
    import caviar.sweep.local_ray as local_ray

    booted_by: list[bool] = []
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: NeverUp(booted_by)))
    head = RayOnDemand(cpus=2, boot_seconds=4.0)
    head.boot_after(0.05)
    head.stop()
    head.boot()
    threading.Event().wait(0.2)   # past the timer's moment
    assert booted_by == [] and not head.booted and not head.ready()
