"""The PostgreSQL store's batch statements: a batch of lease changes, one statement per kind.

`apply(store, batch)` is what the leading thread of pgbatch.Combiner runs: all the batch's
releases in one statement, then all its acquires, then all its renewals, whoever sent
them, and each change answered. A statement gets its rows as two JSON documents (the
entries: a key, its token for a release or renewal, the number of its change; and the
changes: each one's holder, TTL and address), read with `json_to_recordset()`, so that a
batch of hundreds of keys costs one `json.dumps` rather than one dumped element per key
and column. Each row is decided as its change alone would be; keys are visited in code
point order (`COLLATE "C"`, as Python sorts), so two batches on two replicas that share
keys lock them in the same order and cannot deadlock. One statement is one transaction:
should it fail, each of its changes is made again on its own, so one bad change fails
alone; a lost connection fails each with StoreUnavailable.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from ..protocol import Holder
from .base import LeaseNotHeld, LeaseRow, StoreUnavailable, not_held_reason
from .pgbatch import ACQUIRE, RELEASE, RENEW, SOLO, Change

if TYPE_CHECKING:
    from .postgres import PgLeaseStore

#: the order in which a batch's kinds are made: releases first, so that a key released
#: and asked for in one batch is granted
ORDER = (RELEASE, ACQUIRE, RENEW, SOLO)


def by_kind(batch: Sequence[Change]) -> list[list[Change]]:
    """The batch's changes by kind, in `ORDER`, each kind in arrival order."""
    return [[c for c in batch if c.kind == kind] for kind in ORDER
            if any(c.kind == kind for c in batch)]


#: turns synchronous_commit off for the statement's own transaction (a FROM item of it)
RELAXED = "(SELECT set_config('synchronous_commit', 'off', true)) AS relaxed"
#: synchronous_commit for the statement's own transaction: the database's, raised to `on`
#: where it says `off` (the link's `flushed`), so that a statement of grants, alone or a
#: batch, commits with its own WAL flush and is on disk before any of them is answered:
#: no separate sync() statement, round trip or thread hand-over per batch
COMMIT_AS = "(SELECT set_config('synchronous_commit', %(commit)s, true)) AS commit_as"
#: the rows of a batch of acquires: each entry (key, n) with the holder, TTL and address
#: of its change n
WANTED = (
    "SELECT e.key, e.n, c.host, c.pid, c.run, c.ttl, c.address "
    "FROM json_to_recordset(%(entries)s::json) AS e(key text, n integer) "
    "JOIN json_to_recordset(%(changes)s::json) AS c(n integer, host text, pid integer, "
    "run text, ttl double precision, address text) USING (n)")
#: the keys that have no row at all (never granted, released, or reaped), granted in one
#: statement: rows inserted in code point order, so two statements that share keys meet
#: them in one order and cannot deadlock; ON CONFLICT DO NOTHING passes over every key
#: that has a row (live or expired: those go to batchdeps_acquire() next) and over one
#: that another statement is inserting (after waiting for it to commit or roll back, as
#: the primary key makes it). A token is drawn for each row above the sort, as that row
#: goes in (volatile output is computed after ORDER BY); each grant is audited in the
#: same statement with the address of a request that asked for it.
GRANT_FREE = (
    f"WITH wanted AS MATERIALIZED ({WANTED}), "
    "granted AS (INSERT INTO batchdeps_leases AS l "
    "(key, token, host, pid, run_id, ttl, granted_at, expires_at) "
    "SELECT w.key, nextval('batchdeps_token_seq'), w.host, w.pid, w.run, w.ttl, now(), "
    f"now() + w.ttl * interval '1 second' FROM {COMMIT_AS}, wanted w "
    'ORDER BY w.key COLLATE "C", w.n ON CONFLICT (key) DO NOTHING '
    "RETURNING l.key, l.token, l.host, l.pid, l.run_id, l.ttl), "
    "logged AS (INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT DISTINCT ON (g.key) extract(epoch FROM now()), 'grant', g.key, g.token, "
    "format('host %%s pid %%s run %%s', g.host, g.pid, g.run_id), w.address, "
    "format('ttl %%s s', g.ttl) FROM granted g JOIN wanted w ON w.key = g.key "
    "AND w.host = g.host AND w.pid = g.pid AND w.run = g.run_id ORDER BY g.key, w.n) "
    "SELECT key, token, host, pid, run_id, extract(epoch FROM now())::double precision "
    "FROM granted")
