"""Joining Ray: a cluster at an address, or a local Ray started for this sweep.

A sweep without an address boots its own Ray in a child process (`caviar.sweep.local_ray`) and
trains meanwhile; `connect_ray` is the path of a cluster (--address, $RAY_ADDRESS) and of a process
already connected to a Ray (a script, a test), where nothing needs to start.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """Fail fast on a cluster address nothing answers at (ray.init would retry for minutes)."""
    import socket

    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit() or "://" in address:
        return   # "auto", "ray://...": left to Ray
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        source = "--address" if address != os.environ.get("RAY_ADDRESS") else "RAY_ADDRESS"
        raise ValueError(f"{source}: nothing answers at {address} ({exc.strerror or exc}); is the Ray head "
                         "running (`ray start --head`)?") from None


def connect_ray(address: str | None) -> tuple[bool, float]:
    """Join the cluster at `address` (or $RAY_ADDRESS), else start a local Ray.

    Returns whether this call started Ray (so it should shut it down) and the seconds it took.
    """
    import ray

    start = time.monotonic()
    address = address or os.environ.get("RAY_ADDRESS") or None
    if ray.is_initialized():
        return False, 0.0
    if address:
        check_reachable(address)
    # Ray's own start-up chatter (its token-authentication notice, ...) only with CAVIAR_DEBUG=1: the
    # sweep's first line is caviar's. Ray's errors still show.
    level = logging.WARNING if os.environ.get("CAVIAR_DEBUG") else logging.ERROR
    try:
        if address:
            ray.init(address=address, logging_level=level, log_to_driver=False)
        else:
            # "local": a Ray of this sweep's own. Without it, ray.init joins any Ray already running
            # on the machine (another user's, another session's test cluster) and trains there.
            ray.init(address="local", include_dashboard=False, logging_level=level, log_to_driver=False)
    except (ConnectionError, RuntimeError, TimeoutError) as exc:
        cause = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
        raise ValueError(f"--address: cannot join the Ray cluster at {address or 'a new local Ray'}: {cause}") from None
    return True, time.monotonic() - start




def local_cpus() -> int:
    """The CPUs a local Ray gets: those this process may run on (as Ray counts them)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def wants_local_head(address: str | None) -> bool:
    """Whether this sweep starts a Ray of its own: no address given or in $RAY_ADDRESS, and this
    process not connected to a Ray already. Never imports Ray."""
    if address or os.environ.get("RAY_ADDRESS"):
        return False
    ray = sys.modules.get("ray")
    return ray is None or not ray.is_initialized()


def joined_already() -> bool:
    """Whether this process is connected to a Ray before the sweep starts (a caller of
    `caviar.sweep()` that ran `ray.init` itself): that connection is the caller's to end. Never
    imports Ray."""
    ray = sys.modules.get("ray")
    return ray is not None and ray.is_initialized()


def stop_ray(head: Any, started: bool, address: str | None, joined: bool = False) -> None:
    """End what this sweep started: its local Ray (every process of it), or its connection; never a
    connection the process had before the sweep (`joined`)."""
    if head is not None:
        head.stop()
        return
    ray = sys.modules.get("ray")
    if ray is not None and (started or not joined and ray.is_initialized() and address is None):
        ray.shutdown()
