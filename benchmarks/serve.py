"""`caviar serve` on a big run: time to the run page's data, the cost of an incremental poll while a
sweep writes, and the server's memory while it is polled.

    python benchmarks/serve.py                    # 10,000 trials x 20 epochs = 200,000 epoch rows
    python benchmarks/serve.py --trials 2000      # smaller
    python benchmarks/serve.py --seconds 60       # poll longer

1. First data: a fresh `python -m caviar serve` is asked what the run page asks first (the run's
   summary, its trials, its epochs' trial_id/epoch/metric columns, the importance ranking), timed at
   the client twice, each on a fresh server: cold (its very first request, as a bookmarked run page
   is: the server's lazy imports and first listing count) and after one runs list (the page a user
   comes from); the baseline is `caviar.load` reading the same run into pandas, its second call in a
   fresh process (the first one's time, with the imports, is printed too).
2. Incremental poll: a writer in this process appends to a live copy of the run through the store's
   own `TableWriter` (5 trials and their 100 epoch rows every 0.25 s, holding the run's lock as a
   driver does) while a client polls as the page does (summary, trials and epochs after its cursors)
   every 0.25 s. Server time is each answer's `Server-Timing`; the baseline is what a server that
   rereads the tables on every poll would spend (`caviar.store.reader.read_table` of both tables,
   timed here, interleaved with the polls). Polls are told as median and p95 (interpolated between
   samples, never above the largest).
3. Memory: the server's RSS (psutil) over the polls of a finished run (nothing new: should be flat)
   and of the live one (grows with the rows written, nothing more).

Targets: first data under 1 s, an incremental poll under 50 ms of server time, memory flat.
"""

from __future__ import annotations

import argparse
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.load import sweep_rows  # noqa: E402

PAGE_QUERIES = ("/api/runs/{n}", "/api/runs/{n}/trials?since=", "/api/runs/{n}/epochs?since=&columns=trial_id,epoch,val_accuracy",
                "/api/runs/{n}/importance")


def write_sweep(out: Path, name: str, n_trials: int, n_epochs: int, *, flush_every: int, compact: bool) -> None:
    """A sweep run folder written through the store's writer, as the parallel driver writes it."""
    from caviar.store.folder import open_run

    job = (f'name = "{name}"\n[model]\nepochs = {n_epochs}\n[space]\nlearning_rate = {{ log_uniform = [1e-4, 1e-1] }}\n'
           f'beta1 = {{ one_minus_log_uniform = [0.9, 0.999] }}\nbatch_size = {{ choice = [32, 64, 128, 256] }}\n'
           f'optimizer = {{ choice = ["adam", "momentum", "rmsprop"] }}\n'
           f'[search]\ntrials = {n_trials * 2}\nmetric = "val_accuracy"\nmode = "max"\n')
    run = open_run(out, name, job, fsync=False)
    trials, epochs = run.table("trials"), run.table("epochs")
    for k, (trial, rows) in enumerate(sweep_rows(n_trials, n_epochs)):
        epochs.append(rows)
        trials.append([trial])
        if (k + 1) % flush_every == 0:
            epochs.flush()
            trials.flush()
    if compact:
        run.compact()
    else:
        run.flush()


