"""The lock client's transport: HTTP to the lock server's replicas, retries, errors mapped.

Speaks HTTP/1.1 itself over one persistent connection per thread and replica
(`Connection`: a request is one `sendall`, the answer is read through one buffered reader;
http.client's header parsing through the email package cost more than the rest of a
round trip's client side), so no aiohttp import on the client side. A request goes to the
replica in use (locks/replicas.py); on a connection error or a 5xx it goes on at once to the next one,
and the first that answers is the one in use from then on. `call()` retries what may pass
(no replica answers, 429, 502-504) with the team's one `Backoff` for a time budget, then
raises LockServerUnavailable; 401 is LockAuthError, 403 LockAuthError naming the missing
role, a 500 from every replica or any other 4xx but 409 LockError. Leases, fencing and
heartbeats are the provider's (locks/client.py).
"""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlencode

from ..backoff import Backoff
from ..errors import ConfigError, LockAuthError, LockError, LockServerUnavailable
from . import protocol as p
from .replicas import Replicas

#: delays between rounds of tries of one request while no replica answers, or one is busy
RETRY = Backoff(first=0.05, factor=2.0, cap=1.0)
#: answers after which the next replica is tried at once (a replica dying, or one whose
#: database is away; 503 is also a replica at its connection cap)
NEXT_REPLICA = frozenset({p.SERVER_ERROR, 502, p.UNAVAILABLE, 504})


class NoReplicaAnswered(Exception):
    """Every replica failed one request: a connection error or a 5xx from each."""

    def __init__(self, problems: list[str], last: tuple[int, Any] | None) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems
        self.last = last  # the last 5xx answer, if any: (status, data)
        self.all_internal_errors = bool(problems) and all(
            problem.endswith(f"HTTP {p.SERVER_ERROR}") for problem in problems)
        #: every replica answered 503: each runs, but cannot serve now (its reason given)
        self.all_unavailable = bool(problems) and all(
            f"HTTP {p.UNAVAILABLE}" in problem for problem in problems)


MAX_LINE = 65536  # bytes of a status or header line
MAX_REASON = 300  # characters of a 503's reason kept in a message
MAX_HEADERS = 100


