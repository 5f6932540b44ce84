"""Samplers: reproducible whatever order trials run in, and each one doing what it is chosen for."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import qmc

from caviar.config.job import parse_job
from caviar.search.samplers import SAMPLERS, CoarseToFineSampler, make_sampler, trial_seed
from caviar.config.space import SearchSpace, parse_dimension


def space_of(**specs) -> SearchSpace:
    return SearchSpace({name: parse_dimension(spec) for name, spec in specs.items()})


MIXED = space_of(
    learning_rate={"log_uniform": [1e-5, 1e-1]},
    beta1={"one_minus_log_uniform": [0.9, 0.999]},
    hidden={"int_log_uniform": [8, 256]},
    layers={"int_uniform": [1, 4]},
    activation={"choice": ["relu", "tanh"]},
    dropout={"uniform": [0.0, 0.5]},
    epochs=5,
)

# A quadratic bowl in log space with its best point at lr = 3e-3, l2 = 1e-4 (score 0, else negative).
BOWL = space_of(lr={"log_uniform": [1e-6, 1.0]}, l2={"log_uniform": [1e-8, 1e-1]})
BEST = {"lr": 3e-3, "l2": 1e-4}


def bowl(config) -> float:
    return -((math.log10(config["lr"]) - math.log10(3e-3)) ** 2 + (math.log10(config["l2"]) + 4) ** 2)


def run(sampler, score=bowl, order: np.random.Generator | None = None) -> dict[int, dict]:
    """Drive a sampler like a sweep does: start every ready trial, finish them all, repeat. With `order`,
    trials are asked and told in a shuffled order (as Ray would finish them)."""
    configs: dict[int, dict] = {}
    while len(configs) < sampler.n_trials:
        batch = [k for k in range(sampler.n_trials) if k not in configs and sampler.ready(k)]
        assert batch, "no trial ready although some are not told"
        if order is not None:
            batch = list(order.permutation(batch))
        for k in batch:
            configs[k] = sampler.ask(k)
        if order is not None:
            batch = list(order.permutation(batch))
        for k in batch:
            sampler.tell(k, score(configs[k]))
    return configs


def in_bounds(space: SearchSpace, config) -> bool:
    for name, dim in space.dimensions.items():
        if hasattr(dim, "low") and not dim.low <= config[name] <= dim.high:
            return False
        if hasattr(dim, "values") and config[name] not in dim.values:
            return False
    return True


# --- reproducibility ---------------------------------------------------------------------------------


def test_trial_seeds_are_fixed_per_trial_and_in_range():
    seeds = [trial_seed(7, k) for k in range(200)]
    assert seeds == [trial_seed(7, k) for k in range(200)]
    assert len(set(seeds)) == 200 and all(0 <= s < 2**31 for s in seeds)
    assert seeds != [trial_seed(8, k) for k in range(200)]
    seq = np.random.SeedSequence(7, spawn_key=(3,))
    assert trial_seed(7, 3) == int(seq.generate_state(1, dtype=np.uint32)[0]) >> 1


# Trials per sampler in the tests that every sampler runs: the Gaussian process fits a model for each
# proposal after its 10 random ones (a second or more each on a busy machine), so it makes one or two.
TRIALS = {"gp": 11}


@pytest.mark.parametrize("name", SAMPLERS)
def test_a_seed_repeats_exactly_and_another_seed_differs(name):
    def configs(seed):
        sampler = make_sampler(name, MIXED, n_trials=TRIALS.get(name, 12), seed=seed,
                               options={"grid_points": 3, "lag": 2})
        return run(sampler, score=lambda c: -abs(math.log10(c["learning_rate"]) + 3) - c["dropout"])

    first = configs(3)
    assert first == configs(3)
    assert first != configs(4)
    assert all(in_bounds(MIXED, c) for c in first.values())
    assert all(c["epochs"] == 5 for c in first.values())  # fixed values ride along


@pytest.mark.parametrize("name", SAMPLERS)
def test_shuffled_ask_and_tell_order_gives_the_same_configs(name):
    n, lag = TRIALS.get(name, 30) + 1, {"lag": 3}   # the model-based ones propose 3 trials ahead
    in_order = run(make_sampler(name, BOWL, n_trials=n, seed=11, options=lag))
    for shuffle_seed in range(3 if name != "gp" else 1):
        shuffled = run(make_sampler(name, BOWL, n_trials=n, seed=11, options=lag),
                       order=np.random.default_rng(shuffle_seed))
        assert shuffled == in_order


def test_coarse_to_fine_is_order_independent_with_ties_and_failures():
    def score(config):  # a coarse score with ties, and some failures
        return float("nan") if config["lr"] > 0.1 else round(bowl(config))

    def sampler():
        return make_sampler("coarse_to_fine", BOWL, n_trials=40, seed=5, options={"rounds": 4})

    in_order = run(sampler(), score)
    assert run(sampler(), score, order=np.random.default_rng(1)) == in_order


# --- coarse_to_fine rounds ---------------------------------------------------------------------------


def test_trials_are_split_across_rounds_as_evenly_as_possible():
    sampler = make_sampler("coarse_to_fine", BOWL, n_trials=10, seed=0, options={"rounds": 3})
    assert [sampler.round_of(k) for k in range(10)] == [0, 0, 0, 0, 1, 1, 1, 2, 2, 2]
    assert [make_sampler(n, BOWL, n_trials=10, seed=0).round_of(8) for n in ("random", "sobol", "grid")] == [0, 0, 0]
    few = make_sampler("coarse_to_fine", BOWL, n_trials=2, seed=0, options={"rounds": 5})
    assert [few.round_of(k) for k in range(2)] == [0, 1]  # never an empty round


def test_a_round_is_ready_only_once_the_previous_round_is_all_told():
    sampler = make_sampler("coarse_to_fine", BOWL, n_trials=9, seed=0, options={"rounds": 3})
    assert all(sampler.ready(k) for k in range(3))
    assert not any(sampler.ready(k) for k in range(3, 9))
    with pytest.raises(RuntimeError, match="not ready"):
        sampler.ask(3)
    with pytest.raises(RuntimeError, match="not ready"):
        sampler.unit_point(3)
    for k in (2, 0):
        sampler.tell(k, bowl(sampler.ask(k)))
        assert not sampler.ready(3)
    sampler.tell(1, float("nan"))  # a failed trial counts as told
    assert all(sampler.ready(k) for k in range(3, 6)) and not sampler.ready(6)


def test_failed_trials_are_worst_and_mode_picks_the_direction():
    dims = space_of(x={"uniform": [0.0, 1.0]})
    for mode, scores in (("max", [1.0, float("nan"), 5.0, 2.0]), ("min", [3.0, float("nan"), -4.0, 0.0])):
        sampler = make_sampler("coarse_to_fine", dims, n_trials=8, seed=1, mode=mode,
                               options={"rounds": 2, "keep_fraction": 0.25, "shrink": 0.1})
        firsts = [sampler.ask(k)["x"] for k in range(4)]
        for k, s in enumerate(scores):
            sampler.tell(k, s)
        assert sampler.kept(0) == [2]
        assert all(abs(sampler.ask(k)["x"] - firsts[2]) <= 0.05 + 1e-12 for k in range(4, 8))

    all_failed = make_sampler("coarse_to_fine", dims, n_trials=4, seed=1, options={"rounds": 2})
    for k in range(2):
        all_failed.tell(k, float("nan"))
    assert in_bounds(dims, all_failed.ask(2))  # still a config, around the lowest-numbered failure


def test_coarse_to_fine_concentrates_around_the_optimum_and_beats_random():
    n, seeds = 60, range(20)
    best = BOWL.to_unit(BEST)
    distance_by_round = np.zeros(3)
    c2f_best, random_best = [], []
    for seed in seeds:
        sampler = make_sampler("coarse_to_fine", BOWL, n_trials=n, seed=seed)
        configs = run(sampler)
        for r in range(3):
            ids = [k for k in configs if sampler.round_of(k) == r]
            distance_by_round[r] += np.mean([np.linalg.norm(BOWL.to_unit(configs[k]) - best) for k in ids])
        c2f_best.append(max(bowl(c) for c in configs.values()))
        random_best.append(max(bowl(c) for c in run(make_sampler("random", BOWL, n_trials=n, seed=seed)).values()))
    distance_by_round /= len(seeds)
    print(f"\ncoarse_to_fine mean unit distance to optimum by round: {np.round(distance_by_round, 4)}")
    print(f"best bowl value over {len(seeds)} seeds, {n} trials: coarse_to_fine {np.mean(c2f_best):.4f}, "
          f"random {np.mean(random_best):.4f}")
    assert distance_by_round[0] > distance_by_round[1] > distance_by_round[2]
    assert distance_by_round[2] < 0.5 * distance_by_round[0]
    assert np.mean(c2f_best) > np.mean(random_best)
    assert np.mean(np.array(c2f_best) >= np.array(random_best)) >= 0.6


def test_coarse_to_fine_centres_are_only_the_top_of_every_finished_trial():
    """Round r draws around the better half of the best keep_fraction of all trials of rounds < r: a weak
    round-1 trial never becomes a round-2 centre, and round 0's best stays one while it is best."""
    dims = space_of(x={"uniform": [0.0, 1.0]}, y={"uniform": [0.0, 1.0]})
    sampler = make_sampler("coarse_to_fine", dims, n_trials=48, seed=3, options={"rounds": 3})
    score = {}

    def finish(r):
        for k in [k for k in range(48) if sampler.round_of(k) == r]:
            score[k] = -abs(sampler.ask(k)["x"] - 0.3)
            sampler.tell(k, score[k])

    finish(0)
    best_first = sorted(range(16), key=lambda k: (-score[k], k))
    assert sampler.good(1) == best_first[:4] and sampler.kept(0) == best_first[:2]
    finish(1)
    pool = sorted(range(32), key=lambda k: (-score[k], k))
    assert sampler.good(2) == pool[:8] and sampler.kept(1) == pool[:4]   # from rounds 0 and 1 together
    centres, _ = sampler.box(2)
    np.testing.assert_array_equal(centres, [sampler.unit_point(k) for k in pool[:4]])


