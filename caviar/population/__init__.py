"""Population mode (`[search] scheduler = "pbt"`): parallel babysitters that copy the best and explore.

    plan.py      the population from the job and trainer: members, what explore changes, generations
    policy.py    pure decisions: ranking, divergence, exploit (who copies whom), explore (new values)
    worker.py    one member's generation (plain Python, replacing a divergence at once), and the Ray actor
    pools.py     where members train: on the driver, or on Ray actors
    state.py     the members between generations, and the file that commits a generation
    rows.py      a generation's table rows: epochs with the values in force, events
    loop.py      the synchronous generation loop, writing the tables
    command.py   `caviar parallel` for a pbt job: lock, Ray, folder, Ctrl-C, summary
"""