#: the keys GRANT_FREE passed over, decided one by one by the grant function, in code
#: point order (the sorted rows are the outer side of the loop that calls it): (key, n,
#: the function's row)
ACQUIRE_MANY = (
    f"SELECT w.key, w.n, a.* FROM {COMMIT_AS}, "
    f'({WANTED} ORDER BY e.key COLLATE "C", e.n OFFSET 0) AS w '
    "CROSS JOIN LATERAL batchdeps_acquire(w.key, w.host, w.pid, w.run, w.ttl, w.address, "
    "false) AS a")
#: the leases named by entries (key, token, n) and changes (n, holder, address)
NAMED = (
    "SELECT e.key, e.token, c.host, c.pid, c.run, c.address "
    "FROM json_to_recordset(%(entries)s::json) AS e(key text, token bigint, n integer) "
    "JOIN json_to_recordset(%(changes)s::json) AS c(n integer, host text, pid integer, "
    "run text, address text) USING (n)")
#: the rows of `named` that are the holders', each found by the primary key and locked,
#: in code point order (one lookup per row, so no plan reads the whole table whatever
#: the planner guesses of the batch's size); `{live}` adds a condition on the row
LOCK_NAMED = (
    '(SELECT * FROM named ORDER BY key COLLATE "C" OFFSET 0) AS r, LATERAL (SELECT l.key, '
    "l.token FROM batchdeps_leases l WHERE l.key = r.key AND l.token = r.token "
    "AND l.host = r.host AND l.pid = r.pid AND l.run_id = r.run{live} FOR UPDATE) AS l")
#: release: delete the locked rows, audit each (with the address of a request that named
#: it), answer (key, token, host, pid, run) of each row freed; the commit does not wait
#: for the disk (`relaxed` is read before any row is deleted)
RELEASE_MANY = (
    f"WITH named AS ({NAMED}), "
    f"mine AS (SELECT l.key, l.token FROM {RELAXED}, {LOCK_NAMED.format(live='')}), "
    "gone AS (DELETE FROM batchdeps_leases l USING mine "
    "WHERE l.key = mine.key AND l.token = mine.token "
    "RETURNING l.key, l.token, l.host, l.pid, l.run_id), "
    "logged AS (INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT DISTINCT ON (g.key) extract(epoch FROM now()), 'release', g.key, g.token, "
    "format('host %%s pid %%s run %%s', g.host, g.pid, g.run_id), r.address, '' "
    "FROM gone g JOIN named r ON r.key = g.key AND r.token = g.token ORDER BY g.key) "
    "SELECT key, token, host, pid, run_id FROM gone")
#: renew: push the deadline of each locked live row a TTL past now(); committed with the
#: database's synchronous_commit (a renewal is flushed before it is answered: a forgotten
#: one would bring a deadline forward)
LEASE_COLUMNS = ("l.key, l.token, l.host, l.pid, l.run_id, l.ttl, "
                 "extract(epoch FROM l.granted_at), extract(epoch FROM l.expires_at - now())")
RENEW_MANY = (
    f"WITH named AS ({NAMED}), "
    f"mine AS (SELECT l.key FROM {LOCK_NAMED.format(live=' AND l.expires_at > now()')}) "
    "UPDATE batchdeps_leases l SET expires_at = now() + l.ttl * interval '1 second' "
    f"FROM mine WHERE l.key = mine.key RETURNING {LEASE_COLUMNS}")
#: the rows now on the given keys, whatever their state (why a renewal was refused)
CURRENT = f"SELECT {LEASE_COLUMNS} FROM batchdeps_leases l WHERE l.key = ANY(%(keys)s::text[])"
#: the named rows whose deadline passed: deleted and audited (a renewal came too late)
EXPIRE_NAMED = (
    f"WITH named AS ({NAMED}), "
    f"late AS (SELECT l.key, l.token FROM "
    f"{LOCK_NAMED.format(live=' AND l.expires_at <= now()')}), "
    "gone AS (DELETE FROM batchdeps_leases l USING late WHERE l.key = late.key "
    "AND l.token = late.token RETURNING l.key, l.token, l.host, l.pid, l.run_id) "
    "INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT extract(epoch FROM now()), 'expire', key, token, "
    "format('host %%s pid %%s run %%s', host, pid, run_id), '', "
    "'expired before it was renewed' FROM gone")
