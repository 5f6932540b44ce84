"""The same job and seed give the same results across versions of caviar (DESIGN.md, "Reproducible").

`tests/golden/` holds two small jobs and the frames caviar wrote for them before the package was
reorganised into sub-packages (recorded with the flat layout of 0.1.0): a two-round coarse-to-fine
sweep with the `fifo` scheduler and a babysat run that improves, plateaus and rolls back, both on
the built-in trainer. Rerunning them through the real command line must give equal frames, except
wall-clock columns. A change that alters a score on purpose must say why in the README and record
the frames again.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import caviar
from tests.support import caviar_run

GOLDEN = Path(__file__).parent / "golden"
CLOCK = ["seconds", "node", "started_at", "finished_at", "time"]   # wall-clock and host columns: not part of
                                                                   # the contract
NAMES = {"learning_rate": "base_learning_rate"}   # events' base rate, renamed to say which rate it is


def _same(got: pd.DataFrame, want: pd.DataFrame) -> None:
    got = got.drop(columns=[c for c in CLOCK if c in got]).reset_index(drop=True)
    want = want.rename(columns={k: v for k, v in NAMES.items() if v in got and k not in got})
    pd.testing.assert_frame_equal(got[list(want.columns)], want, check_dtype=False, check_exact=False, rtol=1e-12)


def test_a_fifo_sweep_gives_the_recorded_trials_and_epochs(tmp_path, ray_address):
    done = caviar_run("parallel", GOLDEN / "sweep.toml", "--out", tmp_path, "--address", ray_address, "--quiet",
                      cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    run = caviar.load(tmp_path / "golden_sweep")
    _same(run.trials.sort_values("trial_id"), pd.read_parquet(GOLDEN / "sweep_trials.parquet"))
    _same(run.epochs.sort_values(["trial_id", "epoch"]), pd.read_parquet(GOLDEN / "sweep_epochs.parquet"))


def test_a_babysat_run_gives_the_recorded_epochs_and_events(tmp_path):
    done = caviar_run("babysit", GOLDEN / "babysit.toml", "--out", tmp_path, cwd=tmp_path, timeout=240)
    assert done.returncode == 0, done.stderr[-2000:]
    run = caviar.load(tmp_path / "golden_babysit")
    recorded = pd.read_parquet(GOLDEN / "babysit_events.parquet")
    assert run.events["event"].tolist() == recorded["event"].tolist()
    assert {"improved", "plateau", "rollback", "stop", "final"} <= set(recorded["event"])
    _same(run.epochs, pd.read_parquet(GOLDEN / "babysit_epochs.parquet"))
    _same(run.events, recorded)


@pytest.mark.parametrize("table", ["sweep_trials", "sweep_epochs", "babysit_epochs", "babysit_events"])
def test_the_recorded_frames_are_not_empty(table):
    assert len(pd.read_parquet(GOLDEN / f"{table}.parquet")) > 5
