"""The PostgreSQL lease store: one database shared by any number of lock-server replicas.

Everything that decides is in the database: fencing tokens come from one sequence
(`batchdeps_token_seq`, CACHE 1, so strictly increasing whichever replica asks), deadlines
are `now()` plus the TTL on the database's clock (a replica's clock is never read for
them), the free keys of a batch are granted by one `INSERT ... ON CONFLICT DO NOTHING` and
the others by `batchdeps_acquire()` (pgwrites.py, pgschema.py),
and expired leases are reaped with `FOR UPDATE SKIP LOCKED`, so two replicas sweeping at
once each take different rows and neither waits for the other.

Each change is one statement and commits on its own (the connections are in autocommit),
so a row lock lasts only one statement; a batch (acquire-many, release-many, renew) is one
statement, hence one transaction and one commit, answered key by key (leases are
independent: a batch is not all-or-nothing, as in the SQLite store). Lease changes made
at the same time share statements (pgbatch.py: group commit across requests): the
server's through `off_loop()`, in rounds off its event loop, and calls from several
threads likewise; they go over a connection of their own, and reads, the audit, reaping
and an operator's changes over another.

Durability, as in the SQLite store: a grant is on disk before it is announced. A statement
of grants (one alone, or a batch's) commits with its own WAL flush (synchronous_commit at
the database's level for its transaction, `off` raised to `on`), so it needs nothing more;
a resource slot commits without waiting for the disk and is counted in `grants`, and the
server announces it only after `sync()`, a flush on a connection of its own that covers
every commit before it (one for all that piled up: group commit). A release commits
without a flush and is not flushed before it is answered (one that a crash forgets leaves
its lease held until its deadline; a later grant's flush covers it, the WAL being flushed
in order). Renewals and fence checks commit synchronously (all those of a batch with one
flush): a forgotten renewal would bring a deadline forward. A connection that breaks
(PostgreSQL restarted, a network cut) is dropped; the call is tried once more on a new
connection when doing it twice is harmless, else it fails with StoreUnavailable (the server answers 503 and the client retries, here or at another
replica).

psycopg is imported when a store is opened, never at import time.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from ...errors import UsageError
from ..protocol import FORCED_RELEASE, LOCAL_FENCE_FRACTION, Holder, resource_key
from . import pgschema
from .base import (
    REOPENED,
    AuditRow,
    LeaseNotHeld,
    LeaseRow,
    StoreError,
    StoreUnavailable,
    fence_window_left,
)
from .pgbatch import ACQUIRE, RELEASE, RENEW, SOLO, Combiner, Replayed, Rounds
from .pgwrites import apply

if TYPE_CHECKING:
    from ...history.store import HistoryStore

T = TypeVar("T")
EXTRA = "batchdeps[postgres]"
#: libpq settings for every connection: fail fast when the server is gone, never hang
CONNECT_OPTIONS = {"connect_timeout": 3, "keepalives_idle": 5, "keepalives_interval": 2,
                   "keepalives_count": 2, "application_name": "batchdeps-lock-server"}
SESSION_SETTINGS = "SET statement_timeout = '10s'; SET lock_timeout = '5s'"
#: sync(): a write, so that its commit waits for the WAL flush (a transaction that wrote
#: nothing, even one with a transaction id, commits without flushing)
SYNC_SQL = "UPDATE batchdeps_meta SET value = value WHERE name = 'schema'"
_COLUMNS = ("key, token, host, pid, run_id, ttl, extract(epoch FROM granted_at), "
            "extract(epoch FROM expires_at - now())")


def psycopg_module() -> Any:
    """psycopg, or a UsageError naming the extra that brings it."""
    try:
        import psycopg
    except ImportError:
        raise UsageError(f"a postgresql:// lock database needs psycopg: pip install "
                         f"'{EXTRA}'") from None
    return psycopg


def expand(url: str) -> str:
    """`${NAME}` in the URL replaced from the environment (a password kept out of files)."""
    from ...config import UnsetVariable, _interpolate

    value = _interpolate(url, "--db", os.environ)
    if isinstance(value, UnsetVariable):
        raise value.error()
    return str(value)


def redact(url: str) -> str:
    """The URL with any password replaced by ***, for logs, pages and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://(unparsable URL)"
    netloc = parts.netloc
    if "@" in netloc:
        user, _, host = netloc.rpartition("@")
        if ":" in user:
            user = user.split(":", 1)[0] + ":***"
        netloc = f"{user}@{host}"
    query = re.sub(r"(?i)(password=)[^&]*", r"\1***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


class Link:
    """One connection to the database, made again when the last one broke.

    Used by one thread at a time: the store has one for the server's event loop, one for
    the thread leading a batch of changes, one for `sync()`.
    """

    def __init__(self, store: PgLeaseStore, durable: bool = False) -> None:
        self.store = store
        self.durable = durable  # commits wait for their flush even where the database's
        self.conn: Any = None   # synchronous_commit is off (sync()'s link)
        #: the database's synchronous_commit, `off` raised to `on`: what a commit that must
        #: be durable before it is answered sets for its transaction
        self.flushed = "on"

    def connect(self) -> Any:
        store = self.store
        conn = store.psycopg.connect(store.url, autocommit=True, **CONNECT_OPTIONS)
        conn.execute(SESSION_SETTINGS)
        level = conn.execute("SHOW synchronous_commit").fetchone()[0]
        self.flushed = "on" if level == "off" else level
        if self.durable and level == "off":
            conn.execute("SET synchronous_commit = on")
        self.conn = conn
        return conn

    def run(self, work: Callable[[Any], T], retry: bool = True) -> T:
        """`work(connection)`, on a new connection if the last one broke; tried again once
        on another when `retry` (doing it twice is harmless), else StoreUnavailable."""
        psycopg = self.store.psycopg
        for attempt in (1, 2):
            try:
                conn = self.conn
                if conn is None or conn.closed or conn.broken:
                    conn = self.connect()
                return work(conn)
            except psycopg.OperationalError as exc:
                self.close()
                if attempt == 2 or not retry:
                    raise StoreUnavailable(f"the lease database {self.store.path} did not "
                                           f"answer: {_first_line(exc)}") from None
        raise AssertionError("unreachable")

    def close(self) -> None:
        _close_quietly(self.conn)
        self.conn = None


class PgLeaseStore:
    """Leases in one PostgreSQL database (see the module docstring)."""

    kind = "postgresql"
    groups = False  # every call commits on its own; transaction() groups nothing

    def __init__(self, url: str) -> None:
        """Connect and check the schema; StoreError (exit 2) when it cannot be used."""
        self.psycopg = psycopg_module()
        self.url = expand(url)
        self.path = redact(self.url)
        self.grants = 0
        self.event_counts: dict[str, int] = {}
        self._counting = threading.Lock()  # grants and event_counts, from any thread
        self._main = Link(self)  # the caller's: reads, audit, reaping, operators' changes
        self._writes = Link(self)  # the lease changes', used by the leading thread only
        self._flush = Link(self, durable=True)  # sync()'s (it runs in a thread of its own)
        self._flushing = threading.Lock()
        self.changes = Combiner(lambda batch: apply(self, batch))
        self.replayed = Replayed(self.changes)
        self.rounds = Rounds(self.replayed)  # the server's way in (off_loop)
        try:
            conn = self._main.connect()
        except self.psycopg.Error as exc:
            raise StoreError(f"cannot connect to the lease database {self.path}: "
                             f"{_first_line(exc)}") from None
        pgschema.require_current(conn, self.path)

    # -- connection ---------------------------------------------------------------------------
    def _run(self, work: Callable[[Any], T], retry: bool = True) -> T:
        """`work(connection)` on the caller's connection."""
        return self._main.run(work, retry)

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Each call commits on its own (see the module docstring): nothing to group."""
        yield

    async def off_loop(self, call: Callable[[], T]) -> T:
        """`call()`, its store calls made together with those of the other calls handed in
        meanwhile, off the event loop (pgbatch.Rounds)."""
        return await self.rounds.run(call)

    def close(self) -> None:
        self.rounds.close()
        self._main.close()
        self._writes.close()
        with self._flushing:
            self._flush.close()

    def sync(self) -> None:
        """Flush the WAL up to now: every grant committed before this call is durable.

        Resource slots commit without waiting for the disk (the other grants commit with
        their own flush, and are not counted in `grants`); this commits a transaction of its own
        that writes (SYNC_SQL) and so waits for its flush (on disk, and on a synchronous
        standby where one is configured; the database's synchronous_commit is kept, but
        `off` is raised to `on` for this connection), and a flush covers all the WAL before
        it. The server calls it, from a thread, before it announces a grant counted in
        `grants`, once for all that piled up meanwhile (its GroupSync), so it runs on a
        connection of its own.
        """
        with self._flushing:
            self._flush.run(lambda conn: conn.execute(SYNC_SQL))

    def health(self) -> dict[str, Any]:
        try:
            self._run(lambda conn: conn.execute("SELECT 1").fetchone())
        except StoreUnavailable as exc:
            return {"database": self.kind, "answers": False, "error": str(exc)}
        return {"database": self.kind, "answers": True}

    def history(self) -> HistoryStore:
        from ...history.pgstore import PgHistoryStore

        return PgHistoryStore(self.url, self.path)

    def _count(self, event: str, n: int = 1) -> None:
        with self._counting:
            self.event_counts[event] = self.event_counts.get(event, 0) + n

    # -- reading ------------------------------------------------------------------------------
    @staticmethod
    def _lease(row: Sequence[Any]) -> LeaseRow:
        key, token, host, pid, run_id, ttl, granted_at, expires_in = row
        return LeaseRow(key, int(token), Holder(host, int(pid), run_id), float(ttl),
                        float(granted_at), float(expires_in))

    def _select(self, where: str, args: Sequence[Any] = (), tail: str = "") -> list[LeaseRow]:
        sql = f"SELECT {_COLUMNS} FROM batchdeps_leases WHERE {where} {tail}"
        rows = self._run(lambda conn: conn.execute(sql, args).fetchall())
        return [self._lease(row) for row in rows]

    @property
    def held_count(self) -> int:
        return int(self._run(lambda conn: conn.execute(
            "SELECT count(*) FROM batchdeps_leases WHERE expires_at > now()").fetchone())[0])

    def get(self, key: str) -> LeaseRow | None:
        found = self._select("key = %s AND expires_at > now()", (key,))
        return found[0] if found else None

    def live(self, limit: int | None = None) -> list[LeaseRow]:
        tail = "ORDER BY granted_at" + (f" LIMIT {int(limit)}" if limit else "")
        return self._select("expires_at > now()", (), tail)

    def by_holder(self, host: str, pid: int) -> list[LeaseRow]:
        return self._select("host = %s AND pid = %s AND expires_at > now()", (host, pid))

    def token(self, key: str) -> int:
        """The fencing token of the row on `key` (0 if none)."""
        found = self._select("key = %s", (key,))
        return found[0].token if found else 0

    def token_high(self) -> int:
        """The sequence's last value: above every token handed out (0 before --init)."""
        return int(self._run(lambda conn: conn.execute(
            "SELECT last_value FROM batchdeps_token_seq").fetchone())[0])

    def audit_since(self, since: float = 0.0, limit: int = 1000) -> list[AuditRow]:
        rows = self._run(lambda conn: conn.execute(
            "SELECT id, at, event, key, token, holder, address, detail FROM batchdeps_audit "
            "WHERE at >= %s ORDER BY id DESC LIMIT %s", (since, int(limit))).fetchall())
        return [AuditRow(int(r[0]), float(r[1]), *r[2:4], int(r[4]), *r[5:]) for r in rows]

    # -- writing ------------------------------------------------------------------------------
    def audit(self, event: str, address: str, detail: str = "", key: str = "") -> None:
        self._run(lambda conn: conn.execute(
            "INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
            "VALUES (extract(epoch FROM now()), %s, %s, 0, '', %s, %s)",
            (event, key, address, detail)), retry=False)
        self._count(event)

    def prune_audit(self, before: float, limit: int = 1000) -> int:
        return int(self._run(lambda conn: conn.execute(
            "DELETE FROM batchdeps_audit WHERE id IN (SELECT id FROM batchdeps_audit "
            "WHERE at < %s ORDER BY id LIMIT %s)", (before, int(limit))).rowcount))

    def _granted(self, row: Sequence[Any], flushed: bool = False) -> tuple[bool, LeaseRow]:
        """A grant function's row as (granted, lease); `flushed`: its commit waited for
        the disk (else it is counted in `grants`, for sync() to flush)."""
        event = row[0]
        lease = self._lease(row[1:])
        if event != "held" and not flushed:
            with self._counting:
                self.grants += 1  # a slot: announced only once sync() has flushed it
        if event in ("grant", "takeover", "expire"):  # pgschema.FUNCTIONS says which
            self._count("grant")
            if event != "grant":
                self._count(event)
            return True, lease
        return event == "extended", lease

    def _fresh_grants(self, n: int, flushed: bool = False) -> None:
        """`n` grants of keys that had no row (no function row to count them by)."""
        with self._counting:
            if not flushed:
                self.grants += n
            self.event_counts["grant"] = self.event_counts.get("grant", 0) + n

    def acquire(self, key: str, holder: Holder, ttl: float,
                address: str = "") -> tuple[bool, LeaseRow | None]:
        """One call of `batchdeps_acquire()`; safe to send twice (see acquire_many)."""
        answer: tuple[bool, LeaseRow] = self.replayed.change(
            ACQUIRE, [key], holder, float(ttl), address)[0]
        return answer

    def acquire_many(self, keys: Sequence[str], holder: Holder, ttl: float,
                     address: str = "") -> list[tuple[bool, LeaseRow]]:
        """One statement for the batch (with other acquires made at once). Keys are locked
        in sorted order, so two batches that overlap cannot deadlock. Safe to send twice:
        a grant to the same holder is answered again with the same token."""
        if not keys:
            return []
        answers: list[tuple[bool, LeaseRow]] = self.replayed.change(
            ACQUIRE, list(keys), holder, float(ttl), address)
        return answers

    def acquire_resource(self, name: str, slots: int, holder: Holder, ttl: float,
                         address: str = "") -> LeaseRow | None:
        """Slots are tried in order, skipping those another grant has locked this instant.
        Made alone, and not sent twice on a broken connection (a second slot could be
        taken)."""
        keys = [resource_key(name, slot) for slot in range(slots)]
        lease: LeaseRow | None = self.replayed.change(SOLO, keys, holder, float(ttl), address)
        return lease

    def renew(self, key: str, token: int, holder: Holder) -> LeaseRow:
        answer = self.renew_many([(key, token)], holder)[0]
        if isinstance(answer, LeaseNotHeld):
            raise answer
        return answer

    def renew_many(self, leases: Sequence[tuple[str, int]], holder: Holder
                   ) -> list[LeaseRow | LeaseNotHeld]:
        """One statement for the batch (with other renewals made at once), one flush."""
        if not leases:
            return []
        answers: list[LeaseRow | LeaseNotHeld] = self.replayed.change(
            RENEW, [(key, int(token)) for key, token in leases], holder)
        return answers

    def check(self, key: str, token: int, holder: Holder) -> LeaseRow:
        return self.renew(key, token, holder)

    def release(self, key: str, token: int, holder: Holder, address: str = "") -> bool:
        return self.release_many([(key, token)], holder, address)[0]

    def release_many(self, leases: Sequence[tuple[str, int]], holder: Holder,
                     address: str = "") -> list[bool]:
        """One statement for the batch (with other releases made at once), safe to send
        twice.

        The rows are locked in key order (`COLLATE "C"`: code point order, as Python sorts
        the keys of an acquire-many), so a release and an acquire-many that share keys
        cannot deadlock. The commit does not wait for the disk (`synchronous_commit` off
        for this transaction only, set in `relaxed`): as in the SQLite store, a release
        that a crash of the database forgets leaves the lease held until its deadline, and
        any later grant of the key is flushed with the release before it.
        """
        if not leases:
            return []
        answers: list[bool] = self.replayed.change(
            RELEASE, [(key, int(token)) for key, token in leases], holder, address)
        return answers

    def force_release(self, key: str, address: str, reason: str) -> LeaseRow | None:
        """The row locked, then deleted, or (while its holder may still commit on its own
        fence answer) given to FORCED_RELEASE until that window closes; one transaction."""
        closed = FORCED_RELEASE

        def work(conn: Any) -> Sequence[Any] | None:
            with conn.transaction():
                row = conn.execute(f"SELECT {_COLUMNS} FROM batchdeps_leases WHERE key = %s "
                                   "FOR UPDATE", (key,)).fetchone()
                if row is None or (row[2], row[3], row[4]) == (
                        closed.host, closed.pid, closed.run_id):
                    return None
                window = fence_window_left(self._lease(row))
                if window > 0:
                    conn.execute(  # expires_at less that part of the TTL (on the right:
                        # the old values): the last confirmation plus it
                        "UPDATE batchdeps_leases SET host = %s, pid = %s, run_id = %s, "
                        "ttl = ttl * %s, expires_at = expires_at - make_interval(secs => "
                        "ttl * %s) WHERE key = %s",
                        (closed.host, closed.pid, closed.run_id, LOCAL_FENCE_FRACTION,
                         LOCAL_FENCE_FRACTION, key))
                else:
                    conn.execute("DELETE FROM batchdeps_leases WHERE key = %s", (key,))
                conn.execute(
                    "INSERT INTO batchdeps_audit (at, event, key, token, holder, address, "
                    "detail) VALUES (extract(epoch FROM now()), 'force-release', %s, %s, "
                    "format('host %%s pid %%s run %%s', %s::text, %s::integer, %s::text), "
                    "%s, %s)", (key, row[1], row[2], row[3], row[4], address, reason))
                return row  # type: ignore[no-any-return]

        row = self._run(work, retry=False)
        if row is None:
            return None
        self._count("force-release")
        return self._lease(row)

    def expire_due(self, limit: int = 500) -> int:
        """Reap expired rows no other replica is reaping (SKIP LOCKED: no waiting, no
        row reaped twice); a row renewed meanwhile fails the re-check and stays."""
        done = int(self._run(lambda conn: conn.execute(
            "WITH due AS (SELECT key FROM batchdeps_leases WHERE expires_at <= now() "
            "ORDER BY expires_at LIMIT %s FOR UPDATE SKIP LOCKED), "
            "gone AS (DELETE FROM batchdeps_leases l USING due WHERE l.key = due.key "
            "AND l.expires_at <= now() RETURNING l.key, l.token, l.host, l.pid, l.run_id, "
            "l.ttl) "
            "INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
            "SELECT extract(epoch FROM now()), 'expire', key, token, "
            "format('host %%s pid %%s run %%s', host, pid, run_id), '', "
            "CASE WHEN host = %s AND pid = %s AND run_id = %s THEN %s "
            "ELSE format('not renewed within its ttl of %%s s', ttl) END FROM gone",
            (int(limit), FORCED_RELEASE.host, FORCED_RELEASE.pid, FORCED_RELEASE.run_id,
             REOPENED)).rowcount))
        self._count("expire", done)
        return done


def _close_quietly(conn: Any) -> None:
    """Close `conn` (None: nothing); a broken connection may fail to close too."""
    if conn is not None:
        try:
            conn.close()
        except Exception:  # noqa: BLE001 - nothing more to do with it
            pass


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def init_database(url: str) -> str:
    """`lock-server --db URL --init`: create or migrate the schema; what was done."""
    psycopg = psycopg_module()
    full = expand(url)
    shown = redact(full)
    try:
        conn = psycopg.connect(full, autocommit=True, **CONNECT_OPTIONS)
    except psycopg.Error as exc:
        raise StoreError(f"cannot connect to the lease database {shown}: "
                         f"{_first_line(exc)}") from None
    try:
        before, now = pgschema.init_schema(conn, shown)
    except psycopg.Error as exc:
        raise StoreError(f"could not initialise {shown}: {_first_line(exc)} (nothing was "
                         "changed)") from None
    finally:
        conn.close()
    if before is None:
        return f"created the batchdeps schema {now} in {shown}"
    if before < now:
        return f"migrated {shown} from schema {before} to {now}"
    return f"{shown} already has the batchdeps schema {now} (functions refreshed)"
