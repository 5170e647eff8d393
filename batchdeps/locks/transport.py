"""The lock client's transport: HTTP to the lock server, retries, and errors mapped to the tree.

Uses the standard library's http.client with one persistent connection per thread, so no
aiohttp import on the client side. `call()` retries what may pass (no connection, 429,
502-504) with the team's one `Backoff` for a time budget, then raises LockServerUnavailable;
401 is LockAuthError, 403 LockAuthError naming the missing role, any other 4xx/5xx but
409 LockError. Leases, fencing and heartbeats are the provider's (locks/client.py).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
import time
from typing import Any
from urllib.parse import urlencode

from ..backoff import Backoff
from ..errors import ConfigError, LockAuthError, LockError, LockServerUnavailable
from . import protocol as p

#: delays between tries of one request while the server is away or busy
RETRY = Backoff(first=0.05, factor=2.0, cap=1.0)


class LockTransport:
    """Requests to one lock server, each retried with backoff while it cannot be reached."""

    def __init__(self, url: str, token: str, request_timeout: float = 10.0,
                 retry_for: float = 30.0) -> None:
        try:
            self._https, self._host, self._port, self._prefix = p.parse_url(url)
        except p.ProtocolError as exc:
            raise ConfigError(f"lock server URL {url!r} {exc}") from None
        self.url = url.rstrip("/")
        if any(not 32 < ord(char) < 127 for char in token):
            raise LockError("the lock token may hold only printable ASCII characters without "
                            "spaces (it is sent in an HTTP header)")
        self.token = token
        self.request_timeout = request_timeout
        self.retry_for = retry_for
        self.unreachable = False  # the last call ran out of retries
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[http.client.HTTPConnection] = []

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            if self._https:
                conn = http.client.HTTPSConnection(self._host, self._port,
                                                   timeout=self.request_timeout,
                                                   context=ssl.create_default_context())
            else:
                conn = http.client.HTTPConnection(self._host, self._port,
                                                  timeout=self.request_timeout)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None

    def once(self, route: str, body: Any = None,
             query: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One request, no retry: (status, parsed JSON). Raises OSError/HTTPException."""
        method, path = p.ROUTES[route]
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/json"}
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        target = self._prefix + path + (f"?{urlencode(query)}" if query else "")
        conn = self._connection()
        try:
            conn.request(method, target, body=payload, headers=headers)
            response = conn.getresponse()
            raw = response.read()
        except (OSError, http.client.HTTPException):
            self._drop_connection()
            raise
        if response.getheader("Connection", "").lower() == "close":
            self._drop_connection()
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": raw[:200].decode("utf-8", "replace")}
        return response.status, data

    def call(self, route: str, body: Any = None, retry_for: float | None = None,
             query: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One request, retried with backoff while the server is unreachable or busy.

        Raises LockServerUnavailable after `retry_for` seconds (default: the transport's),
        LockAuthError on 401/403, LockError on any other 4xx/5xx except 409.
        """
        budget = self.retry_for if retry_for is None else retry_for
        waits = RETRY.waits(deadline=time.monotonic() + budget)
        while True:
            try:
                status, data = self.once(route, body, query)
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                error = data.get("error", "") if isinstance(data, dict) else ""
                if status == p.UNAUTHORIZED:
                    raise LockAuthError(
                        f"lock server {self.url} refused the token: set BATCHDEPS_LOCK_TOKEN "
                        "(or BATCHDEPS_LOCK_TOKEN_FILE) to a token the server knows")
                if status == p.FORBIDDEN:
                    raise LockAuthError(f"lock server {self.url} refused {route}: {error}")
                if status in (p.TOO_MANY_REQUESTS, 502, p.UNAVAILABLE, 504):
                    problem = f"HTTP {status}"
                elif status >= 400 and status != p.LEASE_LOST:
                    raise LockError(f"lock server {self.url} answered {status} to {route}: "
                                    f"{error}")
                else:
                    self.unreachable = False
                    return status, data
            wait = next(waits, None)
            if wait is None:
                self.unreachable = True
                raise LockServerUnavailable(
                    f"lock server {self.url} cannot be reached ({problem}; tried for "
                    f"{budget:g} s); is `batchdeps lock-server` running there?")
            time.sleep(wait)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
