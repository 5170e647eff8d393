"""The SQLite lease store: one file in WAL mode, expiry on this process's monotonic clock.

Tables: `leases` (one row per *held* lease: key, fencing token, holder, ttl), `audit` (every
grant, release, expiry, takeover, forced release and authentication failure) and `meta`
(what the file is, and the fencing-token high-water mark). A released or expired lease's row
is deleted; the key's history stays in the audit log. A lease released by force whose holder
may still commit on its own fence answer is kept, held by `FORCED_RELEASE`, until then.

Fencing tokens are one sequence for the whole database: each grant gets
`max(high-water mark + 1, wall clock in microseconds)` and the mark is written in the same
transaction as the grant. So a token is never handed out twice by one database, and a server
started on a fresh file (after the operator removed a damaged one) still hands out tokens
above every token the old file issued, as long as the server's clock has not gone back and
the old file issued fewer than a million grants per second on average.

Every change is committed at once (WAL, synchronous=NORMAL: it survives a kill -9 of the
server); changes made inside `transaction()` share one commit. Within a transaction the
audit lines wait in memory and go in with one `executemany` just before the COMMIT, and the
token high-water mark is kept in memory and written once, in the same transaction as the
grants that raised it. Grants must also survive a power loss, or a fencing token could be handed out
twice: the server calls `sync()` (an fsync of the WAL) after a grant and before it answers,
and one fsync covers every grant committed meanwhile (group commit). Releases are not
synced: if a power loss drops one, that lease stays held for one more TTL.

Expiry lives in memory on this process's monotonic clock and is not written on renewal
(renewal is then cheap). On start every held row is treated as granted at start time, so a
restart never shortens a live holder's lease. `expire_due()` deletes expired rows a bounded
number at a time, from a heap: no call scans the table.

`open_store()` refuses a file that is not a valid lease database (never re-initialises it).
Every method runs to completion without yielding, so callers on one event loop see each
operation as atomic.
"""

from __future__ import annotations

import heapq
import os
import sqlite3
import struct
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote

from ..protocol import FORCED_RELEASE, LOCAL_FENCE_FRACTION, Holder, resource_key
from .base import (
    AUDIT_EVENTS,
    REOPENED,
    AuditRow,
    LeaseNotHeld,
    LeaseRow,
    StoreError,
    fence_window_left,
    not_held_reason,
)

if TYPE_CHECKING:
    from ...history.store import HistoryStore

__all__ = ["AUDIT_EVENTS", "AuditRow", "LeaseNotHeld", "LeaseRow", "SqliteLeaseStore",
           "StoreError"]

T = TypeVar("T")
APPLICATION = "batchdeps-leases"
SCHEMA_VERSION = 2
SCHEMA = """
CREATE TABLE meta (name TEXT PRIMARY KEY, value) WITHOUT ROWID;
CREATE TABLE leases (
    key TEXT PRIMARY KEY,
    token INTEGER NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    run_id TEXT NOT NULL,
    ttl REAL NOT NULL,
    granted_at REAL NOT NULL    -- wall clock, for display only
);
CREATE TABLE audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,           -- wall clock
    event TEXT NOT NULL,        -- grant, release, expire, takeover, force-release, auth-failure
    key TEXT NOT NULL,
    token INTEGER NOT NULL,
    holder TEXT NOT NULL,       -- 'host H pid P run R' ('' when none)
    address TEXT NOT NULL,      -- client address of the request ('' for expiry)
    detail TEXT NOT NULL
);
CREATE INDEX audit_at ON audit (at);
"""
SQLITE_MAGIC = b"SQLite format 3\x00"
INSERT_LEASE = ("INSERT OR REPLACE INTO leases (key, token, host, pid, run_id, ttl, granted_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)")
ROWS_PER_SELECT = 500  # keys per `WHERE key IN (...)`: below SQLite's limit of variables
WAL_MAGICS = (0x377F0682, 0x377F0683)