def start_server(out: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen([sys.executable, "-m", "caviar", "serve", "--out", str(out), "--port", "0"], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = re.search(r"(http://127\.0\.0\.1:\d+)/", proc.stdout.readline())[1]
    proc.stdout.readline()
    return proc, url


def stop(proc: subprocess.Popen) -> None:
    proc.send_signal(2)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def server_ms(answer) -> float:
    return float(answer.headers["server-timing"].split("dur=")[1])


def page_data(client, url: str, name: str) -> tuple[float, float, dict[str, float]]:
    """What the run page asks first, asked now: (seconds at the client, MB of JSON, server ms by part)."""
    start = time.perf_counter()
    answers = [client.get(url + q.format(n=name)) for q in PAGE_QUERIES]
    took = time.perf_counter() - start
    parts = {what: server_ms(a) for what, a in zip(("summary", "trials", "epochs", "importance"), answers)}
    return took, sum(len(a.content) for a in answers) / 1e6, parts


def first_data(out: Path, name: str) -> dict:
    """Seconds to the run page's data from a fresh server: cold (its first request, as a bookmarked
    run page is; the server's lazy imports and first listing included) and after one runs list
    (the page a user comes from); and caviar.load's, the baseline."""
    import httpx

    got: dict = {}
    for when in ("cold", "after_list"):
        proc, url = start_server(out)
        try:
            with httpx.Client(timeout=120) as client:
                if when == "after_list":
                    client.get(url + "/api/runs")
                got[when], got["mb"], got[f"parts_{when}"] = page_data(client, url, name)
        finally:
            stop(proc)
    # caviar.load twice in a fresh process: the first call pays pandas' and pyarrow's imports (as
    # the cold server's first request did), the second is the reading alone.
    code = (f"import time, caviar\nfor _ in range(2):\n    t = time.perf_counter(); caviar.load({str(out / name)!r}); "
            f"print(time.perf_counter() - t)")
    got["load_cold"], got["load"] = map(float, subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                                                              text=True, check=True).stdout.split())
    return got


def poll_while(url: str, name: str, seconds: float, pid: int, reread: Path | None) -> dict[str, list[float]]:
    """Poll as the page does for `seconds`; server ms per poll, RSS samples (MB) and, with `reread`
    (the run folder), the time of a full reread of its tables, interleaved."""
    import httpx
    import psutil

    from caviar.store.reader import read_table

    server = psutil.Process(pid)
    got: dict[str, list[float]] = {"poll": [], "rss": [], "reread": [], "rows": [], "resets": []}
    cursors = {"trials": "", "epochs": ""}
    with httpx.Client(timeout=60) as client:
        for table in cursors:   # the page's first load
            cursors[table] = client.get(f"{url}/api/runs/{name}/{table}?columns=trial_id").json()["cursor"]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ms = server_ms(client.get(f"{url}/api/runs/{name}"))
            rows = 0
            for table, columns in (("trials", ""), ("epochs", "&columns=trial_id,epoch,val_accuracy")):
                answer = client.get(f"{url}/api/runs/{name}/{table}?since={cursors[table]}{columns}")
                ms += server_ms(answer)
                body = answer.json()
                cursors[table], rows = body["cursor"], rows + body["rows"]
                if body["reset"]:
                    got["resets"].append(f"{table} {body['cursor']}")
            got["poll"].append(ms)
            got["rows"].append(rows)
            got["rss"].append(server.memory_info().rss / 2**20)
            if reread is not None:
                t = time.perf_counter()
                read_table(reread / "trials.parquet"), read_table(reread / "epochs.parquet")
                got["reread"].append((time.perf_counter() - t) * 1000)
            time.sleep(0.25)
    return got


def live_writer(out: Path, name: str, start_id: int, stop_flag: threading.Event, n_epochs: int) -> None:
    """Append 5 trials (and their epochs) every 0.25 s to the run, holding its lock as a driver does."""
    from caviar.store import lock
    from caviar.store.folder import RunFolder

    run = RunFolder(out / name, fsync=False)
    with lock.held(out / name, "sweep"):
        rows = sweep_rows(start_id + 100_000, n_epochs)
        for _ in range(start_id):
            next(rows)
        while not stop_flag.is_set():
            for _ in range(5):
                trial, epochs = next(rows)
                run.table("epochs").append(epochs)
                run.table("trials").append([trial])
            run.flush()
            time.sleep(0.25)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (1 <= q <= 99) of `values`, interpolated between samples, never outside them:
    the default ("exclusive") method extrapolates beyond the largest sample when there are few."""
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1] if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--trials", type=int, default=10_000, help="trials of the run (default: 10000)")
    parser.add_argument("--epochs", type=int, default=20, help="epochs of each trial (default: 20)")
    parser.add_argument("--seconds", type=float, default=30.0, help="seconds of polling in each phase (default: 30)")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="caviar-serve-bench-"))
    try:
        t = time.perf_counter()
        write_sweep(out, "big", args.trials, args.epochs, flush_every=100, compact=True)
        write_sweep(out, "live", args.trials, args.epochs, flush_every=100, compact=False)
        print(f"{args.trials} trials x {args.epochs} epochs = {args.trials * args.epochs} epoch rows, written twice "
              f"in {time.perf_counter() - t:.1f} s ('big' compacted, 'live' in {args.trials // 100} parts per table)")
        for name in ("big", "live"):
            got = first_data(out, name)
            print(f"first data, {name} ({got['mb']:.1f} MB of JSON): cold server {got['cold']:.3f} s (server ms: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in got["parts_cold"].items())
                  + f"), after the runs list {got['after_list']:.3f} s (server ms: "
                  + ", ".join(f"{k} {v:.0f}" for k, v in got["parts_after_list"].items())
                  + f"); caviar.load of the same run into pandas {got['load']:.3f} s ({got['load_cold']:.3f} s "
                  f"with its imports)")
        proc, url = start_server(out)
        try:
            idle = poll_while(url, "big", args.seconds, proc.pid, None)
            print(f"finished run polled {len(idle['poll'])} times: server ms per poll median {statistics.median(idle['poll']):.2f},"
                  f" p95 {percentile(idle['poll'], 95):.2f}; RSS {idle['rss'][0]:.0f} -> {idle['rss'][-1]:.0f} MB "
                  f"(max {max(idle['rss']):.0f})")
            flag = threading.Event()
            writer = threading.Thread(target=live_writer, args=(out, "live", args.trials, flag, args.epochs), daemon=True)
            writer.start()
            time.sleep(0.5)
            busy = poll_while(url, "live", args.seconds, proc.pid, out / "live")
            flag.set()
            writer.join()
        finally:
            stop(proc)
        added = sum(busy["rows"])
        print(f"live run polled {len(busy['poll'])} times while {added} rows were written: server ms per poll median "
              f"{statistics.median(busy['poll']):.2f}, p95 {percentile(busy['poll'], 95):.2f}, max {max(busy['poll']):.2f}; "
              f"a full reread of both tables median {statistics.median(busy['reread']):.1f} ms "
              f"(poll / reread {statistics.median(busy['poll']) / statistics.median(busy['reread']):.3f}); "
              f"cursors reset: {len(busy['resets'])} {busy['resets'][:3]}")
        print(f"live run RSS {busy['rss'][0]:.0f} -> {busy['rss'][-1]:.0f} MB (max {max(busy['rss']):.0f}) "
              f"for {added} new rows")
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
