"""The model-based samplers (tpe, gp, cmaes): exact scales, conditional dimensions, proposals that do not
depend on the order results arrive in, a resume that proposes what the first session did, and a TPE
that finds a known optimum better than random at equal trials."""

from __future__ import annotations

import heapq
import math
import subprocess
import sys

import numpy as np
import pytest

from caviar.config.space import SearchSpace, parse_dimension
from caviar.search.model_based import ENGINES, ModelBasedSampler, engine_seed
from caviar.search.samplers import make_sampler

# The Gaussian process fits a model per proposal after its first 10 random ones: a second or more on a
# busy machine, so its tests make few proposals.
TRIALS = {"tpe": 24, "cmaes": 24, "gp": 12}
ENGINE_NAMES = list(ENGINES)


def space_of(conditions=None, **specs) -> SearchSpace:
    return SearchSpace({name: parse_dimension(spec) for name, spec in specs.items()}, conditions)


EVERY_KIND = space_of(
    learning_rate={"log_uniform": [1e-5, 1e-1]},
    beta1={"one_minus_log_uniform": [0.9, 0.9999]},
    dropout={"uniform": [0.0, 0.5]},
    layers={"int_uniform": [1, 3]},
    width={"int_log_uniform": [8, 512]},
    hidden={"choice": [[32], [64, 64]]},
    activation={"choice": ["relu", "tanh"]},
    epochs=4,
)


def drive(sampler, score, order: np.random.Generator | None = None) -> dict[int, dict]:
    """Ask every ready trial, tell them all (shuffled with `order`, as Ray finishes them), repeat."""
    configs: dict[int, dict] = {}
    while len(configs) < sampler.n_trials:
        batch = [k for k in range(sampler.n_trials) if k not in configs and sampler.ready(k)]
        assert batch, "no trial is ready although every asked one was told"
        for k in batch:
            configs[k] = sampler.ask(k)
        for k in (order.permutation(batch) if order is not None else batch):
            sampler.tell(int(k), score(configs[int(k)]))
    return configs


def simulate(sampler, score, workers: int, rng: np.random.Generator) -> dict[int, dict]:
    """Run like a sweep does: up to `workers` trials in flight, each taking a random time; a free worker
    starts the next trial (in id order) as soon as it is ready. Another `rng`, another finish order."""
    configs: dict[int, dict] = {}
    running: list[tuple[float, int]] = []   # (finish time, trial id), a heap
    clock, next_id = 0.0, 0
    while next_id < sampler.n_trials or running:
        while len(running) < workers and next_id < sampler.n_trials and sampler.ready(next_id):
            configs[next_id] = sampler.ask(next_id)
            heapq.heappush(running, (clock + float(rng.exponential()), next_id))
            next_id += 1
        assert running, f"trial {next_id} is not ready and nothing runs"
        clock, k = heapq.heappop(running)
        sampler.tell(k, score(configs[k]))
    return configs


def toy_score(config) -> float:
    """Best at learning_rate 3e-3 and 1 - beta1 = 1e-2, whatever else."""
    return -((math.log10(config["learning_rate"]) + 2.5) ** 2 + (math.log10(1 - config["beta1"]) + 2) ** 2)


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_every_dimension_kind_keeps_its_bounds_and_type(name):
    configs = drive(make_sampler(name, EVERY_KIND, n_trials=TRIALS[name], seed=1, options={"lag": 2}), toy_score)
    for c in configs.values():
        assert 1e-5 <= c["learning_rate"] <= 1e-1 and 0.9 <= c["beta1"] <= 0.9999 and 0 <= c["dropout"] <= 0.5
        assert type(c["layers"]) is int and 1 <= c["layers"] <= 3
        assert type(c["width"]) is int and 8 <= c["width"] <= 512
        assert c["hidden"] in ([32], [64, 64]) and c["activation"] in ("relu", "tanh") and c["epochs"] == 4
    assert len({c["activation"] for c in configs.values()}) == 2


def test_the_scales_are_optunas_own_distributions():
    """Log ranges are Optuna log ranges, a beta's 1 - beta is one, choices are categorical positions."""
    import optuna

    sampler = make_sampler("tpe", EVERY_KIND, n_trials=3, seed=0)
    config = sampler.ask(0)
    trial = sampler._study.trials[0]
    dists = trial.distributions
    assert dists["learning_rate"] == optuna.distributions.FloatDistribution(1e-5, 1e-1, log=True)
    assert dists["beta1"] == optuna.distributions.FloatDistribution(1 - 0.9999, 1 - 0.9, log=True)
    assert dists["dropout"] == optuna.distributions.FloatDistribution(0.0, 0.5)
    assert dists["width"] == optuna.distributions.IntDistribution(8, 512, log=True)
    assert dists["layers"] == optuna.distributions.IntDistribution(1, 3)
    assert dists["hidden"] == optuna.distributions.CategoricalDistribution([0, 1])
    assert config["beta1"] == pytest.approx(1 - trial.params["beta1"], rel=1e-12)
    assert config["hidden"] == [[32], [64, 64]][trial.params["hidden"]]


