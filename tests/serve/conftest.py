"""A real `caviar serve` in a subprocess, for the tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Server:
    """A running `caviar serve`: its address (http://127.0.0.1:PORT), token, port and process."""

    url: str
    token: str
    port: int
    proc: subprocess.Popen


@contextlib.contextmanager
def serving(out: Path) -> Iterator[Server]:
    """`python -m caviar serve --out OUT --port 0` until the block ends (then stopped with SIGINT,
    as Ctrl-C would, and killed if it does not end)."""
    proc = subprocess.Popen([sys.executable, "-m", "caviar", "serve", "--out", str(out), "--port", "0"], cwd=ROOT,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        printed = proc.stdout.readline() + proc.stdout.readline()
        found = re.search(r"http://127\.0\.0\.1:(\d+)/\?token=(\S+)", printed)
        assert found, (printed, proc.stderr.read() if proc.poll() is not None else "")
        port = int(found[1])
        yield Server(f"http://127.0.0.1:{port}", found[2], port, proc)
    finally:
        proc.send_signal(2)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture(scope="module")
def server(runs) -> Iterator[Server]:
    """A server over the module's results folder (`runs`: a sweep "sweep" and a babysat run "panda")."""
    with serving(runs) as running:
        yield running
