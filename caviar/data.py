"""Data sets: the built-in ones (digits, spiral, blobs) and the user's files, split and standardized.

`load_dataset(source, ...)` returns a `Dataset`: seeded train / valid / test splits (stratified by
class) with the features standardized by the training split's mean and standard deviation (float32,
C order) and the classes as int64 indices 0..K-1, or, for `task="regression"`, the target as float32
numbers. The same arguments always give the same arrays. Sources:

- ``"digits"``: the real 8x8 handwritten digits, 1,797 images of 10 classes, pixels 0..16: the test set
  of the UCI "Optical Recognition of Handwritten Digits" data set (optdigits; E. Alpaydin and C.
  Kaynak, 1998; https://archive.ics.uci.edu/dataset/80, CC BY 4.0), from the copy bundled with
  scikit-learn (BSD-3-Clause), so caviar needs neither scikit-learn nor a network: caviar/datasets/
  digits.npz (``x``: uint8 (1797, 64), ``y``: uint8 (1797,)) was made once by ``d = load_digits();
  np.savez_compressed(path, x=d.data.astype(uint8), y=d.target.astype(uint8))``.
- ``"spiral"``: the classic K-arm spiral in 2-D, which no linear classifier separates (see OPTIONS).
- ``"blobs"``: Gaussian clusters of any size (20,000 x 784 in well under a second), for scale tests.
- a ``.csv`` or ``.parquet`` file (or folder of Parquet parts): feature columns plus the target column,
  whose classes (strings or integers) become 0..K-1 in sorted order; or an ``.npz`` file with arrays
  ``x`` (n, d...) and ``y`` (n,), read without pickle (``target`` is not used).

Spiral and blobs are drawn from ``seed`` too, on a stream independent of the split's. (A data
function, "module:function", is `caviar.sources`', which then splits its arrays with `split_arrays`.)

Every problem with the input is one ``ValueError`` line that starts with the job field at fault and
names the file, the column and the bad value: ``data.source: d.csv: column 'age' is not numeric (found
'abc' at row 3)``. Rows are counted from 0, as pandas does, not counting a CSV header.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from caviar.config.messages import one_line, show_value
from caviar.config.values import is_number
from caviar.datafiles import read_npz, read_table

BUILTINS = ("blobs", "digits", "spiral")
FILE_TYPES = (".csv", ".npz", ".parquet")
# Option defaults of each built-in; their keys are the valid option names.
OPTIONS: dict[str, dict[str, Any]] = {
    "blobs": {"n_samples": 1000, "n_features": 10, "n_classes": 3, "spread": 1.0},
    "digits": {},
    "spiral": {"n_per_class": 200, "n_classes": 3, "noise": 0.2},
}
# More generated values than this (1 GiB of float32) is surely a typo, not a scale test.
MAX_GENERATED_VALUES = 2**28
DIGITS_FEATURES = tuple(f"pixel_{row}_{col}" for row in range(8) for col in range(8))


@dataclass(frozen=True, eq=False)
class Dataset:
    """A data set, split and ready to train on.

    x_*: (n, d) float32, standardized with the training split's mean and standard deviation.
    y_*: (n,) int64 class indices in [0, n_classes); for regression (n_classes == 0) float32 targets,
    as given (not standardized). The test split may have 0 rows.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_valid: np.ndarray
    y_valid: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    n_classes: int
    name: str
    feature_names: tuple[str, ...] = ()

    @property
    def task(self) -> str:
        return "regression" if self.n_classes == 0 else "classification"


def load_dataset(source: str | os.PathLike[str], *, target: str = "label", valid_fraction: float = 0.2,
                 test_fraction: float = 0.0, seed: int = 0, options: Mapping[str, Any] | None = None,
                 task: str = "classification") -> Dataset:
    """Load a built-in data set or a user's file, split it by class and standardize it.

    source: "digits", "spiral", "blobs", or a path to a .csv, .parquet or .npz file.
    target: the target column of a .csv or .parquet file.
    valid_fraction: in (0, 1); test_fraction: in [0, 1); their sum < 1. A split with a positive
        fraction holds one row of every class that has enough rows for it, then round(fraction * n).
    seed: non-negative integer; the split (and the points of spiral and blobs) depend only on it.
    options: sizes of spiral / blobs (see OPTIONS); files and digits take none.
    task: "classification" (the target holds classes) or "regression" (numbers; a file source only).
    Raises ValueError "data.<field>: <problem>" for any bad argument or file.
    """
    _check_arguments(target, valid_fraction, test_fraction, seed, options)
    make_seed, split_seed = np.random.SeedSequence(int(seed)).spawn(2)
    if task == "regression" and isinstance(source, str) and source in BUILTINS:
        raise ValueError(f"data.source: {source} is a classification data set; model.task = 'regression' needs "
                         "numeric targets (a file, or a data function)")
    x, y, names, name = _read_source(source, target, options or {}, np.random.default_rng(make_seed), task)
    return split_arrays(x, y, names, name, str(source), valid_fraction, test_fraction, split_seed)