class Connection:
    """One kept-alive HTTP/1.1 connection to one replica: a request, then its answer.

    Raises OSError or http.client.HTTPException (RemoteDisconnected when the server closed
    a kept-alive connection before answering) like http.client, and is closed after any.
    """

    def __init__(self, host: str, port: int, https: bool, timeout: float) -> None:
        self.host = host
        self.port = port
        self.https = https
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self._reader: Any = None
        shown = f"[{host}]" if ":" in host else host
        self._host_header = f"{shown}:{port}"

    def _open(self) -> None:
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.https:
                sock = ssl.create_default_context().wrap_socket(sock,
                                                                server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        self.sock = sock
        self._reader = sock.makefile("rb")

    def request(self, method: str, target: str, payload: bytes | None,
                headers: str) -> tuple[int, bytes, bool]:
        """(status, body, whether the server closes the connection now)."""
        if self.sock is None:
            self._open()
        assert self.sock is not None
        head = f"{method} {target} HTTP/1.1\r\nHost: {self._host_header}\r\n{headers}"
        if payload is not None:
            head += f"Content-Length: {len(payload)}\r\n"
        data = (head + "\r\n").encode("latin-1") + (payload or b"")
        try:
            self.sock.sendall(data)
            return self._response()
        except BaseException:
            self.close()
            raise

    def _line(self) -> bytes:
        line: bytes = self._reader.readline(MAX_LINE + 1)
        if len(line) > MAX_LINE:
            raise http.client.LineTooLong("header line")
        return line

    def _response(self) -> tuple[int, bytes, bool]:
        line = self._line()
        if not line:
            raise http.client.RemoteDisconnected("the server closed the connection without "
                                                 "answering")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
            raise http.client.BadStatusLine(line.decode("latin-1", "replace")[:200])
        status = int(parts[1])
        close = parts[0] == b"HTTP/1.0"
        length: int | None = None
        chunked = False
        for _ in range(MAX_HEADERS + 1):
            line = self._line()
            if line in (b"\r\n", b"\n", b""):
                break
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise http.client.HTTPException("bad Content-Length") from None
            elif name == b"connection":
                close = value.strip().lower() == b"close"
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
        else:
            raise http.client.HTTPException(f"more than {MAX_HEADERS} headers")
        if chunked:
            body = self._chunked()
        elif length is not None:
            body = self._reader.read(length)
            if len(body) < length:
                raise http.client.IncompleteRead(body, length - len(body))
        else:  # no length: the body runs to the end of the connection
            body = self._reader.read()
            close = True
        if close:
            self.close()
        return status, body, close

    def _chunked(self) -> bytes:
        pieces = []
        while True:
            size_line = self._line().split(b";", 1)[0].strip()
            try:
                size = int(size_line, 16)
            except ValueError:
                raise http.client.HTTPException("bad chunk size") from None
            if size == 0:
                while self._line() not in (b"\r\n", b"\n", b""):
                    pass  # trailers
                return b"".join(pieces)
            piece = self._reader.read(size + 2)
            if len(piece) < size + 2:
                raise http.client.IncompleteRead(piece, size + 2 - len(piece))
            pieces.append(piece[:size])

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class LockTransport:
    """Requests to a lock server's replicas, each retried with backoff while none answers."""

    def __init__(self, urls: str | Sequence[str], token: str, request_timeout: float = 10.0,
                 retry_for: float = 30.0) -> None:
        try:
            self.replicas = Replicas(urls)
        except ValueError as exc:
            raise ConfigError(f"lock server URL {exc}") from None
        self._endpoints = [p.parse_url(url) for url in self.replicas.urls]
        if any(not 32 < ord(char) < 127 for char in token):
            raise LockError("the lock token may hold only printable ASCII characters without "
                            "spaces (it is sent in an HTTP header)")
        self.token = token
        self.request_timeout = request_timeout
        self.retry_for = retry_for
        self.unreachable = False  # the last call ran out of retries
        self._headers = (f"Authorization: Bearer {token}\r\nAccept: application/json\r\n")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._connections: list[Connection] = []

    @property
    def url(self) -> str:
        """The replica in use."""
        return self.replicas.url

    def _connection(self, index: int) -> Connection:
        conns: dict[int, Connection] | None = getattr(self._local, "conns", None)
        if conns is None:
            conns = self._local.conns = {}
        conn = conns.get(index)
        if conn is None:
            https, host, port, _ = self._endpoints[index]
            conn = Connection(host, port, https, self.request_timeout)
            conns[index] = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def _drop_connection(self, index: int) -> None:
        conns = getattr(self._local, "conns", None) or {}
        conn = conns.pop(index, None)
        if conn is not None:
            conn.close()

    def _send(self, index: int, route: str, body: Any,
              query: dict[str, Any] | None) -> tuple[int, Any]:
        """One request to replica `index`: (status, parsed JSON). Raises OSError/HTTPException."""
        method, path = p.ROUTES[route]
        headers = self._headers
        payload = None
        if body is not None:
            payload = json.dumps(body).encode()
            headers += "Content-Type: application/json\r\n"
        target = self._endpoints[index][3] + path + (f"?{urlencode(query)}" if query else "")
        conns = getattr(self._local, "conns", None) or {}
        kept = index in conns  # a kept-alive connection the server may have closed meanwhile
        while True:
            conn = self._connection(index)
            try:
                status, raw, closed = conn.request(method, target, payload, headers)
            except (OSError, http.client.HTTPException) as exc:
                self._drop_connection(index)
                if kept and not isinstance(exc, TimeoutError):
                    kept = False  # once more on a fresh connection before moving on
                    continue
                raise
            break
        if closed:
            self._drop_connection(index)
        try:
            data = json.loads(raw) if raw else {}
        except ValueError:
            data = {"error": raw[:200].decode("utf-8", "replace")}
        return status, data

    def once(self, route: str, body: Any = None,
             query: dict[str, Any] | None = None) -> tuple[int, Any]:
        """One try at each replica at most, starting with the one in use, no waiting.

        Returns the first answer that is not a 5xx: (status, parsed JSON); that replica is
        the one in use from then on. Raises NoReplicaAnswered when every replica failed.
        """
        problems: list[str] = []  # each failed replica's, named when there are several
        first_problem = ""  # the replica in use's, for the log line of a switch
        last: tuple[int, Any] | None = None
        for index in self.replicas.order():
            try:
                status, data = self._send(index, route, body, query)
            except (OSError, http.client.HTTPException) as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if status not in NEXT_REPLICA:
                    self.replicas.answered(index, first_problem)
                    return status, data
                last = (status, data)
                problem = f"HTTP {status}"
                reason = data.get("error") if isinstance(data, dict) else None
                if status == p.UNAVAILABLE and reason:  # why: its database away, its cap
                    problem += f" ({str(reason)[:MAX_REASON]})"
            first_problem = first_problem or problem
            problems.append(f"{self.replicas.urls[index]}: {problem}"
                            if len(self.replicas) > 1 else problem)
        raise NoReplicaAnswered(problems, last)

    def call(self, route: str, body: Any = None, retry_for: float | None = None,
             query: dict[str, Any] | None = None,
             give_up: threading.Event | None = None) -> tuple[int, Any]:
        """One request, retried with backoff while no replica answers or one is busy
        (and `give_up`, when given, is not set).

        Raises LockServerUnavailable after `retry_for` seconds (default: the transport's),
        LockAuthError on 401/403, LockError on any other 4xx except 409, and on a 500 from
        every replica (a bug, not an outage).
        """
        budget = self.retry_for if retry_for is None else retry_for
        waits = RETRY.waits(deadline=time.monotonic() + budget)
        unavailable = False  # the last try: every replica answered 503
        while True:
            try:
                status, data = self.once(route, body, query)
            except NoReplicaAnswered as failed:
                if failed.all_internal_errors and failed.last is not None:
                    error = failed.last[1].get("error", "") if isinstance(
                        failed.last[1], dict) else ""
                    raise LockError(f"lock server {self.replicas.describe()} answered "
                                    f"{p.SERVER_ERROR} to {route}: {error}") from None
                problem = str(failed)
                unavailable = failed.all_unavailable
            else:
                error = data.get("error", "") if isinstance(data, dict) else ""
                if status == p.UNAUTHORIZED:
                    raise LockAuthError(
                        f"lock server {self.url} refused the token: set BATCHDEPS_LOCK_TOKEN "
                        "(or BATCHDEPS_LOCK_TOKEN_FILE) to a token the server knows")
                if status == p.FORBIDDEN:
                    raise LockAuthError(f"lock server {self.url} refused {route}: {error}")
                if status == p.TOO_MANY_REQUESTS:
                    problem = f"HTTP {status}"
                    unavailable = False
                elif status >= 400 and status != p.LEASE_LOST:
                    raise LockError(f"lock server {self.url} answered {status} to {route}: "
                                    f"{error}")
                else:
                    self.unreachable = False
                    return status, data
            wait = next(waits, None)
            if wait is None or (give_up is not None and give_up.is_set()):
                self.unreachable = True
                hint = ("it runs, but cannot serve the request for the reason it gives"
                        if unavailable else "is `batchdeps lock-server` running there?")
                if len(self.replicas) == 1:
                    raise LockServerUnavailable(
                        f"lock server {self.url} cannot be reached ({problem}; tried for "
                        f"{budget:g} s); {hint}")
                if unavailable:
                    hint = "each runs, but cannot serve the request for the reason it gives"
                raise LockServerUnavailable(
                    f"the lock server's {len(self.replicas)} replicas cannot be reached "
                    f"({problem}; each tried in turn for {budget:g} s); {hint}")
            if give_up is not None:
                give_up.wait(wait)
            else:
                time.sleep(wait)

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
