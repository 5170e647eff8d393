"""The SQLite lease table: grants, fencing tokens, expiry, restarts, resource slots."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from batchdeps.locks.protocol import Holder
from batchdeps.locks.store import LeaseLost, LeaseStore

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
    assert granted and lease is not None and lease.token == 1
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
    assert tokens == [1, 2, 3] and lease.token == 4


def test_expired_lease_goes_to_the_next_holder_and_fences_the_old_one(
        store: LeaseStore, clock: Clock) -> None:
    _, old = store.acquire("T", A, 5)
    assert old is not None
    clock.now += 5.1
    granted, new = store.acquire("T", B, 5)
    assert granted and new is not None and new.token == old.token + 1
    with pytest.raises(LeaseLost, match="granted again"):
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
    with pytest.raises(LeaseLost, match="expired"):
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
    assert third is not None and third.key == first.key and third.token == first.token + 1
    clock.now += 11  # A's second slot expires
    assert store.acquire_resource("warehouse", 2, B, 10) is not None


def test_grants_are_on_disk_before_the_call_returns(tmp_path: Path, clock: Clock) -> None:
    path = str(tmp_path / "leases.db")
    store = LeaseStore(path, clock=clock)
    store.acquire("T", A, 10)
    other = sqlite3.connect(path)  # a second connection sees only committed data
    row = other.execute("SELECT token, host, held FROM leases WHERE key = 'T'").fetchone()
    assert row == (1, "host-a", 1)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
