"""Group commit in the PostgreSQL lease store (locks/store/pgbatch.py): changes made at once
from many threads share statements, each is answered as if made alone, one that fails
fails alone, and a key still has one winner across replicas. On a real PostgreSQL server
(tests/support/pg.py); the Combiner's hand-over of the lead needs no database."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest

from batchdeps.locks.protocol import Holder
from batchdeps.locks.store import LeaseNotHeld, StoreUnavailable
from batchdeps.locks.store.pgbatch import ACQUIRE, RELEASE, RENEW, Change, Combiner
from batchdeps.locks.store.pgwrites import apply
from batchdeps.locks.store.postgres import PgLeaseStore

A = Holder("host-a", 100, "run-a")
B = Holder("host-b", 200, "run-b")


def _wait_until(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.001)


def test_changes_that_arrive_while_one_is_made_go_together_in_the_next_batch() -> None:
    """The first change leads at once, alone; the five submitted while it is being made
    wait and are made in one batch by the oldest of them; every thread gets its own
    answer, and an error of the batch reaches each of its changes."""
    batches: list[list[Any]] = []
    release_first = threading.Event()

    def make(batch: list[Change]) -> None:
        batches.append([change.args[0] for change in batch])
        if len(batches) == 1:
            release_first.wait(30)
        for change in batch:
            if change.args[0] == "boom":
                raise RuntimeError("the statement failed")
            change.answer(change.args[0] * 10)

    combiner = Combiner(make)
    results: dict[int, Any] = {}

    def submit(n: Any) -> None:
        try:
            results[n] = combiner.submit(ACQUIRE, n)
        except RuntimeError as exc:
            results[n] = exc

    first = threading.Thread(target=submit, args=(1,))
    first.start()
    _wait_until(lambda: len(batches) == 1)
    others = [threading.Thread(target=submit, args=(n,)) for n in range(2, 7)]
    for thread in others:
        thread.start()
    _wait_until(lambda: len(combiner._waiting) == 5)
    release_first.set()
    for thread in [first, *others]:
        thread.join(30)
    assert batches[0] == [1] and sorted(batches[1]) == [2, 3, 4, 5, 6]
    assert len(batches) == 2 and combiner.batches == 2 and combiner.changes == 6
    assert results == {n: n * 10 for n in range(1, 7)}
    with pytest.raises(RuntimeError, match="the statement failed"):
        combiner.submit(ACQUIRE, "boom")
    assert combiner.submit(ACQUIRE, 7) == 70  # the lead was handed back after the error


def test_a_batch_makes_releases_first_and_a_change_that_fails_fails_alone(pg_url: str) -> None:
    """One batch of changes from two holders, as the leading thread gets it: a key asked
    for by both goes to the first who asked, a key released in the batch is granted in
    it, a renewal after that release hears the lease is lost, and the one change that
    cannot be made (a key PostgreSQL cannot store) fails on its own while every other is
    made and committed (another connection sees the rows) before any is answered."""
    import psycopg

    store = PgLeaseStore(pg_url)
    try:
        _, held = store.acquire("held", A, 10)
        assert held is not None
        batch = [Change(ACQUIRE, (["a1", "shared"], A, 10.0, "10.0.0.1")),
                 Change(ACQUIRE, (["bad\x00key"], B, 10.0, "")),
                 Change(ACQUIRE, (["shared", "b1"], B, 10.0, "")),
                 Change(RELEASE, ([("held", held.token)], A, "10.0.0.1")),
                 Change(ACQUIRE, (["held"], B, 10.0, "")),
                 Change(RENEW, ([("held", held.token)], A))]
        apply(store, batch)
        assert all(change.finished for change in batch)
        a_answers, bad, b_answers, released, taken, renewal = batch
        assert isinstance(bad.error, psycopg.DataError)
        assert [(granted, lease.holder) for granted, lease in a_answers.result] == [
            (True, A), (True, A)]
        assert [(granted, lease.holder) for granted, lease in b_answers.result] == [
            (False, A), (True, B)]
        assert released.result == [True]
        ((granted, lease),) = taken.result
        assert granted and lease.holder == B and lease.token > held.token
        (lost,) = renewal.result
        assert isinstance(lost, LeaseNotHeld) and "granted again" in str(lost)
        with psycopg.connect(pg_url, autocommit=True) as conn:
            rows = dict(conn.execute("SELECT key, pid FROM batchdeps_leases").fetchall())
        assert rows == {"a1": A.pid, "shared": A.pid, "b1": B.pid, "held": B.pid}
    finally:
        store.close()


def test_a_batch_on_a_broken_connection_is_made_again_once_else_all_unavailable(
        pg_url: str) -> None:
    """A batch whose connection PostgreSQL ended is made again once on a new connection
    (each change is safe to make twice) and answered as usual; a batch that cannot reach
    the database at all answers every change StoreUnavailable (nothing was decided: the
    server says 503 and the clients send them again)."""
    import psycopg

    store = PgLeaseStore(pg_url)
    try:
        store.acquire("warm", A, 10)  # the batches' connection exists
        pid = store._writes.conn.info.backend_pid
        with psycopg.connect(pg_url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        batch = [Change(ACQUIRE, (["x"], A, 10.0, "")), Change(ACQUIRE, (["y"], B, 10.0, ""))]
        apply(store, batch)
        assert [change.result[0][0] for change in batch] == [True, True]
        assert store._writes.conn.info.backend_pid != pid
        store.close()
        batch = [Change(ACQUIRE, (["z"], A, 10.0, "")), Change(ACQUIRE, (["w"], B, 10.0, ""))]
        store.url = pg_url.rsplit("/", 1)[0] + "/no_such_database"
        apply(store, batch)
        assert all(isinstance(change.error, StoreUnavailable) for change in batch)
    finally:
        store.close()


def test_many_threads_on_two_replicas_share_statements_and_each_key_has_one_winner(
        pg_url: str) -> None:
    """8 threads on each of two stores (two replicas' connections) ask for the same key at
    once, round after round: one winner each round, tokens growing, the winner's grant
    committed (another connection sees its token) before it is answered, and on each
    store fewer statements than changes."""
    import psycopg

    stores = [PgLeaseStore(pg_url) for _ in range(2)]
    rounds, per_store = 150, 8
    gate = threading.Barrier(2 * per_store)
    winners: dict[int, list[tuple[int, int]]] = {}
    problems: list[BaseException] = []
    lock = threading.Lock()

    def work(me: int) -> None:
        store, holder = stores[me % 2], Holder("h", me, "r")
        try:
            with psycopg.connect(pg_url, autocommit=True) as watcher:
                for n in range(rounds):
                    gate.wait(timeout=60)
                    granted, lease = store.acquire(f"R{n}", holder, 30)
                    if granted:
                        assert lease is not None
                        seen = watcher.execute("SELECT token FROM batchdeps_leases "
                                               "WHERE key = %s", (f"R{n}",)).fetchone()
                        assert seen == (lease.token,)
                        with lock:
                            winners.setdefault(n, []).append((me, lease.token))
                    gate.wait(timeout=60)  # everyone has asked: the winner lets go
                    if granted:
                        assert lease is not None
                        assert store.release(lease.key, lease.token, holder)
        except BaseException as exc:  # noqa: BLE001 - reported below
            problems.append(exc)
            gate.abort()

    threads = [threading.Thread(target=work, args=(me,)) for me in range(2 * per_store)]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(300)
        assert not problems, problems
        assert sorted(winners) == list(range(rounds))
        assert all(len(won) == 1 for won in winners.values())
        tokens = [won[0][1] for _, won in sorted(winners.items())]
        assert tokens == sorted(set(tokens))
        assert {won[0][0] % 2 for won in winners.values()} == {0, 1}
        for store in stores:
            assert store.changes.batches < store.changes.changes
    finally:
        for store in stores:
            store.close()


def test_the_servers_changes_go_in_rounds_each_answered_as_if_made_alone(pg_url: str) -> None:
    """GroupCommit over the PostgreSQL store (its off_loop): 20 requests' changes handed in
    at once, each the releases it carries and then its acquire, as the server's are, and one
    whose function fails after its store call. The 21 first calls are made in one batch,
    the 20 acquires in a second: two batches for 41 store calls, with no thread per
    request; every release is answered, the contended key has one winner, and the failing
    request fails alone (its acquire, made, stays: each PostgreSQL call commits on its own)."""
    import asyncio

    from batchdeps.locks.server import GroupCommit

    store = PgLeaseStore(pg_url)
    try:
        holders = [Holder("h", n, "r") for n in range(20)]
        old = {}
        for n, holder in enumerate(holders):
            granted, lease = store.acquire(f"old-{n}", holder, 30)
            assert granted and lease is not None
            old[n] = lease.token

        def change(n: int) -> Any:
            def make() -> Any:
                released = store.release_many([(f"old-{n}", old[n])], holders[n])
                return released, store.acquire("shared", holders[n], 30)
            return make

        def broken() -> None:
            store.acquire("half-done", holders[0], 30)
            raise RuntimeError("a bug in one request")

        async def together() -> list[Any]:
            commits = GroupCommit(store)
            return await asyncio.gather(*(commits.run(change(n)) for n in range(20)),
                                        commits.run(broken), return_exceptions=True)

        before = store.rounds.rounds
        *answers, failed = asyncio.run(together())
        assert isinstance(failed, RuntimeError)
        assert store.rounds.rounds - before == 2
        assert [released for released, _ in answers] == [[True]] * 20
        winners = [n for n, (_, (granted, _)) in enumerate(answers) if granted]
        assert len(winners) == 1
        current = store.get("shared")
        assert current is not None and current.holder == holders[winners[0]]
        assert all(lease is not None and lease.holder == current.holder
                   for _, (_, lease) in answers)
        assert store.get("half-done") is not None
        assert not any(store.get(f"old-{n}") for n in range(20))
    finally:
        store.close()
