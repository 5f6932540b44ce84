"""caviar.data: built-in data sets, the user's files, stratified seeded splits, standardization, errors."""

from __future__ import annotations

import importlib.util
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from caviar.data import Dataset, load_dataset, standardize, stratified_split

# The class sizes of the UCI optdigits test set (what scikit-learn's load_digits returns).
DIGITS_CLASS_SIZES = [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]
SPLITS = ("train", "valid", "test")


def xs(data: Dataset) -> list[np.ndarray]:
    return [data.x_train, data.x_valid, data.x_test]


def ys(data: Dataset) -> list[np.ndarray]:
    return [data.y_train, data.y_valid, data.y_test]


def recover_rows(data: Dataset, column: int = 0) -> list[np.ndarray]:
    """Original row numbers of each split, from a feature column that held 0..n-1.

    Standardizing maps that column by one affine map for all splits, so its smallest value is row 0
    and its largest row n-1 exactly when every row is present.
    """
    values = [x[:, column].astype(np.float64) for x in xs(data)]
    every = np.concatenate(values)
    low, high, n = every.min(), every.max(), len(every)
    rows = [(v - low) / (high - low) * (n - 1) for v in values]
    assert all(np.allclose(r, np.round(r), atol=1e-3) for r in rows)
    return [np.round(r).astype(np.int64) for r in rows]


