"""The PostgreSQL lease store on a real server: --init and its refusals, the missing driver,
passwords kept out of sight, one winner among 16 concurrent acquirers over 1,000 rounds
(on their own connections, and through two replicas), overlapping batches without
deadlocks, and a replica whose clock is minutes ahead. (The shared cases are in
test_lock_store_conformance.py; runs across replicas in test_lock_replicas.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from support import contend
from support.lockutil import BATCHDEPS, LockServer
from support.pg import PgCluster

from batchdeps.locks.protocol import Holder
from batchdeps.locks.store.pgbatch import ACQUIRE, RELEASE, Change
from batchdeps.locks.store.pgschema import SCHEMA_VERSION as SCHEMA
from batchdeps.locks.store.pgwrites import apply
from batchdeps.locks.store.postgres import PgLeaseStore, init_database, redact

HOLDER = {"host": "h", "pid": 1, "run_id": "r"}


def _lock_server(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([BATCHDEPS, "lock-server", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})})


def _tables(cluster: PgCluster, url: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")]
        return {name: conn.execute(f'SELECT count(*) FROM "{name}"').fetchone()[0]
                for name in names}


def test_init_creates_the_schema_once_and_the_server_then_serves(
        pg_cluster: PgCluster, tmp_path: Path) -> None:
    url = pg_cluster.fresh_url()
    refused = _lock_server("--db", url, "--port", "0")
    assert refused.returncode == 2 and "--init" in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr and _tables(pg_cluster, url) == {}
    first = _lock_server("--db", url, "--init")
    assert first.returncode == 0 and f"created the batchdeps schema {SCHEMA}" in first.stdout
    again = _lock_server("--db", url, "--init")
    assert again.returncode == 0 and f"already has the batchdeps schema {SCHEMA}" in again.stdout
    server = LockServer(url).start()  # type: ignore[arg-type]
    try:
        status, health = server.request("GET", "/v1/health", token="")
        assert status == 200 and health == {"ok": True, "database": "postgresql",
                                            "answers": True}
        status, body = server.request("POST", "/v1/acquire",
                                      {"key": "K", "holder": HOLDER, "ttl": 5})
        assert status == 200 and body["granted"]
    finally:
        server.stop()


def test_a_database_of_schema_1_is_refused_until_init_migrates_it_keeping_its_leases(
        pg_cluster: PgCluster) -> None:
    """A database made by schema 1's step (with its index on the holder) and holding a
    lease: a server refuses it, saying to run --init; --init migrates it to this version
    (the index is gone), the lease and the token sequence are kept, and a server then
    serves it."""
    import psycopg

    from batchdeps.locks.store import pgschema

    url = pg_cluster.fresh_url()
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            conn.execute(pgschema.STEPS[1])
            conn.execute("INSERT INTO batchdeps_meta (name, value) VALUES "
                         "('application', %s), ('schema', '1')", (pgschema.APPLICATION,))
            conn.execute(pgschema.FUNCTIONS)
        conn.execute("SELECT setval('batchdeps_token_seq', 5000)")
        row = conn.execute("SELECT o_event, o_token FROM batchdeps_acquire('Held', 'h', 1, "
                           "'r', 600, '', false)").fetchone()
    assert row == ("grant", 5001)
    refused = _lock_server("--db", url, "--port", "0")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert f"has schema 1, this batchdeps needs {SCHEMA}" in refused.stderr and "--init" in refused.stderr
    done = _lock_server("--db", url, "--init")
    assert done.returncode == 0 and f"from schema 1 to {SCHEMA}" in done.stdout, done
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = {r[0] for r in conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'batchdeps_leases'")}
        assert indexes == {"batchdeps_leases_pkey", "batchdeps_leases_expires"}
        assert conn.execute("SELECT key, token, pid FROM batchdeps_leases").fetchall() == [
            ("Held", 5001, 1)]
    server = LockServer(url).start()  # type: ignore[arg-type]
    try:
        other = {"host": "h2", "pid": 2, "run_id": "r2"}
        status, body = server.request("POST", "/v1/acquire",
                                      {"key": "Held", "holder": other, "ttl": 5})
        assert status == 200 and not body["granted"] and body["holder"]["pid"] == 1
        status, body = server.request("POST", "/v1/acquire",
                                      {"key": "New", "holder": other, "ttl": 5})
        assert status == 200 and body["granted"] and body["token"] > 5001
    finally:
        server.stop()


def test_a_database_of_a_newer_version_is_refused_and_left_as_it_is(
        pg_cluster: PgCluster, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE batchdeps_meta SET value = '99' WHERE name = 'schema'")
    before = _tables(pg_cluster, pg_url)
    for args in (("--init",), ("--port", "0")):
        done = _lock_server("--db", pg_url, *args)
        assert done.returncode == 2, done
        assert "newer batchdeps (schema 99" in done.stderr and "Traceback" not in done.stderr
    assert _tables(pg_cluster, pg_url) == before
    with psycopg.connect(pg_url, autocommit=True) as conn:
        assert conn.execute("SELECT value FROM batchdeps_meta WHERE name = 'schema'"
                            ).fetchone()[0] == "99"


def test_a_database_of_another_program_is_refused_and_left_as_it_is(
        pg_cluster: PgCluster) -> None:
    import psycopg

    url = pg_cluster.fresh_url()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("CREATE TABLE orders (id int)")
        conn.execute("INSERT INTO orders VALUES (1), (2)")
    done = _lock_server("--db", url, "--init")
    assert done.returncode == 2 and "not a batchdeps lease database" in done.stderr
    assert "orders" in done.stderr and "Traceback" not in done.stderr
    assert _tables(pg_cluster, url) == {"orders": 2}
    other = pg_cluster.fresh_url()
    with psycopg.connect(other, autocommit=True) as conn:
        conn.execute("CREATE TABLE batchdeps_meta (name text PRIMARY KEY, value text)")
        conn.execute("INSERT INTO batchdeps_meta VALUES ('application', 'someone-else')")
    done = _lock_server("--db", other, "--init")
    assert done.returncode == 2 and "another program" in done.stderr
    assert _tables(pg_cluster, other) == {"batchdeps_meta": 1}


def test_an_unreachable_database_is_a_clear_error(tmp_path: Path) -> None:
    from support.pg import free_port

    url = f"postgresql://nobody@127.0.0.1:{free_port()}/none"
    for args in (("--init",), ("--port", "0")):
        done = _lock_server("--db", url, *args)
        assert done.returncode == 2 and "cannot connect to the lease database" in done.stderr
        assert "Traceback" not in done.stderr


def test_without_psycopg_a_postgresql_url_names_the_extra(tmp_path: Path) -> None:
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "psycopg.py").write_text("raise ImportError('psycopg is not installed')\n")
    env = {**os.environ, "PYTHONPATH": str(blocker)}
    for args in (["--init"], ["--port", "0"]):
        done = subprocess.run(
            [sys.executable, "-m", "batchdeps.cli", "lock-server", "--db",
             "postgresql://u@127.0.0.1/db", *args],
            capture_output=True, text=True, timeout=60, env=env)
        assert done.returncode == 2, done
        assert "batchdeps[postgres]" in done.stderr and "Traceback" not in done.stderr


def test_the_password_comes_from_the_environment_and_is_never_shown(
        pg_cluster: PgCluster, pg_url: str) -> None:
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("CREATE ROLE lockuser LOGIN PASSWORD 's3cret-pw'")
        conn.execute("GRANT ALL ON ALL TABLES IN SCHEMA public TO lockuser")
        conn.execute("GRANT ALL ON ALL SEQUENCES IN SCHEMA public TO lockuser")
    dbname = pg_url.rsplit("/", 1)[1]
    templated = f"postgresql://lockuser:${{LOCKPW}}@127.0.0.1:{pg_cluster.port}/{dbname}"
    os.environ["LOCKPW"] = "s3cret-pw"
    try:
        store = PgLeaseStore(templated)
    finally:
        del os.environ["LOCKPW"]
    try:
        assert "s3cret-pw" not in store.path and "lockuser:***@" in store.path
        assert store.acquire("K", Holder("h", 1, "r"), 5)[0]
    finally:
        store.close()
    assert redact("postgresql://u:pw@h/db?password=x&sslmode=require") == \
        "postgresql://u:***@h/db?password=***&sslmode=require"
    unset = _lock_server("--db", templated, "--port", "0",
                         env={"LOCKPW_UNSET": "1"})
    assert unset.returncode == 2 and "LOCKPW" in unset.stderr
    assert "Traceback" not in unset.stderr


def _one_winner_each_round(winners: dict[int, list[tuple[int, int]]], rounds: int) -> None:
    assert sorted(winners) == list(range(rounds)), "a round without a winner"
    assert all(len(won) == 1 for won in winners.values()), \
        {r: won for r, won in winners.items() if len(won) != 1}
    tokens = [won[0][1] for _, won in sorted(winners.items())]
    assert tokens == sorted(set(tokens)), "tokens must grow from round to round"
    assert len({won[0][0] for won in winners.values()}) > 1  # they did contend


@pytest.mark.slow
def test_sixteen_acquirers_across_two_replicas_get_one_winner_in_each_of_1000_rounds(
        pg_url: str) -> None:
    """16 processes, each with a connection of its own, 8 to replica A and 8 to replica B
    of one database, meet at a barrier before each round and ask for that round's key at
    once: every key has exactly one winner, and the winners' tokens grow round by round."""
    servers = [LockServer(pg_url).start() for _ in range(2)]  # type: ignore[arg-type]
    try:
        rounds = 1000
        winners = contend.race(contend.contend_http, [s.port for s in servers], 16, rounds)
        _one_winner_each_round(winners, rounds)
        by_replica = {me % 2 for won in winners.values() for me, _ in won}
        assert by_replica == {0, 1}, "both replicas granted some rounds"
    finally:
        for server in servers:
            server.stop()


