"""Views over the store: they read run folders (never write results, never import a trainer).

    show.py        `caviar show` / `compare`: text tables, number formats, the leaderboard
    report.py      `caviar report`: an HTML page with figures;  plots.py  the figures
    importance.py  which hyperparameters mattered (binned one-way ANOVA)
    progress.py    the live line of a running sweep
"""
