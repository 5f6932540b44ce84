"""Work starts at once (caviar/sweep/head_start.py, local_ray.py, ray_head.py): a sweep without
--address trains on the driver while its own Ray boots in a child process, hands the rest to Ray's
workers once it is up, and leaves no Ray process behind, whatever way it ends.

The real child process is exercised end to end by `python -m caviar parallel` drivers; each test
marks its driver's environment, which every process of its Ray inherits, to count exactly those
processes (other Rays run on this machine: the session's cluster, other users'). The split between
driver and workers needs a Ray that comes up at a chosen moment: there, the session's cluster
stands in for a booting head that turns ready after a given number of looks.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid

import pandas as pd
import psutil
import pytest

from caviar.sweep.ray_on_demand import this_node_ip
from tests.support import CAVIAR, ROOT, TOY_SWEEP, caviar_main, run_command, write_job

MARK = "CAVIAR_TEST_RAY_MARK"


def ray_processes(mark: str) -> list[psutil.Process]:
    """Live processes (zombies are dead) whose environment carries `mark`: a driver and its Ray."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get(MARK) == mark and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except psutil.Error:
            continue
    return found


def ray_of(mark: str) -> list[str]:
    """The names of the processes of the Ray that the marked driver booted (its head's child, GCS,
    raylet), not the driver nor its helper."""
    names = []
    for process in ray_processes(mark):
        try:
            if "caviar.sweep.ray_head" in " ".join(process.cmdline()) or process.name() in ("gcs_server", "raylet"):
                names.append(process.name())
        except psutil.Error:
            continue
    return names