def test_overlapping_batches_in_any_order_never_deadlock_and_grant_each_key_once(
        pg_url: str) -> None:
    """Four stores (four replicas' connections) acquire and release overlapping batches of
    the same 40 keys, each in its own shuffled order, in threads at once: PostgreSQL
    found no deadlock, no key was held by two holders, every batch was answered in full."""
    import random
    import threading

    keys = [f"K{n:02d}" for n in range(40)]
    stores = [PgLeaseStore(pg_url) for _ in range(4)]
    problems: list[BaseException] = []
    overlaps: list[str] = []
    gate = threading.Barrier(len(stores))

    def work(n: int) -> None:
        store, holder, rng = stores[n], Holder("h", n, "r"), random.Random(n)
        try:
            gate.wait(timeout=60)
            for _ in range(150):
                wanted = rng.sample(keys, 30)
                answers = store.acquire_many(wanted, holder, 30)
                assert [lease.key for _, lease in answers] == wanted
                mine = [(lease.key, lease.token) for granted, lease in answers if granted]
                for key, _ in mine[:3]:
                    current = store.get(key)
                    if current is None or current.holder != holder:
                        overlaps.append(key)
                rng.shuffle(mine)
                assert store.release_many(mine, holder) == [True] * len(mine)
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(len(stores))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
    finally:
        for store in stores:
            store.close()
    assert not problems, problems
    assert not overlaps, overlaps
    # A deadlock would have been broken by PostgreSQL and the statement sent again, so
    # ask the server itself (its counters are written when a session ends).
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as conn:
        deadlocks = conn.execute("SELECT deadlocks FROM pg_stat_database "
                                 "WHERE datname = current_database()").fetchone()[0]
    assert deadlocks == 0


