"""The lock-provider interface the runner depends on, and the lease it hands out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol


@dataclass(eq=False)
class Lease:
    """A held right to run one task (or to use one slot of a resource pool).

    `fencing_token` grows on every grant of the same key (0 where the provider has no
    fencing). `lost` is set by the provider when the lease ran out or was taken over.
    """

    key: str
    fencing_token: int = 0
    lost: bool = False
    lost_reason: str = ""
    handle: Any = field(default=None, repr=False)


class LockProvider(Protocol):
    """Leases keyed by task id. Non-blocking: the runner decides how long to wait.

    Every call the runner makes is here; `locks.local.LocalLockProvider` (one machine)
    and `locks.client.HttpLockProvider` (the lock server) implement all of them.
    """

    def start(self) -> None:
        """Connect / prepare; raise a LockError if that is impossible (nothing has run)."""

    def try_acquire(self, key: str) -> Lease | None:
        """The lease for `key`, or None when another holder has it."""

    def try_acquire_many(self, keys: list[str]) -> list[Lease | None]:
        """`try_acquire` for each of `keys`, in order (one round trip where that helps)."""

    def acquire_ahead(self, keys: list[str]) -> None:
        """Start taking the leases of `keys` for a `try_acquire` of each later on, without
        waiting for the answer; that `try_acquire` then gets it (waiting only if it is
        still on its way). A provider whose acquire costs no round trip may do nothing."""

    def try_acquire_resource(self, name: str, slots: int) -> Lease | None:
        """One of `slots` slots of resource pool `name`, or None when all are taken."""

    def holder(self, key: str) -> str:
        """Who holds `key`, for messages ("" when unknown or free)."""

    def check(self, lease: Lease) -> None:
        """Raise LeaseLostError unless `lease` is still ours; called just before a commit."""

    def release(self, lease: Lease) -> None:
        """Give the lease back; never raises for a lease that is already gone."""

    def close(self) -> None:
        """Release everything still held and stop background work."""
