"""Run history: what every run and every task attempt did, kept in SQLite.

    store.py     the tables (runs, task events), batched writes, queries, retention
    records.py   events of the runner turned into plain rows (shared by local and remote)
    listener.py  the listener that writes a run's rows into the local history file
    remote.py    the listener that sends the same rows to the lock server, never blocking
    since.py     `--since 2026-11-01|24h` parsing

Nothing here is imported until a run or a command needs it (sqlite3 costs start-up time).
"""
