"""`caviar parallel` of a pbt job end to end: real Ray, real Parquet, real processes to kill."""

from __future__ import annotations

import math
import signal
import time

import pandas as pd
import pytest

import caviar
from caviar.config.job import BabysitSpec
from caviar.population.state import load_commit
from tests.support import (ROOT, caviar_main, caviar_output, caviar_run, caviar_start, run_command, run_sweep, snapshot,
                           write_job)

QUADRATIC = {
    "data": {"source": "blobs"},
    "model": {"trainer": "tests.toys:NoisyQuadraticTrainer", "epochs": 20},
    "space": {"learning_rate": {"log_uniform": [1e-3, 0.3]}},
    "search": {"sampler": "random", "trials": 8, "scheduler": "pbt", "metric": "val_loss", "mode": "min", "seed": 4},
    "pbt": {"interval": 2},
}
DIGITS_PBT = {
    "data": {"source": "digits"},
    "model": {"trainer": "tests.toys:SlowMLPTrainer", "hidden_layers": [16], "optimizer": "adam", "epochs": 6},
    "space": {"learning_rate": {"log_uniform": [1e-4, 1.0]}},
    "search": {"sampler": "random", "trials": 4, "scheduler": "pbt", "seed": 1},
    "pbt": {"interval": 2},
}
TIMING = ["seconds", "node"]   # what may differ between two equal runs


def frames(run_path):
    run = caviar.load(run_path)
    trials = run.trials.drop(columns=TIMING).sort_values("trial_id").reset_index(drop=True)
    epochs = run.epochs.drop(columns=["seconds"]).sort_values(["trial_id", "epoch"]).reset_index(drop=True)
    events = run.events.sort_values(["epoch", "event", "member"]).reset_index(drop=True)
    return trials, epochs, events


def assert_same_run(a, b):
    for one, two in zip(frames(a), frames(b)):
        pd.testing.assert_frame_equal(one, two)


def test_the_same_job_and_seed_give_identical_events_and_scores_on_two_workers_or_one(tmp_path, ray_address):
    job = write_job(tmp_path, "pop", QUADRATIC, model={"epochs": 8})
    assert run_sweep(job, tmp_path / "out", ray_address, "--name", "a") == 0
    assert run_sweep(job, tmp_path / "out", ray_address, "--name", "b", "--concurrency", "1") == 0   # one worker
    assert_same_run(tmp_path / "out" / "a", tmp_path / "out" / "b")
    trials, epochs, events = frames(tmp_path / "out" / "a")
    assert len(trials) == 8 and len(epochs) == 8 * 8 and (events["event"] == "exploit").sum() == 2 * 3
    assert {"member", "source", "old_learning_rate", "new_learning_rate"} <= set(events.columns)
    assert "copied_from" in trials and "params_learning_rate" in epochs
    # The job's fixed values, as a sweep records them (load_all compares runs by them); searched: none.
    assert set(trials["model_trainer"]) == {"tests.toys:NoisyQuadraticTrainer"} and set(trials["model_epochs"]) == {8}
    assert "model_learning_rate" not in trials


def test_on_the_driver_or_on_ray_or_moving_between_them_the_run_is_the_same(tmp_path, ray_session, monkeypatch):
    """Without --address a population starts on the driver (no Ray); with Ray free to start
    (RAY_START_SECONDS 0) it moves there after its first generation; with --address it trains on Ray."""
    import caviar.population.pools as pools

    job = write_job(tmp_path, "pop", DIGITS_PBT, model={"sleep": 0.0})
    assert run_sweep(job, tmp_path / "out", ray_session, "--name", "ray") == 0
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--name", "driver", "--concurrency", "1",
                       "--quiet") == 0   # one worker: never worth starting Ray
    monkeypatch.setattr(pools, "RAY_START_SECONDS", 0.0)
    moved = []
    monkeypatch.setattr(pools.RayPool, "close", lambda self: moved.append(self) or self._stop(self.actors))
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--name", "moved", "--quiet") == 0
    assert len(moved) == 1   # it did move to Ray (the session's, which it joined and left running)
    assert_same_run(tmp_path / "out" / "ray", tmp_path / "out" / "driver")
    assert_same_run(tmp_path / "out" / "ray", tmp_path / "out" / "moved")
    import ray

    assert ray.is_initialized()