def gone(mark: str, within: float = 0.0) -> bool:
    deadline = time.monotonic() + within
    while ray_processes(mark):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def start_driver(argv: list, mark: str) -> subprocess.Popen:
    """`python -m caviar ARGV` with its own Ray (no address), marked, SIGINT as a terminal gives it;
    its Ray boots at once (CAVIAR_RAY_BOOT_SECONDS=0), as if the work were long."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update({MARK: mark, "CAVIAR_RAY_BOOT_SECONDS": "0"})
    return subprocess.Popen(CAVIAR + [str(a) for a in argv], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def test_a_sweep_done_before_its_ray_is_up_records_each_trial_once_and_leaves_no_ray_process(tmp_path):
    job = write_job(tmp_path, "quick", TOY_SWEEP, search={"trials": 6})
    mark = uuid.uuid4().hex
    driver = start_driver(["parallel", job, "--out", tmp_path / "out"], mark)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    assert "training here; Ray starts if the work left needs it" in err
    trials = pd.read_parquet(tmp_path / "out" / "quick" / "trials.parquet")
    assert sorted(trials.trial_id) == list(range(6)) and set(trials.status) == {"completed"}
    assert trials.node.str.len().min() > 0   # the node Ray names this machine by, as a worker writes it
    assert gone(mark), [p.name() for p in ray_processes(mark)]   # stopped before the command returned


def test_a_sweep_joins_its_own_ray_when_it_is_up_and_ends_every_process_of_it(tmp_path):
    """The real child, joined: a job with a trial_timeout trains on workers only, so its driver
    always waits for its Ray, joins it (same token authentication) and trains there."""
    job = write_job(tmp_path, "joined", TOY_SWEEP, search={"trials": 4, "trial_timeout": 120})
    mark = uuid.uuid4().hex
    driver = start_driver(["parallel", job, "--out", tmp_path / "out", "--quiet"], mark)
    _, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    trials = pd.read_parquet(tmp_path / "out" / "joined" / "trials.parquet")
    assert sorted(trials.trial_id) == [0, 1, 2, 3] and set(trials.status) == {"completed"}
    assert gone(mark), [p.name() for p in ray_processes(mark)]


@pytest.mark.parametrize("how", ["ctrl-c", "sigkill"])
def test_an_end_while_ray_starts_keeps_finished_trials_and_leaves_no_ray_process(tmp_path, how):
    """Ctrl-C: exit 130 and the resume command; SIGKILL: the child sees the driver go and ends its
    Ray. Either way the finished trials are on disk and the resume runs each other trial once."""
    job = write_job(tmp_path, "stopped", TOY_SWEEP, search={"trials": 40}, model={"epochs": 2, "sleep": 0.05})
    out, mark = tmp_path / "out", uuid.uuid4().hex
    trials_dir = out / "stopped" / "trials.parquet"
    driver = start_driver(["parallel", job, "--out", out, "--quiet"], mark)
    deadline = time.monotonic() + 120
    while not (trials_dir.is_dir() and any(trials_dir.glob("*.parquet"))) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ray_of(mark), [p.name() for p in ray_processes(mark)]   # its Ray is booting (the helper is no Ray)
    driver.send_signal(signal.SIGINT if how == "ctrl-c" else signal.SIGKILL)
    _, err = driver.communicate(timeout=120)
    if how == "ctrl-c":
        assert driver.returncode == 130 and "Resume with: " in err, err
        assert gone(mark), [p.name() for p in ray_processes(mark)]
    else:
        assert driver.returncode == -signal.SIGKILL
        assert gone(mark, within=30), [p.name() for p in ray_processes(mark)]
    kept = pd.read_parquet(trials_dir)
    assert 1 <= len(kept) < 40 and set(kept.status) == {"completed"}
    resume = ["parallel", "--out", out, "--name", "stopped", "--resume", "--quiet"]
    done = run_command(CAVIAR + [str(a) for a in resume], cwd=ROOT, timeout=300)
    assert done.returncode == 0, done.stderr
    trials = pd.read_parquet(trials_dir)
    assert sorted(trials.trial_id) == list(range(40))
    assert len(pd.read_parquet(out / "stopped" / "epochs.parquet")) == 40 * 2


class BootingHead:
    """The session's Ray cluster standing in for a local Ray that boots: ready after `looks` looks.

    The driver looks once before each trial and once after each epoch it trains."""

    cpus = 2

    def __init__(self, looks: int, boot_seconds: float = 0.0) -> None:
        self.looks, self.left = 0, looks
        self.boot_seconds = boot_seconds   # what joining costs is judged by it
        self.joined = False

    def ready(self) -> bool:
        self.looks += 1
        return self.looks > self.left

    def wait(self, timeout: float = 0.0) -> None:
        pass

    def join(self) -> None:
        self.joined = True   # this process is connected to the session's cluster already

    def stop(self) -> None:
        pass   # the session's cluster outlives the test


@pytest.mark.parametrize("handover", [10.0, 0.0, None],
                         ids=["driver-finishes-its-trial", "worker-reruns-it", "driver-trains-while-workers-start"])
def test_ray_up_mid_sweep_splits_the_trials_each_once_with_an_all_worker_runs_results(
        ray_session, tmp_path, monkeypatch, handover):
    """Ray comes up after some 17 looks (the driver looks before each trial, after each epoch it trains,
    and when its helper wants a trial). The driver finishes its trial in progress (much left: a worker
    reruns it; the helper's always reruns); then, while the workers start, it trains on (None: as it
    does; else not at all)."""
    import caviar.sweep.head_start as head_start
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    job = write_job(tmp_path, "split", TOY_SWEEP, search={"trials": 12}, model={"epochs": 4})
    assert caviar_main("parallel", job, "--out", tmp_path / "workers", "--address", ray_session, "--quiet") == 0

    head = BootingHead(looks=17)   # 5 looks a trial: Ray comes up after the 4th trial's 2nd epoch
    monkeypatch.setenv("CAVIAR_RAY_BOOT_SECONDS", "0")   # booted at once, as if the work were long
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: head))
    if handover is not None:
        monkeypatch.setattr(head_start, "HANDOVER_SECONDS", handover)
        monkeypatch.setattr(head_start.WorkersStarting, "ready", lambda self: True)
    assert caviar_main("parallel", job, "--out", tmp_path / "split", "--quiet") == 0

    columns = ["trial_id", "status", "params_learning_rate", "score", "epochs", "seed"]
    split = pd.read_parquet(tmp_path / "split" / "split" / "trials.parquet").sort_values("trial_id")
    alone = pd.read_parquet(tmp_path / "workers" / "split" / "trials.parquet").sort_values("trial_id")
    pd.testing.assert_frame_equal(split[columns].reset_index(drop=True), alone[columns].reset_index(drop=True))
    here = set(split.trial_id[split.node == this_node_ip()])   # the driver's and its helper's
    # Both train from the first moment (which trial each takes, and how many the helper finishes
    # before the looks run out, depends on their speeds).
    assert len(here) >= 2, split[["trial_id", "node"]]
    if handover is not None:   # the workers trained the rest
        assert len(here) < 12, split[["trial_id", "node"]]
    assert len(split.trial_id) == 12 and split.trial_id.is_unique
    epochs = pd.read_parquet(tmp_path / "split" / "split" / "epochs.parquet").sort_values(["trial_id", "epoch"])
    assert len(epochs) == 12 * 4 and not epochs.duplicated(["trial_id", "epoch"]).any()
    expected = pd.read_parquet(tmp_path / "workers" / "split" / "epochs.parquet").sort_values(["trial_id", "epoch"])
    assert list(epochs.val_accuracy) == list(expected.val_accuracy)


def test_a_job_with_a_trial_timeout_trains_on_workers_only(ray_session, tmp_path, monkeypatch):
    """The driver cannot stop a trial of its own in the middle of an epoch; a worker can be killed."""
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    job = write_job(tmp_path, "timed", TOY_SWEEP, search={"trials": 4, "trial_timeout": 60})
    head = BootingHead(looks=1000)   # never up by looks: a driver training would train every trial
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: head))
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    trials = pd.read_parquet(tmp_path / "out" / "timed" / "trials.parquet")
    assert sorted(trials.trial_id) == [0, 1, 2, 3] and this_node_ip() not in set(trials.node)


def test_a_ray_that_comes_up_too_late_to_pay_for_joining_is_never_joined(ray_session, tmp_path, monkeypatch):
    """Ray up after the first trial, but having taken 1,000 s to boot: joining would cost about half
    of that, more than the 11 trials left take here, so the driver trains them all."""
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    job = write_job(tmp_path, "late", TOY_SWEEP, search={"trials": 12})
    head = BootingHead(looks=1, boot_seconds=1000.0)
    monkeypatch.setenv("CAVIAR_RAY_BOOT_SECONDS", "0")
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: head))
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    trials = pd.read_parquet(tmp_path / "out" / "late" / "trials.parquet")
    assert sorted(trials.trial_id) == list(range(12)) and set(trials.node) == {this_node_ip()}
    assert head.looks > 1 and not head.joined


def test_the_progress_line_counts_the_trials_the_driver_and_its_helper_train_as_running(tmp_path, monkeypatch):
    """While Ray boots, the driver's own trial and its helper's are the ones running: the line says so
    at each epoch (it said "0 running")."""
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module
    import caviar.sweep.run as run_module

    job = write_job(tmp_path, "shown", TOY_SWEEP, search={"trials": 4}, model={"epochs": 3, "sleep": 0.05})
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: BootingHead(looks=1000)))
    shown: list[tuple[int, int]] = []   # (done, running) at each draw the sweep asks for
    draw = run_module.show_progress
    monkeypatch.setattr(run_module, "show_progress",
                        lambda sweep, progress: (shown.append((len(sweep.finished), sweep.running)), draw(sweep, progress)))
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    running = {running for _, running in shown}
    assert len(shown) >= 2 * 3 and 2 in running and running <= {1, 2}, shown
    assert [done for done, _ in shown][-1] >= 3


def test_a_helper_that_dies_loses_no_trial(tmp_path, monkeypatch):
    """The helper killed mid-trial (out of memory, say): the driver trains its trials instead, each once."""
    import caviar.sweep.helper as helper_module
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    job = write_job(tmp_path, "orphan", TOY_SWEEP, search={"trials": 6}, model={"epochs": 3, "sleep": 0.05})
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: BootingHead(looks=1000)))
    give, given = helper_module.Helper.give, []

    def give_then_die(self, sweep):   # its second trial never ends: the process is killed in it
        if not give(self, sweep):
            return False
        given.append(self.calls[-1].segments[0].trial_id)
        if len(given) == 2:
            os.kill(self.process.pid, signal.SIGKILL)
        return True

    monkeypatch.setattr(helper_module.Helper, "give", give_then_die)
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    assert len(given) == 2   # nothing more went to the dead helper
    trials = pd.read_parquet(tmp_path / "out" / "orphan" / "trials.parquet")
    assert sorted(trials.trial_id) == list(range(6)) and set(trials.status) == {"completed"}
    epochs = pd.read_parquet(tmp_path / "out" / "orphan" / "epochs.parquet")
    assert len(epochs) == 6 * 3 and not epochs.duplicated(["trial_id", "epoch"]).any()



def test_the_helper_holds_its_next_trial_before_it_ends_one_but_not_the_last_ones(tmp_path, monkeypatch):
    """A queued segment, as a worker's: the helper never waits a driver's epoch for its next trial.
    Near the end it gets one only when idle, so that no trial waits behind the helper's while the
    driver has nothing to train."""
    import caviar.sweep.helper as helper_module
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    job = write_job(tmp_path, "queued", TOY_SWEEP, search={"trials": 10}, model={"epochs": 3, "sleep": 0.02})
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: BootingHead(looks=10**6)))
    give, given = helper_module.Helper.give, []   # (segments it held already, the trial given)

    def recorded_give(self, sweep):
        held = len(self.calls)
        if not give(self, sweep):
            return False
        given.append((held, self.calls[-1].segments[0].trial_id))
        return True

    monkeypatch.setattr(helper_module.Helper, "give", recorded_give)
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    queued = [trial for held, trial in given if held == 1]
    assert queued and max(held for held, _ in given) <= 1, given
    # Queued only while more than QUEUE_WHILE_WAITING trials waited: never one of the last ones.
    assert max(queued) < 10 - helper_module.QUEUE_WHILE_WAITING, given
    trials = pd.read_parquet(tmp_path / "out" / "queued" / "trials.parquet")
    assert sorted(trials.trial_id) == list(range(10)) and set(trials.status) == {"completed"}


def test_a_helper_with_nothing_left_to_train_ends_while_the_driver_trains_on(tmp_path, monkeypatch):
    """Its process ends as soon as no trial is or will be its own, not after the driver's last epoch
    (waiting for it there was 5-7 ms of every sweep's end)."""
    import caviar.sweep.head_start as head_start
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module

    # The grid's first trial (the helper's: it is given one before the driver takes any) is quick,
    # the second (the driver's) slow.
    job = write_job(tmp_path, "early", {**TOY_SWEEP, "space": {}}, space={"sleep": {"choice": [0.0, 0.1]}},
                    search={"trials": 2, "sampler": "grid"}, model={"epochs": 3})
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: BootingHead(looks=10**6)))
    feed, seen = head_start._feed, []   # (helper stopped, trials the sweep still runs) after each look

    def recorded_feed(sweep, helper, head, rows, wait=0.0):
        feed(sweep, helper, head, rows, wait)
        seen.append((helper.stopped, sorted(sweep.active)))

    monkeypatch.setattr(head_start, "_feed", recorded_feed)
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
    assert (True, [1]) in seen, seen   # ended while the driver's trial 1 was still training
    trials = pd.read_parquet(tmp_path / "out" / "early" / "trials.parquet")
    assert sorted(trials.trial_id) == [0, 1] and set(trials.status) == {"completed"}


