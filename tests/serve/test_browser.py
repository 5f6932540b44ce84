"""A real browser loads the pages: Debian's headless Chromium runs their scripts against the real
server, and the charts are in the page afterwards, with nothing on the console.

Chromium is driven from its command line (`--dump-dom` after `--virtual-time-budget`, console lines
from `--enable-logging=stderr`) rather than a DevTools client: nothing to install beyond the
`chromium` package (`.ci/run` installs it), and the DOM after the scripts ran is what is asserted.
The pages only log on failure, so any console line (an error, a refused script or style, a failed
request) fails the test. Following a running run is checked in real time instead, over the DevTools
protocol on a pipe (`tests/serve/devtools.py`): virtual time runs ahead of the server's writes.
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pandas as pd
import pytest
import tomli_w

from caviar.store import lock
from caviar.store.folder import open_run
from tests.run_factory import job_dict, make_babysit, make_sweep, simulate_sweep
from tests.serve.conftest import serving
from tests.serve.devtools import Chromium

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


def chart(dom: str, name: str) -> str:
    """The part of the DOM from chart `name`'s element to the next chart's."""
    return next((p for p in re.split(r'(?=<div id="chart-)', dom) if p.startswith(f'<div id="chart-{name}"')), "")


def legend(piece: str) -> list[str]:
    return re.findall(r'class="legendtext"[^>]*>([^<]*)<', piece)


def fills(piece: str) -> list[tuple[int, int, int]]:
    """The fill colour of every marker Plotly drew in `piece` (hollow ones have none)."""
    return [tuple(map(int, rgb)) for rgb in re.findall(r'class="point"[^>]*?fill: rgb\((\d+), (\d+), (\d+)\)', piece)]


def contrast_on_white(rgb: tuple[int, int, int]) -> float:
    """WCAG 2.1's contrast ratio of a colour against a white page (1 to 21; 3 is its minimum for graphics)."""
    linear = [c / 255 / 12.92 if c <= 10 else ((c / 255 + 0.055) / 1.055) ** 2.4 for c in rgb]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return 1.05 / (luminance + 0.05)


def test_failed_curves_rounds_and_every_marker_are_told_apart(results, tmp_path):
    """Failed trials' curves are their own legend entry, a long failed list says how much it shows,
    a coarse-to-fine sweep's history and slice are coloured by round, and every slice marker of a
    one-round sweep stands out from the page (its colour scale has no near-white end)."""
    make_sweep(results, "ctf", n_trials=40, rounds=2, failed=12)
    make_sweep(results, "plain", n_trials=40)
    with serving(results) as server:
        ctf, console = browse(f"{server.url}/run/ctf", tmp_path / "profile")
        plain, more = browse(f"{server.url}/run/plain", tmp_path / "profile")
    assert console == more == [] and 'data-ready="1"' in ctf + plain and "data-errors" not in ctf + plain
    assert "failed" in legend(chart(ctf, "intermediate"))
    assert re.search(r"<h2>Failed trials: 10 of 12 shown[^<]*</h2>", ctf)
    assert {"round 0", "round 1"} <= set(legend(chart(ctf, "history")))
    assert len(set(fills(chart(ctf, "slice")))) == 2                      # one colour per round
    plain_slice = fills(chart(plain, "slice"))
    assert len(plain_slice) >= 40 and min(map(contrast_on_white, plain_slice)) >= 3, sorted(set(plain_slice))[-3:]


def test_a_running_sweeps_page_shows_new_trials_as_they_are_written_without_a_reload(tmp_path):
    """A real browser on a running sweep's page, in real time: trials written through the store's own
    writer while the page is open (the test holds the run's lock, as a driver does) appear in its
    summary and its best-trials table, on the same page (a mark set on it stays). No speed is
    asserted: the page polls every second; the timeouts are generous for a loaded machine."""
    trials, epochs = simulate_sweep(12, epochs=3, failed=0)
    order = trials.sort_values("score")["trial_id"].tolist()   # the worst first: the best comes later
    first, later = order[:4], order[4:]
    out = tmp_path / "results"
    run = open_run(out, "growing", tomli_w.dumps(job_dict("growing", trials=12, epochs=3)), fsync=False)

    def write(ids):
        run.table("epochs").append(epochs[epochs["trial_id"].isin(ids)].to_dict("records"))
        run.table("trials").append(trials[trials["trial_id"].isin(ids)].to_dict("records"))
        run.flush()

    shown = ("[...document.querySelectorAll('#summary dt')].filter((d) => d.textContent === 'trials')"
             ".map((d) => d.nextElementSibling.textContent).join()")
    top = "(document.querySelector('#tables tbody tr td') || {}).textContent"
    with lock.held(run.path, "sweep"), serving(out) as server:
        write(first)
        with Chromium(f"{server.url}/run/growing", tmp_path / "profile") as page:
            page.wait_for("document.getElementById('live')?.textContent.includes('live')", timeout=120)
            assert page.wait_for(f"{shown} === '4 / 12' && {shown}", timeout=120) == "4 / 12"
            page.evaluate("window.caviarMark = 'the same page'")
            write(later)
            page.wait_for(f"{shown} === '12 / 12'", timeout=120)
            best = int(trials.loc[trials["score"].idxmax(), "trial_id"])
            assert int(page.wait_for(f"{top} === '{best}' && {top}", timeout=120)) == best
            assert page.evaluate("window.caviarMark") == "the same page"   # followed, not reloaded
            assert page.evaluate("document.body.dataset.errors || ''") == ""
        assert page.console() == []
