"""Headless Chromium driven over the DevTools protocol in real time, for a page that must change while
it is open (a live run page), which `--dump-dom` cannot show: it dumps once, and its virtual time
runs ahead of the real server's writes.

The protocol goes over `--remote-debugging-pipe` (JSON messages ending in a NUL byte, commands on
the child's fd 3, answers and events on its fd 4): no websocket, nothing to install beyond the
`chromium` package. A support module, not a test file.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any


def _high(fds: tuple[int, int]) -> tuple[int, int]:
    """A pipe's two ends moved to descriptors 10 and up (close-on-exec), so that placing them at 3
    and 4 in the child cannot overwrite one with the other."""
    high = tuple(fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 10) for fd in fds)
    for fd in fds:
        os.close(fd)
    return high  # type: ignore[return-value]


class Chromium:
    """One headless Chromium with one page open at `url`; `evaluate` runs JavaScript in it.

    Use it as a context manager: the browser is closed (and killed if it does not close) at the end.
    `console()` gives the console lines Chromium logged to stderr.
    """

    def __init__(self, url: str, profile: Path) -> None:
        chromium = shutil.which("chromium")
        assert chromium, "the browser test needs Debian's chromium (apt-get install -y chromium; .ci/run does it)"
        to_child, self._to_child = _high(os.pipe())     # the child reads commands on fd 3
        self._from_child, from_child = _high(os.pipe())   # and writes answers on fd 4
        self._stderr = tempfile.TemporaryFile(mode="w+")

        def as_fds_3_and_4() -> None:   # in the child, before exec: the two ends, inheritable, at 3 and 4
            os.dup2(to_child, 3)
            os.dup2(from_child, 4)

        # close_fds=False: it would close 3 and 4 after preexec_fn; every other descriptor Python
        # opened is close-on-exec, so the child gets 0-4 only.
        self.proc = subprocess.Popen(
            [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
             "--enable-logging=stderr", "--v=0", "--remote-debugging-pipe", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self._stderr,
            close_fds=False, preexec_fn=as_fds_3_and_4)
        os.close(to_child)
        os.close(from_child)
        self._buffer, self._next = b"", 0
        target = self.send("Target.createTarget", url=url)["targetId"]
        self.session = self.send("Target.attachToTarget", targetId=target, flatten=True)["sessionId"]

    def send(self, method: str, session: str | None = None, **params: Any) -> dict[str, Any]:
        """Send one command (to the page's `session`, or the browser's) and return its result."""
        self._next += 1
        message = {"id": self._next, "method": method, "params": params}
        if session is not None:
            message["sessionId"] = session
        os.write(self._to_child, json.dumps(message).encode() + b"\0")
        while True:   # events and answers come on one pipe: skip to this command's answer
            answer = self._read()
            if answer.get("id") == self._next:
                assert "error" not in answer, (method, answer["error"])
                return answer.get("result", {})

    def _read(self) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            chunk = os.read(self._from_child, 1 << 16)
            assert chunk, f"chromium closed its pipe: {self.console()}"
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript `expression` in the page (JSON-able values only)."""
        result = self.send("Runtime.evaluate", self.session, expression=expression, returnByValue=True)
        assert "exceptionDetails" not in result, result["exceptionDetails"]
        return result["result"].get("value")

    def wait_for(self, expression: str, *, timeout: float, every: float = 0.2) -> Any:
        """Evaluate `expression` until it is truthy (its value), or fail after `timeout` real seconds
        with the page's body text."""
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{expression} still false after {timeout} s; the page says: "
                                     f"{self.evaluate('document.body.innerText')[:2000]}")
            time.sleep(every)

    def console(self) -> list[str]:
        """The console lines Chromium logged so far (all of them, once closed)."""
        if self._stderr.closed:
            return self._console
        self._stderr.seek(0)
        return [line for line in self._stderr.read().splitlines() if ":CONSOLE" in line]

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (AssertionError, OSError):
            pass
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_child)
        os.close(self._from_child)
        self._console = self.console()
        self._stderr.close()

    def __enter__(self) -> Chromium:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
