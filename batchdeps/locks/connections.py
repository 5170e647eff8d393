"""Connection limits of the lock server: caps, header and body timeouts, quiet accept errors.

aiohttp times out neither a connection that never sends a request nor one that sends half a
request head, and it accepts as many connections as the process has file descriptors. Here
every connection passes through `GuardedProtocol`, a thin asyncio protocol in front of
aiohttp's own, which

- refuses a connection at once (503, then close) when the server already has
  `max_connections` open, or `max_per_address` from the same client address;
- closes a connection whose request head and body do not arrive within `request_timeout`
  seconds of their first byte (of the connection's opening, for the first request).
  Idle keep-alive connections between requests are closed by aiohttp's `keepalive_timeout`.

`raise_file_limit()` lifts the soft RLIMIT_NOFILE to the hard limit, and
`quiet_exception_handler()` logs the event loop's errors (asyncio's "accept failed" when the
process is out of descriptors) at most once per interval, with a count of the ones left out.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import logs

log = logs.get("batchdeps.lock_server")

_CONTENT_LENGTH = re.compile(rb"\r\ncontent-length:[ \t]*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:[^\r\n]*chunked", re.IGNORECASE)
_REFUSAL = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
            b"Connection: close\r\nRetry-After: 1\r\nContent-Length: 58\r\n\r\n"
            b'{"error": "too many connections; try again in a moment"}\r\n')
MAX_HEAD_BYTES = 64 * 1024


@dataclass(frozen=True)
class Limits:
    """The numbers; docs/locks.md states the defaults."""

    max_connections: int = 2048
    max_per_address: int = 256
    request_timeout: float = 10.0
    keepalive_timeout: float = 30.0
    log_interval: float = 10.0


class Throttled:
    """Logs one message per `interval` seconds per kind; counts what it left out."""

    def __init__(self, interval: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.interval = interval
        self.clock = clock
        self._last: dict[str, float] = {}
        self._skipped: dict[str, int] = {}

    def log(self, kind: str, message: str, *args: Any, exc_info: Any = None) -> bool:
        now = self.clock()
        if now - self._last.get(kind, -1e18) < self.interval:
            self._skipped[kind] = self._skipped.get(kind, 0) + 1
            return False
        skipped = self._skipped.pop(kind, 0)
        self._last[kind] = now
        suffix = f" ({skipped} more like it in the last {self.interval:g} s)" if skipped else ""
        log.warning(message + suffix, *args, exc_info=exc_info)
        return True


class ConnectionTable:
    """Open connections by client address, and the sweep that enforces request deadlines."""

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self.total = 0
        self.by_address: dict[str, int] = {}
        self.open: set[GuardedProtocol] = set()
        self.refused = 0
        self.timed_out = 0
        self.notes = Throttled(limits.log_interval, clock)

    def admit(self, address: str) -> bool:
        if (self.total >= self.limits.max_connections
                or self.by_address.get(address, 0) >= self.limits.max_per_address):
            self.refused += 1
            self.notes.log("refused", "refused a connection from %s: %d open (%d from that "
                           "address); limits %d and %d per address", address, self.total,
                           self.by_address.get(address, 0), self.limits.max_connections,
                           self.limits.max_per_address)
            return False
        self.total += 1
        self.by_address[address] = self.by_address.get(address, 0) + 1
        return True

    def leave(self, address: str) -> None:
        self.total -= 1
        left = self.by_address.get(address, 1) - 1
        if left > 0:
            self.by_address[address] = left
        else:
            self.by_address.pop(address, None)

    def sweep(self) -> None:
        """Close every connection whose request is overdue."""
        now = self.clock()
        for conn in [c for c in self.open if c.deadline is not None and c.deadline <= now]:
            self.timed_out += 1
            self.notes.log("timeout", "closed a connection from %s: no complete request "
                           "within %g s", conn.address, self.limits.request_timeout)
            conn.abort()

    async def sweep_forever(self, every: float = 0.5) -> None:
        while True:
            await asyncio.sleep(every)
            self.sweep()


class GuardedProtocol(asyncio.Protocol):
    """aiohttp's protocol behind a connection cap and a deadline per request."""

    def __init__(self, table: ConnectionTable, inner_factory: Callable[[], Any]) -> None:
        self.table = table
        self.inner_factory = inner_factory
        self.inner: Any = None
        self.transport: asyncio.Transport | None = None
        self.address = "?"
        self.deadline: float | None = None
        self._head = b""         # bytes of a request head not yet complete
        self._body_left = 0      # bytes of the current body still to come
        self._chunked = False

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.address = str(peer[0]) if peer else "?"
        if not self.table.admit(self.address):
            transport.write(_REFUSAL)
            transport.close()
            return
        self.table.open.add(self)
        self.deadline = self.table.clock() + self.table.limits.request_timeout
        self.inner = self.inner_factory()
        self.inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.inner is None:
            return
        self._track(data)
        self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self.inner.eof_received() if self.inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is None:
            return
        self.table.open.discard(self)
        self.table.leave(self.address)
        inner, self.inner = self.inner, None
        inner.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.inner is not None:
            self.inner.pause_writing()

    def resume_writing(self) -> None:
        if self.inner is not None:
            self.inner.resume_writing()

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- request progress -------------------------------------------------------------------
    def _track(self, data: bytes) -> None:
        """Follow where the client is in its request: head, body, or done (no deadline)."""
        while data:
            if self._body_left:
                used = min(self._body_left, len(data))
                self._body_left -= used
                data = data[used:]
                if not self._body_left:
                    self.deadline = None
                continue
            if self._chunked:
                if b"0\r\n\r\n" in data:
                    self._chunked = False
                    self.deadline = None
                    data = data[data.index(b"0\r\n\r\n") + 5:]
                    continue
                return
            if not self._head and self.deadline is None:
                self.deadline = self.table.clock() + self.table.limits.request_timeout
            buffered = self._head + data
            end = buffered.find(b"\r\n\r\n")
            if end < 0:
                self._head = buffered[-MAX_HEAD_BYTES:]
                return
            head, data = buffered[:end + 2], buffered[end + 4:]
            self._head = b""
            length = _CONTENT_LENGTH.search(head)
            self._body_left = int(length.group(1)) if length else 0
            self._chunked = bool(_CHUNKED.search(head))
            if not self._body_left and not self._chunked:
                self.deadline = None


def raise_file_limit() -> tuple[int, int]:
    """Lift the soft open-file limit to the hard one; the (soft, hard) now in force."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):
            pass
    return soft, hard


def quiet_exception_handler(interval: float) -> Callable[[asyncio.AbstractEventLoop,
                                                           dict[str, Any]], None]:
    """An event-loop exception handler that logs each kind at most once per `interval`."""
    notes = Throttled(interval)

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", "event loop error"))
        exc = context.get("exception")
        kind = f"{message[:40]}|{type(exc).__name__ if exc else ''}"
        notes.log(kind, "%s%s", message, f": {exc}" if exc else "")

    return handle
