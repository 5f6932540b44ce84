"""Joining Ray (caviar/sweep/ray_session.py): an address nothing answers at fails fast with a line
that names where the address came from; addresses Ray resolves itself are left to Ray; a process
already connected is not connected again. Loopback addresses only."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest

from caviar.sweep.ray_session import check_reachable, connect_ray
from tests.support import ROOT


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on: bound once to find a free one, then closed."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def listening_port() -> Iterator[int]:
    """A loopback port with a listening socket for the length of the test."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server.getsockname()[1]


def test_a_closed_port_is_refused_at_once_naming_the_address_flag(closed_port, monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    address = f"127.0.0.1:{closed_port}"
    started = time.monotonic()
    with pytest.raises(ValueError) as refused:
        check_reachable(address)
    assert time.monotonic() - started < 5   # not Ray's minutes of retries
    message = str(refused.value)
    assert message.startswith(f"--address: nothing answers at {address} (")
    assert "ray start --head" in message and "\n" not in message


def test_an_address_from_the_environment_is_named_as_ray_address(closed_port, monkeypatch):
    address = f"127.0.0.1:{closed_port}"
    monkeypatch.setenv("RAY_ADDRESS", address)
    with pytest.raises(ValueError, match=r"^RAY_ADDRESS: nothing answers at 127\.0\.0\.1:\d+ "):
        check_reachable(address)


def test_an_address_flag_differing_from_the_environment_is_named_as_the_flag(closed_port, listening_port,
                                                                             monkeypatch):
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{listening_port}")
    with pytest.raises(ValueError, match=r"^--address: nothing answers at "):
        check_reachable(f"127.0.0.1:{closed_port}")


def test_an_address_something_answers_at_passes(listening_port):
    assert check_reachable(f"127.0.0.1:{listening_port}") is None


@pytest.mark.parametrize("address", ["auto", "ray://127.0.0.1:1", "127.0.0.1", "localhost:not-a-port"])
def test_addresses_that_are_not_host_and_port_are_left_to_ray(address):
    started = time.monotonic()
    assert check_reachable(address, timeout=30) is None   # no connection attempted, nothing raised
    assert time.monotonic() - started < 1


def test_connect_ray_on_an_initialized_ray_starts_nothing(ray_session, closed_port, monkeypatch):
    import ray

    assert connect_ray(None) == (False, 0.0)
    assert connect_ray(ray_session) == (False, 0.0)
    # Already connected: even an address nothing answers at is not looked at.
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{closed_port}")
    assert connect_ray(f"127.0.0.1:{closed_port}") == (False, 0.0)
    assert ray.is_initialized()


def test_connect_ray_to_a_closed_port_fails_before_starting_ray(closed_port):
    # In a fresh process (this one may be connected already): the check comes before ray.init,
    # so nothing of Ray is started.
    code = ("import sys, ray\n"
            "from caviar.sweep.ray_session import connect_ray\n"
            "try:\n"
            f"    connect_ray('127.0.0.1:{closed_port}')\n"
            "except ValueError as exc:\n"
            "    print(exc)\n"
            "    sys.exit(0 if not ray.is_initialized() else 3)\n"
            "sys.exit(4)\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"--address: nothing answers at 127.0.0.1:{closed_port}")


@pytest.mark.parametrize("debug", [False, True])
def test_rays_start_up_notices_show_only_with_caviar_debug(tmp_path, debug):
    """A quiet sweep on a Ray of its own prints nothing of Ray's (its token-authentication notice was
    the first line a user saw, even with --quiet); CAVIAR_DEBUG=1 shows what the local Ray's process
    says (here, how long its stop took). Its Ray boots at once, as for long work."""
    from tests.support import CAVIAR, TOY_SWEEP, write_job

    job = write_job(tmp_path, "quiet", TOY_SWEEP, search={"trials": 2}, model={"epochs": 1})
    env = {**os.environ, "CAVIAR_RAY_BOOT_SECONDS": "0", **({"CAVIAR_DEBUG": "1"} if debug else {})}
    env.pop("RAY_ADDRESS", None)
    done = subprocess.run(CAVIAR + ["parallel", str(job), "--out", str(tmp_path / "out"), "--quiet"], env=env,
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stderr
    assert ("caviar: local Ray stopped in" in done.stderr) == debug, done.stderr
    if not debug:
        assert done.stderr == ""
