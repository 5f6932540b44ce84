"""Panda mode (`caviar babysit`, `caviar.babysit(...)`): one model watched epoch by epoch, rolled back
when it goes wrong.

    command.py     caviar.babysit() and the command: check, lock, train the first epoch, open the folder, loop
    loop.py        Sitter: one step at a time (train, decide, carry out, nudges, persist)
    ending.py      the end of a run: the best state restored (or the newest readable), the summary
    policy.py      the decision after each epoch, a pure function of the history
    resume.py      where a resume goes on from; rows a kill kept off the disk
    nudges.py      a person's changes while it runs (`caviar nudge`)
    from_sweep.py  `--from SWEEP`: the best trial of a sweep as the starting point
"""

from caviar.importing import make_callable

make_callable(__name__, "caviar.babysit.command:babysit")   # caviar.babysit(...): the Python entry point
