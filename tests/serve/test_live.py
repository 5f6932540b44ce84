"""The server follows real running drivers: a sweep's rows appear to a polling client while it
runs, and a real babysit is nudged through the API — with the token applied and recorded, without
it (or from another origin) refused with nothing sent."""

from __future__ import annotations

import time

import httpx
import pandas as pd

from caviar.babysit import nudges
from tests.serve.conftest import serving
from tests.support import DIGITS, TOY_SWEEP, caviar_run, caviar_start, write_job


def poll(server, path: str) -> dict:
    answer = httpx.get(server.url + path, timeout=30)
    assert answer.status_code == 200, answer.text
    return answer.json()


def test_a_client_polling_a_running_sweep_sees_its_rows_appear(tmp_path, ray_address):
    out = tmp_path / "results"
    out.mkdir()
    job = write_job(tmp_path, "live", TOY_SWEEP, search={"trials": 8}, model={"sleep": 0.3})
    with serving(out) as server:
        driver = caviar_start("parallel", job, "--out", out, "--address", ray_address, "--quiet",
                              "--concurrency", "1")
        seen, cursor, statuses, grew = [], "", set(), 0
        deadline = time.monotonic() + 240
        try:
            while time.monotonic() < deadline:
                if (out / "live").is_dir():
                    statuses.add(poll(server, "/api/runs/live")["status"])
                    answer = poll(server, f"/api/runs/live/trials?since={cursor}&columns=trial_id,status")
                    assert not answer["reset"] or not seen     # rows stay put: never sent twice
                    seen += answer["data"].get("trial_id", [])
                    grew += answer["rows"] > 0 and driver.poll() is None
                    cursor = answer["cursor"]
                if driver.poll() is not None and len(seen) >= 8:
                    break
                time.sleep(0.2)
            assert driver.wait(timeout=60) == 0, driver.stderr.read()
        finally:
            if driver.poll() is None:
                driver.kill()
                driver.wait()
        final = poll(server, "/api/runs/live")
    assert sorted(seen) == sorted(pd.read_parquet(out / "live" / "trials.parquet")["trial_id"]) == list(range(8))
    assert grew >= 2   # rows arrived over several polls while the driver ran, not all at its end
    assert "running" in statuses and final["status"] == "finished" and final["done"] == 8


def nudge(server, body: dict, **headers) -> httpx.Response:
    return httpx.post(f"{server.url}/api/runs/live/nudge", json=body, headers=headers, timeout=30)


def wait_for_events(server, wanted: str, cursor: str = "") -> tuple[list[str], list[str]]:
    """Poll the run's events until one whose detail holds `wanted`: (events, details)."""
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        data = poll(server, f"/api/runs/live/events?since={cursor}")["data"]
        if any(wanted in (d or "") for d in data.get("detail", [])):
            return data["event"], data["detail"]
        time.sleep(0.2)
    raise AssertionError(f"no event with {wanted!r}")


def test_a_running_babysit_is_nudged_through_the_api_with_the_token_only(tmp_path):
    out = tmp_path / "results"
    # The built-in network (so a nudge's values are checked before it is sent), for as long as it
    # takes, never cutting its rate itself: only nudges change it.
    job = write_job(tmp_path, "live", DIGITS, model="learning_rate = 0.01",
                    babysit="epochs = 100000\npatience = 100000\ntolerance = 1.0\ndivergence_ratio = 1e6")
    proc = caviar_start("babysit", job, "--out", out)
    try:
        for line in proc.stdout:
            if line.startswith("epoch") and int(line.split()[1]) >= 2:
                break
        with serving(out) as server:
            assert poll(server, "/api/runs/live")["nudge"] is True
            lr = {"set": {"learning_rate": "0.0005"}}
            own = {"Origin": server.url}
            assert nudge(server, lr, **own).status_code == 403                        # no token
            assert nudge(server, lr, **{"X-Caviar-Token": "wrong"}).status_code == 403
            other = nudge(server, lr, **{"X-Caviar-Token": server.token, "Origin": "http://evil.example"})
            assert other.status_code == 403 and other.json()["error"].startswith("origin:")
            assert nudges.pending(out / "live") == [] and not (out / "live" / "nudges" / "applied").exists()

            bad = nudge(server, {"set": {"learning_rate": "-1"}}, **{"X-Caviar-Token": server.token})
            cli = caviar_run("nudge", "live", "learning_rate=-1", "--out", out, timeout=60)
            assert bad.status_code == 400 and cli.returncode == 2
            assert cli.stderr.strip() == f"caviar nudge: error: {bad.json()['error']}"   # the CLI's very words

            sent = nudge(server, lr, **{"X-Caviar-Token": server.token, **own})
            assert sent.status_code == 200 and sent.json()["nudge"] == "learning_rate=0.0005"
            events, details = wait_for_events(server, "learning_rate=0.0005")
            assert "nudge" in events
            stop = nudge(server, {"stop": True}, **{"X-Caviar-Token": server.token})
            assert stop.status_code == 200
            out_text, err = proc.communicate(timeout=120)
            assert proc.returncode == 0, err
            assert poll(server, "/api/runs/live")["status"] == "finished"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    recorded = pd.read_parquet(out / "live" / "events.parquet")
    assert list(recorded.loc[recorded["event"] == "nudge", "detail"]) == ["learning_rate=0.0005", "stop"]
    assert len(list((out / "live" / "nudges" / "applied").iterdir())) == 2
