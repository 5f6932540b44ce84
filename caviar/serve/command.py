"""`caviar serve [--out DIR] [--port N] [--host H]`: the live web app over a results folder.

Binds 127.0.0.1 unless told otherwise and prints the address with a fresh token (as Jupyter does):
reading needs none, acting on a run (a nudge) does. `--port 0` takes any free port; the address
printed says which. The server is uvicorn (ASGI) running the Starlette app of `caviar.serve.app`.
"""

from __future__ import annotations

import argparse
import errno
import socket
import sys
from pathlib import Path

from caviar.serve import security

DEFAULT_PORT = 8765


def bind(host: str, port: int) -> socket.socket:
    """A listening socket on (host, port); ValueError naming the flag when it cannot be had."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ValueError(f"--port: {port} is in use on {host}; pick another (--port 0: any free one)") from None
        raise ValueError(f"--host: cannot listen on {host} port {port} ({exc.strerror or exc})") from None
    except socket.gaierror as exc:
        sock.close()
        raise ValueError(f"--host: {host!r} is not an address of this machine ({exc.strerror})") from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def command(args: argparse.Namespace) -> int:
    """Serve until Ctrl-C; 0 then. ValueError (exit 2) for a results folder or address it cannot use."""
    import uvicorn

    from caviar.serve.app import build_app

    out = Path(args.out)
    if not out.is_dir():
        raise ValueError(f"--out: no results folder at {out}")
    if not 0 <= args.port <= 65535:
        raise ValueError(f"--port: expected 0..65535, got {args.port}")
    sock = bind(args.host, args.port)
    port = sock.getsockname()[1]
    token = security.new_token()
    loopback = security.is_loopback(args.host)
    app = build_app(out, token=token, port=port, loopback=loopback)
    shown = f"[{args.host.strip('[]')}]" if ":" in args.host else args.host
    print(f"caviar serve: {out} at http://{shown}:{port}/\n"
          f"  to nudge runs from the pages, open http://{shown}:{port}/?token={token}", flush=True)
    if not loopback:
        print(f"caviar serve: warning: listening on {args.host}, reachable from other machines; "
              "anyone who can reach it can read these results", file=sys.stderr, flush=True)
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=[sock])
    return 0
