"""Who holds the lock of which task, asked without waiting: local locks or the lock server.

`status` may ask about thousands of tasks. Machine-local locks answer each key with one
`fcntl` query; the lock server is asked once for its whole lease table (a `reader` token is
enough), instead of one request per key that its rate limit would slow to a crawl.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..config import Config
from ..errors import BatchdepsError

#: keys -> {key: holder description} for the keys that are held.
HolderLookup = Callable[[list[str]], dict[str, str]]


def holder_lookup(config: Config, lock_url: str | Sequence[str] | None = None
                  ) -> tuple[HolderLookup, str]:
    """The configured lock provider's holders, and a warning when they cannot be known.

    Never raises for an unreachable or refusing lock server: status still answers, without
    `running` states, and the warning says why.
    """
    from ..api import lock_url_for

    url = lock_url_for(config, lock_url)
    if url:
        return _server_lookup(url)
    import os

    from ..locks.local import LocalLockProvider

    provider = LocalLockProvider(config.batchdeps.get("lock_dir"))

    def local(keys: list[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        if not os.path.exists(provider.path):  # no run on this machine has locked anything
            return found
        for key in keys:
            holder = provider.holder(key)
            if holder:
                found[key] = holder
        return found

    return local, ""


def _server_lookup(url: Sequence[str]) -> tuple[HolderLookup, str]:
    from ..locks.auth import client_token
    from ..locks.protocol import describe_holder
    from ..locks.transport import LockTransport

    try:
        transport = LockTransport(url, client_token(), retry_for=1.0)
        try:
            _, data = transport.call("leases")
        finally:
            transport.close()
    except BatchdepsError as exc:
        return _nobody, f"lock state unknown ({exc}); running tasks show as missing"
    table = {str(lease.get("key")): describe_holder(lease.get("holder"))
             for lease in data.get("leases", []) if isinstance(lease, dict)}

    def server(keys: list[str]) -> dict[str, str]:
        return {key: table[key] for key in keys if key in table}

    return server, ""


def _nobody(keys: list[str]) -> dict[str, str]:
    return {}
