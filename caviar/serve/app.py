"""The HTTP shell: routes, from a request to the store's tables and back as JSON or a page.

    GET  /                          the runs (?token=... sets the token cookie, then redirects here)
    GET  /run/NAME                  one run, followed live
    GET  /compare?run=A&run=B       two or more runs side by side
    GET  /static/FILE               the page script and style; plotly.min.js from the installed plotly
    GET  /api/runs                  every run's summary
    GET  /api/runs/NAME             one run's summary, job and scales
    GET  /api/runs/NAME/TABLE       trials | epochs | events after ?since=CURSOR (?columns=a,b)
    GET  /api/runs/NAME/importance  which hyperparameters mattered (caviar.views.importance)
    POST /api/runs/NAME/nudge       a running babysit's nudge (token and same origin only)

Every answer carries `Server-Timing: app;dur=<ms>` (what the server spent on it) and headers that
keep a page to itself (a content security policy of its own scripts only, no framing).
"""

from __future__ import annotations

import json
import time
from importlib import resources
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, HTMLResponse, PlainTextResponse, RedirectResponse, Response
from starlette.routing import Route

from caviar.serve import answers, pages, security
from caviar.serve.runs import NotFound, Runs
from caviar.serve.tables import dumps, parse_cursor
from caviar.store.vocabulary import TABLES

STATIC = Path(__file__).with_name("static")
OWN_FILES = {"app.js": "text/javascript", "charts.js": "text/javascript", "style.css": "text/css"}
HEADERS = {
    "content-security-policy": "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data: blob:; connect-src 'self'; font-src 'self' data:; "
                               "base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "x-frame-options": "DENY",
    "cache-control": "no-store",
}


def plotly_js() -> Path:
    """plotly.min.js as the installed plotly package ships it: the pages work offline."""
    return Path(str(resources.files("plotly") / "package_data" / "plotly.min.js"))


def _json(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status, media_type="application/json")


def _error(status: int, message: str) -> Response:
    return _json({"error": message}, status)


class Handlers:
    """The routes' handlers over one results folder; `token` guards the actions."""

    def __init__(self, out: Path, *, token: str, port: int) -> None:
        self.out, self.token = Path(out), token
        self.runs = Runs(self.out)
        self.cookie = security.cookie_name(port)

    def index(self, request: Request) -> Response:
        given = request.query_params.get("token")
        if given is None:
            return HTMLResponse(pages.runs_page())
        if not security.token_ok(self.token, given):
            return PlainTextResponse("token: wrong token; use the address `caviar serve` printed", 403)
        answer = RedirectResponse("/", 303)   # the token leaves the address bar, kept in a cookie
        answer.set_cookie(self.cookie, self.token, httponly=True, samesite="strict")
        return answer

    def run_page(self, request: Request) -> Response:
        name = request.path_params["name"]
        self.runs.get(name)
        return HTMLResponse(pages.run_page(name))

    def compare_page(self, request: Request) -> Response:
        names = request.query_params.getlist("run")
        for name in names:
            self.runs.get(name)
        return HTMLResponse(pages.compare_page(names))

    def static(self, request: Request) -> Response:
        file = request.path_params["file"]
        if file == "plotly.min.js":
            return FileResponse(plotly_js(), media_type="text/javascript")
        if file not in OWN_FILES:
            raise NotFound(file)
        return FileResponse(STATIC / file, media_type=OWN_FILES[file])

    def api_runs(self, request: Request) -> Response:
        return _json({"runs": self.runs.summaries()})

    def api_run(self, request: Request) -> Response:
        run = self.runs.get(request.path_params["name"])
        summary = run.summary()
        return _json({**summary, "job": run.job, "scales": answers.scales(run.job),
                      "nudge": summary["kind"] == "babysit" and summary["status"] == "running"})

    def api_table(self, request: Request) -> Response:
        table = request.path_params["table"]
        if table not in TABLES:
            raise NotFound(table)
        run = self.runs.get(request.path_params["name"])
        try:
            cursor = parse_cursor(request.query_params.get("since"))
        except ValueError as exc:
            return _error(400, str(exc))
        columns = request.query_params.get("columns")
        return _json(run.table(table).since(cursor, columns.split(",") if columns else None))

    def api_importance(self, request: Request) -> Response:
        return _json({"importance": answers.importance_rows(self.runs.get(request.path_params["name"]))})

    async def api_nudge(self, request: Request) -> Response:
        why = security.refusal({k.lower(): v for k, v in request.headers.items()}, token=self.token,
                               cookie=request.cookies.get(self.cookie))
        if why is not None:
            return _error(403, why)
        name = request.path_params["name"]
        self.runs.get(name)
        try:
            texts, rollback, stop = answers.nudge_request(json.loads(await request.body()))
            from caviar.babysit.nudges import queue

            path, nudge = queue(self.out, name, texts, rollback=rollback, stop=stop)
        except ValueError as exc:   # json's errors are ValueErrors too
            return _error(400, " ".join(str(exc).split()) or "body: not a nudge")
        return _json({"queued": path.name, "nudge": nudge.describe()})


async def _not_found(request: Request, exc: Exception) -> Response:
    if request.url.path.startswith("/api/"):
        return _error(404, "not found")
    return PlainTextResponse("not found", 404)


def build_app(out: Path, *, token: str, port: int, loopback: bool = True) -> Guard:
    """The web app over the results folder `out` (ASGI); `token` guards its actions, `port` names
    its cookie, `loopback` (bound to this machine only) turns on the Host check."""
    h = Handlers(out, token=token, port=port)
    routes = [
        Route("/", h.index), Route("/run/{name}", h.run_page), Route("/compare", h.compare_page),
        Route("/static/{file}", h.static), Route("/api/runs", h.api_runs), Route("/api/runs/{name}", h.api_run),
        Route("/api/runs/{name}/importance", h.api_importance),
        Route("/api/runs/{name}/nudge", h.api_nudge, methods=["POST"]),
        Route("/api/runs/{name}/{table}", h.api_table),
    ]
    app = Starlette(routes=routes, exception_handlers={NotFound: _not_found, 404: _not_found})
    return Guard(app, loopback=loopback)


class Guard:
    """ASGI wrapper: refuses a Host that is not loopback on a loopback server (DNS rebinding), times
    each answer (`Server-Timing`) and adds the security headers."""

    def __init__(self, app: Any, *, loopback: bool) -> None:
        self.app, self.loopback = app, loopback

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        host = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if not security.host_ok(host, loopback=self.loopback):
            return await PlainTextResponse("host: not a loopback name", 403)(scope, receive, send)
        start = time.perf_counter()

        async def timed(message: dict) -> None:
            if message["type"] == "http.response.start":
                took = (time.perf_counter() - start) * 1000
                extra = [(k.encode(), v.encode()) for k, v in HEADERS.items()]
                extra.append((b"server-timing", f"app;dur={took:.2f}".encode()))
                message = {**message, "headers": list(message.get("headers", [])) + extra}
            await send(message)
        await self.app(scope, receive, timed)
