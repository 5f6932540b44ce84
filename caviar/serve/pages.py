"""The HTML pages: a frame that loads the scripts, every value from a results folder escaped.

Pages hold no data and no inline script (the content security policy allows none): they name what
to show in `data-` attributes, escaped, and `static/app.js` fetches the rest from the API and puts
it into the page as text (never as HTML).
"""

from __future__ import annotations

import html
import json
from typing import Sequence

_FRAME = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title} · caviar</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="/static/style.css">
<script src="/static/plotly.min.js" defer></script>
<script src="/static/charts.js" defer></script>
<script src="/static/app.js" defer></script>
</head><body data-page="{page}" data-runs="{runs}">
<header><a href="/" class="home">caviar</a> <span id="title">{title}</span> <span id="live"></span></header>
<main id="main"><p class="muted">loading…</p></main>
</body></html>
"""


def _frame(page: str, title: str, runs: Sequence[str] = ()) -> str:
    return _FRAME.format(page=page, title=html.escape(title), runs=html.escape(json.dumps(list(runs)), quote=True))


def runs_page() -> str:
    """The runs under --out."""
    return _frame("runs", "runs")


def run_page(name: str) -> str:
    """One run, followed live."""
    return _frame("run", name, [name])


def compare_page(names: Sequence[str]) -> str:
    """Two or more runs side by side."""
    return _frame("compare", "compare " + ", ".join(names), names)
