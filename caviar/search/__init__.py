"""Search: which configurations a sweep tries (samplers) and which trials go on (schedulers).

    samplers.py    random, grid, sobol, coarse_to_fine: points of the unit cube, reproducible per trial
    schedulers.py  fifo, asha: decisions at milestone epochs
"""
