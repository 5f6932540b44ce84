"""TorchTrainer with real torch on CPU: the protocol, exact save/restore through a real .npz, changes
between epochs, and randomness that belongs to each trial."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from caviar import check_trainer
from caviar.data import load_dataset
from caviar.examples.digits_cnn import DigitsCNN
from caviar.store.checkpoints import load_checkpoint, save_checkpoint
from caviar.torch import TorchTrainer

SMALL = {"channels": 4, "learning_rate": 3e-3, "batch_size": 128}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One thread, as a sweep's trial has: the results are the same, and much quicker on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class DropoutMLP(TorchTrainer):
    """Dropout draws from torch's global generator; a NumPy and a Python draw ride along each epoch."""

    hyperparameters = {**TorchTrainer.hyperparameters, "momentum": float}
    defaults = {**TorchTrainer.defaults, "momentum": 0.9}
    mutable = (*TorchTrainer.mutable, "momentum")
    metrics = (*TorchTrainer.metrics, "numpy_draw", "python_draw")

    def build_model(self, config, data):
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.5), nn.Linear(32, int(data.n_classes)))

    def build_optimizer(self, config, parameters):
        return torch.optim.SGD(parameters, lr=config["learning_rate"], momentum=config["momentum"],
                               weight_decay=config["weight_decay"])

    def train_epoch(self):
        metrics = super().train_epoch()
        with self._own_rngs():
            return {**metrics, "numpy_draw": float(np.random.random()), "python_draw": random.random()}


def test_the_example_and_its_instances_fit_the_protocol(digits):
    assert check_trainer(DigitsCNN) is DigitsCNN
    trainer = DigitsCNN(SMALL, digits, 0)
    check_trainer(trainer)   # its state_dict is plain arrays of numbers
    assert all(isinstance(v, np.ndarray) and not v.dtype.hasobject for v in trainer.state_dict().values())
    assert set(trainer.train_epoch()) == {*DigitsCNN.metrics, "learning_rate"}


def test_check_config_fills_defaults_and_names_a_bad_key(digits):
    assert DigitsCNN.check_config({})["channels"] == 8
    assert DigitsCNN.check_config({"batch_size": 32.0})["batch_size"] == 32
    for bad, start in (({"chanels": 4}, "chanels: not a hyperparameter of DigitsCNN"),
                       ({"channels": 2.5}, "channels: expected a whole number"),
                       ({"learning_rate": 0}, "learning_rate: must be > 0"),
                       ({"beta1": 1.0}, "beta1: must lie in [0, 1)")):
        with pytest.raises(ValueError) as caught:
            DigitsCNN.check_config(bad)
        assert str(caught.value).startswith(start)


def _epochs(trainer, n):
    return [trainer.train_epoch() for _ in range(n)]


@pytest.mark.parametrize("cls, config", [(DigitsCNN, SMALL), (DropoutMLP, {"learning_rate": 0.05})],
                         ids=["cnn-adamw-batchnorm", "mlp-sgd-dropout"])
def test_state_through_an_npz_continues_bit_identically_in_a_fresh_trainer(tmp_path, digits, cls, config):
    trainer = cls(config, digits, 7)
    _epochs(trainer, 2)
    save_checkpoint(tmp_path / "state.npz", trainer.state_dict(), {"epoch": 2})
    state, _ = load_checkpoint(tmp_path / "state.npz")   # allow_pickle=False
    fresh = cls(config, digits, 12345)                     # another seed: everything must come from the state
    fresh.load_state_dict(state)
    assert _epochs(fresh, 3) == _epochs(trainer, 3)        # every metric, every bit
    for key, value in trainer.state_dict().items():
        np.testing.assert_array_equal(fresh.state_dict()[key], value, err_msg=key)


def test_the_same_seed_gives_the_same_run_and_another_seed_another(digits):
    assert _epochs(DigitsCNN(SMALL, digits, 3), 2) == _epochs(DigitsCNN(SMALL, digits, 3), 2)
    assert _epochs(DigitsCNN(SMALL, digits, 3), 1) != _epochs(DigitsCNN(SMALL, digits, 4), 1)


def test_trials_sharing_a_process_do_not_disturb_each_others_randomness(digits):
    """A worker interleaves paused trials; dropout, NumPy and Python draws stay each trial's own."""
    alone = _epochs(DropoutMLP({}, digits, 1), 3)
    a, b = DropoutMLP({}, digits, 1), DropoutMLP({}, digits, 2)
    torch.manual_seed(99), np.random.seed(99), random.seed(99)   # the user's script's own draws
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    interleaved = []
    for _ in range(3):
        interleaved.append(a.train_epoch())
        b.train_epoch()
    assert interleaved == alone
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[2]
    np.testing.assert_array_equal(np.random.get_state()[1], before[1])


