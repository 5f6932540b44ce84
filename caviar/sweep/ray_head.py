"""The local Ray of a sweep, run in a process of its own: `python -m caviar.sweep.ray_head CPUS`.

A sweep without --address starts a Ray of its own. Started in the driver (`ray.init(address="local")`)
it takes seconds during which nothing trains; started here, in a child process, the driver trains
trials meanwhile (`caviar.sweep.head_start`) and joins this Ray when it is up, as it would join a
cluster. (Ray's start in a thread of the driver crashed Ray's GCS subscriber under load.)

The protocol with the driver (`caviar.sweep.local_ray.LocalRay`), one JSON object a line on stdout:

    {"address": "192.0.2.2:1234"}  the head is up: `ray.init(address=...)` joins it
    {"error": "..."}              it could not start; the process then exits with status 1

and the driver's end of stdin: when it closes (the driver asks for the end, or died, even by
SIGKILL), every process of this Ray is stopped and this process exits. The driver starts it in a
session of its own, so a Ctrl-C at the terminal reaches the driver only, which then ends this Ray.

The head is started as `ray.init(address="local")` starts it (`ray._private.node.Node`, the one
private interface caviar uses: Ray has no public call that starts a head without joining it as a
driver, and a driver here would make Ray boot worker processes no other job can use).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

STOP_GRACE_SECONDS = 0.3   # Ray's processes get this long to exit on SIGTERM before SIGKILL


def _say(**message: str) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _own_processes() -> list:
    """Every other process of this process's group: the head's processes and their workers."""
    import psutil

    me, group = os.getpid(), os.getpgid(0)
    found = []
    for process in psutil.process_iter():
        try:
            # A zombie is dead already, only not yet reaped (by init, when its parent was Ray's).
            if process.pid != me and os.getpgid(process.pid) == group and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process)
        except (OSError, psutil.Error):
            continue   # gone meanwhile
    return found


def stop_all(grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM every process of the group at once, SIGKILL whatever is left after `grace` seconds.

    All at once rather than Ray's one after another (SIGTERM, wait, next): the end of a sweep
    waits for the slowest process, not for the sum of them.
    """
    import psutil

    processes = _own_processes()
    for process in processes:
        try:
            process.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(processes, timeout=grace)
    if alive and os.environ.get("CAVIAR_DEBUG"):
        print(f"caviar: still running {grace:g} s after SIGTERM: {[p.name() for p in alive]}", file=sys.stderr)
    for process in alive + _own_processes():   # again: a worker may have started meanwhile
        try:
            process.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(_own_processes(), timeout=grace)


def _stop_when_stdin_closes() -> None:
    """Wait for the driver to close our stdin, then stop every process of this Ray and exit: also in
    the middle of the start (whatever starts after the sweep is gone dies with this process, since
    Ray's processes here share its fate)."""
    while sys.stdin.buffer.read(65536):
        pass
    started = time.monotonic()
    stop_all()
    if os.environ.get("CAVIAR_DEBUG"):
        print(f"caviar: local Ray stopped in {time.monotonic() - started:.2f} s", file=sys.stderr, flush=True)
    os._exit(0)


def start_head(num_cpus: int) -> object:
    """Start Ray's head processes as ray.init(address="local") does, without joining as a driver."""
    import ray._private.node
    import ray._private.parameter
    from ray._private.authentication import authentication_token_setup as auth

    # A new local cluster uses token authentication, as with ray.init (RAY_AUTH_MODE, set by the
    # driver, says so; the token is made on first use): the driver joins with the same token.
    auth.ensure_token_if_auth_enabled({}, create_token_if_missing=True)
    # No log monitor (the driver joins with log_to_driver=False: nothing would read it) and no
    # autoscaler monitor (one fixed node): two Python processes fewer to boot on a busy machine.
    params = ray._private.parameter.RayParams(num_cpus=num_cpus, include_dashboard=False, redirect_output=None,
                                              include_log_monitor=False, no_monitor=True)
    return ray._private.node.Node(params, head=True, shutdown_at_exit=False, spawn_reaper=True,
                                  ray_init_cluster=True)


def main(argv: list[str]) -> int:
    # Our stop is the driver's to order: Ctrl-C reaches the driver, never this process directly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if os.getpgid(0) != os.getpid():
        os.setpgid(0, 0)   # a group of our own: the stop ends this Ray's processes, never our parent's
    threading.Thread(target=_stop_when_stdin_closes, daemon=True).start()
    try:
        node = start_head(int(argv[0]))
        _say(address=node.gcs_address)
    except Exception as exc:   # noqa: BLE001 - any failure to start is the driver's one line
        lines = [line for line in str(exc).splitlines() if line.strip()]
        _say(error=f"{type(exc).__name__}: {lines[0] if lines else ''}".strip(": "))
        stop_all()
        os._exit(1)   # not a return: the thread reading stdin would hold up the interpreter's exit
    threading.Event().wait()   # until the driver closes stdin (the thread above then exits the process)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