def test_a_replica_whose_clock_is_ahead_expires_nothing_early(pg_url: str) -> None:
    """Deadlines are on the database's clock: a replica ten minutes ahead neither reaps
    nor hands out a lease that a holder renews through the other replica."""
    os.environ["BATCHDEPS_TEST_CLOCK_SKEW"] = "600"
    try:
        skewed = LockServer(pg_url).start()  # type: ignore[arg-type]
    finally:
        del os.environ["BATCHDEPS_TEST_CLOCK_SKEW"]
    normal = LockServer(pg_url).start()  # type: ignore[arg-type]
    try:
        other = {"host": "h2", "pid": 2, "run_id": "r2"}
        status, lease = normal.request("POST", "/v1/acquire",
                                       {"key": "K", "holder": HOLDER, "ttl": 3})
        assert status == 200 and lease["granted"]
        status, skewed_lease = skewed.request("POST", "/v1/acquire",
                                              {"key": "S", "holder": HOLDER, "ttl": 3})
        assert status == 200 and skewed_lease["granted"]
        for _ in range(5):  # 5 s: past the TTL, with renewals through each replica
            time.sleep(1.0)
            status, renewed = normal.request("POST", "/v1/renew", {
                "holder": HOLDER, "leases": [{"key": "K", "token": lease["token"]},
                                             {"key": "S", "token": skewed_lease["token"]}]})
            assert status == 200 and renewed["lost"] == [], renewed
            for server in (skewed, normal):
                status, held = server.request("POST", "/v1/holder", {"key": "K"})
                assert held["held"] and 0 < held["expires_in"] <= 3, held
                if server is skewed:  # the hook is in force: its own clock reads 10 min on
                    assert held["age"] > 500, held
                status, taken = server.request("POST", "/v1/acquire",
                                               {"key": "S", "holder": other, "ttl": 3})
                assert status == 200 and not taken["granted"], taken
        status, audit = normal.request("GET", "/v1/audit")
        assert not [line for line in audit["audit"] if line["event"] in ("expire",
                                                                        "takeover")]
    finally:
        skewed.stop()
        normal.stop()