def test_ray_is_worth_starting_only_when_the_rest_would_end_sooner_there():
    from caviar.population.pools import worth_ray

    assert worth_ray(2.0, 10, 2, ray_start_seconds=5.0)          # 20 s of training here, 5 + 10 s there
    assert not worth_ray(0.5, 10, 2, ray_start_seconds=5.0)      # 5 s here, 5 + 2.5 s there
    assert worth_ray(0.5, 10, 8, ray_start_seconds=4.0)          # 5 s here, 4 + 0.6 s there
    assert not worth_ray(60.0, 10, 1, ray_start_seconds=0.0)     # one worker: nothing to gain
    assert not worth_ray(60.0, 0, 8, ray_start_seconds=0.0)      # nothing left


def test_pbt_beats_every_member_of_the_same_population_kept_fixed(tmp_path, ray_address):
    """The good rate starts high and must decay: the population discovers it, no fixed rate can."""
    job = write_job(tmp_path, "pop", QUADRATIC)
    assert run_sweep(job, tmp_path / "out", ray_address, "--name", "pbt") == 0
    assert run_sweep(job, tmp_path / "out", ray_address, "--name", "fixed", "--set", "search.scheduler=fifo") == 0
    pbt, fixed = caviar.load(tmp_path / "out" / "pbt").trials, caviar.load(tmp_path / "out" / "fixed").trials
    start = caviar.load(tmp_path / "out" / "pbt").epochs.query("epoch == 1")
    assert sorted(start["params_learning_rate"]) == sorted(fixed["params_learning_rate"])   # the same population
    assert pbt["score"].min() < fixed["score"].min()   # a fixed trial's score is even its best epoch's
    schedule = caviar.load(tmp_path / "out" / "pbt")
    from caviar.views.population import schedule as lineage_schedule

    rates = lineage_schedule(schedule)["learning_rate"].to_numpy()
    assert rates[-1] < rates[0]   # the discovered schedule decays


def test_a_diverged_member_is_replaced_from_the_best_and_the_run_goes_on(tmp_path, ray_address, capsys):
    job = write_job(tmp_path, "pop", DIGITS_PBT, model={"optimizer": "sgd", "batch_norm": False},
                    space={"learning_rate": {"choice": [0.05, 0.1, 5000.0]}}, search={"trials": 3, "seed": 0},
                    pbt={"factors": [1.0], "resample_probability": 0.0})
    status, out, _ = caviar_output(capsys, "parallel", job, "--out", tmp_path / "out", "--address", ray_address,
                                   "--quiet")
    assert status == 0, out
    run = caviar.load(tmp_path / "out" / "pop")
    first = run.epochs.query("epoch == 1").set_index("trial_id")["params_learning_rate"]
    wild = int(first[first == 5000.0].index[0])
    replaced = run.events.query("event == 'diverged'")
    # at once, the epoch it diverged (not at the generation's end, epoch 2), and before any member has a
    # score, from its own initial state with the babysitter's cut (x 0.1: one step down the choice)
    assert list(replaced["member"]) == [wild] and list(replaced["epoch"]) == [1] and list(replaced["source"]) == [wild]
    assert list(replaced["old_learning_rate"]) == [5000.0] and list(replaced["new_learning_rate"]) == [0.1]
    rates = run.epochs[run.epochs["trial_id"] == wild].set_index("epoch")["params_learning_rate"]
    assert rates[1] == 5000.0 and rates[2] == 0.1   # the diverged epoch keeps its row
    row = run.trials.set_index("trial_id").loc[wild]
    assert row["status"] == "completed" and math.isfinite(row["score"]) and row["params_learning_rate"] != 5000.0
    assert "schedule of the best member" in out


