"""The real server over a results folder: every page and API route with a real HTTP client, paths
that would leave --out, hosts and actions that are refused."""

from __future__ import annotations

import http.client
import json

import httpx
import pandas as pd
import pytest

from tests.run_factory import make_sweep


def get(server, path: str, **kw) -> httpx.Response:
    return httpx.get(server.url + path, timeout=30, **kw)


def raw_status(server, path: str, headers: dict | None = None) -> int:
    """The status of GET `path` sent exactly as written (httpx would resolve `..` itself)."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", path, headers=headers or {})
    status = conn.getresponse().status
    conn.close()
    return status


def test_every_page_and_static_file_answers(server):
    for path in ("/", "/run/sweep", "/run/panda", "/compare?run=sweep&run=panda"):
        page = get(server, path)
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html"), path
        assert "script-src 'self'" in page.headers["content-security-policy"] and "<script>" not in page.text
    for file, size in (("app.js", 1000), ("charts.js", 1000), ("style.css", 100), ("plotly.min.js", 1_000_000)):
        answer = get(server, f"/static/{file}")
        assert answer.status_code == 200 and len(answer.content) > size, file
    assert "server-timing" in get(server, "/api/runs").headers


def test_the_api_lists_runs_and_serves_their_tables_after_a_cursor(server, runs):
    listed = {r["name"]: r for r in get(server, "/api/runs").json()["runs"]}
    assert set(listed) == {"sweep", "panda"}
    assert (listed["sweep"]["kind"], listed["sweep"]["status"], listed["sweep"]["done"]) == ("sweep", "finished", 24)
    assert listed["panda"]["kind"] == "babysit" and listed["panda"]["best"] == pytest.approx(0.96)

    info = get(server, "/api/runs/sweep").json()
    assert info["metric"] == "val_accuracy" and info["scales"]["learning_rate"] == "log" and not info["nudge"]
    trials = get(server, "/api/runs/sweep/trials").json()
    expected = pd.read_parquet(runs / "sweep" / "trials.parquet")
    assert trials["rows"] == len(expected) and trials["data"]["trial_id"] == expected["trial_id"].tolist()
    assert trials["data"]["score"][-1] is None          # the failed trial's NaN, as null
    again = get(server, f"/api/runs/sweep/trials?since={trials['cursor']}").json()
    assert (again["rows"], again["reset"], again["cursor"]) == (0, False, trials["cursor"])
    epochs = get(server, "/api/runs/sweep/epochs?columns=trial_id,epoch,val_accuracy").json()
    assert epochs["columns"] == ["trial_id", "epoch", "val_accuracy"]
    assert epochs["rows"] == len(pd.read_parquet(runs / "sweep" / "epochs.parquet"))
    events = get(server, "/api/runs/panda/events").json()
    assert "rollback" in events["data"]["event"] and "nudge" in events["data"]["event"]
    ranking = get(server, "/api/runs/sweep/importance").json()["importance"]
    assert ranking[0]["param"] == "learning_rate"
    bad = get(server, "/api/runs/sweep/trials?since=nonsense")
    assert bad.status_code == 400 and bad.json()["error"].startswith("since:")


@pytest.mark.parametrize("path", [
    "/run/..", "/run/%2e%2e", "/run/..%2f..%2fetc%2fpasswd", "/run/%2Fetc%2Fpasswd", "/run//etc/passwd",
    "/api/runs/../trials", "/api/runs/%2e%2e/trials", "/api/runs/..%2F..%2Fetc/trials", "/api/runs/%2Ftmp/trials",
    "/api/runs/.hidden/trials", "/api/runs/sweep/..%2F..%2Fjob", "/static/..%2Fapp.py", "/static/%2Fetc%2Fpasswd",
    "/api/runs/outside/trials", "/run/outside", "/api/runs/nothing-here", "/compare?run=sweep&run=..",
])
def test_paths_that_would_leave_the_results_folder_are_404(server, runs, tmp_path_factory, path):
    if not (runs / "outside").exists():   # a run folder that is a link to a run elsewhere
        elsewhere = make_sweep(tmp_path_factory.mktemp("elsewhere"), "secret")
        (runs / "outside").symlink_to(elsewhere)
        (runs / ".hidden").mkdir()
    assert raw_status(server, path) == 404


def test_another_host_name_is_refused_on_loopback(server):
    assert raw_status(server, "/api/runs", {"Host": "attacker.example:80"}) == 403
    assert raw_status(server, "/api/runs", {"Host": f"localhost:{server.port}"}) == 200


def test_the_token_opens_actions_and_a_wrong_one_is_refused(server):
    assert get(server, "/?token=wrong").status_code == 403
    opened = get(server, f"/?token={server.token}", follow_redirects=False)
    assert opened.status_code == 303 and opened.headers["location"] == "/"
    assert f"caviar-token-{server.port}={server.token}" in opened.headers["set-cookie"]
    assert "httponly" in opened.headers["set-cookie"].lower()
    body = {"set": {"learning_rate": "1e-3"}}
    refused = httpx.post(f"{server.url}/api/runs/panda/nudge", json=body, timeout=30)
    assert refused.status_code == 403 and refused.json()["error"].startswith("token:")
    # With the token, the run is checked as `caviar nudge` checks it: this one is not running.
    answer = httpx.post(f"{server.url}/api/runs/panda/nudge", json=body, headers={"X-Caviar-Token": server.token},
                        timeout=30)
    assert answer.status_code == 400 and "not being babysat" in answer.json()["error"]
    form = httpx.post(f"{server.url}/api/runs/panda/nudge", data={"set": "x"},
                      headers={"X-Caviar-Token": server.token}, timeout=30)
    assert form.status_code == 403 and form.json()["error"].startswith("content-type:")


def test_values_from_the_folder_travel_as_json_text_never_as_markup(server, runs):
    hostile = make_sweep(runs, "hostile", n_trials=8)
    frame = pd.read_parquet(hostile / "trials.parquet")
    frame["error"] = "<img src=x onerror=alert(1)>"
    for part in (hostile / "trials.parquet").iterdir():
        part.unlink()
    frame.to_parquet(hostile / "trials.parquet" / "part-000000.parquet", index=False)
    answer = get(server, "/api/runs/hostile/trials?columns=error")
    assert answer.headers["content-type"] == "application/json" and answer.headers["x-content-type-options"] == "nosniff"
    assert json.loads(answer.text)["data"]["error"][0] == "<img src=x onerror=alert(1)>"