def test_the_random_start_draws_each_scale_evenly():
    """Before the model takes over, log10 of a log range and of 1 - beta are uniform (a KS test)."""
    from scipy.stats import kstest

    space = space_of(lr={"log_uniform": [1e-6, 1e-1]}, beta={"one_minus_log_uniform": [0.9, 0.99999]})
    configs = [make_sampler("tpe", space, n_trials=10, seed=s).ask(k) for s in range(40) for k in range(10)]
    assert kstest([(math.log10(c["lr"]) + 6) / 5 for c in configs], "uniform").pvalue > 0.01
    assert kstest([(math.log10(1 - c["beta"]) + 5) / 4 for c in configs], "uniform").pvalue > 0.01


# --- conditional dimensions ---------------------------------------------------------------------------

OPTIMIZERS = space_of(
    {"beta2": {"optimizer": ("adam", "rmsprop")}, "momentum": {"optimizer": ("momentum",)},
     "width2": {"layers": (2,)}},
    learning_rate={"log_uniform": [1e-4, 1e-1]},
    optimizer={"choice": ["sgd", "momentum", "rmsprop", "adam"]},
    beta2={"one_minus_log_uniform": [0.99, 0.9999]},
    momentum={"one_minus_log_uniform": [0.8, 0.99]},
    layers={"int_uniform": [1, 2]},
    width2={"int_log_uniform": [8, 256]},
)


def conditional_score(config) -> float:
    """Refuses an inactive dimension, as a trainer that cannot take it would."""
    assert ("beta2" in config) == (config["optimizer"] in ("adam", "rmsprop"))
    assert ("momentum" in config) == (config["optimizer"] == "momentum")
    assert ("width2" in config) == (config["layers"] == 2)
    return -(math.log10(config["learning_rate"]) + 2.5) ** 2 + (0.5 if config["optimizer"] == "adam" else 0)


@pytest.mark.parametrize("name", ["random", "sobol", "grid", "coarse_to_fine", *ENGINE_NAMES])
def test_every_sampler_draws_a_conditional_dimension_only_where_it_exists(name):
    n = TRIALS.get(name, 24)
    configs = drive(make_sampler(name, OPTIMIZERS, n_trials=n, seed=5, options={"lag": 2, "rounds": 2}),
                    conditional_score)
    assert len({c["optimizer"] for c in configs.values()}) >= 3
    assert any("width2" in c for c in configs.values()) and any("width2" not in c for c in configs.values())
    for c in configs.values():
        assert 0.99 <= c.get("beta2", 0.99) <= 0.9999 and 0.8 <= c.get("momentum", 0.8) <= 0.99
        assert 8 <= c.get("width2", 8) <= 256


def test_the_grid_of_a_conditional_space_holds_each_config_once():
    sampler = make_sampler("grid", OPTIMIZERS, n_trials=10_000, seed=0, options={"grid_points": 2})
    configs = [sampler.ask(k) for k in range(sampler.n_trials)]
    # learning rate 2 x (sgd 1 + momentum 2 + rmsprop 2 + adam 2) x (one layer 1 + two layers 2)
    assert len(configs) == 2 * 7 * 3
    assert len({repr(sorted(c.items())) for c in configs}) == len(configs)


# --- reproducible in parallel -------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENGINE_NAMES)
def test_the_order_results_arrive_in_changes_no_proposal(name):
    def configs(order_seed, seed=7):
        sampler = make_sampler(name, EVERY_KIND, n_trials=TRIALS[name], seed=seed, options={"lag": 3})
        return simulate(sampler, toy_score, workers=3, rng=np.random.default_rng(order_seed))

    first = configs(0)
    assert all(first == configs(order_seed) for order_seed in (1, 2))
    assert first != configs(0, seed=8)


def test_trial_k_waits_for_trials_below_k_minus_lag_and_for_nothing_else():
    sampler = make_sampler("tpe", EVERY_KIND, n_trials=30, seed=0, options={"lag": 4})
    assert all(sampler.ready(k) for k in range(10))       # the random start never waits
    assert not sampler.ready(10)                          # needs trials 0 .. 5
    for k in range(10):
        sampler.ask(k)
    for k in (5, 3, 1, 0, 2):
        sampler.tell(k, 0.0)
    assert not sampler.ready(10)
    sampler.tell(4, 0.0)
    assert sampler.ready(10) and not sampler.ready(11)    # 6 .. 9 still running: no matter for 10
    with pytest.raises(RuntimeError, match="not ready"):
        sampler.ask(11)