# A member (the one at learning rate 0.05) whose model blows up at its `blow_up_at`-th epoch of training.
FRAGILE = {
    "data": {"source": "blobs"},
    "model": {"trainer": "tests.toys:FragileQuadraticTrainer", "epochs": 6, "blow_up_at": 5, "blow_up_rate": 0.05},
    "space": {"learning_rate": {"choice": [0.01, 0.05, 0.1, 0.2]}},
    "search": {"sampler": "grid", "trials": 4, "scheduler": "pbt", "metric": "val_loss", "mode": "min", "seed": 4},
    "pbt": {"interval": 3, "factors": [1.2], "resample_probability": 0.0},
}


def run_on_the_driver(job, out, *extra):
    return caviar_main("parallel", job, "--out", out, "--concurrency", "1", "--quiet", *extra)


def fragile_member(run) -> int:
    first = run.epochs[run.epochs["epoch"] == 1].set_index("trial_id")["params_learning_rate"]
    return int(first[first == 0.05].index[0])


def test_a_member_diverging_mid_generation_goes_on_at_once_from_the_best_members_state(tmp_path):
    """Epoch 5, in generation 1 (epochs 4-6): the member goes on at epoch 6 from the state generation 1
    began with of the best member then (its epoch 3), with values explored from that member's."""
    assert run_on_the_driver(write_job(tmp_path, "pop", FRAGILE), tmp_path / "out") == 0
    run = caviar.load(tmp_path / "out" / "pop")
    member, epochs = fragile_member(run), run.epochs.set_index(["trial_id", "epoch"])
    best = int(run.epochs[run.epochs["epoch"] == 3].set_index("trial_id")["val_loss"].idxmin())
    (event,) = run.events[run.events["event"] == "diverged"].itertuples()
    assert (event.epoch, event.member, event.source, event.generation) == (5, member, best, 1)
    assert (event.old_learning_rate, event.new_learning_rate) == (0.05, 0.2)   # best's 0.1 x 1.2: a step up
    assert "non-finite train_loss inf at epoch 5" in event.detail and f"member {best}'s state at epoch 3" in event.detail
    assert epochs.loc[(member, 5), "params_learning_rate"] == 0.05 and math.isinf(epochs.loc[(member, 5), "train_loss"])
    assert list(epochs.loc[(member, 6), ["params_learning_rate", "learning_rate"]]) == [0.2, 0.2]
    assert epochs.loc[(member, 6), "state_before"] == epochs.loc[(best, 3), "state_after"]
    trial = run.trials.set_index("trial_id").loc[member]
    assert (trial["status"], trial["copied_from"], trial["params_learning_rate"], trial["epochs"]) == (
        "completed", best, 0.2, 6)


def test_a_run_replacing_a_divergence_is_the_same_on_ray_and_when_resumed(tmp_path, ray_address, monkeypatch):
    import caviar.population.loop as loop

    job, out = write_job(tmp_path, "pop", FRAGILE), tmp_path / "out"
    assert run_on_the_driver(job, out, "--name", "driver") == 0
    assert run_sweep(job, out, ray_address, "--name", "ray") == 0
    assert_same_run(out / "driver", out / "ray")
    whole = loop.run_generation

    def interrupted_after_generation_0(ctx, pop, refs, best_ref):
        if pop.generation == 1:
            raise KeyboardInterrupt
        return whole(ctx, pop, refs, best_ref)

    monkeypatch.setattr(loop, "run_generation", interrupted_after_generation_0)
    assert run_on_the_driver(job, out, "--name", "cut") == 130
    monkeypatch.setattr(loop, "run_generation", whole)
    assert caviar_main("parallel", "--out", out, "--name", "cut", "--resume", "--concurrency", "1", "--quiet") == 0
    assert_same_run(out / "driver", out / "cut")   # generation 1, with its replacement, replayed alike


