"""Search: which configurations a sweep tries (samplers) and which trials go on (schedulers).

    base.py        what a sampler is (ask, tell, ready) and the per-trial seed streams
    samplers.py    random, grid, sobol, coarse_to_fine: points of the unit cube, reproducible per trial
    model_based.py tpe, gp, cmaes: Optuna's samplers through ask-and-tell, reproducible in parallel
    schedulers.py  fifo, asha: decisions at milestone epochs
"""