def test_two_replicas_reaping_at_once_expire_each_lease_once(pg_url: str) -> None:
    """SKIP LOCKED: sweepers on two connections take different rows and never wait."""
    import threading

    first, second = PgLeaseStore(pg_url), PgLeaseStore(pg_url)
    try:
        holder = Holder("h", 1, "r")
        first.acquire_many([f"E{n}" for n in range(400)], holder, 0.2)
        time.sleep(0.4)
        reaped: list[int] = []

        def sweep(store: PgLeaseStore) -> None:
            while True:
                done = store.expire_due(20)
                reaped.append(done)
                if done == 0:
                    return

        threads = [threading.Thread(target=sweep, args=(store,)) for store in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert sum(reaped) == 400
        expired = [row.key for row in first.audit_since(0.0, 10_000) if row.event == "expire"]
        assert sorted(expired) == sorted(f"E{n}" for n in range(400))
        assert first.event_counts.get("expire", 0) + second.event_counts.get("expire", 0) == 400
    finally:
        first.close()
        second.close()


def test_grants_are_flushed_by_their_own_commit_and_survive_a_crash() -> None:
    """A statement of grants, a batch's as one made alone, commits with its own WAL flush:
    every grant is on disk when the statement returns, with no sync() after it (nothing is
    counted in `grants` for one). Releases commit without waiting for the disk, and a later
    grant's flush covers them; a resource slot still commits without and is made durable by
    `sync()` (which the server calls before it announces one). On a cluster of this test's
    own with fsync on and the WAL writer slowed to 10 s (so that nothing else writes the
    WAL out meanwhile), PostgreSQL is then stopped the way a crash stops it (immediate: the
    WAL buffers lost) right after the last answer, and every grant is still there with its
    token; likewise when the database's own synchronous_commit is off."""
    import psycopg
    from support.pg import skip_reason

    if skip_reason():
        pytest.skip(skip_reason())
    cluster = PgCluster(fsync=True).start()
    try:
        url = cluster.fresh_url()
        init_database(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ALTER SYSTEM SET wal_writer_delay = '10s'")
            conn.execute("SELECT pg_reload_conf()")
        time.sleep(0.5)  # the WAL writer reads it when it next wakes (within 200 ms)
        store = PgLeaseStore(url)
        watcher = psycopg.connect(url, autocommit=True)
        holder = Holder("h", 1, "r")

        def wal_syncs() -> int:
            for conn in (store._main.conn, store._writes.conn, store._flush.conn):
                if conn is not None:
                    conn.execute("SELECT pg_stat_force_next_flush()")
                    conn.execute("SELECT 1")  # the stats go at the end of a statement
            watcher.execute("SELECT pg_stat_clear_snapshot()")
            return int(watcher.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()[0])

        try:
            assert store._writes.run(lambda conn: conn.execute(
                "SHOW synchronous_commit").fetchone())[0] == "on"
            # A resource slot commits without a flush; sync() makes it durable
            # (first: no sync() after the grants below).
            slot = store.acquire_resource("pool", 2, holder, 600)
            assert slot is not None and store.grants == 1
            store.sync()
            # Batches, as the server's rounds make them under load: each statement's commit
            # waits for its flush, so none is left for sync().
            before = wal_syncs()
            singles = [Change(ACQUIRE, ([f"K{n}"], holder, 600.0, "")) for n in range(20)]
            apply(store, singles)
            assert wal_syncs() > before  # the batch's own flush
            many = [Change(ACQUIRE, ([f"M{n}" for n in range(20)], holder, 600.0, "")),
                    Change(ACQUIRE, (["M0"], Holder("h", 2, "r"), 600.0, ""))]
            apply(store, many)
            leases = [change.result[0][1] for change in singles]
            leases += [lease for _, lease in many[0].result]
            assert many[1].result[0][0] is False  # M0 was the first holder's
            assert store.grants == 1  # the slot's: nothing more for sync() to flush
            # Releases commit without a flush of their own.
            before = wal_syncs()
            releases = [Change(RELEASE, ([(lease.key, lease.token)], holder, ""))
                        for lease in leases[:10]]
            apply(store, releases)
            assert [change.result for change in releases] == [[True]] * 10
            assert wal_syncs() - before <= 1, wal_syncs() - before  # the WAL writer's, at most
            # A later batch of grants: its flush covers the releases before it (the last
            # answer before the crash).
            later = [Change(ACQUIRE, ([f"L{n}"], holder, 600.0, "")) for n in range(2)]
            apply(store, later)
            leases += [change.result[0][1] for change in later]
        finally:
            watcher.close()
            store.close()
        cluster.stop("immediate")  # right after the last answer, as a crash
        cluster.start()
        reopened = PgLeaseStore(url)
        try:
            held = {lease.key: lease.token for lease in reopened.live()}
        finally:
            reopened.close()
        expected = {lease.key: lease.token for lease in leases[10:]}
        assert held == {**expected, slot.key: slot.token}
        # A database whose own synchronous_commit is off: a batch of grants, and one
        # alone, still commit with their flush (at `on`), not left for sync().
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(f"ALTER DATABASE {url.rsplit('/', 1)[1]} SET synchronous_commit = off")
        store = PgLeaseStore(url)
        try:
            assert store._main.conn.execute("SHOW synchronous_commit").fetchone()[0] == "off"
            alone = store.acquire("Alone", holder, 600)
            # the batch is the last answer before the crash: no later flush covers it
            batch = [Change(ACQUIRE, ([f"After{n}"], holder, 600.0, "")) for n in range(2)]
            apply(store, batch)
            assert alone[0] and store.grants == 0
            more = [change.result[0][1] for change in batch] + [alone[1]]
        finally:
            store.close()
        cluster.stop("immediate")
        cluster.start()
        reopened = PgLeaseStore(url)
        try:
            held = {lease.key: lease.token for lease in reopened.live()}
        finally:
            reopened.close()
        assert held == {**expected, slot.key: slot.token,
                        **{lease.key: lease.token for lease in more}}
    finally:
        cluster.destroy()
