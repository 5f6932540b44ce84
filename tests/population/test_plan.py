"""A population's plan (caviar/population/plan.py) and its commit file (state.py): no Ray."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar import MLPTrainer
from caviar.config.job import parse_job
from caviar.population.plan import make_plan, mutable_names
from caviar.population.policy import Best
from caviar.population.state import Member, Population, load_commit, save_commit
from caviar.sweep.plan import build_sampler
from tests.toys import NoisyQuadraticTrainer, ToyTrainer


def job(space=None, **pbt):
    space = space or {"learning_rate": {"log_uniform": [1e-4, 1e-1]}, "l2": {"log_uniform": [1e-6, 1e-2]},
                      "hidden_layers": {"choice": [[16], [32]]}, "batch_norm": True}
    return parse_job({"name": "p", "model": {"epochs": 10}, "space": space,
                      "search": {"scheduler": "pbt", "trials": 6, "seed": 2}, "pbt": pbt})


def test_by_default_explore_changes_every_searched_name_the_trainer_can_change():
    assert mutable_names(job(), MLPTrainer) == ["learning_rate", "l2"]   # not the architecture, nor a fixed value
    assert mutable_names(job(mutable=["l2"]), MLPTrainer) == ["l2"]


@pytest.mark.parametrize("trainer, pbt, words", [
    (MLPTrainer, {"mutable": ["hidden_layers"]}, "the mlp trainer cannot change 'hidden_layers'"),
    (ToyTrainer, {}, "declares no `mutable` hyperparameters"),
])
def test_a_name_the_trainer_cannot_change_is_refused_naming_pbt_mutable(trainer, pbt, words):
    with pytest.raises(ValueError, match="^pbt.mutable: ") as info:
        mutable_names(job(**pbt), trainer)
    assert words in str(info.value)


def test_nothing_to_explore_is_refused():
    with pytest.raises(ValueError, match="^pbt.mutable: nothing to explore"):
        mutable_names(job({"hidden_layers": {"choice": [[16], [32]]}}), MLPTrainer)


def test_the_plan_draws_the_sweeps_configurations_and_seeds():
    j = job(interval=4)
    plan = make_plan(j, MLPTrainer, build_sampler(j))
    sampler = build_sampler(j)
    assert plan.values == [{n: sampler.ask(i)[n] for n in j.space.names} for i in range(6)]
    assert plan.epochs == 10 and plan.generations == 3 and [plan.until(g) for g in range(3)] == [4, 8, 10]


def test_a_commit_reads_back_exactly(tmp_path):
    members = [Member({"learning_rate": 0.1}, first_loss=2.3, copied_from=None, score=0.5, best=0.6,
                      metrics={"val_loss": 0.7}),
               Member({"learning_rate": 0.01}, copied_from=0, reshuffle=77, score=math.nan, diverged="nan")]
    states = [{"x": np.arange(3.0), "step": np.array(4)}, {"x": np.ones(3), "step": np.array(5)}]
    pop = Population(members, 3, Best(0.9, 0, 6, {"learning_rate": 0.1}), rollbacks=2)
    rows = {"epochs": [{"trial_id": 0, "epoch": 6, "val_loss": math.nan}], "events": []}
    save_commit(tmp_path, pop, states, states[0], rows)
    loaded, got_states, best_state, got_rows = load_commit(tmp_path)
    assert loaded.generation == 3 and loaded.best == pop.best and loaded.rollbacks == 2
    assert loaded.members[0] == members[0] and loaded.members[1].reshuffle == 77
    assert math.isnan(loaded.members[1].score) and math.isnan(got_rows["epochs"][0]["val_loss"])
    for got, want in zip(got_states + [best_state], states + [states[0]]):
        assert got.keys() == want.keys() and all(np.array_equal(got[k], want[k]) for k in want)


def test_a_commit_written_before_rollbacks_were_counted_reads_as_none_used(tmp_path):
    from caviar.store.checkpoints import load_checkpoint, save_checkpoint
    from caviar.store.layout import POPULATION_COMMIT

    path = save_commit(tmp_path, Population([Member({"learning_rate": 0.1})], 1, rollbacks=4), [{}], None,
                       {"epochs": [], "events": []})
    arrays, meta = load_checkpoint(path)
    del meta["rollbacks"]
    save_checkpoint(tmp_path / POPULATION_COMMIT, arrays, meta)
    assert load_commit(tmp_path)[0].rollbacks == 0


def test_no_commit_is_none(tmp_path):
    assert load_commit(tmp_path) is None


def test_a_trainer_with_its_own_mutable_list_needs_no_pbt_mutable():
    j = job({"learning_rate": {"log_uniform": [1e-3, 0.3]}})
    assert mutable_names(j, NoisyQuadraticTrainer) == ["learning_rate"]
