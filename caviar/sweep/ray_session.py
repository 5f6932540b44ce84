"""Joining Ray: a cluster at an address, or a local Ray started for this sweep."""

from __future__ import annotations

import logging
import os
import time

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


