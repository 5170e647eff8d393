"""The SQLite lease table: grants, fencing tokens, expiry, restarts, resource slots, audit,
and the refusal of a file that is not a valid lease database."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from batchdeps.locks.protocol import Holder
from batchdeps.locks.store import LeaseNotHeld, StoreError
from batchdeps.locks.store import SqliteLeaseStore as LeaseStore

A = Holder("host-a", 100, "run-a")
B = Holder("host-b", 200, "run-b")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> LeaseStore:
    return LeaseStore(str(tmp_path / "leases.db"), clock=clock)


def test_second_holder_is_refused_while_the_lease_is_live(store: LeaseStore) -> None:
    granted, lease = store.acquire("T(a=1)", A, 10)
    assert granted and lease is not None and lease.token >= 1
    granted, current = store.acquire("T(a=1)", B, 10)
    assert not granted and current is not None and current.holder == A


def test_acquiring_again_by_the_same_holder_is_idempotent(store: LeaseStore,
                                                          clock: Clock) -> None:
    _, first = store.acquire("T", A, 10)
    clock.now += 8
    granted, again = store.acquire("T", A, 10)
    assert granted and again is not None and first is not None
    assert again.token == first.token
    clock.now += 8  # 16 s after the first grant, 8 after the second: still live
    assert store.get("T") is not None


def test_fencing_token_grows_on_every_grant_and_survives_restart(tmp_path: Path,
                                                                  clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    store = LeaseStore(path, clock=clock)
    tokens = []
    for holder in (A, B, A):
        _, lease = store.acquire("T", holder, 10)
        assert lease is not None
        tokens.append(lease.token)
        store.release("T", lease.token, holder)
    store.close()
    reopened = LeaseStore(path, clock=clock)
    _, lease = reopened.acquire("T", B, 10)
    assert lease is not None
    assert tokens == sorted(set(tokens)) and lease.token > tokens[-1]


def test_expired_lease_goes_to_the_next_holder_and_fences_the_old_one(
        store: LeaseStore, clock: Clock) -> None:
    _, old = store.acquire("T", A, 5)
    assert old is not None
    clock.now += 5.1
    granted, new = store.acquire("T", B, 5)
    assert granted and new is not None and new.token > old.token
    with pytest.raises(LeaseNotHeld, match="granted again"):
        store.renew("T", old.token, A)
    assert store.release("T", old.token, A) is False
    assert store.get("T") is not None and store.get("T").holder == B  # type: ignore[union-attr]


def test_renewal_after_expiry_is_refused_even_when_nobody_took_it(store: LeaseStore,
                                                                  clock: Clock) -> None:
    _, lease = store.acquire("T", A, 5)
    assert lease is not None
    clock.now += 4
    store.renew("T", lease.token, A)
    clock.now += 4  # 8 s after grant, 4 after renewal: live
    store.renew("T", lease.token, A)
    clock.now += 6
    with pytest.raises(LeaseNotHeld, match="expired"):
        store.renew("T", lease.token, A)


def test_release_needs_the_holder_and_the_token(store: LeaseStore) -> None:
    _, lease = store.acquire("T", A, 10)
    assert lease is not None
    assert store.release("T", lease.token, B) is False
    assert store.release("T", lease.token + 1, A) is False
    assert store.get("T") is not None
    assert store.release("T", lease.token, A) is True
    assert store.get("T") is None


def test_restart_treats_held_leases_as_granted_at_restart(tmp_path: Path,
                                                          clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    store = LeaseStore(path, clock=clock)
    _, lease = store.acquire("T", A, 10)
    assert lease is not None
    clock.now += 9  # one second left before the crash
    store.db.close()  # like a kill -9: nothing else is written
    clock.now += 5  # the server is down for 5 s
    restarted = LeaseStore(path, clock=clock)
    live = restarted.get("T")
    assert live is not None and live.token == lease.token
    assert live.expires_in == pytest.approx(10)
    restarted.renew("T", lease.token, A)
    clock.now += 10.5
    granted, _ = restarted.acquire("T", B, 10)
    assert granted


def test_resource_pool_grants_at_most_its_slots(store: LeaseStore, clock: Clock) -> None:
    first = store.acquire_resource("warehouse", 2, A, 10)
    second = store.acquire_resource("warehouse", 2, A, 10)
    assert first is not None and second is not None and first.key != second.key
    assert store.acquire_resource("warehouse", 2, B, 10) is None
    store.release(first.key, first.token, A)
    third = store.acquire_resource("warehouse", 2, B, 10)
    assert third is not None and third.key == first.key and third.token > first.token
    clock.now += 11  # A's second slot expires
    assert store.acquire_resource("warehouse", 2, B, 10) is not None


def test_grants_are_on_disk_before_the_call_returns(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    store = LeaseStore(path, clock=clock)
    store.acquire("T", A, 10)
    other = sqlite3.connect(path)  # a second connection sees only committed data
    row = other.execute("SELECT host FROM leases WHERE key = 'T'").fetchone()
    assert row == ("host-a",)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def rows(path: str, table: str) -> int:
    other = sqlite3.connect(path)
    try:
        return int(other.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        other.close()


def test_released_and_expired_rows_are_deleted(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    store = LeaseStore(path, clock=clock)
    leases = [store.acquire(f"T{i}", A, 5)[1] for i in range(10)]
    for lease in leases[:5]:
        assert lease is not None and store.release(lease.key, lease.token, A)
    assert rows(path, "leases") == 5 and store.held_count == 5
    clock.now += 3
    store.renew("T9", leases[9].token, A)  # type: ignore[union-attr]
    clock.now += 2.5
    assert store.expire_due() == 4  # T5..T8; T9 was renewed
    assert rows(path, "leases") == 1 and store.held_count == 1
    clock.now += 5
    assert store.expire_due() == 1 and rows(path, "leases") == 0
    events = [line.event for line in store.audit_since(0)]
    assert events.count("grant") == 10 and events.count("release") == 5
    assert events.count("expire") == 5


def test_tokens_stay_above_every_token_issued_after_a_fresh_file(tmp_path: Path,
                                                                 clock: Clock) -> None:
    old = LeaseStore(str(tmp_path / "old.db"), clock=clock)
    issued = [old.acquire(f"T{i}", A, 10)[1].token for i in range(50)]  # type: ignore[union-attr]
    old.close()
    fresh = LeaseStore(str(tmp_path / "fresh.db"), clock=clock)  # the operator starts afresh
    _, lease = fresh.acquire("T0", B, 10)
    assert lease is not None and lease.token > max(issued)
    assert fresh.token_high() == lease.token


def test_token_high_water_mark_survives_the_deletion_of_every_row(tmp_path: Path,
                                                                  clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    moments = iter(range(10))
    store = LeaseStore(path, clock=clock, wall=lambda: 1000.0 + next(moments) * 0.0)
    _, first = store.acquire("T", A, 10)  # the wall clock stands still: only the mark counts
    assert first is not None
    store.release("T", first.token, A)
    store.close()
    again = LeaseStore(path, clock=clock, wall=lambda: 1000.0)
    _, second = again.acquire("T", A, 10)
    assert second is not None and second.token == first.token + 1


@pytest.mark.parametrize("damage", ["zeroed", "truncated", "garbage", "empty"])
def test_a_damaged_database_is_refused_and_left_as_it_is(tmp_path: Path, clock: Clock,
                                                         damage: str) -> None:
    path = str(tmp_path / "leases.db")
    store = LeaseStore(path, clock=clock)
    for i in range(300):
        store.acquire(f"Task(n={i}, padding={'x' * 200})", A, 10)
    store.close()
    size = os.path.getsize(path)
    with open(path, "r+b") as handle:
        if damage == "zeroed":
            handle.write(b"\0" * size)
        elif damage == "truncated":
            handle.truncate(size // 2)
        elif damage == "garbage":
            handle.seek(0)
            handle.write(b"this is not a database" * 10)
        else:
            handle.truncate(0)
    before = open(path, "rb").read()
    with pytest.raises(StoreError) as info:
        LeaseStore(path, clock=clock)
    assert info.value.exit_code == 2
    assert path in str(info.value) and "not re-initialised" in str(info.value)
    assert open(path, "rb").read() == before


def test_a_damaged_write_ahead_log_is_refused(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    script = ("import os, sys\nfrom batchdeps.locks.store import SqliteLeaseStore as LeaseStore\n"
              "from batchdeps.locks.protocol import Holder\n"
              "LeaseStore(sys.argv[1]).acquire('T', Holder('h', 1, 'r'), 10)\n"
              "os._exit(0)\n")  # like a kill -9: the WAL is not checkpointed
    subprocess.run([sys.executable, "-c", script, path], check=True)
    with open(path + "-wal", "r+b") as handle:  # the WAL holds the grant
        assert len(handle.read(32)) == 32
        handle.seek(8)
        handle.write(b"\xff\xff\xff\xff")
    with pytest.raises(StoreError, match="write-ahead log"):
        LeaseStore(path, clock=clock)


def test_an_sqlite_file_of_another_program_is_refused(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "other.db")
    other = sqlite3.connect(path)
    other.execute("CREATE TABLE customers (name TEXT)")
    other.commit()
    other.close()
    with pytest.raises(StoreError, match="another program"):
        LeaseStore(path, clock=clock)
    other = sqlite3.connect(path)
    assert [r[0] for r in other.execute("SELECT name FROM sqlite_master")] == ["customers"]


def test_a_database_of_the_first_schema_is_migrated(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "v1.db")
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE leases (key TEXT PRIMARY KEY, token INTEGER NOT NULL, host TEXT "
                "NOT NULL, pid INTEGER NOT NULL, run_id TEXT NOT NULL, ttl REAL NOT NULL, "
                "granted_at REAL NOT NULL, held INTEGER NOT NULL)")
    old.execute("INSERT INTO leases VALUES ('Held', 7, 'host-a', 100, 'run-a', 10, 0, 1)")
    old.execute("INSERT INTO leases VALUES ('Free', 9, 'host-a', 100, 'run-a', 10, 0, 0)")
    old.commit()
    old.close()
    store = LeaseStore(path, clock=clock, wall=lambda: 0.0)  # a clock far behind: the mark rules
    held = store.get("Held")
    assert held is not None and held.token == 7 and held.holder == A
    assert store.get("Free") is None
    _, lease = store.acquire("Free", B, 10)
    assert lease is not None and lease.token == 10


def test_audit_since_reads_newest_first_within_the_window(tmp_path: Path,
                                                          clock: Clock) -> None:
    now = [time.time()]
    store = LeaseStore(str(tmp_path / "leases.db"), clock=clock, wall=lambda: now[0])
    _, lease = store.acquire("T", A, 10, address="10.0.0.7")
    now[0] += 100
    assert lease is not None
    store.release("T", lease.token, A, address="10.0.0.7")
    store.audit("auth-failure", "10.0.0.9", "wrong token")
    lines = store.audit_since(now[0] - 1)
    assert [line.event for line in lines] == ["auth-failure", "release"]
    assert lines[1].address == "10.0.0.7" and lines[1].holder == "host host-a pid 100 run run-a"
    assert len(store.audit_since(0, limit=1)) == 1
    assert store.prune_audit(now[0] - 1) == 1
    assert [line.event for line in store.audit_since(0)] == ["auth-failure", "release"]


def _same_start(tmp_path: Path, name: str, clock: Clock) -> LeaseStore:
    """A store with one lease of B live, one of A live and one of B expired."""
    store = LeaseStore(str(tmp_path / name), clock=clock, wall=lambda: 1000.0)
    store.acquire("held-by-b", B, 10)
    store.acquire("held-by-a", A, 10)
    store.acquire("expired", B, 1)
    return store


def test_acquire_many_answers_as_acquire_key_by_key(tmp_path: Path, clock: Clock) -> None:
    """The batch path (rows read in one SELECT, one commit) and acquire() one key at a
    time give the same answers, tokens, rows and audit lines."""
    batched = _same_start(tmp_path, "batched.db", clock)
    single = _same_start(tmp_path, "single.db", clock)
    clock.now += 5  # "expired" ran out; the others are live
    keys = ["free-1", "held-by-b", "expired", "held-by-a", "free-2", "free-1"]
    many = batched.acquire_many(keys, A, 10)
    one_by_one = [single.acquire(key, A, 10) for key in keys]
    assert [(g, lease.key, lease.token, lease.holder) for g, lease in many] == [
        (g, lease.key, lease.token, lease.holder) for g, lease in one_by_one if lease]
    assert [g for g, _ in many] == [True, False, True, True, True, True]
    assert many[0][1].token == many[5][1].token  # a key named twice is granted once
    assert [(r.event, r.key, r.token, r.holder) for r in batched.audit_since(0)] == [
        (r.event, r.key, r.token, r.holder) for r in single.audit_since(0)]
    assert [(lease.key, lease.token) for lease in batched.live()] == [
        (lease.key, lease.token) for lease in single.live()]
    assert batched.token_high() == single.token_high()


def test_release_many_answers_as_release_lease_by_lease(tmp_path: Path, clock: Clock) -> None:
    """The batch path (rows read in one SELECT, the caller's deleted in one executemany)
    and release() one lease at a time give the same answers, rows and audit lines: a lease
    named twice is released once, another holder's, a stale token's and an unknown key's
    not at all, an expired lease of the caller's that nobody took is."""
    batched = _same_start(tmp_path, "batched.db", clock)
    single = _same_start(tmp_path, "single.db", clock)
    for store in (batched, single):
        store.acquire("mine-1", A, 10)
        store.acquire("mine-2", B, 1)
    clock.now += 5  # "expired" and "mine-2" (B's) ran out
    tokens = {lease.key: lease.token for lease in batched.live()}
    expired_token = batched.token("expired")
    leases = [("mine-1", tokens["mine-1"]), ("held-by-b", tokens["held-by-b"]),
              ("held-by-a", tokens["held-by-a"] + 1), ("mine-1", tokens["mine-1"]),
              ("nothing", 5), ("expired", expired_token), ("held-by-a", tokens["held-by-a"])]
    many = batched.release_many(leases, A)
    one_by_one = [single.release(key, token, A) for key, token in leases]
    assert many == one_by_one == [True, False, False, False, False, False, True]
    assert batched.release_many([("expired", expired_token)], B) == [True]
    assert single.release("expired", expired_token, B)
    assert [(r.event, r.key, r.token, r.holder) for r in batched.audit_since(0)] == [
        (r.event, r.key, r.token, r.holder) for r in single.audit_since(0)]
    assert [(lease.key, lease.token) for lease in batched.live()] == [
        (lease.key, lease.token) for lease in single.live()] == [
        ("held-by-b", tokens["held-by-b"])]


def test_a_rolled_back_transaction_leaves_leases_as_they_were(store: LeaseStore,
                                                              clock: Clock,
                                                              tmp_path: Path) -> None:
    _, kept = store.acquire("kept", A, 10)
    assert kept is not None
    with pytest.raises(RuntimeError):
        with store.transaction():
            taken = store.acquire_many(["new-1", "new-2"], A, 10)
            assert store.release("kept", kept.token, A)
            raise RuntimeError("a bug in the middle of a batch")
    assert store.get("new-1") is None and store.held_count == 1
    again = store.get("kept")
    assert again is not None and again.token == kept.token and again.expires_in > 0
    clock.now += 11
    assert store.expire_due() == 1  # the restored expiry still runs out
    _, after = store.acquire("new-1", A, 10)
    assert after is not None and after.token > max(lease.token for _, lease in taken)
    events = [line.event for line in store.audit_since(0)]
    assert events.count("grant") == 2 and "release" not in events
    store.close()
    reopened = LeaseStore(str(tmp_path / "leases.db"), clock=clock)
    assert reopened.token_high() == after.token