def test_coarse_to_fine_boxes_are_as_wide_as_the_good_trials_spread():
    """x decides the score, y does not: the good trials agree on x and scatter over y, so round 1
    searches x narrowly (the floor, a quarter of shrink) and y as widely as shrink allows."""
    dims = space_of(x={"uniform": [0.0, 1.0]}, y={"uniform": [0.0, 1.0]})
    sampler = make_sampler("coarse_to_fine", dims, n_trials=64, seed=0, options={"rounds": 2, "shrink": 0.5})
    for k in range(32):
        sampler.tell(k, -abs(sampler.ask(k)["x"] - 0.3))
    good = np.array([sampler.unit_point(k) for k in sampler.good(1)])
    centres, sides = sampler.box(1)
    np.testing.assert_allclose(sides, np.clip(np.ptp(good, axis=0), 0.125, 0.5))
    assert sides[0] < 0.2 and sides[1] == 0.5
    for k in range(32, 64):
        u = sampler.unit_point(k)
        centre = centres[(k - 32) % len(centres)]
        assert np.all(np.abs(u - centre) <= sides / 2 + 1e-12)
    xs = [sampler.ask(k)["x"] for k in range(32, 64)]
    assert max(abs(x - 0.3) for x in xs) < 0.2


def test_coarse_to_fine_with_one_good_trial_uses_the_widest_box():
    dims = space_of(x={"uniform": [0.0, 1.0]})
    sampler = make_sampler("coarse_to_fine", dims, n_trials=8, seed=1, options={"rounds": 2, "shrink": 0.4})
    for k in range(4):
        sampler.tell(k, float(k))
    assert sampler.good(1) == [3]
    np.testing.assert_array_equal(sampler.box(1)[1], [0.4])   # no spread to measure: shrink ** r