def standardized_like_caviar(raw: np.ndarray, train_rows: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """The expected standardized values of `raw[rows]`, by the train rows' mean and (population) std."""
    mean, std = raw[train_rows].mean(axis=0), raw[train_rows].std(axis=0)
    return (raw[rows] - mean) / std


# ---------------------------------------------------------------------------------------------------
# built-ins


def test_digits_holds_all_1797_real_images_in_10_classes():
    data = load_dataset("digits", valid_fraction=0.2, test_fraction=0.1)
    assert data.name == "digits" and data.n_classes == 10
    assert sum(len(y) for y in ys(data)) == 1797
    assert all(x.shape[1] == 64 for x in xs(data))
    assert np.bincount(np.concatenate(ys(data)), minlength=10).tolist() == DIGITS_CLASS_SIZES
    assert len(data.feature_names) == 64 and data.feature_names[0] == "pixel_0_0"
    # Real digits, labels paired with their images: a nearest-centroid rule already reads most of them.
    centroids = np.stack([data.x_train[data.y_train == k].mean(axis=0) for k in range(10)])
    guess = np.argmin(((data.x_valid[:, None, :] - centroids[None]) ** 2).sum(axis=2), axis=1)
    assert (guess == data.y_valid).mean() > 0.85


def test_shipped_digits_file_is_scikit_learns_copy():
    # Compared with the CSV that sklearn.datasets.load_digits reads, without importing scikit-learn (slow).
    spec = importlib.util.find_spec("sklearn")
    assert spec is not None and spec.origin is not None, "scikit-learn (in the test extra) is needed here"
    table = np.loadtxt(Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz", delimiter=",")
    path = Path(importlib.util.find_spec("caviar").origin).parent / "datasets" / "digits.npz"
    with np.load(path, allow_pickle=False) as archive:
        assert sorted(archive.files) == ["x", "y"]
        assert archive["x"].dtype == np.uint8 and archive["x"].shape == (1797, 64)
        assert archive["y"].dtype == np.uint8
        np.testing.assert_array_equal(archive["x"], table[:, :-1])
        np.testing.assert_array_equal(archive["y"], table[:, -1])


@pytest.mark.parametrize("source, options, n, d, k", [
    ("digits", None, 1797, 64, 10),
    ("spiral", None, 600, 2, 3),
    ("spiral", {"n_per_class": 50, "n_classes": 5, "noise": 0.0}, 250, 2, 5),
    ("blobs", None, 1000, 10, 3),
    ("blobs", {"n_samples": 20_000, "n_features": 784, "n_classes": 10, "spread": 2.0}, 20_000, 784, 10),
])
def test_builtins_have_their_sizes_and_the_promised_dtypes(source, options, n, d, k):
    data = load_dataset(source, options=options, test_fraction=0.1)
    assert data.n_classes == k and data.name == source
    assert sum(len(y) for y in ys(data)) == n
    for x, y in zip(xs(data), ys(data)):
        assert x.dtype == np.float32 and x.flags.c_contiguous and x.shape == (len(y), d)
        assert y.dtype == np.int64
        assert set(np.unique(y)) == set(range(k))  # every class in every split
        assert np.isfinite(x).all()


def test_blobs_classes_are_balanced():
    data = load_dataset("blobs", options={"n_samples": 1001, "n_classes": 4})
    sizes = np.bincount(np.concatenate(ys(data)))
    assert sizes.max() - sizes.min() <= 1


def test_spiral_is_not_linearly_separable_but_is_learnable():
    data = load_dataset("spiral")
    assert np.bincount(data.y_train).tolist() == [160, 160, 160]
    # The best least-squares linear classifier (one-hot targets, with a bias) ...
    features = np.column_stack([data.x_train, np.ones(len(data.x_train))])
    weights = np.linalg.lstsq(features, np.eye(3)[data.y_train], rcond=None)[0]
    assert (np.argmax(features @ weights, axis=1) == data.y_train).mean() < 0.7
    # ... while a nonlinear rule (1-nearest neighbour) finds the arms.
    distances = ((data.x_valid[:, None, :] - data.x_train[None]) ** 2).sum(axis=2)
    assert (data.y_train[np.argmin(distances, axis=1)] == data.y_valid).mean() > 0.9


def test_loading_a_builtin_does_not_import_pandas():
    # Sweeps load the data once in the driver; pandas alone costs more than loading digits.
    code = ("import sys; from caviar.data import load_dataset; load_dataset('digits'); "
            "load_dataset('blobs'); assert 'pandas' not in sys.modules, 'pandas imported'")
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------------------------------
# splits and standardization


def test_splits_are_stratified_and_sized_by_the_fractions():
    data = load_dataset("digits", valid_fraction=0.2, test_fraction=0.1)
    n = 1797
    assert (len(data.y_valid), len(data.y_test)) == (round(0.2 * n), round(0.1 * n))
    for y, fraction in zip(ys(data), (0.7, 0.2, 0.1)):
        expected = np.array(DIGITS_CLASS_SIZES) * fraction
        assert np.abs(np.bincount(y, minlength=10) - expected).max() <= 2


def test_small_classes_reach_every_split_they_can():
    y = np.array([0] * 3 + [1] * 2 + [2] * 1 + [3] * 100)
    train, valid, test = stratified_split(y, 0.1, 0.1, np.random.default_rng(0))
    assert set(y[train]) == {0, 1, 2, 3}
    assert set(y[valid]) == {0, 1, 3}
    assert set(y[test]) == {0, 3}


def test_standardization_uses_the_training_split_only():
    data = load_dataset("digits", valid_fraction=0.3)
    mean, std = data.x_train.mean(axis=0), data.x_train.std(axis=0)
    varying = std > 0
    np.testing.assert_allclose(mean, 0, atol=1e-5)
    np.testing.assert_allclose(std[varying], 1, rtol=1e-4)
    # The validation rows are scaled with the training statistics, not their own.
    assert np.abs(data.x_valid.mean(axis=0)[varying]).max() > 0.01
    # Constant pixels (digits' left border) stay finite and 0 instead of dividing by zero.
    assert (~varying).any() and np.all(data.x_train[:, ~varying] == 0)
    assert all(np.isfinite(x).all() for x in xs(data))


def test_a_column_constant_on_the_training_rows_is_only_centred():
    x = np.array([[5.0, 1.0], [5.0, 3.0], [7.0, 2.0]])
    train, valid = standardize(x, (np.array([0, 1]), np.array([2])))
    np.testing.assert_array_equal(train, np.array([[0, -1], [0, 1]], dtype=np.float32))
    np.testing.assert_array_equal(valid, np.array([[2, 0]], dtype=np.float32))


@pytest.mark.parametrize("source", ["digits", "spiral", "blobs"])
def test_a_seed_repeats_exactly_and_another_seed_splits_differently(source):
    first, again, other = (load_dataset(source, seed=seed, test_fraction=0.2) for seed in (3, 3, 4))
    for a, b in zip(xs(first) + ys(first), xs(again) + ys(again)):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.x_valid, other.x_valid)


@settings(max_examples=150, deadline=None)
@given(sizes=st.lists(st.integers(1, 40), min_size=2, max_size=6),
       valid=st.floats(0.01, 0.6), test=st.one_of(st.just(0.0), st.floats(0.01, 0.39)),
       seed=st.integers(0, 2**32 - 1))
def test_a_split_keeps_every_row_exactly_once(sizes, valid, test, seed):
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(len(sizes)) * 7, sizes))
    parts = stratified_split(y, valid, test, np.random.default_rng(seed))
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(y)))
    active = [True, True, test > 0]
    for label, size in zip(np.unique(y), sizes):
        held = [int((y[part] == label).sum()) for part in parts]
        assert held[0] >= 1  # every class is trained on
        if size >= sum(active):
            assert all(h >= 1 for h, on in zip(held, active) if on)
    # A split holds its share of rows, unless one row per class (train first) needs more or leaves less.
    n, k = len(y), len(sizes)
    wanted_valid, wanted_test = (math.floor(f * n + 0.5) for f in (valid, test))  # halves round up
    assert min(wanted_test, n - 2 * k) <= len(parts[2]) <= max(wanted_test, k)
    assert min(wanted_valid, n - k - len(parts[2])) <= len(parts[1]) <= max(wanted_valid, k)
    again = stratified_split(y, valid, test, np.random.default_rng(seed))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again))


