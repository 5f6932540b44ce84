"""Caviar mode (`caviar parallel`, `caviar.sweep(...)`): many configurations trained in parallel on Ray.

    command.py      caviar.sweep() and the command: check, lock, join Ray, open the folder, run
    plan.py         sampler, scheduler, epochs and workers from the job
    ray_session.py  join a cluster, or say that this sweep starts a Ray of its own
    local_ray.py    the driver's handle on its own Ray, booting in a child process
    ray_head.py     that child: Ray's head processes, stopped when the driver says or dies
    head_start.py   the driver trains trials while its Ray boots, then hands over to the workers
    resources.py    each trial's CPUs and GPUs, how many fit, more than the cluster has
    run.py          the sweep wired to its run folder and progress view
    loop.py         the driver loop: segments to workers, decisions, results as they arrive
    records.py      the loop's records: a running trial, a call to a worker, a worker slot
    worker.py       the Ray actor that trains trial after trial
    restore.py      what a resumed sweep already did
"""

from caviar.importing import make_callable

make_callable(__name__, "caviar.sweep.command:sweep")   # caviar.sweep(...): the Python entry point
