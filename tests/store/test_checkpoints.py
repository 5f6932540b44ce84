"""Atomic .npz checkpoints without pickle, and the babysitter's store with its fallback on corruption."""

from __future__ import annotations

import warnings
import zipfile

import numpy as np
import pytest

from caviar.store.checkpoints import (CheckpointStore, CorruptCheckpoint, CorruptCheckpointWarning, load_checkpoint,
                               save_checkpoint)


def trainer_state(seed: int = 0) -> dict[str, np.ndarray]:
    """What a trainer's state_dict holds: weights, moments, running stats, counters, RNG state."""
    rng = np.random.default_rng(seed)
    return {
        "layers.0.W": rng.standard_normal((5, 4)).astype(np.float32),
        "layers.0.gamma": rng.standard_normal(4),
        "adam.m.0": rng.standard_normal((5, 4)).astype(np.float32),
        "bn.running_var": np.abs(rng.standard_normal(4)).astype(np.float64),
        "step": np.array(1234, dtype=np.int64),
        "rng.state": np.array([2**64 - 1, 12345], dtype=np.uint64),   # PCG64 words: the full range
        "flags": np.array([True, False]),
        "optimizer": np.array("adam"),
        "half": np.arange(3, dtype=np.float16),
        "empty": np.zeros((0, 3), dtype=np.int32),
        "file": np.array(1.5),            # names np.savez would take as its own arguments
        "allow_pickle": np.array([7], dtype=np.int8),
    }


META = {"epoch": 12, "learning_rate": 0.003, "hyperparameters": {"beta1": 0.9, "batch_size": 64},
        "rollbacks": 2, "history": [0.5, 0.61, float("nan")], "stopped": None}


def assert_same_state(got: dict[str, np.ndarray], want: dict[str, np.ndarray]) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert got[key].dtype == want[key].dtype and got[key].shape == want[key].shape, key
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_a_checkpoint_round_trips_exactly(tmp_path):
    state = trainer_state()
    save_checkpoint(tmp_path / "c.npz", state, {**META, "score": np.float64(0.61), "best_epoch": np.int64(9)})
    got, meta = load_checkpoint(tmp_path / "c.npz")
    assert_same_state(got, state)
    assert meta["best_epoch"] == 9 and meta["score"] == 0.61 and meta["hyperparameters"] == META["hyperparameters"]
    assert np.isnan(meta["history"][2]) and meta["stopped"] is None
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]   # the temp file is gone


def test_a_checkpoint_is_plain_npz_that_numpy_reads_without_pickle(tmp_path):
    save_checkpoint(tmp_path / "c.npz", trainer_state(), META)
    with np.load(tmp_path / "c.npz", allow_pickle=False) as npz:
        assert npz["__meta__"].dtype.kind == "U" and npz["__meta__"].ndim == 0
        np.testing.assert_array_equal(npz["layers.0.W"], trainer_state()["layers.0.W"])


def test_object_arrays_and_other_non_data_are_refused_on_save(tmp_path):
    save_checkpoint(tmp_path / "c.npz", trainer_state(), META)
    before = (tmp_path / "c.npz").read_bytes()
    for state, meta, match in [({"w": np.array([1, None], dtype=object)}, {}, "object arrays"),
                               ({"w": [1.0, 2.0]}, {}, "expected a numpy array"),
                               ({"__meta__": np.zeros(1)}, {}, "bad key"),
                               ({"w": np.zeros(1)}, {"f": lambda: 1}, "checkpoint meta"),
                               ({"w": np.zeros(1)}, {"p": {1, 2}}, "checkpoint meta")]:
        with pytest.raises(ValueError, match=match):
            save_checkpoint(tmp_path / "c.npz", state, meta)
    assert (tmp_path / "c.npz").read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["c.npz"]


