"""The lease store's written interface: every call the lock server makes, and its rows.

Two stores keep to it: `sqlite.SqliteLeaseStore` (one file, one server, the default) and
`postgres.PgLeaseStore` (one database, any number of server replicas). A lease is keyed by
task id or resource slot and carries a fencing token, a holder and a TTL; the store decides
when a lease is live, so the server never compares clocks itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ...errors import LockError, UsageError
from ..protocol import FORCED_RELEASE, LOCAL_FENCE_FRACTION, Holder

if TYPE_CHECKING:
    from ...history.store import HistoryStore

T = TypeVar("T")
AUDIT_EVENTS = ("grant", "release", "expire", "takeover", "force-release", "auth-failure")
#: the detail of the "expire" line when a key closed by a forced release opens again
REOPENED = "the fence window its holder had when it was released by force has closed"


class StoreError(UsageError):
    """The lease database cannot be used as it is (the server refuses to start: exit 2)."""


class LeaseNotHeld(LockError):
    """The named lease is not the caller's any more; the message says why.

    The store's answer to a renew/check; the server turns it into a `lost` entry or a 409.
    (The client-side `errors.LeaseLostError` is what a run sees.)
    """


class StoreUnavailable(LockError):
    """The database did not answer (down, restarting, unreachable); the server says 503.

    Nothing was decided: a client may send the same request again, here or to a replica.
    """


@dataclass(frozen=True)
class LeaseRow:
    """One lease as the table knows it; `expires_in` in seconds from now (the store's clock)."""

    key: str
    token: int
    holder: Holder
    ttl: float
    granted_at: float
    expires_in: float


def fence_window_left(lease: LeaseRow) -> float:
    """Seconds from now in which `lease`'s holder may still commit on its own fence answer:
    until half (LOCAL_FENCE_FRACTION) a TTL after the server last confirmed it, which is
    its expiry less that part of its TTL (a confirmation sets the expiry one TTL on)."""
    return lease.expires_in - lease.ttl * LOCAL_FENCE_FRACTION


def not_held_reason(key: str, token: int, holder: Holder) -> str:
    """Why a renew or check of `key` fails when the key is now `holder`'s with `token`."""
    if holder == FORCED_RELEASE:
        return f"{key} was released by force (batchdeps locks release)"
    return f"{key} was granted again (token {token}, held by {holder.describe()})"


@dataclass(frozen=True)
class AuditRow:
    """One line of the audit log."""

    id: int
    at: float
    event: str
    key: str
    token: int
    holder: str
    address: str
    detail: str

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "at": self.at, "event": self.event, "key": self.key,
                "token": self.token, "holder": self.holder, "address": self.address,
                "detail": self.detail}


class LeaseStore(Protocol):
    """What the lock server asks of its lease table (and nothing more).

    `path` names the database for people (a file, or a postgresql URL without password);
    `kind` is `sqlite` or `postgresql`. `grants` counts grants that `sync()` must still make
    durable before they are announced (a store whose commits are durable keeps it at 0);
    `event_counts` counts audit events by kind since this process started. `groups` says
    whether `transaction()` makes one commit of the calls inside, so that an exception
    inside undoes all of them (SQLite); a store whose every call commits on its own says
    False (PostgreSQL), and the server then never puts two requests' calls in one.
    Such a store's `off_loop()` makes the server's changes without its event loop waiting
    for the database.
    """

    path: str
    kind: str
    grants: int
    groups: bool
    event_counts: dict[str, int]

    @property
    def held_count(self) -> int:
        """Leases held now (one store may count some expired ones not swept yet)."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Group the calls made inside into one commit where the store can."""
        ...

    async def off_loop(self, call: Callable[[], T]) -> T:
        """`call()`, a function that does nothing but call this store (it may be called
        more than once), made without the event loop waiting for a database server. SQLite
        calls it at once; PostgreSQL makes the calls of every function handed in meanwhile
        together, in one batch off the loop (pgbatch.Rounds)."""
        ...

    def acquire(self, key: str, holder: Holder, ttl: float,
                address: str = "") -> tuple[bool, LeaseRow | None]:
        """(True, lease) when granted or already the caller's (same token, expiry
        extended); (False, current lease) when another holder's lease is live."""
        ...

    def acquire_many(self, keys: Sequence[str], holder: Holder, ttl: float,
                     address: str = "") -> list[tuple[bool, LeaseRow]]:
        """`acquire` for each key, in order."""
        ...

    def acquire_resource(self, name: str, slots: int, holder: Holder, ttl: float,
                         address: str = "") -> LeaseRow | None:
        """A free slot of pool `name`, or None when all `slots` are held."""
        ...

    def renew(self, key: str, token: int, holder: Holder) -> LeaseRow:
        """Extend the caller's live lease by its TTL; LeaseNotHeld when it is not theirs."""
        ...

    def renew_many(self, leases: Sequence[tuple[str, int]], holder: Holder
                   ) -> list[LeaseRow | LeaseNotHeld]:
        """`renew` for each (key, token), in order: the renewed lease, or the LeaseNotHeld
        that says why it is not the caller's (returned, not raised: the others are renewed
        all the same). One round trip and one commit for all."""
        ...

    def check(self, key: str, token: int, holder: Holder) -> LeaseRow:
        """The fence before a commit: as `renew` (a live lease is extended)."""
        ...

    def release(self, key: str, token: int, holder: Holder, address: str = "") -> bool:
        """Free the caller's lease; False (no change) when it is not theirs any more."""
        ...

    def release_many(self, leases: Sequence[tuple[str, int]], holder: Holder,
                     address: str = "") -> list[bool]:
        """`release` for each (key, token), in order, in one commit (one round trip)."""
        ...

    def force_release(self, key: str, address: str, reason: str) -> LeaseRow | None:
        """Free `key` whoever holds it (audited); the lease that was freed, or None.

        While its holder may still commit on its own fence answer (`fence_window_left`),
        the key is not free but held by FORCED_RELEASE until that window has closed, so
        nobody else gets it meanwhile; the holder's renewals and checks fail at once. A key
        held by FORCED_RELEASE is not released again (None)."""
        ...

    def get(self, key: str) -> LeaseRow | None:
        """The live lease on `key`, or None."""
        ...

    def live(self, limit: int | None = None) -> list[LeaseRow]:
        """Live leases, oldest grant first (at most `limit`)."""
        ...

    def by_holder(self, host: str, pid: int) -> list[LeaseRow]:
        """Live leases of every run of process `pid` on `host`."""
        ...

    def token_high(self) -> int:
        """The highest fencing token this database handed out (0 before the first)."""
        ...

    def audit(self, event: str, address: str, detail: str = "", key: str = "") -> None:
        """Record an event that is not a lease change (an authentication failure)."""
        ...

    def audit_since(self, since: float = 0.0, limit: int = 1000) -> list[AuditRow]:
        """Audit lines at or after wall time `since`, newest first, at most `limit`."""
        ...

    def prune_audit(self, before: float, limit: int = 1000) -> int:
        """Delete up to `limit` audit lines older than wall time `before`."""
        ...

    def expire_due(self, limit: int = 500) -> int:
        """Delete up to `limit` leases whose TTL ran out (audited); how many."""
        ...

    def sync(self) -> None:
        """Make every grant committed so far survive a power loss."""
        ...

    def health(self) -> dict[str, Any]:
        """For /v1/health: `database` (kind), `answers` (bool), and `error` when not."""
        ...

    def history(self) -> HistoryStore:
        """The run history kept in the same database (a new handle, closed by the caller)."""
        ...

    def close(self) -> None:
        ...