# ---------------------------------------------------------------------------------------------------
# the user's files


def people(n: int = 90, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "row": np.arange(n, dtype=np.int64),
        "age": rng.uniform(18, 90, n),
        "income": rng.normal(5e4, 1e4, n),
        "label": rng.permutation(np.array(["owl", "cat", "emu"] * (n // 3))),
    })


def check_round_trip(data: Dataset, raw: np.ndarray, codes: np.ndarray) -> None:
    """Every row arrives once, with its own label, standardized by the training rows' statistics."""
    rows = recover_rows(data)
    np.testing.assert_array_equal(np.sort(np.concatenate(rows)), np.arange(len(raw)))
    for x, y, part in zip(xs(data), ys(data), rows):
        np.testing.assert_array_equal(y, codes[part])
        np.testing.assert_allclose(x, standardized_like_caviar(raw, rows[0], part), rtol=1e-5, atol=1e-5)


def test_csv_round_trip_maps_string_classes_in_sorted_order(tmp_path):
    frame = people()
    frame.to_csv(tmp_path / "people.csv", index=False)
    data = load_dataset(tmp_path / "people.csv", test_fraction=0.2, seed=1)
    assert data.name == "people.csv" and data.n_classes == 3
    assert data.feature_names == ("row", "age", "income")
    codes = frame["label"].map({"cat": 0, "emu": 1, "owl": 2}).to_numpy()
    check_round_trip(data, frame[["row", "age", "income"]].to_numpy(), codes)


def test_parquet_round_trip_orders_integer_classes_by_value(tmp_path):
    frame = people().assign(label=lambda f: f["label"].map({"cat": 10, "emu": 3, "owl": 7}))
    frame.to_parquet(tmp_path / "people.parquet")
    data = load_dataset(str(tmp_path / "people.parquet"), target="label")
    codes = frame["label"].map({3: 0, 7: 1, 10: 2}).to_numpy()  # 3 < 7 < 10, not "10" < "3" < "7"
    check_round_trip(data, frame[["row", "age", "income"]].to_numpy(), codes)


def test_parquet_folder_of_parts_reads_whole(tmp_path):
    frame = people(120)
    (tmp_path / "people.parquet").mkdir()
    frame.iloc[:60].to_parquet(tmp_path / "people.parquet" / "part-0.parquet")
    frame.iloc[60:].to_parquet(tmp_path / "people.parquet" / "part-1.parquet")
    data = load_dataset(tmp_path / "people.parquet")
    assert sum(len(y) for y in ys(data)) == 120


def test_npz_round_trip_flattens_images(tmp_path):
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, size=(60, 2, 3)).astype(np.uint8)
    images[:, 0, 0] = np.arange(60)  # the row number, to recover the order
    labels = np.array(["b", "a"] * 30)
    np.savez(tmp_path / "images.npz", x=images, y=labels)
    data = load_dataset(tmp_path / "images.npz", target="ignored for npz")
    assert data.x_train.shape[1] == 6 and data.n_classes == 2
    check_round_trip(data, images.reshape(60, 6).astype(np.float64), (labels == "b").astype(np.int64))


def write_csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "d.csv"
    path.write_text(text)
    return path


BAD_CSVS = {
    "missing target": ("age,kind\n1,a\n2,b\n", r"data.target: .*d\.csv: no column 'label' \(columns: 'age', 'kind'\)"),
    "nan feature": ("age,label\n1,a\n2,b\n,a\n", r"data.source: .*d\.csv: column 'age' has nan at row 2"),
    "inf feature": ("age,label\n1,a\ninf,b\n", r"data.source: .*d\.csv: column 'age' has inf at row 1"),
    "text feature": ("age,label\n1,a\nabc,b\n", r"data.source: .*d\.csv: column 'age' is not numeric \(found 'abc' at row 1\)"),
    "missing target value": ("age,label\n1,a\n2,\n", r"data.source: .*d\.csv: column 'label' has a missing value at row 1"),
    "nan target": ("age,label\n1,1\n2,nan\n", r"data.source: .*d\.csv: column 'label' has a missing value at row 1"),
    "inf target": ("age,label\n1,1\n2,inf\n", r"data.source: .*d\.csv: column 'label' has inf at row 1"),
    "fractional target": ("age,label\n1,1\n2,0.5\n", r"data.source: .*d\.csv: column 'label' has 0\.5 at row 1"),
    "single class": ("age,label\n1,a\n2,a\n", r"data.source: .*d\.csv: column 'label' has a single class \('a'\)"),
    "empty file": ("", r"data.source: .*d\.csv: the file is empty"),
    "header only": ("age,label\n", r"data.source: .*d\.csv: has no rows"),
    "no features": ("label\na\nb\n", r"data.source: .*d\.csv: has no feature columns besides the target 'label'"),
}


@pytest.mark.parametrize("case", BAD_CSVS)
def test_a_bad_csv_is_one_line_naming_file_column_and_problem(tmp_path, case):
    text, message = BAD_CSVS[case]
    with pytest.raises(ValueError, match=message) as raised:
        load_dataset(write_csv(tmp_path, text))
    assert "\n" not in str(raised.value)


def test_a_non_numeric_parquet_column_is_named(tmp_path):
    pd.DataFrame({"when": pd.to_datetime(["2024-01-01", "2024-01-02"]), "label": [0, 1]}).to_parquet(tmp_path / "t.parquet")
    with pytest.raises(ValueError, match=r"data.source: .*t\.parquet: column 'when' is not numeric \(found 2024-01-01 00:00:00 at row 0\)"):
        load_dataset(tmp_path / "t.parquet")


def test_an_unreadable_parquet_file_is_one_line(tmp_path):
    (tmp_path / "t.parquet").write_bytes(b"not parquet at all\n" * 10)
    with pytest.raises(ValueError, match=r"data.source: .*t\.parquet: cannot read as Parquet: ") as raised:
        load_dataset(tmp_path / "t.parquet")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("arrays, message", [
    ({"x": np.ones((4, 2))}, r"no array 'y' \(found: 'x'"),
    ({"x": np.array([[1.0, np.nan], [2, 3]]), "y": np.array([0, 1])}, r"array 'x' \(column 1\) has nan at row 0"),
    ({"x": np.array([["a", "b"], ["c", "d"]]), "y": np.array([0, 1])}, r"array 'x' is not numeric \(dtype <U1\)"),
    ({"x": np.ones(4), "y": np.array([0, 1, 0, 1])}, r"array 'x' has shape \(4,\)"),
    ({"x": np.ones((4, 2)), "y": np.array([0, 1, 0])}, r"array 'y' has shape \(3,\); expected \(4,\)"),
    ({"x": np.ones((4, 2)), "y": np.array([0.0, 1.0, np.nan, 1.0])}, r"array 'y' has nan at row 2"),
    ({"x": np.ones((4, 2)), "y": np.array([1, 1, 1, 1])}, r"array 'y' has a single class \(1\)"),
    ({"x": np.ones((2, 2)), "y": np.array([{"a": 1}, None], dtype=object)}, r"array 'y' holds Python objects \(that needs pickle"),
])
def test_a_bad_npz_is_one_line_naming_file_and_problem(tmp_path, arrays, message):
    np.savez(tmp_path / "a.npz", **arrays)  # object arrays get pickled here, and must be refused on load
    with pytest.raises(ValueError, match=r"data.source: .*a\.npz: .*" + message) as raised:
        load_dataset(tmp_path / "a.npz")
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("header", ["a,b,a,label", "label,a,label", "a,b,label,a"])
def test_a_csv_naming_a_column_twice_is_refused_rather_than_renamed(tmp_path, header):
    """pandas would read the second 'a' as 'a.1': a column the user never named."""
    rows = "".join(",".join(str(i % 2) for _ in header.split(",")) + "\n" for i in range(6))
    twice = "label" if header.startswith("label") else "a"
    with pytest.raises(ValueError, match=rf"^data.source: .*d\.csv: column '{twice}' appears more than once"):
        load_dataset(write_csv(tmp_path, header + "\n" + rows))


def test_a_csv_column_named_like_a_renamed_one_still_loads(tmp_path):
    data = load_dataset(write_csv(tmp_path, "a,a.1,label\n" + "".join(f"{i},{-i},{i % 2}\n" for i in range(10))))
    assert data.feature_names == ("a", "a.1")


def biggest_standardizable(n: int, dtype: type) -> float:
    """The bound caviar.data puts on values: sqrt(max / 4n) in float64, sqrt(max / 4) in float32."""
    return math.sqrt(float(np.finfo(dtype).max) / (4 * (n if dtype == np.float64 else 1)))


@pytest.mark.parametrize("value", ["1e308", "-1e308", "1e200", "1e154"])
def test_a_value_too_large_to_standardize_is_refused_naming_column_and_row(tmp_path, value):
    """Past the bound, a column's mean or the sum of its squares overflows float64: NaN or all-zero columns."""
    rows = "".join(f"{i},{value if i == 3 else i},{i % 2}\n" for i in range(8))
    expected = rf"^data.source: .*d\.csv: column 'size' has {re.escape(repr(float(value)))} at row 3, beyond the ±"
    with pytest.raises(ValueError, match=expected):
        load_dataset(write_csv(tmp_path, "id,size,label\n" + rows))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_values_up_to_the_bound_standardize_to_finite_numbers(tmp_path, dtype):
    n = 40
    limit = biggest_standardizable(n, dtype)
    x = np.column_stack([np.arange(n), np.where(np.arange(n) % 3 == 0, 0.99 * limit, -0.99 * limit)]).astype(dtype)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(n) % 2)
    data = load_dataset(tmp_path / "a.npz")
    assert all(np.isfinite(part).all() for part in xs(data))
    assert abs(float(data.x_train[:, 1].std()) - 1) < 1e-3
    x[5, 1] = dtype(1.02 * limit)
    np.savez(tmp_path / "a.npz", x=x, y=np.arange(n) % 2)
    with pytest.raises(ValueError, match=r"array 'x' \(column 1\) has .* at row 5, beyond the ±"):
        load_dataset(tmp_path / "a.npz")