def test_the_driver_and_its_helper_train_on_one_blas_thread_and_the_driver_gets_its_own_back(tmp_path, monkeypatch):
    """Set once in the driver before the fork, inherited by the helper (which no longer sets it)."""
    import caviar.sweep.local_ray as local_ray
    import caviar.sweep.ray_session as ray_session_module
    from threadpoolctl import threadpool_info, threadpool_limits

    job = write_job(tmp_path, "blas", TOY_SWEEP, search={"trials": 6}, model={"epochs": 3, "sleep": 0.01,
                                                                               "trainer": "tests.toys:BlasThreadsTrainer"})
    monkeypatch.setattr(ray_session_module, "wants_local_head", lambda address: True)
    monkeypatch.setattr(local_ray.LocalRay, "start", classmethod(lambda cls, cpus: BootingHead(looks=10**6)))
    with threadpool_limits(limits=2, user_api="blas"):   # what this process had before: 2 (this machine's cores)
        assert caviar_main("parallel", job, "--out", tmp_path / "out", "--quiet") == 0
        after = [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
    epochs = pd.read_parquet(tmp_path / "out" / "blas" / "epochs.parquet")
    assert epochs.pid.nunique() == 2 and os.getpid() in set(epochs.pid)   # the driver and its helper both trained
    assert set(epochs.blas_threads) == {1.0}
    assert after and set(after) == {2}
