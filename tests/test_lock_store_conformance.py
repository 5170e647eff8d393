"""One conformance suite for lease stores, run against every store: SQLite and PostgreSQL.

Every case goes through the `LeaseStore` interface only, on each store's own clock (the
monotonic clock for SQLite, the database's now() for PostgreSQL), so expiry is waited for
with short TTLs rather than faked. The PostgreSQL cases skip, saying why, where no server
can be started (tests/support/pg.py).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from batchdeps.history.store import TaskQuery
from batchdeps.locks.protocol import FORCED_RELEASE, Holder
from batchdeps.locks.store import LeaseNotHeld, LeaseStore, SqliteLeaseStore
from batchdeps.locks.store.base import REOPENED

A = Holder("host-a", 100, "run-a")
B = Holder("host-b", 200, "run-b")
SHORT = 0.4  # seconds: a TTL that the cases wait out


@pytest.fixture(params=["sqlite", "postgresql"])
def opener(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], LeaseStore]]:
    """Opens the store of the case's kind on one database (again: a restart)."""
    opened: list[LeaseStore] = []
    if request.param == "sqlite":
        path = str(tmp_path / "leases.db")

        def make() -> LeaseStore:
            opened.append(SqliteLeaseStore(path))
            return opened[-1]
    else:
        from batchdeps.locks.store.postgres import PgLeaseStore

        url = request.getfixturevalue("pg_url")

        def make() -> LeaseStore:
            opened.append(PgLeaseStore(url))
            return opened[-1]
    yield make
    for store in opened:
        store.close()


@pytest.fixture
def store(opener: Callable[[], LeaseStore]) -> LeaseStore:
    return opener()


def test_second_holder_is_refused_while_the_lease_is_live(store: LeaseStore) -> None:
    granted, lease = store.acquire("T(a=1)", A, 10)
    assert granted and lease is not None and lease.token >= 1 and lease.holder == A
    granted, current = store.acquire("T(a=1)", B, 10)
    assert not granted and current is not None and current.holder == A
    assert current.token == lease.token and 0 < current.expires_in <= 10


def test_acquiring_again_by_the_same_holder_keeps_the_token(store: LeaseStore) -> None:
    _, first = store.acquire("T", A, 10)
    granted, again = store.acquire("T", A, 10)
    assert granted and first is not None and again is not None
    assert again.token == first.token


def test_tokens_grow_on_every_grant_and_across_a_reopen(
        opener: Callable[[], LeaseStore]) -> None:
    store = opener()
    tokens = []
    for holder in (A, B, A):
        _, lease = store.acquire("T", holder, 10)
        assert lease is not None
        tokens.append(lease.token)
        assert store.release("T", lease.token, holder)
    _, other = store.acquire("U", A, 10)
    assert other is not None
    tokens.append(other.token)
    store.close()
    reopened = opener()
    _, lease = reopened.acquire("T", B, 10)
    assert lease is not None
    tokens.append(lease.token)
    assert tokens == sorted(set(tokens)), tokens
    assert reopened.token_high() >= lease.token


def test_tokens_are_above_the_wall_clock_in_microseconds(store: LeaseStore) -> None:
    """So a move from another store (or a fresh database) never hands out a smaller one."""
    before = int(time.time() * 1_000_000) - 60_000_000  # a minute of leeway for clocks
    _, lease = store.acquire("T", A, 10)
    assert lease is not None and lease.token > before


def test_an_expired_lease_goes_to_the_next_holder_and_fences_the_old_one(
        store: LeaseStore) -> None:
    _, old = store.acquire("T", A, SHORT)
    assert old is not None
    time.sleep(SHORT + 0.2)
    assert store.get("T") is None
    granted, new = store.acquire("T", B, 10)
    assert granted and new is not None and new.token > old.token
    with pytest.raises(LeaseNotHeld, match="granted again"):
        store.renew("T", old.token, A)
    with pytest.raises(LeaseNotHeld, match="granted again"):
        store.check("T", old.token, A)
    assert store.release("T", old.token, A) is False
    current = store.get("T")
    assert current is not None and current.holder == B
    events = [(row.event, row.holder) for row in store.audit_since(0.0)]
    assert ("takeover", A.text()) in events


