"""Other programs read a sweep while it runs: pandas, Polars and DuckDB, each on its own.

The README promises that any reader that lists a table folder meets part files only, every row
once, at any moment of a run (parts are written beside the folder, then moved in). Here a real
sweep writes through the real command line while this process reads its trials and epochs folders
300 times with each library (in turn), as a notebook polling a running sweep would; no read may fail, see a
row twice or see fewer rows than the read before. The readers are the libraries' own entry points
for a folder of Parquet files, not caviar's.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Callable

import duckdb
import pandas as pd
import polars as pl

import caviar
from tests.support import TOY_SWEEP, caviar_run, driver_with_rows, write_job

READS = 300   # per library: the trials folder, then the epochs folder, in turn


def _pandas(folder: Path) -> list[tuple]:
    frame = pd.read_parquet(folder)
    return list(zip(*(frame[c] for c in _key(folder))))


def _polars(folder: Path) -> list[tuple]:
    frame = pl.read_parquet(folder)
    return list(zip(*(frame[c].to_list() for c in _key(folder))))


def _duckdb(folder: Path) -> list[tuple]:
    with duckdb.connect() as connection:
        return connection.execute(f"SELECT {', '.join(_key(folder))} FROM read_parquet(?)",
                                  [str(folder / "*.parquet")]).fetchall()


def _key(folder: Path) -> tuple[str, ...]:
    """What tells two rows of a table apart: a trial, or a trial's epoch."""
    return ("trial_id",) if folder.name == "trials.parquet" else ("trial_id", "epoch")


READERS: dict[str, Callable[[Path], list[tuple]]] = {"pandas": _pandas, "polars": _polars, "duckdb": _duckdb}


def test_pandas_polars_and_duckdb_read_a_running_sweep_without_an_error(tmp_path, ray_address):
    # Thousands of short trials: the sweep outlasts the reads, appending a part every half second.
    job = write_job(tmp_path, "live", TOY_SWEEP, search={"trials": 50000}, model={"sleep": 0.002})
    out = tmp_path / "out"
    folders = [out / "live" / "trials.parquet", out / "live" / "epochs.parquet"]
    driver = driver_with_rows(["parallel", job, "--out", out, "--address", ray_address, "--quiet",
                               "--concurrency", "1"], folders[0], 1)   # one worker: a core for the readers
    try:
        seen = {(name, folder.name): 0 for name in READERS for folder in folders}
        for i in range(READS):
            folder = folders[i % 2]              # each table half the time
            for name, read in READERS.items():   # interleaved: each library meets every stage of the run
                assert not [p.name for p in folder.iterdir() if not p.name.startswith("part-")]
                rows = read(folder)
                assert len(rows) == len(set(rows)), f"{name} read a row of {folder.name} twice"
                assert len(rows) >= seen[name, folder.name], f"{name} lost rows of {folder.name}"
                seen[name, folder.name] = len(rows)
        assert driver.poll() is None, "the sweep ended before the reads did: make it longer"
        assert all(rows > 1 for rows in seen.values()), seen
    finally:
        if driver.poll() is None:
            driver.send_signal(signal.SIGINT)   # a clean stop: what is finished is kept
        status = driver.wait(timeout=120)
    assert status == 130, driver.stderr.read()


def test_each_reader_reads_a_finished_sweep_as_caviar_does(tmp_path, ray_address):
    job = write_job(tmp_path, "done", TOY_SWEEP, search={"trials": 12})
    out = tmp_path / "out"
    assert caviar_run("parallel", job, "--out", out, "--address", ray_address, "--quiet", timeout=300).returncode == 0
    run = caviar.load(out / "done")
    for name, read in READERS.items():
        assert sorted(read(out / "done" / "trials.parquet")) == sorted((t,) for t in run.trials["trial_id"]), name
        assert len(read(out / "done" / "epochs.parquet")) == len(run.epochs) == 12 * 3, name
