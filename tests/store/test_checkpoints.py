"""Atomic .npz checkpoints without pickle, and the babysitter's store with its fallback on corruption."""

from __future__ import annotations

import errno
import os
import subprocess
import warnings
import zipfile
from pathlib import Path

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

def truncate(path: Path) -> None:
    """Damage a file in place: every hard link to it sees the damage."""
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size // 2)


def save_epochs(store: CheckpointStore, epochs, best=()) -> None:
    for epoch in epochs:
        store.save(epoch, {"w": np.full(3, float(epoch))}, {"epoch": epoch}, best=epoch in best)


def test_the_store_keeps_best_last_and_a_ring_of_epochs(tmp_path):
    store = CheckpointStore(tmp_path / "checkpoints", keep=3)
    assert store.load_best() is None and store.load_last() is None and store.epochs() == []
    save_epochs(store, range(1, 8), best={2, 5})
    assert sorted(p.name for p in store.folder.iterdir()) == [
        "best-000005.npz", "best.npz", "epoch-000005.npz", "epoch-000006.npz", "epoch-000007.npz", "last.npz"]
    best, last = store.load_best(), store.load_last()
    assert best.meta == {"epoch": 5} and best.path.name == "best.npz" and best.skipped == ()
    state, meta = last                                    # unpacks like load_checkpoint
    assert meta == {"epoch": 7} and state["w"].tolist() == [7.0] * 3
    assert store.best_epochs() == [5]


