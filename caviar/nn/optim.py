"""Mini-batch gradient descent update rules: sgd, momentum, rmsprop and adam.

All rules share one contract, `rule(w, dw, state, hp) -> (w, state)`: pure functions that return a
new parameter array and a new state, never touching their arguments. The state is a dict of plain
arrays (`init_state`), so it is saved and rolled back with the weights; its "step" counts the
updates taken (Adam's bias correction needs it).

`update_inplace` is the same math for the trainer's hot loop: it overwrites w and the state arrays
with NumPy ufuncs writing into `out=` buffers, in cache-sized chunks, and allocates nothing. Its
tests check that it agrees with the pure rules.

Conventions follow the deep-learning course the network comes from:
momentum   v = momentum * v + (1 - momentum) * dw;            w -= lr * v
rmsprop    s = beta2 * s + (1 - beta2) * dw^2;                w -= lr * dw / (sqrt(s) + epsilon)
adam       m, v as above with beta1, beta2; m^ = m / (1 - beta1^t), v^ = v / (1 - beta2^t);
           w -= lr * m^ / (sqrt(v^) + epsilon)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

State = dict[str, np.ndarray]

# The moment arrays each rule keeps, each shaped like the parameter.
SLOTS: dict[str, tuple[str, ...]] = {
    "sgd": (),
    "momentum": ("velocity",),
    "rmsprop": ("square_avg",),
    "adam": ("m", "v"),
}

# Elements per chunk of the in-place update: 256 KiB of float32 per array, so the five arrays one
# chunk touches (w, dw, two moments, scratch) stay in a 2 MiB L2 cache between the passes.
CHUNK = 65536


@dataclass(frozen=True)
class OptimHyper:
    """The hyperparameters of one update (learning_rate already decayed for this epoch)."""

    learning_rate: float
    beta1: float = 0.9  # adam: first-moment (momentum) average
    beta2: float = 0.999  # adam, rmsprop: second-moment (squared gradient) average
    momentum: float = 0.9  # momentum: gradient average
    epsilon: float = 1e-8  # keeps the rmsprop / adam division finite


def init_state(rule: str, w: np.ndarray) -> State:
    """Zeroed state for `rule` and a parameter shaped like w (step = 0)."""
    state = {slot: np.zeros_like(w) for slot in SLOTS[rule]}
    state["step"] = np.zeros((), dtype=np.int64)
    return state


def _next_step(state: State) -> np.ndarray:
    return np.asarray(state["step"] + 1, dtype=np.int64)


def sgd(w: np.ndarray, dw: np.ndarray, state: State, hp: OptimHyper) -> tuple[np.ndarray, State]:
    """Plain gradient descent: w - lr * dw."""
    return w - hp.learning_rate * dw, {"step": _next_step(state)}


def momentum(w: np.ndarray, dw: np.ndarray, state: State, hp: OptimHyper) -> tuple[np.ndarray, State]:
    """Gradient descent on an exponentially weighted average of the gradients."""
    v = hp.momentum * state["velocity"] + (1 - hp.momentum) * dw
    return w - hp.learning_rate * v, {"velocity": v, "step": _next_step(state)}


def rmsprop(w: np.ndarray, dw: np.ndarray, state: State, hp: OptimHyper) -> tuple[np.ndarray, State]:
    """Gradient divided by the root of an average of squared gradients (decay beta2)."""
    s = hp.beta2 * state["square_avg"] + (1 - hp.beta2) * dw * dw
    w = w - hp.learning_rate * dw / (np.sqrt(s) + hp.epsilon)
    return w, {"square_avg": s, "step": _next_step(state)}


def adam(w: np.ndarray, dw: np.ndarray, state: State, hp: OptimHyper) -> tuple[np.ndarray, State]:
    """Momentum and RMSprop together, with both averages bias-corrected for their zero start."""
    t = _next_step(state)
    m = hp.beta1 * state["m"] + (1 - hp.beta1) * dw
    v = hp.beta2 * state["v"] + (1 - hp.beta2) * dw * dw
    m_hat = m / (1 - hp.beta1 ** int(t))
    v_hat = v / (1 - hp.beta2 ** int(t))
    w = w - hp.learning_rate * m_hat / (np.sqrt(v_hat) + hp.epsilon)
    return w, {"m": m, "v": v, "step": t}


RULES: dict[str, Callable[[np.ndarray, np.ndarray, State, OptimHyper], tuple[np.ndarray, State]]] = {
    "sgd": sgd,
    "momentum": momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}


def update_inplace(
    rule: str, w: np.ndarray, dw: np.ndarray, state: State, step: int, hp: OptimHyper, scratch: np.ndarray
) -> None:
    """Apply `rule` in place: w and the moment arrays in `state` are overwritten, dw is kept.

    w, dw, the moments and scratch: 1-D float32 arrays of one length (the trainer keeps all its
    parameters in one flat vector, so one call updates the whole network). step: the update number
    this is, from 1 (the caller owns the counter). Scalars are Python floats so that NumPy keeps
    float32 instead of upcasting.
    """
    lr = float(hp.learning_rate)
    if rule == "adam":
        # Fold both bias corrections into two scalars: lr * m^ / (sqrt(v^) + eps)
        # == lr_t * m / (sqrt(v) + eps_t), which saves two passes over the arrays.
        c1 = 1.0 - float(hp.beta1) ** step
        c2 = 1.0 - float(hp.beta2) ** step
        lr, eps = lr * math.sqrt(c2) / c1, float(hp.epsilon) * math.sqrt(c2)
    else:
        eps = float(hp.epsilon)
    b1, b2, mom = float(hp.beta1), float(hp.beta2), float(hp.momentum)
    for lo in range(0, w.shape[0], CHUNK):
        s = slice(lo, lo + CHUNK)
        _update_chunk(rule, w[s], dw[s], {k: v[s] for k, v in state.items() if k != "step"},
                      lr, b1, b2, mom, eps, scratch[s])


def _update_chunk(rule: str, w: np.ndarray, dw: np.ndarray, slots: State, lr: float, b1: float,
                  b2: float, mom: float, eps: float, tmp: np.ndarray) -> None:
    if rule == "sgd":
        np.multiply(dw, lr, out=tmp)
        np.subtract(w, tmp, out=w)
        return
    if rule == "momentum":
        v = slots["velocity"]
        _average_into(v, dw, mom, tmp)
        np.multiply(v, lr, out=tmp)
        np.subtract(w, tmp, out=w)
        return
    if rule == "rmsprop":
        s = slots["square_avg"]
        np.square(dw, out=tmp)
        _average_into(s, tmp, b2, tmp)
        num = dw
    else:  # adam
        m, s = slots["m"], slots["v"]
        _average_into(m, dw, b1, tmp)
        np.square(dw, out=tmp)
        _average_into(s, tmp, b2, tmp)
        num = m
    np.sqrt(s, out=tmp)
    np.add(tmp, eps, out=tmp)
    np.divide(num, tmp, out=tmp)
    np.multiply(tmp, lr, out=tmp)
    np.subtract(w, tmp, out=w)


def _average_into(avg: np.ndarray, x: np.ndarray, beta: float, tmp: np.ndarray) -> None:
    """avg = beta * avg + (1 - beta) * x, in place; tmp may be x itself."""
    np.multiply(avg, beta, out=avg)
    np.multiply(x, 1.0 - beta, out=tmp)
    np.add(avg, tmp, out=avg)
