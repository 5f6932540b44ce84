"""The run lock (OUT/.NAME.lock): one driver per run, stale locks taken over, its holder named."""

from __future__ import annotations

import json
import os
import signal

import pytest

from caviar.store.lock import acquire, holder, lock_path, mark_open, release
from tests.support import hold_lock



def test_the_lock_names_the_live_babysitter(tmp_path):
    assert holder(tmp_path) is None
    acquire(tmp_path, "babysit")
    assert holder(tmp_path).pid == os.getpid()
    release(tmp_path)
    assert holder(tmp_path) is None and not lock_path(tmp_path).exists()


def test_a_live_lock_is_refused_and_a_dead_ones_is_taken_over(tmp_path):
    proc = hold_lock(tmp_path)
    try:
        assert holder(tmp_path).pid == proc.pid
        with pytest.raises(ValueError, match=f"being run by caviar babysit \\(process {proc.pid}\\)"):
            acquire(tmp_path, "babysit")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert holder(tmp_path) is None  # the pid is gone; the file is still there
    acquire(tmp_path, "babysit")
    assert holder(tmp_path).pid == os.getpid()
    release(tmp_path)


def test_a_live_babysitter_keeps_its_lock_whatever_the_lock_file_says(tmp_path):
    # What a racing second process sees when it read the file before the first one wrote it: a dead
    # pid. The lock is the kernel's, held for the life of the holder, so a stale file is no opening.
    proc = hold_lock(tmp_path)
    try:
        lock_path(tmp_path).write_text(json.dumps({"pid": 2**30, "start": 1}))
        with pytest.raises(ValueError, match="is being run by"):
            acquire(tmp_path, "babysit")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    acquire(tmp_path, "babysit")  # its holder gone, the lock is free
    assert holder(tmp_path).pid == os.getpid()
    release(tmp_path)


def test_babysitters_starting_together_on_a_stale_lock_get_it_once(tmp_path):
    lock_path(tmp_path).write_text(json.dumps({"pid": 2**30, "start": 1}))  # left by a SIGKILL
    go, answers, done = os.pipe(), os.pipe(), os.pipe()
    children = []
    for _ in range(6):  # real processes (forked), released at the same moment
        pid = os.fork()
        if pid == 0:
            try:
                os.read(go[0], 1)
                try:
                    acquire(tmp_path, "babysit")
                    os.write(answers[1], b"1")
                except ValueError:
                    os.write(answers[1], b"0")
                os.read(done[0], 1)  # hold it until every answer is in
            finally:
                os._exit(0)
        children.append(pid)
    os.write(go[1], b"x" * len(children))
    got = b"".join(os.read(answers[0], 1) for _ in children)
    os.write(done[1], b"x" * len(children))
    for pid in children:
        os.waitpid(pid, 0)
    assert got.count(b"1") == 1


def test_the_lock_sits_beside_the_run_folder_so_overwrite_cannot_replace_it(tmp_path):
    run = tmp_path / "out" / "sweep"
    assert lock_path(run) == tmp_path / "out" / ".sweep.lock"
    acquire(run, "sweep")
    try:
        assert holder(run) == (os.getpid(), "sweep", False) and not run.exists()
    finally:
        release(run)


def test_a_link_planted_at_the_lock_is_never_written_through(tmp_path):
    target = tmp_path / "precious.txt"
    target.write_text("keep me")
    run = tmp_path / "out" / "run"
    run.parent.mkdir()
    lock_path(run).symlink_to(target)
    with pytest.raises(OSError) as refused:
        acquire(run, "babysit")
    assert refused.value.filename == str(lock_path(run))
    assert target.read_text() == "keep me" and holder(run) is None


def test_the_lock_says_when_its_holder_has_opened_the_run_folder(tmp_path):
    acquire(tmp_path, "babysit")
    try:
        assert holder(tmp_path) == (os.getpid(), "babysit", False)
        before = lock_path(tmp_path).stat()
        mark_open(tmp_path)
        after = lock_path(tmp_path).stat()
        assert holder(tmp_path) == (os.getpid(), "babysit", True)
        assert (after.st_ino, after.st_size) == (before.st_ino, before.st_size)  # in place, the same length
    finally:
        release(tmp_path)


def test_a_lock_file_of_an_older_caviar_reads_as_not_open(tmp_path):
    proc = hold_lock(tmp_path)  # the holder: alive; the file then rewritten as an older caviar wrote it
    try:
        start = json.loads(lock_path(tmp_path).read_text())["start"]
        lock_path(tmp_path).write_text(json.dumps({"pid": proc.pid, "start": start, "kind": "babysit"}))
        assert holder(tmp_path) == (proc.pid, "babysit", False)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