#: one key free: as GRANT_FREE, with plain parameters
GRANT_ONE = (
    "WITH granted AS (INSERT INTO batchdeps_leases AS l "
    "(key, token, host, pid, run_id, ttl, granted_at, expires_at) "
    "SELECT %(key)s, nextval('batchdeps_token_seq'), %(host)s, %(pid)s, %(run)s, %(ttl)s, "
    f"now(), now() + %(ttl)s * interval '1 second' FROM {COMMIT_AS} "
    "ON CONFLICT (key) DO NOTHING RETURNING l.key, l.token), "
    "logged AS (INSERT INTO batchdeps_audit (at, event, key, token, holder, address, detail) "
    "SELECT extract(epoch FROM now()), 'grant', key, token, %(holder)s, %(address)s, "
    "format('ttl %%s s', %(ttl)s::double precision) FROM granted) "
    "SELECT token, extract(epoch FROM now())::double precision FROM granted")
#: one key with a row: the grant function alone
ACQUIRE_ONE = (f"SELECT a.* FROM {COMMIT_AS}, batchdeps_acquire(%(key)s, %(host)s, "
               "%(pid)s, %(run)s, %(ttl)s, %(address)s, false) AS a")
#: one lease: as RELEASE_MANY, with plain parameters
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
#: a resource slot: the function tries the keys in order, skipping locked ones
ACQUIRE_SLOT = (f"SELECT a.* FROM {RELAXED}, "
                "batchdeps_acquire_slot(%s::text[], %s, %s, %s, %s, %s) AS a")


def _json(rows: Any) -> str:
    return json.dumps(rows, ensure_ascii=False, separators=(",", ":"))


def _holders(holders: Sequence[Holder], addresses: Sequence[str] | None = None,
             ttls: Sequence[float] | None = None) -> str:
    """The `changes` document: change n's holder (and address, TTL)."""
    rows = []
    for n, holder in enumerate(holders):
        row: dict[str, Any] = {"n": n, "host": holder.host, "pid": holder.pid,
                               "run": holder.run_id}
        if addresses is not None:
            row["address"] = addresses[n]
        if ttls is not None:
            row["ttl"] = ttls[n]
        rows.append(row)
    return _json(rows)


def named(leases: Sequence[tuple[str, int, int]], holders: Sequence[Holder],
          addresses: Sequence[str] | None = None) -> dict[str, str]:
    """The documents of NAMED: (key, token, n) leases, change n's holder (and address)."""
    return {"entries": _json([{"key": key, "token": int(token), "n": n}
                              for key, token, n in leases]),
            "changes": _holders(holders, addresses)}


def apply(store: PgLeaseStore, batch: list[Change]) -> None:
    """Make and answer every change of `batch`: one statement per kind; should one
    fail, each of its changes on its own (a lost connection: all StoreUnavailable)."""
    makers: dict[str, Callable[[list[Change]], list[Any]]] = {
        ACQUIRE: lambda group: _acquires(store, group),
        RELEASE: lambda group: _releases(store, group),
        RENEW: lambda group: _renewals(store, group),
        SOLO: lambda one: [_slot(store, *one[0].args)]}
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