@settings(max_examples=60, deadline=None)
@given(scores=st.lists(st.one_of(st.floats(allow_nan=True), st.sampled_from([0.0, 1.0])), min_size=24, max_size=24),
       seed=st.integers(0, 2**32), mode=st.sampled_from(["max", "min"]),
       keep=st.floats(0.01, 1.0), shrink=st.floats(0.01, 1.0), rounds=st.integers(1, 6))
def test_coarse_to_fine_never_leaves_the_bounds(scores, seed, mode, keep, shrink, rounds):
    sampler = make_sampler("coarse_to_fine", MIXED, n_trials=24, seed=seed, mode=mode,
                           options={"rounds": rounds, "keep_fraction": keep, "shrink": shrink})
    for r in range(sampler.rounds):
        ids = [k for k in range(24) if sampler.round_of(k) == r]
        assert all(sampler.ready(k) for k in ids)
        for k in ids:
            config = sampler.ask(k)
            assert in_bounds(MIXED, config), (k, config)
            u = sampler.unit_point(k)
            assert np.all((u >= 0) & (u < 1))
            sampler.tell(k, scores[k])


# --- sobol and grid ----------------------------------------------------------------------------------


def test_sobol_covers_the_unit_cube_more_evenly_than_random():
    space = space_of(**{f"x{i}": {"uniform": [0.0, 1.0]} for i in range(4)})
    n, seeds = 64, range(5)

    def discrepancy(name, seed):
        sampler = make_sampler(name, space, n_trials=n, seed=seed)
        return qmc.discrepancy(np.array([sampler.unit_point(k) for k in range(n)]))

    sobol = np.mean([discrepancy("sobol", s) for s in seeds])
    random = np.mean([discrepancy("random", s) for s in seeds])
    print(f"\ncentred L2 discrepancy, n={n}, d=4, mean of {len(seeds)} seeds: sobol {sobol:.3e}, "
          f"random {random:.3e}, ratio {random / sobol:.1f}")
    assert sobol < 0.5 * random


