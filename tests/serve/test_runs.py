"""Which folder a URL's run name means: only a run directly under --out, never a link or a way out."""

from __future__ import annotations

import pytest

from caviar.serve.runs import NotFound, Runs, resolve, run_names
from tests.run_factory import make_babysit, make_sweep


def test_a_name_is_a_run_folder_directly_under_out_or_not_found(tmp_path):
    out = tmp_path / "results"
    make_sweep(out, "sweep")
    elsewhere = make_babysit(tmp_path / "elsewhere", "secret")
    (out / "linked").symlink_to(elsewhere)
    (out / "plain").mkdir()                        # a folder that holds no run
    (out / ".hidden").mkdir()
    assert resolve(out, "sweep") == out / "sweep"
    for name in ("..", ".", "../elsewhere/secret", "/etc", "linked", "plain", ".hidden", "missing", "a/b", ""):
        with pytest.raises(NotFound):
            resolve(out, name)
    assert run_names(out) == ["sweep"]


def test_a_replaced_run_folder_is_read_anew(tmp_path):
    import os
    import shutil

    runs = Runs(tmp_path)
    make_sweep(tmp_path, "sweep", n_trials=5)
    first = runs.get("sweep")
    assert first.summary()["done"] == 5 and runs.get("sweep") is first
    make_sweep(tmp_path, "staged", n_trials=3)   # as --overwrite replaces it: the new folder renamed in
    os.replace(tmp_path / "sweep", tmp_path / ".old")
    os.replace(tmp_path / "staged", tmp_path / "sweep")
    shutil.rmtree(tmp_path / ".old")
    again = runs.get("sweep")
    assert again is not first and again.summary()["done"] == 3
