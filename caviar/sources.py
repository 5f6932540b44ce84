"""Data from a Python function: `[data] source = "package.module:function"` (or `caviar.sweep(data=f)`).

The function is called once, on the driver, before any work, with the job's `[data] options` as
keyword arguments. It returns one of:

- a `caviar.Dataset`, used as it is (its splits checked: shapes, finite values, labels, the task);
- a tuple `(x, y)` of arrays: x (n, d...) numbers, y (n,) class labels or, for `[model] task =
  "regression"`, numbers;
- a pandas DataFrame holding numeric feature columns and the target column `[data] target`.

Arrays and DataFrames are split and standardized as a file is (`caviar.data.split_arrays`, seeded by
`[data] seed`). Whatever is wrong — the function raises, returns another type, shapes that do not
match, a NaN — is one `ValueError` line naming `data.source`. Ray's workers get the Dataset through
the object store: the user's function runs on the driver only.

`friedman` is a regression data function that ships with caviar (`source = "caviar.sources:friedman"`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from caviar.config.messages import one_line
from caviar.data import Dataset, encode_classes, regression_target, split_arrays
from caviar.datafiles import frame_arrays, xy_arrays
from caviar.importing import is_import_name, resolve

SPLITS = ("train", "valid", "test")


def is_function_source(source: Any) -> bool:
    """Whether a [data] source names a function ("package.module:function") rather than data."""
    return is_import_name(source)


def load_function_source(spec: Any, task: str) -> Dataset:
    """The Dataset the [data] section `spec` (a DataSpec naming a function) gives for `task`."""
    label = spec.source
    function = resolve(label, "data.source", "function")
    if not callable(function):
        raise ValueError(f"data.source: {label} is not a function (it is a {type(function).__name__})")
    try:
        result = function(**spec.options)
    except Exception as exc:   # the user's code: any failure is a finding about the data, told in one line
        detail = one_line(exc)
        raise ValueError(f"data.source: {label} raised {type(exc).__name__}" + (f": {detail}" if detail else "")) \
            from exc
    return as_dataset(result, spec, task, label)


def as_dataset(result: Any, spec: Any, task: str, label: str) -> Dataset:
    """What a data function returned, as a checked Dataset (see the module's docstring)."""
    if isinstance(result, Dataset):
        return check_dataset(result, task, label)
    if _is_frame(result):
        x, y, names = frame_arrays(result, label, spec.target)
    elif isinstance(result, tuple) and len(result) == 2:
        x, y, _ = xy_arrays(np.asarray(result[0]), np.asarray(result[1]), label)
        names = tuple(f"x{j}" for j in range(x.shape[1]))
    else:
        raise ValueError(f"data.source: {label} returned {_kind(result)}; expected a caviar.Dataset, a tuple (x, y) "
                         f"of arrays, or a pandas DataFrame with the target column {spec.target!r}")
    what = f"column {spec.target!r}" if _is_frame(result) else "y"
    y = regression_target(y, label, what) if task == "regression" else encode_classes(y, label, what)
    split_seed = np.random.SeedSequence(int(spec.seed)).spawn(2)[1]   # load_dataset's split stream
    name = label.rpartition(":")[2]
    return split_arrays(x, y, names, name, label, spec.valid_fraction, spec.test_fraction, split_seed)


def check_dataset(data: Dataset, task: str, label: str) -> Dataset:
    """A Dataset a function built itself, checked as caviar's own are built; returned unchanged."""
    where = f"data.source: {label} returned a Dataset whose"
    if task == "regression" and data.n_classes != 0:
        raise ValueError(f"{where} n_classes is {data.n_classes}; model.task = 'regression' needs n_classes = 0 "
                         "(float targets)")
    if task != "regression" and (isinstance(data.n_classes, bool) or not isinstance(data.n_classes, int)
                                 or data.n_classes < 2):
        raise ValueError(f"{where} n_classes is {data.n_classes!r}; classification needs an integer >= 2 "
                         "(for regression set [model] task = 'regression' and n_classes = 0)")
    width = None
    for split in SPLITS:
        x, y = np.asarray(getattr(data, f"x_{split}")), np.asarray(getattr(data, f"y_{split}"))
        if x.ndim != 2 or y.shape != (len(x),) or x.dtype.kind not in "biuf":
            raise ValueError(f"{where} x_{split} and y_{split} have shapes {x.shape} and {y.shape} (dtype "
                             f"{x.dtype}); expected numbers (n, d) and (n,)")
        if width is not None and x.shape[1] != width:
            raise ValueError(f"{where} x_{split} has {x.shape[1]} features, x_train {width}")
        width = x.shape[1]
        if not np.isfinite(x).all() or (task == "regression" and not np.isfinite(y.astype(np.float64)).all()):
            raise ValueError(f"{where} x_{split} or y_{split} holds a NaN or an infinite value")
        if task != "regression" and len(y) and (y.dtype.kind not in "iu" or y.min() < 0 or y.max() >= data.n_classes):
            raise ValueError(f"{where} y_{split} is not class indices in [0, {data.n_classes}) (dtype {y.dtype})")
    if len(data.x_train) == 0 or len(data.x_valid) == 0:
        raise ValueError(f"{where} {'x_train' if len(data.x_train) == 0 else 'x_valid'} has no rows")
    return data


def friedman(n_samples: int = 1000, n_features: int = 10, noise: float = 1.0, seed: int = 0
             ) -> tuple[np.ndarray, np.ndarray]:
    """Friedman's regression problem #1 (1991): x (n_samples, n_features) uniform on [0, 1], float64,
    y (n_samples,) = 10 sin(pi x0 x1) + 20 (x2 - 0.5)^2 + 10 x3 + 5 x4 + noise * N(0, 1); the other
    features are noise. A small MLP reaches R^2 about 0.9 on it; a linear model about 0.75."""
    if isinstance(n_samples, bool) or not isinstance(n_samples, int) or not 10 <= n_samples <= 10_000_000:
        raise ValueError(f"n_samples must be an integer in [10, 10,000,000], got {n_samples!r}")
    if isinstance(n_features, bool) or not isinstance(n_features, int) or not 5 <= n_features <= 10_000:
        raise ValueError(f"n_features must be an integer in [5, 10,000] (the target reads 5), got {n_features!r}")
    if not isinstance(noise, (int, float)) or not math.isfinite(noise) or noise < 0:
        raise ValueError(f"noise must be a finite number >= 0, got {noise!r}")
    rng = np.random.default_rng(seed)
    x = rng.uniform(size=(n_samples, n_features))
    y = 10 * np.sin(np.pi * x[:, 0] * x[:, 1]) + 20 * (x[:, 2] - 0.5) ** 2 + 10 * x[:, 3] + 5 * x[:, 4]
    return x, y + noise * rng.standard_normal(n_samples)


def _is_frame(value: Any) -> bool:
    """A pandas DataFrame, told without importing pandas for those who return arrays."""
    return type(value).__name__ == "DataFrame" and type(value).__module__.startswith("pandas")


def _kind(value: Any) -> str:
    if isinstance(value, tuple):
        return f"a tuple of {len(value)} items"
    return f"a {type(value).__module__}.{type(value).__qualname__}".replace("a builtins.", "a ")
