"""A trial's Ray resources: the pure decisions, then real sweeps on real Ray clusters (the session's
2-CPU one, and one with a fake GPU started here) driven by the command line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

import caviar
from caviar.sweep.resources import actor_resources, check_fits, trial_slots, trial_threads
from tests.conftest import LOOPBACK
from tests.support import caviar_run, snapshot, write_job


def search(cpus: float = 1.0, gpus: float = 0.0) -> SimpleNamespace:
    return SimpleNamespace(cpus_per_trial=cpus, gpus_per_trial=gpus)


def test_a_trial_share_is_the_actor_options_and_its_threads():
    assert actor_resources(search(0.5, 0.25)) == {"num_cpus": 0.5, "num_gpus": 0.25}
    assert [trial_threads(search(c)) for c in (0.5, 1, 2, 4)] == [1, 1, 2, 4]


def test_trials_at_once_are_counted_node_by_node():
    nodes = [{"CPU": 8.0, "GPU": 2.0}, {"CPU": 4.0}]
    assert trial_slots(nodes, search()) == 12
    assert trial_slots(nodes, search(gpus=0.5)) == 4          # the GPU node fits 4; the other none
    assert trial_slots(nodes, search(cpus=3)) == 3             # 2 + 1
    assert trial_slots([{"CPU": 1.0}], search(cpus=0.1)) == 10  # 0.1 * 10 is a whole CPU


@pytest.mark.parametrize("asked, nodes, message", [
    (search(gpus=1), [{"CPU": 2.0}], "search.gpus_per_trial: 1 GPU per trial is more than the cluster has (0 GPUs)"),
    (search(gpus=2), [{"CPU": 2.0, "GPU": 1.0}], "(1 GPU)"),
    (search(cpus=4), [{"CPU": 2.0}, {"CPU": 2.0}],
     "search.cpus_per_trial: 4 CPUs per trial is more than the cluster has (4 CPUs on 2 nodes, at most 2 on one)"),
    (search(cpus=4, gpus=1), [{"CPU": 4.0}, {"CPU": 1.0, "GPU": 1.0}], "no node of the cluster has 4 CPUs and 1 GPUs"),
])
def test_a_trial_bigger_than_any_node_is_one_line_naming_the_field_and_the_cluster(asked, nodes, message):
    with pytest.raises(ValueError) as caught:
        check_fits(nodes, asked)
    assert message in str(caught.value) and "\n" not in str(caught.value)
    check_fits(nodes, search(cpus=0.5))   # what fits passes


TINY = {"data": {"source": "digits"},
        "model": {"trainer": "tests.torch.placed:PlacedCNN", "channels": 2, "epochs": 1, "batch_size": 256},
        "space": {"learning_rate": {"log_uniform": [1e-3, 1e-2]}},
        "search": {"trials": 2, "scheduler": "fifo", "metric": "val_accuracy", "mode": "max"}}


def test_more_gpus_or_cpus_than_the_cluster_has_is_exit_2_before_the_folder_is_touched(tmp_path, ray_address):
    out = tmp_path / "out"
    job = write_job(tmp_path, "placed", TINY)
    assert caviar_run("parallel", job, "--out", out, "--address", ray_address, "--quiet", timeout=240).returncode == 0
    before = snapshot(out)
    for field, asked, has in (("gpus_per_trial", "1 GPU", "(0 GPUs)"), ("cpus_per_trial", "3 CPUs", "(2 CPUs)")):
        done = caviar_run("parallel", job, "--out", out, "--address", ray_address, "--overwrite",
                          "--set", f"search.{field}={asked.split()[0]}", timeout=120)
        assert done.returncode == 2, done.stderr
        assert done.stderr.strip().splitlines() == [
            f"caviar parallel: error: search.{field}: {asked} per trial is more than the cluster has {has}; "
            "a trial runs on one node"]
    assert snapshot(out) == before   # --overwrite refused: the run is as it was


def test_a_trial_given_two_cpus_trains_with_two_threads_and_sees_no_gpu(tmp_path, ray_address):
    job = write_job(tmp_path, "wide", TINY, search={"cpus_per_trial": 2})
    done = caviar_run("parallel", job, "--out", tmp_path, "--address", ray_address, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "2 trials on 1 workers" in done.stderr   # 2 CPUs, 2 per trial: one at a time
    trials = caviar.load(tmp_path / "wide").trials
    assert list(trials["status"]) == ["completed"] * 2
    assert list(trials["threads"]) == [2.0, 2.0] and list(trials["gpus_visible"]) == [0.0, 0.0]


@pytest.fixture(scope="module")
def gpu_cluster():
    """A second real Ray cluster whose head node declares one (fake) GPU."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 2, "num_gpus": 1, "include_dashboard": False, "node_ip_address": LOOPBACK})
    yield cluster.address
    cluster.shutdown()


def test_trials_sharing_a_fake_gpu_are_placed_with_it_and_see_it(tmp_path, gpu_cluster):
    job = write_job(tmp_path, "gpu", TINY, search={"trials": 4, "gpus_per_trial": 0.5})
    done = caviar_run("parallel", job, "--out", tmp_path, "--address", gpu_cluster, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "4 trials on 2 workers" in done.stderr   # half a GPU each: two at once
    trials = caviar.load(tmp_path / "gpu").trials
    assert list(trials["status"]) == ["completed"] * 4
    assert list(trials["gpus_visible"]) == [1.0] * 4   # CUDA_VISIBLE_DEVICES names the GPU Ray gave
    assert list(trials["on_cuda"]) == [0.0] * 4        # a CPU build of torch: no CUDA, so the CPU
    refused = caviar_run("parallel", job, "--out", tmp_path, "--address", gpu_cluster, "--overwrite",
                         "--set", "search.gpus_per_trial=2", timeout=120)
    assert refused.returncode == 2 and "search.gpus_per_trial: 2 GPUs per trial is more than the cluster has " \
        "(1 GPU)" in refused.stderr
