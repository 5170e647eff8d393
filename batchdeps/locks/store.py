"""The lock server's lease table: SQLite in WAL mode, with expiry on the monotonic clock.

One row per key ever leased: (key, fencing token, holder, ttl, held). A row is never
deleted, so a key's fencing token survives release and restart and only ever grows.
Every change is committed at once (WAL, synchronous=NORMAL: it survives a kill -9 of
the server). Grants must also survive a power loss, or a fencing token could be handed
out twice: the server calls `sync()` (an fsync of the WAL) after a grant and before it
answers, and one fsync covers every grant committed meanwhile (group commit). Releases
are not synced: if a power loss drops one, that lease stays held for one more TTL.

Expiry lives in memory on this process's monotonic clock and is not written on renewal
(renewal is then cheap). On start every held row is treated as granted at start time, so
a restart never shortens a live holder's lease: a holder that renews within one TTL of the
restart keeps its lease, and a dead holder's lease frees one TTL after the restart.

Every method runs to completion without yielding, so callers on one event loop see each
operation as atomic.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass

from .protocol import Holder, resource_key

SCHEMA = """
CREATE TABLE IF NOT EXISTS leases (
    key TEXT PRIMARY KEY,
    token INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    ttl REAL NOT NULL,
    granted_at REAL NOT NULL,   -- wall clock, for display only
    held INTEGER NOT NULL
)
"""


@dataclass(frozen=True)
class LeaseRow:
    """One lease as the table knows it; `expires_in` in seconds from now (server clock)."""

    key: str
    token: int
    holder: Holder
    ttl: float
    granted_at: float
    expires_in: float


class LeaseLost(Exception):
    """The named lease is not the caller's any more; the message says why."""


class LeaseStore:
    """Leases keyed by task id (and resource slot), durable across restarts."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self.wall = wall
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # checkpoints still fsync
        self.db.execute("PRAGMA busy_timeout=5000")
        self.db.execute(SCHEMA)
        self._expires: dict[str, float] = {}
        self.grants = 0  # grants committed by this process; `sync()` makes them durable
        now = self.clock()
        for key, ttl in self.db.execute("SELECT key, ttl FROM leases WHERE held = 1"):
            self._expires[key] = now + ttl

    def close(self) -> None:
        self.db.close()

    def sync(self) -> None:
        """fsync the WAL: every change committed before this call survives a power loss.

        Safe to call from another thread while the store is in use. The file is opened
        afresh each time, so a WAL that SQLite replaced is never missed.
        """
        try:
            fd = os.open(self.path + "-wal", os.O_RDONLY)
        except FileNotFoundError:
            return  # nothing in the WAL: checkpointed (and synced) into the main file
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # -- reading ----------------------------------------------------------------------------
    def _row(self, key: str) -> tuple | None:  # type: ignore[type-arg]
        return self.db.execute(  # type: ignore[no-any-return]
            "SELECT key, token, host, pid, run_id, ttl, granted_at, held FROM leases "
            "WHERE key = ?", (key,)).fetchone()

    def _lease(self, row: tuple) -> LeaseRow:  # type: ignore[type-arg]
        key, token, host, pid, run_id, ttl, granted_at, _ = row
        return LeaseRow(key, token, Holder(host, pid, run_id), ttl, granted_at,
                        self._expires.get(key, 0.0) - self.clock())

    def _live(self, row: tuple | None) -> bool:  # type: ignore[type-arg]
        return row is not None and row[7] == 1 and self._expires.get(row[0], 0.0) > self.clock()

    def get(self, key: str) -> LeaseRow | None:
        """The live lease on `key`, or None when it is free or expired."""
        row = self._row(key)
        return self._lease(row) if row is not None and self._live(row) else None

    def live(self) -> list[LeaseRow]:
        """Every live lease, oldest grant first."""
        rows = self.db.execute(
            "SELECT key, token, host, pid, run_id, ttl, granted_at, held FROM leases "
            "WHERE held = 1 ORDER BY granted_at").fetchall()
        return [self._lease(row) for row in rows if self._live(row)]

    # -- writing ----------------------------------------------------------------------------
    def _grant(self, key: str, row: tuple | None, holder: Holder,  # type: ignore[type-arg]
               ttl: float) -> LeaseRow:
        token = (row[1] if row is not None else 0) + 1
        self.db.execute(
            "INSERT INTO leases (key, token, host, pid, run_id, ttl, granted_at, held) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 1) ON CONFLICT(key) DO UPDATE SET "
            "token = excluded.token, host = excluded.host, pid = excluded.pid, "
            "run_id = excluded.run_id, ttl = excluded.ttl, granted_at = excluded.granted_at, "
            "held = 1",
            (key, token, holder.host, holder.pid, holder.run_id, ttl, self.wall()),
        )
        self._expires[key] = self.clock() + ttl
        self.grants += 1
        return LeaseRow(key, token, holder, ttl, self.wall(), ttl)

    def acquire(self, key: str, holder: Holder, ttl: float) -> tuple[bool, LeaseRow | None]:
        """(True, lease) when granted or already the caller's; (False, current) otherwise.

        Acquiring again by the same holder is idempotent: same token, expiry extended.
        """
        row = self._row(key)
        if self._live(row):
            current = self._lease(row)  # type: ignore[arg-type]
            if current.holder == holder:
                self._expires[key] = self.clock() + ttl
                return True, self._lease(row)  # type: ignore[arg-type]
            return False, current
        return True, self._grant(key, row, holder, ttl)

    def acquire_resource(self, name: str, slots: int, holder: Holder,
                         ttl: float) -> LeaseRow | None:
        """A free slot of pool `name` (one the caller does not hold yet), or None."""
        for slot in range(slots):
            key = resource_key(name, slot)
            row = self._row(key)
            if not self._live(row):
                return self._grant(key, row, holder, ttl)
        return None

    def _mine(self, key: str, token: int, holder: Holder) -> tuple:  # type: ignore[type-arg]
        row = self._row(key)
        if row is None:
            raise LeaseLost(f"{key} was never granted")
        if row[1] != token or Holder(row[2], row[3], row[4]) != holder:
            now_held = (f"held by {Holder(row[2], row[3], row[4]).describe()}" if row[7] == 1
                        else "released since")
            raise LeaseLost(f"{key} was granted again (token {row[1]}, {now_held})")
        if row[7] != 1:
            raise LeaseLost(f"{key} was released or expired")
        if not self._live(row):
            self._release_row(key)
            raise LeaseLost(f"{key} expired before it was renewed")
        return row

    def renew(self, key: str, token: int, holder: Holder) -> LeaseRow:
        """Extend the caller's live lease by its TTL; LeaseLost when it is not theirs."""
        row = self._mine(key, token, holder)
        self._expires[key] = self.clock() + row[5]
        return self._lease(row)

    def release(self, key: str, token: int, holder: Holder) -> bool:
        """Free the caller's lease; False (no change) when it is not theirs any more."""
        row = self._row(key)
        if row is None or row[7] != 1 or row[1] != token or Holder(row[2], row[3], row[4]) != holder:
            return False
        self._release_row(key)
        return True

    def _release_row(self, key: str) -> None:
        self.db.execute("UPDATE leases SET held = 0 WHERE key = ?", (key,))
        self._expires.pop(key, None)

    def token(self, key: str) -> int:
        """The last fencing token granted for `key` (0 if never)."""
        row = self._row(key)
        return int(row[1]) if row is not None else 0