def test_renewal_keeps_a_lease_past_its_ttl(store: LeaseStore) -> None:
    _, lease = store.acquire("T", A, 1.0)
    assert lease is not None
    for _ in range(3):  # 1.8 s in all, each renewal within the TTL
        time.sleep(0.6)
        renewed = store.renew("T", lease.token, A)
        assert renewed.token == lease.token and renewed.expires_in > 0.5
    granted, current = store.acquire("T", B, 1.0)
    assert not granted and current is not None and current.holder == A


def test_renewal_after_expiry_is_refused_even_when_nobody_took_it(store: LeaseStore) -> None:
    _, lease = store.acquire("T", A, SHORT)
    assert lease is not None
    time.sleep(SHORT + 0.2)
    with pytest.raises(LeaseNotHeld, match="expired"):
        store.renew("T", lease.token, A)
    with pytest.raises(LeaseNotHeld):
        store.check("T", lease.token, A)
    assert store.get("T") is None


def test_renew_many_renews_the_callers_leases_and_says_why_each_other_is_lost(
        store: LeaseStore) -> None:
    """A heartbeat's batch: the live leases of the caller are renewed, each other one is
    answered with the reason it is lost (released, granted again, expired: that one is
    reaped and audited), in the order asked, and none holds back the rest."""
    kept = store.acquire_many(["k1", "k2"], A, 1.0)
    _, released = store.acquire("gone", A, 10)
    _, late = store.acquire("late", A, SHORT)
    _, taken = store.acquire("taken", A, SHORT)
    assert released is not None and late is not None and taken is not None
    assert store.release("gone", released.token, A)
    time.sleep(SHORT + 0.2)  # late and taken expire; k1 and k2 (1 s) are still live
    _, theirs = store.acquire("taken", B, 10)
    assert theirs is not None
    t1, t2 = (lease.token for _, lease in kept)
    answers = store.renew_many([("k2", t2), ("gone", released.token), ("taken", taken.token),
                                ("late", late.token), ("k1", t1), ("k1", t1)], A)
    renewed = [a for a in answers if not isinstance(a, LeaseNotHeld)]
    assert [(lease.key, lease.token) for lease in renewed] == [("k2", t2), ("k1", t1),
                                                                ("k1", t1)]
    assert all(lease.holder == A and lease.expires_in > 0.8 for lease in renewed)
    reasons = [str(a) for a in answers if isinstance(a, LeaseNotHeld)]
    assert "gone was released or expired" in reasons[0]
    assert "taken was granted again" in reasons[1] and f"token {theirs.token}" in reasons[1]
    assert "late expired before it was renewed" in reasons[2]
    assert store.renew_many([], A) == []
    assert store.get("late") is None
    current = store.get("taken")
    assert current is not None and current.holder == B  # another's lease is left alone
    expired = [(row.key, row.detail) for row in store.audit_since(0.0) if row.event == "expire"]
    assert ("late", "expired before it was renewed") in expired
    time.sleep(0.5)  # past the first TTL of k1 and k2: the renewal kept them
    assert {lease.key for lease in store.by_holder(A.host, A.pid)} == {"k1", "k2"}


def test_release_needs_the_holder_and_the_token(store: LeaseStore) -> None:
    _, lease = store.acquire("T", A, 10)
    assert lease is not None
    assert store.release("T", lease.token, B) is False
    assert store.release("T", lease.token + 1, A) is False
    assert store.get("T") is not None
    assert store.release("T", lease.token, A) is True
    assert store.get("T") is None
    assert store.release("T", lease.token, A) is False


def test_acquire_many_answers_each_key_in_order(store: LeaseStore) -> None:
    store.acquire("b", B, 10)
    answers = store.acquire_many(["c", "b", "a"], A, 10)
    assert [(lease.key, granted) for granted, lease in answers] == [
        ("c", True), ("b", False), ("a", True)]
    assert answers[1][1].holder == B
    again = store.acquire_many(["a", "c"], A, 10)
    assert [granted for granted, _ in again] == [True, True]
    assert [lease.token for _, lease in again] == [answers[2][1].token, answers[0][1].token]


