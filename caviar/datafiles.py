"""Reading a user's data: a .csv or .parquet table, an .npz archive, or arrays and DataFrames as given.

Each reader returns (x (n, d) numeric, the raw target (n,), feature names), checked: one `ValueError`
line per problem, starting with the job field at fault and naming the file, the column and the bad
value (`caviar.data` describes the rules). `frame_arrays` and `xy_arrays` are the checks alone, for
what a data function returns (`caviar.sources`).
"""

from __future__ import annotations

import math
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from caviar.config.messages import one_line, show_value


def _parses_as_number(value: Any) -> bool:
    try:
        float(value)  # "2.5" too: a CSV column that mixes numbers and text is read as strings
    except (TypeError, ValueError):
        return False
    return True


def read_table(path: Path, label: str, target: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """x (n, d) float64 and the raw target column (n,) of a .csv or .parquet file, checked."""
    import pandas as pd  # here, not at the top: built-in data sets load without paying for pandas

    kind = "CSV" if path.suffix.lower() == ".csv" else "Parquet"
    try:
        frame = pd.read_csv(path) if kind == "CSV" else pd.read_parquet(path)
        # pandas renames a repeated CSV name ("a", "a" -> "a", "a.1"): the header as written, to refuse it.
        header = pd.read_csv(path, header=None, nrows=1, dtype=str).iloc[0] if kind == "CSV" else frame.columns
    except pd.errors.EmptyDataError as error:
        raise ValueError(f"data.source: {label}: the file is empty") from error
    # pandas and pyarrow raise many types on a malformed file (OSError, ValueError, TypeError, and
    # "not implemented" for unsupported encodings); every one is a problem with the input.
    except (OSError, ValueError, TypeError, RuntimeError) as error:
        raise ValueError(f"data.source: {label}: cannot read as {kind}: {one_line(error)}") from error
    written = [str(name) for name in header if kind != "CSV" or isinstance(name, str)]   # (an empty name: NaN)
    return frame_arrays(frame, label, target, written)


def frame_arrays(frame: Any, label: str, target: str, written: list[str] | None = None
                 ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """x (n, d) float64 and the raw target column (n,) of a pandas DataFrame, checked: distinct column
    names (`written`: as the file wrote them), the target among them, numeric finite features."""
    import pandas as pd

    columns = [str(column) for column in frame.columns]
    frame = frame.set_axis(columns, axis=1)
    written = columns if written is None else written
    if twice := next((name for i, name in enumerate(written) if name in written[:i]), None):
        raise ValueError(f"data.source: {label}: column {twice!r} appears more than once (columns need distinct names)")
    if target not in columns:
        shown = ", ".join(map(repr, columns[:20])) + (", ..." if len(columns) > 20 else "")
        raise ValueError(f"data.target: {label}: no column {target!r} (columns: {shown})")
    features = [column for column in columns if column != target]
    if len(frame) == 0:
        raise ValueError(f"data.source: {label}: has no rows")
    if not features:
        raise ValueError(f"data.source: {label}: has no feature columns besides the target {target!r}")
    for name in features:
        column = frame[name]
        if not pd.api.types.is_numeric_dtype(column) or pd.api.types.is_complex_dtype(column):
            row = next((i for i, value in enumerate(column) if not _parses_as_number(value)), 0)
            raise ValueError(f"data.source: {label}: column {name!r} is not numeric "
                             f"(found {show_value(column.iloc[row])} at row {row})")
    x = frame[features].to_numpy(dtype=np.float64, na_value=np.nan)
    _check_finite(x, label, lambda j: f"column {features[j]!r}")
    y = frame[target]
    if len(missing := np.flatnonzero(y.isna().to_numpy())):
        raise ValueError(f"data.source: {label}: column {target!r} has a missing value at row {missing[0]}")
    return x, y.to_numpy(), tuple(features)


def read_npz(path: Path, label: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """x (n, d) (float64, or float32 kept as is) and the raw labels y (n,) of an .npz file, checked."""
    # numpy's own message for an object array advises enabling pickle, which is not the user's to set.
    refused = "needs pickle to load; caviar never unpickles"
    try:
        archive = np.load(path, allow_pickle=False)
    except ValueError as error:
        reason = f"it {refused}" if "pickle" in str(error) else one_line(error)
        raise ValueError(f"data.source: {label}: not an .npz archive ({reason})") from error
    except (OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"data.source: {label}: cannot read as .npz: {one_line(error)}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(f"data.source: {label}: holds one .npy array, not an .npz archive of 'x' and 'y'")
    with archive:
        if missing := [key for key in ("x", "y") if key not in archive.files]:
            raise ValueError(f"data.source: {label}: no array {missing[0]!r} (found: "
                             f"{', '.join(map(repr, archive.files)) or 'none'}; save with np.savez(path, x=..., y=...))")
        arrays = {}
        for key in ("x", "y"):
            try:
                arrays[key] = archive[key]
            except ValueError as error:  # an object array
                raise ValueError(f"data.source: {label}: array {key!r} holds Python objects (that {refused}); "
                                 "save numbers, or strings for y") from error
    return xy_arrays(arrays["x"], arrays["y"], label)


def xy_arrays(x: np.ndarray, y: np.ndarray, label: str, names: tuple[str, str] = ("x", "y")
              ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """x (n, d) (float64, or float32 kept as is; more axes flattened) and the raw y (n,), checked: shapes
    that match, numeric finite x. `names`: what the message calls the two arrays."""
    if x.ndim < 2 or len(x) == 0 or x[0].size == 0:
        raise ValueError(f"data.source: {label}: array {names[0]!r} has shape {x.shape}; expected (n_samples, "
                         "n_features) with at least one of each")
    if x.dtype.kind not in "biuf":
        raise ValueError(f"data.source: {label}: array {names[0]!r} is not numeric (dtype {x.dtype})")
    if y.shape != (len(x),):
        raise ValueError(f"data.source: {label}: array {names[1]!r} has shape {y.shape}; expected ({len(x)},) to "
                         f"match {names[0]!r}")
    x = x.reshape(len(x), -1)
    x = x if x.dtype == np.float32 else x.astype(np.float64)
    _check_finite(x, label, lambda j: f"array {names[0]!r} (column {j})")
    return x, y, ()


def _check_finite(x: np.ndarray, label: str, column: Callable[[int], str]) -> None:
    """Raise naming the first NaN, infinite or too large value of x (n, d) (float32 or float64), by column and
    row. Too large: past what `standardize` squares without overflow, a deviation being at most twice the largest
    value: the sum of n squares in float64 (1.6e152 for n = 1,797), each square in float32 (9.2e18)."""
    n = len(x) if x.dtype == np.float64 else 1
    limit = math.sqrt(float(np.finfo(x.dtype).max) / (4 * max(n, 1)))
    if not (bad := ~(np.abs(x) <= limit)).any():   # (NaN compares False)
        return
    row, col = np.argwhere(bad)[0]  # the first in reading order
    large = f", beyond the ±{limit:.2g} that standardizing can take" if np.isfinite(x[row, col]) else ""
    raise ValueError(f"data.source: {label}: {column(int(col))} has {show_value(x[row, col])} at row {row}{large}")