def test_sobol_points_are_one_sequence():
    sampler = make_sampler("sobol", BOWL, n_trials=5, seed=2)
    longer = make_sampler("sobol", BOWL, n_trials=40, seed=2)
    for k in range(5):  # trial k is the k-th point whatever the number of trials
        np.testing.assert_array_equal(sampler.unit_point(k), longer.unit_point(k))


def test_grid_has_the_right_count_and_is_log_spaced_on_log_dims():
    space = space_of(lr={"log_uniform": [1e-4, 1e-1]}, beta={"one_minus_log_uniform": [0.9, 0.999]},
                     batch={"choice": [32, 64, 128, 256]}, layers={"int_uniform": [1, 2]}, epochs=5)
    sampler = make_sampler("grid", space, n_trials=1000, seed=0, options={"grid_points": 4})
    assert sampler.grid_size == 4 * 4 * 4 * 2 and sampler.n_trials == 128
    configs = [sampler.ask(k) for k in range(sampler.n_trials)]
    lrs = sorted({c["lr"] for c in configs})
    assert lrs == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1])
    assert np.allclose(np.diff(np.log10(lrs)), 1.0)  # equal steps in log10, not in the value
    betas = np.array(sorted({c["beta"] for c in configs}))
    assert betas[0] == pytest.approx(0.9) and betas[-1] == pytest.approx(0.999) and len(betas) == 4
    assert np.allclose(np.diff(np.log10(1 - betas)), -2 / 3)  # equal steps in log10(1 - beta)
    assert {c["batch"] for c in configs} == {32, 64, 128, 256} and {c["layers"] for c in configs} == {1, 2}
    combos = {(c["lr"], c["beta"], c["batch"], c["layers"]) for c in configs}
    assert len(combos) == 128  # every grid point exactly once
    assert configs[0] == {"lr": pytest.approx(1e-4), "beta": pytest.approx(0.9), "batch": 32, "layers": 1,
                          "epochs": 5}  # fixed order: the first corner first


def test_a_grid_smaller_than_its_trials_gives_fewer_and_a_larger_one_a_spread_subset():
    space = space_of(a={"uniform": [0.0, 1.0]}, b={"uniform": [0.0, 1.0]})
    assert make_sampler("grid", space, n_trials=100, seed=0, options={"grid_points": 3}).n_trials == 9
    sampler = make_sampler("grid", space, n_trials=10, seed=0, options={"grid_points": 10})
    points = [tuple(sampler.unit_point(k)) for k in range(10)]
    assert len(set(points)) == 10 and points == sorted(points)  # distinct, in grid order
    assert len({p[0] for p in points}) > 1  # not just the first row of the grid
    grid_values = set(np.linspace(0, 1, 10))
    assert all(p[0] in grid_values and p[1] in grid_values for p in points)


def test_grid_shows_why_random_wins():
    """With 9 trials and one dimension that matters, a 3 x 3 grid tries 3 of its values, random tries 9."""
    space = space_of(matters={"log_uniform": [1e-4, 1e-1]}, ignored={"uniform": [0.0, 1.0]})
    grid = run(make_sampler("grid", space, n_trials=9, seed=0), score=lambda c: 0.0)
    rand = run(make_sampler("random", space, n_trials=9, seed=0), score=lambda c: 0.0)
    assert len({c["matters"] for c in grid.values()}) == 3
    assert len({c["matters"] for c in rand.values()}) == 9


def test_a_space_with_nothing_to_search_still_gives_configs():
    space = space_of(epochs=3)
    for name in SAMPLERS:
        sampler = make_sampler(name, space, n_trials=4, seed=0)
        assert sampler.n_trials == (1 if name == "grid" else 4)  # a grid of no axes has one point
        assert all(c == {"epochs": 3} for c in run(sampler, score=lambda c: 0.0).values())