def test_release_many_answers_each_lease_in_order_and_frees_only_the_callers(
        store: LeaseStore) -> None:
    answers = store.acquire_many(["k3", "k1", "k2", "k4"], A, 10)
    t3, t1, t2, t4 = (lease.token for _, lease in answers)
    _, theirs = store.acquire("b1", B, 10)
    assert theirs is not None
    released = store.release_many(
        [("k2", t2), ("b1", theirs.token), ("k1", t1 + 1), ("k3", t3), ("k2", t2),
         ("gone", 5)], A, address="10.0.0.7")
    assert released == [True, False, False, True, False, False]
    assert {lease.key for lease in store.live()} == {"k1", "k4", "b1"}
    lines = [(row.event, row.key, row.token, row.address) for row in store.audit_since(0.0)
             if row.event == "release"]
    assert sorted(lines) == [("release", "k2", t2, "10.0.0.7"),
                             ("release", "k3", t3, "10.0.0.7")]
    assert store.release_many([], A) == []
    assert store.release_many([("k1", t1), ("k4", t4)], A) == [True, True]
    assert {lease.key for lease in store.live()} == {"b1"}


def test_a_batch_is_answered_key_by_key_not_all_or_nothing(store: LeaseStore) -> None:
    """Each key of an acquire-many is decided as its own acquire: a key held by another
    holder is refused without holding back the others (the runner asks for many ready
    tasks at once and runs those it got); a key given twice gets one lease."""
    store.acquire("taken", B, 10)
    answers = store.acquire_many(["free1", "taken", "free2", "free1"], A, 10)
    assert [granted for granted, _ in answers] == [True, False, True, True]
    assert answers[0][1].token == answers[3][1].token
    assert answers[1][1].holder == B
    assert {lease.key for lease in store.by_holder(A.host, A.pid)} == {"free1", "free2"}
    grants = [row.key for row in store.audit_since(0.0) if row.event == "grant"]
    assert sorted(grants) == ["free1", "free2", "taken"]


def test_an_exception_inside_a_transaction_undoes_it_where_the_store_groups(
        store: LeaseStore) -> None:
    """`groups`: SQLite undoes every call made inside a failed transaction; PostgreSQL
    commits each call on its own, so each stays done (and the server never batches)."""
    granted, kept = store.acquire("kept", A, 10)
    assert granted and kept is not None
    with pytest.raises(RuntimeError):
        with store.transaction():
            store.acquire("new", A, 10)
            assert store.release("kept", kept.token, A)
            raise RuntimeError("a bug in the middle of a batch")
    if store.groups:
        assert store.get("new") is None
        again = store.get("kept")
        assert again is not None and again.token == kept.token and again.holder == A
        assert store.acquire("kept", B, 10)[0] is False
    else:
        assert store.get("new") is not None and store.get("kept") is None
    _, later = store.acquire("later", B, 10)
    assert later is not None and later.token > kept.token


def test_a_resource_pool_grants_at_most_its_slots(store: LeaseStore) -> None:
    first = store.acquire_resource("warehouse", 2, A, 10)
    second = store.acquire_resource("warehouse", 2, A, SHORT)
    assert first is not None and second is not None and first.key != second.key
    assert store.acquire_resource("warehouse", 2, B, 10) is None
    assert store.release(first.key, first.token, A)
    third = store.acquire_resource("warehouse", 2, B, 10)
    assert third is not None and third.key == first.key and third.token > first.token
    assert store.acquire_resource("warehouse", 2, B, 10) is None
    time.sleep(SHORT + 0.2)  # A's second slot expires
    fourth = store.acquire_resource("warehouse", 2, B, 10)
    assert fourth is not None and fourth.key == second.key


def test_force_release_frees_anyones_lease_and_is_audited(store: LeaseStore) -> None:
    _, lease = store.acquire("T", A, 2 * SHORT)
    assert lease is not None
    time.sleep(SHORT + 0.1)  # past the part of its TTL its holder commits in on its own
    freed = store.force_release("T", "10.0.0.9", "stuck run")
    assert freed is not None and freed.holder == A and freed.token == lease.token
    assert store.get("T") is None
    assert store.force_release("T", "10.0.0.9", "again") is None
    line = store.audit_since(0.0)[0]
    assert (line.event, line.key, line.holder, line.address, line.detail) == (
        "force-release", "T", A.text(), "10.0.0.9", "stuck run")


