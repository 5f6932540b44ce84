"""Caviar mode (`caviar parallel`): many configurations trained in parallel on Ray.

    command.py      the command: check, lock, join Ray, open the folder, run, print the leaderboard
    plan.py         sampler, scheduler, epochs and workers from the job
    ray_session.py  join a cluster or start a local Ray
    resources.py    each trial's CPUs and GPUs, how many fit, more than the cluster has
    run.py          the sweep wired to its run folder and progress view
    loop.py         the driver loop: segments to workers, decisions, results as they arrive
    worker.py       the Ray actor that trains trial after trial
    restore.py      what a resumed sweep already did
"""
