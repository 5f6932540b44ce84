"""The driver's handle on its local Ray (caviar/sweep/local_ray.py) and the child that runs it
(caviar/sweep/ray_head.py): a head that cannot start is one line of the child's own words, raised as
the machine's error (exit status 1 from the command line), with nothing of it left running."""

from __future__ import annotations

import subprocess
import sys

import pytest

from caviar.cli import error_line
from caviar.sweep.local_ray import LocalRay, RayStartError
from tests.support import ROOT


def test_a_head_that_cannot_start_says_why_in_one_line_and_exits():
    # -1 CPUs: Ray itself refuses the node.
    child = subprocess.Popen([sys.executable, "-m", "caviar.sweep.ray_head", "-1"], cwd=ROOT, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True)
    head = LocalRay(child, cpus=1)
    with pytest.raises(RayStartError) as failed:
        head.wait(timeout=120)
    assert str(failed.value).startswith("the local Ray did not start: ValueError: Resource quantities must be")
    assert error_line(failed.value) == (str(failed.value), 1)   # the machine's problem: exit status 1, one line
    assert child.wait(timeout=30) == 1
    head.stop()   # nothing left to stop: returns at once


def test_a_child_that_dies_without_a_word_is_a_start_error():
    child = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, start_new_session=True)
    head = LocalRay(child, cpus=1)
    with pytest.raises(RayStartError, match="exited with status 3 before it was up"):
        head.wait(timeout=60)
    head.stop()