def test_force_release_keeps_the_key_from_everyone_while_its_holder_may_commit(
        opener: Callable[[], LeaseStore]) -> None:
    """Its holder takes the lease as current for half a TTL after its last confirmation
    without asking (client.py): until then the key is held by FORCED_RELEASE, across a
    restart too, and the holder's renewals and checks fail at once."""
    store = opener()
    _, lease = store.acquire("T", A, 60)
    assert lease is not None
    freed = store.force_release("T", "10.0.0.9", "stuck run")
    assert freed is not None and freed.holder == A and freed.token == lease.token
    closed = store.get("T")
    assert closed is not None and closed.holder == FORCED_RELEASE
    assert closed.token == lease.token and 20 < closed.expires_in <= 30
    assert not store.acquire("T", B, 10)[0] and not store.acquire("T", A, 10)[0]
    assert store.acquire_many(["T", "U"], B, 10)[0][0] is False
    with pytest.raises(LeaseNotHeld, match="released by force"):
        store.renew("T", lease.token, A)
    with pytest.raises(LeaseNotHeld, match="released by force"):
        store.check("T", lease.token, A)
    assert str(store.renew_many([("T", lease.token)], A)[0]) == (
        "T was released by force (batchdeps locks release)")
    assert not store.release("T", lease.token, A)
    assert store.force_release("T", "10.0.0.9", "again") is None  # not opened early
    assert not opener().acquire("T", B, 10)[0]  # a restart keeps it closed
    assert [row.event for row in store.audit_since(0.0) if row.key == "T"].count(
        "force-release") == 1

    _, short = store.acquire("S", A, 2 * SHORT)
    assert short is not None and store.force_release("S", "10.0.0.9", "stuck") is not None
    time.sleep(SHORT + 0.2)  # its window (half of 2 * SHORT) has closed
    granted, after = store.acquire("S", B, 10)
    assert granted and after is not None and after.token > short.token
    current = store.get("S")
    assert current is not None and current.holder == B


def test_the_end_of_a_forced_release_window_is_audited_as_the_key_reopening(
        store: LeaseStore) -> None:
    _, lease = store.acquire("R", A, 2 * SHORT)
    assert lease is not None and store.force_release("R", "", "stuck") is not None
    time.sleep(SHORT + 0.2)
    assert store.expire_due(500) == 1
    line = store.audit_since(0.0)[0]
    assert (line.event, line.key, line.holder, line.detail) == (
        "expire", "R", FORCED_RELEASE.text(), REOPENED)
    assert store.get("R") is None and store.acquire("R", B, 10)[0]


def test_a_key_granted_once_its_forced_release_window_closed_is_audited_as_reopening(
        store: LeaseStore) -> None:
    """Granted again before a sweep reaped its placeholder (alone, and in a batch with a
    free key), the key is audited as `expire_due()` would have audited it, its reopening,
    then the grant: not as a takeover, since no holder's lease was taken (the forced
    release was audited when it was made)."""
    for key in ("R1", "R2"):
        _, lease = store.acquire(key, A, 2 * SHORT)
        assert lease is not None and store.force_release(key, "", "stuck") is not None
    time.sleep(SHORT + 0.2)  # both windows (half of 2 * SHORT) have closed
    before = dict(store.event_counts)
    granted, lease = store.acquire("R1", B, 10)
    assert granted and lease is not None and lease.holder == B
    assert [granted for granted, _ in store.acquire_many(["R2", "Free"], B, 10)] == [True, True]
    for key in ("R1", "R2"):
        lines = [(row.event, row.holder, row.detail) for row in store.audit_since(0.0)
                 if row.key == key]
        assert lines[:3] == [("grant", B.text(), "ttl 10 s"),
                             ("expire", FORCED_RELEASE.text(), REOPENED),
                             ("force-release", A.text(), "stuck")], lines
    counts = store.event_counts
    assert counts.get("takeover", 0) == before.get("takeover", 0)
    assert counts["expire"] - before.get("expire", 0) == 2
    assert counts["grant"] - before["grant"] == 3


