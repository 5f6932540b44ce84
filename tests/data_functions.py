"""Data functions for tests of `[data] source = "module:function"`: good ones of each return type, and
bad ones (each mistake a user can make). Jobs name them as `source = "tests.data_functions:NAME"`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from caviar.data import Dataset


def _points(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, (x[:, 0] + x[:, 1] > 0).astype(np.int64)


def arrays(n: int = 120) -> tuple[np.ndarray, np.ndarray]:
    """(x, y) of two classes; `n` comes from [data] options."""
    return _points(n)


def frame() -> pd.DataFrame:
    """Three numeric features and a class column named "kind" (strings)."""
    x, y = _points()
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "kind": np.where(y == 1, "up", "down")})


def dataset() -> Dataset:
    """A Dataset built by hand."""
    x, y = _points()
    x = x.astype(np.float32)
    return Dataset(x[:80], y[:80], x[80:], y[80:], x[:0], y[:0], n_classes=2, name="by-hand")


def line(n: int = 200) -> tuple[np.ndarray, np.ndarray]:
    """A regression set: y = 3 x0 - 2 x1 + 100 (+ a little noise), in units far from 1."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(n, 2))
    return x, 3 * x[:, 0] - 2 * x[:, 1] + 100 + 0.1 * rng.standard_normal(n)


def raises() -> None:
    raise RuntimeError("the database is down")


def wrong_type() -> list[int]:
    return [1, 2, 3]


def mismatched() -> tuple[np.ndarray, np.ndarray]:
    x, y = _points()
    return x, y[:-1]


def one_dimensional() -> tuple[np.ndarray, np.ndarray]:
    x, y = _points()
    return x[:, 0], y


def with_nan() -> tuple[np.ndarray, np.ndarray]:
    x, y = _points()
    x[7, 2] = np.nan
    return x, y


def bad_dataset() -> Dataset:
    """x_valid with another number of features than x_train."""
    x, y = _points()
    x = x.astype(np.float32)
    return Dataset(x[:80], y[:80], x[80:, :2], y[80:], x[:0], y[:0], n_classes=2, name="bad")


NOT_A_FUNCTION = 42