def test_a_resumed_sampler_proposes_what_the_first_one_did():
    """A resume tells the finished trials' scores in any order, then asks the rest: the proposals it
    replays, and the new ones, are those of a run that never stopped."""
    whole = drive(make_sampler("tpe", OPTIMIZERS, n_trials=30, seed=3, options={"lag": 2}), conditional_score)
    resumed = make_sampler("tpe", OPTIMIZERS, n_trials=30, seed=3, options={"lag": 2})
    finished = list(range(17)) + [18]                     # trial 17 was running when it stopped
    for k in np.random.default_rng(1).permutation(finished):
        resumed.tell(int(k), conditional_score(whole[int(k)]))
    assert resumed.ask(17) == whole[17]
    resumed.tell(17, conditional_score(whole[17]))
    assert [resumed.ask(k) for k in range(19, 21)] == [whole[19], whole[20]]


def test_a_failed_trial_is_told_as_failed_and_the_direction_follows_the_mode():
    import optuna

    sampler = make_sampler("tpe", EVERY_KIND, n_trials=14, seed=0, mode="min", options={"lag": 0})
    for k in range(12):
        sampler.ask(k)
        sampler.tell(k, math.nan if k == 3 else float(k))
    sampler.ask(12)
    study = sampler._study
    assert study.direction == optuna.study.StudyDirection.MINIMIZE
    assert study.trials[3].state == optuna.trial.TrialState.FAIL
    assert study.trials[11].value == 11.0 and study.trials[12].state == optuna.trial.TrialState.RUNNING


def test_the_lag_is_fixed_before_the_model_proposes_and_then_never_changes():
    sampler = make_sampler("tpe", EVERY_KIND, n_trials=20, seed=0)
    assert sampler.lag is None and [sampler.ready(k) for k in (9, 10)] == [True, False]
    sampler.set_lag(2)
    for k in range(12):
        sampler.ask(k)
        sampler.tell(k, 0.0)
    with pytest.raises(RuntimeError, match="cannot make it 3"):
        sampler.set_lag(3)
    assert engine_seed(0, 5) != engine_seed(1, 5) and engine_seed(0, 5) == engine_seed(0, 5)


# --- learning ------------------------------------------------------------------------------------------


def test_tpe_gets_closer_to_a_known_optimum_than_random_at_equal_trials():
    """The log learning rate and log(1 - beta) of the best of 40 trials, as a distance to the optimum,
    over 12 fixed seeds: TPE's median is closer, and it wins on most seeds."""
    space = space_of(learning_rate={"log_uniform": [1e-6, 1.0]}, beta1={"one_minus_log_uniform": [0.5, 0.99999]},
                     batch_size={"choice": [16, 32, 64, 128, 256]})

    def distance(name, seed):
        configs = drive(make_sampler(name, space, n_trials=40, seed=seed, options={"lag": 2}), toy_score)
        return math.sqrt(-max(toy_score(c) for c in configs.values()))

    tpe = np.array([distance("tpe", seed) for seed in range(12)])
    rand = np.array([distance("random", seed) for seed in range(12)])
    assert np.median(tpe) < 0.6 * np.median(rand)
    assert (tpe < rand).sum() >= 9


# --- a missing engine ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name, blocked, install", [
    ("tpe", "optuna", "pip install 'caviar[optuna]'"), ("gp", "torch", "pip install torch"),
    ("cmaes", "cmaes", "pip install cmaes"),
])
def test_a_sampler_whose_engine_is_not_installed_is_one_line_saying_what_to_install(tmp_path, name, blocked,
                                                                                     install):
    """A real `caviar parallel --dry-run` in a Python that cannot import the engine: exit 2, one line."""
    (tmp_path / "sitecustomize.py").write_text(
        "import importlib.abc, sys\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        f"    def find_spec(self, name, path, target=None):\n"
        f"        if name == {blocked!r} or name.startswith({blocked!r} + '.'):\n"
        f"            raise ModuleNotFoundError(name)\n"
        "sys.meta_path.insert(0, Block())\n")
    job = tmp_path / "job.toml"
    job.write_text(f'[space]\nlearning_rate = {{ log_uniform = [1e-4, 1e-1] }}\n[search]\nsampler = "{name}"\n')
    from tests.support import ROOT

    env = {**__import__("os").environ, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    done = subprocess.run([sys.executable, "-m", "caviar", "parallel", str(job), "--dry-run"], env=env,
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("caviar parallel: error: search.sampler: ")
    assert install in done.stderr


def test_every_engine_is_a_model_based_sampler_named_in_the_vocabulary():
    from caviar.config.choices import MODEL_BASED

    assert tuple(ENGINES) == MODEL_BASED and all(issubclass(cls, ModelBasedSampler) for cls in ENGINES.values())
