"""The history tables in PostgreSQL, for a lock server whose leases live there too.

The same statements as the SQLite store (history/store.py), spoken through an adapter
that turns SQLite's dialect into PostgreSQL's where they differ: `?` placeholders,
`BEGIN IMMEDIATE`, the two-argument `max()`, integer division of a real, and `user` (a
reserved word). The tables are made by `lock-server --init` (locks/store/pgschema.py).
Every replica writes and reads the same rows, so the status page, `batchdeps history` and
`batchdeps audit` show the same thing through any of them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..locks.store.base import StoreUnavailable
from .store import HistoryStore

_DIALECT = (
    ("BEGIN IMMEDIATE", "BEGIN"),
    ("max(history_runs.last_seen, excluded.last_seen)",
     "greatest(history_runs.last_seen, excluded.last_seen)"),
    ("cast((ts - ?) / 86400 AS INTEGER)", "floor((ts - ?) / 86400)::integer"),
    (" user,", ' "user",'),
    ("?", "%s"),
)


def translate(sql: str) -> str:
    """An SQLite statement of history/store.py in PostgreSQL's dialect."""
    for sqlite_text, pg_text in _DIALECT:
        sql = sql.replace(sqlite_text, pg_text)
    return sql


class _Connection:
    """The part of sqlite3.Connection that HistoryStore uses, over a psycopg connection.

    A broken connection (PostgreSQL restarted) is replaced at the next statement outside a
    transaction; a failure is StoreUnavailable (the server answers 503, the runner's
    history sender tries again).
    """

    def __init__(self, connect: Callable[[], Any], psycopg: Any, shown: str) -> None:
        self.connect = connect
        self.psycopg = psycopg
        self.shown = shown
        self.conn = connect()

    def _conn(self, sql: str) -> Any:
        conn = self.conn
        if (conn.closed or conn.broken) and sql.lstrip()[:5].upper() not in ("COMMI",
                                                                              "ROLLB"):
            conn = self.conn = self.connect()
        return conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        try:
            return self._conn(sql).execute(translate(sql), tuple(args) or None)
        except self.psycopg.OperationalError as exc:
            raise StoreUnavailable(f"the history database {self.shown} did not answer: "
                                   f"{str(exc).strip().splitlines()[0]}") from None

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        rows = list(rows)
        if not rows:
            return
        try:
            with self._conn(sql).cursor() as cursor:
                cursor.executemany(translate(sql), rows)
        except self.psycopg.OperationalError as exc:
            raise StoreUnavailable(f"the history database {self.shown} did not answer: "
                                   f"{str(exc).strip().splitlines()[0]}") from None

    def close(self) -> None:
        self.conn.close()


class PgHistoryStore(HistoryStore):
    """HistoryStore over the PostgreSQL database at `url` (`shown`: the URL for people)."""

    def __init__(self, url: str, shown: str) -> None:  # noqa: D107 - no super(): no file
        from ..locks.store.postgres import CONNECT_OPTIONS, psycopg_module

        psycopg = psycopg_module()
        self.path = shown
        self.db = _Connection(  # type: ignore[assignment]
            lambda: psycopg.connect(url, autocommit=True, **CONNECT_OPTIONS), psycopg, shown)