def _wal_header_ok(header: bytes) -> bool:
    """Whether a WAL file's 32-byte header has a valid magic number and checksum."""
    magic = struct.unpack(">I", header[:4])[0]
    if magic not in WAL_MAGICS:
        return False
    order = ">" if magic & 1 else "<"
    words = struct.unpack(order + "6I", header[:24])
    s0 = s1 = 0
    for i in range(0, 6, 2):
        s0 = (s0 + words[i] + s1) & 0xFFFFFFFF
        s1 = (s1 + words[i + 1] + s0) & 0xFFFFFFFF
    return (s0, s1) == struct.unpack(">2I", header[24:32])


def check_files(path: str, existed: bool) -> None:
    """Refuse a database file (or its WAL) that is plainly not a lease database's."""
    if existed:
        with open(path, "rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
        if not head:
            raise StoreError(f"the lease database {path} is an empty file; it is not "
                             "re-initialised. Move it away to start afresh (fencing tokens "
                             "stay above the old ones: see docs/locks.md)")
        if head != SQLITE_MAGIC:
            raise StoreError(f"{path} is not a lease database (not an SQLite file: damaged or "
                             "another file); it is not re-initialised. Restore it, or move it "
                             "away to start afresh")
    wal = path + "-wal"
    try:
        with open(wal, "rb") as handle:
            header = handle.read(32)
    except FileNotFoundError:
        return
    if header and (len(header) < 32 or not _wal_header_ok(header)):
        raise StoreError(f"the write-ahead log {wal} of the lease database is damaged, so "
                         "recent grants would be lost; it is not re-initialised. Restore it, "
                         "or move both files away to start afresh")


class SqliteLeaseStore:
    """Leases keyed by task id (and resource slot), durable across restarts."""

    def __init__(self, path: str, clock: Callable[[], float] = time.monotonic,
                 wall: Callable[[], float] = time.time, check: bool = True,
                 existed: bool | None = None) -> None:
        """Open or create the database at `path`; StoreError when it is not a valid one.

        `existed`: whether the file was there before (the server creates it empty to lock
        it first); by default whether it exists now.
        """
        self.path = path
        self.kind = "sqlite"
        self.clock = clock
        self.wall = wall
        if existed is None:
            existed = os.path.exists(path)
        if check:
            check_files(path, existed)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        try:
            self.db.execute("PRAGMA busy_timeout=5000")
            self._open(path, existed, check)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise StoreError(f"{path} is not a valid lease database ({exc}); it is not "
                             "re-initialised. Restore it, or move it away to start afresh")
        except BaseException:
            self.db.close()
            raise
        self._expires: dict[str, float] = {}
        self._heap: list[tuple[float, str]] = []
        self._depth = 0
        self._audit_rows: list[tuple[Any, ...]] = []  # audit lines of the open transaction
        self._undo: list[tuple[str, float | None]] = []  # expiries the transaction changed
        self.groups = True  # transaction() is one commit: a failure inside undoes it all
        self._token_high = int(self.db.execute(
            "SELECT value FROM meta WHERE name = 'token_high'").fetchone()[0])
        self._token_written = self._token_high  # the mark as the database has it
        self.grants = 0  # grants committed by this process; `sync()` makes them durable
        self.event_counts: dict[str, int] = {}  # audit events by kind since start (metrics)
        now = self.clock()
        for key, ttl in self.db.execute("SELECT key, ttl FROM leases"):
            self._set_expiry(key, now + ttl)

    @staticmethod
    def _tables(db: sqlite3.Connection) -> set[str]:
        return {row[0] for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}

    @staticmethod
    def _inspect(path: str) -> None:
        """Check an existing file through a read-only connection, which never writes (a
        read-write one would checkpoint a WAL into a damaged file when it closes)."""
        try:
            ro = sqlite3.connect(f"file:{quote(os.path.abspath(path))}?mode=ro", uri=True)
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open the lease database {path}: {exc}") from None
        try:
            problem = ro.execute("PRAGMA quick_check").fetchone()[0]
            if problem != "ok":
                raise StoreError(f"the lease database {path} is damaged ({problem}); it is "
                                 "not re-initialised. Restore it, or move it away to start "
                                 "afresh")
            tables = SqliteLeaseStore._tables(ro)
            if "meta" in tables:
                meta = dict(ro.execute("SELECT name, value FROM meta"))
                if meta.get("application") != APPLICATION:
                    raise StoreError(f"{path} is an SQLite file of another program, not a "
                                     "lease database")
                if int(meta.get("schema", 0)) > SCHEMA_VERSION:
                    raise StoreError(f"{path} was written by a newer batchdeps (schema "
                                     f"{meta.get('schema')}); upgrade this server")
            elif tables == {"leases"}:
                columns = {row[1] for row in ro.execute("PRAGMA table_info(leases)")}
                if not {"key", "token", "held", "granted_at"} <= columns:
                    raise StoreError(f"{path} is an SQLite file of another program (a "
                                     "leases table of another shape), not a lease database")
            elif tables:
                raise StoreError(f"{path} is an SQLite file of another program (tables "
                                 f"{', '.join(sorted(tables))}), not a lease database")
            else:
                raise StoreError(f"{path} holds no lease tables (its write-ahead log was "
                                 "lost?); it is not re-initialised. Move it away to start "
                                 "afresh")
        except sqlite3.DatabaseError as exc:
            raise StoreError(f"{path} is not a valid lease database ({exc}); it is not "
                             "re-initialised. Restore it, or move it away to start afresh")
        finally:
            ro.close()

    def _open(self, path: str, existed: bool, check: bool) -> None:
        if check and existed:
            self._inspect(path)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # checkpoints still fsync
        tables = self._tables(self.db)
        if "meta" in tables:
            pass
        elif tables == {"leases"} and self._legacy():
            self._migrate_legacy()
        elif tables or existed:
            raise StoreError(f"{path} is not a lease database (tables "
                             f"{', '.join(sorted(tables)) or 'none'})")
        else:
            self._create()

    def _create(self) -> None:
        self.db.executescript("BEGIN;" + SCHEMA + "COMMIT;")
        self.db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", [
            ("application", APPLICATION), ("schema", SCHEMA_VERSION),
            ("created", self.wall()), ("token_high", 0)])
        self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the tables are in the main file

    def _legacy(self) -> bool:
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(leases)")}
        return {"key", "token", "held", "granted_at"} <= columns

    def _migrate_legacy(self) -> None:
        """A database of the first schema (a row per key ever leased, a `held` flag)."""
        high = self.db.execute("SELECT COALESCE(MAX(token), 0) FROM leases").fetchone()[0]
        self.db.execute("BEGIN IMMEDIATE")
        self.db.execute("ALTER TABLE leases RENAME TO leases_v1")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self.db.execute(statement)
        self.db.execute(
            "INSERT INTO leases SELECT key, token, host, pid, run_id, ttl, granted_at "
            "FROM leases_v1 WHERE held = 1")
        self.db.execute("DROP TABLE leases_v1")
        self.db.executemany("INSERT INTO meta (name, value) VALUES (?, ?)", [
            ("application", APPLICATION), ("schema", SCHEMA_VERSION),
            ("created", self.wall()), ("token_high", int(high))])
        self.db.execute("COMMIT")

    def close(self) -> None:
        try:
            self.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        except sqlite3.Error:
            pass
        self.db.close()

    def health(self) -> dict[str, Any]:
        """The file answers as long as this process has it open."""
        try:
            self.db.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            return {"database": self.kind, "answers": False, "error": str(exc)}
        return {"database": self.kind, "answers": True}

    def history(self) -> HistoryStore:
        """The history tables in the same file, on a connection of their own."""
        from ...history.store import HistoryStore

        return HistoryStore(self.path)

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
            os.fdatasync(fd)  # the WAL's data (and its size when it grew), not its mtime
        finally:
            os.close(fd)

    async def off_loop(self, call: Callable[[], T]) -> T:
        """`call()` at once: SQLite answers from this process (no database server)."""
        return call()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Group the changes made inside into one commit (nested uses join the outer one)."""
        if self._depth == 0:
            self.db.execute("BEGIN IMMEDIATE")
        self._depth += 1
        try:
            yield
        except BaseException:
            self._depth -= 1
            if self._depth == 0:
                self._rollback()
            raise
        self._depth -= 1
        if self._depth == 0:
            try:
                self._write_pending()
            except BaseException:
                self._rollback()
                raise
            self.db.execute("COMMIT")
            self._undo.clear()
            self._token_written = self._token_high

    def _rollback(self) -> None:
        """Undo the open transaction: its rows, audit lines and the expiries it changed."""
        self._audit_rows.clear()
        self.db.execute("ROLLBACK")
        for key, before in reversed(self._undo):
            if before is None:
                self._expires.pop(key, None)
            else:
                self._expires[key] = before
                heapq.heappush(self._heap, (before, key))
        self._undo.clear()
        # a token taken in the rolled-back transaction stays used: tokens only grow
        self._token_written = int(self.db.execute(
            "SELECT value FROM meta WHERE name = 'token_high'").fetchone()[0])

    def _write_pending(self) -> None:
        """The transaction's audit lines and token mark, just before its COMMIT."""
        if self._audit_rows:
            rows, self._audit_rows = self._audit_rows, []
            self.db.executemany(
                "INSERT INTO audit (at, event, key, token, holder, address, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
            for row in rows:
                self.event_counts[row[1]] = self.event_counts.get(row[1], 0) + 1
        if self._token_high != self._token_written:
            self.db.execute("UPDATE meta SET value = ? WHERE name = 'token_high'",
                            (self._token_high,))

    # -- expiry ------------------------------------------------------------------------------
    def _set_expiry(self, key: str, when: float) -> None:
        before = self._expires.get(key)
        if self._depth:
            self._undo.append((key, before))
        if before is None:
            heapq.heappush(self._heap, (when, key))
        self._expires[key] = when  # a later expiry is found when the heap entry comes up

    def _forget_expiry(self, key: str) -> None:
        before = self._expires.pop(key, None)  # its heap entry is skipped when it comes up
        if self._depth and before is not None:
            self._undo.append((key, before))

    def expire_due(self, limit: int = 500) -> int:
        """Delete up to `limit` leases whose TTL ran out (audited); how many were deleted."""
        now = self.clock()
        done = 0
        with self.transaction():
            while self._heap and self._heap[0][0] <= now and done < limit:
                _, key = heapq.heappop(self._heap)
                current = self._expires.get(key)
                if current is None:
                    continue  # released meanwhile
                if current > now:
                    heapq.heappush(self._heap, (current, key))  # renewed: look again later
                    continue
                row = self._row(key)
                self._forget_expiry(key)
                if row is not None:
                    self.db.execute("DELETE FROM leases WHERE key = ?", (key,))
                    self._audit("expire", key, row[1], self._holder(row).text(), "",
                                self._expired(row))
                done += 1
        return done

    @property
    def held_count(self) -> int:
        """Leases held (some may have expired and not been swept yet); O(1)."""
        return len(self._expires)

    # -- reading ----------------------------------------------------------------------------
    def _row(self, key: str) -> tuple | None:  # type: ignore[type-arg]
        return self.db.execute(  # type: ignore[no-any-return]
            "SELECT key, token, host, pid, run_id, ttl, granted_at FROM leases "
            "WHERE key = ?", (key,)).fetchone()

    @staticmethod
    def _holder(row: tuple) -> Holder:  # type: ignore[type-arg]
        return Holder(row[2], row[3], row[4])

    def _lease(self, row: tuple) -> LeaseRow:  # type: ignore[type-arg]
        key, token, host, pid, run_id, ttl, granted_at = row
        return LeaseRow(key, token, Holder(host, pid, run_id), ttl, granted_at,
                        self._expires.get(key, 0.0) - self.clock())

    def _live(self, row: tuple | None) -> bool:  # type: ignore[type-arg]
        return row is not None and self._expires.get(row[0], 0.0) > self.clock()

    def get(self, key: str) -> LeaseRow | None:
        """The live lease on `key`, or None when it is free or expired."""
        row = self._row(key)
        return self._lease(row) if row is not None and self._live(row) else None

    def live(self, limit: int | None = None) -> list[LeaseRow]:
        """Live leases, oldest grant first (at most `limit`)."""
        sql = "SELECT key, token, host, pid, run_id, ttl, granted_at FROM leases ORDER BY granted_at"
        rows = self.db.execute(sql + (f" LIMIT {int(limit)}" if limit else "")).fetchall()
        return [self._lease(row) for row in rows if self._live(row)]

    def by_holder(self, host: str, pid: int) -> list[LeaseRow]:
        """Live leases of every run of process `pid` on `host`."""
        rows = self.db.execute(
            "SELECT key, token, host, pid, run_id, ttl, granted_at FROM leases "
            "WHERE host = ? AND pid = ?", (host, pid)).fetchall()
        return [self._lease(row) for row in rows if self._live(row)]

    def token_high(self) -> int:
        """The highest fencing token this database ever handed out."""
        return self._token_high

    def audit_since(self, since: float = 0.0, limit: int = 1000) -> list[AuditRow]:
        """Audit lines at or after wall time `since`, newest first, at most `limit`."""
        rows = self.db.execute(
            "SELECT id, at, event, key, token, holder, address, detail FROM audit "
            "WHERE at >= ? ORDER BY id DESC LIMIT ?", (since, int(limit))).fetchall()
        return [AuditRow(*row) for row in rows]

    # -- writing ----------------------------------------------------------------------------
    def _audit(self, event: str, key: str, token: int, holder: str, address: str,
               detail: str = "") -> None:
        """An audit line, written with the open transaction's commit (always inside one)."""
        assert self._depth > 0, "audit lines are written inside a transaction"
        self._audit_rows.append((self.wall(), event, key, token, holder, address, detail))

    def audit(self, event: str, address: str, detail: str = "", key: str = "") -> None:
        """Record an event that is not a lease change (an authentication failure)."""
        with self.transaction():
            self._audit(event, key, 0, "", address, detail)

    def prune_audit(self, before: float, limit: int = 1000) -> int:
        """Delete up to `limit` audit lines older than wall time `before`."""
        with self.transaction():
            cursor = self.db.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? "
                "ORDER BY id LIMIT ?)", (before, int(limit)))
        return cursor.rowcount

    def _next_token(self) -> int:
        """The next fencing token; the mark is written with the transaction's commit."""
        assert self._depth > 0, "tokens are taken inside a transaction"
        token = max(self._token_high + 1, int(self.wall() * 1_000_000))
        self._token_high = token
        return token

    def _grant(self, key: str, row: tuple | None, holder: Holder,  # type: ignore[type-arg]
               ttl: float, address: str, inserts: list[tuple] | None = None  # type: ignore[type-arg]
               ) -> LeaseRow:
        """Grant `key` (whose row, or None, was just read). `inserts`: the lease's row is
        added there for the caller to write with the others of its batch, instead of now."""
        if not self._depth:  # a transaction of its own (inside one, no nested enter/exit)
            with self.transaction():
                return self._grant(key, row, holder, ttl, address, inserts)
        if row is not None:  # expired, not swept yet
            before = self._holder(row)
            if before != holder and before != FORCED_RELEASE:
                self._audit("takeover", key, row[1], before.text(), address,
                            f"expired lease taken by {holder.text()}")
            else:
                self._audit("expire", key, row[1], before.text(), "", self._expired(row))
        token = self._next_token()
        now = self.wall()
        values = (key, token, holder.host, holder.pid, holder.run_id, ttl, now)
        if inserts is None:
            self.db.execute(INSERT_LEASE, values)
        else:
            inserts.append(values)
        self._audit("grant", key, token, holder.text(), address, f"ttl {ttl:g} s")
        self._set_expiry(key, self.clock() + ttl)
        self.grants += 1
        return LeaseRow(key, token, holder, ttl, now, ttl)

    def acquire(self, key: str, holder: Holder, ttl: float,
                address: str = "") -> tuple[bool, LeaseRow | None]:
        """(True, lease) when granted or already the caller's; (False, current) otherwise.

        Acquiring again by the same holder is idempotent: same token, expiry extended.
        """
        return self._acquire_row(key, self._row(key), holder, ttl, address)

    def _acquire_row(self, key: str, row: tuple | None, holder: Holder,  # type: ignore[type-arg]
                     ttl: float, address: str, inserts: list[tuple] | None = None  # type: ignore[type-arg]
                     ) -> tuple[bool, LeaseRow]:
        """`acquire` of `key`, whose row (or None) the caller has just read."""
        if self._live(row):
            current = self._lease(row)  # type: ignore[arg-type]
            if current.holder == holder:
                self._set_expiry(key, self.clock() + ttl)
                return True, self._lease(row)  # type: ignore[arg-type]
            return False, current
        return True, self._grant(key, row, holder, ttl, address, inserts)

    def _rows(self, keys: Sequence[str]) -> dict[str, tuple]:  # type: ignore[type-arg]
        """The rows of `keys` that exist, read in a few SELECTs instead of one per key."""
        found: dict[str, tuple] = {}  # type: ignore[type-arg]
        for start in range(0, len(keys), ROWS_PER_SELECT):
            chunk = keys[start:start + ROWS_PER_SELECT]
            for row in self.db.execute(
                    "SELECT key, token, host, pid, run_id, ttl, granted_at FROM leases "
                    f"WHERE key IN ({','.join('?' * len(chunk))})", chunk):
                found[row[0]] = row
        return found

    def acquire_many(self, keys: Sequence[str], holder: Holder, ttl: float,
                     address: str = "") -> list[tuple[bool, LeaseRow]]:
        """`acquire` for each key, in one commit, the rows read together first.

        Gives the same answers as `acquire` called for each key in turn (a key named twice
        is granted once and then answered as the caller's, same token)."""
        answers = []
        inserts: list[tuple] = []  # type: ignore[type-arg]  # the grants' rows, written together
        with self.transaction():
            rows = self._rows(list(keys))
            for key in keys:
                granted, lease = self._acquire_row(key, rows.get(key), holder, ttl, address,
                                                   inserts)
                if granted and (key not in rows or rows[key][1] != lease.token):
                    rows[key] = (key, lease.token, holder.host, holder.pid, holder.run_id,
                                 lease.ttl, lease.granted_at)  # what _row would read now
                answers.append((granted, lease))
            if inserts:
                self.db.executemany(INSERT_LEASE, inserts)
        return answers

    def acquire_resource(self, name: str, slots: int, holder: Holder, ttl: float,
                         address: str = "") -> LeaseRow | None:
        """A free slot of pool `name` (one the caller does not hold yet), or None."""
        for slot in range(slots):
            key = resource_key(name, slot)
            row = self._row(key)
            if not self._live(row):
                return self._grant(key, row, holder, ttl, address)
        return None

    def _mine(self, key: str, token: int, holder: Holder) -> tuple:  # type: ignore[type-arg]
        row = self._row(key)
        if row is None:
            raise LeaseNotHeld(f"{key} was released or expired")
        if row[1] != token or self._holder(row) != holder:
            raise LeaseNotHeld(not_held_reason(key, row[1], self._holder(row)))
        if not self._live(row):
            with self.transaction():
                self._delete(key)
                self._audit("expire", key, row[1], holder.text(), "",
                            "expired before it was renewed")
            raise LeaseNotHeld(f"{key} expired before it was renewed")
        return row

    def renew(self, key: str, token: int, holder: Holder) -> LeaseRow:
        """Extend the caller's live lease by its TTL; LeaseNotHeld when it is not theirs."""
        row = self._mine(key, token, holder)
        self._set_expiry(key, self.clock() + row[5])
        return self._lease(row)

    def renew_many(self, leases: Sequence[tuple[str, int]], holder: Holder
                   ) -> list[LeaseRow | LeaseNotHeld]:
        """`renew` for each (key, token), in order; a lease not the caller's answers the
        LeaseNotHeld saying why (the others are renewed all the same)."""
        answers: list[LeaseRow | LeaseNotHeld] = []
        for key, token in leases:
            try:
                answers.append(self.renew(key, token, holder))
            except LeaseNotHeld as exc:
                answers.append(exc)
        return answers

    def check(self, key: str, token: int, holder: Holder) -> LeaseRow:
        """The fence before a commit: as `renew`."""
        return self.renew(key, token, holder)

    def release(self, key: str, token: int, holder: Holder, address: str = "") -> bool:
        """Free the caller's lease; False (no change) when it is not theirs any more.

        One DELETE that matches key, token and holder together (no read first)."""
        with self.transaction():
            gone = self.db.execute(
                "DELETE FROM leases WHERE key = ? AND token = ? AND host = ? AND pid = ? "
                "AND run_id = ?", (key, token, holder.host, holder.pid, holder.run_id)).rowcount
            if gone:
                self._forget_expiry(key)
                self._audit("release", key, token, holder.text(), address)
        return bool(gone)

    def release_many(self, leases: Sequence[tuple[str, int]], holder: Holder,
                     address: str = "") -> list[bool]:
        """`release` for each (key, token), in order, in one commit: the rows read
        together, the caller's deleted in one `executemany` (a lease named twice is
        released once, then answered False, as `release` called in turn would)."""
        answers: list[bool] = []
        gone: list[tuple[str]] = []
        text = holder.text()
        mine = (holder.host, holder.pid, holder.run_id)
        with self.transaction():
            rows = self._rows([key for key, _ in leases])
            for key, token in leases:
                row = rows.get(key)
                released = row is not None and row[1] == token and row[2:5] == mine
                if released:
                    del rows[key]
                    gone.append((key,))
                    self._forget_expiry(key)
                    self._audit("release", key, token, text, address)
                answers.append(released)
            if gone:
                self.db.executemany("DELETE FROM leases WHERE key = ?", gone)
        return answers

    def force_release(self, key: str, address: str, reason: str) -> LeaseRow | None:
        """Free `key` whoever holds it (an operator's decision, audited); the lease or None.

        While its holder may still commit on its own fence answer, the row stays, held by
        FORCED_RELEASE until that window closes (its TTL is that part of the old one: a
        restart then keeps it closed long enough).
        """
        row = self._row(key)
        if row is None or self._holder(row) == FORCED_RELEASE:
            return None
        lease = self._lease(row)
        window = fence_window_left(lease)
        with self.transaction():
            if window > 0:
                closed = FORCED_RELEASE
                self.db.execute(
                    "UPDATE leases SET host = ?, pid = ?, run_id = ?, ttl = ? WHERE key = ?",
                    (closed.host, closed.pid, closed.run_id,
                     lease.ttl * LOCAL_FENCE_FRACTION, key))
                self._set_expiry(key, self.clock() + window)
                heapq.heappush(self._heap, (self.clock() + window, key))  # earlier than its own
            else:
                self._delete(key)
            self._audit("force-release", key, row[1], lease.holder.text(), address, reason)
        return lease

    def _expired(self, row: tuple) -> str:  # type: ignore[type-arg]
        """The detail of the audit line of `row`'s expiry."""
        if self._holder(row) == FORCED_RELEASE:
            return REOPENED
        return f"not renewed within its ttl of {row[5]:g} s"

    def _delete(self, key: str) -> None:
        self.db.execute("DELETE FROM leases WHERE key = ?", (key,))
        self._forget_expiry(key)

    def token(self, key: str) -> int:
        """The fencing token of the lease held on `key` (0 if none)."""
        row = self._row(key)
        return int(row[1]) if row is not None else 0
