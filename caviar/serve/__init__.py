"""`caviar serve`: a live web app and JSON API over a results folder (a view: it reads the store,
and only ever writes a nudge, through `caviar.babysit.nudges`).

    command.py   the command: bind, print the address and token, run uvicorn
    app.py       the HTTP shell (Starlette): routes, timing and security headers
    security.py  token, origin and host checks (pure)
    runs.py      which folder a URL names, each run's cached tables, the runs list
    cache.py     a table read on by its new part files only; cursors that outlive a compaction
    summary.py   a run's line in the runs list: state, best, counts, times (pure)
    tables.py    Arrow tables as columnar JSON, rows since a cursor (pure)
    answers.py   scales, importance, a nudge request read from JSON
    pages.py     the HTML frames; static/ holds the script, the charts and the style
"""