def test_a_nudged_learning_rate_trains_the_next_epoch(digits):
    nudged, steady = DigitsCNN(SMALL, digits, 0), DigitsCNN(SMALL, digits, 0)
    assert nudged.train_epoch() == steady.train_epoch()
    nudged.set_hyperparameters(learning_rate=1e-4, weight_decay=0.5, beta1=0.5)
    group = nudged.optimizer.param_groups[0]
    assert (group["lr"], group["weight_decay"], group["betas"]) == (1e-4, 0.5, (0.5, 0.999))
    second = nudged.train_epoch()
    assert second["learning_rate"] == 1e-4 and steady.train_epoch()["learning_rate"] == 3e-3
    # the change is part of the state: a fresh trainer restored from it trains on with the nudged values
    fresh = DigitsCNN(SMALL, digits, 0)
    fresh.load_state_dict(nudged.state_dict())
    assert fresh.optimizer.param_groups[0]["lr"] == 1e-4 and fresh.config["beta1"] == 0.5
    assert fresh.train_epoch() == nudged.train_epoch()


def test_the_rate_a_nudge_sets_is_the_rate_the_steps_use(digits):
    """After a 30x lower rate, the next epoch moves the weights far less than the same epoch unnudged."""
    def movement(trainer):
        before = [p.detach().clone() for p in trainer.model.parameters()]
        trainer.train_epoch()
        return sum(float((p.detach() - b).abs().sum()) for p, b in zip(trainer.model.parameters(), before))

    nudged, steady = DigitsCNN(SMALL, digits, 0), DigitsCNN(SMALL, digits, 0)
    nudged.train_epoch(), steady.train_epoch()
    nudged.set_hyperparameters(learning_rate=1e-4)
    assert movement(nudged) < movement(steady) / 5


def test_a_refused_change_changes_nothing(digits):
    trainer = DigitsCNN(SMALL, digits, 0)
    for bad in ({"channels": 8}, {"learning_rate": -1.0}, {"learning_rate": 1e-2, "batch_size": 0}):
        with pytest.raises(ValueError):
            trainer.set_hyperparameters(**bad)
    assert trainer.optimizer.param_groups[0]["lr"] == 3e-3 and trainer.config["batch_size"] == 128


def test_a_state_that_does_not_fit_is_refused_and_changes_nothing(digits):
    trainer = DigitsCNN(SMALL, digits, 0)
    trainer.train_epoch()
    before = trainer.state_dict()
    wider = DigitsCNN({**SMALL, "channels": 8}, digits, 0).state_dict()
    with pytest.raises(ValueError, match="model.0.weight has shape"):
        trainer.load_state_dict(wider)
    with pytest.raises(ValueError, match="missing"):
        trainer.load_state_dict({k: v for k, v in before.items() if k != "rng.torch"})
    for key, value in trainer.state_dict().items():
        np.testing.assert_array_equal(value, before[key], err_msg=key)


def test_evaluate_scores_rows_in_eval_mode_without_touching_the_state(digits):
    trainer = DigitsCNN(SMALL, digits, 0)
    trainer.train_epoch()
    before = trainer.state_dict()
    scores = trainer.evaluate(digits.x_valid, digits.y_valid)
    assert scores == {"loss": trainer.evaluate(digits.x_valid, digits.y_valid)["loss"],
                      "accuracy": scores["accuracy"]} and 0 < scores["accuracy"] <= 1
    assert all(np.array_equal(v, before[k]) for k, v in trainer.state_dict().items())


def test_reshuffle_changes_the_data_order_only(digits):
    a, b = DigitsCNN(SMALL, digits, 0), DigitsCNN(SMALL, digits, 0)
    b.reshuffle(5)
    assert a.train_epoch() != b.train_epoch()


def test_caviar_and_its_commands_never_import_torch():
    code = ("import sys, caviar, caviar.cli, caviar.examples, caviar.sweep.command, caviar.babysit.command\n"
            "from caviar.trainers import check_job\n"
            "check_job(__import__('caviar.config.job', fromlist=['x']).load_job('jobs/digits.toml'))\n"
            "assert 'torch' not in sys.modules, 'torch imported'")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=str(Path(__file__).resolve().parents[2]))
    assert done.returncode == 0, done.stderr
