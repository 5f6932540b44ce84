"""A sweep's own Ray boots only when the work left is worth it (caviar/sweep/ray_on_demand.py): the
projection and the rule as pure functions, then sweeps whose Ray is never booted (short), booted
from the projection, or booted from the first epoch's timer (long epochs)."""

from __future__ import annotations

import subprocess
import sys
import threading

import pandas as pd
import pytest

from caviar.sweep.ray_on_demand import (EXPECTED_BOOT_SECONDS, LONG_SWEEP_SECONDS, MIN_EPOCHS, WARMUP_SECONDS,
                                        RayOnDemand, boot_threshold, compute_left, expected_boot_seconds,
                                        first_deadline, this_node_ip, worth_booting)
from tests.support import TOY_SWEEP, caviar_main, write_job


def test_the_compute_left_is_every_epoch_left_at_the_median_epochs_cost():
    # 3 trials not started (each as long as the longest started, 10), two running: 10-4 and 8-8 left.
    epochs = [0.1] * 20
    assert compute_left(3, [(4, 10), (8, 8)], epochs) == pytest.approx((30 + 6) * 0.1)
    assert compute_left(3, [(0, 10)], [0.1] * (MIN_EPOCHS - 1)) is None   # too little measured yet
    assert compute_left(0, [], epochs) == 0.0
    # The driver's and its helper's first epochs carried PyTorch's set-up: the pace is the others'.
    assert compute_left(10, [(0, 5)], [1.5, 1.5, 0.05, 0.05, 0.05]) == pytest.approx(55 * 0.05)


def test_ray_is_worth_booting_when_it_would_end_the_sweep_sooner_than_the_trainers_here():
    # 2 trainers here, 8 workers on a Ray that boots in 4 s and costs 2 s to join: here, left / 2;
    # there, 4 + 2 + (left - 8) / 8. Ray is sooner past (6 - 1) / (1/2 - 1/8) = 13.3 s of compute.
    assert boot_threshold(2, 8, 4.0) == pytest.approx(5 / 0.375)
    assert worth_booting(14.0, trainers=2, workers=8, boot_seconds=4.0)
    assert not worth_booting(13.0, trainers=2, workers=8, boot_seconds=4.0)
    # Always past the boot itself: a sweep the trainers here end before Ray is up never boots it.
    assert boot_threshold(2, 1000, 4.0) > 4.0 * 2
    assert worth_booting(5.0, trainers=1, workers=4, boot_seconds=1.0)


def test_where_the_trainers_here_fill_the_cores_only_a_long_sweep_boots_ray():
    # Two cores, the driver and its helper: Ray gives no more trainers, only a process per trial.
    assert boot_threshold(2, 2, 4.0) == LONG_SWEEP_SECONDS * 2
    assert not worth_booting(LONG_SWEEP_SECONDS * 2 - 1, trainers=2, workers=2, boot_seconds=4.0)
    assert worth_booting(LONG_SWEEP_SECONDS * 2 + 1, trainers=2, workers=2, boot_seconds=4.0)
    assert boot_threshold(1, 1, 1000.0) == 1000.0   # and never before the boot would be over


def test_the_first_epochs_deadline_is_their_share_of_the_threshold():
    deadline = first_deadline(40, trainers=2, workers=8, boot_seconds=100.0)
    assert deadline > WARMUP_SECONDS
    assert worth_booting(40 * deadline * 1.01, 2, 8, 100.0) and not worth_booting(40 * deadline * 0.99, 2, 8, 100.0)
    assert first_deadline(480, trainers=2, workers=8, boot_seconds=4.0) == WARMUP_SECONDS   # a first epoch may warm up
    assert first_deadline(4, trainers=2, workers=2, boot_seconds=4.0) == LONG_SWEEP_SECONDS * 2 / 4


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


def sweep_here(tmp_path, monkeypatch, boot_seconds: str, name: str, cpus: int = 4,
               **sections) -> tuple[list[bool], pd.DataFrame]:
    """Run a toy sweep with its own (never ready) Ray of `cpus` CPUs (4: more workers than the driver
    and its helper): who booted it (True: the main thread), and the rows."""
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    booted_by: list[bool] = []
    monkeypatch.setenv("CAVIAR_RAY_BOOT_SECONDS", boot_seconds)
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(ray_session_module, "local_cpus", lambda: cpus)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: NeverUp(booted_by)))
    job = write_job(tmp_path, name, TOY_SWEEP, **sections)
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    return booted_by, pd.read_parquet(tmp_path / "out" / name / "trials.parquet")


def test_a_sweep_done_here_before_a_ray_could_be_up_never_boots_one(tmp_path, monkeypatch):
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "4", "short", search={"trials": 12})
    assert booted_by == []
    assert sorted(trials.trial_id) == list(range(12)) and set(trials.status) == {"completed"}
    assert set(trials.node) == {this_node_ip()}


def test_a_sweep_that_would_end_sooner_on_ray_boots_its_ray_once(tmp_path, monkeypatch):
    # 24 trials x 3 epochs x 20 ms: about 0.7 s per trainer here, more than Ray's 0.1 s boot, join
    # and 4 workers would take.
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "0.1", "long", search={"trials": 24},
                                   model={"sleep": 0.02})
    assert len(booted_by) == 1
    assert sorted(trials.trial_id) == list(range(24)) and trials.trial_id.is_unique


def test_a_sweep_whose_cores_the_trainers_here_fill_boots_no_ray_unless_it_is_long(tmp_path, monkeypatch):
    import caviar.sweep.ray_on_demand as ray_on_demand

    # The same sweep on two cores: Ray would give no more trainers than the driver and its helper.
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "0.1", "two", cpus=2, search={"trials": 24},
                                   model={"sleep": 0.02})
    assert booted_by == [] and sorted(trials.trial_id) == list(range(24))
    # A sweep longer than LONG_SWEEP_SECONDS per trainer goes to Ray there too (a process per trial).
    monkeypatch.setattr(ray_on_demand, "LONG_SWEEP_SECONDS", 0.3)
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "0.1", "twolong", cpus=2, search={"trials": 24},
                                   model={"sleep": 0.02})
    assert len(booted_by) == 1 and sorted(trials.trial_id) == list(range(24))


def test_a_first_epoch_that_runs_long_boots_the_ray_before_it_ends(tmp_path, monkeypatch):
    """Epochs of 0.5 s, 8 epochs in the sweep, 4 workers, a 0.2 s boot for 2 trainers, no warm-up
    allowed: past 0.1 s into the first epoch the sweep is worth a Ray, and the driver, inside that
    epoch, cannot look: the timer boots it."""
    import caviar.sweep.ray_on_demand as ray_on_demand

    monkeypatch.setattr(ray_on_demand, "WARMUP_SECONDS", 0.0)
    booted_by, trials = sweep_here(tmp_path, monkeypatch, "0.2", "slow", search={"trials": 4},
                                   model={"sleep": 0.5, "epochs": 2})
    assert booted_by == [False]   # from the timer's thread, not the driver's
    assert sorted(trials.trial_id) == [0, 1, 2, 3]


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
