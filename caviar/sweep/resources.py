"""A trial's Ray resources: what each worker actor holds, how many trials the cluster fits at once,
and the refusal of a job that asks more of one trial than any node has.

`[search] cpus_per_trial` and `gpus_per_trial` become the worker actors' `num_cpus` / `num_gpus`
(fractions as Ray allows them: 0.5 GPU lets two trials share one). A worker runs one trial at a
time, so these are a trial's resources; Ray narrows `CUDA_VISIBLE_DEVICES` to the GPUs it gave.
The decisions are pure functions of the job and the nodes' resources; `cluster_nodes` reads Ray.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

_EPSILON = 1e-9   # 0.1 * 10 is 1.0000000000000002 GPUs: whole units stay whole


def actor_resources(search: Any) -> dict[str, float]:
    """The Ray options of one worker actor: {"num_cpus": ..., "num_gpus": ...}."""
    return {"num_cpus": float(search.cpus_per_trial), "num_gpus": float(search.gpus_per_trial)}


def one_cpu_each(search: Any) -> bool:
    """Whether a trial asks for one CPU and no GPU: what the driver's own core can train while a
    local Ray boots, and what lets the worker count follow the CPUs alone."""
    return actor_resources(search) == {"num_cpus": 1.0, "num_gpus": 0.0}


def trial_threads(search: Any) -> int:
    """Compute threads of a trial (BLAS, PyTorch): one per whole CPU it holds, at least one."""
    return max(1, math.floor(search.cpus_per_trial + _EPSILON))


def _fits(has: float, per_trial: float) -> float:
    return math.inf if per_trial <= 0 else math.floor(has / per_trial + _EPSILON)


def trial_slots(nodes: Sequence[Mapping[str, float]], search: Any) -> int:
    """Trials that run at once: on each node, as many as its CPUs and GPUs both fit; summed."""
    cpus, gpus = search.cpus_per_trial, search.gpus_per_trial
    return int(sum(min(_fits(node.get("CPU", 0.0), cpus), _fits(node.get("GPU", 0.0), gpus)) for node in nodes))


def check_fits(nodes: Sequence[Mapping[str, float]], search: Any) -> None:
    """ValueError "search.<field>: ..." (one line) when no node can hold one trial, naming what the
    cluster has; a trial's worker would otherwise wait for ever."""
    for field, key, unit in (("cpus_per_trial", "CPU", "CPUs"), ("gpus_per_trial", "GPU", "GPUs")):
        asked = float(getattr(search, field))
        most = max((node.get(key, 0.0) for node in nodes), default=0.0)
        if asked > most + _EPSILON:
            total = sum(node.get(key, 0.0) for node in nodes)
            where = f"{total:g} {unit[:-1] if total == 1 else unit}" + \
                (f" on {len(nodes)} nodes, at most {most:g} on one" if total > most else "")
            raise ValueError(f"search.{field}: {asked:g} {unit[:-1] if asked == 1 else unit} per trial is more than "
                             f"the cluster has ({where}); "
                             f"a trial runs on one node")
    if trial_slots(nodes, search) < 1:   # each fits somewhere, but not both on one node
        raise ValueError(f"search.gpus_per_trial: no node of the cluster has {search.cpus_per_trial:g} CPUs and "
                         f"{search.gpus_per_trial:g} GPUs at once")


def cluster_nodes() -> list[dict[str, float]]:
    """The resources of each live node of the connected Ray cluster."""
    import ray

    return [dict(node.get("Resources", {})) for node in ray.nodes() if node.get("Alive")]


def check_cluster(search: Any) -> None:
    """`check_fits` on the connected cluster: before the run folder is touched and before any trial."""
    check_fits(cluster_nodes(), search)
