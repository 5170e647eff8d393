"""Sends a run's history rows to the lock server from a background thread, never blocking.

The runner's thread only appends to a bounded queue. A thread posts batches (each body
under the server's size limit) to `POST /v1/history`; while the server is down it keeps
the queue and retries with a growing pause, and rows past the bound are dropped with one
warning and counted (`dropped`, also reported to the server with the next batch that
arrives). At the end of the run it waits a few seconds for the queue to drain, and not at
all when the server did not answer the last time: a server that is down never slows a run.

With several replicas (`[lock] url` a list) a batch goes to the one in use; on a connection
error or a 5xx it goes on at once to the next, which is the one in use from then on
(locks/replicas.py). `get_json()` (`batchdeps history --lock-url`) tries them the same way.
"""

from __future__ import annotations

import http.client
import json
import threading
import urllib.error
import urllib.request
from collections import deque
from collections.abc import Sequence
from typing import Any

from .. import logs
from .records import Row, row_json

log = logs.get()

HISTORY_ROUTE = "/v1/history"
MAX_BATCH_BYTES = 60 * 1024  # the server refuses bodies over 64 KiB
DEFAULT_BOUND = 50_000
#: rows that make a body worth sending at once; fewer wait for the next `interval`. Waking
#: the thread for every event made one POST per task or two (thousands of requests in a
#: run of quick tasks, and the runner's process then spent more CPU on them than on the run)
FULL_BATCH = 200


class RemoteHistory:
    """A bounded queue of rows and the thread that posts them to `url`.

    Args:
        url: the lock server's base URL, or its replicas' in the order to try them.
        token: the bearer token (role worker).
        bound: rows kept while the server is slow or down; more are dropped.
        drain: seconds `close()` waits for the queue to empty when the server is answering.
    """

    def __init__(self, url: str | Sequence[str], token: str, *, bound: int = DEFAULT_BOUND,
                 drain: float = 5.0, timeout: float = 5.0, interval: float = 0.5) -> None:
        from ..locks.replicas import Replicas

        self.replicas = Replicas(url)
        self._path = HISTORY_ROUTE
        self._conn_index = -1  # the replica self._conn goes to
        self.token = token
        self.bound = bound
        self.drain = drain
        self.timeout = timeout
        self.interval = interval
        self.dropped = 0  # rows dropped in this run
        self.sent = 0
        self._unreported = 0  # drops not yet told to the server
        self._rows: deque[Row] = deque()
        self._run: dict[str, Any] | None = None
        self._run_changed = False
        self._cond = threading.Condition()
        self._stop = False
        self._answering = True
        self._refused = False
        self._thread: threading.Thread | None = None
        self._conn: http.client.HTTPConnection | None = None  # kept open: the thread's own

    @property
    def base_url(self) -> str:
        """The replica in use."""
        return self.replicas.url

    @property
    def url(self) -> str:
        return self.base_url + HISTORY_ROUTE

    def put(self, rows: list[Row], run: dict[str, Any] | None) -> None:
        """Queue `rows` (and the run record when given); drops past the bound."""
        with self._cond:
            if self._refused:
                return
            if run is not None:
                self._run = dict(run)
                self._run_changed = True
            room = self.bound - len(self._rows)
            if len(rows) > room:
                lost = len(rows) - max(room, 0)
                if self.dropped == 0:
                    log.warning("history: the lock server at %s is not keeping up; dropping "
                                "history rows (the local history file keeps them)", self.url)
                self.dropped += lost
                self._unreported += lost
                rows = rows[: max(room, 0)]
            self._rows.extend(rows)
            if self._thread is None:
                self._thread = threading.Thread(target=self._loop, name="batchdeps-history",
                                                daemon=True)
                self._thread.start()
            if run is not None or len(self._rows) >= FULL_BATCH:
                self._cond.notify()

    def close(self) -> None:
        """Send what is left within `drain` seconds (none when the server is not answering)."""
        with self._cond:
            self._stop = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(self.drain if self._answering else 0.05)
            if self._rows or self._run_changed:
                left = len(self._rows)
                log.warning("history: %d row(s) not sent to the lock server at %s (the local "
                            "history file keeps them)", left, self.url)
                self.dropped += left

    # -- the thread -------------------------------------------------------------------
    def _loop(self) -> None:
        pause = 0.0
        while True:
            with self._cond:
                if pause or not (self._stop or self._run_changed
                                 or len(self._rows) >= FULL_BATCH):
                    self._cond.wait(max(self.interval, pause))
                if not self._rows and not self._run_changed:
                    if self._stop:
                        return
                    continue
                body, count, reported = self._batch()
            answer = self._post(body)
            if answer == "refused":
                with self._cond:
                    self.dropped += len(self._rows)
                    self._rows.clear()
                    self._run_changed = False
                    self._refused = True
                return
            if answer == "ok":
                pause = 0.0
                with self._cond:
                    for _ in range(count):
                        self._rows.popleft()
                    self.sent += count
            else:
                with self._cond:
                    self._run_changed = True
                    self._unreported += reported  # the next batch that arrives says so
                    if self._stop:
                        return  # the run is over and the server is not answering
                pause = min(30.0, max(1.0, pause * 2))

    def _batch(self) -> tuple[bytes, int, int]:
        """The next body (under MAX_BATCH_BYTES), how many rows it holds and how many
        dropped rows it reports (counted again when the body does not arrive)."""
        run = json.dumps(self._run) if self._run is not None else "null"
        self._run_changed = False
        reported = self._unreported
        head = f'{{"run": {run}, "dropped": {reported}, "events": ['
        self._unreported = 0
        size = len(head) + 2
        parts: list[str] = []
        for row in self._rows:
            part = json.dumps(row_json(row))
            if parts and size + len(part) + 1 > MAX_BATCH_BYTES:
                break
            parts.append(part)
            size += len(part) + 1
        return (head + ",".join(parts) + "]}").encode("utf-8"), len(parts), reported

    def _post(self, body: bytes) -> str:
        """"ok", "down" (try again later) or "refused" (never send to this server again).

        To the replica in use, else to each next one in turn (a connection error or a 5xx
        moves on); the first that takes the batch is the one in use from then on.
        """
        problems: list[str] = []
        for index in self.replicas.order():
            answer, problem = self._post_to(index, body)
            if answer != "down":
                self.replicas.answered(index, problems[0] if problems else "")
                self._answering = True
                if answer == "refused":
                    self._answering = False
                return answer
            problems.append(problem)
        self._answering = False
        return "down"

    def _post_to(self, index: int, body: bytes) -> tuple[str, str]:
        """(answer, problem) of one replica. One kept-alive connection carries every batch;
        a connection the server closed meanwhile is opened again once before the replica
        counts as down."""
        for fresh in (self._conn is None or self._conn_index != index, True):
            conn = self._connection(index, fresh)
            try:
                conn.request("POST", self._path, body=body, headers={
                    "Content-Type": "application/json",
                    "Authorization": f"Bearer {self.token}"})
                response = conn.getresponse()
                raw = response.read()
            except (OSError, http.client.HTTPException) as exc:
                self._drop()
                if fresh:
                    return "down", f"{type(exc).__name__}: {exc}"
                continue
            if response.getheader("Connection", "").lower() == "close":
                self._drop()
            break
        status = response.status
        if status in (400, 401, 403, 404, 413):
            # the server will not take this batch however often it is sent
            log.warning("history: the lock server refused a batch (HTTP %s: %s); "
                        "not sending history to it in this run", status,
                        _error_text(raw, response.reason))
            return "refused", ""
        if status >= 300:
            return "down", f"HTTP {status}"
        return "ok", ""

    def _connection(self, index: int, fresh: bool) -> http.client.HTTPConnection:
        if fresh or self._conn is None or self._conn_index != index:
            from ..locks.protocol import parse_url

            self._drop()
            https, host, port, prefix = parse_url(self.replicas.urls[index])
            self._path = prefix + HISTORY_ROUTE
            self._conn_index = index
            if https:
                import ssl

                self._conn = http.client.HTTPSConnection(
                    host, port, timeout=self.timeout, context=ssl.create_default_context())
            else:
                self._conn = http.client.HTTPConnection(host, port, timeout=self.timeout)
        return self._conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _error_text(raw: bytes, reason: str) -> str:
    try:
        return str(json.loads(raw.decode("utf-8")).get("error", reason))
    except Exception:  # noqa: BLE001 - any body: show the reason phrase
        return str(reason)