def test_the_best_has_two_copies_that_share_no_bytes_and_outlive_the_ring(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    save_epochs(store, range(1, 7), best={2})
    assert store.epochs() == [6] and store.best_epochs() == [2]   # epoch-000002.npz pruned, its copy kept
    assert not os.path.samefile(tmp_path / "best.npz", tmp_path / "best-000002.npz")
    truncate(tmp_path / "best.npz")
    with pytest.warns(CorruptCheckpointWarning, match="best.npz.*using .*best-000002.npz") as caught:
        assert store.load_best().meta == {"epoch": 2}
    assert caught[0].message.paths == (tmp_path / "best.npz",)
    store = CheckpointStore(tmp_path / "b", keep=3)
    save_epochs(store, range(1, 4), best={3})
    truncate(tmp_path / "b" / "epoch-000003.npz")          # in place: last.npz and best-000003.npz with it
    assert store.load_best().meta == {"epoch": 3} and store.load_best().path.name == "best.npz"


def test_saving_after_a_rollback_drops_the_abandoned_epochs(tmp_path):
    store = CheckpointStore(tmp_path, keep=5)
    save_epochs(store, range(1, 7), best={3})
    save_epochs(store, [4])                               # rolled back to 3, trained epoch 4 again
    assert store.epochs() == [2, 3, 4]
    assert store.load_last().meta == {"epoch": 4} and store.load_best().meta == {"epoch": 3}
    save_epochs(store, [5], best={5})                     # a new best: the older best's copy goes
    assert store.best_epochs() == [5] and store.load_epoch(3).meta == {"epoch": 3}


def test_a_truncated_last_falls_back_to_the_newest_readable_with_a_warning(tmp_path):
    store = CheckpointStore(tmp_path, keep=3)
    save_epochs(store, range(1, 6), best={4})
    with open(tmp_path / "last.npz", "r+b") as f:         # damaged in place: its epoch file shares it
        f.truncate(100)
    with pytest.warns(CorruptCheckpointWarning, match="last.npz.*using .*epoch-000004.npz"):
        found = store.load_last()
    assert found.meta == {"epoch": 4} and found.path.name == "epoch-000004.npz"
    assert [p.name for p in found.skipped] == ["last.npz", "epoch-000005.npz"]


def test_a_corrupt_last_and_ring_fall_back_to_the_best(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    save_epochs(store, range(1, 5), best={2})
    truncate(tmp_path / "last.npz")
    with pytest.warns(CorruptCheckpointWarning, match="using .*best.npz"):
        assert store.load_last().meta == {"epoch": 2}       # an older state: a resume trains on from it
    store = CheckpointStore(tmp_path / "b", keep=3)
    save_epochs(store, range(1, 5), best={3})
    for name in ("last.npz", "epoch-000003.npz"):         # the ring's 4 and 3 (best-000003.npz with it)
        truncate(tmp_path / "b" / name)
    with pytest.warns(CorruptCheckpointWarning, match="using .*best.npz"):
        assert store.load_last().meta == {"epoch": 3}       # the best's own copy before the ring's older 2


def test_a_corrupt_best_never_falls_back_to_another_epoch(tmp_path):
    store = CheckpointStore(tmp_path, keep=4)
    save_epochs(store, range(1, 7), best={4})
    for name in ("best.npz", "best-000004.npz"):          # both copies damaged
        truncate(tmp_path / name)
    with pytest.warns(CorruptCheckpointWarning, match="best.npz.*best-000004.npz.*no older checkpoint reads"):
        assert store.load_best() is None
    assert store.load_epoch(3).meta == {"epoch": 3}       # older epochs are there, but they are not the best


def test_nothing_readable_gives_none_with_a_warning(tmp_path):
    store = CheckpointStore(tmp_path, keep=1)
    save_epochs(store, [1], best={1})
    for path in tmp_path.iterdir():
        truncate(path)
    with pytest.warns(CorruptCheckpointWarning, match="no older checkpoint reads"):
        assert store.load_last() is None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", CorruptCheckpointWarning)
        assert store.load_best() is None


def test_keep_zero_and_bad_keep(tmp_path):
    store = CheckpointStore(tmp_path, keep=0)
    save_epochs(store, [1, 2], best={1})
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best-000001.npz", "best.npz", "last.npz"]
    assert store.load_best().meta == {"epoch": 1} and store.load_last().meta == {"epoch": 2}
    for keep in (-1, 1.5, True):
        with pytest.raises(ValueError, match="keep"):
            CheckpointStore(tmp_path, keep=keep)


# ----------------------------------------------------------------------------- links and a full disk

def test_a_linked_checkpoint_file_is_never_followed(tmp_path):
    outside = tmp_path / "outside.npz"
    save_checkpoint(outside, {"w": np.ones(2)}, {"epoch": 9})
    store = CheckpointStore(tmp_path / "checkpoints", keep=2)
    save_epochs(store, [1, 2], best={1})
    (store.folder / "last.npz").unlink()
    (store.folder / "last.npz").symlink_to(outside)
    with pytest.raises(CorruptCheckpoint, match="symbolic link"):
        load_checkpoint(store.folder / "last.npz")
    with pytest.warns(CorruptCheckpointWarning, match="last.npz.*using .*epoch-000002.npz"):
        assert store.load_last().meta == {"epoch": 2}
    save_epochs(store, [3])                               # the link is replaced, its target untouched
    assert not (store.folder / "last.npz").is_symlink() and load_checkpoint(outside)[1] == {"epoch": 9}


def test_a_linked_checkpoints_folder_is_refused(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "checkpoints").symlink_to(outside, target_is_directory=True)
    store = CheckpointStore(tmp_path / "checkpoints")
    for act in (store.load_last, store.load_best, store.epochs, lambda: save_epochs(store, [1], best={1})):
        with pytest.raises(ValueError, match="checkpoints: .* is a symbolic link"):
            act()
    assert list(outside.iterdir()) == []


def test_a_full_disk_leaves_the_last_good_best_and_last_whole(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True,
                             text=True)
    if mounted.returncode != 0:
        pytest.fail(f"needs a real small file system: `mount -t tmpfs` failed ({mounted.stderr.strip()}); run as root")
    try:
        store = CheckpointStore(disk / "checkpoints", keep=2)
        good = {"best": None, "last": None}
        with pytest.raises(OSError) as full:
            for epoch in range(1, 100):                   # states that grow: a few saves fill the disk
                state = {"w": np.full(1000 * epoch, float(epoch))}
                store.save(epoch, state, {"epoch": epoch}, best=epoch % 3 != 0)
                good = {"best": epoch if epoch % 3 else good["best"], "last": epoch}
        assert full.value.errno == errno.ENOSPC and good["last"] >= 2
        assert [p.name for p in store.folder.iterdir() if p.name.startswith(".")] == []   # no half file
        assert store.load_best().meta == {"epoch": good["best"]}
        assert store.load_last().meta == {"epoch": good["last"]}
        for path in store.folder.iterdir():
            load_checkpoint(path)
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_store_files_are_zip_archives_of_npy_members(tmp_path):
    store = CheckpointStore(tmp_path, keep=2)
    save_epochs(store, [1], best={1})
    with zipfile.ZipFile(tmp_path / "last.npz") as zf:
        assert sorted(zf.namelist()) == ["__meta__.npy", "w.npy"] and zf.testzip() is None
