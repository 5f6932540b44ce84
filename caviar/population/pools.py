"""Where a population's members train: on the driver itself, or on Ray actors; and when to leave the driver.

A local Ray takes seconds to start (5 on an idle laptop, 15-20 on a loaded 2-core machine), often
more than a small population's whole training. So a population started without `--address` trains
its first generation on the driver (`DriverPool`, no Ray imported), times it, and moves to Ray
(`RayPool`) only when `worth_ray` says the rest would end sooner there. The two train with the same
`train_segment` on one BLAS thread, so a member's scores do not depend on where it trained: the
same job and seed give the same run either way, and a run may switch between generations.

A pool's `train` takes a member's task, the state it starts from and its fallback state (see
`caviar.population.worker`), each a value on the driver, an object reference (or a value) on Ray,
and returns three handles (report, state at the end, best epoch's state): the values themselves on
the driver, Ray object references on actors; `get` reads a list of either kind.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

from caviar.population.worker import Task, train_segment

# What a local Ray's start is taken to cost when deciding whether to start one: an idle machine's
# (a loaded one takes longer, so this errs towards starting Ray)
RAY_START_SECONDS = 5.0


def worth_ray(train_seconds: float, generations_left: int, workers: int,
              ray_start_seconds: float | None = None) -> bool:
    """Whether the remaining generations end sooner on `workers` Ray actors (after starting Ray) than
    on the driver. train_seconds: the last generation's training, every member's summed (s); the
    rest of a generation (deciding, committing) costs the same either way, so Ray saves
    generations_left x train_seconds x (1 - 1/workers), against its start (default RAY_START_SECONDS)."""
    ray_start_seconds = RAY_START_SECONDS if ray_start_seconds is None else ray_start_seconds
    if generations_left <= 0 or workers <= 1:
        return False
    return generations_left * train_seconds * (1 - 1 / workers) > ray_start_seconds


class DriverPool:
    """Members trained one after another in this process, on one BLAS thread (as an actor trains)."""

    on_ray = False

    def __init__(self, trainer_class: type, data: Any) -> None:
        self.trainer_class, self.data = trainer_class, data

    def train(self, slot: int, task: Task, state: Any, fallback: Any = None) -> tuple[Any, Any, Any]:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(limits=1):
            return train_segment(self.trainer_class, self.data, task, state, fallback)

    def get(self, handles: Sequence[Any]) -> list[Any]:
        return list(handles)

    def put(self, state: Any) -> Any:
        return state

    def close(self) -> None:
        pass


class RayPool:
    """Members trained on `len(actors)` Ray actors (member m on actor m mod W), states left in Ray's
    object store and handed on by reference."""

    on_ray = True

    def __init__(self, actors: list[Any], stop: Callable[[list[Any]], None]) -> None:
        self.actors, self._stop = actors, stop

    def train(self, slot: int, task: Task, state: Any, fallback: Any = None) -> tuple[Any, Any, Any]:
        return self.actors[slot % len(self.actors)].train.remote(task, state, fallback)

    def get(self, handles: Sequence[Any]) -> list[Any]:
        """The values of `handles`: references fetched in one call, values (from the driver) as they are."""
        import ray

        at = [i for i, h in enumerate(handles) if isinstance(h, ray.ObjectRef)]
        values = list(handles)
        for i, value in zip(at, ray.get([handles[i] for i in at])):
            values[i] = value
        return values

    def put(self, state: Any) -> Any:
        """A reference to `state` in the object store, put once (a reference already is one)."""
        import ray

        return state if isinstance(state, ray.ObjectRef) else ray.put(state)

    def close(self) -> None:
        self._stop(self.actors)
