"""PBT's pure decisions (caviar/population/policy.py): no Ray, no files."""

from __future__ import annotations

import math

import numpy as np
import pytest

from caviar.config.job import BabysitSpec
from caviar.config.space import Choice, IntLogUniform, LogUniform, OneMinusLogUniform, Uniform
from caviar.population.policy import (Best, Generation, decide, diverged, explore, fallback_rng, fallback_source,
                                      fallback_values, improved, perturb, policy_rng, quantile_size, ranking)

LR = LogUniform(1e-4, 1e-1)
DIMS = {"learning_rate": LR, "beta1": OneMinusLogUniform(0.8, 0.999), "batch_size": Choice((32, 64, 128)),
        "width": IntLogUniform(4, 256), "dropout": Uniform(0.0, 0.5)}


def rules(**over):
    return {"mode": "max", "quantile": 0.25, "names": ["learning_rate"], "dims": DIMS, "factors": [0.8, 1.2],
            "resample_probability": 0.25, **over}


def gen(scores, diverged_=None):
    n = len(scores)
    return Generation(scores, diverged_ or [False] * n, [{"learning_rate": 1e-3 * (i + 1)} for i in range(n)])


def test_quantile_size_is_a_quarter_rounded_up_but_never_more_than_half():
    assert [quantile_size(n, 0.25) for n in (1, 2, 3, 4, 5, 8, 9)] == [0, 1, 1, 1, 2, 2, 3]
    assert quantile_size(8, 0.5) == 4 and quantile_size(3, 0.5) == 1


def test_ranking_puts_the_best_first_and_diverged_or_nan_last():
    assert ranking([0.5, 0.9, math.nan, 0.7], [False, False, False, False], "max") == [1, 3, 0, 2]
    assert ranking([0.5, 0.9, 0.1, 0.7], [False, True, False, False], "min") == [2, 0, 3, 1]


def test_the_worst_quarter_copies_the_best_quarter_and_nobody_else_moves():
    copies = decide(gen([0.1, 0.9, 0.5, 0.6, 0.8, 0.2, 0.7, 0.3]), rng=policy_rng(0, 0), **rules())
    assert sorted(c.member for c in copies) == [0, 5]
    assert all(c.source in (1, 4) and c.reason == "exploit" for c in copies)
    assert all(c.old["learning_rate"] == 1e-3 * (c.member + 1) for c in copies)


def test_a_diverged_member_copies_a_member_of_the_best_quantile_at_once_whatever_its_rank():
    copies = decide(gen([0.95, 0.9, 0.5, 0.6], [True, False, False, False]), rng=policy_rng(0, 0), **rules())
    by_member = {c.member: c for c in copies}
    assert by_member[0].source == 1 and by_member[0].reason == "diverged"
    assert by_member[2].reason == "exploit"   # the healthy worst still exploits


def test_diverged_members_spread_over_the_best_quantile_rather_than_all_copy_the_best():
    """Three of eight diverging at once must not put six members on one lineage (3 + the exploits)."""
    scores = [math.nan, 0.9, math.nan, 0.8, math.nan, 0.7, 0.6, 0.5]
    sources = set()
    for generation in range(20):
        copies = decide(gen(scores, [not s == s for s in scores]), rng=policy_rng(0, generation), **rules())
        sources |= {c.source for c in copies if c.reason == "diverged"}
    assert sources == {1, 3}   # the best quantile of the five healthy: ceil(5 / 4) = 2 members


def test_a_lone_healthy_member_is_what_the_diverged_ones_copy():
    copies = decide(gen([0.5, math.nan, math.nan], [False, True, True]), rng=policy_rng(0, 0), **rules())
    assert [(c.member, c.source, c.reason) for c in copies] == [(1, 0, "diverged"), (2, 0, "diverged")]


def test_when_every_member_diverged_each_starts_over_from_its_initial_state_with_the_babysitters_cut():
    copies = decide(gen([math.nan, math.nan], [True, True]), rng=policy_rng(0, 0), babysit=BabysitSpec(), **rules())
    assert [(c.member, c.source, c.reason, c.fresh) for c in copies] == [(0, 0, "diverged", True), (1, 1, "diverged", True)]
    cut = BabysitSpec().divergence_factor
    assert [c.new["learning_rate"] for c in copies] == pytest.approx([1e-3 * cut, 2e-3 * cut])


BABYSIT = BabysitSpec(tolerance=0.02, rollback_factor=0.5, max_rollbacks=3, min_delta=0.01)


