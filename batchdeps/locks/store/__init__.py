"""The lock server's lease stores: the interface, SQLite (default) and PostgreSQL.

`open_store(db)` picks the store from the `--db` value: a `postgresql://` (or
`postgres://`) URL is the PostgreSQL store (psycopg imported only then), anything else an
SQLite file. The modules are looked up in `STORES`, a registry of scheme -> module.
"""

from __future__ import annotations

from .base import (
    AUDIT_EVENTS,
    AuditRow,
    LeaseNotHeld,
    LeaseRow,
    LeaseStore,
    StoreError,
    StoreUnavailable,
    fence_window_left,
)
from .sqlite import SqliteLeaseStore

__all__ = ["AUDIT_EVENTS", "AuditRow", "LeaseNotHeld", "LeaseRow", "LeaseStore",
           "SqliteLeaseStore", "StoreError", "StoreUnavailable", "fence_window_left",
           "is_postgres_url"]

#: URL scheme -> the module (under this package) whose `open_store(url, init)` serves it
STORES = {"postgresql": "postgres", "postgres": "postgres"}


def is_postgres_url(db: str) -> bool:
    """Whether `--db` names a PostgreSQL database rather than an SQLite file."""
    scheme, sep, _ = db.partition("://")
    return bool(sep) and scheme.lower() in STORES
