"""The results store: one folder per run, Parquet tables, checkpoints; crash-safe, never runs code.

    vocabulary.py   the shared words: Mode, Status, RunKind, tables and columns, reserved names, run names
    layout.py       the folder format: part files, what a folder holds and which kind of run it is
    writer.py       TableWriter: append-only parts, compaction
    swap.py         a compacted table put in place: one atomic folder swap, or its fallbacks
    folder.py       RunFolder, open_run (create, resume, overwrite), repair after a crash
    lock.py         one driver per run: OUT/.NAME.lock
    reader.py       load(path), load_all(dir): runs into pandas
    babysat.py      a babysat run as one row of load_all, beside the sweeps' trials
    ranking.py      which trial is best (one rule everywhere)
    checkpoints.py  .npz checkpoints read without pickle
    atomic.py       every write whole or not at all
"""
