"""Beyond one machine: a real two-node Ray cluster, and sweeps of thousands of trials."""

from __future__ import annotations

import pandas as pd
import pytest

from tests.support import ROOT, TOY_SWEEP, caviar_run, run_sweep, write_job


@pytest.fixture
def two_node_cluster():
    """A head and a worker node of one CPU each, on two loopback addresses so they are told apart."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True,
                      head_node_args={"num_cpus": 1, "include_dashboard": False, "node_ip_address": "127.0.0.3"})
    cluster.add_node(num_cpus=1, node_ip_address="127.0.0.4")
    cluster.wait_for_nodes()
    yield cluster.address
    cluster.shutdown()


def test_a_sweep_joins_a_cluster_by_address_and_runs_on_both_nodes(two_node_cluster, tmp_path):
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 2, "sleep": 0.05}, search={"trials": 8})
    result = caviar_run("parallel", job, "--out", tmp_path / "out", "--address", two_node_cluster, cwd=ROOT,
                        timeout=300)
    assert result.returncode == 0, result.stderr
    assert "2 workers (2 CPUs" in result.stderr
    trials = pd.read_parquet(tmp_path / "out" / "sweep" / "trials.parquet")
    assert sorted(trials.trial_id) == list(range(8))
    assert set(trials.node) == {"127.0.0.3", "127.0.0.4"}


def test_thousands_of_trivial_trials_each_land_exactly_once(ray_session, tmp_path):
    n = 3000
    job = write_job(tmp_path, "sweep", TOY_SWEEP, model={"epochs": 2}, search={"trials": n})
    assert run_sweep(job, tmp_path / "out", ray_session) == 0
    run = tmp_path / "out" / "sweep"
    trials = pd.read_parquet(run / "trials.parquet")
    epochs = pd.read_parquet(run / "epochs.parquet")
    assert len(trials) == n and sorted(trials.trial_id) == list(range(n))
    assert set(trials.status) == {"completed"}
    assert len(epochs) == 2 * n and not epochs.duplicated(["trial_id", "epoch"]).any()
    # Compacted at the end: one part per table, whatever the number of flushes during the run.
    assert len(list((run / "trials.parquet").glob("*.parquet"))) == 1
