"""The update rules: each steps downhill, Adam's first step is bias-corrected, the rules are pure,
and the in-place version the trainer uses agrees with them."""

from __future__ import annotations

import numpy as np
import pytest

from caviar.nn import optim
from caviar.nn.optim import OptimHyper

RULES = ["sgd", "momentum", "rmsprop", "adam"]


def quadratic(w: np.ndarray) -> tuple[float, np.ndarray]:
    """f(w) = sum((w - 3)^2 * scale) with its gradient: a bowl with its floor at w = 3."""
    scale = np.linspace(0.5, 2.0, w.size).reshape(w.shape)
    return float(np.sum(scale * (w - 3) ** 2)), 2 * scale * (w - 3)


@pytest.mark.parametrize("rule", RULES)
def test_every_rule_steps_downhill(rule):
    w = np.array([[0.0, 1.0], [5.0, -2.0]])
    state = optim.init_state(rule, w)
    loss, dw = quadratic(w)
    new_w, new_state = optim.RULES[rule](w, dw, state, OptimHyper(learning_rate=0.01))
    assert np.all(np.sign(new_w - w) == -np.sign(dw))  # every coordinate moved against its gradient
    assert quadratic(new_w)[0] < loss
    assert int(new_state["step"]) == 1
    w, state = new_w, new_state
    for _ in range(300):
        w, state = optim.RULES[rule](w, quadratic(w)[1], state, OptimHyper(learning_rate=0.05))
    assert quadratic(w)[0] < 0.01 * loss  # and keeps going to the floor
    assert int(state["step"]) == 301


@pytest.mark.parametrize("rule", RULES)
def test_rules_are_pure(rule):
    w, dw = np.ones(3), np.array([0.5, -1.0, 2.0])
    state = optim.init_state(rule, w)
    state["step"] = np.array(4)
    for slot in optim.SLOTS[rule]:
        state[slot] = np.array([0.1, 0.2, 0.3])
    copies = {k: v.copy() for k, v in state.items()}
    optim.RULES[rule](w, dw, state, OptimHyper(learning_rate=0.1))
    np.testing.assert_array_equal(w, np.ones(3))
    np.testing.assert_array_equal(dw, [0.5, -1.0, 2.0])
    for key, value in copies.items():
        np.testing.assert_array_equal(state[key], value)


def test_adam_first_step_is_bias_corrected():
    # After one step m^ = dw and v^ = dw^2, so every coordinate moves by lr * dw / (|dw| + eps):
    # about lr whatever the gradient's size. Uncorrected it would move by 0.1 / sqrt(0.001) = 3.16 lr.
    w, dw = np.zeros(4), np.array([1e-3, -2.0, 50.0, -0.3])
    hp = OptimHyper(learning_rate=0.01, beta1=0.9, beta2=0.999, epsilon=1e-8)
    new_w, state = optim.adam(w, dw, optim.init_state("adam", w), hp)
    np.testing.assert_allclose(new_w, -0.01 * dw / (np.abs(dw) + 1e-8), rtol=1e-12)
    np.testing.assert_allclose(state["m"], 0.1 * dw)
    np.testing.assert_allclose(state["v"], 0.001 * dw * dw)


def test_adam_second_step_corrects_with_t_equal_two():
    w, hp = np.zeros(1), OptimHyper(learning_rate=0.1, beta1=0.5, beta2=0.75, epsilon=0.0)
    g1, g2 = np.array([1.0]), np.array([3.0])
    w1, s1 = optim.adam(w, g1, optim.init_state("adam", w), hp)
    w2, _ = optim.adam(w1, g2, s1, hp)
    m = (0.5 * 0.5 * 1 + 0.5 * 3) / (1 - 0.5**2)
    v = (0.75 * 0.25 * 1 + 0.25 * 9) / (1 - 0.75**2)
    np.testing.assert_allclose(w2 - w1, -0.1 * m / np.sqrt(v))


def test_momentum_and_rmsprop_follow_the_course_formulas():
    w, dw = np.array([1.0]), np.array([2.0])
    hp = OptimHyper(learning_rate=0.1, momentum=0.9, beta2=0.99, epsilon=0.0)
    new_w, state = optim.momentum(w, dw, {"velocity": np.array([1.0]), "step": np.array(0)}, hp)
    np.testing.assert_allclose(state["velocity"], 0.9 * 1.0 + 0.1 * 2.0)
    np.testing.assert_allclose(new_w, 1.0 - 0.1 * 1.1)
    new_w, state = optim.rmsprop(w, dw, {"square_avg": np.array([1.0]), "step": np.array(0)}, hp)
    np.testing.assert_allclose(state["square_avg"], 0.99 + 0.01 * 4)
    np.testing.assert_allclose(new_w, 1.0 - 0.1 * 2.0 / np.sqrt(1.03))


@pytest.mark.parametrize("rule", RULES)
def test_inplace_update_agrees_with_the_pure_rule(rule):
    rng = np.random.default_rng(7)
    n = optim.CHUNK + 37  # crosses a chunk boundary
    w = rng.normal(size=n).astype(np.float32)
    hp = OptimHyper(learning_rate=0.01, beta1=0.8, beta2=0.99, momentum=0.7, epsilon=1e-6)
    ref_w, ref_state = w.copy(), optim.init_state(rule, w)
    fast_w, fast_state = w.copy(), {slot: np.zeros_like(w) for slot in optim.SLOTS[rule]}
    scratch = np.empty_like(w)
    for step in range(1, 6):
        dw = rng.normal(size=n).astype(np.float32)
        ref_w, ref_state = optim.RULES[rule](ref_w, dw, ref_state, hp)
        dw_before = dw.copy()
        optim.update_inplace(rule, fast_w, dw, fast_state, step, hp, scratch)
        np.testing.assert_array_equal(dw, dw_before)  # the gradient is left alone
    assert fast_w.dtype == np.float32 and all(v.dtype == np.float32 for v in fast_state.values())
    np.testing.assert_allclose(fast_w, ref_w, rtol=1e-5, atol=1e-6)
    for slot in optim.SLOTS[rule]:
        np.testing.assert_allclose(fast_state[slot], ref_state[slot], rtol=1e-5, atol=1e-7)
