"""What people and Prometheus look at: the status page, the lock server's monitoring routes.

    page.py     the page as HTML (escaped, no script, meta refresh)
    status.py   what the page shows, read from the history tables and the lease store
    routes.py   GET /, login, /metrics, /v1/history on the lock server
    ui.py       `batchdeps ui`: the same page over the local history file on 127.0.0.1
"""