def _acquires(store: PgLeaseStore, changes: list[Change]
              ) -> list[list[tuple[bool, LeaseRow]]]:
    """The keys of every change (each key once a change): the free ones granted in one
    statement (GRANT_FREE), then those that had a row decided one by one by
    `batchdeps_acquire()` in a second (a held key refused, the caller's own extended, an
    expired one taken over), each statement its own transaction, committed with its own
    WAL flush (COMMIT_AS): every grant is on disk when this returns, so none is left for
    sync() (the server's GroupSync then has nothing to wait for)."""
    entries = sorted({(key, n) for n, change in enumerate(changes)
                      for key in change.args[0]})
    link = store._writes
    got: dict[tuple[str, int], tuple[bool, LeaseRow]] = {}
    fresh: list[str] = []  # keys granted by GRANT_FREE or GRANT_ONE

    def commit() -> str:  # the link's, known once it is connected
        return link.flushed

    def granted(key: str, n: int, token: int, granted_at: float) -> None:
        _, holder, ttl, _ = changes[n].args
        got[(key, n)] = (True, LeaseRow(key, int(token), holder, ttl, granted_at, ttl))
        fresh.append(key)

    if len(entries) == 1:
        key, n = entries[0]
        _, holder, ttl, address = changes[n].args
        one = {"key": key, "host": holder.host, "pid": holder.pid, "run": holder.run_id,
               "ttl": float(ttl), "address": address, "holder": holder.text()}
        row = link.run(lambda conn: conn.execute(
            GRANT_ONE, {**one, "commit": commit()}).fetchone())
        if row is not None:
            granted(key, n, *row)
        else:
            got[(key, n)] = store._granted(link.run(lambda conn: conn.execute(
                ACQUIRE_ONE, {**one, "commit": commit()}).fetchone()), flushed=True)
    else:
        docs = {"changes": _holders([c.args[1] for c in changes],
                                    [c.args[3] for c in changes],
                                    [c.args[2] for c in changes])}
        first: dict[tuple[str, Holder], int] = {}  # the first change of a holder asking
        for key, n in entries:
            first.setdefault((key, changes[n].args[1]), n)
        for key, token, host, pid, run, granted_at in link.run(lambda conn: conn.execute(
                GRANT_FREE, {**docs, "entries": _json([{"key": k, "n": n} for k, n in entries]),
                             "commit": commit()}).fetchall()):
            granted(key, first[(key, Holder(host, int(pid), run))], token, granted_at)
        rest = [entry for entry in entries if entry not in got]
        if rest:
            for row in link.run(lambda conn: conn.execute(ACQUIRE_MANY, {
                    **docs, "entries": _json([{"key": k, "n": n} for k, n in rest]),
                    "commit": commit()}).fetchall()):
                got[(row[0], int(row[1]))] = store._granted(row[2:], flushed=True)
    if fresh:
        store._fresh_grants(len(fresh), flushed=True)
    return [[got[(key, n)] for key in change.args[0]] for n, change in enumerate(changes)]


def _releases(store: PgLeaseStore, changes: list[Change]) -> list[list[bool]]:
    """One statement for the leases of every change; a lease named twice is freed once."""
    if len(changes) == 1 and len(changes[0].args[0]) == 1:
        ((key, token),), holder, address = changes[0].args
        args = {"key": key, "token": token, "host": holder.host, "pid": holder.pid,
                "run": holder.run_id, "holder": holder.text(), "address": address}
        rows = store._writes.run(lambda conn: conn.execute(RELEASE_ONE, args).fetchall())
    else:
        args = named([(key, token, n) for n, change in enumerate(changes)
                      for key, token in change.args[0]],
                     [change.args[1] for change in changes],
                     [change.args[2] for change in changes])
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
    wanted = [(key, token, n) for n, change in enumerate(changes)
              for key, token in change.args[0]]
    holders = [change.args[1] for change in changes]
    renewed = {(lease.key, lease.token, lease.holder): lease for lease in map(
        store._lease, store._writes.run(lambda conn: conn.execute(
            RENEW_MANY, named(wanted, holders)).fetchall()))}
    lost: dict[tuple[str, int, Holder], LeaseNotHeld] = {}
    missing = [(key, token, holders[n]) for key, token, n in wanted
               if (key, token, holders[n]) not in renewed]
    if missing:
        current = {lease.key: lease for lease in map(store._lease, store._writes.run(
            lambda conn: conn.execute(CURRENT, {"keys": [w[0] for w in missing]})
            .fetchall()))}
        late: list[tuple[str, int, int]] = []
        late_holders: list[Holder] = []
        for key, token, holder in missing:
            now = current.get(key)
            if now is None:
                why = f"{key} was released or expired"
            elif now.token != token or now.holder != holder:
                why = not_held_reason(key, now.token, now.holder)
            else:
                why = f"{key} expired before it was renewed"
                late.append((key, token, len(late_holders)))
                late_holders.append(holder)
            lost[(key, token, holder)] = LeaseNotHeld(why)
        if late:
            store._count("expire", int(store._writes.run(lambda conn: conn.execute(
                EXPIRE_NAMED, named(late, late_holders)).rowcount)))
    return [[renewed.get((key, token, change.args[1]))
             or lost[(key, token, change.args[1])] for key, token in change.args[0]]
            for change in changes]


def _slot(store: PgLeaseStore, keys: list[str], holder: Holder, ttl: float,
          address: str) -> LeaseRow | None:
    """A resource slot: the first of `keys` free (not sent twice: a second could be taken)."""
    row = store._writes.run(lambda conn: conn.execute(ACQUIRE_SLOT, (
        keys, holder.host, holder.pid, holder.run_id, ttl, address)).fetchone(), retry=False)
    return store._granted(row)[1] if row is not None else None