def test_a_member_diverging_at_the_very_last_epoch_keeps_its_best_earlier_epoch(tmp_path):
    assert run_on_the_driver(write_job(tmp_path, "pop", FRAGILE, model={"blow_up_at": 6}), tmp_path / "out") == 0
    run = caviar.load(tmp_path / "out" / "pop")
    member = fragile_member(run)
    own = run.epochs[run.epochs["trial_id"] == member]
    trial = run.trials.set_index("trial_id").loc[member]
    assert trial["status"] == "diverged" and trial["epochs"] == len(own) == 6   # as a sweep's trial
    assert trial["score"] == own[own["epoch"] < 6]["val_loss"].min()   # as a sweep's diverged trial
    assert trial["error"].startswith("diverged at the end: ") and trial["error"].endswith("at epoch 6")
    assert "diverged" not in set(run.events["event"])   # nothing after it to replace it for


def test_sigkill_then_resume_ends_equal_to_the_uninterrupted_run(tmp_path, ray_address):
    job = write_job(tmp_path, "pop", DIGITS_PBT, model={"sleep": 0.15})
    out = tmp_path / "out"
    assert run_sweep(job, out, ray_address, "--name", "whole") == 0
    driver = caviar_start("parallel", job, "--out", out, "--name", "cut", "--address", ray_address, "--quiet",
                          cwd=ROOT)
    checkpoints = out / "cut" / "checkpoints"
    deadline = time.monotonic() + 120
    # two generations committed: the second's rows may still wait in the commit for their table write
    while (commit := load_commit(checkpoints) if (checkpoints / "population.npz").exists() else None) is None \
            or commit[0].generation < 2:
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait(timeout=30)
    assert not (out / "cut" / "trials.parquet").exists()   # killed mid-run
    done = run_command(["python", "-m", "caviar", "parallel", "--out", str(out), "--name", "cut", "--resume",
                        "--address", ray_address, "--quiet"], timeout=300, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    assert_same_run(out / "whole", out / "cut")


def test_ctrl_c_keeps_the_finished_generations_and_says_how_to_resume(tmp_path, ray_address):
    job = write_job(tmp_path, "pop", DIGITS_PBT, model={"sleep": 0.15})
    driver = caviar_start("parallel", job, "--out", tmp_path / "out", "--address", ray_address, "--quiet", cwd=ROOT)
    commit = tmp_path / "out" / "pop" / "checkpoints" / "population.npz"
    deadline = time.monotonic() + 120
    while not commit.exists():
        assert driver.poll() is None and time.monotonic() < deadline, driver.stderr.read()
        time.sleep(0.02)
    driver.send_signal(signal.SIGINT)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 130, err
    assert "--resume" in err and "generations are saved" in err
    assert caviar.load(tmp_path / "out" / "pop").epochs["epoch"].max() >= 2


@pytest.mark.parametrize("section, values, field", [
    ("pbt", {"interval": 0}, "pbt.interval"),
    ("pbt", {"quantile": 0.75}, "pbt.quantile"),
    ("pbt", {"factors": [0.8, 0.0]}, "pbt.factors"),
    ("pbt", {"mutable": ["hidden_layers"]}, "pbt.mutable"),
    ("pbt", {"intervall": 3}, "pbt.intervall"),
    ("search", {"sampler": "coarse_to_fine"}, "search.sampler"),
])
def test_bad_pbt_input_exits_2_with_one_line_naming_the_field_and_writes_nothing(tmp_path, capsys, section, values,
                                                                                 field):
    space = {"learning_rate": {"log_uniform": [1e-4, 1.0]}, "hidden_layers": {"choice": [[16], [32]]}}
    job = write_job(tmp_path, "pop", DIGITS_PBT, space=space, **{section: values})
    before = snapshot(tmp_path)
    status, out, err = caviar_output(capsys, "parallel", job, "--out", tmp_path / "out")
    assert status == 2 and out == ""
    assert err.startswith(f"caviar parallel: error: {field}: ") and err.count("\n") == 1, err
    assert snapshot(tmp_path) == before


def test_a_population_fallen_behind_its_best_ever_epoch_rolls_back_to_that_state(tmp_path, ray_address):
    """Every member peaks at epoch 3, mid-generation, then over-trains: the best ever is that epoch's
    state (kept by its worker), and the worst member, once the best now is 0.05 below it, copies it."""
    job = write_job(tmp_path, "pop", QUADRATIC, model={"trainer": "tests.toys:PeakingTrainer", "epochs": 6},
                    space={"learning_rate": {"choice": [0.01, 0.003, 0.03, 0.1]}},
                    search={"trials": 4, "metric": "val_accuracy", "mode": "max", "sampler": "grid"},
                    pbt={"interval": 2, "factors": [1.0], "resample_probability": 0.0})
    assert run_sweep(job, tmp_path / "out", ray_address) == 0
    run = caviar.load(tmp_path / "out" / "pop")
    improved = run.events.query("event == 'improved'")
    assert improved["epoch"].iloc[-1] == 3 and improved["score"].iloc[-1] == pytest.approx(0.9)   # mid-generation
    best = int(improved["member"].iloc[-1])
    rollback = run.events.query("event == 'rollback'")
    assert len(rollback) and set(rollback["source"]) == {best} and rollback["epoch"].iloc[0] == 4
    member = int(rollback["member"].iloc[0])
    after = run.epochs[(run.epochs["trial_id"] == member) & (run.epochs["epoch"] == 5)]["val_accuracy"].iloc[0]
    assert after == pytest.approx(0.85)   # trains on from epoch 3's state (0.9 - 0.05), not from its own epoch 4
    assert run.trials["score"].max() == pytest.approx(0.9)   # a member's score is its best epoch's
    assert "rollback 1 of at most 10" in rollback["detail"].iloc[0]
    # [babysit] max_rollbacks spent (none allowed): the worst exploit today's best instead
    assert run_sweep(job, tmp_path / "out", ray_address, "--name", "spent", "--set", "babysit.max_rollbacks=0") == 0
    spent = caviar.load(tmp_path / "out" / "spent").events
    assert "rollback" not in set(spent["event"]) and set(spent.query("epoch == 4")["event"]) == {"exploit"}


def test_the_leaderboard_and_the_results_line_print_once(tmp_path):
    """The real command line, on the driver (one worker: no Ray): one leaderboard, one schedule, one
    results line, whoever prints the end of a pbt run."""
    job = write_job(tmp_path, "pop", QUADRATIC, model={"epochs": 4}, search={"trials": 4})
    done = caviar_run("parallel", job, "--out", tmp_path / "out", "--concurrency", "1", "--quiet", cwd=ROOT,
                      timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert sum(line.split()[:2] == ["trial_id", "status"] for line in lines) == 1, done.stdout
    assert sum(line.startswith("results: ") for line in lines) == 1, done.stdout
    assert sum(line.startswith("schedule of the best member") for line in lines) == 1, done.stdout


@pytest.mark.parametrize("space, pbt", [
    ({"learning_rate": {"log_uniform": [1e-4, 1.0]}, "hidden_layers": {"choice": [[16], [32]]}},
     {"mutable": ["hidden_layers"]}),                                   # a name the trainer cannot change
    ({"hidden_layers": {"choice": [[16], [32]]}}, {}),                  # nothing to explore
])
def test_a_dry_run_refuses_a_plan_the_run_refuses_with_the_same_line(tmp_path, capsys, space, pbt):
    job = write_job(tmp_path, "pop", {**DIGITS_PBT, "space": space}, pbt=pbt)
    before = snapshot(tmp_path)
    status, out, err = caviar_output(capsys, "parallel", job, "--out", tmp_path / "out", "--dry-run")
    assert status == 2 and out == "" and err.startswith("caviar parallel: error: pbt.mutable: ")
    assert snapshot(tmp_path) == before
    assert caviar_output(capsys, "parallel", job, "--out", tmp_path / "out") == (2, "", err)
    assert snapshot(tmp_path) == before


def test_a_copy_starts_its_next_epoch_from_the_state_its_source_ended_with(tmp_path):
    """On the driver (one worker): after each exploit at epoch e, the member's state as epoch e + 1
    begins is its source's at the end of epoch e (checksums the trainer reports), not its own."""
    job = write_job(tmp_path, "pop", QUADRATIC, model={"trainer": "tests.toys:ChecksumQuadraticTrainer", "epochs": 8},
                    babysit={"tolerance": 1e9})   # no rollback: every copy is an exploit of a source's end state
    assert caviar_main("parallel", job, "--out", tmp_path / "out", "--concurrency", "1", "--quiet") == 0
    run = caviar.load(tmp_path / "out" / "pop")
    state = run.epochs.set_index(["trial_id", "epoch"])
    copies = run.events[run.events["event"].isin(["exploit", "diverged", "rollback"])]
    assert len(copies) == 6 and set(copies["event"]) == {"exploit"}
    for _, copy in copies.iterrows():
        member, source, epoch = int(copy["member"]), int(copy["source"]), int(copy["epoch"])
        assert state.loc[(member, epoch), "state_after"] != state.loc[(source, epoch), "state_after"]
        assert state.loc[(member, epoch + 1), "state_before"] == state.loc[(source, epoch), "state_after"], copy
    kept = run.epochs[~run.epochs.set_index(["trial_id", "epoch"]).index.isin(
        [(int(c["member"]), int(c["epoch"]) + 1) for _, c in copies.iterrows()])].set_index(["trial_id", "epoch"])
    for (member, epoch), row in kept.iterrows():   # and a member that did not copy goes on from its own state
        if epoch > 1:
            assert row["state_before"] == state.loc[(member, epoch - 1), "state_after"]


def test_the_best_ever_keeps_the_values_its_epoch_trained_with_when_a_divergence_changed_them_after(tmp_path):
    # Member 3 (rate 0.2) scores 0.99 at epoch 1, diverges at epoch 2 and is replaced (rate 0.1): the
    # best ever is its epoch 1, trained at 0.2, and a rollback to it cuts 0.2, not 0.1.
    job = write_job(tmp_path, "pop", {
        "data": {"source": "blobs"}, "model": {"trainer": "tests.toys:SpikeTrainer", "epochs": 6},
        "space": {"learning_rate": {"choice": [0.01, 0.05, 0.1, 0.2]}},
        "search": {"sampler": "grid", "trials": 4, "scheduler": "pbt", "seed": 4},
        "pbt": {"interval": 3, "factors": [1.2], "resample_probability": 0.0}})
    assert run_on_the_driver(job, tmp_path / "out") == 0
    events = caviar.load(tmp_path / "out" / "pop").events.set_index("event")
    assert events.loc["improved", "base_learning_rate"] == 0.2 and events.loc["improved", "epoch"] == 1
    assert events.loc["rollback", "new_learning_rate"] == pytest.approx(0.2 * BabysitSpec().rollback_factor)


def test_when_every_member_diverges_at_a_generations_end_each_starts_over_and_the_run_goes_on(tmp_path):
    # Interval 1: no epoch of the generation is left to replace a divergence in; both rates break the
    # model at its second epoch, and a broken state stays NaN for good unless it is replaced.
    job = write_job(tmp_path, "pop", {
        "data": {"source": "blobs"}, "model": {"trainer": "tests.toys:BreakingTrainer", "epochs": 4},
        "space": {"learning_rate": {"choice": [0.2, 0.3]}},
        "search": {"sampler": "grid", "trials": 2, "scheduler": "pbt", "metric": "val_loss", "mode": "min",
                   "seed": 4},
        "pbt": {"interval": 1, "factors": [1.2], "resample_probability": 0.0}})
    assert run_on_the_driver(job, tmp_path / "out") == 0
    run = caviar.load(tmp_path / "out" / "pop")
    restarts = run.events[run.events["detail"].str.contains("starts over from its initial state", regex=False)]
    assert sorted(restarts[restarts["epoch"] == 2]["member"]) == [0, 1]
    loss = run.epochs.pivot(index="epoch", columns="trial_id", values="val_loss")
    assert loss.loc[2].isna().all() and loss.loc[3].notna().all()   # a fresh state, not the broken one
    # Restarted at the bottom of its list (0.3 one step down: 0.2), each breaks again at the very end.
    assert set(run.trials["status"]) == {"diverged"} and run.trials["score"].notna().all()
