"""The lock server's replicas as a client sees them: the URLs in order, and the one in use.

`[lock] url` (and `--lock-url`, `$BATCHDEPS_LOCK_URL`) names one server or several replicas
on one shared database. A client starts with the first, keeps to the one that answered
last, and on a connection error or a 5xx moves on to the next in the list (wrapping
round). Leases live in the database, so a lease granted through one replica is renewed,
checked and released through any other. Standard library only: the config imports it.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

from .. import logs
from ..errors import ConfigError
from .protocol import ProtocolError, parse_url

log = logs.get()

#: How `$BATCHDEPS_LOCK_URL` separates several replicas.
ENV_SEPARATOR = ","


def lock_urls(value: object) -> tuple[str, ...]:
    """A URL or a list of URLs, checked: the replicas in order, trailing slashes cut.

    Raises ValueError saying what is wrong (an empty list, an entry that is not an http(s)
    URL, one replica named twice); a bad URL is not repeated, since it may hold a secret.
    """
    if isinstance(value, str):
        items: list[object] = [value]
        several = False
    elif isinstance(value, (list, tuple)):
        items = list(value)
        several = True
        if not items:
            raise ValueError("is an empty list: name at least one lock server URL")
    else:
        raise ValueError("must be a URL or a list of URLs")
    urls: list[str] = []
    seen: dict[tuple[bool, str, int, str], int] = {}
    for position, item in enumerate(items):
        where = f"[{position}] " if several else ""
        if not isinstance(item, str) or not item:
            raise ValueError(f"{where}must be a non-empty string (a lock server URL)")
        try:
            https, host, port, prefix = parse_url(item)
        except ProtocolError as exc:
            raise ValueError(f"{where}{exc}") from None
        ident = (https, host.lower(), port, prefix)
        if ident in seen:
            raise ValueError(f"[{position}] names the same lock server as [{seen[ident]}] "
                             "(give each replica once)")
        seen[ident] = position
        urls.append(item.rstrip("/"))
    return tuple(urls)


def option_urls(given: str | Sequence[str], option: str = "--lock-url") -> tuple[str, ...]:
    """The URLs of a repeatable command-line option (or one string); ConfigError naming
    the option when one is bad."""
    values = [given] if isinstance(given, str) else list(given)
    try:
        return lock_urls(values if len(values) > 1 else values[0])
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{option} {exc or 'needs a URL'}") from None


class Replicas:
    """The replicas in order and the one in use, shared by every thread of one client."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls = lock_urls(urls if isinstance(urls, str) else list(urls))
        self._current = 0
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.urls)

    @property
    def current(self) -> int:
        return self._current

    @property
    def url(self) -> str:
        """The replica in use."""
        return self.urls[self._current]

    def order(self) -> list[int]:
        """Indexes to try for one request: the one in use, then the next ones in turn."""
        start = self._current
        return [(start + step) % len(self.urls) for step in range(len(self.urls))]

    def answered(self, index: int, problem: str = "") -> None:
        """Replica `index` answered: it is the one in use from now on (sticky)."""
        with self._lock:
            before = self._current
            if before == index:
                return
            self._current = index
        log.warning("lock server %s failed (%s); using %s from now on",
                    self.urls[before], problem or "no answer", self.urls[index])

    def describe(self) -> str:
        """The URLs for messages: `URL`, or `URL, URL, ...`."""
        if len(self.urls) == 1:
            return self.urls[0]
        return ", ".join(self.urls)
