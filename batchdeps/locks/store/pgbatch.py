"""The PostgreSQL store's group commit: lease changes made at once share one statement.

The lock server makes its lease changes on a PostgreSQL store from a pool of threads
(`LeaseStore.threaded`), so that its event loop never waits for the database. Each
change is handed to `Combiner.submit()`. One thread at a time leads: it takes every change
waiting, makes them (`apply(batch)`: one statement per kind, all the batch's releases in
one, all its acquires in another, all its renewals in a third), answers each, and hands
the lead to the oldest change that arrived meanwhile. While one statement runs, the
changes that arrive wait for the next, so under load N requests cost one round trip and
one commit instead of N; alone, a change is made at once by its own thread.

Each statement commits before any change in it is answered (and the server flushes a
grant before it announces it, as for one alone). One statement is one transaction: should
it fail, `apply` makes each change of the batch again on its own, so one bad request never
fails another (a connection error fails every change, with StoreUnavailable: nothing was
decided, and each is safe to send again).

Also the SQL of those statements: each row of the `unnest()` arrays carries its own
holder, TTL and address, and keys are visited in code point order (`COLLATE "C"`, as
Python sorts), so two batches on two replicas that share keys lock them in the same order
and cannot deadlock.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..protocol import Holder
from .base import LeaseNotHeld, LeaseRow, StoreUnavailable

if TYPE_CHECKING:
    from .postgres import PgLeaseStore

#: changes of one kind share a statement; SOLO changes (a resource slot) are made alone
ACQUIRE, RELEASE, RENEW, SOLO = "acquire", "release", "renew", "solo"
#: the order in which a batch's kinds are made: releases first, so that a key released
#: and asked for in one batch is granted
ORDER = (RELEASE, ACQUIRE, RENEW, SOLO)


class Change:
    """One call's change, waiting for the statement that makes it."""

    __slots__ = ("kind", "args", "result", "error", "finished", "wake")

    def __init__(self, kind: str, args: tuple[Any, ...]) -> None:
        self.kind = kind
        self.args = args
        self.result: Any = None
        self.error: BaseException | None = None
        self.finished = False
        self.wake = threading.Event()  # set when answered, or when it is to lead

    def answer(self, result: Any = None, error: BaseException | None = None) -> None:
        self.result, self.error = result, error
        self.finished = True


class Combiner:
    """Changes from many threads, made in batches by one leading thread at a time."""

    def __init__(self, apply: Callable[[list[Change]], None]) -> None:
        self.apply = apply  # answers every change of the batch; raises nothing
        self.batches = 0  # batches made
        self.changes = 0  # changes made in them
        self._lock = threading.Lock()
        self._waiting: list[Change] = []
        self._leading = False

    def submit(self, kind: str, *args: Any) -> Any:
        """Make the change (`kind`, `args`) with those waiting; its result, or raise."""
        change = Change(kind, args)
        with self._lock:
            self._waiting.append(change)
            lead = not self._leading
            self._leading = True
        if not lead:
            change.wake.wait()
        if not change.finished:  # it leads: the batch it takes includes itself
            self._lead()
        if change.error is not None:
            raise change.error
        return change.result

    def _lead(self) -> None:
        with self._lock:
            batch, self._waiting = self._waiting, []
        try:
            self.apply(batch)
        except BaseException as exc:  # noqa: BLE001 - a bug in apply: each change hears of it
            for change in batch:
                if not change.finished:
                    change.answer(error=exc)
        finally:
            self.batches += 1
            self.changes += len(batch)
            with self._lock:
                if self._waiting:
                    self._waiting[0].wake.set()  # the oldest waiting change leads next
                else:
                    self._leading = False
            for change in batch:
                if not change.finished:
                    change.answer(error=RuntimeError("a lease change was not made"))
                change.wake.set()


def by_kind(batch: Sequence[Change]) -> list[list[Change]]:
    """The batch's changes by kind, in `ORDER`, each kind in arrival order."""
    return [[c for c in batch if c.kind == kind] for kind in ORDER
            if any(c.kind == kind for c in batch)]


#: turns synchronous_commit off for the statement's own transaction (a FROM item of it)
RELAXED = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
#: one key: the primary key's plan
ACQUIRE_ONE = (f"SELECT a.* FROM {RELAXED}, "
               "batchdeps_acquire(%s, %s, %s, %s, %s, %s, false) AS a")
#: one lease: lock the caller's row, delete it, audit it, answer it; without waiting for
#: the disk (the row is deleted only after the join read `relaxed`, so the setting is in
#: force before the commit). Several: RELEASE_MANY.
RELEASE_ONE = (
    f"WITH mine AS (SELECT l.key, l.token FROM {RELAXED}, batchdeps_leases l "
    "WHERE l.key = %(key)s AND l.token = %(token)s AND l.host = %(host)s "
    "AND l.pid = %(pid)s AND l.run_id = %(run)s FOR UPDATE OF l), "
    "gone AS (DELETE FROM batchdeps_leases l USING mine "
    "WHERE l.key = mine.key AND l.token = mine.token "
    "RETURNING l.key, l.token, l.host, l.pid, l.run_id), "
    "logged AS (INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT extract(epoch FROM now()), 'release', key, token, %(holder)s, %(address)s, '' "
    "FROM gone) SELECT key, token, host, pid, run_id FROM gone")
