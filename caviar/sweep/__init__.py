"""Caviar mode (`caviar parallel`, `caviar.sweep(...)`): many configurations trained in parallel on Ray.

    command.py      caviar.sweep() and the command: check, lock, join Ray, open the folder, run
    plan.py         sampler, scheduler, epochs and workers from the job
    ray_session.py  join a cluster or start a local Ray
    run.py          the sweep wired to its run folder and progress view
    loop.py         the driver loop: segments to workers, decisions, results as they arrive
    worker.py       the Ray actor that trains trial after trial
    restore.py      what a resumed sweep already did
"""

from caviar.importing import make_callable

make_callable(__name__, "caviar.sweep.command:sweep")   # caviar.sweep(...): the Python entry point
