"""Population mode (`[search] scheduler = "pbt"`): parallel babysitters that copy the best and explore.

    plan.py      the population from the job and trainer: members, what explore changes, generations
    policy.py    pure decisions: ranking, divergence, exploit (who copies whom), explore (new values)
    worker.py    one member's generation (plain Python), and the Ray actor around it
    state.py     the members between generations, and the file that commits a generation
    loop.py      the synchronous generation loop on Ray, writing the tables
    command.py   `caviar parallel` for a pbt job: lock, Ray, folder, Ctrl-C, summary
"""