def get_json(base_url: str | Sequence[str], route: str, params: dict[str, Any], token: str,
             timeout: float = 10.0) -> Any:
    """GET `route` of the lock server with `params` as the query; the JSON answer.

    `base_url` is one server or its replicas: each is tried in turn until one answers (a
    connection error or a 5xx moves on to the next).

    Raises:
        LockAuthError: the server refused the token.
        LockServerUnavailable: no replica can be reached or answered other than with an
            error.
    """
    from urllib.parse import urlencode

    from ..errors import LockAuthError, LockServerUnavailable
    from ..locks.replicas import Replicas

    replicas = Replicas(base_url)
    query = urlencode({k: v for k, v in params.items() if v is not None})
    problems: list[str] = []
    for url in replicas.urls:
        request = urllib.request.Request(url + route + (f"?{query}" if query else ""),
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Accept": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            detail = _error_text(exc.read(), exc.reason)
            if exc.code in (401, 403):
                raise LockAuthError(f"the lock server at {url} refused the token "
                                    f"(HTTP {exc.code}: {detail}); set "
                                    "BATCHDEPS_LOCK_TOKEN") from None
            if exc.code < 500:
                raise LockServerUnavailable(f"the lock server at {url} answered HTTP "
                                            f"{exc.code}: {detail}") from None
            problems.append(f"the lock server at {url} answered HTTP {exc.code}: {detail}")
        except (OSError, ValueError) as exc:
            problems.append(f"cannot reach the lock server at {url}: "
                            f"{getattr(exc, 'reason', exc)}")
    raise LockServerUnavailable("; ".join(problems))