def test_a_population_behind_its_best_ever_rolls_back_to_it():
    best = Best(0.99, 3, 4, {"learning_rate": 0.05})
    copies = decide(gen([0.5, 0.9, 0.6, 0.7]), rng=policy_rng(0, 0), best_ever=best, babysit=BABYSIT, **rules())
    assert [(c.member, c.source, c.reason, c.best_ever) for c in copies] == [(0, 3, "rollback", True)]
    near = decide(gen([0.5, 0.98, 0.6, 0.7]), rng=policy_rng(0, 0), best_ever=best, babysit=BABYSIT, **rules())
    assert [c.reason for c in near] == ["exploit"]


def test_a_rollback_takes_the_best_evers_rate_times_the_rollback_factor_clipped_to_the_space():
    """The babysitter's rule, not explore's: whatever the factors and the draws, rate x rollback_factor."""
    for seed in range(10):
        best = Best(0.99, 3, 4, {"learning_rate": 0.05})
        (copy,) = decide(gen([0.5, 0.9, 0.6, 0.7]), rng=policy_rng(seed, 0), best_ever=best, babysit=BABYSIT,
                         **rules(factors=[3.0], resample_probability=0.5))
        assert copy.reason == "rollback" and copy.new == {"learning_rate": 0.025}
    low = Best(0.99, 3, 4, {"learning_rate": 1.5e-4})
    (copy,) = decide(gen([0.5, 0.9, 0.6, 0.7]), rng=policy_rng(0, 0), best_ever=low, babysit=BABYSIT, **rules())
    assert copy.new == {"learning_rate": 1e-4}   # clipped to the space's low end


def test_rollbacks_stop_after_max_rollbacks_and_the_worst_exploit_instead():
    best = Best(0.99, 3, 4, {"learning_rate": 0.05})
    behind = gen([0.5, 0.9, 0.6, 0.7])
    assert [c.reason for c in decide(behind, rng=policy_rng(0, 0), best_ever=best, babysit=BABYSIT, rollbacks=2,
                                     **rules())] == ["rollback"]
    spent = decide(behind, rng=policy_rng(0, 0), best_ever=best, babysit=BABYSIT, rollbacks=3, **rules())
    assert [(c.reason, c.source, c.best_ever) for c in spent] == [("exploit", 1, False)]


def test_a_new_best_ever_must_beat_the_old_by_more_than_min_delta():
    first = Best(0.7, 1, 2, {"learning_rate": 2e-3})
    assert improved(first, gen([0.6, 0.705]), "max", 4, min_delta=0.01) is None
    assert improved(first, gen([0.6, 0.72]), "max", 4, min_delta=0.01) == Best(0.72, 1, 4, {"learning_rate": 2e-3})
    assert improved(None, gen([0.6, 0.65]), "max", 2, min_delta=0.5) == Best(0.65, 1, 2, {"learning_rate": 2e-3})


def test_the_same_seed_and_generation_give_the_same_decisions():
    one = decide(gen([0.1, 0.9, 0.5, 0.6, 0.8, 0.2, 0.7, 0.3]), rng=policy_rng(7, 3), **rules())
    two = decide(gen([0.1, 0.9, 0.5, 0.6, 0.8, 0.2, 0.7, 0.3]), rng=policy_rng(7, 3), **rules())
    other = decide(gen([0.1, 0.9, 0.5, 0.6, 0.8, 0.2, 0.7, 0.3]), rng=policy_rng(7, 4), **rules())
    assert one == two and one != other


def test_perturb_moves_each_dimension_on_its_own_scale_and_stays_inside():
    assert perturb(LR, 1e-2, 1.2) == pytest.approx(1.2e-2)
    assert perturb(LR, 0.09, 1.2) == 0.1                                  # clipped to the space
    beta = perturb(DIMS["beta1"], 0.99, 0.8)
    assert 1 - beta == pytest.approx(0.8 * 0.01)                          # 1 - beta scaled, not beta
    assert perturb(DIMS["beta1"], 0.85, 1.2) == pytest.approx(0.82)
    assert perturb(DIMS["batch_size"], 64, 1.2) == 128 and perturb(DIMS["batch_size"], 32, 0.8) == 32
    assert perturb(DIMS["width"], 4, 1.2) == 5 and perturb(DIMS["width"], 256, 1.2) == 256
    assert perturb(DIMS["dropout"], 0.45, 1.2) == 0.5


