"""The HTML frames: no inline script, names escaped into their attributes."""

from __future__ import annotations

import html
import json
import re

from caviar.serve.pages import compare_page, run_page, runs_page


def test_pages_load_only_the_servers_own_scripts_and_escape_what_they_name():
    page = compare_page(['a"><script>alert(1)</script>', "b"])
    assert "<script>alert" not in page and "&lt;script&gt;" in page
    runs = json.loads(html.unescape(re.search(r'data-runs="([^"]*)"', page)[1]))
    assert runs == ['a"><script>alert(1)</script>', "b"]
    for frame in (page, run_page("sweep"), runs_page()):
        assert re.findall(r"<script[^>]*>", frame) == [f'<script src="/static/{f}" defer>' for f in
                                                       ("plotly.min.js", "charts.js", "app.js")]