# --- errors ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"name": "sobel"}, "search.sampler: expected one of random, grid, sobol, coarse_to_fine, tpe, gp, cmaes, "
                        "got 'sobel' (did you mean 'sobol'?)"),
    ({"n_trials": 0}, "search.trials: expected a positive integer, got 0"),
    ({"options": {"rounds": True}}, "search.rounds: expected a positive integer, got true"),
    ({"options": {"shrinkage": 0.5}}, "search.shrinkage: unknown sampler option (did you mean 'shrink'?; valid: "
                                      "grid_points, rounds, keep_fraction, shrink, lag)"),
])
def test_bad_sampler_settings_name_the_field_and_value(kwargs, message):
    arguments = {"name": "coarse_to_fine", "n_trials": 8, "seed": 0, **kwargs}
    with pytest.raises(ValueError) as info:
        make_sampler(arguments.pop("name"), BOWL, **arguments)
    assert str(info.value) == message


# (the [search] key, its bad value, make_sampler's keyword for it)
SAME_MISTAKES = [
    ("sampler", "sobel", "name"), ("sampler", "bayes", "name"), ("sampler", 3, "name"), ("trials", 0, "n_trials"),
    ("trials", 2.5, "n_trials"), ("seed", -1, "seed"), ("mode", "maximize", "mode"), ("mode", "mn", "mode"),
    ("grid_points", 0, "grid_points"), ("grid_points", 1, "grid_points"), ("rounds", True, "rounds"),
    ("rounds", 2.5, "rounds"), ("keep_fraction", 0, "keep_fraction"), ("keep_fraction", 1.5, "keep_fraction"),
    ("shrink", "half", "shrink"), ("shrink", float("nan"), "shrink"),
]


@pytest.mark.parametrize(("key", "value", "keyword"), SAME_MISTAKES)
def test_a_bad_setting_reads_the_same_from_make_sampler_as_from_a_job_file(key, value, keyword):
    """One rule and one message per field, whether the job file or a direct caller gets it wrong."""
    with pytest.raises(ValueError) as from_job:
        parse_job({"search": {"sampler": "coarse_to_fine", "trials": 8, key: value}})
    arguments = {"name": "coarse_to_fine", "n_trials": 8, "seed": 0, "mode": "max", "options": {}}
    (arguments if keyword in arguments else arguments["options"])[keyword] = value
    with pytest.raises(ValueError) as from_sampler:
        make_sampler(arguments.pop("name"), BOWL, **arguments)
    assert str(from_sampler.value) == str(from_job.value)


def test_every_sampler_a_job_accepts_can_be_made():
    for name in SAMPLERS:
        job = parse_job({"search": {"sampler": name, "trials": 4}, "space": {"l2": {"log_uniform": [1e-6, 1e-2]}}})
        assert make_sampler(job.search.sampler, job.space, n_trials=4, seed=0).name == name


def test_options_a_sampler_does_not_use_are_accepted_and_none_means_default():
    sampler = make_sampler("random", BOWL, n_trials=3, seed=0, options={"rounds": 4, "shrink": None})
    assert sampler.n_trials == 3
    c2f = make_sampler("coarse_to_fine", BOWL, n_trials=9, seed=0, options={"rounds": None})
    assert isinstance(c2f, CoarseToFineSampler) and (c2f.rounds, c2f.keep_fraction, c2f.shrink) == (3, 0.25, 0.5)


def test_misuse_by_a_driver_is_loud():
    sampler = make_sampler("random", BOWL, n_trials=3, seed=0)
    with pytest.raises(IndexError):
        sampler.ask(3)
    sampler.tell(0, 0.5)
    sampler.tell(0, 0.5)  # the same score again is harmless (a resumed sweep re-reading its results)
    with pytest.raises(RuntimeError, match="already told"):
        sampler.tell(0, 0.7)


def test_grid_size_is_product_of_axes():
    space = space_of(a={"uniform": [0.0, 1.0]}, b={"int_uniform": [1, 2]}, c={"choice": list("xyz")})
    sampler = make_sampler("grid", space, n_trials=10**6, seed=0, options={"grid_points": 5})
    assert sampler.n_trials == 5 * 2 * 3
    got = [tuple(sampler.ask(k).values()) for k in range(sampler.n_trials)]
    assert got == list(itertools.product([0.0, 0.25, 0.5, 0.75, 1.0], [1, 2], "xyz"))  # product order
