"""Where a trial trains: the device and the CPU threads Ray gave it (pure choices, and one read of Ray).

A sweep's worker actor asks Ray for `[search] cpus_per_trial` CPUs and `gpus_per_trial` GPUs; Ray then
narrows `CUDA_VISIBLE_DEVICES` to the GPUs it gave (none: an empty list, so no GPU is visible). A
trainer inside such an actor uses the first of them, else the CPU, with one thread per whole CPU
given. Outside Ray (panda mode, or a script) it uses a GPU if PyTorch sees one, and leaves
PyTorch's threads as they are.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Share:
    """What Ray gave the actor this code runs in: `cpus` (may be a fraction), `gpu_ids` (Ray's ids)."""

    cpus: float
    gpu_ids: tuple[str, ...]


def ray_share() -> Share | None:
    """The resources of the Ray actor this process runs, or None outside one (a driver, a script).

    Reads Ray only if it is already imported: a trainer never starts or imports Ray itself.
    """
    ray = sys.modules.get("ray")
    if ray is None or not ray.is_initialized():
        return None
    context = ray.get_runtime_context()
    if context.get_actor_id() is None:
        return None
    cpus = float(context.get_assigned_resources().get("CPU", 0.0))
    return Share(cpus, tuple(str(i) for i in ray.get_gpu_ids()))


def choose_device(share: Share | None, cuda_available: bool) -> str:
    """"cuda:0" (the first GPU visible, which under Ray is the first one Ray gave) or "cpu"."""
    if share is None:
        return "cuda:0" if cuda_available else "cpu"
    return "cuda:0" if share.gpu_ids and cuda_available else "cpu"


def choose_threads(share: Share | None) -> int | None:
    """Intra-op threads: one per whole CPU Ray gave (at least one); None outside Ray (leave them)."""
    if share is None:
        return None
    return max(1, math.floor(share.cpus + 1e-9))
