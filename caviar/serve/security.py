"""Who may act: pure checks of a request's token, origin and host (no server, no files).

Reading results needs no token (the server listens on 127.0.0.1 unless told otherwise); an action
(a nudge) does, as Jupyter's do: the token printed at start, sent as the `X-Caviar-Token` header or
the cookie the server sets when the page is opened with `?token=...`. An action must also come from
the server's own pages: a request whose `Origin` (or `Sec-Fetch-Site`) says another site sent it is
refused whatever it carries, and only a JSON body is taken (a form another site posts cannot be
one without asking first, which this server never allows). On loopback the `Host` must be a
loopback name, so a page of another site cannot reach the server under a name of its own (DNS
rebinding).
"""

from __future__ import annotations

import hmac
import ipaddress
import secrets
from typing import Mapping

TOKEN_HEADER = "x-caviar-token"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def new_token() -> str:
    """A fresh random token (32 bytes of randomness, URL-safe text)."""
    return secrets.token_urlsafe(32)


def cookie_name(port: int) -> str:
    """The token cookie's name: cookies do not tell ports apart, servers on two ports must not share one."""
    return f"caviar-token-{port}"


def token_ok(expected: str, given: str | None) -> bool:
    """Whether `given` is the token, compared in constant time."""
    return bool(given) and hmac.compare_digest(expected.encode(), str(given).encode())


def is_loopback(host: str) -> bool:
    """Whether `host` (an address or name to bind) is this machine only."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_ok(host_header: str | None, *, loopback: bool) -> bool:
    """Whether a request's Host header may reach a server bound to loopback (any host otherwise)."""
    if not loopback:
        return True
    if not host_header:
        return False
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return name in LOOPBACK_NAMES or is_loopback(name)


def refusal(headers: Mapping[str, str], *, token: str, cookie: str | None) -> str | None:
    """Why an action is refused (one line, for a 403), or None when it may go ahead.

    headers: the request's headers, lower-case names; cookie: the value of the token cookie."""
    origin = headers.get("origin")
    own = f"http://{headers.get('host', '')}"
    if origin is not None and origin != own:
        return f"origin: {origin} is not this server ({own}); actions come from its own pages only"
    if headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return "origin: the request came from another site; actions come from this server's own pages only"
    if not headers.get("content-type", "").split(";")[0].strip() == "application/json":
        return "content-type: an action's body must be JSON (application/json)"
    if not (token_ok(token, headers.get(TOKEN_HEADER)) or token_ok(token, cookie)):
        return ("token: missing or wrong; open the address `caviar serve` printed (with ?token=...) or send "
                "the X-Caviar-Token header")
    return None
