"""Commands that need no Ray never import it (caviar/cli.py and the modules it calls): a dry run, show,
compare, report, nudge and serve's pages answer in a fraction of a second, and Ray's import alone is half a second
or more. Checked in a fresh interpreter, from `sys.modules` after the command ran."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support import ROOT

PROBE = """
import json, sys
from caviar.cli import main
try:
    status = main(sys.argv[1:])
except SystemExit as exc:
    status = exc.code
print(json.dumps({"status": status, "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))[:3]}))
"""


def imports_of(*argv: str) -> dict:
    done = subprocess.run([sys.executable, "-c", PROBE, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("argv", [
    ["parallel", "--dry-run"],
    ["show", "sweep"],
    ["show", "panda", "--json"],
    ["compare", "sweep", "panda"],
    ["report", "sweep"],
    ["nudge", "panda", "learning_rate=0.01"],
], ids=lambda argv: " ".join(argv))
def test_a_command_that_needs_no_ray_does_not_import_it(runs, argv):
    answer = imports_of(*argv, "--out", str(runs))
    assert answer["ray"] == [], answer
    assert answer["status"] in (0, 2), answer   # nudge refuses a run that is not running: still no Ray


def test_the_probe_sees_ray_when_a_command_imports_it(runs):
    """The check can fail: a command that joins a Ray shows up in it (here, a --address nothing
    answers at, refused after Ray's import, before any work)."""
    answer = imports_of("parallel", "--address", "127.0.0.1:1", "--set", "search.trials=1", "--out", str(runs),
                        "--name", "probe")
    assert answer["status"] == 2 and answer["ray"], answer


SERVE_PROBE = """
import json, sys
from pathlib import Path
from starlette.testclient import TestClient
from caviar.serve.app import build_app

out = Path(sys.argv[1])
client = TestClient(build_app(out, token="t", port=80), base_url="http://127.0.0.1")
codes = [client.get(path).status_code for path in ("/", "/run/sweep", "/run/panda", "/api/runs",
                                                     "/api/runs/sweep/trials", "/api/runs/sweep/importance",
                                                     "/api/runs/panda/events", "/compare?run=sweep&run=panda")]
print(json.dumps({"codes": codes, "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray."))[:3]}))
"""


def test_serving_runs_does_not_import_ray(runs):
    """`caviar serve` answers its pages and API without Ray: the app itself, in a fresh interpreter."""
    done = subprocess.run([sys.executable, "-c", SERVE_PROBE, str(runs)], cwd=ROOT, capture_output=True, text=True,
                          timeout=120, stdin=subprocess.DEVNULL)
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["codes"] == [200] * 8 and answer["ray"] == [], (answer, done.stderr[-2000:])
