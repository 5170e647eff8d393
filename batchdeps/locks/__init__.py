"""Lock providers: who may run a task now. The runner takes one as an argument."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Lease, LockProvider

if TYPE_CHECKING:
    from .local import LocalLockProvider


def __getattr__(name: str) -> Any:
    # Imported on first use: `batchdeps --help` and the lock server do not need it.
    if name == "LocalLockProvider":
        from .local import LocalLockProvider

        return LocalLockProvider
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__all__ = ["Lease", "LocalLockProvider", "LockProvider"]
