"""Lock providers: who may run a task now. The runner takes one as an argument."""

from __future__ import annotations

from .base import Lease, LockProvider
from .local import LocalLockProvider

__all__ = ["Lease", "LockProvider", "LocalLockProvider"]