def test_a_pickled_npz_is_refused_on_load(tmp_path):
    np.savez(tmp_path / "evil.npz", w=np.array([{"x": 1}], dtype=object), __meta__=np.array("{}"))
    with pytest.raises(CorruptCheckpoint, match="evil.npz"):
        load_checkpoint(tmp_path / "evil.npz")


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "npy", "no meta"])
def test_a_damaged_checkpoint_raises_corrupt_checkpoint(tmp_path, damage):
    path = tmp_path / "c.npz"
    save_checkpoint(path, trainer_state(), META)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    elif damage == "flip":
        data[len(data) // 3] ^= 0xFF
        path.write_bytes(data)
    elif damage == "garbage":
        path.write_bytes(b"\x00" * 100)
    elif damage == "npy":
        np.save(tmp_path / "a.npy", np.arange(3))
        path.write_bytes((tmp_path / "a.npy").read_bytes())
    else:
        np.savez(path, w=np.zeros(2))
    with pytest.raises(CorruptCheckpoint, match="c.npz"):
        load_checkpoint(path)
    assert issubclass(CorruptCheckpoint, ValueError)


def test_a_missing_checkpoint_is_not_corrupt(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "nope.npz")


# ----------------------------------------------------------------------------- the store

def save_epochs(store: CheckpointStore, epochs, best=()) -> None:
    for epoch in epochs:
        store.save(epoch, {"w": np.full(3, float(epoch))}, {"epoch": epoch}, best=epoch in best)


def test_the_store_keeps_best_last_and_a_ring_of_epochs(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep=3)
    assert store.load_best() is None and store.load_last() is None and store.epochs() == []
    save_epochs(store, range(1, 8), best={2, 5})
    assert sorted(p.name for p in store.folder.iterdir()) == [
        "best.npz", "epoch-000005.npz", "epoch-000006.npz", "epoch-000007.npz", "last.npz"]
    best, last = store.load_best(), store.load_last()
    assert best.meta == {"epoch": 5} and best.path.name == "best.npz" and best.skipped == ()
    state, meta = last                                    # unpacks like load_checkpoint
    assert meta == {"epoch": 7} and state["w"].tolist() == [7.0] * 3


def test_saving_after_a_rollback_drops_the_abandoned_epochs(tmp_path):
    store = CheckpointStore(tmp_path, keep=5)
    save_epochs(store, range(1, 7), best={3})
    save_epochs(store, [4])                               # rolled back to 3, trained epoch 4 again
    assert store.epochs() == [2, 3, 4]
    assert store.load_last().meta == {"epoch": 4} and store.load_best().meta == {"epoch": 3}


def test_a_truncated_last_falls_back_to_the_newest_readable_with_a_warning(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    save_epochs(store, range(1, 6), best={4})
    with open(tmp_path / "last.npz", "r+b") as f:         # damaged in place: its epoch file shares it
        f.truncate(100)
    with pytest.warns(CorruptCheckpointWarning, match="last.npz.*using .*epoch-000004.npz"):
        found = store.load_last()
    assert found.meta == {"epoch": 4} and found.path.name == "epoch-000004.npz"
    assert [p.name for p in found.skipped] == ["last.npz", "epoch-000005.npz"]


def test_a_corrupt_best_falls_back_to_an_older_epoch_never_a_newer_one(tmp_path):
    store = CheckpointStore(tmp_path, keep=4)
    save_epochs(store, range(1, 7), best={4})
    (tmp_path / "best.npz").unlink()                      # replaced by another file, not damaged in place
    (tmp_path / "best.npz").write_bytes(b"PK\x03\x04 not a zip any more")
    with pytest.warns(CorruptCheckpointWarning, match="best.npz"):
        assert store.load_best() is None            # best's epoch file is no longer the same file
    store = CheckpointStore(tmp_path / "b", keep=4)
    save_epochs(store, range(1, 7), best={4})
    with open(tmp_path / "b" / "best.npz", "r+b") as f:
        f.truncate(50)
    with pytest.warns(CorruptCheckpointWarning, match="using .*epoch-000003.npz"):
        assert store.load_best().meta == {"epoch": 3}


def test_nothing_readable_gives_none_with_a_warning(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    save_epochs(store, [1], best={1})
    with open(tmp_path / "epoch-000001.npz", "r+b") as f:
        f.truncate(10)
    with pytest.warns(CorruptCheckpointWarning, match="no older checkpoint reads"):
        assert store.load_last() is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptCheckpointWarning)
        assert store.load_best() is None


def test_keep_zero_and_bad_keep(tmp_path):
    store = CheckpointStore(tmp_path, keep=0)
    save_epochs(store, [1, 2], best={1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.npz", "last.npz"]
    assert store.load_best().meta == {"epoch": 1} and store.load_last().meta == {"epoch": 2}
    for keep in (-1, 1.5, True):
        with pytest.raises(ValueError, match="keep"):
            CheckpointStore(tmp_path, keep=keep)


def test_store_files_are_zip_archives_of_npy_members(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    save_epochs(store, [1], best={1})
    with zipfile.ZipFile(tmp_path / "last.npz") as zf:
        assert sorted(zf.namelist()) == ["__meta__.npy", "w.npy"] and zf.testzip() is None
