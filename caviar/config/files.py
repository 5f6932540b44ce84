"""Which job file a command means, and the overrides its flags add.

The example jobs ship with the package: `caviar/jobs` links to the repository's `jobs/` (an editable
install reads them there; a wheel carries them as package data).
"""

from __future__ import annotations

import argparse
from pathlib import Path

PACKAGE_JOBS = Path(__file__).resolve().parent.parent / "jobs"
DEFAULT_JOB = "digits"


def resolve_job_path(job: str | None) -> Path:
    """The job file a user means: a path, or a name of a job in `jobs/` ("digits" -> jobs/digits.toml),
    in the current folder first, then among the package's examples. With none given, the default job.

    Raises ValueError when no such file exists.
    """
    if job is None:
        job = DEFAULT_JOB
    path = Path(job)
    if path.is_file():
        return path
    for folder in (Path("jobs"), PACKAGE_JOBS):
        candidate = folder / (job if job.endswith(".toml") else f"{job}.toml")
        if candidate.is_file():
            return candidate
    raise ValueError(f"job: no job file {job!r} (give a path to a .toml file or the name of one in jobs/)")


def job_overrides(args: argparse.Namespace) -> list[str]:
    """The `--set` overrides of a command, with `--name` and `--seed` folded in as overrides too."""
    overrides = list(getattr(args, "set", None) or [])
    if getattr(args, "name", None) is not None:
        overrides.append(f"name={args.name}")
    if getattr(args, "seed", None) is not None:
        overrides += [f"search.seed={args.seed}", f"babysit.seed={args.seed}"]
    return overrides