def split_arrays(x: np.ndarray, y: np.ndarray, names: tuple[str, ...], name: str, label: str, valid_fraction: float,
                 test_fraction: float, split_seed: Any) -> Dataset:
    """The Dataset of checked arrays: x (n, d) finite numbers; y (n,) int64 classes 0..K-1 (stratified
    splits) or float32 regression targets (random splits). split_seed: a SeedSequence or an int."""
    regression = y.dtype.kind == "f"
    groups = np.zeros(len(y), dtype=np.int64) if regression else y
    splits = stratified_split(groups, valid_fraction, test_fraction, np.random.default_rng(split_seed))
    if len(splits[1]) == 0:
        raise ValueError(f"data.source: {label}: no class has the 2 rows needed to fill the validation split")
    x_train, x_valid, x_test = standardize(x, splits)
    y_train, y_valid, y_test = (y[rows] for rows in splits)
    n_classes = 0 if regression else int(y.max()) + 1
    return Dataset(x_train, y_train, x_valid, y_valid, x_test, y_test, n_classes, name, names)


def stratified_split(y: np.ndarray, valid_fraction: float, test_fraction: float,
                     rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row indices (int64, random order) of the train, valid and test splits; every row in exactly one.

    y: (n,) integer class labels. Each class is spread over the splits in proportion. A split with a
    positive fraction (train always) first gets one row of every class, as far as the class has rows
    (in the order train, valid, test), so small classes are seen everywhere they can be; the rest is
    apportioned by largest remainder so valid and test hold round(fraction * n) rows when the
    one-per-class rows allow it.
    """
    n = len(y)
    classes, sizes = np.unique(y, return_counts=True)
    fractions = (1.0 - valid_fraction - test_fraction, valid_fraction, test_fraction)
    counts = np.zeros((len(classes), 3), dtype=np.int64)  # rows of class k in split s
    for s, fraction in enumerate(fractions):
        if fraction > 0:
            counts[:, s] = sizes > counts.sum(axis=1)
    spare = sizes - counts.sum(axis=1)
    for s in (2, 1):  # train takes whatever valid and test leave
        extra = math.floor(fractions[s] * n + 0.5) - int(counts[:, s].sum())
        counts[:, s] += _apportion(extra, spare, sizes - counts.sum(axis=1))
    counts[:, 0] += sizes - counts.sum(axis=1)

    # Shuffle, then group by class (stable sort keeps the shuffled order inside a class) and cut each
    # class's run of rows at its split counts.
    rows = rng.permutation(n)
    rows = rows[np.argsort(y[rows], kind="stable")]
    k = np.searchsorted(classes, y[rows])
    rank = np.arange(n) - (np.cumsum(sizes) - sizes)[k]
    cuts = np.cumsum(counts, axis=1)
    split = (rank >= cuts[k, 0]).astype(np.int64) + (rank >= cuts[k, 1])
    return tuple(rng.permutation(rows[split == s]) for s in range(3))  # type: ignore[return-value]


def _apportion(total: int, weights: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """`total` cut into integers proportional to `weights` (K,), each at most its cap (K,)."""
    total = min(total, int(caps.sum()))
    out = np.zeros(len(weights), dtype=np.int64)
    if total <= 0:  # (weights >= caps, so their sum is positive past here)
        return out
    share = total * weights / weights.sum()
    out[:] = np.minimum(np.floor(share), caps)
    # The rows that rounding leaves go to the largest remainders first (ties: lower class first).
    order = np.argsort(out - share, kind="stable")
    while out.sum() < total:
        for k in order[out[order] < caps[order]][: total - out.sum()]:
            out[k] += 1
    return out


def standardize(x: np.ndarray, splits: tuple[np.ndarray, ...]) -> list[np.ndarray]:
    """The rows of each split (index arrays, the first is train) scaled to the train mean 0, std 1.

    x: (n, d) any real dtype. Returns one (n_split, d) float32 C array per split. The arithmetic is in
    float64 for float64 input (a large offset would eat float32's digits) and float32 otherwise, which
    keeps big float32 sets fast. A column constant on the training rows (the border pixels of digits)
    is only centred: dividing by its zero (or rounding-noise) std would blow up the other splits.
    """
    work = np.float64 if x.dtype == np.float64 else np.float32
    parts = [np.asarray(x[rows], dtype=work) for rows in splits]  # fancy indexing copies: safe to edit
    train = parts[0]
    constant = train.max(axis=0) == train.min(axis=0)
    mean = train.mean(axis=0, dtype=np.float64)
    mean[constant] = train[0, constant]
    train -= mean.astype(work)
    std = np.sqrt(np.mean(np.square(train), axis=0, dtype=np.float64))
    std[constant] = 1.0
    for part in parts[1:]:
        part -= mean.astype(work)
    for part in parts:
        part /= std.astype(work)
    return [np.ascontiguousarray(part, dtype=np.float32) for part in parts]


def make_spiral(n_per_class: int, n_classes: int, noise: float,
                rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The K-arm spiral of CS231n: x (n, 2) float32 in the unit disc, y (n,) int64, n = n_per_class * K.

    Arm k's points run from the centre to radius 1 while turning 4 radians, starting at angle
    2*pi*k/K; `noise` is the standard deviation of the angle, in radians.
    """
    radius = np.tile(np.linspace(0.0, 1.0, n_per_class), n_classes)
    y = np.repeat(np.arange(n_classes, dtype=np.int64), n_per_class)
    angle = 2 * np.pi * y / n_classes + 4.0 * radius + noise * rng.standard_normal(len(y))
    x = np.column_stack([radius * np.sin(angle), radius * np.cos(angle)]).astype(np.float32)
    return x, y


def make_blobs(n_samples: int, n_features: int, n_classes: int, spread: float,
               rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian clusters: x (n_samples, n_features) float32, y (n_samples,) int64, classes balanced.

    Centres are standard normal points; each cluster's points scatter around its centre with standard
    deviation `spread` per feature (so spread 1 overlaps a lot in 2-D and hardly at all in 784-D).
    """
    centres = rng.standard_normal((n_classes, n_features), dtype=np.float32)
    y = np.arange(n_samples, dtype=np.int64) % n_classes
    x = rng.standard_normal((n_samples, n_features), dtype=np.float32)
    x *= np.float32(spread)  # in place: a 20,000 x 784 set makes no temporaries
    x += centres[y]
    return x, y


def _check_arguments(target: Any, valid_fraction: Any, test_fraction: Any, seed: Any, options: Any) -> None:
    if not isinstance(target, str) or not target:
        raise ValueError(f"data.target: must be a column name, got {target!r}")
    for field, value, low in (("valid_fraction", valid_fraction, "(0"), ("test_fraction", test_fraction, "[0")):
        if not is_number(value) or not (0 <= value < 1) or (low == "(0" and value == 0):
            raise ValueError(f"data.{field}: must be a number in {low}, 1), got {value!r}")
    if valid_fraction + test_fraction >= 1:
        raise ValueError(f"data.test_fraction: valid_fraction + test_fraction must be < 1 to leave rows to "
                         f"train on, got {valid_fraction} + {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"data.seed: must be a non-negative integer, got {seed!r}")
    if options is not None and not isinstance(options, Mapping):
        raise ValueError(f"data.options: must be a table of option = value, got {options!r}")


def _read_source(source: Any, target: str, options: Mapping[str, Any], rng: np.random.Generator, task: str
                 ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    """(x (n, d), y (n,): int64 in [0, K), or float32 for regression, feature names, name) of a built-in or a file."""
    if isinstance(source, str) and source in BUILTINS:
        return _builtin(source, options, rng)
    if not isinstance(source, (str, os.PathLike)) or not str(source):
        raise ValueError(f"data.source: must be one of {', '.join(BUILTINS)} or a path to a "
                         f".parquet, .csv or .npz file, got {source!r}")
    path, label, suffix = Path(source), str(source), Path(source).suffix.lower()
    if suffix not in FILE_TYPES:
        if isinstance(source, str) and not suffix and "/" not in source and os.sep not in source \
                and not path.exists():
            raise ValueError(f"data.source: unknown built-in data set {source!r} (built-ins: "
                             f"{', '.join(BUILTINS)}; or give a path to a .parquet, .csv or .npz file)")
        raise ValueError(f"data.source: {label}: unknown file type {repr(suffix) if suffix else '(no extension)'}"
                         " (expected .parquet, .csv or .npz)")
    if options:
        raise ValueError(f"data.options: a file takes no options, got {', '.join(map(repr, options))}")
    if not path.exists():
        where = "" if path.is_absolute() else f" (looked for {path.resolve()})"
        raise ValueError(f"data.source: {label}: no such file{where}")
    if path.is_file() and path.stat().st_size == 0:
        raise ValueError(f"data.source: {label}: the file is empty")
    x, y, names = read_npz(path, label) if suffix == ".npz" else read_table(path, label, target)
    what = f"column {target!r}" if suffix != ".npz" else "array 'y'"
    encode = regression_target if task == "regression" else encode_classes
    return x, encode(y, label, what), names, path.name


def _builtin(name: str, options: Mapping[str, Any], rng: np.random.Generator
             ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...], str]:
    valid = OPTIONS[name]
    if unknown := [key for key in options if key not in valid]:
        raise ValueError(f"data.options: unknown option {unknown[0]!r} for {name} "
                         f"(valid: {', '.join(valid) or 'none'})")
    opts = {**valid, **options}
    if name == "digits":
        with resources.files("caviar").joinpath("datasets").joinpath("digits.npz").open("rb") as file, \
                np.load(file, allow_pickle=False) as archive:
            return archive["x"], archive["y"].astype(np.int64), DIGITS_FEATURES, name
    n_classes = _int_option(opts, "n_classes", 2)
    if name == "spiral":
        x, y = make_spiral(_int_option(opts, "n_per_class", 2), n_classes,
                           _float_option(opts, "noise", positive=False), rng)
    else:
        n_samples, n_features = _int_option(opts, "n_samples", 2 * n_classes), _int_option(opts, "n_features", 1)
        if n_samples * n_features > MAX_GENERATED_VALUES:
            raise ValueError(f"data.options: n_samples x n_features = {n_samples * n_features:,} values is more "
                             f"than the {MAX_GENERATED_VALUES:,} blobs makes")
        x, y = make_blobs(n_samples, n_features, n_classes, _float_option(opts, "spread", positive=True), rng)
    return x, y, tuple(f"x{j}" for j in range(x.shape[1])), name


def _int_option(options: Mapping[str, Any], key: str, low: int) -> int:
    if isinstance(value := options[key], bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"data.options: {key} must be an integer >= {low}, got {value!r}")
    return int(value)


def _float_option(options: Mapping[str, Any], key: str, *, positive: bool) -> float:
    if not is_number(value := options[key]) or not math.isfinite(value) or value < 0 or (positive and value == 0):
        raise ValueError(f"data.options: {key} must be a finite number {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def regression_target(y: np.ndarray, label: str, what: str) -> np.ndarray:
    """Regression targets y (n,), finite numbers, as float32."""
    if y.dtype.kind not in "biuf":
        raise ValueError(f"data.source: {label}: {what} is not numeric (dtype {y.dtype}); model.task = 'regression' "
                         "needs numbers")
    if len(bad := np.flatnonzero(~np.isfinite(y.astype(np.float64)))):
        raise ValueError(f"data.source: {label}: {what} has {show_value(y[bad[0]])} at row {bad[0]}")
    return y.astype(np.float32)


def encode_classes(y: np.ndarray, label: str, what: str) -> np.ndarray:
    """Class labels y (n,), numbers or strings, as int64 indices into their sorted distinct values."""
    problem = f"data.source: {label}: {what}"
    if y.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(y) | (y != np.round(y)))
        if len(bad):
            raise ValueError(f"{problem} has {show_value(y[bad[0]])} at row {bad[0]}; class labels are integers "
                             "or strings")
    elif y.dtype.kind not in "biuOUS":
        raise ValueError(f"{problem} does not hold class labels (dtype {y.dtype})")
    try:
        classes, codes = np.unique(y, return_inverse=True)
    except TypeError as error:  # an object column mixing, say, numbers and strings
        raise ValueError(f"{problem} mixes kinds of class labels ({one_line(error)})") from error
    if len(classes) < 2:
        raise ValueError(f"{problem} has a single class ({show_value(classes[0])}); classification needs at least 2")
    return codes.astype(np.int64)