#: the columns of a lease row (o_* of the grant functions, or a table row aliased `l`)
LEASE_COLUMNS = ("l.key, l.token, l.host, l.pid, l.run_id, l.ttl, "
                 "extract(epoch FROM l.granted_at), extract(epoch FROM l.expires_at - now())")
#: (n, the grant function's row) for rows n of the arrays, visited in their order (the
#: caller sorts them by key)
ACQUIRE_MANY = (
    f"SELECT k.n, a.* FROM {RELAXED}, unnest(%(keys)s::text[], %(hosts)s::text[], "
    "%(pids)s::integer[], %(runs)s::text[], %(ttls)s::double precision[], "
    "%(addresses)s::text[]) WITH ORDINALITY AS k(key, host, pid, run, ttl, address, n) "
    "CROSS JOIN LATERAL batchdeps_acquire(k.key, k.host, k.pid, k.run, k.ttl, k.address, "
    "false) AS a ORDER BY k.n")
#: the holders' rows named by (key, token, host, pid, run) rows of the arrays
_NAMED = (
    "l.key = ANY(%(keys)s::text[]) AND (l.key, l.token, l.host, l.pid, l.run_id) IN "
    "(SELECT * FROM unnest(%(keys)s::text[], %(tokens)s::bigint[], %(hosts)s::text[], "
    "%(pids)s::integer[], %(runs)s::text[]))")
#: release: lock the named rows in key order, delete them, audit each (with the address
#: of a request that named it), answer (key, token, host, pid, run) of each row freed
RELEASE_MANY = (
    f"WITH mine AS (SELECT l.key, l.token FROM {RELAXED}, batchdeps_leases l "
    f'WHERE {_NAMED} ORDER BY l.key COLLATE "C" FOR UPDATE OF l), '
    "gone AS (DELETE FROM batchdeps_leases l USING mine "
    "WHERE l.key = mine.key AND l.token = mine.token "
    "RETURNING l.key, l.token, l.host, l.pid, l.run_id), "
    "logged AS (INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT extract(epoch FROM now()), 'release', g.key, g.token, "
    "format('host %%s pid %%s run %%s', g.host, g.pid, g.run_id), "
    "coalesce((SELECT r.address FROM unnest(%(keys)s::text[], %(tokens)s::bigint[], "
    "%(addresses)s::text[]) AS r(key, token, address) "
    "WHERE r.key = g.key AND r.token = g.token LIMIT 1), ''), '' FROM gone g) "
    "SELECT key, token, host, pid, run_id FROM gone")
#: renew: lock the named live rows in key order, push each deadline a TTL past now();
#: committed with the database's synchronous_commit (a renewal is flushed before it is
#: answered: a forgotten one would bring a deadline forward)
RENEW_MANY = (
    "WITH mine AS (SELECT l.key FROM batchdeps_leases l "
    f'WHERE {_NAMED} AND l.expires_at > now() ORDER BY l.key COLLATE "C" FOR UPDATE OF l) '
    "UPDATE batchdeps_leases l SET expires_at = now() + l.ttl * interval '1 second' "
    f"FROM mine WHERE l.key = mine.key RETURNING {LEASE_COLUMNS}")
#: the rows now on the given keys, whatever their state (why a renewal was refused)
CURRENT = f"SELECT {LEASE_COLUMNS} FROM batchdeps_leases l WHERE l.key = ANY(%(keys)s::text[])"
#: the named rows whose deadline passed: deleted and audited (a renewal came too late)
EXPIRE_NAMED = (
    f"WITH gone AS (DELETE FROM batchdeps_leases l WHERE {_NAMED} AND l.expires_at <= now() "
    "RETURNING l.key, l.token, l.host, l.pid, l.run_id) "
    "INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT extract(epoch FROM now()), 'expire', key, token, "
    "format('host %%s pid %%s run %%s', host, pid, run_id), '', "
    "'expired before it was renewed' FROM gone")


def named(rows: Sequence[tuple[str, int, str, int, str]], addresses: Sequence[str] = ()
          ) -> dict[str, list[Any]]:
    """The arrays for `_NAMED` from (key, token, host, pid, run) rows (and their addresses)."""
    return {"keys": [r[0] for r in rows], "tokens": [int(r[1]) for r in rows],
            "hosts": [r[2] for r in rows], "pids": [int(r[3]) for r in rows],
            "runs": [r[4] for r in rows], "addresses": list(addresses)}


