"""A real browser loads the pages: Debian's headless Chromium runs their scripts against the real
server, and the charts are in the page afterwards, with nothing on the console.

Chromium is driven from its command line (`--dump-dom` after `--virtual-time-budget`, console lines
from `--enable-logging=stderr`) rather than a DevTools client: nothing to install beyond the
`chromium` package (`.ci/run` installs it), and the DOM after the scripts ran is what is asserted.
The pages only log on failure, so any console line (an error, a refused script or style, a failed
request) fails the test.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest

from tests.run_factory import make_babysit, make_sweep
from tests.serve.conftest import serving

HOSTILE = "<img src=x onerror=alert(1)>"
SWEEP_CHARTS = ("history", "intermediate", "parallel", "contour", "slice", "edf", "importance")


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("results")
    sweep = make_sweep(root, "sweep", rounds=2, n_trials=40)
    trials = pd.read_parquet(sweep / "trials.parquet")
    trials["error"] = trials["error"].where(trials["status"] != "failed", HOSTILE)
    shutil.rmtree(sweep / "trials.parquet")
    (sweep / "trials.parquet").mkdir()
    trials.to_parquet(sweep / "trials.parquet" / "part-000000.parquet", index=False)
    make_babysit(root, "panda")
    return root


def browse(url: str, profile) -> tuple[str, list[str]]:
    """The DOM of `url` after its scripts ran (15 s of virtual time), and its console lines."""
    chromium = shutil.which("chromium")
    assert chromium, "the browser test needs Debian's chromium (apt-get install -y chromium; .ci/run does it)"
    done = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=15000", "--dump-dom", url],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout, [line for line in done.stderr.splitlines() if ":CONSOLE" in line]


def charts_drawn(dom: str, names) -> dict[str, bool]:
    """For each chart, whether its element holds a Plotly figure (an svg.main-svg) after the scripts ran."""
    pieces = re.split(r'(?=<div id="chart-)', dom)
    drawn = {}
    for name in names:
        piece = next((p for p in pieces if p.startswith(f'<div id="chart-{name}"')), "")
        drawn[name] = "js-plotly-plot" in piece[:200] and 'class="main-svg"' in piece
    return drawn


def test_a_run_page_draws_every_chart_with_no_console_error(results, tmp_path):
    with serving(results) as server:
        dom, console = browse(f"{server.url}/run/sweep", tmp_path / "profile")
    assert console == []
    assert 'data-ready="1"' in dom and "data-errors" not in dom
    assert charts_drawn(dom, SWEEP_CHARTS) == {name: True for name in SWEEP_CHARTS}
    # A value from the folder is shown as text: escaped in the DOM, never an element.
    assert "&lt;img src=x onerror=alert(1)&gt;" in dom and "<img src=" not in dom


def test_the_babysat_timeline_the_runs_list_and_compare_render(results, tmp_path):
    with serving(results) as server:
        pages = {path: browse(server.url + path, tmp_path / "profile")
                 for path in ("/run/panda", "/", "/compare?run=sweep&run=panda")}
    for path, (dom, console) in pages.items():
        assert console == [] and 'data-ready="1"' in dom and "data-errors" not in dom, path
    assert charts_drawn(pages["/run/panda"][0], ["timeline"]) == {"timeline": True}
    assert "rollback" in pages["/run/panda"][0] and "learning_rate=0.0003" in pages["/run/panda"][0]
    assert re.search(r'<a href="/run/sweep">sweep</a>', pages["/"][0]) and 'href="/run/panda"' in pages["/"][0]
    assert charts_drawn(pages["/compare?run=sweep&run=panda"][0], ["compare-history", "compare-edf"]) == \
        {"compare-history": True, "compare-edf": True}


def test_a_big_sweep_draws_a_sample_of_its_markers_and_says_so(results, tmp_path):
    make_sweep(results, "wide", n_trials=2100, epochs=3)
    with serving(results) as server:
        dom, console = browse(f"{server.url}/run/wide", tmp_path / "profile")
    assert console == [] and 'data-ready="1"' in dom and "data-errors" not in dom
    assert charts_drawn(dom, SWEEP_CHARTS) == {name: True for name in SWEEP_CHARTS}
    assert re.search(r"Slice \(\d+ of 2100 trials: the best and others evenly spaced\)", dom)
    assert re.search(r"Intermediate values \(\d+ of 2100 trials", dom)
