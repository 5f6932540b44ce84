"""What a population is between two generations, and the one file that commits a generation to disk.

`checkpoints/population.npz` holds, after each generation, every member's state as it starts the
next one (copies included), the population's best-ever state, and in its JSON meta the members'
values and counters and the table rows of the generations not yet in the tables (the driver writes
them at most every second, `caviar.population.loop.FLUSH_SECONDS`). It is written whole or not at all
(`caviar.store.checkpoints`: temp file, then `os.replace`) before those rows are appended to the
tables, so a SIGKILL at any moment leaves either the generation before or this one committed, and
`--resume` appends any committed rows the tables lack and trains on from there: the run ends as the
uninterrupted one. Read with `allow_pickle=False`: data only.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from caviar.population.policy import Best
from caviar.store.checkpoints import load_checkpoint, save_checkpoint
from caviar.store.layout import POPULATION_COMMIT as COMMIT_FILE
_BEST = "best"


@dataclass
class Member:
    """One member's bookkeeping: its values now, where it last copied from, its last epoch's report."""

    values: dict[str, Any]
    first_loss: float | None = None   # its untrained loss: the divergence yardstick
    copied_from: int | None = None    # the member it last copied (None: never)
    reshuffle: int | None = None      # a data-order seed to apply when it next trains (after a copy)
    seconds: float = 0.0
    node: str = ""
    metrics: dict[str, float] = field(default_factory=dict)
    score: float = math.nan           # its metric at its last epoch (what exploit ranks)
    best: float = math.nan            # its metric at its best epoch so far (its trials score)
    diverged: str | None = None       # why its last generation stopped early


@dataclass
class Population:
    """The members, the best ever and the rollbacks so far, after `generation` generations (0: none yet)."""

    members: list[Member]
    generation: int = 0
    best: Best | None = None
    rollbacks: int = 0   # generations that rolled back to the best ever ([babysit] max_rollbacks caps them)


def save_commit(folder: Path, population: Population, states: list[dict[str, np.ndarray]],
                best_state: dict[str, np.ndarray] | None, rows: dict[str, list[dict]]) -> Path:
    """Write the generation's commit (see the module's docstring), atomically."""
    # a member starting over (None) keeps no arrays, and reads back as an empty state
    arrays = {f"m{i}.{key}": value for i, state in enumerate(states) for key, value in (state or {}).items()}
    if best_state is not None:
        arrays.update({f"{_BEST}.{key}": value for key, value in best_state.items()})
    meta = {"generation": population.generation, "members": [asdict(m) for m in population.members],
            "best": asdict(population.best) if population.best is not None else None,
            "rollbacks": population.rollbacks, "rows": rows}
    folder.mkdir(exist_ok=True)
    return save_checkpoint(folder / COMMIT_FILE, arrays, meta)


def load_commit(folder: Path) -> tuple[Population, list[dict], dict | None, dict[str, list[dict]]] | None:
    """The last committed generation: (population, member states, best-ever state, its rows), or None
    when no generation was committed. A commit that does not read raises CorruptCheckpoint (ValueError)."""
    path = folder / COMMIT_FILE
    if path.is_symlink():
        raise ValueError(f"--resume: {path} is a symbolic link; a run folder's files must be its own")
    if not path.is_file():
        return None
    arrays, meta = load_checkpoint(path)
    members = [Member(**m) for m in meta["members"]]
    states: list[dict] = [{} for _ in members]
    best_state: dict[str, np.ndarray] = {}
    for key, value in arrays.items():
        owner, _, name = key.partition(".")
        if owner == _BEST:
            best_state[name] = value
        else:
            states[int(owner[1:])][name] = value
    best = Best(**meta["best"]) if meta["best"] is not None else None
    # a commit from before rollbacks were counted has none: its run may roll back max_rollbacks more
    population = Population(members, meta["generation"], best, int(meta.get("rollbacks", 0)))
    return population, states, best_state or None, meta["rows"]
