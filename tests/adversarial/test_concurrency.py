"""Two commands on one run never mix: two drivers started together on the same name (the second while
the first still starts), with --overwrite, end with every row exactly once — one of them refused, or
the two one after the other. Real processes, started a fraction of a second apart."""

from __future__ import annotations

import time

import caviar
from tests.support import DIGITS, TOY_SWEEP, caviar_run, caviar_start, write_job


def _pair(argv: list, delays: tuple[float, ...]) -> list[tuple[int, str]]:
    """Start `caviar ARGV` once per delay (seconds after the first), wait for all: (status, stderr)."""
    procs, started = [], time.monotonic()
    for delay in delays:
        time.sleep(max(0.0, started + delay - time.monotonic()))
        procs.append(caviar_start(*argv))
    return [(p.wait(timeout=300), p.communicate()[1]) for p in procs]


def _outcome(results: list[tuple[int, str]]) -> None:
    """Each driver either ran (0) or was refused as the run was being run by the other (2, one line)."""
    for status, err in results:
        assert status in (0, 2), err
        if status == 2:
            assert err.count("\n") == 1 and "is being run by" in err, err
    assert any(status == 0 for status, _ in results)


def test_two_overwriting_sweeps_started_together_leave_each_trial_once(tmp_path, ray_address):
    job = write_job(tmp_path, "twice", TOY_SWEEP, search={"trials": 40}, model={"sleep": 0.02})
    out = tmp_path / "out"
    assert caviar_run("parallel", job, "--out", out, "--address", ray_address, "--quiet", timeout=300).returncode == 0
    for delays in ((0.0, 0.0), (0.0, 0.5), (0.0, 1.5)):
        argv = ["parallel", job, "--out", out, "--address", ray_address, "--quiet", "--overwrite"]
        _outcome(_pair(argv, delays))
        trials = caviar.load(out / "twice").trials
        assert sorted(trials["trial_id"]) == list(range(40)), delays
        epochs = caviar.load(out / "twice").epochs
        assert not epochs.duplicated(["trial_id", "epoch"]).any() and len(epochs) == 40 * 3


def test_two_overwriting_babysits_started_together_leave_each_epoch_once(tmp_path):
    job = write_job(tmp_path, "twice", DIGITS, model={"learning_rate": 0.01}, babysit={"epochs": 12})
    out = tmp_path / "out"
    assert caviar_run("babysit", job, "--out", out, timeout=300).returncode == 0
    for delays in ((0.0, 0.0), (0.0, 0.5)):
        _outcome(_pair(["babysit", job, "--out", out, "--overwrite"], delays))
        run = caviar.load(out / "twice")
        assert run.epochs["epoch"].tolist() == list(range(1, 13)), delays
        assert run.events["event"].tolist().count("final") == 1

