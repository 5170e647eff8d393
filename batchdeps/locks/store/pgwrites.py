"""The PostgreSQL store's batch statements: a batch of lease changes, one statement per kind.

`apply(store, batch)` is what the leading thread of pgbatch.Combiner runs: all the batch's
releases in one statement, then all its acquires in one, then all its renewals in one,
whoever sent them, and each change answered. Each row of a statement's `unnest()` arrays
carries its own holder, TTL and address and is decided as that change alone would be;
keys are visited in code point order (`COLLATE "C"`, as Python sorts), so two batches on
two replicas that share keys lock them in the same order and cannot deadlock. One
statement is one transaction: should it fail, each of its changes is made again on its
own, so one bad change fails alone; a lost connection fails each with StoreUnavailable.
"""

from __future__ import annotations

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
#: one key: the primary key's plan
#: synchronous_commit for the statement's own transaction: `off` in a batch (one flush
#: by sync() covers every grant of it), the database's when the change is made alone
#: (its own commit is its flush: a round trip fewer)
COMMIT_AS = "(SELECT set_config('synchronous_commit', %(commit)s, true)) AS commit_as"
ACQUIRE_ONE = (f"SELECT a.* FROM {COMMIT_AS}, batchdeps_acquire(%(key)s, %(host)s, "
               "%(pid)s, %(run)s, %(ttl)s, %(address)s, false) AS a")
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
#: a resource slot: the function tries the keys in order, skipping locked ones
ACQUIRE_SLOT = (f"SELECT a.* FROM {RELAXED}, "
                "batchdeps_acquire_slot(%s::text[], %s, %s, %s, %s, %s) AS a")
#: the columns of a lease row (o_* of the grant functions, or a table row aliased `l`)
LEASE_COLUMNS = ("l.key, l.token, l.host, l.pid, l.run_id, l.ttl, "
                 "extract(epoch FROM l.granted_at), extract(epoch FROM l.expires_at - now())")
#: (n, the grant function's row) for rows n of the arrays, visited in their order (the
#: caller sorts them by key)
ACQUIRE_MANY = (
    f"SELECT k.n, a.* FROM {COMMIT_AS}, unnest(%(keys)s::text[], %(hosts)s::text[], "
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
        ACQUIRE: lambda group: _acquires(store, group, alone=len(batch) == 1),
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

def _acquires(store: PgLeaseStore, changes: list[Change], alone: bool = False
              ) -> list[list[tuple[bool, LeaseRow]]]:
    """One statement for the keys of every change (key order, each key once a change).
    `alone`: the only change of its batch, whose commit then waits for the flush itself
    (a batch commits without, and the server's sync() flushes once for all of it)."""
    entries = sorted({(key, n) for n, change in enumerate(changes)
                      for key in change.args[0]})
    link = store._writes

    def commit() -> str:  # the link's, known once it is connected
        return link.flushed if alone else "off"

    if len(entries) == 1:
        key, n = entries[0]
        _, holder, ttl, address = changes[n].args
        one = {"key": key, "host": holder.host, "pid": holder.pid, "run": holder.run_id,
               "ttl": ttl, "address": address}
        rows = [link.run(lambda conn: conn.execute(
            ACQUIRE_ONE, {**one, "commit": commit()}).fetchone())]
    else:
        holders = [changes[n].args[1] for _, n in entries]
        args = {"keys": [key for key, _ in entries],
                "hosts": [h.host for h in holders], "pids": [h.pid for h in holders],
                "runs": [h.run_id for h in holders],
                "ttls": [changes[n].args[2] for _, n in entries],
                "addresses": [changes[n].args[3] for _, n in entries]}
        rows = [row[1:] for row in link.run(lambda conn: conn.execute(
            ACQUIRE_MANY, {**args, "commit": commit()}).fetchall())]
    got = {entry: store._granted(row, flushed=alone) for entry, row in zip(entries, rows)}
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
                why = not_held_reason(key, now.token, now.holder)
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


def _slot(store: PgLeaseStore, keys: list[str], holder: Holder, ttl: float,
          address: str) -> LeaseRow | None:
    """A resource slot: the first of `keys` free (not sent twice: a second could be taken)."""
    row = store._writes.run(lambda conn: conn.execute(ACQUIRE_SLOT, (
        keys, holder.host, holder.pid, holder.run_id, ttl, address)).fetchone(), retry=False)
    return store._granted(row)[1] if row is not None else None