def test_holder_lookups_see_only_live_leases(store: LeaseStore) -> None:
    store.acquire("T1", A, 10)
    store.acquire("T2", A, SHORT)
    store.acquire("T3", B, 10)
    assert {lease.key for lease in store.by_holder(A.host, A.pid)} == {"T1", "T2"}
    assert [lease.key for lease in store.live()] == ["T1", "T2", "T3"]
    assert len(store.live(limit=2)) == 2
    time.sleep(SHORT + 0.2)
    assert {lease.key for lease in store.by_holder(A.host, A.pid)} == {"T1"}
    assert {lease.key for lease in store.live()} == {"T1", "T3"}
    assert store.get("T2") is None and store.get("T3") is not None


def test_expire_due_deletes_expired_leases_once_and_audits_them(store: LeaseStore) -> None:
    for n in range(5):
        store.acquire(f"E{n}", A, SHORT)
    store.acquire("Live", B, 10)
    time.sleep(SHORT + 0.2)
    assert store.expire_due(3) == 3
    assert store.expire_due(500) == 2
    assert store.expire_due(500) == 0
    assert store.held_count == 1
    expired = [row for row in store.audit_since(0.0) if row.event == "expire"]
    assert sorted(row.key for row in expired) == [f"E{n}" for n in range(5)]
    assert all(row.detail == f"not renewed within its ttl of {SHORT:g} s" for row in expired)
    assert store.event_counts["expire"] == 5 and store.event_counts["grant"] == 6


def test_the_audit_reads_newest_first_within_a_window_and_prunes(store: LeaseStore) -> None:
    _, lease = store.acquire("T", A, 10)
    assert lease is not None
    store.release("T", lease.token, A, address="127.0.0.1")
    store.audit("auth-failure", "10.1.2.3", "GET /: wrong token")
    rows = store.audit_since(0.0)
    assert [row.event for row in rows] == ["auth-failure", "release", "grant"]
    assert rows[2].detail == "ttl 10 s" and rows[2].token == lease.token
    assert rows[1].address == "127.0.0.1" and rows[0].address == "10.1.2.3"
    assert [row.id for row in rows] == sorted((row.id for row in rows), reverse=True)
    assert len(store.audit_since(0.0, limit=2)) == 2
    assert store.audit_since(time.time() + 3600) == []
    assert store.prune_audit(time.time() + 3600, limit=2) == 2
    assert len(store.audit_since(0.0)) == 1


def test_health_names_the_database_and_says_it_answers(store: LeaseStore) -> None:
    assert store.health() == {"database": store.kind, "answers": True}
    assert store.kind in ("sqlite", "postgresql")


def test_history_lives_in_the_same_database(store: LeaseStore) -> None:
    history = store.history()
    try:
        now = time.time()
        run = {"run_id": "r1", "requested": ["T()"], "host": "h", "user": "u", "pid": 7,
               "started": now - 5, "finished": None, "exit_code": None, "planned": 2,
               "counts": {}, "last_seen": now - 5}
        rows = [("r1", now - 2, "finished", "T(n=1)", "T", "built", 1, 0.5, "", "", "", "h",
                 7, now - 3),
                ("r1", now - 1, "finished", "T(n=2)", "T", "failed", 2, 0.25, "boom", "log",
                 "", "h", 7, now - 2)]
        history.write(rows, run)
        history.write([], {**run, "finished": now, "exit_code": 1,
                           "counts": {"built": 1, "failed": 1}, "last_seen": now})
        records = history.tasks(TaskQuery(family="T"))
        assert [(r["task_id"], r["status"]) for r in records] == [
            ("T(n=2)", "failed"), ("T(n=1)", "built")]
        assert [r["task_id"] for r in history.tasks(TaskQuery(status="failed"))] == ["T(n=2)"]
        assert history.count_tasks(TaskQuery(since=now - 10)) == 2
        (recorded,) = history.runs()
        assert recorded["exit_code"] == 1 and recorded["counts"] == {"built": 1, "failed": 1}
        counts, _ = history.run_tasks("r1")
        assert counts == {"built": 1, "failed": 1}
        (stats,) = history.family_stats(now - 86400)
        assert (stats["built"], stats["failed"], stats["success_rate"]) == (1, 1, 0.5)
        assert history.prune(now + 1) == 1 and history.runs() == []
    finally:
        history.close()