def apply(store: PgLeaseStore, batch: list[Change]) -> None:
    """Make and answer every change of `batch`: one statement per kind; should one
    fail, each of its changes on its own (a lost connection: all StoreUnavailable)."""
    makers: dict[str, Callable[[list[Change]], list[Any]]] = {
        ACQUIRE: lambda group: _acquires(store, group),
        RELEASE: lambda group: _releases(store, group),
        RENEW: lambda group: _renewals(store, group),
        SOLO: lambda one: [store._writes.run(one[0].args[0], retry=False)]}
    for group in by_kind(batch):
        make = makers[group[0].kind]
        if len(group) > 1 and group[0].kind != SOLO:
            try:
                results = make(group)
            except StoreUnavailable as exc:
                for change in group:
                    change.answer(error=exc)
                continue
            except Exception:  # noqa: BLE001 - one change's fault: each on its own
                pass
            else:
                for change, result in zip(group, results):
                    change.answer(result)
                continue
        for change in group:
            try:
                change.answer(make([change])[0])
            except Exception as exc:  # noqa: BLE001 - this change's own error
                change.answer(error=exc)

def _acquires(store: PgLeaseStore, changes: list[Change]) -> list[list[tuple[bool, LeaseRow]]]:
    """One statement for the keys of every change (key order, each key once a change)."""
    entries = sorted({(key, n) for n, change in enumerate(changes)
                      for key in change.args[0]})
    if len(entries) == 1:
        key, n = entries[0]
        _, holder, ttl, address = changes[n].args
        rows = [store._writes.run(lambda conn: conn.execute(ACQUIRE_ONE, (
            key, holder.host, holder.pid, holder.run_id, ttl, address)).fetchone())]
    else:
        holders = [changes[n].args[1] for _, n in entries]
        args = {"keys": [key for key, _ in entries],
                "hosts": [h.host for h in holders], "pids": [h.pid for h in holders],
                "runs": [h.run_id for h in holders],
                "ttls": [changes[n].args[2] for _, n in entries],
                "addresses": [changes[n].args[3] for _, n in entries]}
        rows = [row[1:] for row in store._writes.run(
            lambda conn: conn.execute(ACQUIRE_MANY, args).fetchall())]
    got = {entry: store._granted(row) for entry, row in zip(entries, rows)}
    return [[got[(key, n)] for key in change.args[0]] for n, change in enumerate(changes)]

def _releases(store: PgLeaseStore, changes: list[Change]) -> list[list[bool]]:
    """One statement for the leases of every change; a lease named twice is freed once."""
    wanted = [(key, token, change.args[1]) for change in changes
              for key, token in change.args[0]]
    if len(wanted) == 1:
        key, token, holder = wanted[0]
        args = {"key": key, "token": token, "host": holder.host, "pid": holder.pid,
                "run": holder.run_id, "holder": holder.text(),
                "address": changes[0].args[2]}
        rows = store._writes.run(lambda conn: conn.execute(RELEASE_ONE, args).fetchall())
    else:
        args = named([(key, token, h.host, h.pid, h.run_id) for key, token, h in wanted],
                     [change.args[2] for change in changes for _ in change.args[0]])
        rows = store._writes.run(lambda conn: conn.execute(RELEASE_MANY, args).fetchall())
    freed = {(key, int(token), Holder(host, int(pid), run))
             for key, token, host, pid, run in rows}
    store._count("release", len(freed))
    answers = []
    for change in changes:
        mine = []
        for key, token in change.args[0]:  # a pair given twice is freed once
            lease = (key, token, change.args[1])
            mine.append(lease in freed)
            freed.discard(lease)
        answers.append(mine)
    return answers

def _renewals(store: PgLeaseStore, changes: list[Change]
                   ) -> list[list[LeaseRow | LeaseNotHeld]]:
    """One statement (one flush) renews every live lease named; those it did not are
    looked up to say why, and the caller's own expired ones reaped."""
    wanted = [(key, token, change.args[1]) for change in changes
              for key, token in change.args[0]]
    arrays = named([(key, token, h.host, h.pid, h.run_id) for key, token, h in wanted])
    renewed = {(lease.key, lease.token, lease.holder): lease for lease in map(
        store._lease, store._writes.run(
            lambda conn: conn.execute(RENEW_MANY, arrays).fetchall()))}
    lost: dict[tuple[str, int, Holder], LeaseNotHeld] = {}
    missing = [w for w in wanted if w not in renewed]
    if missing:
        current = {lease.key: lease for lease in map(store._lease, store._writes.run(
            lambda conn: conn.execute(CURRENT, {"keys": [w[0] for w in missing]})
            .fetchall()))}
        late = []
        for key, token, holder in missing:
            now = current.get(key)
            if now is None:
                why = f"{key} was released or expired"
            elif now.token != token or now.holder != holder:
                why = (f"{key} was granted again (token {now.token}, held by "
                       f"{now.holder.describe()})")
            else:
                why = f"{key} expired before it was renewed"
                late.append((key, token, holder.host, holder.pid, holder.run_id))
            lost[(key, token, holder)] = LeaseNotHeld(why)
        if late:
            store._count("expire", int(store._writes.run(
                lambda conn: conn.execute(EXPIRE_NAMED, named(late)).rowcount)))
    return [[renewed.get((key, token, change.args[1]))
             or lost[(key, token, change.args[1])] for key, token in change.args[0]]
            for change in changes]