def test_a_missing_or_unknown_file_is_named(tmp_path):
    with pytest.raises(ValueError, match=r"data.source: .*nothing\.csv: no such file"):
        load_dataset(tmp_path / "nothing.csv")
    (tmp_path / "data.txt").write_text("a,label\n1,2\n")
    with pytest.raises(ValueError, match=r"data.source: .*data\.txt: unknown file type '\.txt'"):
        load_dataset(tmp_path / "data.txt")


@pytest.mark.parametrize("kwargs, message", [
    ({"source": "digts"}, r"data.source: unknown built-in data set 'digts' \(built-ins: blobs, digits, spiral"),
    ({"source": 3}, r"data.source: must be one of blobs, digits, spiral or a path"),
    ({"source": "blobs", "options": {"n_sample": 5}}, r"data.options: unknown option 'n_sample' for blobs \(valid: n_samples, n_features, n_classes, spread\)"),
    ({"source": "digits", "options": {"noise": 1}}, r"data.options: unknown option 'noise' for digits \(valid: none\)"),
    ({"source": "spiral", "options": {"n_classes": 1}}, r"data.options: n_classes must be an integer >= 2, got 1"),
    ({"source": "spiral", "options": {"noise": -0.1}}, r"data.options: noise must be a finite number >= 0, got -0.1"),
    ({"source": "blobs", "options": {"spread": 0}}, r"data.options: spread must be a finite number > 0, got 0"),
    ({"source": "blobs", "options": {"n_samples": 1.5}}, r"data.options: n_samples must be an integer >= 6, got 1.5"),
    ({"source": "blobs", "options": {"n_samples": 10**6, "n_features": 10**3}}, r"data.options: n_samples x n_features"),
    ({"source": "digits", "target": ""}, r"data.target: must be a column name, got ''"),
    ({"source": "digits", "valid_fraction": 0}, r"data.valid_fraction: must be a number in \(0, 1\), got 0"),
    ({"source": "digits", "valid_fraction": 1.0}, r"data.valid_fraction: must be a number in \(0, 1\), got 1.0"),
    ({"source": "digits", "valid_fraction": float("nan")}, r"data.valid_fraction: must be a number in \(0, 1\), got nan"),
    ({"source": "digits", "valid_fraction": "0.2"}, r"data.valid_fraction: must be a number in \(0, 1\), got '0.2'"),
    ({"source": "digits", "test_fraction": -0.1}, r"data.test_fraction: must be a number in \[0, 1\), got -0.1"),
    ({"source": "digits", "valid_fraction": 0.5, "test_fraction": 0.5}, r"data.test_fraction: valid_fraction \+ test_fraction must be < 1"),
    ({"source": "digits", "seed": -1}, r"data.seed: must be a non-negative integer, got -1"),
    ({"source": "digits", "seed": True}, r"data.seed: must be a non-negative integer, got True"),
    ({"source": "blobs", "options": [("n_samples", 5)]}, r"data.options: must be a table of option = value"),
])
def test_bad_arguments_name_their_field(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_dataset(**kwargs)


def test_files_take_no_options(tmp_path):
    people().to_csv(tmp_path / "p.csv", index=False)
    with pytest.raises(ValueError, match=r"data.options: a file takes no options, got 'n_samples'"):
        load_dataset(tmp_path / "p.csv", options={"n_samples": 5})
