"""Optimizer and RNG states as named arrays and back: pure functions, checked against torch itself."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch

from caviar.torch import state as flat


def _stepped(optimizer_class, **options):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    optimizer = optimizer_class([{"params": model[0].parameters()}, {"params": model[1].parameters(), "lr": 0.5}],
                                lr=0.01, **options)
    for _ in range(2):
        optimizer.zero_grad()
        model(torch.randn(5, 3)).square().sum().backward()
        optimizer.step()
    return model, optimizer


@pytest.mark.parametrize("optimizer_class, options", [
    (torch.optim.AdamW, {"betas": (0.8, 0.99)}), (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
    (torch.optim.RMSprop, {"centered": True}), (torch.optim.Adagrad, {})])
def test_an_optimizer_state_round_trips_through_plain_arrays(optimizer_class, options):
    model, optimizer = _stepped(optimizer_class, **options)
    arrays = flat.flatten_optimizer(optimizer.state_dict())
    assert all(isinstance(a, np.ndarray) and not a.dtype.hasobject for a in arrays.values())
    assert "optim.group.1.lr" in arrays and float(arrays["optim.group.1.lr"]) == 0.5
    fresh = optimizer_class([{"params": model[0].parameters()}, {"params": model[1].parameters()}], lr=0.01)
    restored = flat.unflatten_optimizer(arrays, fresh.state_dict(), torch)
    fresh.load_state_dict(restored)
    expected, got = optimizer.state_dict(), fresh.state_dict()
    assert got["param_groups"] == expected["param_groups"]
    assert expected["state"].keys() == got["state"].keys()
    for index, slots in expected["state"].items():
        for key, value in slots.items():
            assert torch.equal(torch.as_tensor(got["state"][index][key]), torch.as_tensor(value)), (index, key)


def test_arrays_naming_a_parameter_or_group_the_optimizer_lacks_are_refused():
    _, optimizer = _stepped(torch.optim.AdamW)
    arrays = flat.flatten_optimizer(optimizer.state_dict())
    for bad in ({"optim.state.9.exp_avg": np.zeros(2)}, {"optim.group.5.lr": np.array(0.1)}):
        with pytest.raises(ValueError, match="names no"):
            flat.unflatten_optimizer({**arrays, **bad}, optimizer.state_dict(), torch)


def test_numpy_and_python_generators_round_trip_with_a_cached_gaussian():
    legacy = np.random.RandomState(3)
    legacy.standard_normal()   # leaves a cached Gaussian in the state
    python = random.Random(4)
    python.gauss(0, 1)
    np_state, py_state = legacy.get_state(), python.getstate()
    back_np = flat.decode_numpy_rng(flat.encode_numpy_rng(np_state))
    back_py = flat.decode_python_rng(flat.encode_python_rng(py_state))
    again = np.random.RandomState()
    again.set_state(back_np)
    assert again.standard_normal(3).tolist() == legacy.standard_normal(3).tolist()
    other = random.Random()
    other.setstate(back_py)
    assert [other.gauss(0, 1) for _ in range(3)] == [python.gauss(0, 1) for _ in range(3)]