def test_explore_keeps_every_value_inside_the_space_on_many_draws():
    rng = np.random.default_rng(0)
    values = {"learning_rate": 1e-3, "beta1": 0.9, "batch_size": 64, "width": 32, "dropout": 0.2}
    names = list(DIMS)
    ratios = []
    for _ in range(300):
        new = explore(values, DIMS, names, [0.8, 1.2], 0.25, rng)
        for name, dim in DIMS.items():
            dim.to_unit(new[name])   # raises for a value the dimension cannot hold
        ratios.append(new["learning_rate"] / values["learning_rate"])
        values = new
    perturbed = [r for r in ratios if math.isclose(r, 0.8) or math.isclose(r, 1.2)]
    assert 0.6 < len(perturbed) / len(ratios) < 0.9   # about 1 - resample_probability of them


def test_explore_with_resample_probability_one_draws_from_the_space():
    new = explore({"learning_rate": 1e-3}, DIMS, ["learning_rate"], [0.8, 1.2], 1.0, np.random.default_rng(1))
    assert new["learning_rate"] not in (0.8e-3, 1.2e-3) and 1e-4 <= new["learning_rate"] <= 1e-1


def test_divergence_is_a_non_finite_score_or_a_loss_far_above_the_start():
    assert diverged({"val_accuracy": math.nan, "train_loss": 1.0}, "val_accuracy", 2.3, 3.0).startswith("non-finite")
    assert diverged({"val_accuracy": 0.5, "train_loss": math.inf}, "val_accuracy", 2.3, 3.0).startswith("non-finite")
    assert "above 3 x the initial loss" in diverged({"val_accuracy": 0.1, "train_loss": 7.0}, "val_accuracy", 2.3, 3.0)
    assert diverged({"val_accuracy": 0.9, "train_loss": 6.8}, "val_accuracy", 2.3, 3.0) is None
    assert diverged({"val_accuracy": 0.9}, "val_accuracy", None, 3.0) is None


def test_improved_names_the_new_best_only_when_it_beats_the_old():
    first = improved(None, gen([0.5, 0.7]), "max", 2)
    assert first == Best(0.7, 1, 2, {"learning_rate": 2e-3})
    assert improved(first, gen([0.6, 0.65]), "max", 4) is None
    assert improved(first, gen([0.9, 0.65], [True, False]), "max", 4) is None   # a diverged member is no best


def test_the_fallback_is_the_best_ranked_healthy_member_once_any_has_a_score():
    assert fallback_source(gen([0.5, 0.9, 0.7]), "max") == 1
    assert fallback_source(gen([0.5, 0.9, 0.7], [False, True, False]), "max") == 2   # a diverged member is none
    assert fallback_source(gen([0.5, 0.9, 0.7]), "min") == 0
    assert fallback_source(gen([math.nan, math.nan]), "max") is None               # generation 0: no score yet


def fallback(source, count, seed=0, names=("learning_rate",), **over):
    rules_ = {"dims": DIMS, "names": list(names), "factors": [0.8, 1.2], "resample_probability": 0.25,
              "divergence_factor": 0.1, **over}
    own = {"learning_rate": 0.05, "dropout": 0.2}
    return fallback_values(own, source, count, rng=fallback_rng(seed, 1, 2), **rules_)


def test_each_replacement_explores_the_fallback_members_values_afresh_the_same_in_every_run():
    source = {"learning_rate": 1e-3, "dropout": 0.4}
    values = fallback(source, 5)
    assert values == fallback(source, 5) and len(values) == 5 and fallback(source, 2) == values[:2]
    assert len({v["learning_rate"] for v in values}) > 1          # a second divergence tries other values
    assert all(v["dropout"] == 0.4 for v in values)               # only the explored names move
    first = explore(source, DIMS, ["learning_rate"], [0.8, 1.2], 0.25, fallback_rng(0, 1, 2))
    assert values[0] == first
    assert fallback(source, 5, seed=1) != values
    assert fallback_rng(0, 1, 2).random() != fallback_rng(0, 1, 3).random() != fallback_rng(0, 2, 2).random()


def test_before_any_score_a_replacement_cuts_its_own_rate_by_the_divergence_factor_each_time():
    values = fallback(None, 3)
    assert [v["learning_rate"] for v in values] == pytest.approx([5e-3, 5e-4, 1e-4])   # clipped to the space
    assert all(v["dropout"] == 0.2 for v in values)
    explored = fallback(None, 2, names=("dropout",))   # no rate to cut: its own values explored
    assert all(v["learning_rate"] == 0.05 for v in explored) and explored[0]["dropout"] != 0.2
