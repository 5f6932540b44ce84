"""Atomic writes (caviar.store.atomic) promise that a file is written whole or not at all:

- the bytes go to a hidden temp file next to the destination (`.NAME.PID-RANDOM.tmp`, the writer's
  pid in it), then replace the destination in one rename;
- a writer that raises (or is interrupted) midway leaves the old file as it was and no temp file;
- a reader never sees half a file, and one that opened the old file keeps reading it whole;
- a SIGKILL at any moment leaves the old content (and at most a hidden temp file naming a dead pid,
  for a later repair); with `fsync` the same, made durable.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from caviar.store.atomic import atomic_write, atomic_write_bytes, fsync_dir, temp_path

OLD = b"old content, whole\n" * 100


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# ----------------------------------------------------------------------------- temp names

def test_temp_names_are_hidden_next_to_the_file_and_carry_the_pid():
    final = Path("/results/run/trials.parquet/part-000003.parquet")
    tmp = temp_path(final)
    assert tmp.parent == final.parent                # same folder: the rename is atomic
    assert re.fullmatch(rf"\.part-000003\.parquet\.{os.getpid()}-[0-9a-f]{{6}}\.tmp", tmp.name)
    assert tmp.name.startswith(".")                  # readers skip it


def test_two_temp_names_for_one_file_differ():
    final = Path("job.toml")
    assert len({temp_path(final) for _ in range(50)}) == 50


# ----------------------------------------------------------------------------- whole or not at all

@pytest.mark.parametrize("fsync", [True, False])
def test_a_write_replaces_the_file_whole_and_leaves_no_temp_file(tmp_path, fsync):
    final = tmp_path / "job.toml"
    final.write_bytes(OLD)
    assert atomic_write(final, lambda f: [f.write(b"new "), f.write(b"content")], fsync=fsync) == final
    assert final.read_bytes() == b"new content"
    assert names(tmp_path) == ["job.toml"]


@pytest.mark.parametrize("fsync", [True, False])
def test_a_writer_that_raises_midway_leaves_the_old_file_and_no_temp_file(tmp_path, fsync):
    final = tmp_path / "part-000000.parquet"
    final.write_bytes(OLD)

    def write(f):
        f.write(b"PAR1 the first half")
        f.flush()
        raise ValueError("the trainer's value did not fit")

    with pytest.raises(ValueError, match="did not fit"):
        atomic_write(final, write, fsync=fsync)
    assert final.read_bytes() == OLD
    assert names(tmp_path) == ["part-000000.parquet"]


def test_an_interrupt_midway_leaves_the_old_file_and_no_temp_file(tmp_path):
    final = tmp_path / "best.npz"
    final.write_bytes(OLD)

    def write(f):
        f.write(b"half")
        raise KeyboardInterrupt                       # Ctrl-C in the middle of a checkpoint

    with pytest.raises(KeyboardInterrupt):
        atomic_write(final, write)
    assert final.read_bytes() == OLD and names(tmp_path) == ["best.npz"]


def test_a_first_write_that_fails_leaves_no_file_at_all(tmp_path):
    with pytest.raises(TypeError):
        atomic_write(tmp_path / "job.toml", lambda f: f.write("text, not bytes"))
    assert names(tmp_path) == []


def test_a_write_onto_a_folder_fails_and_leaves_no_temp_file(tmp_path):
    (tmp_path / "trials.parquet").mkdir()
    (tmp_path / "trials.parquet" / "part-000000.parquet").write_bytes(OLD)
    with pytest.raises(OSError):
        atomic_write_bytes(tmp_path / "trials.parquet", b"one file")
    assert names(tmp_path) == ["trials.parquet"]
    assert (tmp_path / "trials.parquet" / "part-000000.parquet").read_bytes() == OLD


def test_a_write_into_a_missing_folder_fails_and_creates_nothing(tmp_path):
    with pytest.raises(FileNotFoundError):
        atomic_write_bytes(tmp_path / "missing" / "job.toml", b"x")
    assert names(tmp_path) == []


def test_a_reader_that_opened_the_old_file_keeps_reading_it_whole(tmp_path):
    final = tmp_path / "report.html"
    final.write_bytes(OLD)
    with open(final, "rb") as reader:
        head = reader.read(10)
        atomic_write_bytes(final, b"<html>new</html>", fsync=True)
        assert head + reader.read() == OLD           # a new file took the name; the old one was not rewritten
    assert final.read_bytes() == b"<html>new</html>"


def test_atomic_write_bytes_takes_a_text_path_and_returns_the_path(tmp_path):
    got = atomic_write_bytes(str(tmp_path / "nudge.json"), b"{}")
    assert got == tmp_path / "nudge.json" and got.read_bytes() == b"{}"


def test_fsync_dir_makes_a_folders_entries_durable_and_refuses_a_missing_folder(tmp_path):
    (tmp_path / "a").write_bytes(b"x")
    fsync_dir(tmp_path)                               # no error on a real folder
    with pytest.raises(FileNotFoundError):
        fsync_dir(tmp_path / "missing")


# ----------------------------------------------------------------------------- a real SIGKILL

WRITER = textwrap.dedent("""
    import sys, time
    from caviar.store.atomic import atomic_write

    def write(f):
        f.write(b"NEW, the first half\\n" * 100)
        f.flush()
        print("half written", flush=True)
        if sys.argv[2] == "hang":
            time.sleep(60)                            # killed here
        f.write(b"NEW, the second half\\n" * 100)

    atomic_write(sys.argv[1], write, fsync=sys.argv[3] == "fsync")
    print("done", flush=True)
""")


def start_writer(final: Path, how: str, fsync: str = "fsync") -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(final), how, fsync], stdout=subprocess.PIPE,
                            stdin=subprocess.DEVNULL, text=True)
    assert proc.stdout.readline() == "half written\n"
    return proc


@pytest.mark.parametrize("fsync", ["fsync", "no-fsync"])
def test_a_sigkill_mid_write_leaves_the_old_content_intact(tmp_path, fsync):
    final = tmp_path / "job.toml"
    final.write_bytes(OLD)
    proc = start_writer(final, "hang", fsync)
    try:
        assert final.read_bytes() == OLD              # mid-write, readers see the old file
        [tmp] = [p for p in tmp_path.iterdir() if p != final]
        assert re.fullmatch(rf"\.job\.toml\.{proc.pid}-[0-9a-f]+\.tmp", tmp.name)
        assert tmp.read_bytes().startswith(b"NEW, the first half")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc.stdout.close()
    assert proc.returncode == -signal.SIGKILL
    assert final.read_bytes() == OLD
    # What is left is hidden (never read) and names the dead writer, so a repair can remove it.
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(".")] == ["job.toml"]


def test_a_writer_that_is_not_killed_replaces_the_file_whole(tmp_path):
    final = tmp_path / "job.toml"
    final.write_bytes(OLD)
    proc = start_writer(final, "finish")
    out, _ = proc.communicate(timeout=30)
    assert out == "done\n" and proc.returncode == 0
    assert final.read_bytes() == b"NEW, the first half\n" * 100 + b"NEW, the second half\n" * 100
    assert names(tmp_path) == ["job.toml"]
