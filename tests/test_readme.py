"""The README is the user's contract: its Python example runs as written, on a results folder laid
out as the drivers write it."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from tests.run_factory import make_sweep

ROOT = Path(__file__).resolve().parent.parent


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)


def test_the_results_example_runs_as_written(tmp_path):
    (example,) = [block for block in python_blocks() if "caviar.load(" in block]
    make_sweep(tmp_path / "results", "digits")
    done = subprocess.run([sys.executable, "-c", example], cwd=tmp_path, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "importance" in done.stdout and "digits" in done.stdout
