"""The job: a TOML file (or dict) read, overridden and validated into frozen dataclasses.

    job.py        Job and its sections; parse_job, load_job
    space.py      search dimensions (log, 1 - beta, integers, choices) mapped to the unit interval
    conditions.py conditional dimensions: `when = { parent = [values] }`, checked, and which are active
    choices.py    sampler and scheduler names and the rules of their options
    overrides.py  `--set section.key=value`
    values.py     the checks of single values;  messages.py  how a field and a value are named
    files.py      which job file a command means

Reading a job imports no trainer and no search code: whether the job fits its trainer is
`caviar.trainers.check_job`, asked when a job is about to run.
"""
