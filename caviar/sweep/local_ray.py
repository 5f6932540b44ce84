"""The driver's handle on a local Ray started in a child process (`caviar.sweep.ray_head`).

`LocalRay.start(cpus)` returns at once; the head boots meanwhile. `ready()` says, without waiting,
whether it is up; `join()` connects this process to it as a driver (`ray.init(address=...)`, well
under a second); `stop()` ends every process of that Ray and waits until they are gone. Nothing
here imports Ray: a sweep that ends before its Ray is up never pays for the import.
"""

from __future__ import annotations

import json
import logging
import os
import select
import subprocess
import sys
import time
from typing import Any

STOP_WAIT_SECONDS = 15.0   # the child ends Ray in about a second; past this, it is killed


class RayStartError(OSError):
    """The local Ray did not start: the machine's problem, not the job's (exit status 1, one line)."""


def _pythonpath() -> str:
    """PYTHONPATH for the child: this copy of caviar first, so it runs the same code as the driver."""
    import caviar

    here = os.path.dirname(os.path.dirname(os.path.abspath(caviar.__file__)))
    return os.pathsep.join(p for p in (here, os.environ.get("PYTHONPATH", "")) if p)


def _auth_mode() -> str:
    """A new local Ray uses token authentication, as ray.init's does (unless the user chose a mode);
    the driver joins it in the same mode."""
    return os.environ.get("RAY_AUTH_MODE", "token")


class LocalRay:
    """A local Ray booting (or up) in a child process of this one.

    Args:
        process: the child running `python -m caviar.sweep.ray_head`.
        cpus: the CPUs that Ray was told it has.
    """

    def __init__(self, process: subprocess.Popen, cpus: int) -> None:
        self.process, self.cpus = process, cpus
        self.started = time.monotonic()
        self.address: str | None = None    # host:port of the head's GCS, once it is up
        self.boot_seconds = 0.0            # from start() to the head being up
        self.joined = False

    @classmethod
    def start(cls, cpus: int) -> LocalRay:
        """Start booting a Ray head with `cpus` CPUs in a child process; returns at once."""
        # Set here, before anything imports Ray in this process (Ray reads it on import), as
        # ray.init(address="local") sets it for the Ray it starts.
        os.environ["RAY_AUTH_MODE"] = _auth_mode()
        debug = bool(os.environ.get("CAVIAR_DEBUG"))
        process = subprocess.Popen(
            [sys.executable, "-m", "caviar.sweep.ray_head", str(cpus)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None if debug else subprocess.DEVNULL,
            # A session of its own: a Ctrl-C at the terminal reaches the driver alone, which then
            # stops this Ray in order (its processes would otherwise die half-way, at random).
            start_new_session=True, env={**os.environ, "PYTHONPATH": _pythonpath(), "RAY_AUTH_MODE": _auth_mode()},
        )
        return cls(process, cpus)

    def _read(self, timeout: float) -> None:
        """Take in what the child says within `timeout` seconds (0: only what is there now), until
        it has said its address."""
        stream = self.process.stdout
        assert stream is not None
        deadline = time.monotonic() + timeout
        while self.address is None:
            if not select.select([stream], [], [], max(0.0, deadline - time.monotonic()))[0]:
                return
            line = stream.readline()
            if not line:   # the child is gone without a word: it died (killed, out of memory)
                code = self.process.wait()
                raise RayStartError(f"the local Ray's process exited with status {code} before it was up")
            message = json.loads(line)
            if "error" in message:
                raise RayStartError(f"the local Ray did not start: {message['error']}")
            if "address" in message:
                self.address = message["address"]
                self.boot_seconds = time.monotonic() - self.started

    def ready(self) -> bool:
        """Whether the head is up (never waits). Raises RayStartError when it failed to start."""
        if self.address is None:
            self._read(0.0)
        return self.address is not None

    def wait(self, timeout: float = 600.0) -> None:
        """Block until the head is up; RayStartError if it fails or takes longer than `timeout`."""
        self._read(timeout)
        if self.address is None:
            raise RayStartError(f"the local Ray was not up after {timeout:g} s")

    def join(self) -> None:
        """Connect this process to the head as a driver (it must be up: see `ready` and `wait`)."""
        import ray

        # Ray's own start-up chatter only with CAVIAR_DEBUG=1; its errors still show.
        level = logging.WARNING if os.environ.get("CAVIAR_DEBUG") else logging.ERROR
        ray.init(address=self.address, logging_level=level, log_to_driver=False)
        self.joined = True

    def stop(self, timeout: float = STOP_WAIT_SECONDS) -> None:
        """Leave Ray (if joined) and end every one of its processes; returns once they are gone."""
        if self.joined:
            import ray

            ray.shutdown()
            self.joined = False
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()   # the child's signal to stop everything and exit
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, 9)   # its whole session: the head and its workers
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None and not stream.closed:
                stream.close()

    def __enter__(self) -> LocalRay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()
