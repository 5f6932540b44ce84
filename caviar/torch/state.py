"""A PyTorch training state as named plain NumPy arrays, and back: what `TorchTrainer.state_dict` saves.

Pure functions over what PyTorch hands out (`optimizer.state_dict()`, the RNG states), so a
checkpoint is an `.npz` of numbers read with `allow_pickle=False`, never a pickled `torch.save`.

Names (one array each):

    optim.state.<param>.<key>   a tensor of the optimizer's per-parameter state (Adam's exp_avg, step...)
    optim.value.<param>.<key>   a plain number in that state (some optimizers keep ints or floats)
    optim.group.<group>.<key>   a number, flag, text or tuple of numbers of a parameter group (lr, betas...)
    rng.torch                   torch's CPU generator, uint8 (what torch.get_rng_state gives)
    rng.numpy.keys / .pos / .gauss   NumPy's legacy global MT19937: uint32 (624,), int64, float64 (2,)
    rng.python.state / .gauss   Python's `random`: uint64 (625,) words, float64 (2,) [has_gauss, gauss]
"""

from __future__ import annotations

import copy
import numbers
from typing import Any, Mapping

import numpy as np

STATE, VALUE, GROUP = "optim.state.", "optim.value.", "optim.group."


def tensor_array(tensor: Any) -> np.ndarray:
    """A detached CPU copy of `tensor` as a NumPy array (the dtype kept)."""
    return tensor.detach().to("cpu", copy=True).numpy()


def _group_value(value: Any) -> np.ndarray | None:
    """A parameter group's value as an array; None for what a fresh optimizer rebuilds (None, the
    `params` indices, lists of names)."""
    if isinstance(value, (bool, numbers.Real, str)) and not isinstance(value, np.ndarray):
        return np.array(value)
    if isinstance(value, tuple) and value and all(isinstance(v, numbers.Real) for v in value):
        return np.array(value)
    if hasattr(value, "detach"):   # a tensor learning rate
        return tensor_array(value)
    return None


def flatten_optimizer(state: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """`optimizer.state_dict()` as named arrays (see the module's docstring for the names)."""
    arrays: dict[str, np.ndarray] = {}
    for index, slots in state["state"].items():
        for key, value in slots.items():
            if hasattr(value, "detach"):
                arrays[f"{STATE}{index}.{key}"] = tensor_array(value)
            elif isinstance(value, numbers.Real):
                arrays[f"{VALUE}{index}.{key}"] = np.array(value)
            elif value is not None:
                raise ValueError(f"optimizer state {index}.{key} is {type(value).__name__}: caviar saves numbers "
                                 "and tensors only")
    for g, group in enumerate(state["param_groups"]):
        for key, value in group.items():
            if key != "params" and (array := _group_value(value)) is not None:
                arrays[f"{GROUP}{g}.{key}"] = array
    return arrays


def _plain(array: np.ndarray, like: Any, torch: Any) -> Any:
    """An array back as the kind of value the fresh optimizer holds there."""
    if hasattr(like, "detach"):
        return torch.as_tensor(array)
    if isinstance(like, tuple):
        return tuple(np.asarray(array).tolist())
    return np.asarray(array).item()


def unflatten_optimizer(arrays: Mapping[str, np.ndarray], template: Mapping[str, Any], torch: Any) -> dict[str, Any]:
    """An `optimizer.state_dict()` from `flatten_optimizer`'s arrays, on the structure of `template`
    (a freshly built optimizer's state_dict: its groups and parameter indices). Keys of `arrays`
    that are not the optimizer's are ignored. Raises ValueError on a group or parameter it lacks."""
    result = copy.deepcopy(dict(template))
    groups, state = result["param_groups"], {}
    indices = {index for group in groups for index in group["params"]}
    for name, array in arrays.items():
        if name.startswith((STATE, VALUE)):
            where, _, key = name.partition(".")[2].partition(".")[2].partition(".")
            index = int(where) if where.isdigit() else None
            if index not in indices:
                raise ValueError(f"state: {name} names no parameter of this optimizer")
            value = torch.from_numpy(np.array(array)) if name.startswith(STATE) else np.asarray(array).item()
            state.setdefault(index, {})[key] = value
        elif name.startswith(GROUP):
            where, _, key = name[len(GROUP):].partition(".")
            if not where.isdigit() or int(where) >= len(groups):
                raise ValueError(f"state: {name} names no parameter group of this optimizer")
            groups[int(where)][key] = _plain(array, groups[int(where)].get(key), torch)
    result["state"] = state
    return result


# --- RNG states -------------------------------------------------------------------------------------

def encode_numpy_rng(state: tuple) -> dict[str, np.ndarray]:
    """`np.random.get_state()` (legacy MT19937) as arrays."""
    _, keys, pos, has_gauss, gauss = state
    return {"rng.numpy.keys": np.asarray(keys, dtype=np.uint32).copy(), "rng.numpy.pos": np.array(pos, np.int64),
            "rng.numpy.gauss": np.array([has_gauss, gauss], np.float64)}


def decode_numpy_rng(arrays: Mapping[str, np.ndarray]) -> tuple:
    has_gauss, gauss = (float(v) for v in arrays["rng.numpy.gauss"])
    return ("MT19937", np.asarray(arrays["rng.numpy.keys"], np.uint32).copy(), int(arrays["rng.numpy.pos"]),
            int(has_gauss), gauss)


def encode_python_rng(state: tuple) -> dict[str, np.ndarray]:
    """`random.getstate()` (version 3: 624 words and an index, and the cached Gaussian) as arrays."""
    version, words, gauss = state
    if version != 3:
        raise ValueError(f"random.getstate() version {version}: caviar saves version 3")
    return {"rng.python.state": np.array(words, np.uint64),
            "rng.python.gauss": np.array([gauss is not None, 0.0 if gauss is None else gauss], np.float64)}


def decode_python_rng(arrays: Mapping[str, np.ndarray]) -> tuple:
    has_gauss, gauss = (float(v) for v in arrays["rng.python.gauss"])
    return 3, tuple(int(w) for w in arrays["rng.python.state"]), gauss if has_gauss else None
