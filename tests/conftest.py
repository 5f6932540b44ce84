"""Shared fixtures: one real local Ray for the whole test session.

`ray.init()` costs seconds here, so the session starts one head node and every test that needs Ray
joins it: in-process through `ray_session`, and subprocess drivers through `ray_address`
(pass it as `--address`).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# Ray rewrites 127.0.0.1 to the machine's network address when connecting; another loopback
# address keeps every test's traffic on this machine.
LOOPBACK = "127.0.0.2"
# Test trainers live in tests/; Ray workers and subprocess drivers import them by module path.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _haswell_capable() -> bool:
    """An x86-64 CPU with the instructions OpenBLAS's Haswell kernels use (AVX2, FMA)."""
    try:
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
    except (OSError, StopIteration):
        return False
    return {"avx2", "fma"} <= set(flags.split())


# One family of BLAS kernels for every process the tests start (caviar's commands, the session's Ray
# and its workers): the golden frames (tests/golden/) were recorded with OpenBLAS's Haswell kernels,
# and the AVX-512 ones it picks on newer CPUs round sums differently; over dozens of epochs that
# flips a babysitter's decision. So the tests check caviar's arithmetic, not the CPU's. A value the
# caller set is kept.
if _haswell_capable():
    os.environ.setdefault("OPENBLAS_CORETYPE", "Haswell")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A results folder holding a two-round sweep "sweep" and a babysat run "panda", written as the
    drivers write them (tests/run_factory.py), for the commands that read results."""
    from tests.run_factory import make_babysit, make_sweep

    root = tmp_path_factory.mktemp("results")
    make_sweep(root, "sweep", rounds=2)
    make_babysit(root, "panda")
    return root


@pytest.fixture(scope="session")
def ray_address():
    """Address of a real one-node Ray cluster (2 CPUs, on a loopback address) shared by the session."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": False, "node_ip_address": LOOPBACK},
    )
    yield cluster.address
    cluster.shutdown()


@pytest.fixture(scope="session")
def ray_session(ray_address):
    """This test process connected as a driver to the session's Ray cluster."""
    import ray

    if not ray.is_initialized():
        ray.init(address=ray_address, log_to_driver=False)
    yield ray_address
    ray.shutdown()


@pytest.fixture(autouse=True)
def _cluster_gets_its_cpus_back(request):
    """After each test on the shared cluster, every CPU must be free again.

    A CPU that a test leaves leased (a leaked worker) makes every later sweep wait for it forever;
    stop the session here, naming the test, rather than time out an hour later somewhere else.
    """
    yield
    if "ray_session" not in request.fixturenames:
        return
    import ray

    total = ray.cluster_resources().get("CPU", 0)
    deadline = time.monotonic() + 30
    while (free := ray.available_resources().get("CPU", 0)) < total and time.monotonic() < deadline:
        time.sleep(0.05)
    if free < total:
        pytest.exit(f"{request.node.nodeid} left {total - free:g} of the shared Ray cluster's {total:g} CPUs "
                    "leased; every later sweep would wait for them", returncode=1)
